import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import type { MigrationInfo } from '../../harness/qemu/qmp.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import { HarnessError } from '../../base/errors.js';
import type { CaseContext, CaseDef, CaseOutcome, Suite } from '../types.js';
import { ALL_FLAGS, Flag } from '../migration/model.js';
import { detectClient, NestedQemu, DEVICE_ID, shq, vfioHostId, type ClientEnv, type NestedOptions, type VfioHost } from './nested.js';
import { migrationRefusal, sideWalk, type SideWalk } from './parse.js';
import {
  distinctSlots, flagGap, kindOf, mttySource, readDeviceFacts, realSource,
  type Backend, type DeviceSource, type Need, type Slot,
} from './devices.js';
import type { StateCheck } from './state.js';
import { NESTED_MEM_MIB } from '../../images/rootfs/build.js';

export { arcCoverage } from './parse.js';

/**
 * The real client: inside the target, a QEMU new enough for VFIO migration v2 live-migrates a VM
 * that holds a VFIO device, over QMP, and the suite checks what a user of that QEMU relies on: the
 * migration completes, the destination runs, the device state arrived; a refused destination and a
 * cancel leave the source running with its state. Each case records QEMU's own figures (total
 * time, downtime, setup time, device bytes) and the mdev UUIDs it used as measurements, apart from
 * what it observed, so two runs of the same behaviour compare clean; and the device states QEMU
 * walked (VFIO_MIGRATION events of both sides), which arcCoverage() turns into FSM arcs.
 *
 * The suite starts no machine of the harness: the nested QEMUs are the device's client, started by
 * commands run on the target. The target must carry such a QEMU: the harness's guest gets it from
 * the Debian rootfs (images/rootfs, served over virtio-9p; see `machine` below), a lab host brings
 * its own (`--qemu PATH`) and runs it directly. A QEMU older than 8.0 gives expected-unsupported.
 *
 * The devices (devices.ts): in the guest, fresh mtty instances per case (`vfio-pci,sysfsdev=`),
 * whose content the cases check through the nested guest's I/O ports; on a lab host, the --device
 * list (`vfio-pci,host=`), paired by vendor:device, whose content is read back for virtio-net VFs
 * and otherwise not verified (state.ts); a profile's guest devices are filed as class variant. A
 * driver without migration support makes QEMU refuse: expected-unsupported, in QEMU's words.
 */

const SUITE = 'qemu-migration';
/** round trips of one VM in the round-trip case (2 migrations each) */
export const ROUND_TRIPS = 3;

export interface QmState {
  env: ClientEnv;
  seq: number;
  source: DeviceSource;
}

/** What the harness must give the guest this suite runs in (runner/suite-machine.ts provides it; see the report). */
export const machine = { rootfs: 'debian-qemu' as const, memMiB: NESTED_MEM_MIB, smp: 2 };

/** How a migration ended, in QEMU's words: the same on every run of the same behaviour. */
function ending(info: MigrationInfo): Record<string, unknown> {
  return { status: info.status, ...(info['error-desc'] ? { error: info['error-desc'] } : {}) };
}

/**
 * QEMU's own figures of a migration. They vary from run to run of the same behaviour (time, and
 * RAM bytes with what the guest touched), so they are measurements: shown and plotted, never
 * compared as a change.
 */
