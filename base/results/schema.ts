/**
 * results.json, the canonical record of a run. Everything else (JUnit, HTML, compare, gating)
 * is derived from it; nothing derives results from anything else.
 * Bump SCHEMA_VERSION on any incompatible change; readers refuse other versions with a clear error.
 *
 * Each part is declared once, as a shape (./shape.ts): its type is inferred from it and the
 * reader (./file.ts) validates with it.
 */
import { arrayOf, bool, num, object, oneOf, optional, recordOf, str, unknownValue, type Infer } from './shape.js';

export const SCHEMA_VERSION = 1;

/**
 * blocked: the case did not get to its own assertion because a precondition another case tests did
 * not hold (e.g. VFIO_DEVICE_RESET left the device outside RUNNING). It is never a pass; `blockedBy`
 * names that other case, so a report leads with the one failure that explains the rest. Added
 * without a schema bump: every version-1 file is still valid, and an older reader refuses the new
 * word with a one-line error naming it.
 */
export type Status = 'pass' | 'fail' | 'error' | 'skip' | 'expected-unsupported' | 'warning' | 'blocked';
export const STATUSES: readonly Status[] = ['pass', 'fail', 'error', 'skip', 'expected-unsupported', 'warning', 'blocked'];

/** variant: a vfio-pci variant driver (virtio_vfio_pci ...) on a device our QEMU emulates */
export type DeviceClass = 'real' | 'variant' | 'sample' | 'emulated' | 'none';
export const DEVICE_CLASSES: readonly DeviceClass[] = ['real', 'variant', 'sample', 'emulated', 'none'];

export const DeviceInfoShape = object({
  /** mtty, vfio-pci, mlx5_vfio_pci ... ; 'none' for cases that need no device (kselftest, mock) */
  driver: str(),
  class: oneOf(DEVICE_CLASSES),
  /** mdev type (mtty-2) or PCI BDF or mdev UUID */
  id: str(),
  /** capability fingerprint: migration flags, data size, precopy, dma logging, hw info ... */
  fingerprint: optional(recordOf(unknownValue())),
  /** out-of-tree modules that replaced in-tree ones (name, srcversion, sha256) */
  modules: optional(arrayOf(object({ name: str(), srcversion: optional(str()), sha256: str() }))),
});
export type DeviceInfo = Infer<typeof DeviceInfoShape>;

export const ConsoleFaultShape = object({
  kind: str(), // oops | bug | warning | kasan | panic | hung-task | rcu-stall | ...
  title: str(),
  /** the step marker that was current when the fault was printed */
  step: optional(str()),
  lines: arrayOf(str()),
});
export type ConsoleFault = Infer<typeof ConsoleFaultShape>;

export const CaseResultShape = object({
  /** stable id, e.g. migration/arc/STOP->STOP_COPY */
  id: str({ nonEmpty: true }),
  suite: str(),
  profile: str(),
  device: DeviceInfoShape,
  status: oneOf(STATUSES),
  reason: optional(str()),
  /** what was observed (errno names, sizes, states) — compared across runs */
  observed: optional(recordOf(unknownValue())),
  /**
   * figures that vary between runs of the same behaviour (timings, byte counts, generated UUIDs):
   * shown and plotted with their spread, never compared as a change
   */
  measurements: optional(recordOf(unknownValue())),
  /** what the contract expected, for failure messages */
  expected: optional(recordOf(unknownValue())),
  /** status blocked: the id of the case (same profile and device) that tests the precondition that failed */
  blockedBy: optional(str()),
  durationMs: num({ min: 0 }),
  faults: arrayOf(ConsoleFaultShape),
  artifacts: recordOf(str({ expected: 'a string (a path)' })),
  /** the step log of the case (agent requests and replies, in order) */
  log: optional(arrayOf(str())),
});
export type CaseResult = Infer<typeof CaseResultShape>;

export const SelectionShape = object({ include: arrayOf(str()), exclude: arrayOf(str()) });

/** One shard of a plan: which cells it ran, and every shard's, for merge. */
export const ShardInfoShape = object({
  /** 1-based, as CI_NODE_INDEX */
  index: num({ min: 1 }),
  total: num({ min: 1 }),
  planHash: str(),
  /** `profile/suite` cells this shard ran */
  cells: arrayOf(str()),
  /** every shard's cells, index 1 first: merge names a missing shard's cells from it */
  assignment: arrayOf(arrayOf(str())),
  /** every cell of the plan, in plan order: the merged results keep it */
  plan: arrayOf(str()),
});
export type ShardInfo = Infer<typeof ShardInfoShape>;

const QemuShape = object({
  version: str(),
  binary: str(),
  origin: optional(oneOf(['system', 'built', 'path'])),
  sourceId: optional(str()),
  series: optional(object({ hash: str(), patches: arrayOf(str()) })),
});

export const RunInfoShape = object({
  tool: object({ name: str(), version: str() }),
  startedAt: str(),
  endedAt: optional(str()),
  /** false while the run is still going or if it died half-way */
  complete: bool(),
  host: object({ hostname: str(), arch: str(), cpus: num({ min: 0 }) }),
  /**
   * The QEMU the guests ran on: where it came from (the host's, ours built from images/qemu, a path),
   * and for ours its source and patch series, so an emulated capability is never taken for hardware.
   */
  qemu: optional(QemuShape),
  /** profiles that ran on another QEMU than `qemu` (a profile that needs our patched QEMU), by profile */
  profileQemu: optional(recordOf(QemuShape)),
  /** the patches of our QEMU series whose emulated hardware a profile used (images/qemu/patches), by profile */
  profileEmulation: optional(recordOf(arrayOf(str()))),
  accel: optional(oneOf(['kvm', 'tcg'])),
  kernel: optional(object({ release: str(), sourceId: str(), configHash: str(), arch: str() })),
  profiles: arrayOf(str()),
  suites: arrayOf(str()),
  target: object({ kind: oneOf(['qemu', 'ssh']), address: optional(str()) }),
  /** harness errors that ended the run or a profile early */
  errors: arrayOf(object({ profile: optional(str()), message: str(), log: optional(str()) })),
  /** a subset of the matrix: `run --case/--exclude` (never gated as the whole matrix) */
  selection: optional(SelectionShape),
  /** one shard of a plan (`run --shard I/N`) */
  shard: optional(ShardInfoShape),
  /** shards joined by `merge` */
  merged: optional(object({ shards: num({ min: 1 }), planHash: str(), from: arrayOf(str()), missing: arrayOf(num({ min: 1 })) })),
  /** every guest booted: QEMU start to the first SSH command, per profile (replacements included) */
  boots: optional(arrayOf(object({ profile: str(), ms: num({ min: 0 }) }))),
}, { open: true });
export type RunInfo = Infer<typeof RunInfoShape>;

export interface RunResults {
  schema: number;
  run: RunInfo;
  results: CaseResult[];
}
