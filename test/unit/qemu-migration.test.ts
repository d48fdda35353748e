import t from 'tap';
import type { ClientChannel } from 'ssh2';
import type { QmpEvent } from '../../harness/qemu/qmp.js';
import type { Target } from '../../harness/target/target.js';
import type { ExecResult } from '../../harness/ssh/client.js';
import type { CaseContext } from '../../suites/types.js';
import type { AgentClient } from '../../harness/agent/client.js';
import {
  arcCoverage, cf8Address, ioPorts, kernelArcs, parseInfoPci, parsePortRead, parseQemuVersion, programIoBarsHmp,
  qemuUnsupportedReason, requestedTransitions, sideWalk, vfioOptions, vfioStates,
} from '../../suites/qemu-migration/parse.js';
import { nestedArgs, type ClientEnv } from '../../suites/qemu-migration/nested.js';
import { qemuMigrationSuite, CASE_IDS } from '../../suites/qemu-migration/index.js';
import { debootstrapArgs, QEMU_ROOTFS, rootfsKey, rootfsQemuArgs } from '../../images/rootfs/build.js';

// HMP `info pci` of a nested QEMU 11.1.3 (q35, -nodefaults, an mtty-2 instance at 04.0), recorded
// after the harness programmed the BARs; and the same device before (not mapped).
const INFO_PCI = [
  '  Bus  0, device   0, function 0:',
  '    Host bridge: PCI device 8086:29c0',
  '      PCI subsystem 1af4:1100',
  '      id ""',
  '  Bus  0, device   4, function 0:',
  '    Serial port: PCI device 4348:3253',
  '      PCI subsystem 4348:3253',
  '      IRQ 0, pin A',
  '      BAR0: I/O at 0xc060 [0xc067]',
  '      BAR1: I/O at 0xc068 [0xc06f]',
  '      id "dev0"',
  '  Bus  0, device  31, function 2:',
  '    SATA controller: PCI device 8086:2922',
  '      PCI subsystem 1af4:1100',
  '      IRQ 0, pin A',
  '      BAR4: I/O (not mapped)',
  '      BAR5: 32 bit memory (not mapped)',
  '      id ""',
  '',
].join('\r\n');

t.test('info pci: devices, ids, mapped and unmapped BARs', async (t) => {
  const fns = parseInfoPci(INFO_PCI);
  t.equal(fns.length, 3);
  const dev = fns.find((f) => f.id === 'dev0')!;
  t.match(dev, { bus: 0, device: 4, fn: 0, vendor: '4348:3253' });
  t.same(dev.bars, [{ index: 0, kind: 'io', start: 0xc060, end: 0xc067 }, { index: 1, kind: 'io', start: 0xc068, end: 0xc06f }]);
  t.same(fns[2]!.bars, [{ index: 4, kind: 'io' }, { index: 5, kind: 'mem' }], 'not mapped: no address');
  t.same(ioPorts(INFO_PCI, 'dev0'), [0xc060, 0xc068]);
  t.same(ioPorts(INFO_PCI.replace(/BAR\d: I\/O at 0x[0-9a-f]+ \[0x[0-9a-f]+\]/g, 'BAR0: I/O (not mapped)'), 'dev0'), [], 'before the BARs are programmed');
  t.same(ioPorts(INFO_PCI, 'nope'), []);
});

t.test('HMP port reads and config-space programming', async (t) => {
  t.equal(parsePortRead('portb[0xc067] = 0x5a\r\n'), 0x5a);
  t.equal(parsePortRead('portb[0xc063] = 0xff'), 0xff);
  t.equal(parsePortRead('invalid char in format'), undefined);
  t.equal(cf8Address(0, 4, 0, 0x10), 0x80002010);
  t.equal(cf8Address(0, 4, 0, 0x14), 0x80002014);
  t.equal(cf8Address(1, 31, 7, 0x3e), 0x8001ff3c, 'register dword-aligned');
  t.same(programIoBarsHmp(4, [0xc060, 0xc068]), [
    'o /w 0xcf8 0x80002010', 'o /w 0xcfc 0xc060',
    'o /w 0xcf8 0x80002014', 'o /w 0xcfc 0xc068',
    'o /w 0xcf8 0x80002004', 'o /h 0xcfc 0x1',
  ], 'HMP sizes: /w is 32 bits, /h 16 (there is no /l)');
});

