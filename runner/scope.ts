/**
 * What one `run` process covers: the profiles it boots and the suites it runs on each, narrowed by
 * --case/--exclude and by --shard I/N of the plan. Every path to a run (the whole matrix, a subset,
 * one shard) comes through here, so results.json records the same selection and shard the runner used.
 */
import type { Profile } from '../harness/qemu/profiles.js';
import type { RunResults, ShardInfo } from '../base/results/schema.js';
import type { Suite } from '../suites/types.js';
import { suiteLimits, suitesFor, type Matrix } from './matrix.js';
import { checkSelection, listSuites, selectSuites, type Selection } from './select.js';
import { buildPlan, cellKey, checkNamedPlan, shardInfo, type Plan } from './plan.js';

export interface RunScope {
  /** each profile to boot, in plan order, with the suites to run there (already restricted to the selection) */
  cells: { profile: Profile; suites: Suite<unknown>[] }[];
  selection?: Selection;
  shard?: ShardInfo;
  plan?: Plan;
}

export interface ScopeOptions {
  selection?: Selection;
  shard?: { index: number; total: number };
  /** the plan the shard must belong to (--plan) */
  named?: Parameters<typeof checkNamedPlan>[1];
  timings?: RunResults;
}

export function runScope(m: Matrix, o: ScopeOptions = {}): RunScope {
  checkSelection(listSuites(m.suites), o.selection);
  const suites = selectSuites(m.suites, o.selection);
  const on = (profile: Profile) => suitesFor({ suites, suitesNamed: m.suitesNamed }, profile);
  if (!o.shard) {
    const cells = m.profiles.map((profile) => ({ profile, suites: on(profile) })).filter((c) => c.suites.length > 0);
    return { cells, ...(o.selection ? { selection: o.selection } : {}) };
  }
  const plan = buildPlan({
    arch: m.arch.name, profiles: m.profiles.map((p) => p.name), suites: m.suites, limits: suiteLimits(m),
    selection: o.selection, timings: o.timings, shards: o.shard.total,
  });
  if (o.named) checkNamedPlan(plan, o.named);
  const shard = shardInfo(plan, o.shard.index);
  const mine = new Set(shard.cells);
  const cells = m.profiles
    .map((profile) => ({ profile, suites: on(profile).filter((s) => mine.has(cellKey(profile.name, s.name))) }))
    .filter((c) => c.suites.length > 0);
  return { cells, shard, plan, ...(o.selection ? { selection: o.selection } : {}) };
}
