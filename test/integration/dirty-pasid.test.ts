import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readResults } from '../../base/results/file.js';
import { repoPath } from '../../base/paths.js';
import type { CaseResult } from '../../base/results/schema.js';

// The dirty and pasid suites on one profile with the default kernel, through the CLI as a user runs it.
const out = mkdtempSync(join(tmpdir(), 'vfioc-dirty-pasid-'));
const PROFILE = process.env.VFIOC_DIRTY_PROFILE ?? 'none';

/**
 * Failures the contract explains (each one documented):
 *
 * 7.2's iommufd mock page table (drivers/iommu/generic_pt, AMDv1 format with a 2 KiB granule) stores
 * a 4 KiB mapping as a 2-entry contiguous IOPTE, and record_dirty() in iommu_pt.h reports
 * ((index | (n-1)) - index) entries for it: one short. So a write to the second 2 KiB half of a
 * 4 KiB IOPTE is reported as a write to the first half: a false negative (plus a false positive).
 * Every case whose pattern marks an odd 2 KiB page shows it; the patterns that mark only even pages
 * (every-other, as the upstream selftest does) pass. The reasons must say a marked page was lost.
 */
const CONTIGUOUS_IOPTE = /^dirty\/(iommufd\/bitmap\/[^/]+\/(all|sparse|edges)|iommufd\/contiguous-iopte\/second-half|oracle\/mock-hwpt-pair\/(sparse|edges))$/;

function explained(r: CaseResult): boolean {
  return CONTIGUOUS_IOPTE.test(r.id) && r.status === 'fail' && /marked pages? not reported/.test(r.reason ?? '');
}

t.test(`dirty and pasid suites on ${PROFILE}`, async (t) => {
  const r = await execa('node', [repoPath('dist', 'cli', 'main.js'), 'run', '--suite', 'dirty', '--suite', 'pasid', '--profile', PROFILE, '--accel', 'tcg', '--out', out], { reject: false });
  t.ok(existsSync(join(out, 'results.json')), 'results.json written');
  const res = readResults(join(out, 'results.json'));
  t.equal(res.run.complete, true);
  t.same(res.run.errors, [], 'no harness errors');
  const ids = res.results.map((x) => x.id);
  t.equal(new Set(ids).size, ids.length, 'case ids are unique');

  const count = (prefix: string) => ids.filter((id) => id.startsWith(prefix)).length;
  t.ok(count('dirty/iommufd/') >= 55, `iommufd HWPT cases: ${count('dirty/iommufd/')}`);
  t.ok(count('dirty/iommufd/bitmap/') >= 28, '7 buffer sizes x 4 patterns');
  t.ok(count('dirty/type1/') >= 20, `type1 cases: ${count('dirty/type1/')}`);
  t.ok(count('dirty/dma-logging/') >= 20, `DMA logging cases: ${count('dirty/dma-logging/')}`);
  t.ok(count('dirty/oracle/') >= 4, `oracle cases: ${count('dirty/oracle/')}`);
  t.ok(count('pasid/') >= 20, `pasid cases: ${count('pasid/')}`);

  const unexplained = res.results.filter((x) => (x.status === 'fail' || x.status === 'error') && !explained(x));
  t.same(unexplained.map((x) => `${x.id}: ${x.status}: ${x.reason}`), [], 'no failures the contract does not explain');
  const skips = res.results.filter((x) => x.status === 'skip');
  t.ok(skips.every((x) => (x.reason ?? '').length > 20), 'every skip says why');
  t.same(skips.filter((x) => !(x.reason ?? '').length).map((x) => x.id), [], 'no silent skip');

  // The cases whose patterns stay on the first half of each IOPTE pass on every size, incl. the 8 KiB bitmap.
  for (const size of ['8k', '320k', '64M', '128M']) {
    const every = res.results.find((x) => x.id === `dirty/iommufd/bitmap/${size}/every-other`);
    t.equal(every?.status, 'pass', `every-other at ${size}`);
  }
  t.equal(res.results.find((x) => x.id === 'dirty/iommufd/bitmap/128M/every-other')?.observed?.bitmapBytes, 8200, '128 MiB: an 8 KiB bitmap (+ the agent\'s slack word)');
  for (const id of ['dirty/iommufd/no-clear/128M', 'dirty/iommufd/capability/mock', 'dirty/type1/get-bitmap/several-mappings', 'dirty/dma-logging/start/too-many-ranges', 'dirty/oracle/mock-hwpt-pair/every-other']) {
    t.equal(res.results.find((x) => x.id === id)?.status, 'pass', id);
  }
  t.equal(res.results.find((x) => x.id === 'dirty/dma-logging/real-report')?.status, 'skip');

  // PASID: on a kernel with the uAPI every mock case passes; without it every case is asserted unsupported.
  // The device cases need our QEMU's pasid-dma (profile intel-iommu-pasid): here they skip, saying so.
  const device = res.results.filter((x) => x.id.startsWith('pasid/device/'));
  t.ok(device.length >= 10, `device cases listed: ${device.length}`);
  t.same(device.filter((x) => x.status !== 'skip' || !/pasid-dma/.test(x.reason ?? '')).map((x) => `${x.id}: ${x.status}: ${x.reason}`), [],
    'each device case skips on a profile without the device, naming it');
  const pasid = res.results.filter((x) => x.id.startsWith('pasid/') && !x.id.startsWith('pasid/device/') && x.id !== 'pasid/vfio/emulated-pci-device');
  const statuses = new Set(pasid.map((x) => x.status));
  t.ok(statuses.size === 1 && (statuses.has('pass') || statuses.has('expected-unsupported')), `pasid cases all pass or are all expected-unsupported: ${[...statuses].join(', ')}`);
  if (statuses.has('expected-unsupported')) t.ok(pasid.every((x) => /asserted/.test(x.reason ?? '')), 'each unsupported case says what it asserted');
  t.equal(res.results.find((x) => x.id === 'pasid/vfio/emulated-pci-device')?.status, 'skip');
  t.ok(r.exitCode === 0 || r.exitCode === 1, `exit ${r.exitCode}: ${r.stderr.slice(-300)}`);
});
