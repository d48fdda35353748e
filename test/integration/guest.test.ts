import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepare } from '../../runner/prepare.js';
import { QemuGuest } from '../../harness/target/qemu-guest.js';
import { PROFILES } from '../../harness/qemu/profiles.js';
import { ARCHES } from '../../harness/arch.js';
import { repoPath } from '../../base/paths.js';
import { QmpClient } from '../../harness/qemu/qmp.js';
import { getProfile } from '../../harness/qemu/profiles.js';

// Real kernel, real QEMU, real SSH: the first run builds the default kernel (minutes), later runs hit the cache.
const cli = repoPath('dist', 'cli', 'main.js');
const logs = mkdtempSync(join(tmpdir(), 'vfioc-guest-'));

/** QEMUs started by the harness process `pid` (their QMP socket is named after it) that are still running. */
async function leftoverQemu(pid: number | undefined): Promise<number> {
  const r = await execa('pgrep', ['-c', '-f', `qemu-system-x86_64 .*vfioc-${pid}-`], { reject: false });
  return Number(String(r.stdout).trim() || '0');
}

t.test('every x86 profile boots, shows its IOMMU, has /dev/iommu and /dev/vfio, loads mtty', async (t) => {
  const p = await prepare({});
  t.ok(p.kernel.release.length > 0, `kernel ${p.kernel.release}`);
  // a profile of our patched QEMU boots in the tests of its patch (qemu: 'built')
  for (const profile of PROFILES.filter((x) => x.arch === 'x86_64' && x.qemu !== 'built')) {
    await t.test(profile.name, async (t) => {
      const g = await QemuGuest.boot({
        arch: ARCHES.x86_64, profile, accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
        logDir: join(logs, profile.name), bootTimeoutMs: 90_000,
      });
      try {
        t.ok((g.timing.sshMs ?? 0) > 0, `SSH after ${g.timing.sshMs} ms`);
        const r = await g.exec([
          'echo iommu: $(ls /sys/class/iommu)',
          'test -c /dev/iommu && echo has-dev-iommu',
          'test -d /dev/vfio && echo has-dev-vfio',
          'modprobe mtty && test -d /sys/class/mdev_bus/mtty && echo mtty-loaded',
          'dmesg',
        ].join('; '), { timeoutMs: 30_000 });
        t.equal(r.code, 0, r.stderr);
        const iommus = (/^iommu: (.*)$/m.exec(r.stdout)?.[1] ?? '').split(/\s+/).filter(Boolean);
        if (profile.expect.sysClassIommu) t.ok(iommus.some((x) => profile.expect.sysClassIommu!.test(x)), `/sys/class/iommu has ${profile.expect.sysClassIommu} (got ${iommus.join(' ')})`);
        if (profile.name === 'none') t.notOk(iommus.some((x) => /^(dmar|ivhd)/.test(x)), 'no hardware IOMMU on the none profile');
        if (profile.expect.dmesg) t.match(r.stdout, profile.expect.dmesg, 'dmesg shows the IOMMU');
        t.match(r.stdout, /has-dev-iommu/);
        t.match(r.stdout, /has-dev-vfio/);
        t.match(r.stdout, /mtty-loaded/);
        t.same(g.allFaults().map((f) => f.title), [], 'no console faults while booting and probing');
      } finally {
        await g.close();
      }
    });
  }
});

t.test('a guest that panics: the harness reports the panic with its lines, exits non-zero, leaves no QEMU', async (t) => {
  const sub = execa('node', [cli, 'boot', '--profile', 'none', '--accel', 'tcg', '--logs', join(logs, 'panic'), '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger'], { reject: false });
  const r = await sub;
  t.not(r.exitCode, 0, 'non-zero exit');
  t.match(r.stderr, /console fault \(panic\) Kernel panic - not syncing: sysrq triggered crash/);
  t.match(r.stderr, /guest died/);
  t.match(r.stderr, /\| .*sysrq/i, 'the panic lines are printed');
  t.equal(await leftoverQemu(sub.pid), 0, 'no QEMU left behind');
});

t.test('boot runs a command and returns its exit code and output', async (t) => {
  const r = await execa('node', [cli, 'boot', '--profile', 'none', '--accel', 'tcg', '--logs', join(logs, 'cmd'), '--', 'sh', '-c', 'uname -r; exit 7'], { reject: false });
  t.equal(r.exitCode, 7);
  t.match(r.stdout, /^\d+\.\d+/);
});

