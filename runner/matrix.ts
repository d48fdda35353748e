import { getArch, type Arch } from '../harness/arch.js';
import type { Profile } from '../harness/qemu/profiles.js';
import { SUITES, getSuite } from '../suites/registry.js';
import type { Suite } from '../suites/types.js';
import { chooseProfiles } from './guest-setup.js';

export interface Matrix {
  arch: Arch;
  profiles: Profile[];
  suites: Suite<unknown>[];
  /** --suite named them: every profile runs them, whatever it exists for */
  suitesNamed?: boolean;
}

/**
 * The suites `m` runs on profile `p`: all of them, or, when the run did not name its suites and
 * the profile exists for some (Profile.suites), only those.
 */
export function suitesFor(m: Pick<Matrix, 'suites' | 'suitesNamed'>, p: Pick<Profile, 'suites'>): Suite<unknown>[] {
  if (m.suitesNamed || !p.suites) return m.suites;
  return m.suites.filter((s) => p.suites!.includes(s.name));
}

/** Profile name -> the suites it is limited to, for the plan (only the profiles that are limited). */
export function suiteLimits(m: Pick<Matrix, 'profiles' | 'suites' | 'suitesNamed'>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of m.profiles) {
    if (!m.suitesNamed && p.suites) out[p.name] = suitesFor(m, p).map((s) => s.name);
  }
  return out;
}

/** The profiles and suites a run, a plan or a listing covers, from --suite/--profile/--arch, as `run` chooses them. */
export function resolveMatrix(o: { suite?: string[]; profile?: string[]; arch?: string }): Matrix {
  const profiles = chooseProfiles(o.profile, o.arch);
  const suites = (o.suite?.length ? o.suite : SUITES.map((s) => s.name)).map(getSuite);
  return { arch: getArch(profiles[0]!.arch), profiles, suites, suitesNamed: !!o.suite?.length };
}
