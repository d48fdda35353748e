import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepare } from '../../runner/prepare.js';
import { QemuGuest } from '../../harness/target/qemu-guest.js';
import { getProfile } from '../../harness/qemu/profiles.js';
import { ARCHES } from '../../harness/arch.js';
import { repoPath } from '../../base/paths.js';
import { buildQemu } from '../../images/qemu/build.js';
import { qemuForProfiles } from '../../runner/qemu-choice.js';

// Our QEMU, built from Debian's source with images/qemu/patches (.ci/run builds it before the tests;
// a cold build here takes minutes), boots the kernel under test behind the emulated IOMMUs.
const cli = repoPath('dist', 'cli', 'main.js');
const logs = mkdtempSync(join(tmpdir(), 'vfioc-qemu-built-'));

t.test('qemu build: a repeat is a cache hit, and qemu list shows the build', async (t) => {
  const b = await buildQemu();
  t.ok(b.binaries.x86_64.endsWith('qemu-system-x86_64') && b.binaries.arm64.endsWith('qemu-system-aarch64'));
  const again = await execa('node', [cli, 'qemu', 'build', '--json'], { reject: false });
  t.equal(again.exitCode, 0, again.stderr);
  const j = JSON.parse(again.stdout) as { cached: boolean; key: string };
  t.ok(j.cached, 'no-change build is a cache hit');
  t.equal(j.key, b.key);
  const list = await execa('node', [cli, 'qemu', 'list'], { reject: false });
  t.match(list.stdout, b.sourceId);
  const v = await execa(b.binaries.x86_64, ['-version']);
  t.match(v.stdout, new RegExp(`version ${b.version.replace(/\./g, '\\.')}`), 'the binary is the version of its source');
  const devices = await execa(b.binaries.x86_64, ['-device', 'help']);
  t.notMatch(devices.stdout, /name "e1000"/, 'trimmed: devices no profile uses are not built');
  t.match(devices.stdout, /name "edu"/);
});

t.test('intel-iommu-sm on our QEMU: the options spelt as this binary spells them, scalable mode in the guest', async (t) => {
  const p = await prepare({});
  const profile = getProfile('intel-iommu-sm');
  const [chosen] = await qemuForProfiles({ kind: 'built' }, ARCHES.x86_64, [profile]);
  if (!chosen || 'skip' in chosen) { t.fail(`built QEMU cannot express ${profile.name}: ${chosen && 'skip' in chosen ? chosen.skip : 'nothing chosen'}`); return; }
  t.equal(chosen.qemu.origin, 'built');
  const g = await QemuGuest.boot({
    arch: ARCHES.x86_64, profile, qemu: chosen.qemu, accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path,
    hostKey: p.image.hostKey, logDir: join(logs, profile.name), bootTimeoutMs: 120_000,
  });
  try {
    t.match(g.argv[0]!, /qemu-system-x86_64$/);
    t.ok(g.argv[0] !== '/usr/bin/qemu-system-x86_64', `booted ${g.argv[0]}`);
    const r = await g.exec('cat /sys/class/iommu/dmar0/intel-iommu/ecap; dmesg | grep -i -m3 dmar', { timeoutMs: 30_000 });
    t.equal(r.code, 0, r.stderr);
    const ecap = BigInt(`0x${r.stdout.split('\n')[0]!.trim()}`);
    t.equal((ecap >> 43n) & 1n, 1n, `ECAP.SMTS (scalable mode) set: ${ecap.toString(16)}`);
    t.equal((ecap >> 40n) & 1n, 1n, 'ECAP.PASID set');
    t.same(g.allFaults().map((f) => f.title), [], 'no console faults');
  } finally {
    await g.close();
  }
});
