/**
 * The run as cells (profile x suite) and, for CI fleets, its split into shards.
 *
 * A cell's cost is what its cases took in a previous run (`--timings RUN`: the sum of their
 * durations on that profile, else the suite's mean over the profiles that run has), or else a
 * default weight: listed cases x the suite's typical case time, plus its setup. The split is greedy
 * longest-first: cells by cost, largest first (ties in plan order), each to the shard that would
 * finish first with it, counting one guest boot for a profile new to that shard (ties: the lowest
 * index). Same inputs, same split; the plan hash names the inputs and the split, so shards of one
 * pipeline can prove they ran the same plan and merge can refuse shards that did not.
 */
import { createHash } from 'node:crypto';
import { HarnessError } from '../base/errors.js';
import type { RunResults, ShardInfo } from '../base/results/schema.js';
import type { Suite } from '../suites/types.js';
import { listSuites, selectListed, selects, type Selection } from './select.js';

export const PLAN_VERSION = 1;

/** Typical time of one case where no run was measured (TCG, 2 cores): an estimate, said to be one. */
const DEFAULT_CASE_MS: Record<string, number> = {
  migration: 80, kselftest: 150, dirty: 250, pasid: 100, dma: 1500, 'qemu-migration': 12_000,
};
const FALLBACK_CASE_MS = 500;
/** a suite whose ids are unknown before setup (the selftests' own lists) */
const UNKNOWN_CELL_MS = 60_000;
const SUITE_SETUP_MS = 1_000;
/** what a profile new to a shard costs it: one guest boot (environment.md: ~4 s under TCG) */
export const BOOT_MS = 4_000;

export interface Cell {
  /** `profile/suite` */
  key: string;
  profile: string;
  suite: string;
  /** listed ids the selection keeps; undefined when the suite can only list patterns */
  cases?: number;
  /** how sure the count is: every id static, some derived from the default device, or unknown */
  casesKnown: 'static' | 'derived' | 'unknown';
  costMs: number;
  costFrom: 'timings' | 'timings-suite-mean' | 'default';
}

export interface Shard {
  /** 1-based, as CI_NODE_INDEX */
  index: number;
  cells: string[];
  costMs: number;
}

export interface Plan {
  version: number;
  arch: string;
  profiles: string[];
  suites: string[];
  selection?: Selection;
  cells: Cell[];
  /** present with --shards */
  shards?: { total: number; hash: string; assignment: Shard[] };
}

export interface PlanInput {
  arch: string;
  profiles: string[];
  suites: Suite<unknown>[];
  /** profiles that run only some suites (runner/matrix.ts suiteLimits): no cell for the others */
  limits?: Record<string, string[]>;
  selection?: Selection;
  /** a previous run whose durations give the costs */
  timings?: RunResults;
  shards?: number;
}

export const cellKey = (profile: string, suite: string): string => `${profile}/${suite}`;

/** Cost per cell and per suite (mean over profiles) from a run's durations of the selected cases. */
function measured(timings: RunResults | undefined, sel: Selection | undefined): { cell: Map<string, number>; suite: Map<string, number> } {
  const cell = new Map<string, number>();
  for (const r of timings?.results ?? []) {
    if (!selects(sel, r.id)) continue;
    const k = cellKey(r.profile, r.suite);
    cell.set(k, (cell.get(k) ?? 0) + r.durationMs);
  }
  const sums = new Map<string, { ms: number; n: number }>();
  for (const [k, ms] of cell) {
    const suite = k.slice(k.indexOf('/') + 1);
    const s = sums.get(suite) ?? { ms: 0, n: 0 };
    sums.set(suite, { ms: s.ms + ms, n: s.n + 1 });
  }
  return { cell, suite: new Map([...sums].map(([k, v]) => [k, Math.round(v.ms / v.n)])) };
}

