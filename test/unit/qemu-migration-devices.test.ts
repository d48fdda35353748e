import t from 'tap';
import { Duplex, PassThrough } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import type { AgentClient, AgentReply } from '../../harness/agent/client.js';
import type { BoundDevice } from '../../harness/devices/manager.js';
import type { ExecResult } from '../../harness/ssh/client.js';
import type { Target } from '../../harness/target/target.js';
import type { CaseContext } from '../../suites/types.js';
import {
  describeKinds, differentPair, distinctSlots, flagGap, kindOf, migratingFirst, planMtty, planReal, realSource, REAL_MIGRATION_PARAMS, samePair, type Plan,
} from '../../suites/qemu-migration/devices.js';
import { nestedArgs, type ClientEnv } from '../../suites/qemu-migration/nested.js';
import { migrationRefusal, vfioOptions } from '../../suites/qemu-migration/parse.js';
import { diffVirtio, NOT_VERIFIED, Unverified, VirtioNetState, virtioPattern } from '../../suites/qemu-migration/state.js';
import { CASE_IDS, qemuMigrationSuite } from '../../suites/qemu-migration/index.js';
import type { NestedQemu } from '../../suites/qemu-migration/nested.js';

// --device as the device manager hands it over: sysfs ids with their 0x
const vf = (bdf: string, vendor = '0x15b3', device = '0x101e'): BoundDevice =>
  ({ bdf, driver: 'mlx5_vfio_pci', vendor, device, iommuGroup: bdf.slice(-1), cdev: `/dev/vfio/devices/vfio${bdf.slice(-1)}`, physfn: '0000:3b:00.0' });
const A = vf('0000:3b:00.1');
const B = vf('0000:3b:00.2');
const NIC = vf('0000:5e:00.3', '0x8086', '0x1889');

const bdfs = (p: Plan) => ('slots' in p ? p.slots.map((s) => (s.kind === 'pci' ? s.dev.bdf : s.type)) : p.skip);

t.test('device kinds: vendor:device as lspci names them, and what --device gave', async (t) => {
  t.equal(kindOf(A), '15b3:101e');
  t.equal(kindOf({ vendor: '0x1af4', device: '0x41' }), '1af4:0041', 'padded to four digits');
  t.equal(describeKinds([A]), '1 (15b3:101e)');
  t.equal(describeKinds([A, NIC, B]), '3 (15b3:101e x2, 8086:1889)');
  t.equal(describeKinds([]), '0');
});

t.test('pairing: source and destination of one kind; a wrong-type destination of another', async (t) => {
  t.same(samePair([A, B]), [A, B]);
  t.same(samePair([NIC, A, B]), [A, B], 'the first kind listed twice, wherever it stands');
  t.equal(samePair([A, NIC]), undefined);
  t.equal(samePair([A]), undefined);
  t.same(differentPair([A, B, NIC]), [A, NIC]);
  t.equal(differentPair([A, B]), undefined);
  t.equal(differentPair([]), undefined);
});