function figures(info: MigrationInfo): Record<string, unknown> {
  return {
    totalTimeMs: info['total-time'],
    downtimeMs: info.downtime,
    setupTimeMs: info['setup-time'],
    deviceBytes: info.vfio?.transferred,
    ramBytes: info.ram?.transferred,
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

/**
 * The states QEMU set on this VM's device and the kernel arcs they imply. A device whose flags are
 * unknown (no cdev to ask) keeps its walk, but claims no arcs: the path depends on the flags.
 */
function walk(st: QmState, q: NestedQemu, h: VfioHost): SideWalk {
  const flags = st.source.flags(h);
  const w = sideWalk(q.events, DEVICE_ID, flags ?? ALL_FLAGS);
  return flags === undefined ? { ...w, arcs: [] } : w;
}

/** Every nested QEMU a case started is stopped, whatever happened; their stderr goes to the log. */
class Vms {
  private all: NestedQemu[] = [];
  private held: VfioHost[] = [];
  constructor(private readonly target: Target, private readonly st: QmState, private readonly ctx: CaseContext) {}
  /** the case's devices; the source undoes what it made for them when the case ends */
  async devices(slots: Slot[]): Promise<VfioHost[]> {
    const hosts = await this.st.source.acquire(slots);
    this.held.push(...hosts);
    return hosts;
  }
  async start(o: Omit<NestedOptions, 'name'> & { role: string }): Promise<NestedQemu> {
    const name = `${o.role}-${++this.st.seq}`;
    const q = await NestedQemu.start(this.target, this.st.env, { ...o, name });
    this.all.push(q);
    this.ctx.note(`${name}: ${this.st.env.prefix}${q.argv.map(shq).join(' ')}`);
    return q;
  }
  async stop(q: NestedQemu): Promise<void> {
    await q.stop();
    this.logStderr(q);
    this.all = this.all.filter((x) => x !== q);
  }
  async stopAll(): Promise<void> {
    await Promise.all(this.all.map((q) => q.stop()));
    for (const q of this.all) this.logStderr(q);
    this.all = [];
    // Releasing waits for the devices to be closed, which the QEMUs' exit above did. An mtty
    // instance left in RESUMING by a refused or cancelled load is never reopened (mtty keeps that
    // state across a close; see environment.md), only removed.
    if (this.held.length) {
      await this.st.source.release(this.held).catch((e: Error) => this.ctx.note(`releasing the devices: ${e.message}`));
      this.held = [];
    }
  }
  private logStderr(q: NestedQemu): void {
    const err = q.stderr.split('\n').filter((l) => l.trim() && !/no available reset mechanism/.test(l));
    if (err.length) this.ctx.note(`${q.name} stderr: ${err.join(' | ').slice(0, 1000)}`);
  }
}

/** A started pair of QEMUs, its device content loaded on the source. */
interface Pair {
  src: NestedQemu;
  dst: NestedQemu;
  hosts: VfioHost[];
  state: StateCheck;
}

/**
 * Source + destination QEMUs on the planned devices. Both start at once; when one fails, the
 * other is still waited for, so it is stopped with the case and never holds its device into the next.
 */
async function pair(st: QmState, vms: Vms, slots: Slot[], backend: Backend, seed: number, caps?: Record<string, boolean>): Promise<Pair> {
  const hosts = await vms.devices(slots);
  const started = await Promise.allSettled([
    vms.start({ role: 'src', device: hosts[0]!, backend }),
    vms.start({ role: 'dst', device: hosts[1]!, backend, incoming: true }),
  ]);
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const [src, dst] = started.map((r) => (r as PromiseFulfilledResult<NestedQemu>).value) as [NestedQemu, NestedQemu];
  const state = st.source.state();
  await state.load(src, seed);
  if (caps) await Promise.all([src.setCaps(caps), dst.setCaps(caps)]);
  await src.setParams(st.source.migrationParams ?? {});
  return { src, dst, hosts, state };
}

/** The migration parameters the source was given, for the record (none for mtty). */
function params(st: QmState): Record<string, unknown> {
  return st.source.migrationParams ? { parameters: st.source.migrationParams } : {};
}

function uri(st: QmState, tag: string): string {
  return `unix:${st.env.work}/${tag}-${st.seq}.mig`;
}

function roles(hosts: VfioHost[]): Record<string, string> {
  return hosts.length > 1 ? { source: vfioHostId(hosts[0]!), destination: vfioHostId(hosts[1]!) } : { source: vfioHostId(hosts[0]!) };
}

/**
 * What a completed migration must show whatever the device: QEMU walked the source device through
 * its states (when it reports them) and moved device bytes (when it counts them).
 */
function deviceTookPart(st: QmState, measured: Record<string, unknown>, source: SideWalk): string | undefined {
  if (st.env.options.migrationEvents && !source.states.length) return 'QEMU reported no VFIO_MIGRATION event of the source device (migration-events=on): the device took no part in the migration';
  if (measured.deviceBytes === 0) return 'QEMU reports 0 device bytes transferred';
  return undefined;
}

interface Migrate { backend: Backend; seed: number; caps?: Record<string, boolean> }

/** A migration that must complete and carry the device state. */
async function completes(ctx: CaseContext, st: QmState, slots: Slot[], m: Migrate): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  try {
    const { src, dst, hosts, state } = await pair(st, vms, slots, m.backend, m.seed, m.caps);
    const u = uri(st, 'mig');
    await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
    await src.qmp.execute('migrate', { uri: u }, 10_000);
    const info = await src.waitMigrationStatus(() => false, 30_000);
    const dstRun = info.status === 'completed' ? await waitRunState(dst, 'running') : await dst.status().catch(() => 'gone');
    const vfio = { source: walk(st, src, hosts[0]!), destination: walk(st, dst, hosts[1]!) };
    const observed: Record<string, unknown> = {
      qemu: st.env.version?.text, backend: m.backend, capabilities: Object.keys(m.caps ?? {}).filter((k) => m.caps![k]),
      ...params(st), ...ending(info), destinationRunState: dstRun, vfio,
    };
    const measurements = { ...figures(info), devices: roles(hosts) };
    if (info.status !== 'completed') return { status: 'fail', reason: `migration ended '${info.status}'${info['error-desc'] ? `: ${info['error-desc']}` : ''}`, observed, measurements };
    if (dstRun !== 'running') return { status: 'fail', reason: `the destination is '${dstRun}' after the migration completed, not running`, observed, measurements };
    const absent = deviceTookPart(st, measurements, vfio.source);
    if (absent) return { status: 'fail', reason: absent, observed, measurements };
    const bad = await state.verify(dst, observed);
    if (bad) return { status: 'fail', reason: `the device state did not arrive: ${bad}`, observed, measurements };
    return { status: 'pass', observed, measurements };
  } finally {
    await vms.stopAll();
  }
}

/**
 * After a migration that did not complete: the source must run again, its device back in RUNNING
 * (QEMU's last state request), with its content intact.
 */
async function rolledBack(src: NestedQemu, state: StateCheck, observed: Record<string, unknown>): Promise<string | undefined> {
  const run = await waitRunState(src, 'running');
  observed.sourceRunState = run;
  if (run !== 'running') return `the source is '${run}' afterwards, not running`;
  const states = (observed.vfio as { source: SideWalk }).source.states;
  const last = states[states.length - 1];
  if (last !== undefined && last !== 'RUNNING') return `QEMU left the source device in ${last}, not RUNNING`;
  const bad = await state.verify(src, observed);
  return bad ? `the source lost its device state: ${bad}` : undefined;
}

/** mtty-2 / mtty-1, or vendor:device */
function slotKind(s: Slot): string {
  return s.kind === 'mdev' ? s.type : kindOf(s.dev);
}

async function wrongType(ctx: CaseContext, st: QmState, slots: Slot[], backend: Backend): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  try {
    const { src, dst, hosts, state } = await pair(st, vms, slots, backend, 5);
    const u = uri(st, 'wrong');
    await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
    await src.qmp.execute('migrate', { uri: u }, 10_000);
    const info = await src.waitMigrationStatus(() => false, 30_000);
    // the destination's own verdict: it exits when loading fails
    const dstEnd = Date.now() + 5_000;
    while (dst.alive && Date.now() < dstEnd) await new Promise((r) => setTimeout(r, 30));
    const [from, into] = slots.map(slotKind) as [string, string];
    const observed: Record<string, unknown> = {
      qemu: st.env.version?.text, backend, sourceType: from, destinationType: into, ...ending(info),
      destinationExited: !dst.alive,
      vfio: { source: walk(st, src, hosts[0]!), destination: walk(st, dst, hosts[1]!) },
    };
    const measurements = { ...figures(info), devices: roles(hosts) };
    if (info.status === 'completed') return { status: 'fail', reason: `a migration from ${from} into ${into} completed: the destination accepted a stream of the wrong type`, observed, measurements };
    const why = await rolledBack(src, state, observed);
    if (why) return { status: 'fail', reason: `migration failed as it must, but ${why}`, observed, measurements };
    return { status: 'pass', observed, measurements };
  } finally {
    await vms.stopAll();
  }
}

