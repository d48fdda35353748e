import type { Suite } from './types.js';
import { migrationSuite } from './migration/index.js';
import { kselftestSuite } from './kselftest/index.js';
import { dirtySuite } from './dirty/index.js';
import { pasidSuite } from './pasid/index.js';
import { dmaSuite } from './dma/index.js';
import { qemuMigrationSuite } from './qemu-migration/index.js';
import { iommuDirtySuite } from './iommu-dirty/index.js';
import { HarnessError } from '../base/errors.js';

/** Every suite `run` knows, in default run order. */
export const SUITES: Suite<unknown>[] = [migrationSuite as Suite<unknown>, kselftestSuite as Suite<unknown>, dirtySuite as Suite<unknown>, pasidSuite as Suite<unknown>, dmaSuite as Suite<unknown>, iommuDirtySuite as Suite<unknown>, qemuMigrationSuite as Suite<unknown>];

export function getSuite(name: string): Suite<unknown> {
  const s = SUITES.find((x) => x.name === name);
  if (!s) throw new HarnessError(`unknown suite '${name}' (known: ${SUITES.map((x) => x.name).join(', ')})`);
  return s;
}
