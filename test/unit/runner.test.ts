import t from 'tap';
import { EventEmitter } from 'node:events';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientChannel } from 'ssh2';
import { MAX_REPLACEMENTS, MAX_REPLACEMENTS_IN_A_ROW, runProfile } from '../../runner/run-cases.js';
import { stopAgentScript } from '../../runner/stop-agent.js';
import type { Target } from '../../harness/target/target.js';
import type { CaseResult, ConsoleFault } from '../../base/results/schema.js';
import type { CaseDef, Suite } from '../../suites/types.js';

/** The values of the replies the fake agent sends (each as the agent's protocol declares it). */
const REPLIES: Record<string, Record<string, unknown>> = {
  hello: { version: '1', headers: null, ops: ['hello'], uapi: {} },
  mig_flags: { flags: 7 },
  close: {},
};
/** The op the fake agent never answers: a request the kernel never finishes. */
const HANGS = 'get_state';

/** An agent channel that answers every request with ok (but never a get_state), until the connection is dropped. */
class FakeChannel extends EventEmitter {
  stderr = new EventEmitter();
  /** every op this channel received, in order */
  readonly ops: string[] = [];
  write(s: string): boolean {
    for (const line of s.split('\n').filter(Boolean)) {
      const { id, op } = JSON.parse(line) as { id: number; op: string };
      this.ops.push(op);
      if (op === HANGS) continue;
      setImmediate(() => this.emit('data', Buffer.from(`${JSON.stringify({ id, ok: true, errno: 0, err: null, ...REPLIES[op] })}\n`)));
    }
    return true;
  }
  end(): void { this.emit('close'); }
}

/** A machine whose SSH connection can drop while it stays alive, and whose kernel can report a fault. */
class FakeTarget implements Target {
  readonly kind = 'qemu' as const;
  readonly facts = {};
  faults: ConsoleFault[] = [];
  /** the agent channels opened, one per agent started */
  readonly channels: FakeChannel[] = [];
  /** commands run through exec, in order */
  readonly execs: string[] = [];
  /** an agent process that SIGKILL cannot end (stuck in an ioctl) */
  agentStuck = false;
  private ch?: FakeChannel;
  constructor(readonly name: string) {}
  async exec(cmd: string) {
    this.execs.push(cmd);
    const stdout = cmd.includes('/proc/') ? (this.agentStuck ? 'stuck: 77' : 'gone') : '';
    return { code: 0, stdout, stderr: '', timedOut: false };
  }
  async upload() { /* not used */ }
  async openChannel() { this.ch = new FakeChannel(); this.channels.push(this.ch); return this.ch as unknown as ClientChannel; }
  async mark() { /* the step marker goes to the kernel log */ }
  faultMark() { return this.faults.length; }
  faultsSince(m: number) { return this.faults.slice(m); }
  isAlive() { return true; }
  deathReason() { return undefined; }
  async close() { /* nothing */ }
  dropConnection() { this.ch?.emit('close'); }
}

const runs = new Map<string, number>();
function kase(id: string, behave: (attempt: number, target: FakeTarget) => void): CaseDef<unknown> {
  return {
    id, device: { driver: 'none', class: 'none', id: '-' }, timeoutMs: 5000,
    async run(_s, ctx) {
      const n = runs.get(id) ?? 0;
      runs.set(id, n + 1);
      behave(n, ctx.target as unknown as FakeTarget);
      await ctx.agent.request('hello');
      return { status: 'pass' };
    },
  };
}