/** Cancel with the source stopped and its device in STOP_COPY (pause-before-switchover). */
async function cancelStopCopy(ctx: CaseContext, st: QmState, slots: Slot[], backend: Backend): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  try {
    const { src, dst, hosts, state } = await pair(st, vms, slots, backend, 6);
    await src.setCaps({ 'pause-before-switchover': true });
    const u = uri(st, 'cancel-sc');
    await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
    await src.qmp.execute('migrate', { uri: u }, 10_000);
    const paused = await src.waitMigrationStatus((s) => s === 'pre-switchover', 30_000);
    const atPause = walk(st, src, hosts[0]!).states;
    const observed: Record<string, unknown> = { qemu: st.env.version?.text, backend, capabilities: ['pause-before-switchover'], statusAtCancel: paused.status, sourceStatesAtCancel: atPause };
    const measurements: Record<string, unknown> = { devices: roles(hosts) };
    if (paused.status !== 'pre-switchover') {
      observed.vfio = { source: walk(st, src, hosts[0]!) };
      return { status: 'fail', reason: `the migration never paused before switchover (status '${paused.status}')`, observed, measurements };
    }
    const info = await cancel(src);
    Object.assign(observed, ending(info), { vfio: { source: walk(st, src, hosts[0]!), destination: walk(st, dst, hosts[1]!) } });
    Object.assign(measurements, figures(info));
    if (atPause[atPause.length - 1] !== 'STOP_COPY') return { status: 'fail', reason: `at the pause before switchover QEMU had the device in ${atPause[atPause.length - 1] ?? 'no reported state'}, not STOP_COPY`, observed, measurements };
    if (info.status !== 'cancelled') return { status: 'fail', reason: `migration ended '${info.status}' after migrate_cancel, not cancelled`, observed, measurements };
    const why = await rolledBack(src, state, observed);
    if (why) return { status: 'fail', reason: `cancelled from STOP_COPY, but ${why}`, observed, measurements };
    return { status: 'pass', observed, measurements };
  } finally {
    await vms.stopAll();
  }
}

