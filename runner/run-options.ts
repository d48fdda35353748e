import type { AccelMode } from '../harness/qemu/accel.js';
import type { QemuChoice } from './qemu-choice.js';
import type { Suite } from '../suites/types.js';
import type { ScopeOptions } from './scope.js';

/**
 * What it takes to boot guests of the kernel under test: shared by `run`, `boot` and `replay`.
 * A new option of theirs is a field here, its flag in cli/guest-flags.ts (GUEST_FLAGS and
 * guestOptions), its use where the guests are set up (runner/guest-setup.ts), and, when results
 * should record it, a field of the RunInfo that runner/run-guests.ts makes with newRunInfo.
 */
export interface GuestOptions {
  /** debian:latest, debian:X.Y, or a kernel tree's path */
  kernel: string;
  accel: AccelMode;
  /** modules that replace the in-tree ones of the same name in the guest */
  modules?: string[];
  /** how long a guest may take to answer SSH */
  bootTimeoutMs: number;
  /** the QEMU the guests boot on (default: the host's; a profile that needs ours gets ours) */
  qemu?: QemuChoice;
  /** a bundle written by `prepare --out DIR`: boot from it and build nothing */
  prepared?: string;
}

/** A lab host reached over SSH instead of booted guests (`run --target`). */
export interface LabTargetOptions {
  /** ssh://USER@HOST[:PORT] */
  address: string;
  /** --device specs: BDF[,driver=D][,vfs=N] */
  devices: string[];
  identity?: string;
  knownHosts?: string;
  acceptNewHostKey: boolean;
  /** the host's QEMU for the real-client suite (default: qemu-system-x86_64 on its PATH) */
  clientQemu?: string;
}

/** The one options type of a run: the cli fills it from its flags, runner/run.ts carries it out. */
export interface RunOptions extends GuestOptions {
  suites: Suite<unknown>[];
  /** --suite named them: a profile that exists for some suites (Profile.suites) runs them too */
  suitesNamed?: boolean;
  /** the run directory (default runs/<start>-<kernel or host>) */
  out?: string;
  /** profiles to boot (default: the architecture's own, x86_64's when none is named) */
  profiles?: string[];
  arch?: string;
  /** run on this machine instead of booting guests; `kernel` then names the agent's uapi headers */
  lab?: LabTargetOptions;
  /** a subset (--case/--exclude) or one shard of the plan (--shard I/N) */
  scope?: ScopeOptions;
  /** profiles run at once (--jobs); absent: what the host allows for the accel chosen (defaultJobs) */
  jobs?: number;
  /** why that many, said when the run starts */
  jobsWhy?: string;
}
