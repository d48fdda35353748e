import type { Target } from '../../harness/target/target.js';
import type { MigrationInfo } from '../../harness/qemu/qmp.js';
import type { DeviceInfo } from '../../reports/schema.js';
import { HarnessError } from '../../harness/util/errors.js';
import type { CaseContext, CaseDef, CaseOutcome, Suite } from '../types.js';
import { createMtty, removeMtty } from '../migration/devices.js';
import { ALL_FLAGS } from '../migration/model.js';
import { detectClient, NestedQemu, DEVICE_ID, shq, type ClientEnv, type NestedOptions } from './nested.js';
import { UART, sideWalk, type SideWalk } from './parse.js';
import { NESTED_MEM_MIB } from '../../images/rootfs/build.js';

export { arcCoverage } from './parse.js';

/**
 * The real client: inside the target, a QEMU new enough for VFIO migration v2 live-migrates a VM
 * that holds an mtty instance (`vfio-pci,sysfsdev=`), over QMP, and the suite checks what a user of
 * that QEMU relies on: the migration completes, the destination runs, the device state arrived; a
 * refused destination and a cancel leave the source running with its state. Each case records
 * QEMU's own figures (total time, downtime, setup time, device bytes) and the device states QEMU
 * walked (VFIO_MIGRATION events of both sides), which arcCoverage() turns into FSM arcs.
 *
 * The suite starts no machine of the harness: the nested QEMUs are the device's client, started by
 * commands run on the target. The target must carry such a QEMU: the harness's guest gets it from
 * the Debian rootfs (images/rootfs, served over virtio-9p; see `machine` below), a lab host brings
 * its own. A QEMU older than 8.0 gives expected-unsupported.
 */

/** mtty advertises STOP_COPY | P2P | PRE_COPY. */
const MTTY_FLAGS = ALL_FLAGS;
const SUITE = 'qemu-migration';
/** round trips of one VM in the round-trip case (2 migrations each) */
export const ROUND_TRIPS = 3;

export interface QmState {
  env: ClientEnv;
  seq: number;
}

/** What the harness must give the guest this suite runs in (cli/run.ts honours it; see the report). */
export const machine = { rootfs: 'debian-qemu' as const, memMiB: NESTED_MEM_MIB, smp: 2 };

const DEVICE: DeviceInfo = { driver: 'mtty', class: 'sample', id: 'mtty-2' };

/** A value pattern per VM: SCR and LCR of both ports (LCR without DLAB, so the registers stay plain). */
function pattern(seed: number): { port: number; reg: 'SCR' | 'LCR'; val: number }[] {
  const s = (0x40 + seed * 7) & 0x7f;
  return [
    { port: 0, reg: 'SCR', val: s | 0x80 }, { port: 0, reg: 'LCR', val: 0x1b },
    { port: 1, reg: 'SCR', val: (~s) & 0x7f }, { port: 1, reg: 'LCR', val: 0x03 },
  ];
}

type Regs = Record<string, number>;

async function writeRegs(q: NestedQemu, ports: number[], p: ReturnType<typeof pattern>): Promise<Regs> {
  for (const x of p) await q.outb(ports[x.port]! + UART[x.reg], x.val);
  return Object.fromEntries(p.map((x) => [`port${x.port}.${x.reg}`, x.val]));
}

async function readRegs(q: NestedQemu, ports: number[], p: ReturnType<typeof pattern>): Promise<Regs> {
  const out: Regs = {};
  for (const x of p) out[`port${x.port}.${x.reg}`] = await q.inb(ports[x.port]! + UART[x.reg]);
  return out;
}

function diff(want: Regs, got: Regs): string[] {
  return Object.keys(want).filter((k) => want[k] !== got[k]).map((k) => `${k}: wrote 0x${want[k]!.toString(16)}, read 0x${(got[k] ?? -1).toString(16)}`);
}