/** migrate_cancel, then wait for QEMU's final status and for the source device to be back in RUNNING. */
async function cancel(src: Awaited<ReturnType<Vms['start']>>): Promise<Awaited<ReturnType<typeof src.waitMigrationStatus>>> {
  const since = src.events.length;
  await src.qmp.execute('migrate_cancel', {}, 10_000);
  const info = await src.waitMigrationStatus(() => false, 20_000);
  await src.waitVfioState('running', 10_000, since).catch(() => undefined);
  return info;
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

async function cancelPrecopy(ctx: CaseContext, st: QmState, slots: Slot[], backend: Backend): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  const lis = await ctx.target.openChannel(`${st.env.prefix}python3 -c ${shq(STALL_LISTENER)}`);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new HarnessError('the stalling listener printed no port within 10 s')), 10_000);
      lis.on('data', (b: Buffer) => { out += b.toString(); const m = /^(\d+)\n/.exec(out); if (m) { clearTimeout(t); resolve(Number(m[1])); } });
      lis.on('close', () => { clearTimeout(t); reject(new HarnessError('the stalling listener exited')); });
    });
    const [host] = await vms.devices(slots);
    const src = await vms.start({ role: 'src', device: host!, backend });
    const state = st.source.state();
    await state.load(src, 7);
    await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` }, 10_000);
    await src.waitVfioState('pre-copy', 20_000);
    const during = await src.migration();
    const atCancel = walk(st, src, host!).states;
    const info = await cancel(src);
    const observed: Record<string, unknown> = {
      qemu: st.env.version?.text, backend, statusAtCancel: during.status, sourceStatesAtCancel: atCancel,
      ...ending(info), vfio: { source: walk(st, src, host!) },
    };
    const measurements = { ramBytesAtCancel: during.ram?.transferred, ...figures(info), devices: roles([host!]) };
    if (during.status !== 'active') return { status: 'fail', reason: `the migration was '${during.status}' when the device reached PRE_COPY, not active (it did not stall in precopy)`, observed, measurements };
    if (!['PRE_COPY', 'PRE_COPY_P2P'].includes(atCancel[atCancel.length - 1] ?? '')) return { status: 'fail', reason: `QEMU had the device in ${atCancel[atCancel.length - 1]} at the cancel, not in precopy`, observed, measurements };
    if (info.status !== 'cancelled') return { status: 'fail', reason: `migration ended '${info.status}' after migrate_cancel, not cancelled`, observed, measurements };
    const why = await rolledBack(src, state, observed);
    if (why) return { status: 'fail', reason: `cancelled during precopy, but ${why}`, observed, measurements };
    return { status: 'pass', observed, measurements };
  } finally {
    await vms.stopAll();
    try { lis.close(); } catch { /* gone */ }
  }
}

/**
 * One VM migrated back and forth, a new content loaded before each hop. mtty gives each hop a fresh
 * instance, so the next hop's destination QEMU starts while the current migration runs and a
 * finished source quits in the background (a nested QEMU start, ~0.8 s, is most of a hop's cost).
 * A lab host's pair is reused: the next destination is the device the source leaves, so it starts
 * once that QEMU has quit.
 */
async function roundTrips(ctx: CaseContext, st: QmState, slots: Slot[], backend: Backend, n: number): Promise<CaseOutcome> {
  const vms = new Vms(ctx.target, st, ctx);
  const hops: Record<string, unknown>[] = [];
  const walks: SideWalk[] = [];
  const hopFigures: Record<string, unknown>[] = [];
  const observed: Record<string, unknown> = { qemu: st.env.version?.text, backend, roundTrips: n, ...params(st), hops, vfio: { hops: walks } };
  const measurements: Record<string, unknown> = { hops: hopFigures };
  let next: Promise<NestedQemu> | undefined;
  const stopping: Promise<void>[] = [];
  try {
    const homes = await vms.devices(slots);
    measurements.devices = homes.map(vfioHostId);
    const fresh = distinctSlots(homes);
    const startDst = (h: number) => vms.start({ role: 'vm', device: homes[h + 1]!, backend, incoming: true });
    next = startDst(0);
    let src = await vms.start({ role: 'vm', device: homes[0]!, backend });
    const state = st.source.state();
    for (let h = 0; h < 2 * n; h++) {
      const hopStart = Date.now();
      await state.load(src, 20 + h);
      const wroteAt = Date.now();
      const dst = await next!;
      next = undefined;
      const dstAt = Date.now();
      const u = uri(st, `hop${h}`);
      await dst.qmp.execute('migrate-incoming', { uri: u }, 10_000);
      await src.setParams(st.source.migrationParams ?? {});
      await src.qmp.execute('migrate', { uri: u }, 10_000);
      if (fresh && h + 1 < 2 * n) next = startDst(h + 1);
      const info = await src.waitMigrationStatus(() => false, 30_000);
      const hop: Record<string, unknown> = { hop: h + 1, ...ending(info) };
      const measured = { hop: h + 1, ...figures(info) };
      hops.push(hop);
      hopFigures.push(measured);
      walks.push(walk(st, src, homes[h]!));
      if (info.status !== 'completed') return { status: 'fail', reason: `hop ${h + 1} of ${2 * n} ended '${info.status}'${info['error-desc'] ? `: ${info['error-desc']}` : ''}`, observed, measurements };
      const run = await waitRunState(dst, 'running');
      if (run !== 'running') return { status: 'fail', reason: `after hop ${h + 1} the destination is '${run}', not running`, observed, measurements };
      const absent = deviceTookPart(st, measured, walks[walks.length - 1]!);
      if (absent) return { status: 'fail', reason: `hop ${h + 1}: ${absent}`, observed, measurements };
      const bad = await state.verify(dst, hop);
      if (bad) return { status: 'fail', reason: `hop ${h + 1}: the device state did not arrive: ${bad}`, observed, measurements };
      ctx.note(`hop ${h + 1}: ${Date.now() - hopStart} ms (content loaded ${wroteAt - hopStart} ms, waited ${dstAt - wroteAt} ms for the destination QEMU, QEMU's total time ${info['total-time']} ms)`);
      if (fresh) {
        stopping.push(src.stop());
      } else {
        await vms.stop(src);
        if (h + 1 < 2 * n) next = startDst(h + 1);
      }
      src = dst;
    }
    // the VM's last home: its walk so far (RESUMING -> RUNNING_P2P -> RUNNING)
    walks.push(walk(st, src, homes[2 * n]!));
    const num = (k: string) => hopFigures.map((x) => x[k]).filter((v): v is number => typeof v === 'number');
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    observed.migrations = hops.length;
    Object.assign(measurements, {
      totalTimeMs: sum(num('totalTimeMs')), downtimeMs: Math.max(...num('downtimeMs')), setupTimeMs: Math.max(...num('setupTimeMs')),
      deviceBytes: sum(num('deviceBytes')),
    });
    return { status: 'pass', observed, measurements };
  } finally {
    await next?.catch(() => undefined);
    await Promise.all(stopping);
    await vms.stopAll();
  }
}