const HELP_11 = [
  'vfio-pci options:',
  '  enable-migration=<OnOffAuto> - Enable device migration. (default: auto)',
  '  iommufd=<link<iommufd>> - Set host IOMMUFD backend device',
  '  migration-events=<bool> - Emit VFIO migration QAPI event (default: off)',
  '  sysfsdev=<str>',
  '  x-migration-multifd-transfer=<OnOffAuto> - (default: auto)',
].join('\n');

t.test('QEMU version gate: older than 8.0 is expected-unsupported, with the reason', async (t) => {
  const v72 = parseQemuVersion('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright');
  t.match(v72, { major: 7, minor: 2, micro: 22, text: '7.2.22' });
  t.match(qemuUnsupportedReason(v72, 'vfio-pci options:\n  sysfsdev=<str>\n'), /QEMU 7\.2\.22 is older than 8\.0: VFIO migration protocol v2/);
  const v11 = parseQemuVersion('QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1)');
  t.equal(qemuUnsupportedReason(v11, HELP_11), undefined);
  t.equal(qemuUnsupportedReason(parseQemuVersion('QEMU emulator version 8.0.0'), HELP_11), undefined, '8.0 is enough');
  t.match(qemuUnsupportedReason(v11, "'vfio-pci' is not a valid device model name"), /no vfio-pci/);
  t.match(qemuUnsupportedReason(undefined, ''), /could not read/);
  t.same(vfioOptions(HELP_11), { migrationEvents: true, enableMigration: true, iommufd: true, multifdTransfer: true });
  t.same(vfioOptions('  sysfsdev=<str>'), { migrationEvents: false, enableMigration: false, iommufd: false, multifdTransfer: false });
});

function ev(state: string, id = 'dev0'): QmpEvent {
  return { event: 'VFIO_MIGRATION', data: { 'device-state': state, 'device-id': id, 'qom-path': `/machine/peripheral/${id}` }, timestamp: { seconds: 1, microseconds: 0 } };
}

// What QEMU 11.1.3 emitted in the measured runs (migration-events=on).
const SOURCE = ['pre-copy', 'pre-copy-p2p-prepare', 'pre-copy-p2p', 'stop-copy', 'stop'].map((s) => ev(s));
const DEST = ['resuming', 'running-p2p', 'running'].map((s) => ev(s));
const CANCEL_SC = ['pre-copy', 'pre-copy-p2p-prepare', 'pre-copy-p2p', 'stop-copy', 'running', 'running-p2p', 'running'].map((s) => ev(s));