/** QEMU's own figures of a finished migration. */
function figures(info: MigrationInfo): Record<string, unknown> {
  return {
    status: info.status,
    totalTimeMs: info['total-time'],
    downtimeMs: info.downtime,
    setupTimeMs: info['setup-time'],
    deviceBytes: info.vfio?.transferred,
    ramBytes: info.ram?.transferred,
    ...(info['error-desc'] ? { error: info['error-desc'] } : {}),
  };
}

async function waitRunState(q: NestedQemu, want: string, timeoutMs = 10_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  let s = '';
  while (Date.now() < end) {
    s = await q.status();
    if (s === want) return s;
    await new Promise((r) => setTimeout(r, 30));
  }
  return s;
}

/** Every nested QEMU a case started is stopped, whatever happened; their stderr goes to the log. */
class Vms {
  private all: NestedQemu[] = [];
  private uuids: string[] = [];
  constructor(private readonly target: Target, private readonly st: QmState, private readonly ctx: CaseContext) {}
  /** mtty instances for this case; removed at its end (mtty has 24 ports in all: a run cannot keep them) */
  async mtty(type: 'mtty-1' | 'mtty-2', count = 1): Promise<{ uuid: string }[]> {
    const made = await createMtty(this.target, type, count);
    this.uuids.push(...made.map((m) => m.uuid));
    return made;
  }
  async start(o: Omit<NestedOptions, 'name'> & { role: string }): Promise<NestedQemu> {
    const name = `${o.role}-${++this.st.seq}`;
    const q = await NestedQemu.start(this.target, this.st.env, { ...o, name });
    this.all.push(q);
    this.ctx.note(`${name}: ${this.st.env.prefix}${q.argv.map(shq).join(' ')}`);
    return q;
  }
  async stopAll(): Promise<void> {
    await Promise.all(this.all.map((q) => q.stop()));
    for (const q of this.all) {
      const err = q.stderr.split('\n').filter((l) => l.trim() && !/no available reset mechanism/.test(l));
      if (err.length) this.ctx.note(`${q.name} stderr: ${err.join(' | ').slice(0, 1000)}`);
    }
    // Removal waits for the device to be closed, which the QEMUs' exit above did. An instance left
    // in RESUMING by a refused or cancelled load is never reopened (mtty keeps that state across a
    // close; see environment.md), only removed.
    if (this.uuids.length) {
      await removeMtty(this.target, this.uuids).catch((e: Error) => this.ctx.note(`removing mtty instances: ${e.message}`));
      this.uuids = [];
    }
  }
}

interface PairSpec {
  backend: NestedOptions['backend'];
  caps?: Record<string, boolean>;
  dstType?: 'mtty-1' | 'mtty-2';
}

/** Source + destination QEMUs on fresh instances, the source's device programmed and loaded with a pattern. */
async function pair(ctx: CaseContext, st: QmState, vms: Vms, spec: PairSpec, seed: number) {
  const [a] = await vms.mtty('mtty-2');
  const [b] = await vms.mtty(spec.dstType ?? 'mtty-2');
  const [src, dst] = await Promise.all([
    vms.start({ role: 'src', uuid: a!.uuid, backend: spec.backend }),
    vms.start({ role: 'dst', uuid: b!.uuid, backend: spec.backend, incoming: true }),
  ]);
  const ports = await src.programBars(2);
  if (ports.length !== 2) throw new HarnessError(`source: the device's I/O BARs did not map (info pci shows ${ports.length})`);
  const p = pattern(seed);
  const wrote = await writeRegs(src, ports, p);
  const before = await readRegs(src, ports, p);
  const bad = diff(wrote, before);
  if (bad.length) throw new HarnessError(`the source device did not keep what was written before any migration: ${bad.join('; ')}`);
  if (spec.caps) await Promise.all([src.setCaps(spec.caps), dst.setCaps(spec.caps)]);
  return { src, dst, ports, p, wrote, uuids: { source: a!.uuid, destination: b!.uuid } };
}

function uri(st: QmState, tag: string): string {
  return `unix:${st.env.work}/${tag}-${st.seq}.mig`;
}

