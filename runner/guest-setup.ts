import { resolve } from 'node:path';
import { getArch, type Arch } from '../harness/arch.js';
import { DEFAULT_PROFILES, PROFILES, getProfile, type Profile } from '../harness/qemu/profiles.js';
import type { Accel } from '../harness/qemu/cmdline.js';
import type { QemuBinary } from '../harness/qemu/binary.js';
import { qemuForProfiles, type ProfileQemu } from './qemu-choice.js';
import { HarnessError } from '../base/errors.js';
import { prepare, decideAccel, type Prepared } from './prepare.js';
import type { GuestOptions } from './run-options.js';
import { readBundle, type Bundle } from './bundle.js';

/** Everything the guests of a run (or a boot, or a replay) are started from. */
export interface GuestSetup {
  arch: Arch;
  prepared: Prepared;
  accel: { accel: Accel; reason: string; qemu: QemuBinary };
  /** each profile's QEMU, or why none of this run's can express it (it is then skipped, said) */
  qemus: ProfileQemu[];
  /** the kernel as a reproducer bundle names it again: debian:X.Y, or the tree's absolute path */
  kernelSpec: string;
  /** the prepared bundle the guests boot from (--prepared) */
  bundle?: Bundle;
}

/**
 * Build or take from the cache what the guests need (the kernel and image, and our QEMU when a
 * profile or --qemu wants it), and decide the accelerator on the first profile that can run.
 */
export async function setUpGuests(o: GuestOptions, profiles: Profile[]): Promise<GuestSetup> {
  const arch = getArch(profiles[0]!.arch);
  if (o.prepared && o.modules?.length) throw new HarnessError('--module with --prepared: the bundle\'s image is already made; give the modules to prepare');
  const bundle = o.prepared ? await readBundle(o.prepared, arch) : undefined;
  // Both builds wait on downloads as well as on the CPU: overlapped, a cold start waits less.
  const [qemus, prepared] = await Promise.all([
    qemuForProfiles(o.qemu ?? { kind: 'system' }, arch, profiles),
    bundle?.prepared ?? prepare({ kernel: o.kernel, arch, modules: o.modules }),
  ]);
  const first = qemus.find((q): q is Extract<ProfileQemu, { qemu: QemuBinary }> => 'qemu' in q);
  if (!first) throw new HarnessError(`no profile of this run can run on the chosen QEMU: ${qemus.map((q) => ('skip' in q ? `${q.profile.name}: ${q.skip}` : '')).join('; ')}`);
  const accel = await decideAccel(o.accel, prepared, first.profile, first.qemu);
  const kernelSpec = bundle?.manifest.kernelSpec ?? (o.kernel.startsWith('debian:') ? o.kernel : resolve(o.kernel));
  return { arch, prepared, accel, qemus, kernelSpec, ...(bundle ? { bundle } : {}) };
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
