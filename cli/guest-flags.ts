import { DEFAULT_KERNEL } from '../harness/kernel/source.js';
import type { AccelMode } from '../harness/qemu/accel.js';
import { HarnessError } from '../base/errors.js';
import type { GuestOptions } from '../runner/run-options.js';
import { parseQemuChoice } from '../runner/qemu-choice.js';

/**
 * The flags of every command that boots guests (run, boot), as parseArgs takes them. A new one is
 * added here, to GuestOptions (runner/run-options.ts) and to guestOptions() below.
 */
export const GUEST_FLAGS = {
  kernel: { type: 'string', default: DEFAULT_KERNEL },
  accel: { type: 'string', default: 'auto' },
  module: { type: 'string', multiple: true },
  'boot-timeout': { type: 'string' },
  qemu: { type: 'string' },
} as const;

export interface GuestFlagValues {
  kernel?: string;
  accel?: string;
  module?: string[];
  'boot-timeout'?: string;
  qemu?: string;
}

const ACCELS: readonly AccelMode[] = ['auto', 'kvm', 'tcg'];

export function parseAccel(s: string | undefined): AccelMode {
  const mode = s ?? 'auto';
  if (!(ACCELS as readonly string[]).includes(mode)) throw new HarnessError(`--accel must be auto, kvm or tcg, not '${mode}'`);
  return mode as AccelMode;
}

/** A day: no guest boot or command of ours is meant to wait longer, and a typo in the units shows. */
const MAX_SECONDS = 24 * 3600;

/** `--flag S`: a number of seconds, > 0 and at most a day, as milliseconds; anything else is refused. */
export function parseSeconds(flag: string, s: string): number {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(s) ? Number(s) : NaN;
  if (!(n > 0) || n > MAX_SECONDS) {
    throw new HarnessError(`--${flag} takes a number of seconds greater than 0 and at most ${MAX_SECONDS}, not '${s}'`);
  }
  return Math.round(n * 1000);
}

/** The guest flags checked and turned into the runner's options; `bootTimeoutS` is the command's default. */
export function guestOptions(v: GuestFlagValues, bootTimeoutS: number): GuestOptions {
  return {
    kernel: v.kernel ?? DEFAULT_KERNEL,
    accel: parseAccel(v.accel),
    modules: v.module,
    bootTimeoutMs: parseSeconds('boot-timeout', v['boot-timeout'] ?? String(bootTimeoutS)),
    qemu: parseQemuChoice(v.qemu),
  };
}