/** A migration that must complete and carry the device state. */
async function completes(ctx: CaseContext, st: QmState, spec: PairSpec, seed: number): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  try {
    const { src, dst, ports, p, wrote, uuids } = await pair(ctx, st, vms, spec, seed);
    const u = uri(st, 'mig');
    await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
    await src.qmp.execute('migrate', { uri: u }, 10_000);
    const info = await src.waitMigrationStatus(() => false, 30_000);
    const dstRun = info.status === 'completed' ? await waitRunState(dst, 'running') : await dst.status().catch(() => 'gone');
    const observed: Record<string, unknown> = {
      qemu: st.env.version?.text, backend: spec.backend, capabilities: Object.keys(spec.caps ?? {}).filter((k) => spec.caps![k]),
      ...figures(info), destinationRunState: dstRun, instances: uuids,
      vfio: { source: sideWalk(src.events, DEVICE_ID, MTTY_FLAGS), destination: sideWalk(dst.events, DEVICE_ID, MTTY_FLAGS) },
    };
    if (info.status !== 'completed') return { status: 'fail', reason: `migration ended '${info.status}'${info['error-desc'] ? `: ${info['error-desc']}` : ''}`, observed };
    if (dstRun !== 'running') return { status: 'fail', reason: `the destination is '${dstRun}' after the migration completed, not running`, observed };
    const dstPorts = await dst.ports();
    observed.destinationPorts = dstPorts.map((x) => `0x${x.toString(16)}`);
    if (dstPorts.length !== ports.length) return { status: 'fail', reason: `the destination's device has ${dstPorts.length} mapped I/O BARs, the source had ${ports.length}`, observed };
    const got = await readRegs(dst, dstPorts, p);
    observed.state = { wrote, read: got };
    const bad = diff(wrote, got);
    if (bad.length) return { status: 'fail', reason: `the device state did not arrive: ${bad.join('; ')}`, observed };
    return { status: 'pass', observed };
  } finally {
    await vms.stopAll();
  }
}

/**
 * After a migration that did not complete: the source must run again, its device back in RUNNING
 * (QEMU's last state request), with the pattern intact.
 */
async function rolledBack(src: NestedQemu, ports: number[], p: ReturnType<typeof pattern>, wrote: Regs, observed: Record<string, unknown>): Promise<string | undefined> {
  const run = await waitRunState(src, 'running');
  observed.sourceRunState = run;
  if (run !== 'running') return `the source is '${run}' afterwards, not running`;
  const states = (observed.vfio as { source: SideWalk }).source.states;
  const last = states[states.length - 1];
  if (last !== undefined && last !== 'RUNNING') return `QEMU left the source device in ${last}, not RUNNING`;
  const got = await readRegs(src, ports, p);
  observed.state = { wrote, read: got };
  const bad = diff(wrote, got);
  return bad.length ? `the source lost its device state: ${bad.join('; ')}` : undefined;
}

async function wrongType(ctx: CaseContext, st: QmState): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  try {
    const { src, dst, ports, p, wrote, uuids } = await pair(ctx, st, vms, { backend: 'container', dstType: 'mtty-1' }, 5);
    const u = uri(st, 'wrong');
    await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
    await src.qmp.execute('migrate', { uri: u }, 10_000);
    const info = await src.waitMigrationStatus(() => false, 30_000);
    // the destination's own verdict: it exits when loading fails
    const dstEnd = Date.now() + 5_000;
    while (dst.alive && Date.now() < dstEnd) await new Promise((r) => setTimeout(r, 30));
    const observed: Record<string, unknown> = {
      qemu: st.env.version?.text, backend: 'container', destinationType: 'mtty-1', ...figures(info),
      destinationExited: !dst.alive, instances: uuids,
      vfio: { source: sideWalk(src.events, DEVICE_ID, MTTY_FLAGS), destination: sideWalk(dst.events, DEVICE_ID, MTTY_FLAGS) },
    };
    if (info.status === 'completed') return { status: 'fail', reason: 'a migration of a 2-port mtty into a 1-port instance completed: the destination accepted a stream of the wrong type', observed };
    const why = await rolledBack(src, ports, p, wrote, observed);
    if (why) return { status: 'fail', reason: `migration failed as it must, but ${why}`, observed };
    return { status: 'pass', observed };
  } finally {
    await vms.stopAll();
  }
}

