import t from 'tap';
import { bindGuestDevices } from '../../runner/guest-devices.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSshUrl, formatSshUrl, resolveAuth, opensshArgv } from '../../harness/target/lab-host.js';
import { normalizeBdf, parseDiscovery, type PciSnapshot } from '../../harness/devices/sysfs.js';
import { formatPlan, makePlan, parseDeviceArg } from '../../harness/devices/plan.js';
import { DeviceManager, type Shell } from '../../harness/devices/manager.js';
import type { ExecResult } from '../../harness/ssh/client.js';

t.test('ssh URLs', async (t) => {
  t.same(parseSshUrl('ssh://root@lab1'), { user: 'root', host: 'lab1', port: 22 });
  t.same(parseSshUrl('ssh://me@10.0.0.5:2222'), { user: 'me', host: '10.0.0.5', port: 2222 });
  t.same(parseSshUrl('ssh://lab1.example.org/'), { user: 'root', host: 'lab1.example.org', port: 22 });
  t.same(parseSshUrl('ssh://root@[fe80::1]:22'), { user: 'root', host: 'fe80::1', port: 22 });
  for (const bad of ['lab1', 'root@lab1', 'http://lab1', 'ssh://root@lab1:0', 'ssh://root@lab1:99999', 'ssh://root@lab1/path', 'ssh://']) {
    t.throws(() => parseSshUrl(bad), /--target must look like|not a TCP port/, bad);
  }
  t.equal(formatSshUrl({ user: 'root', host: 'lab1', port: 22 }), 'ssh://root@lab1');
  t.equal(formatSshUrl({ user: 'root', host: '::1', port: 2200 }), 'ssh://root@[::1]:2200');
});

t.test('credentials: --identity, default keys, ssh-agent', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'vfioc-home-'));
  t.throws(() => resolveAuth(undefined, undefined, home), /no SSH credentials/);
  t.throws(() => resolveAuth(join(home, 'nope'), undefined, home), /--identity .*nope: no such file/);
  const sock = join(home, 'agent.sock');
  writeFileSync(sock, '');
  t.same(resolveAuth(undefined, sock, home), { agent: sock, describe: 'ssh-agent' });
  writeFileSync(join(home, 'garbage'), 'not a key');
  t.throws(() => resolveAuth(join(home, 'garbage'), undefined, home), /cannot use the key .*garbage/);
  t.match(resolveAuth(join(home, 'garbage'), sock, home), { agent: sock, privateKey: undefined });
  t.same(opensshArgv({ user: 'root', host: 'lab1', port: 2222, identity: '/k', knownHosts: '/kh' }),
    ['ssh', '-p', '2222', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'UserKnownHostsFile=/kh', '-o', 'ConnectTimeout=10', '-i', '/k', '-o', 'IdentitiesOnly=yes', 'root@lab1']);
});

t.test('BDFs and --device arguments', async (t) => {
  t.equal(normalizeBdf('3B:00.1'), '0000:3b:00.1');
  t.equal(normalizeBdf('0001:3b:00.7'), '0001:3b:00.7');
  t.throws(() => normalizeBdf('3b:00.8'), /not a PCI address/);
  t.throws(() => normalizeBdf('0000:3b:00.1; rm -rf /'), /not a PCI address/);
  t.same(parseDeviceArg('3b:00.1'), { bdf: '0000:3b:00.1', driver: 'vfio-pci' });
  t.same(parseDeviceArg('3b:00.0,driver=mlx5_vfio_pci,vfs=2'), { bdf: '0000:3b:00.0', driver: 'mlx5_vfio_pci', vfs: 2 });
  t.throws(() => parseDeviceArg('3b:00.0,driver=x;y'), /not driver=NAME or vfs=N/);
  t.throws(() => parseDeviceArg('3b:00.0,vfs=-1'), /not driver=NAME or vfs=N/);
  t.throws(() => parseDeviceArg('3b:00.0,color=red'), /not driver=NAME or vfs=N/);
});