/**
 * A device whose driver offers no migration (a virtio-net VF whose PF has no administration
 * virtqueue, under virtio_vfio_pci): the driver's own answer must be the uAPI's "no migration"
 * (VFIO_DEVICE_FEATURE_MIGRATION fails with ENOTTY: the device has no migration ops), and QEMU
 * must refuse to migrate it. Both together are the device's known answer: expected-unsupported.
 */
async function unsupportedDevice(ctx: CaseContext, st: QmState, slots: Slot[], backend: Backend): Promise<CaseOutcome> {
  const bdf = slots[0]?.kind === 'pci' ? slots[0].dev.bdf : '?';
  const answer = st.source.answer?.(bdf);
  const observed: Record<string, unknown> = { qemu: st.env.version?.text, devices: [bdf], driverAnswer: answer ?? 'not asked' };
  if (answer !== 'ENOTTY') return { status: 'fail', reason: `VFIO_DEVICE_FEATURE_MIGRATION on ${bdf} gave ${answer ?? 'no answer'}, not ENOTTY (a driver without migration ops)`, observed };
  const vms = new Vms(ctx.target, st, ctx);
  try {
    let refusal: string | undefined;
    try {
      const [host] = await vms.devices(slots);
      const src = await vms.start({ role: 'src', device: host!, backend });
      await src.qmp.execute('migrate', { uri: uri(st, 'unsupported') }, 10_000);
    } catch (e) {
      refusal = migrationRefusal((e as Error).message);
      if (!refusal) throw e;
    }
    if (!refusal) return { status: 'fail', reason: `QEMU started migrating ${bdf}, whose driver answered ENOTTY: it offers no migration`, observed };
    observed.refusal = refusal;
    return { status: 'expected-unsupported', reason: `${bdf}: its driver offers no migration (VFIO_DEVICE_FEATURE_MIGRATION: ENOTTY), and QEMU refuses it: ${refusal}`, observed };
  } finally {
    await vms.stopAll();
  }
}