t.test('lab-host plans: which device plays which role, or why the case is skipped', async (t) => {
  t.same(bdfs(planReal([A, B], 'pair', 'container')), [A.bdf, B.bdf]);
  t.same(bdfs(planReal([A, NIC, B], 'pair', 'container')), [A.bdf, B.bdf]);
  t.same(bdfs(planReal([A, NIC, B], 'wrong-type', 'container')), [A.bdf, NIC.bdf]);
  t.same(bdfs(planReal([A], 'single', 'container')), [A.bdf], 'a source alone needs one device');
  t.same(bdfs(planReal([A, B], { hops: 4 }, 'container')), [A.bdf, B.bdf, A.bdf, B.bdf, A.bdf], 'a VM that hops alternates between the pair');

  t.same(bdfs(planReal([A], 'pair', 'container')), 'needs two VFs of the same kind (source and destination); --device gave 1 (15b3:101e)');
  t.same(bdfs(planReal([A, NIC], 'pair', 'iommufd')), 'needs two VFs of the same kind (source and destination); --device gave 2 (15b3:101e, 8086:1889)');
  t.same(bdfs(planReal([A], { hops: 6 }, 'container')), 'needs two VFs of the same kind (source and destination); --device gave 1 (15b3:101e)');
  t.same(bdfs(planReal([A, B], 'wrong-type', 'container')), 'needs two devices of different vendor:device (a destination of the wrong type); --device gave 2 (15b3:101e x2)');
  t.same(bdfs(planReal([], 'single', 'container')), 'needs a VF; --device gave 0');

  const noCdev = { ...B, cdev: undefined };
  t.same(bdfs(planReal([A, noCdev], 'pair', 'container')), [A.bdf, noCdev.bdf], 'the legacy container needs no cdev');
  t.match(bdfs(planReal([A, noCdev], 'pair', 'iommufd')), /^the iommufd backend needs the devices' VFIO cdev .*; 0000:3b:00\.2 has none/);
});

t.test('mtty plans: fresh instances per role', async (t) => {
  t.same(bdfs(planMtty('pair')), ['mtty-2', 'mtty-2']);
  t.same(bdfs(planMtty('wrong-type')), ['mtty-2', 'mtty-1'], 'a 1-port destination for a 2-port stream');
  t.same(bdfs(planMtty('single')), ['mtty-2']);
  t.same(bdfs(planMtty({ hops: 6 })), Array(7).fill('mtty-2'));
  t.ok(distinctSlots([{ kind: 'mdev', uuid: 'u1' }, { kind: 'mdev', uuid: 'u2' }]), 'mtty hops can start the next QEMU early');
  t.notOk(distinctSlots([{ kind: 'pci', bdf: A.bdf }, { kind: 'pci', bdf: B.bdf }, { kind: 'pci', bdf: A.bdf }]), 'a pair reused: the next waits');
});

const HELP_11 = [
  'vfio-pci options:',
  '  enable-migration=<OnOffAuto> - Enable device migration. (default: auto)',
  '  host=<str>',
  '  iommufd=<link<iommufd>> - Set host IOMMUFD backend device',
  '  migration-events=<bool> - Emit VFIO migration QAPI event (default: off)',
  '  sysfsdev=<str>',
].join('\n');

const HOST_ENV: ClientEnv = {
  kind: 'host', prefix: '', qemu: '/opt/qemu/bin/qemu-system-x86_64', options: vfioOptions(HELP_11),
  work: '/tmp/vfioc-qm', firmware: '/tmp/vfioc-qm/halt.bin',
};

t.test('QEMU -device for a real device: host= on both backends', async (t) => {
  const dev = (a: string[]) => a[a.indexOf('-device') + 1];
  const c = nestedArgs(HOST_ENV, { name: 'src-1', device: { kind: 'pci', bdf: A.bdf }, backend: 'container' });
  t.equal(dev(c), 'vfio-pci,host=0000:3b:00.1,id=dev0,addr=4.0,enable-migration=on,migration-events=on');
  t.notOk(c.includes('-object'), 'the legacy container needs no iommufd object');
  const i = nestedArgs(HOST_ENV, { name: 'dst-2', device: { kind: 'pci', bdf: B.bdf }, backend: 'iommufd', incoming: true });
  t.equal(dev(i), 'vfio-pci,host=0000:3b:00.2,id=dev0,addr=4.0,enable-migration=on,migration-events=on,iommufd=iommufd0');
  t.same(i.slice(i.indexOf('-object'), i.indexOf('-object') + 2), ['-object', 'iommufd,id=iommufd0']);
  t.notMatch(c.join(' ') + i.join(' '), /sysfsdev/);
  const m = nestedArgs(HOST_ENV, { name: 'x', device: { kind: 'mdev', uuid: 'U' }, backend: 'container' });
  t.match(dev(m), /^vfio-pci,sysfsdev=\/sys\/bus\/mdev\/devices\/U,/, 'mtty keeps its sysfs path');
});

t.test("QEMU's refusal of a device without migration support, in its own words", async (t) => {
  const atStart = "nested QEMU 'src-3' did not start: QMP: no greeting: QMP socket closed; stderr: qemu-system-x86_64: -device vfio-pci,host=0000:3b:00.1,id=dev0,addr=4.0,enable-migration=on: 0000:3b:00.1: VFIO migration is not supported in kernel";
  t.equal(migrationRefusal(atStart), '0000:3b:00.1: VFIO migration is not supported in kernel');
  t.equal(migrationRefusal('QMP migrate failed: GenericError: 0000:3b:00.1: VFIO migration is not supported in kernel'), '0000:3b:00.1: VFIO migration is not supported in kernel', 'the blocker migrate answers with');
  t.equal(migrationRefusal("QMP migrate failed: GenericError: 0000:5e:00.3: VFIO device doesn't support device and IOMMU dirty tracking"), "0000:5e:00.3: VFIO device doesn't support device and IOMMU dirty tracking");
  t.equal(migrationRefusal("x\nqemu: 0000:3b:00.1: Migration couldn't be initialized for VFIO device, err: -95 (Operation not supported)\ny"), "0000:3b:00.1: Migration couldn't be initialized for VFIO device, err: -95 (Operation not supported)", 'no STOP_COPY');
  t.equal(migrationRefusal("0000:3b:00.1: Migration couldn't be initialized for VFIO device, err: -22 (Invalid argument)"), undefined, 'another errno is a driver fault, not missing support');
  t.equal(migrationRefusal('0000:3b:00.1: Failed to set up DMA logging: Invalid argument'), undefined);
  t.equal(migrationRefusal("nested QEMU 'src-1' did not start: QMP: no greeting within 20000 ms"), undefined);
});

t.test('flags a case needs of the device', async (t) => {
  t.equal(flagGap(0x3, 0x4), 'the device advertises STOP_COPY|P2P, without PRE_COPY');
  t.equal(flagGap(0x7, 0x4), undefined);
  t.equal(flagGap(undefined, 0x4), undefined, 'unknown flags: the case runs and QEMU shows what the device did');
});

t.test('real devices: content not verified, and said so', async (t) => {
  const into: Record<string, unknown> = {};
  const u = new Unverified();
  await u.load();
  t.equal(await u.verify({} as NestedQemu, into), undefined);
  t.same(into, { deviceState: NOT_VERIFIED });
  t.match(NOT_VERIFIED, /not verified for real devices/);
});

// ---------------------------------------------------------------------------------------------
// the suite on a fake lab host

type Answer = Partial<ExecResult> | ((cmd: string) => Partial<ExecResult>);

function labHost(o: { devices?: BoundDevice[]; qemuVersion?: string; channel?: (cmd: string) => ClientChannel; answers?: [RegExp, Answer][] }): Target & { cmds: string[]; channels: string[] } {
  const cmds: string[] = [];
  const channels: string[] = [];
  const answers: [RegExp, Answer][] = [
    ...(o.answers ?? []),
    [/mount_tag/, { stdout: '' }],
    [/ --version$/, { stdout: `QEMU emulator version ${o.qemuVersion ?? '11.1.3'}\n` }],
    [/vfio-pci,help$/, { stdout: HELP_11 }],
    [/halt\.bin/, { stdout: '' }],
  ];
  return {
    kind: 'ssh', name: 'lab1', facts: {}, clientQemu: { kind: 'binary', path: '/opt/qemu/bin/qemu-system-x86_64' }, devices: o.devices, cmds, channels,
    async exec(cmd: string) {
      cmds.push(cmd);
      const a = answers.find(([re]) => re.test(cmd))?.[1] ?? { code: 127, stderr: 'not found' };
      return { code: 0, stdout: '', stderr: '', ...(typeof a === 'function' ? a(cmd) : a) } as ExecResult;
    },
    async upload() { /* unused */ },
    async openChannel(cmd: string): Promise<ClientChannel> {
      channels.push(cmd);
      if (!o.channel) throw new Error('no channels in this test');
      return o.channel(cmd);
    },
    async mark() { /* unused */ },
    faultMark: () => 0, faultsSince: () => [], isAlive: () => true, deathReason: () => undefined, async close() { /* unused */ },
  };
}

/** A QEMU that prints `stderr` and exits before its QMP greeting, as one refusing a device at realize does. */
function exitingQemu(stderr: string): ClientChannel {
  const ch = new PassThrough();
  const err = new PassThrough();
  Object.assign(ch, { stderr: err });
  setImmediate(() => { err.write(stderr); setImmediate(() => ch.destroy()); });
  return ch as unknown as ClientChannel;
}

/** The agent as far as reading a device's migration flags goes. */
function agentWithFlags(flags: Record<string, number>): AgentClient {
  const open = new Map<number, string>();
  const reply = (r: Record<string, unknown>): AgentReply => ({ id: null, ok: true, errno: 0, err: null, ...r });
  return {
    async request(cmd: string, args: Record<string, unknown>): Promise<AgentReply> {
      if (cmd === 'open_cdev') { const fd = open.size + 3; open.set(fd, String(args.path)); return reply({ dev: fd }); }
      if (cmd === 'mig_flags') {
        const f = flags[open.get(args.dev as number)!];
        // a driver without migration ops: the kernel's ENOTTY
        return f === undefined ? reply({ ok: false, errno: 25, err: 'ENOTTY' }) : reply({ flags: f });
      }
      if (cmd === 'data_size') return reply({ stop_copy_length: 4096 });
      if (cmd === 'close') return reply({});
      return reply({ ok: false, errno: 25, err: 'ENOTTY' });
    },
  } as unknown as AgentClient;
}

const ctx = (target: Target): CaseContext => ({ id: 'qemu-migration/test', target, agent: {} as AgentClient, note: () => undefined, signal: new AbortController().signal });

async function run(target: Target, agent: AgentClient, id: string) {
  const s = await qemuMigrationSuite.setup(target, agent);
  const c = s.cases.find((x) => x.id === `qemu-migration/${id}`)!;
  return { outcome: await c.run(s.state, ctx(target)), c, s };
}

t.test('lab host, one VF: cases that need a pair or a wrong type skip, naming what is missing', async (t) => {
  const target = labHost({ devices: [A] });
  const s = await qemuMigrationSuite.setup(target, {} as AgentClient);
  t.same(s.cases.map((c) => c.id), CASE_IDS, 'the same case ids as with mtty');
  t.match(s.state.env, { kind: 'host', prefix: '', qemu: '/opt/qemu/bin/qemu-system-x86_64' }, 'the host QEMU from --qemu, no nesting');
  for (const id of ['legacy-container', 'iommufd', 'return-path+switchover-ack', 'multifd', 'cancel-stop-copy', 'round-trips-3']) {
    const c = s.cases.find((x) => x.id === `qemu-migration/${id}`)!;
    const o = await c.run(s.state, ctx(target));
    t.same(o, { status: 'skip', reason: 'needs two VFs of the same kind (source and destination); --device gave 1 (15b3:101e)' }, id);
  }
  const wrong = await s.cases.find((x) => x.id === 'qemu-migration/wrong-type-destination')!.run(s.state, ctx(target));
  t.same(wrong, { status: 'skip', reason: 'needs two devices of different vendor:device (a destination of the wrong type); --device gave 1 (15b3:101e)' });
  const dev = s.cases[0]!.device;
  t.match(dev, { driver: 'mlx5_vfio_pci', class: 'real', id: '15b3:101e', fingerprint: { client: 'QEMU 11.1.3 (host)', bdf: A.bdf } });
  t.match(dev.fingerprint, { unavailable: /./ }, 'an agent that cannot answer leaves the flags unknown, said so');
  t.notOk(target.cmds.some((c) => /mdev_supported_types|mtty/.test(c)), 'no mtty instance on a lab host');
  t.same(target.channels, [], 'no QEMU started for a skipped case');
});

t.test('lab host with a QEMU older than 8.0: expected-unsupported with the reason, before any device question', async (t) => {
  const target = labHost({ devices: [A], qemuVersion: '7.2.22' });
  const s = await qemuMigrationSuite.setup(target, agentWithFlags({}));
  for (const c of s.cases) {
    const o = await c.run(s.state, ctx(target));
    t.equal(o.status, 'expected-unsupported', c.id);
    t.match(o.reason, /QEMU 7\.2\.22 is older than 8\.0/);
  }
});

t.test('a driver without migration support: QEMU refuses it, the case is expected-unsupported in QEMU\'s words', async (t) => {
  const words = 'qemu-system-x86_64: -device vfio-pci,host=0000:3b:00.1,id=dev0,addr=4.0,enable-migration=on,migration-events=on: 0000:3b:00.1: VFIO migration is not supported in kernel\n';
  const target = labHost({ devices: [A, B], channel: () => exitingQemu(words) });
  const { outcome, c } = await run(target, agentWithFlags({}), 'legacy-container');
  t.equal(outcome.status, 'expected-unsupported');
  t.equal(outcome.reason, '0000:3b:00.1: VFIO migration is not supported in kernel');
  t.same(outcome.observed, { qemu: '11.1.3', devices: [A.bdf, B.bdf] });
  t.match(c.device.fingerprint, { bdf: A.bdf, destination: B.bdf, unavailable: /does not support migration: VFIO_DEVICE_FEATURE_MIGRATION gave ENOTTY/ });
  t.equal(target.channels.length, 2, 'source and destination QEMUs');
  t.match(target.channels[0], /^echo \$\$ > \/tmp\/vfioc-qm\/src-1\.pid && exec \/opt\/qemu\/bin\/qemu-system-x86_64 .*-device vfio-pci,host=0000:3b:00\.1,id=dev0,/);
  t.match(target.channels[1], /-device vfio-pci,host=0000:3b:00\.2,.* -incoming defer$/);
});

t.test('mtty refused the same way stays an error: mtty migrates on every kernel the harness builds', async (t) => {
  const made = (cmd: string) => ({ stdout: [...cmd.matchAll(/echo (\S+) > \S+\/create/g)].map((m, i) => `${m[1]} vfio${i}`).join('\n') });
  const target = labHost({
    channel: () => exitingQemu('qemu-system-x86_64: -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/u: u: VFIO migration is not supported in kernel\n'),
    answers: [[/mdev_supported_types/, made], [/\/remove/, { stdout: '' }]],
  });
  await t.rejects(run(target, {} as AgentClient, 'legacy-container'), /did not start.*VFIO migration is not supported/s);
  const created = target.cmds.find((c) => /create/.test(c))!.match(/echo (\S+) > /g)!.length;
  t.equal(created, 2, 'two mtty-2 instances made');
  t.equal((target.cmds.find((c) => /\/remove/.test(c)) ?? '').split(';').length, 2, 'and both removed when the case failed');
});

t.test('flags the device lacks: expected-unsupported before a QEMU starts', async (t) => {
  const target = labHost({ devices: [A, B] });
  const { outcome, c } = await run(target, agentWithFlags({ [A.cdev!]: 0x3, [B.cdev!]: 0x3 }), 'cancel-precopy');
  t.same(outcome, {
    status: 'expected-unsupported',
    reason: 'the device advertises STOP_COPY|P2P, without PRE_COPY: QEMU has no device precopy phase to cancel in',
    observed: { qemu: '11.1.3', devices: [A.bdf] },
  });
  t.match(c.device.fingerprint, { migrationFlags: 0x3, flags: 'STOP_COPY|P2P', stopCopyLength: 4096 });
  t.same(target.channels, []);
});

// ---------------------------------------------------------------------------------------------
// the real-device code path against QEMUs that speak QMP from a script (no guest, no process)

interface Wire {
  /** device bytes query-migrate reports */
  bytes: number;
  /** QMP error desc `migrate` answers with (a migration blocker) */
  blocker?: string;
  /** BDFs held by a running QEMU, and any that a second QEMU was given while held */
  held: Set<string>;
  clashes: string[];
  listeners: Map<string, ScriptedQemu>;
  started: string[];
}

/**
 * A QEMU on a device with STOP_COPY|P2P: the source walks RUNNING_P2P, STOP_COPY, STOP; the
 * destination RESUMING, RUNNING_P2P, RUNNING (the states QEMU reports with migration-events=on).
 */
class ScriptedQemu extends Duplex {
  readonly stderr = new PassThrough();
  private status: string;
  private migration?: string;
  private readonly bdf: string;
  /** an mtty's UART registers by I/O port, and whether its BARs were programmed */
  private regs = new Map<number, number>();
  private mapped = false;

  constructor(cmd: string, private readonly wire: Wire) {
    super();
    this.bdf = /(?:host=|sysfsdev=\/sys\/bus\/mdev\/devices\/)([^,\s]+)/.exec(cmd)![1]!;
    this.status = cmd.includes('-incoming') ? 'inmigrate' : 'running';
    if (wire.held.has(this.bdf)) wire.clashes.push(this.bdf);
    wire.held.add(this.bdf);
    wire.started.push(`${this.status === 'inmigrate' ? 'dst' : 'src'} ${this.bdf}`);
    setImmediate(() => this.send({ QMP: { version: {}, capabilities: [] } }));
  }

  override _read(): void { /* pushed as answers arise */ }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString().split('\n').filter((l) => l.trim())) this.handle(JSON.parse(line) as { execute: string; id: string; arguments?: { uri?: string } });
    cb();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.wire.held.delete(this.bdf);
    cb(err);
  }

  close(): void {
    this.destroy();
  }

  private send(o: unknown): void {
    if (!this.destroyed) this.push(`${JSON.stringify(o)}\n`);
  }

  private walk(states: string[]): void {
    for (const s of states) this.send({ event: 'VFIO_MIGRATION', data: { 'device-id': 'dev0', 'device-state': s, 'qom-path': '/machine/peripheral/dev0' }, timestamp: { seconds: 1, microseconds: 0 } });
  }

  /** The HMP an mtty case uses: config-space writes that map the BARs, info pci, port reads and writes. */
  private hmp(line: string): string {
    if (/^o \/h 0xcfc 0x1$/.test(line)) this.mapped = true;
    let m = /^o \/b (0x[0-9a-f]+) (0x[0-9a-f]+)$/.exec(line);
    if (m) { this.regs.set(Number(m[1]), Number(m[2])); return ''; }
    m = /^i \/b (0x[0-9a-f]+)$/.exec(line);
    if (m) return `portb[${m[1]}] = 0x${(this.regs.get(Number(m[1])) ?? 0xff).toString(16)}\r\n`;
    if (line === 'info pci') {
      const bar = (i: number, b: number) => (this.mapped ? `BAR${i}: I/O at 0x${b.toString(16)} [0x${(b + 7).toString(16)}]` : `BAR${i}: I/O (not mapped)`);
      return ['Bus  0, device   4, function 0:', '  Serial port: PCI device 4348:3253', `    ${bar(0, 0xc060)}`, `    ${bar(1, 0xc068)}`, '    id "dev0"', ''].join('\r\n');
    }
    return '';
  }

  private handle(m: { execute: string; id: string; arguments?: { uri?: string } }): void {
    const ok = (r: unknown = {}) => this.send({ return: r, id: m.id });
    switch (m.execute) {
      case 'migrate-incoming':
        this.wire.listeners.set(m.arguments!.uri!, this);
        return ok();
      case 'migrate': {
        if (this.wire.blocker) return this.send({ error: { class: 'GenericError', desc: this.wire.blocker }, id: m.id });
        ok();
        this.walk(['running-p2p', 'stop-copy', 'stop']);
        this.status = 'postmigrate';
        this.migration = 'completed';
        const dst = this.wire.listeners.get(m.arguments!.uri!)!;
        dst.walk(['resuming', 'running-p2p', 'running']);
        dst.status = 'running';
        dst.regs = new Map(this.regs);
        dst.mapped = this.mapped;
        return;
      }
      case 'query-migrate':
        return ok(this.migration ? { status: this.migration, 'total-time': 40, downtime: 4, 'setup-time': 1, vfio: { transferred: this.wire.bytes }, ram: { transferred: 4096, total: 4096 } } : {});
      case 'query-status':
        return ok({ status: this.status, running: this.status === 'running' });
      case 'human-monitor-command':
        return ok(this.hmp((m.arguments as { 'command-line': string })['command-line']));
      case 'quit':
        ok();
        setImmediate(() => this.destroy());
        return;
      default:
        return ok();
    }
  }
}

