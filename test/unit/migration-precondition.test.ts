import t from 'tap';
import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientChannel } from 'ssh2';
import { runProfile } from '../../runner/run-cases.js';
import { migrationSuite } from '../../suites/migration/index.js';
import { path as fsmPath, State, stateName, supportedStates } from '../../suites/migration/model.js';
import { gate } from '../../reports/gate.js';
import { validateResults } from '../../base/results/file.js';
import { SCHEMA_VERSION, type CaseResult, type ConsoleFault } from '../../base/results/schema.js';
import type { Target } from '../../harness/target/target.js';
import type { Suite } from '../../suites/types.js';
import { runInfo } from '../helpers/results.js';

const STREAM_BYTES: Record<string, number> = { 'mtty-1': 60, 'mtty-2': 96 };

/**
 * A migration device behind a fake agent: SET follows the uAPI's state machine (the model), data
 * fds open and end as the uAPI says, and VFIO_DEVICE_RESET either works or, when `brokenReset`,
 * answers OK and leaves the migration state as it was (the driver bug this test is about).
 * Everything else answers just enough for the cases to run, each reply with the values the agent's
 * protocol declares.
 */
class FakeMigrationAgent extends EventEmitter {
  stderr = new EventEmitter();
  private nextFd = 3;
  private readonly devs = new Map<number, { state: number; kind: string }>();
  /** data fds: live until their session ends */
  private readonly dataFds = new Map<number, { live: boolean; dev: number; resuming: boolean }>();
  constructor(private readonly kindOf: (path: string) => string, private readonly brokenReset: boolean) { super(); }

  write(s: string): boolean {
    for (const line of s.split('\n').filter(Boolean)) {
      const req = JSON.parse(line) as Record<string, unknown> & { id: number; op: string };
      const reply = { id: req.id, ok: true, errno: 0, err: null as string | null, ...this.answer(req) };
      setImmediate(() => this.emit('data', Buffer.from(`${JSON.stringify(reply)}\n`)));
    }
    return true;
  }

  end(): void { this.emit('close'); }

  private fail(err: string): Record<string, unknown> {
    return { ok: false, errno: 1, err };
  }

  private endSessions(dev: number): void {
    for (const f of this.dataFds.values()) if (f.dev === dev) f.live = false;
  }

  private answer(req: Record<string, unknown>): Record<string, unknown> {
    const dev = this.devs.get(req.dev as number);
    const data = this.dataFds.get(req.fd as number);
    switch (req.op) {
      case 'hello': return { version: 'fake', headers: null, ops: [], uapi: {} };
      case 'open_cdev': {
        const fd = this.nextFd++;
        this.devs.set(fd, { state: State.RUNNING, kind: this.kindOf(req.path as string) });
        return { dev: fd, iommufd: this.nextFd++, ioas: 2, devid: 1, pt_id: 2 };
      }
      case 'close': return {};
      case 'mig_flags': return { flags: 0x7 };
      case 'data_size': return { stop_copy_length: STREAM_BYTES[dev!.kind] };
      case 'feature': return ((req.flags as number) & (1 << 18)) ? { ret: 0, payload: req.payload ?? '' } : this.fail('EINVAL');
      case 'get_state': return { state: dev!.state, data_fd: -1 };
      case 'reset':
        if (!this.brokenReset) { dev!.state = State.RUNNING; this.endSessions(req.dev as number); }
        return {};
      case 'set_state': {
        const to = req.state as number;
        const p = fsmPath(dev!.state, to, 0x7);
        if (!p.ok) return { ...this.fail('EINVAL'), data_fd: -1, state_echo: to };
        if (p.endsSession) this.endSessions(req.dev as number);
        dev!.state = to;
        if (!p.newDataFd) return { data_fd: -1, state_echo: to };
        const fd = this.nextFd++;
        this.dataFds.set(fd, { live: true, dev: req.dev as number, resuming: to === State.RESUMING });
        return { data_fd: fd, state_echo: to };
      }
      case 'read_all': {
        if (!data?.live) return this.fail('ENODEV');
        const n = STREAM_BYTES[this.devs.get(data.dev)!.kind]!;
        return { n, data: '5a'.repeat(n), reads: 2, eof: true };
      }
      case 'read': return data?.live && !data.resuming ? { n: 0, data: '' } : this.fail(data?.resuming || !data ? 'EBADF' : 'ENODEV');
      case 'write': return data?.live ? { n: String(req.data).length / 2 } : this.fail(data ? 'ENODEV' : 'EBADF');
      case 'precopy_info': return data?.resuming ? this.fail('ENOTTY') : { initial_bytes: 24, dirty_bytes: 0, flags: req.flags ?? 0 };
      case 'region_read': return { value: 0, n: 1 };
      case 'region_write': return { n: 1 };
      default: return this.fail('EINVAL');
    }
  }
}

