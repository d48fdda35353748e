import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { HarnessError } from './errors.js';

export interface LockOptions {
  /** how long to wait for another holder (default 20 min) */
  timeoutMs?: number;
  /**
   * A lock file older than this is taken over (default: timeoutMs). A holder on this host whose
   * process is gone is taken over at once; the age matters only for a holder we cannot ask (another
   * host sharing the cache, or a lock file from before locks named their holder).
   */
  staleMs?: number;
  pollMs?: number;
  /** said once, when the lock is held by someone else and we start waiting */
  waiting?: (holder: string) => void;
}

interface Holder { pid: number; host: string }

function readHolder(path: string): Holder | undefined {
  try {
    const [pid, host] = readFileSync(path, 'utf8').trim().split(/\s+/);
    const n = Number(pid);
    return Number.isInteger(n) && n > 0 && host ? { pid: n, host } : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the holder is certainly gone: only a process on this host can be asked. */
function holderGone(h: Holder | undefined): boolean {
  if (!h || h.host !== hostname()) return false;
  if (h.pid === process.pid) return false;
  try {
    process.kill(h.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function describe(h: Holder | undefined): string {
  return h ? `pid ${h.pid} on ${h.host}` : 'another harness process';
}

/**
 * Run `fn` holding a lock file, so two harness processes (two terminals, CI jobs sharing a cache)
 * never build the same cache entry at once; the second waits and then finds the first one's result.
 * Only "it exists" (EEXIST) means another process holds it; any other error of creating it (EACCES,
 * EROFS, ENOSPC, a missing folder) is this process's problem and is said at once, since waiting
 * cannot mend it.
 */
export async function withLock<T>(path: string, fn: () => Promise<T>, o: LockOptions = {}): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 20 * 60_000;
  const staleMs = o.staleMs ?? timeoutMs;
  const end = Date.now() + timeoutMs;
  const fail = (what: string, e: unknown) => new HarnessError(
    `cannot ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  let said = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx');
      try { writeSync(fd, `${process.pid} ${hostname()}\n`); } finally { closeSync(fd); }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fail('create the lock', e);
    }
    let age: number;
    try {
      age = Date.now() - statSync(path).mtimeMs;
    } catch (e) {
      // released between our open and our stat: try again at once
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw fail('read the lock', e);
    }
    const holder = readHolder(path);
    if (age > staleMs || holderGone(holder)) {
      try { rmSync(path, { force: true }); } catch (e) { throw fail('remove the stale lock', e); }
      continue;
    }
    if (Date.now() >= end) {
      throw new HarnessError(`${path} still locked after ${Math.round(timeoutMs / 1000)} s (held by ${describe(holder)})`);
    }
    if (!said) {
      said = true;
      o.waiting?.(describe(holder));
    }
    await new Promise((r) => setTimeout(r, Math.min(o.pollMs ?? 2000, Math.max(1, end - Date.now()))));
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}