interface CaseSpec {
  id: string;
  need: Need;
  backend: Backend;
  /** migration flags the case needs of its source device, and why */
  requires?: { flags: number; why: string };
  timeoutMs?: number;
  run: (ctx: CaseContext, st: QmState, slots: Slot[], backend: Backend) => Promise<CaseOutcome>;
}

const CASES: CaseSpec[] = [
  { id: 'legacy-container', need: 'pair', backend: 'container', run: (ctx, st, d, b) => completes(ctx, st, d, { backend: b, seed: 1 }) },
  { id: 'iommufd', need: 'pair', backend: 'iommufd', run: (ctx, st, d, b) => completes(ctx, st, d, { backend: b, seed: 2 }) },
  { id: 'return-path+switchover-ack', need: 'pair', backend: 'container', run: (ctx, st, d, b) => completes(ctx, st, d, { backend: b, seed: 3, caps: { 'return-path': true, 'switchover-ack': true } }) },
  { id: 'multifd', need: 'pair', backend: 'container', run: (ctx, st, d, b) => completes(ctx, st, d, { backend: b, seed: 4, caps: { multifd: true } }) },
  { id: 'wrong-type-destination', need: 'wrong-type', backend: 'container', run: wrongType },
  { id: 'cancel-stop-copy', need: 'pair', backend: 'container', run: cancelStopCopy },
  {
    id: 'cancel-precopy', need: 'single', backend: 'container', run: cancelPrecopy,
    requires: { flags: Flag.PRE_COPY, why: 'QEMU has no device precopy phase to cancel in' },
  },
  { id: `round-trips-${ROUND_TRIPS}`, need: { hops: 2 * ROUND_TRIPS }, backend: 'container', timeoutMs: 90_000, run: (ctx, st, d, b) => roundTrips(ctx, st, d, b, ROUND_TRIPS) },
  { id: 'unsupported-device', need: 'unsupported', backend: 'container', run: unsupportedDevice },
];

