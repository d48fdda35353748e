import t from 'tap';
import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientChannel } from 'ssh2';
import { runProfile } from '../../runner/run-cases.js';
import type { Target } from '../../harness/target/target.js';
import type { CaseResult, ConsoleFault } from '../../base/results/schema.js';
import type { CaseDef, Suite } from '../../suites/types.js';

/** What a hello reply must carry (the client checks every reply against harness/agent/protocol.ts). */
const HELLO = { version: '1', headers: null, ops: ['hello'], uapi: {} };

/** An agent channel that answers every request with ok, until the connection is dropped. */
class FakeChannel extends EventEmitter {
  stderr = new EventEmitter();
  write(s: string): boolean {
    for (const line of s.split('\n').filter(Boolean)) {
      const { id, op } = JSON.parse(line) as { id: number; op: string };
      const values = op === 'hello' ? HELLO : {};
      setImmediate(() => this.emit('data', Buffer.from(`${JSON.stringify({ id, ok: true, errno: 0, err: null, ...values })}\n`)));
    }
    return true;
  }
  end(): void { /* nothing to flush */ }
}

/** A machine whose SSH connection can drop while it stays alive, and whose kernel can report a fault. */
class FakeTarget implements Target {
  readonly kind = 'qemu' as const;
  readonly facts = {};
  faults: ConsoleFault[] = [];
  private ch?: FakeChannel;
  constructor(readonly name: string) {}
  async exec() { return { code: 0, stdout: '', stderr: '', timedOut: false }; }
  async upload() { /* not used */ }
  async openChannel() { this.ch = new FakeChannel(); return this.ch as unknown as ClientChannel; }
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
  await runProfile({ profile: 'fake', start: async () => new FakeTarget(`fake-${boots++}`) }, [suite], dir, {
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
