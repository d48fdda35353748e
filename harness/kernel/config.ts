import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Arch } from '../arch.js';
import { repoPath } from '../../base/paths.js';

/** `n` stands for "is not set" and for absent: Kconfig treats them alike. */
export type ConfigValue = string;

export interface Fragment {
  name: string;
  text: string;
}

/** The fragments every guest kernel gets, in merge order: arch base, then the uAPI under test. */
export const COMMON_FRAGMENTS = ['vfio.config', 'debug.config', '9p.config'];

export function fragmentsFor(arch: Arch): Fragment[] {
  return [arch.baseFragment, ...COMMON_FRAGMENTS].map((name) => ({
    name,
    text: readFileSync(repoPath('images', 'kconfig', name), 'utf8'),
  }));
}

/**
 * Options a config text sets: `CONFIG_X=y|m|"str"|123` and `# CONFIG_X is not set` (as n).
 * Later lines win, as they do in merge_config.sh.
 */
export function parseConfig(text: string): Map<string, ConfigValue> {
  const out = new Map<string, ConfigValue>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (set) { out.set(set[1]!, set[2]!); continue; }
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (unset) out.set(unset[1]!, 'n');
  }
  return out;
}

export interface DroppedOption {
  option: string;
  wanted: ConfigValue;
  got: ConfigValue;
  /** which fragment asked for it */
  from: string;
}

/**
 * What the fragments asked for that olddefconfig did not keep. A kernel silently missing
 * CONFIG_IOMMUFD_TEST would turn every mock-domain case into a skip, so this is a hard error.
 */
export function verifyConfig(fragments: Fragment[], finalConfig: string): DroppedOption[] {
  const actual = parseConfig(finalConfig);
  const wanted = new Map<string, { value: ConfigValue; from: string }>();
  for (const f of fragments) for (const [k, v] of parseConfig(f.text)) wanted.set(k, { value: v, from: f.name });
  const dropped: DroppedOption[] = [];
  for (const [option, { value, from }] of wanted) {
    const got = actual.get(option) ?? 'n';
    if (got !== value) dropped.push({ option, wanted: value, got, from });
  }
  return dropped;
}

/**
 * Symbols a kernel tree defines, from `config X` / `menuconfig X` lines of its Kconfig files (the
 * output of grep over them). An option the tree does not define cannot be set there.
 */
export function kconfigSymbols(grepOutput: string): Set<string> {
  const out = new Set<string>();
  for (const m of grepOutput.matchAll(/^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$/gm)) out.add(`CONFIG_${m[1]}`);
  return out;
}

/**
 * Split what olddefconfig dropped into options this tree does not have at all (an older kernel:
 * IOMMU_PT_AMDV1 arrived in 7.x, ARM_SMMU_V3_IOMMUFD in 6.14: left out, with a note) and options
 * it has but refused (a dependency missing: the build must stop).
 */
export function splitAbsent(dropped: DroppedOption[], known: Set<string>): { dropped: DroppedOption[]; absent: DroppedOption[] } {
  return {
    dropped: dropped.filter((d) => known.has(d.option)),
    absent: dropped.filter((d) => !known.has(d.option)),
  };
}

export function describeDropped(d: DroppedOption[]): string {
  return d.map((x) => `${x.option}=${x.wanted} (got ${x.got}, from ${x.from})`).join(', ');
}

/** Files merge_config.sh reads, written next to the build dir so the log can name them. */
export function fragmentPaths(buildDir: string, fragments: Fragment[]): string[] {
  return fragments.map((f) => join(buildDir, 'fragments', f.name));
}