t.test('states QEMU walked -> requested transitions -> kernel arcs', async (t) => {
  t.same(vfioStates([...SOURCE, { event: 'STOP' }, ev('running', 'other')], 'dev0'), ['PRE_COPY', 'PRE_COPY_P2P_PREPARE', 'PRE_COPY_P2P', 'STOP_COPY', 'STOP']);
  t.same(vfioStates([ev('running', 'other')]), ['RUNNING'], 'all devices when no id is given');
  t.same(requestedTransitions(vfioStates(SOURCE)), [
    ['RUNNING', 'PRE_COPY'], ['PRE_COPY', 'PRE_COPY_P2P'], ['PRE_COPY_P2P', 'STOP_COPY'], ['STOP_COPY', 'STOP'],
  ], 'QEMU\'s *_PREPARE phases request nothing of the kernel');
  t.same(requestedTransitions(['STOP', 'RESUMING'], 'STOP'), [['STOP', 'RESUMING']], 'a reopened instance starts where it was');
  const dst = requestedTransitions(vfioStates(DEST));
  t.same(dst, [['RUNNING', 'RESUMING'], ['RESUMING', 'RUNNING_P2P'], ['RUNNING_P2P', 'RUNNING']]);
  t.same(kernelArcs(dst).map(([a, b]) => `${a}->${b}`), ['2->5', '5->1', '1->4', '4->1', '1->5', '5->2'],
    'RUNNING->RESUMING is RUNNING->RUNNING_P2P->STOP->RESUMING in the kernel');
  t.same(sideWalk(DEST, 'dev0').arcs, [
    'RUNNING->RUNNING_P2P', 'RUNNING_P2P->STOP', 'STOP->RESUMING', 'RESUMING->STOP', 'STOP->RUNNING_P2P', 'RUNNING_P2P->RUNNING',
  ]);
  t.same(sideWalk(CANCEL_SC, 'dev0').requested, [
    'RUNNING->PRE_COPY', 'PRE_COPY->PRE_COPY_P2P', 'PRE_COPY_P2P->STOP_COPY', 'STOP_COPY->RUNNING', 'RUNNING->RUNNING_P2P', 'RUNNING_P2P->RUNNING',
  ], 'a cancel from STOP_COPY goes back to RUNNING');
  t.same(sideWalk(CANCEL_SC, 'dev0').arcs.slice(3, 6), ['STOP_COPY->STOP', 'STOP->RUNNING_P2P', 'RUNNING_P2P->RUNNING']);
  t.same(sideWalk([ev('pre-copy-p2p')], 'dev0', 0x1).arcs, [], 'a state the flags lack yields no arc (and no throw)');
});

t.test('arc coverage: which arcs the real client exercised, which only the direct-ioctl suite does', async (t) => {
  const results = [
    { id: 'qemu-migration/legacy-container', suite: 'qemu-migration', observed: { vfio: { source: sideWalk(SOURCE, 'dev0'), destination: sideWalk(DEST, 'dev0') } } },
    { id: 'qemu-migration/cancel-precopy', suite: 'qemu-migration', observed: { vfio: { source: sideWalk([ev('pre-copy'), ev('running')], 'dev0') } } },
    { id: 'qemu-migration/round-trips-1', suite: 'qemu-migration', observed: { vfio: { hops: [sideWalk(SOURCE, 'dev0'), sideWalk(DEST, 'dev0')] } } },
    { id: 'migration/arc/STOP->STOP_COPY', suite: 'migration', observed: { vfio: { source: sideWalk([ev('stop'), ev('stop-copy')], 'dev0') } } },
    { id: 'qemu-migration/skipped', suite: 'qemu-migration', observed: undefined },
  ];
  const c = arcCoverage(results);
  t.equal(c.flags, 7);
  t.same(c.exercised, [
    'RUNNING->RUNNING_P2P', 'RUNNING->PRE_COPY', 'RUNNING_P2P->RUNNING', 'RUNNING_P2P->STOP', 'STOP->RUNNING_P2P', 'STOP->RESUMING',
    'STOP_COPY->STOP', 'RESUMING->STOP', 'PRE_COPY->RUNNING', 'PRE_COPY->PRE_COPY_P2P', 'PRE_COPY_P2P->STOP_COPY',
  ]);
  t.same(c.directOnly, ['RUNNING_P2P->PRE_COPY_P2P', 'STOP->STOP_COPY', 'PRE_COPY_P2P->RUNNING_P2P', 'PRE_COPY_P2P->PRE_COPY'],
    'other suites\' results do not count');
  t.equal(c.arcs.length, c.exercised.length + c.directOnly.length);
  t.same(c.arcs.find((a) => a.arc === 'RUNNING->PRE_COPY')?.cases, ['qemu-migration/cancel-precopy', 'qemu-migration/legacy-container', 'qemu-migration/round-trips-1']);
  t.equal(c.requested['RUNNING->PRE_COPY'], 3);
});