/** A guest with an mtty parent: creates instances through the suite's own sysfs script. */
class FakeGuest implements Target {
  readonly kind = 'qemu' as const;
  readonly name = 'fake';
  readonly facts = {};
  private readonly kinds = new Map<string, string>();
  private next = 0;
  constructor(private readonly brokenReset: boolean) {}
  async exec(cmd: string) {
    const out: string[] = [];
    for (const m of cmd.matchAll(/echo (\S+) > \S+\/(mtty-\d)\/create/g)) {
      const vfio = `vfio${this.next++}`;
      this.kinds.set(`/dev/vfio/devices/${vfio}`, m[2]!);
      out.push(`${m[1]} ${vfio}`);
    }
    return { code: 0, stdout: out.join('\n'), stderr: '', timedOut: false };
  }
  async upload() { /* not used */ }
  async openChannel() {
    return new FakeMigrationAgent((p) => this.kinds.get(p) ?? 'unknown', this.brokenReset) as unknown as ClientChannel;
  }
  async mark() { /* no kernel log */ }
  faultMark() { return 0; }
  faultsSince(): ConsoleFault[] { return []; }
  isAlive() { return true; }
  deathReason() { return undefined; }
  async close() { /* nothing */ }
}

async function runMigration(brokenReset: boolean): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-mig-pre-'));
  await runProfile({ profile: 'fake', start: async () => new FakeGuest(brokenReset) }, [migrationSuite as Suite<unknown>], dir, {
    result: (r) => results.push(r), error: (e) => { throw new Error(e.message); },
  });
  return results;
}

const nonRunning = supportedStates(0x7).filter((s) => s !== State.ERROR && s !== State.RUNNING);

t.test('a device whose reset leaves the migration state: the reset cases fail, the cases resting on reset are blocked by them', async (t) => {
  const results = await runMigration(true);
  for (const kind of ['mtty-2', 'mtty-1']) {
    const mine = results.filter((r) => r.device.id === kind);
    t.equal(new Set(mine.map((r) => r.id)).size, mine.length, `${kind}: one result per case id`);
    const failed = mine.filter((r) => r.status === 'fail' || r.status === 'error');
    t.same(failed.map((r) => r.id).sort(), nonRunning.map((s) => `migration/reset/from-${stateName(s)}`).sort(),
      `${kind}: the only failures are reset from each state but RUNNING`);
    t.equal(failed[0]?.id, mine.find((r) => r.status !== 'pass')?.id, `${kind}: the first result that is not a pass is a failure, not a blocked case`);
    t.match(failed[0]?.reason, /state after reset: got STOP, expected RUNNING/);
    const blocked = mine.filter((r) => r.status === 'blocked');
    t.ok(blocked.length > 60, `${kind}: most of the suite is blocked (${blocked.length})`);
    const failedIds = new Set(failed.map((r) => r.id));
    t.ok(blocked.every((r) => r.blockedBy && failedIds.has(r.blockedBy)), `${kind}: every blocked case names a reset case that failed`);
    t.ok(blocked.every((r) => /precondition not met: after VFIO_DEVICE_RESET .* is in \S+, not RUNNING .*\(tested by migration\/reset\/from-/.test(r.reason ?? '')), 'and says which precondition');
    const arcsOff = mine.filter((r) => r.id.startsWith('migration/arc/') && !r.id.startsWith('migration/arc/RUNNING->'));
    t.ok(arcsOff.length > 0 && arcsOff.every((r) => r.status === 'blocked'), `${kind}: no arc fails blaming itself for the reset`);
    const fromRunning = mine.filter((r) => r.id.startsWith('migration/arc/RUNNING->'));
    t.ok(fromRunning.every((r) => r.status === 'pass'), `${kind}: reaching each state from RUNNING still reports on its own`);
    t.ok(fromRunning.some((r) => r.log?.some((l) => /brought back with SET RUNNING instead/.test(l))), 'working around the reset, and saying so');
    const order = mine.map((r) => r.id);
    const lastFoundation = Math.max(...order.map((id, i) => (/^migration\/(reset\/|arc\/RUNNING->)/.test(id) ? i : -1)));
    t.equal(lastFoundation, fromRunning.length + nonRunning.length, `${kind}: reaching and reset cases run first`);
  }
  const g = gate(validateResults({ schema: SCHEMA_VERSION, run: runInfo({ profiles: ['fake'] }), results }));
  t.equal(g.regressions.length, 2 * nonRunning.length, 'the gate counts the bug once per reset case');
  t.equal(g.blocked.length, results.filter((r) => r.status === 'blocked').length, 'and lists the rest as blocked');
});

t.test('the same device with a working reset: nothing is blocked', async (t) => {
  const results = await runMigration(false);
  t.equal(results.filter((r) => r.status === 'blocked').length, 0);
  t.ok(results.filter((r) => r.id.startsWith('migration/reset/')).every((r) => r.status === 'pass'), 'reset from every state passes');
  t.same([...new Set(results.map((r) => r.device.id))], ['mtty-2', 'mtty-1'], 'both device kinds, mtty-2 first');
  const rt = (kind: string) => results.find((r) => r.id === 'migration/stream/round-trip' && r.device.id === kind);
  t.equal(rt('mtty-2')?.observed?.bytes, 96);
  t.equal(rt('mtty-1')?.observed?.bytes, 60, 'mtty-1 runs on its own instances');
});
