import { getArch, type Arch } from '../harness/arch.js';
import type { Profile } from '../harness/qemu/profiles.js';
import { SUITES, getSuite } from '../suites/registry.js';
import type { Suite } from '../suites/types.js';
import { chooseProfiles } from './guest-setup.js';

export interface Matrix {
  arch: Arch;
  profiles: Profile[];
  suites: Suite<unknown>[];
}

/** The profiles and suites a run, a plan or a listing covers, from --suite/--profile/--arch, as `run` chooses them. */
export function resolveMatrix(o: { suite?: string[]; profile?: string[]; arch?: string }): Matrix {
  const profiles = chooseProfiles(o.profile, o.arch);
  const suites = (o.suite?.length ? o.suite : SUITES.map((s) => s.name)).map(getSuite);
  return { arch: getArch(profiles[0]!.arch), profiles, suites };
}