/** Cancel with the source stopped and its device in STOP_COPY (pause-before-switchover). */
async function cancelStopCopy(ctx: CaseContext, st: QmState): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  try {
    const { src, dst, ports, p, wrote, uuids } = await pair(ctx, st, vms, { backend: 'container' }, 6);
    await src.setCaps({ 'pause-before-switchover': true });
    const u = uri(st, 'cancel-sc');
    await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
    await src.qmp.execute('migrate', { uri: u }, 10_000);
    const paused = await src.waitMigrationStatus((s) => s === 'pre-switchover', 30_000);
    const atPause = sideWalk(src.events, DEVICE_ID, MTTY_FLAGS).states;
    const observed: Record<string, unknown> = { qemu: st.env.version?.text, backend: 'container', capabilities: ['pause-before-switchover'], statusAtCancel: paused.status, sourceStatesAtCancel: atPause, instances: uuids };
    if (paused.status !== 'pre-switchover') {
      observed.vfio = { source: sideWalk(src.events, DEVICE_ID, MTTY_FLAGS) };
      return { status: 'fail', reason: `the migration never paused before switchover (status '${paused.status}')`, observed };
    }
    const since = src.events.length;
    await src.qmp.execute('migrate_cancel', {}, 10_000);
    const info = await src.waitMigrationStatus(() => false, 20_000);
    await src.waitVfioState('running', 10_000, since).catch(() => undefined);
    Object.assign(observed, figures(info), {
      vfio: { source: sideWalk(src.events, DEVICE_ID, MTTY_FLAGS), destination: sideWalk(dst.events, DEVICE_ID, MTTY_FLAGS) },
    });
    if (atPause[atPause.length - 1] !== 'STOP_COPY') return { status: 'fail', reason: `at the pause before switchover QEMU had the device in ${atPause[atPause.length - 1] ?? 'no reported state'}, not STOP_COPY`, observed };
    if (info.status !== 'cancelled') return { status: 'fail', reason: `migration ended '${info.status}' after migrate_cancel, not cancelled`, observed };
    const why = await rolledBack(src, ports, p, wrote, observed);
    if (why) return { status: 'fail', reason: `cancelled from STOP_COPY, but ${why}`, observed };
    return { status: 'pass', observed };
  } finally {
    await vms.stopAll();
  }
}

/** A TCP listener that accepts and never reads (4 KiB receive buffer): precopy stalls and can be cancelled there. */
const STALL_LISTENER = [
  'import socket,sys',
  's=socket.socket()',
  's.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)',
  "s.bind(('127.0.0.1',0))",
  's.listen(1)',
  'print(s.getsockname()[1],flush=True)',
  'c,_=s.accept()',
  'sys.stdin.read()',
].join(';');

