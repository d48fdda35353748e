import { DEFAULT_PROFILES, PROFILES, getProfile, type Profile } from '../harness/qemu/profiles.js';
import { getArch, type Arch } from '../harness/arch.js';
import { HarnessError } from '../base/errors.js';
import { SUITES, getSuite } from '../suites/registry.js';
import type { Suite } from '../suites/types.js';

export interface Matrix {
  arch: Arch;
  profiles: Profile[];
  suites: Suite<unknown>[];
}

/**
 * The profiles and suites a run, a plan or a listing covers, from --suite/--profile/--arch: x86_64's
 * five profiles by default, --arch arm64 the arm64 ones; one architecture per run (one kernel).
 */
export function resolveMatrix(o: { suite?: string[]; profile?: string[]; arch?: string }): Matrix {
  const suites = (o.suite?.length ? o.suite : SUITES.map((s) => s.name)).map(getSuite);
  const names = o.profile?.length ? o.profile
    : o.arch ? PROFILES.filter((p) => p.arch === getArch(o.arch!).name).map((p) => p.name) : DEFAULT_PROFILES;
  const profiles = names.map(getProfile);
  const arches = new Set(profiles.map((p) => p.arch));
  if (arches.size > 1) throw new HarnessError(`profiles of different architectures in one run: ${[...arches].join(', ')} (one kernel is built per run: run each architecture separately)`);
  if (o.arch && !arches.has(getArch(o.arch).name)) throw new HarnessError(`--arch ${o.arch} does not match the profiles' architecture (${[...arches].join(', ')})`);
  return { arch: getArch(profiles[0]!.arch), profiles, suites };
}
