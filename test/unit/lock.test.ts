import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { withLock } from '../../base/lock.js';
import { HarnessError } from '../../base/errors.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'vfioc-lock-'));

t.test('a lock that cannot be created is an error at once, not a wait', async (t) => {
  const d = tmp();
  writeFileSync(join(d, 'file'), '');
  // sysfs refuses new files even to root (EACCES); a path through a regular file is ENOTDIR
  for (const [path, code] of [['/sys/vfioc-test.lock', 'EACCES'], [join(d, 'file', 'lock'), 'ENOTDIR'], [join(d, 'no', 'lock'), 'ENOENT']] as const) {
    const t0 = Date.now();
    let ran = false;
    await t.rejects(withLock(path, async () => { ran = true; }, { timeoutMs: 60_000 }), new RegExp(`cannot create the lock ${path}: ${code}`), code);
    t.ok(Date.now() - t0 < 1000, `${code}: no waiting`);
    t.notOk(ran, `${code}: the work did not run`);
  }
});

t.test('a held lock is waited for up to the deadline; a stale one is taken over', async (t) => {
  const d = tmp();
  const lock = join(d, 'lock');
  writeFileSync(lock, '');
  const t0 = Date.now();
  await t.rejects(withLock(lock, async () => 1, { timeoutMs: 300, staleMs: 60_000, pollMs: 50 }), HarnessError);
  const waited = Date.now() - t0;
  t.ok(waited >= 300 && waited < 1500, `waited ${waited} ms for a 300 ms deadline`);
  t.ok(existsSync(lock), 'another holder\'s lock is left alone');

  const old = new Date(Date.now() - 120_000);
  utimesSync(lock, old, old);
  t.equal(await withLock(lock, async () => 'mine', { timeoutMs: 300, staleMs: 60_000, pollMs: 50 }), 'mine');
  t.notOk(existsSync(lock), 'released after the work');

  // released by its holder while we wait
  writeFileSync(lock, '');
  setTimeout(() => rmSync(lock, { force: true }), 100);
  t.equal(await withLock(lock, async () => 'after', { timeoutMs: 5000, pollMs: 20 }), 'after');

  await t.rejects(withLock(lock, async () => { throw new Error('work failed'); }), /work failed/);
  t.notOk(existsSync(lock), 'released after a failure too');
});

t.test('the lock names its holder; a holder on this host that is gone is taken over at once', async (t) => {
  const d = tmp();
  const lock = join(d, 'lock');
  const seen = await withLock(lock, async () => readFileSync(lock, 'utf8'));
  t.equal(seen, `${process.pid} ${hostname()}\n`, 'pid and host written while held');

  // a pid that cannot be alive: above the kernel's pid_max
  writeFileSync(lock, `4194305 ${hostname()}\n`);
  const t0 = Date.now();
  t.equal(await withLock(lock, async () => 'taken', { timeoutMs: 5000, staleMs: 60_000, pollMs: 1000 }), 'taken');
  t.ok(Date.now() - t0 < 500, 'no waiting for a dead holder');
});

t.test('a live holder, or one on another host, is waited for and named', async (t) => {
  const d = tmp();
  const lock = join(d, 'lock');
  for (const holder of [`${process.ppid} ${hostname()}`, `1 another-host.example`]) {
    writeFileSync(lock, `${holder}\n`);
    const said: string[] = [];
    await t.rejects(withLock(lock, async () => 1, { timeoutMs: 250, staleMs: 60_000, pollMs: 50, waiting: (h) => said.push(h) }),
      new RegExp(`held by pid ${holder.split(' ')[0]} on ${holder.split(' ')[1]}`));
    t.same(said, [`pid ${holder.split(' ')[0]} on ${holder.split(' ')[1]}`], 'the wait is said once');
  }
});
