import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readResults } from '../../base/results/file.js';
import { repoPath } from '../../base/paths.js';
import type { CaseResult } from '../../base/results/schema.js';

// Real DMA through QEMU's edu device behind VT-d, through the CLI as a user runs it.
const out = mkdtempSync(join(tmpdir(), 'vfioc-dma-'));

t.test('dma suite on intel-iommu: real DMA, faults pinned on their steps', async (t) => {
  const r = await execa('node', [repoPath('dist', 'cli', 'main.js'), 'run', '--suite', 'dma', '--profile', 'intel-iommu', '--accel', 'tcg', '--out', out], { reject: false });
  t.equal(r.exitCode, 0, `gate passes: ${r.stderr.split('\n').slice(-8).join(' | ')}`);
  const res = readResults(join(out, 'results.json'));
  t.equal(res.run.complete, true);
  t.same(res.run.errors, []);
  const by = new Map(res.results.map((x) => [x.id, x]));
  t.equal(by.size, res.results.length, 'unique ids');
  const get = (id: string): CaseResult => {
    const x = by.get(id);
    if (!x) throw new Error(`no result ${id}`);
    return x;
  };

  t.match(get('dma/edu/hw-info'), { status: 'pass', observed: { type: 1, maxPasidLog2: 0 } }, 'VT-d hw_info for a device without PASID');
  t.match(get('dma/edu/hw-info').device, { driver: 'vfio-pci', class: 'emulated', id: 'edu', fingerprint: { id: '0x10000ed', iommu: 'dmar0' } });
  t.match(get('dma/edu/round-trip-mapped'), { status: 'pass', observed: { identical: true } });
  t.match(get('dma/type1/round-trip-mapped'), { status: 'pass', observed: { identical: true } });
  for (const id of ['dma/edu/write-unmapped-faults', 'dma/edu/unmap-then-write', 'dma/edu/read-only-mapping', 'dma/type1/unmap-then-write']) {
    const x = get(id);
    t.equal(x.status, 'pass', `${id}: ${x.reason ?? ''}`);
    t.equal(x.observed?.faultReported, true, `${id}: the vIOMMU reported the blocked write`);
    const f = x.faults.filter((f) => f.kind === 'iommu-fault');
    t.ok(f.length > 0 && f.every((y) => y.step === id), `${id}: its fault is pinned on its own step (${f.map((y) => y.step).join(', ')})`);
    t.match(f[0]?.title ?? '', /DMAR/);
  }
  for (const id of ['dma/edu/unmap-then-write', 'dma/edu/read-only-mapping']) t.equal(get(id).observed?.memoryUnchanged, true, `${id}: no write reached memory`);
  // no case other than the fault-provoking ones got a fault
  const stray = res.results.filter((x) => x.faults.length && !(x.observed && 'faultReported' in x.observed));
  t.same(stray.map((x) => x.id), [], 'faults only where a case provoked one');
  t.match(get('dma/type1/dirty-after-dma'), { status: 'pass', observed: { bitsSet: 4 } }, 'type1: every mapped page dirty, the written one among them');
  t.match(get('dma/iommufd/dirty-capability'), { status: 'pass', observed: { capDirtyTracking: false, hwptAllocDirty: 'EOPNOTSUPP' } });
  t.match(get('dma/iommufd/dirty-bitmap-after-dma'), { status: 'skip', reason: /IOMMU_HW_CAP_DIRTY_TRACKING/ });
  t.match(get('dma/pasid/attach-ioas'), { status: 'pass', observed: { errno: 'EINVAL' } });
  t.match(get('dma/pasid/out-of-range'), { status: 'pass', observed: { errno: 'ENOSPC' } });
  t.match(get('dma/pasid/pasid-hwpt-rid-on-auto-domain'), { status: 'pass', observed: { attach: 'EINVAL' } });
});
