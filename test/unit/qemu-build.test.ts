import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareDebVersions } from '../../harness/kernel/debversion.js';
import { parseQemuSpec } from '../../images/qemu/source.js';
import { readSeries, applySeries } from '../../images/qemu/series.js';
import { parseQemuChoice } from '../../runner/qemu-choice.js';
import { parseDeviceList, parseMachineList, parsePropList, parseVersion } from '../../harness/qemu/probe.js';
import { capsFromFixture } from '../helpers/qemu-caps.js';
import { HarnessError } from '../../base/errors.js';

t.test('Debian version order: epoch, upstream, revision; ~ before anything', async (t) => {
  const sorted = ['1:10.2.2+ds-1', '1:11.1.2+ds-3', '1:11.1.3+ds-1', '1:9.2.0+ds-1', '2:1.0-1', '1:11.1.3~rc1+ds-1', '1:11.1.3+ds-1.1'];
  t.same([...sorted].sort(compareDebVersions), ['1:9.2.0+ds-1', '1:10.2.2+ds-1', '1:11.1.2+ds-3', '1:11.1.3~rc1+ds-1', '1:11.1.3+ds-1', '1:11.1.3+ds-1.1', '2:1.0-1']);
  t.equal(compareDebVersions('7.2+dfsg-7+deb12u18', '7.2+dfsg-7+deb12u18'), 0);
  t.ok(compareDebVersions('1.0a', '1.0+') < 0, 'letters sort before other characters');
  t.ok(compareDebVersions('1.010', '1.9') > 0, 'digit runs compare as numbers');
});

t.test('QEMU source specs', async (t) => {
  t.same(parseQemuSpec('debian:latest'), { kind: 'debian', series: 'latest' });
  t.same(parseQemuSpec('debian:10.2'), { kind: 'debian', series: '10.2' });
  t.match(parseQemuSpec('./qemu'), { kind: 'tree' });
  t.throws(() => parseQemuSpec('git:foo'), /unknown QEMU source 'git:foo'/);
  t.throws(() => parseQemuSpec('debian:11'), /unknown QEMU source/);
});

t.test('--qemu choices', async (t) => {
  t.same(parseQemuChoice(undefined), { kind: 'system' });
  t.same(parseQemuChoice('built'), { kind: 'built' });
  t.match(parseQemuChoice('/usr/bin'), { kind: 'path', path: '/usr/bin' });
  t.throws(() => parseQemuChoice('/opt/no-qemu/bin'), /no such file or directory/);
  t.throws(() => parseQemuChoice('debian:10.2'), /goes to 'qemu build --qemu'/);
});

t.test('the probe reads what QEMU prints', async (t) => {
  const caps = capsFromFixture('7.2.22-x86_64');
  t.equal(caps.version, '7.2.22');
  t.ok(caps.machines.includes('q35') && caps.machines.includes('pc-q35-7.2'), 'machine names and versioned types');
  t.ok(['intel-iommu', 'amd-iommu', 'edu', 'virtio-iommu-pci', 'virtio-iommu'].every((d) => caps.devices.includes(d)), 'device names and aliases');
  t.ok(caps.props['device:intel-iommu']!.includes('x-scalable-mode'));
  t.notOk(caps.props['device:intel-iommu']!.includes('scalable-mode'));
  const arm = capsFromFixture('7.2.22-aarch64');
  t.ok(arm.props['machine:virt']!.includes('iommu') && arm.props['machine:virt']!.includes('gic-version'));
  t.same(parsePropList('intel-iommu options:\n  aw-bits=<uint8>        -  (default: 39)\n  x-pasid-mode=<bool>\n'), ['aw-bits', 'x-pasid-mode']);
  t.same(parseDeviceList('Network devices:\nname "virtio-net-pci", bus PCI, alias "virtio-net"\n'), ['virtio-net-pci', 'virtio-net']);
  t.same(parseMachineList('Supported machines are:\nq35   Standard PC\nnone  empty machine\n'), ['q35', 'none']);
  t.same(parseVersion('QEMU emulator version 10.2.2 (Debian 1:10.2.2+ds-1)\n'), { version: '10.2.2', versionLine: 'QEMU emulator version 10.2.2 (Debian 1:10.2.2+ds-1)' });
});

function tree(): string {
  const d = mkdtempSync(join(tmpdir(), 'vfioc-series-'));
  mkdirSync(join(d, 'hw'));
  writeFileSync(join(d, 'hw', 'a.c'), 'int a;\nint b;\nint c;\n');
  return d;
}

const PATCH = `--- a/hw/a.c\n+++ b/hw/a.c\n@@ -1,3 +1,3 @@\n int a;\n-int b;\n+long b;\n int c;\n`;

t.test('the series applies in order; a patch that does not apply stops the build and names itself', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-patches-'));
  writeFileSync(join(dir, 'series'), '# ours\n0001-b.patch\n0002-again.patch\n');
  writeFileSync(join(dir, '0001-b.patch'), PATCH);
  writeFileSync(join(dir, '0002-again.patch'), PATCH);
  const s = readSeries(dir);
  t.same(s.patches, ['0001-b.patch', '0002-again.patch']);
  t.match(s.hash, /^[0-9a-f]{16}$/);
  const d = tree();
  const log = join(d, 'log');
  await t.rejects(applySeries(s, d, log), /QEMU patch 0002-again.patch does not apply/);
  t.equal(readFileSync(join(d, 'hw', 'a.c'), 'utf8'), 'int a;\nlong b;\nint c;\n', 'the first patch applied before the second failed');
  writeFileSync(join(dir, 'series'), '0001-b.patch\n');
  const one = readSeries(dir);
  t.not(one.hash, s.hash, 'the hash follows the series');
  await applySeries(one, tree(), log);
  writeFileSync(join(dir, 'series'), 'missing.patch\n');
  t.throws(() => readSeries(dir), HarnessError);
  t.throws(() => readSeries(dir), /lists missing.patch, which is not in/);
  writeFileSync(join(dir, 'series'), '#\n');
  t.same(readSeries(dir), { hash: 'none', patches: [], texts: {} }, 'an empty series is the unpatched QEMU');
});