const SYSFS = `dev 0000:00:01.0
vendor 0x1af4
device 0x1000
class 0x020000
driver virtio-pci
override (null)
group 1
dev 0000:00:02.0
vendor 0x1234
device 0x11e8
override (null)
group 2
dev 0000:3b:00.0
vendor 0x15b3
device 0x101d
driver mlx5_core
override (null)
group 10
totalvfs 8
numvfs 2
virtfn 1 0000:3b:00.3
virtfn 0 0000:3b:00.2
dev 0000:3b:00.2
vendor 0x15b3
device 0x101e
driver mlx5_core
override (null)
group 11
physfn 0000:3b:00.0
dev 0000:3b:00.3
vendor 0x15b3
device 0x101e
driver vfio-pci
override vfio-pci
group 11
physfn 0000:3b:00.0
cdev /dev/vfio/devices/vfio3
dev 0000:00:1f.0
vendor 0x8086
device 0x2918
driver lpc_ich
group 2
dev junk
vendor 0x0
drv virtio-pci
drv vfio-pci
drv mlx5_core
`;

t.test('sysfs snapshot parsing', async (t) => {
  const s = parseDiscovery(SYSFS);
  t.same([...s.devices.keys()], ['0000:00:01.0', '0000:00:02.0', '0000:3b:00.0', '0000:3b:00.2', '0000:3b:00.3', '0000:00:1f.0']);
  t.same([...s.drivers], ['virtio-pci', 'vfio-pci', 'mlx5_core']);
  t.match(s.devices.get('0000:00:02.0'), { driver: undefined, override: undefined, iommuGroup: '2', vendor: '0x1234' });
  t.match(s.devices.get('0000:3b:00.0'), { totalvfs: 8, numvfs: 2, virtfns: ['0000:3b:00.2', '0000:3b:00.3'] });
  t.match(s.devices.get('0000:3b:00.3'), { override: 'vfio-pci', physfn: '0000:3b:00.0', cdev: '/dev/vfio/devices/vfio3' });
});

t.test('plans', async (t) => {
  const s = parseDiscovery(SYSFS);
  const p = makePlan([parseDeviceArg('00:02.0'), parseDeviceArg('3b:00.3'), parseDeviceArg('3b:00.2,driver=mlx5_vfio_pci')], s);
  t.same(p.steps, [
    { op: 'modprobe', driver: 'mlx5_vfio_pci' },
    { op: 'bind', bdf: '0000:00:02.0', from: undefined, override: undefined, to: 'vfio-pci' },
    { op: 'keep', bdf: '0000:3b:00.3', driver: 'vfio-pci' },
    { op: 'bind', bdf: '0000:3b:00.2', from: 'mlx5_core', override: undefined, to: 'mlx5_vfio_pci' },
  ]);
  t.same(p.warnings, ['0000:00:02.0 shares IOMMU group 2 with 0000:00:1f.0 (bound to lpc_ich, not listed, left alone): vfio may refuse 0000:00:02.0 until that device is unbound']);
  const text = formatPlan(p, 'ssh://root@lab1', s);
  t.equal(text, [
    'device plan for ssh://root@lab1:',
    '  load      modprobe mlx5_vfio_pci (no /sys/bus/pci/drivers/mlx5_vfio_pci yet)',
    '  bind      0000:00:02.0 [1234:11e8]: (no driver) -> vfio-pci (driver_override=vfio-pci, drivers_probe)',
    '  keep      0000:3b:00.3 [15b3:101e]: already bound to vfio-pci; left as is',
    '  bind      0000:3b:00.2 [15b3:101e]: mlx5_core -> mlx5_vfio_pci (driver_override=mlx5_vfio_pci, drivers_probe)',
    '  restore   0000:3b:00.2 [15b3:101e]: mlx5_vfio_pci -> mlx5_core, driver_override=(none)',
    '  restore   0000:00:02.0 [1234:11e8]: vfio-pci -> (no driver), driver_override=(none)',
    `  warning   ${p.warnings[0]}`,
    '  untouched every other PCI device',
  ].join('\n'));

  const vf = makePlan([parseDeviceArg('3b:00.0,vfs=4')], s);
  t.same(vf.steps, [{ op: 'create-vfs', pf: '0000:3b:00.0', from: 2, to: 4, driver: 'vfio-pci' }]);
  t.match(formatPlan(vf, 'h', s), /create    0000:3b:00.0 \[15b3:101d\]: sriov_numvfs 2 -> 4, then bind each new VF to vfio-pci\n {2}restore {3}0000:3b:00.0 \[15b3:101d\]: sriov_numvfs 4 -> 2 \(via 0\)/);
  const same = makePlan([parseDeviceArg('3b:00.0,vfs=2')], s);
  t.same(same.steps.map((x) => x.op), ['bind', 'keep'], 'the existing VFs are used');

  t.throws(() => makePlan([parseDeviceArg('5e:00.0')], s), /0000:5e:00.0: no such PCI device/);
  t.throws(() => makePlan([parseDeviceArg('00:02.0,vfs=1')], s), /has no SR-IOV/);
  t.throws(() => makePlan([parseDeviceArg('3b:00.0,vfs=9')], s), /at most 8 VFs/);
  t.throws(() => makePlan([parseDeviceArg('00:02.0'), parseDeviceArg('0000:00:02.0')], s), /listed twice/);
  t.throws(() => makePlan([parseDeviceArg('3b:00.0,vfs=2'), parseDeviceArg('3b:00.2')], s), /is a VF of 0000:3b:00.0/);
  t.equal(formatPlan(makePlan([], s), 'h', s), 'device plan for h:\n  (nothing to do)\n  untouched every other PCI device');
});

