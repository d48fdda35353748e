import { HarnessError } from '../base/errors.js';

/**
 * Guests in parallel on one host (`run --jobs N`): profiles are independent (each boots its own
 * guests, writes its own logs under <run>/<profile>/), so up to N run at once.
 */

/** Run `fn` over `items`, at most `limit` at a time, starting them in order; rejects with the first error once all settled. */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (errors.length) throw errors[0];
}

/**
 * How many guests this host can run at once: one per core (a TCG guest keeps a core busy), and no
 * more than the available memory holds (each guest's RAM plus QEMU's own, with 1 GiB kept for the
 * host), and never fewer than one.
 */
export function defaultJobs(o: { cpus: number; availableMiB: number; guestMiB: number }): { jobs: number; why: string } {
  const perGuest = o.guestMiB + 512;
  const byMem = Math.floor(Math.max(0, o.availableMiB - 1024) / perGuest);
  const jobs = Math.max(1, Math.min(o.cpus, byMem));
  const limit = byMem < o.cpus ? `memory: ${o.availableMiB} MiB available, ${perGuest} MiB per guest` : `${o.cpus} cores`;
  return { jobs, why: jobs === 1 && byMem < 1 ? `1 (memory: ${o.availableMiB} MiB available, a guest needs ${perGuest} MiB)` : `${jobs} (${limit})` };
}

/** --jobs N: a whole number >= 1. */
export function parseJobs(v: string): number {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || n < 1) throw new HarnessError(`--jobs '${v}': expected a whole number >= 1`);
  return n;
}