export const CASE_IDS = CASES.map((c) => `${SUITE}/${c.id}`);

/** The devices a run of this suite uses: the lab host's when --device gave any, mtty otherwise. */
async function deviceSource(target: Target, agent: AgentClient, env: ClientEnv): Promise<DeviceSource> {
  const devs = target.devices ?? [];
  if (!devs.length) return mttySource(target);
  // a client that cannot run makes every case skip or expected-unsupported: nothing to ask the devices
  const facts = env.missing || env.unsupported ? new Map() : await readDeviceFacts(agent, devs);
  // In the harness's guest the devices are our QEMU's emulation driven by a variant driver, and mtty is there.
  const guest = target.kind === 'qemu';
  return realSource(devs, facts, { cls: guest ? 'variant' : 'real', mtty: guest ? target : undefined });
}

/** A client that cannot run decides every case, before the devices are looked at. */
export function clientGate(env: ClientEnv): CaseOutcome | undefined {
  if (env.missing) return { status: 'skip', reason: env.missing };
  if (env.unsupported) return { status: 'expected-unsupported', reason: env.unsupported, observed: { qemu: env.version?.text } };
  return undefined;
}

/** A source device whose flags lack what the case exercises: the device's known answer. */
export function flagsGate(st: QmState, c: Pick<CaseSpec, 'requires'>, slots: Slot[]): CaseOutcome | undefined {
  const first = slots[0];
  if (!c.requires || first?.kind !== 'pci') return undefined;
  const gap = flagGap(st.source.flags({ kind: 'pci', bdf: first.dev.bdf }), c.requires.flags);
  return gap ? { status: 'expected-unsupported', reason: `${gap}: ${c.requires.why}`, observed: { qemu: st.env.version?.text, devices: [first.dev.bdf] } } : undefined;
}

/**
 * A lab host's driver without migration support makes QEMU refuse the device (at start, or as the
 * blocker `migrate` answers with): the kernel's known answer for that device, not a failure. mtty
 * migrates on every kernel the harness builds, so there a refusal stays an error.
 */
export function refused(st: QmState, e: unknown, slots: Slot[]): CaseOutcome | undefined {
  const why = st.source.kind === 'real' ? migrationRefusal((e as Error)?.message ?? '') : undefined;
  if (!why) return undefined;
  const devices = slots.flatMap((s) => (s.kind === 'pci' ? [s.dev.bdf] : []));
  return { status: 'expected-unsupported', reason: why, observed: { qemu: st.env.version?.text, devices } };
}

export const qemuMigrationSuite: Suite<QmState> & { machine: typeof machine } = {
  name: SUITE,
  machine,
  async setup(target, agent): Promise<{ state: QmState; cases: CaseDef<QmState>[] }> {
    const env = await detectClient(target);
    const state: QmState = { env, seq: 0, source: await deviceSource(target, agent, env) };
    const client = `QEMU ${env.version?.text ?? '?'} (${env.kind})`;
    const cases = CASES.map((c): CaseDef<QmState> => {
      const plan = state.source.plan(c.need, c.backend);
      const info = state.source.info(plan);
      const device: DeviceInfo = { ...info, fingerprint: { client, ...info.fingerprint } };
      return {
        id: `${SUITE}/${c.id}`,
        device,
        timeoutMs: c.timeoutMs ?? 45_000,
        run: async (st, ctx) => {
          const gate = clientGate(st.env);
          if (gate) return gate;
          if ('skip' in plan) return { status: 'skip', reason: plan.skip };
          const gap = flagsGate(st, c, plan.slots);
          if (gap) return gap;
          try {
            return await c.run(ctx, st, plan.slots, c.backend);
          } catch (e) {
            const r = refused(st, e, plan.slots);
            if (r) return r;
            throw e;
          }
        },
      };
    });
    return { state, cases };
  },
  list: () => CASE_IDS.map((id) => ({ id, known: 'static' as const })),
  async teardown(state: QmState, target: Target): Promise<void> {
    // a case that threw half-way may leave a nested QEMU: end every one this suite started, by pid file
    await target.exec(`for f in ${state.env.work}/*.pid; do [ -f "$f" ] && kill -9 $(cat "$f") 2>/dev/null; done; true`, { timeoutMs: 10_000 }).catch(() => undefined);
  },
};