/** A fake host: records commands, answers discovery from a mutable snapshot text. */
function fakeShell(text: () => string, log: string[]): Shell {
  return {
    exec: async (cmd: string): Promise<ExecResult> => {
      log.push(cmd);
      if (cmd.startsWith('cd /sys/bus/pci/devices')) return { code: 0, stdout: text(), stderr: '', timedOut: false };
      return { code: 0, stdout: '', stderr: '', timedOut: false };
    },
  };
}

t.test('manager: every sysfs write is guarded by the allow-list; dry run writes nothing', async (t) => {
  const log: string[] = [];
  const m = new DeviceManager(fakeShell(() => SYSFS, log), [parseDeviceArg('00:02.0')]);
  t.equal(m.sysfsWrite('0000:00:02.0', 'override', 'vfio-pci'), 'echo vfio-pci > /sys/bus/pci/devices/0000:00:02.0/driver_override');
  t.equal(m.sysfsWrite('0000:00:02.0', 'override'), 'echo > /sys/bus/pci/devices/0000:00:02.0/driver_override');
  t.equal(m.sysfsWrite('0000:00:02.0', 'probe'), 'echo 0000:00:02.0 > /sys/bus/pci/drivers_probe');
  t.equal(m.sysfsWrite('0000:00:02.0', 'bind', 'virtio-pci'), 'echo 0000:00:02.0 > /sys/bus/pci/drivers/virtio-pci/bind');
  t.throws(() => m.sysfsWrite('0000:00:01.0', 'unbind'), /refusing to touch 0000:00:01.0: it is not a listed --device/);
  t.throws(() => m.sysfsWrite('0000:00:02.0', 'override', 'x; reboot'), /not a plain name/);
  t.throws(() => m.sysfsWrite('../../x', 'unbind'), /refusing to touch/);

  const dry = new DeviceManager(fakeShell(() => SYSFS, log), [parseDeviceArg('00:02.0')], { dryRun: true });
  log.length = 0;
  await dry.makePlan();
  t.throws(() => dry.sysfsWrite('0000:00:02.0', 'probe'), /dry run: refusing/);
  await t.rejects(dry.apply(), /dry run/);
  t.ok(log.every((c) => c.startsWith('cd /sys/bus/pci/devices')), 'dry run only read sysfs');
});

