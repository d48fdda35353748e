/**
 * results.json, the canonical record of a run. Everything else (JUnit, HTML, compare, gating)
 * is derived from it; nothing derives results from anything else.
 * Bump SCHEMA_VERSION on any incompatible change; readers refuse other versions with a clear error.
 */
export const SCHEMA_VERSION = 1;

export type Status = 'pass' | 'fail' | 'error' | 'skip' | 'expected-unsupported' | 'warning';
export const STATUSES: readonly Status[] = ['pass', 'fail', 'error', 'skip', 'expected-unsupported', 'warning'];

export type DeviceClass = 'real' | 'sample' | 'emulated' | 'none';

export interface DeviceInfo {
  /** mtty, vfio-pci, mlx5_vfio_pci ... ; 'none' for cases that need no device (kselftest, mock) */
  driver: string;
  class: DeviceClass;
  /** mdev type (mtty-2) or PCI BDF or mdev UUID */
  id: string;
  /** capability fingerprint: migration flags, data size, precopy, dma logging, hw info ... */
  fingerprint?: Record<string, unknown>;
  /** out-of-tree modules that replaced in-tree ones (name, srcversion, sha256) */
  modules?: { name: string; srcversion?: string; sha256: string }[];
}

export interface ConsoleFault {
  kind: string; // oops | bug | warning | kasan | panic | hung-task | rcu-stall | ...
  title: string;
  /** the step marker that was current when the fault was printed */
  step?: string;
  lines: string[];
}

export interface CaseResult {
  /** stable id, e.g. migration/arc/STOP->STOP_COPY */
  id: string;
  suite: string;
  profile: string;
  device: DeviceInfo;
  status: Status;
  reason?: string;
  /** what was observed (errno names, sizes, states) — compared across runs */
  observed?: Record<string, unknown>;
  /**
   * figures that vary between runs of the same behaviour (timings, byte counts, generated UUIDs):
   * shown and plotted with their spread, never compared as a change
   */
  measurements?: Record<string, unknown>;
  /** what the contract expected, for failure messages */
  expected?: Record<string, unknown>;
  durationMs: number;
  faults: ConsoleFault[];
  artifacts: Record<string, string>;
  /** the step log of the case (agent requests and replies, in order) */
  log?: string[];
}

export interface RunInfo {
  tool: { name: string; version: string };
  startedAt: string;
  endedAt?: string;
  /** false while the run is still going or if it died half-way */
  complete: boolean;
  host: { hostname: string; arch: string; cpus: number };
  /**
   * The QEMU the guests ran on: where it came from (the host's, ours built from images/qemu, a path),
   * and for ours its source and patch series, so an emulated capability is never taken for hardware.
   */
  qemu?: { version: string; binary: string; origin?: 'system' | 'built' | 'path'; sourceId?: string; series?: { hash: string; patches: string[] } };
  /** profiles that ran on another QEMU than `qemu` (a profile that needs our patched QEMU), by profile */
  profileQemu?: Record<string, { version: string; binary: string; origin?: 'system' | 'built' | 'path'; sourceId?: string; series?: { hash: string; patches: string[] } }>;
  accel?: 'kvm' | 'tcg';
  kernel?: { release: string; sourceId: string; configHash: string; arch: string };
  profiles: string[];
  suites: string[];
  target: { kind: 'qemu' | 'ssh'; address?: string };
  /** harness errors that ended the run or a profile early */
  errors: { profile?: string; message: string; log?: string }[];
  [extra: string]: unknown;
}

export interface RunResults {
  schema: number;
  run: RunInfo;
  results: CaseResult[];
}
