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
  qemu?: { version: string; binary: string };
  accel?: 'kvm' | 'tcg';
  kernel?: { release: string; sourceId: string; configHash: string; arch: string };
  profiles: string[];
  suites: string[];
  target: { kind: 'qemu' | 'ssh'; address?: string };
  /** harness errors that ended the run or a profile early */
  errors: { profile?: string; message: string; log?: string }[];
  /** a subset of the matrix: `run --case/--exclude`, one shard of a plan, or shards merged (never gated as the whole matrix) */
  selection?: { include: string[]; exclude: string[] };
  shard?: ShardInfo;
  merged?: { shards: number; planHash: string; from: string[]; missing: number[] };
  [extra: string]: unknown;
}

/** One shard of a plan (`run --shard I/N`): which cells it ran, and every shard's, for merge. */
export interface ShardInfo {
  index: number;
  total: number;
  planHash: string;
  /** `profile/suite` cells this shard ran */
  cells: string[];
  /** every shard's cells, index 1 first: merge names a missing shard's cells from it */
  assignment: string[][];
  /** every cell of the plan, in plan order: the merged results keep it */
  plan: string[];
}

export interface RunResults {
  schema: number;
  run: RunInfo;
  results: CaseResult[];
}
