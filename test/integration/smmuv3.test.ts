import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readResults } from '../../base/results/file.js';
import { repoPath } from '../../base/paths.js';

// Every suite that runs in an arm64 guest behind QEMU's SMMUv3, with the default kernel cross-built.
const out = mkdtempSync(join(tmpdir(), 'vfioc-smmuv3-'));
const SUITES = ['migration', 'kselftest', 'dirty', 'pasid', 'dma'];

t.test('the suites on smmuv3 (arm64)', async (t) => {
  const r = await execa('node', [repoPath('dist', 'cli', 'main.js'), 'run', ...SUITES.flatMap((s) => ['--suite', s]), '--profile', 'smmuv3', '--out', out], { reject: false });
  t.equal(r.exitCode, 0, `no regression beyond the known kernel bugs: ${r.stderr.split('\n').filter((l) => /regression|error/i.test(l)).slice(0, 8).join(' | ')}`);
  const res = readResults(join(out, 'results.json'));
  t.equal(res.run.complete, true);
  t.same(res.run.errors, []);
  t.equal(res.run.kernel?.arch, 'arm64');
  t.equal(res.run.accel, 'tcg', 'an arm64 guest on this host is always TCG');
  t.same(new Set(res.results.map((x) => x.id.split('/')[0])), new Set(SUITES), 'every suite reported');

  const pass = (prefix: string) => res.results.filter((x) => x.id.startsWith(prefix) && x.status === 'pass').length;
  t.ok(pass('migration/arc/') >= 60, `migration arcs on mtty: ${pass('migration/arc/')} pass`);
  t.ok(pass('kselftest/iommu/iommufd/') >= 230, `iommufd selftests: ${pass('kselftest/iommu/iommufd/')} pass`);
  t.ok(pass('dirty/iommufd/') >= 30, 'HWPT dirty tracking on the mock');
  t.ok(pass('pasid/mock/') >= 15, 'PASID on the mock');

  const by = new Map(res.results.map((x) => [x.id, x]));
  t.match(by.get('dma/edu/hw-info'), { status: 'pass', observed: { type: 2, maxPasidLog2: 0 } }, 'IOMMU_HW_INFO_TYPE_ARM_SMMUV3');
  t.match(by.get('dma/edu/round-trip-mapped'), { status: 'pass' }, 'edu DMA through the SMMU');
  const fault = by.get('dma/edu/write-unmapped-faults');
  t.equal(fault?.status, 'pass');
  t.ok(fault?.faults.some((f) => f.kind === 'iommu-fault' && f.step === 'dma/edu/write-unmapped-faults' && /arm-smmu-v3/.test(f.title)), 'the SMMU event is pinned on the step');
  t.match(by.get('dma/iommufd/dirty-capability'), { status: 'pass', observed: { capDirtyTracking: false, hwptAllocDirty: 'EOPNOTSUPP' } }, 'no HTTU on this emulation');
  const skips = res.results.filter((x) => x.status === 'skip');
  t.same(skips.filter((x) => (x.reason ?? '').length < 20).map((x) => x.id), [], 'every skip says why');
});