export function buildPlan(input: PlanInput): Plan {
  if (!input.profiles.length) throw new HarnessError('a plan needs at least one profile');
  if (!input.suites.length) throw new HarnessError('a plan needs at least one suite');
  const m = measured(input.timings, input.selection);
  const perSuite = input.suites.map((s) => {
    const listed = selectListed(listSuites([s]), input.selection);
    const ids = listed.filter((c) => !c.pattern);
    const unknown = listed.some((c) => c.pattern);
    return {
      suite: s.name,
      keep: listed.length > 0,
      cases: unknown ? undefined : ids.length,
      casesKnown: unknown ? 'unknown' as const : ids.every((c) => c.known === 'static') ? 'static' as const : 'derived' as const,
      defaultMs: unknown ? UNKNOWN_CELL_MS : SUITE_SETUP_MS + ids.length * (DEFAULT_CASE_MS[s.name] ?? FALLBACK_CASE_MS),
    };
  });
  const cells: Cell[] = [];
  for (const profile of input.profiles) {
    const limit = input.limits?.[profile];
    for (const s of perSuite) {
      if (!s.keep || (limit && !limit.includes(s.suite))) continue;
      const key = cellKey(profile, s.suite);
      const exact = m.cell.get(key);
      const mean = m.suite.get(s.suite);
      const [costMs, costFrom] = exact !== undefined
        ? [exact, 'timings' as const]
        : mean !== undefined ? [mean, 'timings-suite-mean' as const] : [s.defaultMs, 'default' as const];
      cells.push({ key, profile, suite: s.suite, cases: s.cases, casesKnown: s.casesKnown, costMs, costFrom });
    }
  }
  if (!cells.length) throw new HarnessError('the selection leaves no cell (profile x suite) to run');
  const plan: Plan = {
    version: PLAN_VERSION, arch: input.arch, profiles: [...input.profiles], suites: input.suites.map((s) => s.name),
    ...(input.selection ? { selection: input.selection } : {}), cells,
  };
  if (input.shards !== undefined) {
    const assignment = assignShards(cells, input.shards);
    plan.shards = { total: input.shards, hash: planHash(plan, assignment), assignment };
  }
  return plan;
}

/** Greedy longest-first: deterministic for the same cells and costs. */
export function assignShards(cells: Cell[], total: number): Shard[] {
  if (!Number.isInteger(total) || total < 1) throw new HarnessError(`--shards must be a whole number >= 1, got ${total}`);
  const order = cells.map((c, i) => ({ c, i })).sort((a, b) => b.c.costMs - a.c.costMs || a.i - b.i);
  const shards = Array.from({ length: total }, (_, i) => ({ index: i + 1, load: 0, cells: [] as { c: Cell; i: number }[], profiles: new Set<string>() }));
  for (const x of order) {
    let best = shards[0]!;
    let bestLoad = Infinity;
    for (const s of shards) {
      const load = s.load + x.c.costMs + (s.profiles.has(x.c.profile) ? 0 : BOOT_MS);
      if (load < bestLoad) { best = s; bestLoad = load; }
    }
    best.load = bestLoad;
    best.cells.push(x);
    best.profiles.add(x.c.profile);
  }
  // Within a shard, plan order: each profile's cells together, so a shard boots each profile once.
  return shards.map((s) => ({ index: s.index, cells: s.cells.sort((a, b) => a.i - b.i).map((x) => x.c.key), costMs: s.load }));
}