const ENV: ClientEnv = {
  kind: 'nested', prefix: 'chroot /mnt/rootfs ', qemu: 'qemu-system-x86_64', options: vfioOptions(HELP_11),
  work: '/tmp/vfioc-qm', firmware: '/tmp/vfioc-qm/halt.bin',
};

t.test('nested QEMU command line', async (t) => {
  const src = nestedArgs(ENV, { name: 'src-1', device: { kind: 'mdev', uuid: 'U' }, backend: 'container' });
  t.ok(src.join(' ').includes('-qmp stdio'), 'QMP on the SSH channel');
  t.ok(src.includes('vfio-pci,sysfsdev=/sys/bus/mdev/devices/U,id=dev0,addr=4.0,enable-migration=on,migration-events=on'));
  t.notOk(src.includes('-incoming'));
  t.notOk(src.includes('-object'));
  t.same(src.slice(src.indexOf('-bios'), src.indexOf('-bios') + 2), ['-bios', '/tmp/vfioc-qm/halt.bin']);
  const dst = nestedArgs(ENV, { name: 'dst-2', device: { kind: 'mdev', uuid: 'V' }, backend: 'iommufd', incoming: true });
  t.same(dst.slice(-2), ['-incoming', 'defer']);
  t.same(dst.slice(dst.indexOf('-object'), dst.indexOf('-object') + 2), ['-object', 'iommufd,id=iommufd0']);
  t.match(dst.find((a) => a.startsWith('vfio-pci,')), /,iommufd=iommufd0$/);
  const old = nestedArgs({ ...ENV, options: vfioOptions('sysfsdev=') }, { name: 'x', device: { kind: 'mdev', uuid: 'W' }, backend: 'container' });
  t.notMatch(old.join(' '), /migration-events|enable-migration/, 'options this QEMU lacks are left out');
});

t.test('rootfs recipe: key, debootstrap arguments, 9p share', async (t) => {
  const k = rootfsKey(QEMU_ROOTFS);
  t.match(k, /^[0-9a-f]{16}$/);
  t.equal(rootfsKey({ ...QEMU_ROOTFS, packages: [...QEMU_ROOTFS.packages].reverse() }), k, 'package order does not matter');
  t.not(rootfsKey({ ...QEMU_ROOTFS, packages: [...QEMU_ROOTFS.packages, 'gdb'] }), k);
  t.not(rootfsKey({ ...QEMU_ROOTFS, suite: 'trixie' }), k);
  t.same(debootstrapArgs(QEMU_ROOTFS, '/d', 'http://mirror.example/debian'), [
    '--variant=minbase', '--include=qemu-system-x86,seabios,ipxe-qemu,kmod,iproute2,python3', 'unstable', '/d', 'http://mirror.example/debian',
  ]);
  t.same(rootfsQemuArgs('/r'), ['-fsdev', 'local,id=rootfs,path=/r,security_model=none,readonly=on', '-device', 'virtio-9p-pci,fsdev=rootfs,mount_tag=vfioc-rootfs']);
});

/** A target whose shell answers from a table (first matching regex). */
function fakeTarget(answers: [RegExp, Partial<ExecResult>][]): Target & { cmds: string[] } {
  const cmds: string[] = [];
  return {
    kind: 'ssh', name: 'fake', facts: {}, cmds,
    async exec(cmd: string) {
      cmds.push(cmd);
      const a = answers.find(([re]) => re.test(cmd))?.[1] ?? { code: 127, stderr: 'not found' };
      return { code: 0, stdout: '', stderr: '', ...a } as ExecResult;
    },
    async upload() { /* unused */ },
    async openChannel(): Promise<ClientChannel> { throw new Error('no channels in this test'); },
    async mark() { /* unused */ },
    faultMark: () => 0, faultsSince: () => [], isAlive: () => true, deathReason: () => undefined, async close() { /* unused */ },
  };
}

