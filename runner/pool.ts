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
 * How many guests this host can run at once. Under KVM one per core. Under TCG one per two cores: the
 * guest's vCPU keeps one core busy, and the suites' own work beside it (SSH, the agent, the nested
 * QEMU of qemu-migration, kselftest builds' output) needs the other; the default matrix with two TCG
 * guests on 2 cores timed out 4 of 5,217 cases (mdev creation, a cancel's timing) that pass alone.
 * Never more than the available memory holds (each guest's RAM plus QEMU's own, 1 GiB kept for the
 * host), never fewer than one.
 */
export function defaultJobs(o: { cpus: number; availableMiB: number; guestMiB: number; accel: 'kvm' | 'tcg' }): { jobs: number; why: string } {
  const perGuest = o.guestMiB + 512;
  const byMem = Math.floor(Math.max(0, o.availableMiB - 1024) / perGuest);
  const coresPerGuest = o.accel === 'tcg' ? 2 : 1;
  const byCpu = Math.floor(o.cpus / coresPerGuest);
  const jobs = Math.max(1, Math.min(byCpu, byMem));
  const cpuWhy = `${o.cpus} cores, ${coresPerGuest === 2 ? 'two per TCG guest' : 'one per KVM guest'}`;
  const limit = byMem < byCpu ? `memory: ${o.availableMiB} MiB available, ${perGuest} MiB per guest` : cpuWhy;
  return { jobs, why: `auto: ${limit}` };
}

/** --jobs N: a whole number >= 1. */
export function parseJobs(v: string): number {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || n < 1) throw new HarnessError(`--jobs '${v}': expected a whole number >= 1`);
  return n;
}