t.test('boot keeps argument boundaries, as a local exec would', async (t) => {
  const r = await execa('node', [cli, 'boot', '--profile', 'none', '--accel', 'tcg', '--logs', join(logs, 'args'), '--', 'printf', '[%s]\\n', 'a b', "it's", '', '$HOME;'], { reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout, "[a b]\n[it's]\n[]\n[$HOME;]", '(execa drops the last newline)');
});

t.test('bad input: one clear line, exit 2, no QEMU', async (t) => {
  const cases: [string[], RegExp][] = [
    [['boot', '--profile', 'smmu', '--', 'true'], /unknown profile 'smmu' \(known: none, intel-iommu/],
    [['boot', '--kernel', '/nonexistent/linux', '--', 'true'], /kernel tree not found: \/nonexistent\/linux/],
    [['boot', '--kernel', 'debian:sid', '--', 'true'], /unknown kernel spec 'debian:sid'/],
    [['boot', '--accel', 'fast', '--', 'true'], /--accel must be auto, kvm or tcg/],
    [['kernel', 'build', '--kernel', '/etc'], /\/etc is not a kernel tree/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [args, re] of cases) {
    const sub = execa('node', [cli, ...args], { reject: false });
    const r = await sub;
    t.equal(r.exitCode, 2, args.join(' '));
    t.match(r.stderr, re, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr.trim()}`);
    t.equal(await leftoverQemu(sub.pid), 0, 'no QEMU left behind');
  }
});

t.test('--module puts a driver developer\'s module in place of the in-tree one, and it is the one loaded', async (t) => {
  const p = await prepare({});
  // A real out-of-tree build: mtty.c with one line added (so its srcversion differs from the
  // in-tree module's), compiled with M= against the kernel under test's build directory.
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-mod-'));
  writeFileSync(join(dir, 'mtty.c'), `${readFileSync(join(p.kernel.sourceDir, 'samples', 'vfio-mdev', 'mtty.c'), 'utf8')}\nMODULE_INFO(vfioc_test, "out-of-tree");\n`);
  writeFileSync(join(dir, 'Makefile'), 'obj-m := mtty.o\n');
  const obj = join(p.kernel.image, '..', '..', 'obj');
  const mk = await execa('make', ['-C', obj, `M=${dir}`, 'modules'], { reject: false });
  t.equal(mk.exitCode, 0, mk.stderr.slice(-500));
  const mine = join(dir, 'mtty.ko');
  const withMod = await prepare({ modules: [mine] });
  t.equal(withMod.image.replaced.length, 1);
  t.equal(withMod.image.replaced[0]!.name, 'mtty');
  t.match(withMod.image.replaced[0]!.sha256, /^[0-9a-f]{64}$/);
  const src = withMod.image.replaced[0]!.srcversion;
  t.ok(src, 'srcversion recorded');
  const inTree = await execa('modinfo', ['-F', 'srcversion', '-b', p.kernel.modulesDir, '-k', p.kernel.release, 'mtty'], { reject: false });
  t.not(src, inTree.stdout.trim(), 'differs from the in-tree module');
  const r = await execa('node', [cli, 'boot', '--profile', 'none', '--accel', 'tcg', '--module', mine, '--logs', join(logs, 'module'), '--', 'sh', '-c', 'modprobe mtty && cat /sys/module/mtty/srcversion'], { reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout.trim(), src, 'the guest loaded the out-of-tree module');
  const bad = await execa('node', [cli, 'boot', '--module', '/nonexistent/x.ko', '--', 'true'], { reject: false });
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /module not found: \/nonexistent\/x\.ko/);
});

t.test('QMP: the guest\'s control socket answers our client, with events', async (t) => {
  const p = await prepare({});
  const g = await QemuGuest.boot({ arch: ARCHES.x86_64, profile: getProfile('none'), accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey, logDir: join(logs, 'qmp') });
  try {
    const q = await QmpClient.connect(g.qmpSocket!);
    t.equal((await q.execute('query-status')).status, 'running');
    await q.execute('stop');
    await q.waitEvent('STOP', () => true, 5000);
    t.equal((await q.execute('query-status')).status, 'paused');
    await q.execute('cont');
    await q.waitEvent('RESUME', () => true, 5000);
    t.equal((await g.exec('echo alive', { timeoutMs: 10_000 })).stdout.trim(), 'alive', 'the guest runs again');
    q.close();
    // what a case timeout records: every vCPU's local APIC, read from the same monitor
    const state = await g.hangState();
    t.match(state, /\(qemu\) info cpus\n.*CPU #0/s);
    t.match(state, /\(qemu\) info lapic 1\ndumping local APIC state for CPU 1\b[\s\S]*\nISR\t/, 'the second vCPU\'s APIC with its in-service register');
    t.notMatch(state, /not answered/, 'QEMU answered every command');
  } finally {
    await g.close();
  }
});
