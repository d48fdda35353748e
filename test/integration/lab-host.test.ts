import t from 'tap';
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepare } from '../../runner/prepare.js';
import { QemuGuest } from '../../harness/target/qemu-guest.js';
import { getProfile } from '../../harness/qemu/profiles.js';
import { ARCHES } from '../../harness/arch.js';
import { clientKey } from '../../harness/ssh/keys.js';
import { LabHost, type LabHostOptions } from '../../harness/target/lab-host.js';
import { DeviceManager, discover } from '../../harness/devices/manager.js';
import { parseDeviceArg } from '../../harness/devices/plan.js';
import { runProfile } from '../../runner/run-cases.js';
import type { Suite } from '../../suites/types.js';
import type { CaseResult } from '../../base/results/schema.js';
import { repoPath } from '../../base/paths.js';
import { readResults } from '../../base/results/file.js';

/*
 * A booted guest of our own plays the lab host: a real Linux machine reached over SSH, with QEMU's
 * edu PCI device (1234:11e8, no in-kernel driver; every profile has one) behind intel-iommu, so vfio-pci can take it.
 */
const EDU = '0000:00:02.0'; // first free slot after the NIC on q35 (checked below by vendor:device)
const NIC = '0000:00:01.0';
const dir = mkdtempSync(join(tmpdir(), 'vfioc-lab-'));
const cli = repoPath('dist', 'cli', 'main.js');

/** What the guest's sysfs says about every PCI device: the before/after comparison of "touched nothing". */
async function sysfsState(h: { exec: LabHost['exec'] }): Promise<string> {
  const s = await discover(h);
  return JSON.stringify([...s.devices.values()].map((d) => [d.bdf, d.driver ?? '-', d.override ?? '-', d.cdev ?? '-']));
}