async function cancelPrecopy(ctx: CaseContext, st: QmState): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  const lis = await ctx.target.openChannel(`${st.env.prefix}python3 -c ${shq(STALL_LISTENER)}`);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new HarnessError('the stalling listener printed no port within 10 s')), 10_000);
      lis.on('data', (b: Buffer) => { out += b.toString(); const m = /^(\d+)\n/.exec(out); if (m) { clearTimeout(t); resolve(Number(m[1])); } });
      lis.on('close', () => { clearTimeout(t); reject(new HarnessError('the stalling listener exited')); });
    });
    const [a] = await vms.mtty('mtty-2');
    const src = await vms.start({ role: 'src', uuid: a!.uuid, backend: 'container' });
    const ports = await src.programBars(2);
    if (ports.length !== 2) throw new HarnessError(`source: the device's I/O BARs did not map (info pci shows ${ports.length})`);
    const p = pattern(7);
    const wrote = await writeRegs(src, ports, p);
    await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` }, 10_000);
    await src.waitVfioState('pre-copy', 20_000);
    const during = await src.migration();
    const atCancel = sideWalk(src.events, DEVICE_ID, MTTY_FLAGS).states;
    const since = src.events.length;
    await src.qmp.execute('migrate_cancel', {}, 10_000);
    const info = await src.waitMigrationStatus(() => false, 20_000);
    await src.waitVfioState('running', 10_000, since).catch(() => undefined);
    const observed: Record<string, unknown> = {
      qemu: st.env.version?.text, backend: 'container', statusAtCancel: during.status, sourceStatesAtCancel: atCancel,
      ramBytesAtCancel: during.ram?.transferred, ...figures(info), instances: { source: a!.uuid },
      vfio: { source: sideWalk(src.events, DEVICE_ID, MTTY_FLAGS) },
    };
    if (during.status !== 'active') return { status: 'fail', reason: `the migration was '${during.status}' when the device reached PRE_COPY, not active (it did not stall in precopy)`, observed };
    if (!['PRE_COPY', 'PRE_COPY_P2P'].includes(atCancel[atCancel.length - 1] ?? '')) return { status: 'fail', reason: `QEMU had the device in ${atCancel[atCancel.length - 1]} at the cancel, not in precopy`, observed };
    if (info.status !== 'cancelled') return { status: 'fail', reason: `migration ended '${info.status}' after migrate_cancel, not cancelled`, observed };
    const why = await rolledBack(src, ports, p, wrote, observed);
    if (why) return { status: 'fail', reason: `cancelled during precopy, but ${why}`, observed };
    return { status: 'pass', observed };
  } finally {
    await vms.stopAll();
    try { lis.close(); } catch { /* gone */ }
  }
}

/**
 * One VM migrated back and forth: each hop onto a fresh instance, a new pattern written before each
 * hop. The next hop's destination QEMU starts while the current migration runs, and a finished
 * source quits in the background: a nested QEMU start (~0.8 s) is most of a hop's cost.
 */
async function roundTrips(ctx: CaseContext, st: QmState, n: number): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  const hops: Record<string, unknown>[] = [];
  const walks: SideWalk[] = [];
  const observed: Record<string, unknown> = { qemu: st.env.version?.text, backend: 'container', roundTrips: n, hops, vfio: { hops: walks } };
  let next: Promise<NestedQemu> | undefined;
  const stopping: Promise<void>[] = [];
  try {
    const inst = await vms.mtty('mtty-2', 2 * n + 1);
    const startDst = (h: number) => vms.start({ role: 'vm', uuid: inst[h + 1]!.uuid, backend: 'container', incoming: true });
    next = startDst(0);
    let src = await vms.start({ role: 'vm', uuid: inst[0]!.uuid, backend: 'container' });
    let ports = await src.programBars(2);
    if (ports.length !== 2) throw new HarnessError(`the device's I/O BARs did not map (info pci shows ${ports.length})`);
    for (let h = 0; h < 2 * n; h++) {
      const hopStart = Date.now();
      const p = pattern(20 + h);
      const wrote = await writeRegs(src, ports, p);
      const wroteAt = Date.now();
      const dst = await next!;
      next = undefined;
      const dstAt = Date.now();
      const u = uri(st, `hop${h}`);
      await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
      await src.qmp.execute('migrate', { uri: u }, 10_000);
      if (h + 1 < 2 * n) next = startDst(h + 1);
      const info = await src.waitMigrationStatus(() => false, 30_000);
      const hop: Record<string, unknown> = { hop: h + 1, ...figures(info) };
      hops.push(hop);
      walks.push(sideWalk(src.events, DEVICE_ID, MTTY_FLAGS));
      if (info.status !== 'completed') return { status: 'fail', reason: `hop ${h + 1} of ${2 * n} ended '${info.status}'${info['error-desc'] ? `: ${info['error-desc']}` : ''}`, observed };
      const run = await waitRunState(dst, 'running');
      if (run !== 'running') return { status: 'fail', reason: `after hop ${h + 1} the destination is '${run}', not running`, observed };
      const dstPorts = await dst.ports();
      const got = dstPorts.length === 2 ? await readRegs(dst, dstPorts, p) : {};
      hop.state = { wrote, read: got };
      const bad = diff(wrote, got);
      if (bad.length) return { status: 'fail', reason: `hop ${h + 1}: the device state did not arrive: ${bad.join('; ')}`, observed };
      ctx.note(`hop ${h + 1}: ${Date.now() - hopStart} ms (pattern written ${wroteAt - hopStart} ms, waited ${dstAt - wroteAt} ms for the destination QEMU, QEMU's total time ${info['total-time']} ms)`);
      stopping.push(src.stop());
      src = dst;
      ports = dstPorts;
    }
    // the VM's last home: its walk so far (RESUMING -> RUNNING_P2P -> RUNNING)
    walks.push(sideWalk(src.events, DEVICE_ID, MTTY_FLAGS));
    const num = (k: string) => hops.map((x) => x[k]).filter((v): v is number => typeof v === 'number');
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    Object.assign(observed, {
      migrations: hops.length,
      totalTimeMs: sum(num('totalTimeMs')), downtimeMs: Math.max(...num('downtimeMs')), setupTimeMs: Math.max(...num('setupTimeMs')),
      deviceBytes: sum(num('deviceBytes')),
    });
    return { status: 'pass', observed };
  } finally {
    await next?.catch(() => undefined);
    await Promise.all(stopping);
    await vms.stopAll();
  }
}

