import { resolve } from 'node:path';
import { getArch, type Arch } from '../harness/arch.js';
import { DEFAULT_PROFILES, PROFILES, getProfile, type Profile } from '../harness/qemu/profiles.js';
import type { Accel } from '../harness/qemu/cmdline.js';
import type { QemuBinary } from '../harness/qemu/binary.js';
import { HarnessError } from '../base/errors.js';
import { prepare, decideAccel, type Prepared } from './prepare.js';
import type { GuestOptions } from './run-options.js';

/** Everything the guests of a run (or a boot, or a replay) are started from. */
export interface GuestSetup {
  arch: Arch;
  prepared: Prepared;
  accel: { accel: Accel; reason: string; qemu: QemuBinary };
  /** the kernel as a reproducer bundle names it again: debian:X.Y, or the tree's absolute path */
  kernelSpec: string;
}

/** Build or take from the cache what the guests need, and decide the accelerator on the first profile. */
export async function setUpGuests(o: GuestOptions, profiles: Profile[]): Promise<GuestSetup> {
  const arch = getArch(profiles[0]!.arch);
  const prepared = await prepare({ kernel: o.kernel, arch, modules: o.modules });
  const accel = await decideAccel(o.accel, prepared, profiles[0]!);
  return { arch, prepared, accel, kernelSpec: o.kernel.startsWith('debian:') ? o.kernel : resolve(o.kernel) };
}

/**
 * The profiles a run boots: the named ones, or every profile of --arch (x86_64's when no --arch).
 * One kernel is built per run, so they must share an architecture.
 */
export function chooseProfiles(names: string[] | undefined, arch?: string): Profile[] {
  const wanted = arch ? getArch(arch).name : undefined;
  const profiles = names?.length
    ? names.map(getProfile)
    : wanted ? PROFILES.filter((p) => p.arch === wanted) : DEFAULT_PROFILES.map(getProfile);
  const arches = new Set(profiles.map((p) => p.arch));
  if (arches.size > 1) {
    throw new HarnessError(`profiles of different architectures in one run: ${[...arches].join(', ')} (one kernel is built per run: run each architecture separately)`);
  }
  if (wanted && !arches.has(wanted)) {
    throw new HarnessError(`--arch ${arch} does not match the profiles' architecture (${[...arches].join(', ')})`);
  }
  return profiles;
}