t.test('lab host over SSH (a guest of our own as the host)', async (t) => {
  const p = await prepare({});
  const g = await QemuGuest.boot({
    arch: ARCHES.x86_64, profile: getProfile('intel-iommu'), accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path,
    hostKey: p.image.hostKey, logDir: join(dir, 'guest'), bootTimeoutMs: 120_000,
  });
  t.teardown(() => g.close());
  const key = await clientKey();
  const identity = join(dir, 'id');
  writeFileSync(identity, key.privateKey, { mode: 0o600 });
  const port = g.sshPort;
  const goodKnownHosts = join(dir, 'known_hosts');
  writeFileSync(goodKnownHosts, `# the guest\n[127.0.0.1]:${port} ${p.image.hostKey}\n`);
  const base: LabHostOptions = { user: 'root', host: '127.0.0.1', port, identity, knownHosts: goodKnownHosts, agentBinary: p.agent.path };

  const edu = (await discover(g)).devices.get(EDU);
  t.match(edu, { vendor: '0x1234', device: '0x11e8', driver: undefined }, 'edu is where the test expects it, with no driver');

  await t.test('host keys: a mismatch is refused (file and line named), an unknown host only with --accept-new-host-key', async (t) => {
    const wrongKey = `ssh-ed25519 ${(await clientKey()).publicBlob}`; // an ed25519 key that is not the guest's
    const wrong = join(dir, 'wrong_known_hosts');
    writeFileSync(wrong, `other ${wrongKey}\n[127.0.0.1]:${port} ${wrongKey}\n`);
    await t.rejects(LabHost.connect({ ...base, knownHosts: wrong }), new RegExp(`^SSH host key of \\[127\\.0\\.0\\.1\\]:${port} has CHANGED: .*${wrong}:2 `));
    await t.rejects(LabHost.connect({ ...base, knownHosts: wrong, acceptNewHostKey: true }), /has CHANGED/, 'opting in to new keys does not accept a changed one');
    t.equal(readFileSync(wrong, 'utf8'), `other ${wrongKey}\n[127.0.0.1]:${port} ${wrongKey}\n`, 'file untouched');

    const empty = join(dir, 'new_known_hosts');
    writeFileSync(empty, '');
    await t.rejects(LabHost.connect({ ...base, knownHosts: empty }), /is not in .*new_known_hosts.*--accept-new-host-key/);
    t.equal(readFileSync(empty, 'utf8'), '', 'nothing added without the opt-in');
    const h = await LabHost.connect({ ...base, knownHosts: empty, acceptNewHostKey: true, agentBinary: undefined });
    t.match(h.hostKeyNote, /added the host key/);
    await h.close();
    t.equal(readFileSync(empty, 'utf8'), `[127.0.0.1]:${port} ${p.image.hostKey.trim()}\n`, 'the key was appended');
    const again = await LabHost.connect({ ...base, knownHosts: empty, agentBinary: undefined });
    t.equal(again.hostKeyNote, undefined, 'now known: accepted without the opt-in');
    await again.close();
  });

  await t.test('auth: ssh-agent (SSH_AUTH_SOCK) works; a key the host does not take is one clear error', async (t) => {
    const sock = join(dir, 'agent.sock');
    const ag = execa('ssh-agent', ['-D', '-a', sock], { reject: false, stdio: 'ignore' });
    t.teardown(() => { ag.kill('SIGTERM'); });
    for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    await execa('ssh-add', ['-q', identity], { env: { SSH_AUTH_SOCK: sock } });
    const h = await LabHost.connect({ ...base, identity: undefined, agentSocket: sock, agentBinary: undefined, followKernelLog: false });
    t.equal((await h.exec('echo via-agent')).stdout.trim(), 'via-agent');
    await h.close();

    const other = join(dir, 'other_id');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    await t.rejects(LabHost.connect({ ...base, identity: other, agentSocket: '', agentBinary: undefined }), new RegExp(`^SSH login as root on ssh://root@127\\.0\\.0\\.1:${port} refused with ${other}$`));
  });

  await t.test('target: facts, uploaded agent answers, step markers and faults from the host kernel log', async (t) => {
    const h = await LabHost.connect(base);
    try {
      t.equal(h.kind, 'ssh');
      t.equal(h.name, `ssh://root@127.0.0.1:${port}`);
      t.match(h.facts, { kernel: p.kernel.release, hostname: 'guest', arch: 'x86_64' });
      t.match(h.agentPath, /^\/tmp\/vfioc-agent\.[^/]+\/vfio-agent$/);
      const m = h.faultMark();
      await h.mark('lab/step-1');
      await h.exec('echo "WARNING: CPU: 0 PID: 1 at drivers/vfio/fake.c:1 fake+0x0/0x10" > /dev/kmsg; echo "---[ end trace 0000000000000000 ]---" > /dev/kmsg');
      await h.mark('lab/step-2');
      const f = h.faultsSince(m);
      t.same(f.map((x) => [x.kind, x.step]), [['warning', 'lab/step-1']], 'the fault is pinned on its step');
      t.same(h.faultsSince(h.faultMark()), []);
      t.same(h.allFaults().filter((x) => x.step === undefined), [], 'boot-time records before attaching are not replayed');
      const dirOf = h.agentPath!.replace(/\/vfio-agent$/, '');
      await h.close();
      t.equal((await g.exec(`test -e ${dirOf} && echo left || echo gone`)).stdout.trim(), 'gone', 'close removes the agent dir');
    } finally {
      await h.close();
    }
  });

  await t.test('device manager: bind edu to vfio-pci and restore its original (no) driver; unlisted devices refused', async (t) => {
    const h = await LabHost.connect({ ...base, agentBinary: undefined });
    t.teardown(() => h.close());
    const before = await sysfsState(h);
    const m = new DeviceManager(h, [parseDeviceArg(EDU)]);
    const plan = await m.makePlan();
    t.same(plan.steps, [{ op: 'bind', bdf: EDU, from: undefined, override: undefined, to: 'vfio-pci' }]);
    const bound = await m.apply();
    t.match(bound, [{ bdf: EDU, driver: 'vfio-pci', vendor: '0x1234', device: '0x11e8', cdev: /^\/dev\/vfio\/devices\/vfio\d+$/ }]);
    const mid = (await discover(h)).devices;
    t.match(mid.get(EDU), { driver: 'vfio-pci', override: 'vfio-pci' });
    t.match(mid.get(NIC), { driver: 'virtio-pci' }, 'the NIC (not listed) keeps its driver');

    t.throws(() => m.sysfsWrite(NIC, 'unbind'), /refusing to touch 0000:00:01.0: it is not a listed --device/);
    t.throws(() => m.sysfsWrite('0000:00:1f.2', 'override', 'vfio-pci'), /refusing to touch/);
    await t.rejects(new DeviceManager(h, [parseDeviceArg('0000:00:09.0')]).makePlan(), /0000:00:09.0: no such PCI device/);

    const r = await m.restore();
    t.same(r, { ok: true, problems: [] });
    t.equal(await sysfsState(h), before, 'sysfs is as before: edu unbound, driver_override cleared, nothing else changed');
  });

  await t.test('a failed bind is rolled back', async (t) => {
    const h = await LabHost.connect({ ...base, agentBinary: undefined });
    t.teardown(() => h.close());
    const before = await sysfsState(h);
    // a driver that exists but does not take edu: the probe leaves it unbound, apply() fails and restores
    const m = new DeviceManager(h, [parseDeviceArg(`${EDU},driver=virtio-pci`)]);
    await t.rejects(m.apply(), /binding 0000:00:02.0 to virtio-pci failed: .*not virtio-pci.*\(what was changed has been restored\)/);
    t.equal(await sysfsState(h), before);
  });

  await t.test('CLI --dry-run prints the plan, exits 0 and changes nothing', async (t) => {
    const before = await sysfsState(g);
    const agentDirs = async () => (await g.exec('ls -d /tmp/vfioc-agent.* 2>/dev/null | wc -l')).stdout.trim();
    const dirsBefore = await agentDirs();
    const r = await execa('node', [cli, 'run', '--target', `ssh://root@127.0.0.1:${port}`, '--identity', identity, '--known-hosts', goodKnownHosts, '--dry-run', '--device', EDU], { reject: false });
    t.equal(r.exitCode, 0, r.stderr);
    t.match(r.stdout, new RegExp(`device plan for ssh://root@127\\.0\\.0\\.1:${port} \\(guest, ${p.kernel.release.replace(/\./g, '\\.')}\\):`));
    t.match(r.stdout, /bind {6}0000:00:02\.0 \[1234:11e8\]: \(no driver\) -> vfio-pci/);
    t.match(r.stdout, /restore {3}0000:00:02\.0 \[1234:11e8\]: vfio-pci -> \(no driver\)/);
    t.match(r.stdout, /dry run: nothing was changed/);
    t.equal(await sysfsState(g), before, 'sysfs unchanged');
    t.equal(await agentDirs(), dirsBefore, 'no agent uploaded');

    const bad = await execa('node', [cli, 'run', '--target', `ssh://root@127.0.0.1:${port}`, '--identity', identity, '--known-hosts', join(dir, 'wrong_known_hosts'), '--dry-run', '--device', EDU], { reject: false });
    t.equal(bad.exitCode, 2);
    t.match(bad.stderr, /has CHANGED/);
    t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
    const noTarget = await execa('node', [cli, 'run', '--dry-run'], { reject: false });
    t.equal(noTarget.exitCode, 2);
    t.match(noTarget.stderr, /--dry-run only applies with --target/);
  });

  await t.test('a connection dropped mid-suite: that case is an error, the runner reconnects and goes on', async (t) => {
    const starts: number[] = [];
    const seen: string[] = [];
    const device = { driver: 'none', class: 'none' as const, id: '-' };
    const suite: Suite<null> = {
      name: 'lab',
      setup: async () => ({
        state: null,
        cases: [
          {
            id: 'lab/drop', device, timeoutMs: 30_000,
            run: async (_s, ctx) => {
              // kill this connection's dropbear process (the parent of the remote shell) from behind
              await ctx.target.exec('(sleep 1; kill -9 $PPID) </dev/null >/dev/null 2>&1 &');
              await new Promise((r) => setTimeout(r, 3000));
              await ctx.agent.request('hello', {}, 10_000);
              return { status: 'pass' };
            },
          },
          {
            id: 'lab/after', device,
            run: async (_s, ctx) => {
              const r = await ctx.target.exec('echo alive; ps');
              seen.push(r.stdout);
              const hello = await ctx.agent.request('hello', {});
              return hello.ok && r.stdout.startsWith('alive') ? { status: 'pass' } : { status: 'fail', reason: r.stderr };
            },
          },
        ],
      }),
    };
    const results: CaseResult[] = [];
    const errors: string[] = [];
    await runProfile({
      profile: 'lab',
      start: async (attempt) => { starts.push(attempt); return LabHost.connect(base, attempt > 0); },
    }, [suite as Suite<unknown>], dir, { result: (r) => results.push(r), error: (e) => errors.push(e.message) });
    t.same(errors, []);
    t.same(starts, [0, 1], 'reconnected once');
    t.same(results.map((r) => [r.id, r.status]), [['lab/drop', 'error'], ['lab/after', 'pass']]);
    t.match(results[0]!.reason, /agent connection lost|SSH connection .* lost/);
    t.match(results[0]!.reason, /a fresh one is used/);
    t.match(seen[0] ?? '', /\/tmp\/vfioc-agent\.[^/]+\/vfio-agent/, 'the runner\'s agent is the uploaded one');
  });

  await t.test('an interrupted run (SIGINT) restores the bindings before it exits', async (t) => {
    const before = await sysfsState(g);
    const sub = execa('node', [cli, 'run', '--target', `ssh://root@127.0.0.1:${port}`, '--identity', identity, '--known-hosts', goodKnownHosts, '--suite', 'migration', '--device', EDU, '--out', join(dir, 'run-int')], { reject: false });
    const end = Date.now() + 60_000;
    let bound = false;
    while (!bound && Date.now() < end) {
      bound = (await g.exec(`readlink /sys/bus/pci/devices/${EDU}/driver || true`)).stdout.includes('vfio-pci');
      if (!bound) await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(bound, 'edu got bound to vfio-pci');
    sub.kill('SIGINT');
    const r = await sub;
    t.equal(r.exitCode, 130, r.stderr.slice(-400));
    t.match(r.stderr, /restoring the lab host's device bindings/);
    t.equal(await sysfsState(g), before, 'edu is unbound again, driver_override cleared');
  });

  await t.test('the migration suite runs on the lab host (mtty there), results say target ssh', async (t) => {
    const out = join(dir, 'run-mig');
    const before = await sysfsState(g);
    const agentDirs = async () => (await g.exec('ls -d /tmp/vfioc-agent.* 2>/dev/null | wc -l')).stdout.trim();
    const dirsBefore = await agentDirs();
    const r = await execa('node', [cli, 'run', '--target', `ssh://root@127.0.0.1:${port}`, '--identity', identity, '--known-hosts', goodKnownHosts, '--suite', 'migration', '--out', out], { reject: false });
    t.equal(r.exitCode, 0, `exit 0 (only known mtty failures): ${r.stderr.slice(-600)}`);
    const res = readResults(join(out, 'results.json'));
    t.same(res.run.target, { kind: 'ssh', address: `ssh://root@127.0.0.1:${port}` });
    t.equal(res.run.complete, true);
    t.same(res.run.errors, []);
    t.equal(res.run.kernel?.release, p.kernel.release, 'the host kernel is recorded');
    t.ok(res.results.length > 100, `${res.results.length} results`);
    t.ok(res.results.every((x) => x.device.class === 'sample' || x.device.class === 'none'), 'mtty stays a sample device');
    const oops = res.results.find((x) => x.id === 'migration/close-reopen/in-RESUMING');
    t.equal(oops?.faults[0]?.step, 'migration/close-reopen/in-RESUMING', 'the known mtty oops is read from the host kernel log and pinned on its step');
    const after = res.results.filter((x) => x.id.startsWith('migration/reset/'));
    t.ok(after.length > 0 && after.every((x) => x.status === 'pass'), 'the cases after it ran on a new connection');
    t.equal(await sysfsState(g), before, 'edu restored at the end');
    t.equal(await agentDirs(), dirsBefore, 'no agent dir left behind');
  });

  await t.test('--qemu names the host\'s QEMU for the real-client suite; one that is not there skips every case naming it', async (t) => {
    const out = join(dir, 'run-qemu');
    const r = await execa('node', [cli, 'run', '--target', `ssh://root@127.0.0.1:${port}`, '--identity', identity, '--known-hosts', goodKnownHosts, '--suite', 'qemu-migration', '--qemu', '/opt/no-such/qemu-system-x86_64', '--out', out], { reject: false });
    t.equal(r.exitCode, 0, r.stderr.slice(-400));
    const res = readResults(join(out, 'results.json'));
    t.ok(res.results.length >= 8, `${res.results.length} results`);
    t.ok(res.results.every((x) => x.status === 'skip' && (x.reason ?? '').includes('/opt/no-such/qemu-system-x86_64')), 'each skip names the QEMU it looked for');
  });

  await t.test('a listed real device is what the migration suite tests; one without migration support skips every case with the kernel\'s answer', async (t) => {
    const out = join(dir, 'run-real');
    const before = await sysfsState(g);
    const r = await execa('node', [cli, 'run', '--target', `ssh://root@127.0.0.1:${port}`, '--identity', identity, '--known-hosts', goodKnownHosts, '--suite', 'migration', '--device', EDU, '--out', out], { reject: false });
    t.equal(r.exitCode, 0, r.stderr.slice(-600));
    const res = readResults(join(out, 'results.json'));
    t.match(res.run.labHost, { devices: [{ bdf: EDU, driver: 'vfio-pci' }] });
    t.ok(res.results.length > 100, `${res.results.length} results: the same case ids as for any device`);
    t.ok(res.results.every((x) => x.device.class === 'real' && x.device.driver === 'vfio-pci' && x.device.id === '1234:11e8'), 'device class real, named by vendor:device');
    t.ok(res.results.every((x) => x.status === 'skip' && /does not support migration: VFIO_DEVICE_FEATURE_MIGRATION gave ENOTTY/.test(x.reason ?? '')), 'every case skips with the kernel\'s answer');
    t.equal(await sysfsState(g), before, 'edu restored at the end');
  });
});
