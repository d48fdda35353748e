import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBundle, replayQemuChoice, writeBundle, type ReproEnv } from '../../runner/repro.js';
import type { QemuInfo } from '../../harness/qemu/binary.js';
import type { CaseResult } from '../../base/results/schema.js';

const built: QemuInfo = { origin: 'built', version: '10.2.2', binary: '/cache/qemu/x/build/qemu-system-x86_64', sourceId: 'debian-10.2.2+ds-1', series: { hash: 'abc123', patches: ['0001-x.patch'] } };

t.test('a replay boots the QEMU the case ran on', async (t) => {
  t.same(replayQemuChoice(built, () => true), { choice: { kind: 'path', path: built.binary } }, 'the exact build while it exists');
  const gone = replayQemuChoice(built, () => false);
  t.same(gone.choice, { kind: 'built' }, 'a build that is gone: the newest of ours');
  t.match(gone.note, /series abc123\) is gone/, 'and said');
  t.same(replayQemuChoice({ ...built, origin: 'system', binary: '/usr/bin/qemu-system-x86_64' }, () => false), { choice: { kind: 'system' } });
  t.throws(() => replayQemuChoice({ ...built, origin: 'path', binary: '/opt/q/qemu-system-x86_64' }, () => false), /opt\/q\/qemu-system-x86_64, which is gone: give the QEMU/);
  t.same(replayQemuChoice({ ...built, origin: 'path', binary: '/opt/q/qemu-system-x86_64' }, () => true).choice, { kind: 'path', path: '/opt/q/qemu-system-x86_64' });
  const old = replayQemuChoice(undefined, () => true);
  t.same(old.choice, { kind: 'system' });
  t.match(old.note, /does not record its QEMU/);
});

t.test('the bundle keeps the QEMU, and its README names it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-repro-'));
  const env: ReproEnv = { kernelSpec: 'debian:7.2', kernelRelease: '7.2.13', kernelConfig: '/nonexistent', imageHash: 'f'.repeat(64), accel: 'tcg', qemu: built };
  const r = { id: 'iommu-dirty/clear', suite: 'iommu-dirty', profile: 'intel-iommu-dirty', device: { class: 'pci', id: 'edu' }, status: 'fail', reason: 'x', durationMs: 1, faults: [], artifacts: {} } as unknown as CaseResult;
  const out = writeBundle(dir, r, env, [], []);
  t.same(readBundle(out).env.qemu, built);
  t.match(readFileSync(join(out, 'README.txt'), 'utf8'), /QEMU 10\.2\.2 \(built, series abc123\): \/cache\/qemu/);
});