const ctx = (target: Target): CaseContext => ({ id: 'qemu-migration/test', target, agent: {} as AgentClient, note: () => undefined, signal: new AbortController().signal });

t.test('suite on a target with QEMU 7.2: every case is expected-unsupported with the reason', async (t) => {
  const target = fakeTarget([
    [/mount_tag/, { stdout: '' }],
    [/--version/, { stdout: 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\n' }],
    [/vfio-pci,help/, { stdout: 'vfio-pci options:\n  sysfsdev=<str>\n  x-enable-migration=<bool>\n' }],
  ]);
  const s = await qemuMigrationSuite.setup(target, {} as AgentClient);
  t.same(s.cases.map((c) => c.id), CASE_IDS);
  t.ok(CASE_IDS.length >= 8);
  for (const c of s.cases) {
    const o = await c.run(s.state, ctx(target));
    t.equal(o.status, 'expected-unsupported', c.id);
    t.match(o.reason, /QEMU 7\.2\.22 is older than 8\.0/);
  }
  t.notOk(target.cmds.some((c) => /create|halt\.bin/.test(c)), 'nothing is created for a QEMU that cannot be the client');
});

t.test('suite on a target without QEMU: skipped, saying how to get one', async (t) => {
  const target = fakeTarget([[/mount_tag/, { stdout: '' }]]);
  const s = await qemuMigrationSuite.setup(target, {} as AgentClient);
  const o = await s.cases[0]!.run(s.state, ctx(target));
  t.equal(o.status, 'skip');
  t.match(o.reason, /no QEMU on the target.*rootfs/);
});

t.test('suite told by the run that this target has no client QEMU: skipped with the run\'s reason', async (t) => {
  const why = 'the nested QEMU is built for x86_64 guests only; on arm64 it runs on a lab host with --target and --qemu';
  const target: Target = { ...fakeTarget([[/mount_tag/, { stdout: '' }]]), clientQemu: { kind: 'none', reason: why } };
  const s = await qemuMigrationSuite.setup(target, {} as AgentClient);
  const o = await s.cases[0]!.run(s.state, ctx(target));
  t.equal(o.status, 'skip');
  t.equal(o.reason, why);
});

t.test('suite in a guest with the rootfs share: mounts it and runs QEMU under chroot', async (t) => {
  const target = fakeTarget([
    [/mount_tag/, { stdout: 'vfioc-rootfs\n' }],
    [/^set -e\nmkdir -p \/mnt\/rootfs/, { stdout: '' }],
    [/^chroot \/mnt\/rootfs qemu-system-x86_64 --version$/, { stdout: 'QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1)\n' }],
    [/^chroot \/mnt\/rootfs qemu-system-x86_64 -device vfio-pci,help$/, { stdout: HELP_11 }],
    [/halt\.bin/, { stdout: '' }],
  ]);
  const s = await qemuMigrationSuite.setup(target, {} as AgentClient);
  t.match(s.state.env, { kind: 'nested', prefix: 'chroot /mnt/rootfs ', version: { text: '11.1.3' }, unsupported: undefined, missing: undefined });
  const mount = target.cmds.find((c) => c.includes('mount -t 9p'))!;
  t.match(mount, /mount -t 9p -o trans=virtio,version=9p2000\.L,msize=512000,cache=loose vfioc-rootfs \/mnt\/rootfs/);
  for (const d of ['proc', 'sys', 'dev', 'tmp']) t.match(mount, new RegExp(`mount --bind /${d} /mnt/rootfs/${d}`));
  t.ok(target.cmds.some((c) => /tr '\\000' '\\364' > \/tmp\/vfioc-qm\/halt\.bin/.test(c)), 'the HLT firmware is written');
  t.same(qemuMigrationSuite.machine, { rootfs: 'debian-qemu', memMiB: 6144, smp: 2 });
});