function scriptedLab(devices: BoundDevice[], w: Partial<Wire> = {}): { target: ReturnType<typeof labHost>; wire: Wire } {
  const wire: Wire = { bytes: 8192, held: new Set(), clashes: [], listeners: new Map(), started: [], ...w };
  const made = (cmd: string) => ({ stdout: [...cmd.matchAll(/echo (\S+) > \S+\/create/g)].map((m, i) => `${m[1]} vfio${i}`).join('\n') });
  const target = labHost({
    devices, channel: (cmd) => new ScriptedQemu(cmd, wire) as unknown as ClientChannel,
    answers: [[/mdev_supported_types/, made], [/\/remove/, { stdout: '' }]],
  });
  return { target, wire };
}

const FLAGS_P2P = { [A.cdev!]: 0x3, [B.cdev!]: 0x3 };

t.test('a pair of real VFs: the migration completes; checked by outcome, walk and bytes, content said unverified', async (t) => {
  const { target } = scriptedLab([A, B]);
  const { outcome } = await run(target, agentWithFlags(FLAGS_P2P), 'legacy-container');
  t.equal(outcome.status, 'pass', outcome.reason ?? 'passes');
  t.match(outcome.observed, { status: 'completed', destinationRunState: 'running', backend: 'container', deviceState: NOT_VERIFIED });
  t.match(outcome.measurements, { deviceBytes: 8192, devices: { source: A.bdf, destination: B.bdf } });
  for (const k of ['deviceBytes', 'totalTimeMs', 'downtimeMs', 'setupTimeMs', 'ramBytes', 'devices']) {
    t.notOk(k in outcome.observed!, `${k} is a measurement, not an observed value`);
  }
  const vfio = outcome.observed!.vfio as Record<string, { requested: string[]; arcs: string[] }>;
  t.same(vfio.source!.requested, ['RUNNING->RUNNING_P2P', 'RUNNING_P2P->STOP_COPY', 'STOP_COPY->STOP']);
  t.same(vfio.source!.arcs, ['RUNNING->RUNNING_P2P', 'RUNNING_P2P->STOP', 'STOP->STOP_COPY', 'STOP_COPY->STOP'], 'arcs from the flags the device reported (0x3)');
  t.notOk('state' in outcome.observed!, 'no register pattern for a real device');
  t.same(target.channels.filter((c) => /mtty|sysfsdev/.test(c)), []);
});