t.test('a lost SSH connection on a live machine is retried once on a fresh machine; a kernel fault is not', async (t) => {
  const suite: Suite<unknown> = {
    name: 'fake',
    async setup() {
      return {
        state: {},
        cases: [
          kase('fake/first', () => undefined),
          kase('fake/flaky', (n, tg) => { if (n === 0) tg.dropConnection(); }),
          kase('fake/kernel-fault', (_n, tg) => {
            tg.faults.push({ kind: 'oops', title: 'BUG: kernel NULL pointer dereference', step: 'fake/kernel-fault', lines: [] } as unknown as ConsoleFault);
            tg.dropConnection();
          }),
          kase('fake/after', () => undefined),
          kase('fake/always-drops', (_n, tg) => tg.dropConnection()),
        ],
      };
    },
  };
  let boots = 0;
  const results: CaseResult[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-runner-'));
  // The fake's faults are there at once: no grace for a serial console to catch up.
  await runProfile({ profile: 'fake', start: async () => new FakeTarget(`fake-${boots++}`), faultGraceMs: 0 }, [suite], dir, {
    result: (r) => results.push(r), error: (e) => t.fail(e.message),
  });
  const by = new Map(results.map((r) => [r.id, r]));
  t.same(results.map((r) => r.id), ['fake/first', 'fake/flaky', 'fake/kernel-fault', 'fake/after', 'fake/always-drops'], 'one result per case, in order');
  t.equal(by.get('fake/flaky')?.status, 'pass', 'the retry on a fresh machine passed');
  t.match(by.get('fake/flaky')?.log?.[0], /run again on a fresh machine: the first attempt lost its SSH connection/, 'and the result says it was retried');
  t.equal(runs.get('fake/flaky'), 2);
  t.equal(runs.get('fake/kernel-fault'), 1, 'a case whose kernel reported a fault is not retried');
  t.equal(by.get('fake/kernel-fault')?.status, 'fail');
  t.equal(runs.get('fake/always-drops'), 2, 'retried once, not more');
  t.equal(by.get('fake/always-drops')?.status, 'error');
  t.match(by.get('fake/always-drops')?.log?.[0], /run again/);
  t.equal(by.get('fake/after')?.status, 'pass');
  t.equal(boots, 4, 'first machine, the flaky retry, after the fault, the always-drops retry');
});

const NO_DEVICE = { driver: 'none', class: 'none' as const, id: '-' };

/** A suite over fake cases that records its setups and teardowns (and which agent each saw). */
function recordingSuite(cases: CaseDef<unknown>[], o: { setupFails?: (n: number) => boolean; teardownFails?: (agentAlive: boolean) => boolean } = {}) {
  const log = { setups: 0, teardowns: [] as boolean[] };
  const suite: Suite<unknown> = {
    name: 'fake',
    async setup(_t, agent) {
      log.setups++;
      if (o.setupFails?.(log.setups)) throw new Error(`mdev create failed (setup #${log.setups})`);
      await agent.request('mig_flags', { dev: 3 });
      return { state: {}, cases };
    },
    async teardown(_s, _t, agent) {
      log.teardowns.push(agent.alive);
      if (o.teardownFails?.(agent.alive)) throw new Error('mdev remove: device busy');
    },
  };
  return { suite, log };
}

/** A case that hangs on an agent request no one answers, then (once stopped) tries to go on. */
function hanging(id: string, attempts: string[], before?: (tg: FakeTarget) => void): CaseDef<unknown> {
  return {
    id, device: NO_DEVICE, timeoutMs: 80,
    async run(_s, ctx) {
      before?.(ctx.target as unknown as FakeTarget);
      await ctx.agent.request(HANGS, { dev: 3 }, 60_000).catch(() => undefined);
      attempts.push(`aborted=${ctx.signal.aborted}`);
      for (const step of [() => ctx.agent.request('close', { fd: 3 }), () => ctx.target.exec('echo late'), () => ctx.target.mark('late')]) {
        await step().then(() => attempts.push('reached the machine'), () => attempts.push('refused'));
      }
      return { status: 'pass' };
    },
  };
}

function quick(id: string): CaseDef<unknown> {
  return { id, device: NO_DEVICE, async run(_s, ctx) { await ctx.agent.request('hello'); return { status: 'pass' }; } };
}

async function runFake(suite: Suite<unknown>, make: (n: number) => FakeTarget = (n) => new FakeTarget(`fake-${n}`)) {
  const targets: FakeTarget[] = [];
  const results: CaseResult[] = [];
  const errors: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-runner-'));
  await runProfile({ profile: 'fake', start: async (n) => { const tg = make(n); targets.push(tg); return tg; } }, [suite], dir, {
    result: (r) => results.push(r), error: (e) => errors.push(e.message),
  });
  return { targets, results, errors, dir, by: new Map(results.map((r) => [r.id, r])) };
}

t.test('a case that hangs is stopped: its agent closed and restarted, the suite set up again, then the next case', async (t) => {
  const attempts: string[] = [];
  const { suite, log } = recordingSuite([quick('fake/before'), hanging('fake/hangs', attempts), quick('fake/next')]);
  const { targets, results, errors, by } = await runFake(suite);
  t.same(errors, []);
  t.same(results.map((r) => [r.id, r.status]), [['fake/before', 'pass'], ['fake/hangs', 'error'], ['fake/next', 'pass']]);
  t.match(by.get('fake/hangs')?.reason, /did not finish within 0\.08 s; stopped/);
  await new Promise((r) => setTimeout(r, 20));
  t.same(attempts, ['aborted=true', 'refused', 'refused', 'refused'], 'after the timeout the body reached neither the agent nor the machine');
  t.equal(targets.length, 1, 'the same machine went on');
  const [first, second] = targets[0]!.channels;
  t.equal(targets[0]!.channels.length, 2, 'a second agent was started');
  t.notOk(first!.ops.includes('close'), 'the late request never left the harness');
  t.same(second!.ops, ['hello', 'mig_flags', 'hello'], 'the new agent saw the new setup and the next case only');
  t.ok(targets[0]!.execs.some((c) => c.includes('/proc/') && c.includes('kill -9')), 'the old agent process was ended');
  t.equal(log.setups, 2, 'the suite was set up again');
  t.same(log.teardowns, [false, true], 'torn down with the closed agent after the timeout, with the live one at the end');
  t.match(by.get('fake/next')?.log?.[0], /agent was restarted and the suite set up again \(fake\/hangs ran out of time\)/);
  t.same(by.get('fake/next')?.log?.slice(1).map((l) => JSON.parse(l.split(' -> ')[0]!).op), ['hello'], 'the next case\'s step log has its own steps only');
});

t.test('a case that times out while the kernel reports a fault fails with the fault and says it was stopped', async (t) => {
  const { suite } = recordingSuite([hanging('fake/oops', [], (tg) => {
    tg.faults.push({ kind: 'oops', title: 'BUG: kernel NULL pointer dereference', step: 'fake/oops', lines: [] });
  }), quick('fake/next')]);
  const { by, targets } = await runFake(suite);
  const r = by.get('fake/oops');
  t.equal(r?.status, 'fail', 'the fault is the finding');
  t.equal(r?.faults.length, 1);
  t.match(r?.reason, /kernel reported a fault during this case \(oops: BUG: kernel NULL pointer dereference\); did not finish within/);
  t.equal(by.get('fake/next')?.status, 'pass');
  t.equal(by.get('fake/next')?.faults.length, 0, 'the fault stays with the case it happened in');
  t.equal(targets.length, 1);
});

t.test('a setup that fails: first time, one error; after a restart, the cases left are reported not run', async (t) => {
  const first = recordingSuite([quick('fake/a')], { setupFails: () => true });
  const r1 = await runFake(first.suite);
  t.same(r1.results.map((r) => [r.id, r.status]), [['fake/setup', 'error']]);
  t.match(r1.results[0]?.reason, /suite setup failed: mdev create failed \(setup #1\)/);

  const again = recordingSuite([hanging('fake/hangs', []), quick('fake/b'), quick('fake/c')], { setupFails: (n) => n === 2 });
  const r2 = await runFake(again.suite);
  t.same(r2.results.map((r) => [r.id, r.status]), [['fake/hangs', 'error'], ['fake/setup', 'error'], ['fake/b', 'error'], ['fake/c', 'error']]);
  t.match(r2.by.get('fake/b')?.reason, /not run: suite setup failed: mdev create failed \(setup #2\)/);
});

t.test('a teardown that fails after a timeout is reported, and a fresh machine takes over', async (t) => {
  const { suite, log } = recordingSuite([hanging('fake/hangs', []), quick('fake/next')], { teardownFails: (alive) => !alive });
  const { results, targets, by } = await runFake(suite);
  t.same(results.map((r) => [r.id, r.status]), [['fake/hangs', 'error'], ['fake/teardown', 'error'], ['fake/next', 'pass']]);
  t.match(by.get('fake/teardown')?.reason, /teardown after a timed-out case failed: mdev remove: device busy/);
  t.equal(targets.length, 2, 'the next case ran on a fresh machine');
  t.match(by.get('fake/next')?.log?.[0], /fake\/hangs ran out of time and the suite's teardown failed; note: running on replacement machine #1/);
  t.equal(log.setups, 2);
});

t.test('an agent that will not die costs a machine; past the limit the cases left are reported not run', async (t) => {
  const n = MAX_REPLACEMENTS_IN_A_ROW + 3;
  const cases = Array.from({ length: n }, (_, i) => hanging(`fake/hang-${i}`, []));
  const { suite } = recordingSuite(cases);
  const { results, targets, by } = await runFake(suite, (n) => Object.assign(new FakeTarget(`fake-${n}`), { agentStuck: true }));
  t.equal(targets.length, MAX_REPLACEMENTS_IN_A_ROW + 1, 'the first machine and the replacements allowed in a row');
  t.same(results.map((r) => r.status), cases.map(() => 'error'));
  t.match(by.get('fake/hang-1')?.log?.[0], /fake\/hang-0 ran out of time and the agent \(pid 77\) did not exit within 5 s of SIGKILL; note: running on replacement machine #1/);
  t.match(by.get(`fake/hang-${MAX_REPLACEMENTS_IN_A_ROW + 1}`)?.reason, new RegExp(`not run: the machine was lost ${MAX_REPLACEMENTS_IN_A_ROW} times in a row in this suite with no fault to say why, no case completing on the replacements`));
  t.match(by.get(`fake/hang-${n - 1}`)?.reason, /not run/);
});

t.test('a case that completes on a replacement resets the budget: a driver that kills some cases runs them all', async (t) => {
  // cases that each cost a machine, each followed by one that passes on the replacement: more than the in-a-row limit in all, never 2 in a row
  const cases = Array.from({ length: MAX_REPLACEMENTS_IN_A_ROW + 2 }, (_, i) => [hanging(`fake/oops-${i}`, []), quick(`fake/ok-${i}`)]).flat();
  const { results, targets, by } = await runFake(recordingSuite(cases).suite, (n) => Object.assign(new FakeTarget(`fake-${n}`), { agentStuck: true }));
  const k = MAX_REPLACEMENTS_IN_A_ROW + 2;
  t.equal(targets.length, k + 1, `the first machine and ${k} replacements`);
  t.same(results.filter((r) => r.id.startsWith('fake/ok-')).map((r) => r.status), Array.from({ length: k }, () => 'pass'), 'every case ran');
  t.match(by.get(`fake/ok-${k - 1}`)?.log?.[0], new RegExp(`running on replacement machine #${k}`));
});

t.test('machines lost to a kernel fault pinned on their case do not count as lost in a row: a cluster of known oopses runs through', async (t) => {
  const oops = (id: string) => kase(id, (_n, tg) => {
    tg.faults.push({ kind: 'oops', title: 'BUG: kernel NULL pointer dereference', step: id, lines: [] } as unknown as ConsoleFault);
    tg.dropConnection();
  });
  const n = MAX_REPLACEMENTS_IN_A_ROW + 3;
  const cases = [...Array.from({ length: n }, (_, i) => oops(`fake/oops-run-${i}`)), quick('fake/after-the-oopses')];
  const { targets, by, results } = await runFake(recordingSuite(cases).suite);
  t.equal(targets.length, n + 1, 'a fresh machine after each oops');
  t.equal(results.length, cases.length);
  t.equal(by.get('fake/after-the-oopses')?.status, 'pass', 'the case after the cluster ran');
  t.ok(results.every((r) => !/not run/.test(r.reason ?? '')), 'nothing left unrun');
});

t.test('past the total budget of replacements the cases left are reported not run, even with passes between', async (t) => {
  const cases = Array.from({ length: MAX_REPLACEMENTS + 2 }, (_, i) => [hanging(`fake/oops-${i}`, []), quick(`fake/ok-${i}`)]).flat();
  const { results, targets, by } = await runFake(recordingSuite(cases).suite, (n) => Object.assign(new FakeTarget(`fake-${n}`), { agentStuck: true }));
  t.equal(targets.length, MAX_REPLACEMENTS + 1, 'the first machine and the whole budget');
  t.equal(results.length, cases.length, 'a result for every case');
  t.equal(by.get(`fake/ok-${MAX_REPLACEMENTS - 1}`)?.status, 'pass', 'the last case on the last replacement ran');
  t.match(by.get(`fake/ok-${MAX_REPLACEMENTS}`)?.reason, new RegExp(`not run: the machine was replaced ${MAX_REPLACEMENTS} times in this suite`));
});

t.test('a case that runs out of time gets the machine\'s vCPU state as an artifact, read before the recovery', async (t) => {
  const { results, targets, by, dir } = await runFake(recordingSuite([hanging('fake/hangs', []), quick('fake/next')]).suite,
    (n) => Object.assign(new FakeTarget(`fake-${n}`), { hangState: async () => '(qemu) info lapic 1\nISR 236\n' }));
  t.equal(targets.length, 1);
  const r = by.get('fake/hangs')!;
  t.equal(r.artifacts.hangState, 'hang/fake/-/fake_hangs.txt');
  t.equal(readFileSync(join(dir, r.artifacts.hangState!), 'utf8'), '(qemu) info lapic 1\nISR 236\n');
  t.match(r.log?.join('\n'), /vCPUs when the case stopped answering \(QEMU's monitor\) are in hang\/fake\/-\/fake_hangs.txt/);
  t.notOk(by.get('fake/next')?.artifacts.hangState, 'a case that finished gets none');
  t.equal(results.length, 2);
});

t.test('an agent lost on a live machine with no fault pinned: its vCPU state is kept and the retry names it', async (t) => {
  const cases = [kase('fake/lost-once', (n, tg) => { if (n === 0) tg.dropConnection(); }), quick('fake/then')];
  const { by, dir } = await runFake(recordingSuite(cases).suite,
    (n) => Object.assign(new FakeTarget(`fake-${n}`), { hangState: async () => `(qemu) info lapic 1\nISR 236 (machine ${n})\n` }));
  const r = by.get('fake/lost-once')!;
  t.equal(r.status, 'pass', 'passed on the retry');
  t.match(r.log?.[0], /run again on a fresh machine: .*; its vCPUs then: hang\/fake\/-\/fake_lost-once.txt/);
  t.equal(readFileSync(join(dir, 'hang/fake/-/fake_lost-once.txt'), 'utf8'), '(qemu) info lapic 1\nISR 236 (machine 0)\n', 'read on the machine that hung');
});

t.test('the agent-stopping script ends the process running that binary (through a symlink too), and only it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-stop-'));
  const bin = join(dir, 'agent-bin');
  copyFileSync('/bin/sleep', bin);
  symlinkSync(bin, join(dir, 'agent'));
  const agent = spawn(bin, ['300'], { stdio: 'ignore' });
  const other = spawn('/bin/sleep', ['300'], { stdio: 'ignore' });
  const exited = new Promise((r) => agent.on('exit', r));
  await new Promise((r) => setTimeout(r, 100));
  const out = execFileSync('sh', ['-c', stopAgentScript(join(dir, 'agent'), 2)], { encoding: 'utf8' });
  t.equal(out.trim(), 'gone');
  t.equal(await exited, null, 'the agent was killed');
  t.equal(agent.signalCode, 'SIGKILL');
  t.equal(other.exitCode, null, 'another process of another binary still runs');
  other.kill();
});