interface CaseSpec { id: string; timeoutMs?: number; run: (ctx: CaseContext, st: QmState) => Promise<CaseOutcome> }

const CASES: CaseSpec[] = [
  { id: 'legacy-container', run: (ctx, st) => completes(ctx, st, { backend: 'container' }, 1) },
  { id: 'iommufd', run: (ctx, st) => completes(ctx, st, { backend: 'iommufd' }, 2) },
  { id: 'return-path+switchover-ack', run: (ctx, st) => completes(ctx, st, { backend: 'container', caps: { 'return-path': true, 'switchover-ack': true } }, 3) },
  { id: 'multifd', run: (ctx, st) => completes(ctx, st, { backend: 'container', caps: { multifd: true } }, 4) },
  { id: 'wrong-type-destination', run: wrongType },
  { id: 'cancel-stop-copy', run: cancelStopCopy },
  { id: 'cancel-precopy', run: cancelPrecopy },
  { id: `round-trips-${ROUND_TRIPS}`, timeoutMs: 90_000, run: (ctx, st) => roundTrips(ctx, st, ROUND_TRIPS) },
];

export const CASE_IDS = CASES.map((c) => `${SUITE}/${c.id}`);

export const qemuMigrationSuite: Suite<QmState> & { machine: typeof machine } = {
  name: SUITE,
  machine,
  async setup(target: Target): Promise<{ state: QmState; cases: CaseDef<QmState>[] }> {
    const env = await detectClient(target);
    const state: QmState = { env, seq: 0 };
    const device: DeviceInfo = { ...DEVICE, fingerprint: { client: `QEMU ${env.version?.text ?? '?'} (${env.kind})`, migrationFlags: MTTY_FLAGS } };
    const cases = CASES.map((c): CaseDef<QmState> => ({
      id: `${SUITE}/${c.id}`,
      device,
      timeoutMs: c.timeoutMs ?? 45_000,
      run: async (st, ctx) => {
        if (st.env.missing) return { status: 'skip', reason: st.env.missing };
        if (st.env.unsupported) return { status: 'expected-unsupported', reason: st.env.unsupported, observed: { qemu: st.env.version?.text } };
        return c.run(ctx, st);
      },
    }));
    return { state, cases };
  },
  async teardown(state: QmState, target: Target): Promise<void> {
    // a case that threw half-way may leave a nested QEMU: end every one this suite started, by pid file
    await target.exec(`for f in ${state.env.work}/*.pid; do [ -f "$f" ] && kill -9 $(cat "$f") 2>/dev/null; done; true`, { timeoutMs: 10_000 }).catch(() => undefined);
  },
};