t.test('a pair of real VFs whose flags could not be read: the walk is kept, no arcs are claimed', async (t) => {
  const { target } = scriptedLab([A, B]);
  const { outcome } = await run(target, {} as AgentClient, 'iommufd');
  t.equal(outcome.status, 'pass', outcome.reason ?? 'passes');
  const vfio = outcome.observed!.vfio as Record<string, { states: string[]; arcs: string[] }>;
  t.same(vfio.destination!.states, ['RESUMING', 'RUNNING_P2P', 'RUNNING']);
  t.same(vfio.destination!.arcs, []);
  t.match(target.channels[0], /-object iommufd,id=iommufd0 -device vfio-pci,host=0000:3b:00\.1,.*,iommufd=iommufd0/);
});

t.test('a completed migration that moved no device bytes fails', async (t) => {
  const { target } = scriptedLab([A, B], { bytes: 0 });
  const { outcome } = await run(target, agentWithFlags(FLAGS_P2P), 'multifd');
  t.equal(outcome.status, 'fail');
  t.equal(outcome.reason, 'QEMU reports 0 device bytes transferred');
});

t.test('a migration blocker from migrate: expected-unsupported with QEMU\'s text', async (t) => {
  const { target, wire } = scriptedLab([A, B], { blocker: '0000:3b:00.1: VFIO migration is not supported in kernel' });
  const { outcome } = await run(target, agentWithFlags({}), 'cancel-stop-copy');
  t.same(outcome, { status: 'expected-unsupported', reason: '0000:3b:00.1: VFIO migration is not supported in kernel', observed: { qemu: '11.1.3', devices: [A.bdf, B.bdf] } });
  t.same(wire.held, new Set(), 'both QEMUs were stopped');
});