/** sha256 of what decides a shard's work: the inputs that name the cells, and the split. */
export function planHash(plan: Pick<Plan, 'version' | 'arch' | 'selection' | 'cells'>, assignment: Shard[]): string {
  const canonical = JSON.stringify({
    version: plan.version, arch: plan.arch, selection: plan.selection ?? null,
    cells: plan.cells.map((c) => c.key), shards: assignment.map((s) => s.cells),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** What a shard's results.json records of its plan: merge needs every shard's cells to name a missing one's. */
export function shardInfo(plan: Plan, index: number): ShardInfo {
  const sh = plan.shards;
  if (!sh) throw new HarnessError('a shard needs a plan with --shards');
  const own = sh.assignment[index - 1];
  if (!own) throw new HarnessError(`shard ${index} is not in a plan of ${sh.total}`);
  return { index, total: sh.total, planHash: sh.hash, cells: own.cells, assignment: sh.assignment.map((s) => s.cells), plan: plan.cells.map((c) => c.key) };
}

/** `I/N`, 1-based as $CI_NODE_INDEX/$CI_NODE_TOTAL. */
export function parseShard(spec: string): { index: number; total: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new HarnessError(`--shard '${spec}': expected I/N, e.g. 2/4 (1-based, as $CI_NODE_INDEX/$CI_NODE_TOTAL)`);
  const index = Number(m[1]);
  const total = Number(m[2]);
  if (total < 1) throw new HarnessError(`--shard ${spec}: the total must be at least 1`);
  if (index < 1) throw new HarnessError(`--shard ${spec}: shards count from 1 (1..${total}), as $CI_NODE_INDEX does`);
  if (index > total) throw new HarnessError(`--shard ${spec}: index ${index} is past the total ${total} (1..${total})`);
  return { index, total };
}

/**
 * --plan names the plan a shard must belong to: its hash, or a plan file written by
 * `plan --shards N --json`. A different plan is refused, naming what differs when a file says.
 */
export function checkNamedPlan(plan: Plan, named: { hash: string } | { file: string; plan: Plan }): void {
  const mine = plan.shards?.hash;
  const theirs = 'plan' in named ? named.plan.shards?.hash : named.hash;
  if (mine === theirs) return;
  if (!('plan' in named)) {
    throw new HarnessError(`--plan ${named.hash}: this run's plan is ${mine} (its suites, profiles, selection, timings or shard count differ; compare with 'vfio-conformance plan ... --json')`);
  }
  throw new HarnessError(`--plan ${named.file}: this run's plan is ${mine}, the file's is ${theirs ?? '(no shards)'}: ${planDifference(plan, named.plan)}`);
}

/** The first field two plans differ in, in words. */
export function planDifference(a: Plan, b: Plan): string {
  if (a.arch !== b.arch) return `arch ${a.arch} here, ${b.arch} there`;
  const list = (x: string[] | undefined) => (x ?? []).join(',');
  if (list(a.profiles) !== list(b.profiles)) return `profiles ${list(a.profiles)} here, ${list(b.profiles)} there`;
  if (list(a.suites) !== list(b.suites)) return `suites ${list(a.suites)} here, ${list(b.suites)} there`;
  if (JSON.stringify(a.selection ?? null) !== JSON.stringify(b.selection ?? null)) return `selection ${JSON.stringify(a.selection ?? 'all')} here, ${JSON.stringify(b.selection ?? 'all')} there`;
  if ((a.shards?.total ?? 0) !== (b.shards?.total ?? 0)) return `shard total ${a.shards?.total ?? 'none'} here, ${b.shards?.total ?? 'none'} there`;
  for (const c of a.cells) {
    const o = b.cells.find((x) => x.key === c.key);
    if (o && o.costMs !== c.costMs) return `cell ${c.key} costs ${c.costMs} ms here, ${o.costMs} ms there (different --timings?)`;
  }
  return 'the shard assignment differs';
}

/** The plan file `plan --json` wrote, read back for --plan. */
export function parsePlanFile(text: string, source: string): Plan {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new HarnessError(`${source}: not a plan file (not JSON: ${(e as Error).message.slice(0, 100)})`);
  }
  const p = obj as Partial<Plan>;
  if (typeof p !== 'object' || p === null || p.version !== PLAN_VERSION || !Array.isArray(p.cells)) {
    throw new HarnessError(`${source}: not a plan file of version ${PLAN_VERSION} (write one with 'vfio-conformance plan --shards N --json')`);
  }
  return p as Plan;
}