t.test('manager: apply journals, restore undoes in reverse and verifies', async (t) => {
  const log: string[] = [];
  let state = SYSFS;
  const m = new DeviceManager(fakeShell(() => state, log), [parseDeviceArg('00:02.0'), parseDeviceArg('3b:00.2')]);
  // after binding, the fake host shows both on vfio-pci
  const bound = SYSFS.replace('dev 0000:00:02.0\nvendor 0x1234\ndevice 0x11e8\n', 'dev 0000:00:02.0\nvendor 0x1234\ndevice 0x11e8\ndriver vfio-pci\n')
    .replace('driver mlx5_core\noverride (null)\ngroup 11', 'driver vfio-pci\noverride vfio-pci\ngroup 11');
  await m.makePlan();
  const origExec = m['shell'].exec;
  m['shell'].exec = async (cmd, o) => { const r = await origExec(cmd, o); if (cmd.startsWith('set -e') && cmd.includes('drivers_probe')) state = bound; return r; };
  const devs = await m.apply();
  t.same(devs.map((d) => [d.bdf, d.driver]), [['0000:00:02.0', 'vfio-pci'], ['0000:3b:00.2', 'vfio-pci']]);
  t.equal(m.pending, 2);
  t.ok(m.restoresOnExit, 'a lab host is restored (or told how) on exit');
  const script = m.restoreScript();
  t.ok(script.indexOf('0000:3b:00.2') < script.indexOf('0000:00:02.0'), 'reverse order');
  t.match(script, /echo 0000:3b:00.2 > \/sys\/bus\/pci\/drivers\/mlx5_core\/bind/);
  t.notMatch(script, /0000:00:01\.0|0000:3b:00\.3/, 'nothing else is named');
  // the restore "does not work": the host still shows the vfio bindings -> problems are reported
  const bad = await m.restore();
  t.notOk(bad.ok);
  t.match(bad.problems.join('\n'), /0000:00:02.0: bound to vfio-pci, was no driver/);
  t.equal(m.pending, 2, 'journal kept for another try');
  state = SYSFS;
  t.same(await m.restore(), { ok: true, problems: [] });
  t.equal(m.pending, 0);

  // a guest thrown away with the process: its bindings die with it, no restore script is printed
  const guest = new DeviceManager(fakeShell(() => state, log), [parseDeviceArg('00:02.0')], { throwaway: true });
  await guest.makePlan();
  guest['shell'].exec = m['shell'].exec;
  await guest.apply();
  t.equal(guest.pending, 1);
  t.notOk(guest.restoresOnExit, 'a throwaway guest is not restored on exit');
  await guest.restore();
});

t.test('a guest\'s profile devices: closing the guest waits a bounded time for a restore stuck in its kernel', async (t) => {
  const log: string[] = [];
  let state = SYSFS;
  let stuck = false;
  const shell = fakeShell(() => state, log);
  const closers: (() => Promise<unknown>)[] = [];
  const guest = {
    name: 'guest-1', facts: {} as Record<string, string>, devices: undefined as unknown,
    onClose: (fn: () => Promise<unknown>) => { closers.push(fn); },
    exec: async (cmd: string, o?: Parameters<Shell['exec']>[1]) => {
      if (stuck && !cmd.startsWith('cd /sys/bus/pci/devices')) return new Promise<never>(() => undefined); // sriov_numvfs 0 waiting on a device lock
      const r = await shell.exec(cmd, o);
      if (cmd.startsWith('set -e') && cmd.includes('drivers_probe')) state = SYSFS.replace('dev 0000:00:02.0\nvendor 0x1234\ndevice 0x11e8\n', 'dev 0000:00:02.0\nvendor 0x1234\ndevice 0x11e8\ndriver vfio-pci\n');
      return r;
    },
  };
  const lines: string[] = [];
  await bindGuestDevices(guest as unknown as Parameters<typeof bindGuestDevices>[0], ['00:02.0'], (l) => lines.push(l), 200);
  t.match(guest.facts.devices, /0000:00:02.0=vfio-pci/);
  stuck = true;
  await closers[0]!(); // without the bound this never returns, and the test times out
  t.match(lines.join('\n'), /guest-1: device bindings not restored within 0.2 s \(a driver may hold the device\); the guest is discarded anyway/);
});