t.test('round trips on one pair: the VM alternates, and no VF is given to two QEMUs at once', async (t) => {
  const { target, wire } = scriptedLab([A, B]);
  const { outcome } = await run(target, agentWithFlags(FLAGS_P2P), 'round-trips-3');
  t.equal(outcome.status, 'pass', outcome.reason ?? 'passes');
  t.equal(outcome.observed!.migrations, 6);
  t.same(outcome.measurements!.devices, [A, B, A, B, A, B, A].map((d) => d.bdf));
  t.same(wire.started, ['dst 0000:3b:00.2', 'src 0000:3b:00.1', ...[A, B, A, B, A].map((d) => `dst ${d.bdf}`)]);
  t.same(wire.clashes, []);
  t.equal(outcome.measurements!.deviceBytes, 6 * 8192);
  t.equal((outcome.measurements!.hops as unknown[]).length, 6, 'figures per hop');
  t.notOk((outcome.observed!.hops as Record<string, unknown>[]).some((h) => 'totalTimeMs' in h), 'no timing among the observed hops');
});

t.test('the mtty path through the same code: registers carried, checked, instances made and removed', async (t) => {
  const { target, wire } = scriptedLab([], { bytes: 96 });
  const { outcome } = await run(target, {} as AgentClient, 'legacy-container');
  t.equal(outcome.status, 'pass', outcome.reason ?? 'passes');
  const o = outcome.observed as { state: { wrote: Record<string, number>; read: Record<string, number> }; destinationPorts: string[] };
  t.same(o.state.read, o.state.wrote, 'the UART registers read back on the destination');
  t.equal(Object.keys(o.state.wrote).length, 4);
  t.same(o.destinationPorts, ['0xc060', '0xc068']);
  t.notOk('deviceState' in o, 'mtty content is verified, not noted as unverified');
  t.match(target.channels[0], /vfio-pci,sysfsdev=\/sys\/bus\/mdev\/devices\//);
  t.ok(target.cmds.some((c) => /\/remove/.test(c)), 'the instances are removed after the case');
  t.same(wire.held, new Set());
});

t.test('the mtty round trips start the next destination during the current migration (fresh instances)', async (t) => {
  const { target, wire } = scriptedLab([], { bytes: 96 });
  const { outcome } = await run(target, {} as AgentClient, 'round-trips-3');
  t.equal(outcome.status, 'pass', outcome.reason ?? 'passes');
  const hops = outcome.observed!.hops as { state: { wrote: unknown; read: unknown } }[];
  t.equal(hops.length, 6);
  for (const h of hops) t.same(h.state.read, h.state.wrote);
  t.equal(new Set(outcome.measurements!.devices as string[]).size, 7, 'seven instances, one per home');
  t.same(wire.clashes, []);
});

t.test('a migrate error that is not a refusal in QEMU\'s words stays an error, on mtty and real devices alike', async (t) => {
  for (const devices of [[], [A, B]]) {
    const { target, wire } = scriptedLab(devices, { blocker: 'Failed to set up the migration channel' });
    await t.rejects(run(target, agentWithFlags(FLAGS_P2P), 'legacy-container'), /QMP migrate failed: GenericError: Failed to set up the migration channel/);
    t.same(wire.held, new Set(), 'the QEMUs were stopped');
  }
});

// ---------------------------------------------------------------------------------------------
// virtio-net VFs (the virtio-vf profile): a pair that migrates and a VF whose driver does not

const vvf = (bdf: string, n: number): BoundDevice => ({ ...vf(bdf, '0x1af4', '0x1041'), driver: 'virtio_vfio_pci', cdev: `/dev/vfio/devices/vfio${n}` });
const V1 = vvf('0000:01:00.1', 0);
const V2 = vvf('0000:01:00.2', 1);
const V3 = vvf('0000:02:00.1', 2);

t.test('plans with the drivers\' answers: the migrating pair first, the refusing device for the unsupported case', async (t) => {
  const answers = new Map([[V1.bdf, 'OK'], [V2.bdf, 'OK'], [V3.bdf, 'ENOTTY']]);
  t.same(migratingFirst([V3, V1, V2], answers), [V1, V2, V3]);
  t.same(bdfs(planReal([V3, V1, V2], 'pair', 'container', answers)), [V1.bdf, V2.bdf], 'not the VF that refuses, wherever it stands');
  t.same(bdfs(planReal([V1, V2, V3], 'single', 'container', answers)), [V1.bdf]);
  t.same(bdfs(planReal([V1, V2, V3], 'unsupported', 'container', answers)), [V3.bdf]);
  t.same(bdfs(planReal([V1, V2], 'unsupported', 'container', new Map([[V1.bdf, 'OK'], [V2.bdf, 'OK']]))),
    'needs a device whose driver offers no migration (VFIO_DEVICE_FEATURE_MIGRATION fails); --device gave 2 (1af4:1041 x2), each answered it');
  t.same(bdfs(planReal([V1, V2, V3], 'wrong-type', 'container', answers, true)), [V1.bdf, 'mtty-1'], 'an mtty instance where the target has mtty');
  t.match(bdfs(planReal([V1, V2, V3], 'wrong-type', 'container', answers, false)), /^needs two devices of different vendor:device/, 'a lab host has no mtty to offer');
  t.same(bdfs(planReal([V1, NIC], 'wrong-type', 'container', new Map(), true)), [V1.bdf, NIC.bdf], 'a device of another kind is preferred to mtty');
  const none = new Map([[A.bdf, 'ENOTTY'], [B.bdf, 'ENOTTY']]);
  t.same(bdfs(planReal([A, B], 'pair', 'container', none)), [A.bdf, B.bdf], 'with no device that migrates, the pair still runs: QEMU\'s refusal is the answer');
  t.match(bdfs(planMtty('unsupported')), /^mtty offers migration on every kernel/);
});

t.test('the guest\'s VFs are filed as variant devices, with an mtty wrong-type destination named', async (t) => {
  const facts = new Map([
    [V1.bdf, { migrationFlags: 0x7, flags: 'STOP_COPY|P2P|PRE_COPY', dmaLogging: 'ENOTTY' }],
    [V2.bdf, { migrationFlags: 0x7, flags: 'STOP_COPY|P2P|PRE_COPY', dmaLogging: 'ENOTTY' }],
    [V3.bdf, { unavailable: `${V3.bdf} does not support migration: VFIO_DEVICE_FEATURE_MIGRATION gave ENOTTY`, migrationErrno: 'ENOTTY' }],
  ]);
  const target = labHost({});
  const src = realSource([V1, V2, V3], facts, { cls: 'variant', mtty: target });
  const wrong = src.plan('wrong-type', 'container');
  t.match(src.info(wrong), { driver: 'virtio_vfio_pci', class: 'variant', id: '1af4:1041', fingerprint: { bdf: V1.bdf, destination: 'mtty-1', migrationFlags: 0x7 } });
  t.match(src.info(src.plan('unsupported', 'container')), { class: 'variant', fingerprint: { bdf: V3.bdf, migrationErrno: 'ENOTTY' } });
  t.equal(src.answer!(V3.bdf), 'ENOTTY');
  t.equal(src.answer!(V1.bdf), 'OK');
  t.same(src.migrationParams, REAL_MIGRATION_PARAMS);
  t.ok(src.state() instanceof VirtioNetState, 'a virtio-net VF gets its state checked');
  t.ok(realSource([A, B], new Map()).state() instanceof Unverified, 'other drivers: not verified, said so');
  t.equal(realSource([A, B], new Map()).info({ skip: 'x' }).class, 'real', 'a lab host\'s devices stay real');
});

/**
 * A virtio-net VF as config cycles reach it: its capability list (common, device and the PCI
 * configuration access window) and behind the window the common configuration and the MAC.
 */
class VirtioVf {
  readonly cfg = new Uint8Array(256);
  status = 0;
  dfselect = 0;
  gfselect = 0;
  gf = [0, 0];
  qsel = 0;
  qsize = [256, 256];
  qdesc = [0, 0];
  constructor(readonly name: string, public mac: number[]) {
    const cap = (at: number, next: number, type: number, offset: number) => {
      this.cfg.set([0x09, next, type === 5 ? 20 : 16, type, 4], at);
      new DataView(this.cfg.buffer).setUint32(at + 8, offset, true);
    };
    this.cfg[0x34] = 0x40;
    cap(0x40, 0x50, 1, 0x0);
    this.cfg.set([0x11, 0x60], 0x50); // MSI-X, not vendor
    cap(0x60, 0x70, 4, 0x2000);
    cap(0x70, 0, 5, 0);
  }
  private get dv() { return new DataView(this.cfg.buffer); }
  async cfgRead(reg: number, size: 1 | 2 | 4): Promise<number> {
    if (reg >= 0x70 + 16 && reg < 0x70 + 20) this.dv.setUint32(0x70 + 16, this.bar(this.dv.getUint32(0x70 + 8, true)), true);
    return size === 1 ? this.cfg[reg]! : size === 2 ? this.dv.getUint16(reg, true) : this.dv.getUint32(reg, true);
  }
  async cfgWrite(reg: number, size: 1 | 2 | 4, v: number): Promise<void> {
    if (size === 1) this.cfg[reg] = v; else if (size === 2) this.dv.setUint16(reg, v, true); else this.dv.setUint32(reg, v, true);
    if (reg === 0x70 + 16) this.barWrite(this.dv.getUint32(0x70 + 8, true), v);
  }
  private bar(off: number): number {
    if (off >= 0x2000) return [0, 1, 2, 3].reduce((a, i) => a | ((this.mac[off - 0x2000 + i] ?? 0) << (8 * i)), 0) >>> 0;
    const regs: Record<number, number> = {
      4: this.dfselect === 0 ? 0x20 | 0x1 : 0x1, 12: this.gf[this.gfselect]!, 20: this.status, 24: this.qsize[this.qsel]!, 32: this.qdesc[this.qsel]!,
    };
    return regs[off] ?? 0;
  }
  private barWrite(off: number, v: number): void {
    if (off === 0) this.dfselect = v;
    if (off === 8) this.gfselect = v;
    if (off === 12) this.gf[this.gfselect] = v;
    if (off === 20) this.status = v;
    if (off === 22) this.qsel = v;
    if (off === 24) this.qsize[this.qsel] = v;
    if (off === 32) this.qdesc[this.qsel] = v;
  }
  /** what DEV_PARTS_SET gives a destination: the source's registers */
  takeStateOf(src: VirtioVf): void {
    Object.assign(this, { status: src.status, gf: [...src.gf], qsize: [...src.qsize], qdesc: [...src.qdesc], mac: [...src.mac] });
  }
}

t.test('a virtio-net VF\'s state, played through its config-space window: loaded on the source, read back where the VM is', async (t) => {
  const src = new VirtioVf('src', [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
  const dst = new VirtioVf('dst', [0x52, 0x54, 0, 0x12, 0x34, 0x57]);
  const s = new VirtioNetState();
  await s.load(src as unknown as NestedQemu, 1);
  t.equal(src.status, 0x0b, 'ACKNOWLEDGE|DRIVER|FEATURES_OK');
  t.same(src.gf, [0x20, 0x1], 'MAC (bit 5) of what was offered, and VERSION_1');
  t.equal(src.qsize[0], virtioPattern(1).queue0Size);
  t.equal(src.qdesc[0], virtioPattern(1).queue0Desc);
  const into: Record<string, unknown> = {};
  t.match(await s.verify(dst as unknown as NestedQemu, into), /status: source 0xb, read 0x0; .*mac: source 52:54:00:12:34:56, read 52:54:00:12:34:57/, 'a destination the state never reached');
  dst.takeStateOf(src);
  t.equal(await s.verify(dst as unknown as NestedQemu, into), undefined, 'the destination reads back the source');
  t.match(into, { state: { source: { mac: '52:54:00:12:34:56', queue0Size: 32 }, read: { mac: '52:54:00:12:34:56' } } });
  dst.qdesc[0] = 0;
  t.match(await s.verify(dst as unknown as NestedQemu, {}), /^queue0Desc: source 0x10010000, read 0x0$/);
  t.not(virtioPattern(2).queue0Desc, virtioPattern(3).queue0Desc, 'each seed its own ring address');
  const regs = { status: 1, driverFeatures: [1, 2] as [number, number], queue0Size: 4, queue0Desc: 5, mac: 'm' };
  t.same(diffVirtio(regs, { ...regs, driverFeatures: [1, 3] }), ['driverFeatures: source 0x1/0x2, read 0x1/0x3']);
  const none = new VirtioVf('x', []);
  none.cfg[0x34] = 0;
  await t.rejects(new VirtioNetState().load(none as unknown as NestedQemu, 1), /no virtio common\/device\/PCI-window capability/);
});

t.test('an unsupported VF: the driver answers ENOTTY and QEMU 11 refuses it: expected-unsupported with both', async (t) => {
  const refusal = '0000:02:00.1: VFIO migration init failed: migration is not supported in kernel: Inappropriate ioctl for device';
  const words = `qemu-system-x86_64: -device vfio-pci,host=0000:02:00.1,id=dev0,addr=4.0,enable-migration=on,migration-events=on: vfio 0000:02:00.1: ${refusal}\n`;
  const target = labHost({ devices: [V1, V2, V3], channel: () => exitingQemu(words) });
  const { outcome, c } = await run(target, agentWithFlags({ [V1.cdev!]: 0x7, [V2.cdev!]: 0x7 }), 'unsupported-device');
  t.same(outcome, {
    status: 'expected-unsupported',
    reason: `0000:02:00.1: its driver offers no migration (VFIO_DEVICE_FEATURE_MIGRATION: ENOTTY), and QEMU refuses it: ${refusal}`,
    observed: { qemu: '11.1.3', devices: [V3.bdf], driverAnswer: 'ENOTTY', refusal },
  });
  t.match(c.device.fingerprint, { bdf: V3.bdf, migrationErrno: 'ENOTTY' });
  t.equal(target.channels.length, 1, 'one QEMU, on the refusing VF');
  t.match(target.channels[0], /host=0000:02:00\.1,/);
});

t.test('an unsupported-device case whose driver answers something else than ENOTTY fails before any QEMU', async (t) => {
  const target = labHost({ devices: [V1, V2, V3] });
  const agent = agentWithFlags({ [V1.cdev!]: 0x7, [V2.cdev!]: 0x7 });
  const einval = { ...agent, async request(cmd: Parameters<AgentClient['request']>[0], args: Record<string, unknown>) {
    const r = await agent.request(cmd, args as never);
    return cmd === 'mig_flags' && !r.ok ? { ...r, errno: 22, err: 'EINVAL' } : r;
  } } as AgentClient;
  const { outcome } = await run(target, einval, 'unsupported-device');
  t.equal(outcome.status, 'fail');
  t.equal(outcome.reason, 'VFIO_DEVICE_FEATURE_MIGRATION on 0000:02:00.1 gave EINVAL, not ENOTTY (a driver without migration ops)');
  t.same(target.channels, []);
});

t.test('real sources are told the switchover bandwidth; it is on record', async (t) => {
  const { target } = scriptedLab([A, B]);
  const sent: unknown[] = [];
  const orig = ScriptedQemu.prototype['handle' as keyof ScriptedQemu] as unknown as (m: { execute: string; arguments?: unknown }) => void;
  const spy = function (this: ScriptedQemu, m: { execute: string; arguments?: unknown }) {
    if (m.execute === 'migrate-set-parameters') sent.push(m.arguments);
    return orig.call(this, m);
  };
  (ScriptedQemu.prototype as unknown as Record<string, unknown>).handle = spy;
  try {
    const { outcome } = await run(target, agentWithFlags(FLAGS_P2P), 'legacy-container');
    t.equal(outcome.status, 'pass', outcome.reason ?? 'passes');
    t.same(sent, [REAL_MIGRATION_PARAMS], 'once, on the source');
    t.same(outcome.observed!.parameters, REAL_MIGRATION_PARAMS);
  } finally {
    (ScriptedQemu.prototype as unknown as Record<string, unknown>).handle = orig;
  }
});
