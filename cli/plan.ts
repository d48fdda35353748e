import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { HarnessError } from '../base/errors.js';
import { readResults } from '../base/results/file.js';
import { resolveMatrix, suiteLimits, type Matrix } from '../runner/matrix.js';
import { checkSelection, listSuites, parseSelection, type Selection } from '../runner/select.js';
import { buildPlan, parsePlanFile, parseShard, type Plan } from '../runner/plan.js';
import type { ScopeOptions } from '../runner/scope.js';
import { SUITES } from '../suites/registry.js';
import { resultsPathOf } from './compare.js';

const HELP = `vfio-conformance plan [--suite S ...] [--profile P ...] [--arch A] [--case GLOB ...] [--exclude GLOB ...]
                        [--shards N] [--timings RUN] [--json]
  The run's cells (profile x suite), each with its case count where it is known before the guest
  is seen and its cost: what its cases took in a previous run (--timings RUN), or else a default
  weight (an estimate: listed cases x the suite's typical case time under TCG, plus setup).

  With --shards N: the split of the cells into N shards for CI runners, longest first, each cell to
  the shard that would finish first with it (a profile new to a shard costs it one boot). Same
  inputs, same split, same plan hash. Every shard job runs
      vfio-conformance run --shard I/N [the same --suite/--profile/--case/--timings] [--plan HASH]
  and 'vfio-conformance merge' joins their run directories.

Options:
  --suite S      suite (repeatable; default: all): ${SUITES.map((s) => s.name).join(', ')}
  --profile P    profile (repeatable; default: the x86_64 profiles, or --arch's)
  --case GLOB    only case ids matching (repeatable); --exclude GLOB drops ids (repeatable)
  --shards N     split into N shards (1-based indexes, as $CI_NODE_INDEX/$CI_NODE_TOTAL)
  --timings RUN  a previous run directory whose case durations give the costs
  --json         the plan as JSON (a file for 'run --shard I/N --plan FILE')

Case counts: a number is exact for every target; '~N' holds ids derived from the default device
(the migration arcs follow its flags); '?' is a suite whose ids are known only once set up.`;

export interface PlanOptions {
  suite?: string[];
  profile?: string[];
  arch?: string;
  case?: string[];
  exclude?: string[];
  timings?: string;
  shards?: number;
}

/** The plan `plan`, `run --shard` and the CI templates agree on, from the same options. */
export function planFromOptions(o: PlanOptions): { plan: Plan; matrix: Matrix; selection?: Selection } {
  const matrix = resolveMatrix(o);
  const selection = parseSelection(o.case, o.exclude);
  checkSelection(listSuites(matrix.suites), selection);
  const timings = o.timings ? readResults(resultsPathOf(o.timings)) : undefined;
  const plan = buildPlan({
    arch: matrix.arch.name, profiles: matrix.profiles.map((p) => p.name), suites: matrix.suites, limits: suiteLimits(matrix),
    selection, timings, shards: o.shards,
  });
  return { plan, matrix, selection };
}

export function parseShardCount(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < 1) throw new HarnessError(`--shards '${v}': expected a whole number >= 1`);
  return n;
}

/** --plan HASH or --plan FILE (from `plan --json`). */
export function namedPlan(v: string): { hash: string } | { file: string; plan: Plan } {
  if (/^[0-9a-f]{16}$/.test(v)) return { hash: v };
  let text: string;
  try {
    text = readFileSync(v, 'utf8');
  } catch (e) {
    throw new HarnessError(`--plan '${v}': neither a plan hash (16 hex digits) nor a readable plan file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return { file: v, plan: parsePlanFile(text, v) };
}

export async function planCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      suite: { type: 'string', multiple: true }, profile: { type: 'string', multiple: true }, arch: { type: 'string' },
      case: { type: 'string', multiple: true }, exclude: { type: 'string', multiple: true },
      shards: { type: 'string' }, timings: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  const { plan } = planFromOptions({ ...values, shards: values.shards === undefined ? undefined : parseShardCount(values.shards) });
  process.stdout.write(values.json ? `${JSON.stringify(plan, null, 2)}\n` : formatPlan(plan));
  return 0;
}

const sec = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export function formatPlan(plan: Plan): string {
  const out: string[] = [];
  const count = (c: Plan['cells'][number]) => (c.cases === undefined ? '?' : c.casesKnown === 'derived' ? `~${c.cases}` : String(c.cases));
  const w = Math.max(...plan.cells.map((c) => c.key.length), 4);
  out.push(`${'cell'.padEnd(w)}  ${'cases'.padStart(6)}  ${'cost'.padStart(8)}  from`);
  for (const c of plan.cells) out.push(`${c.key.padEnd(w)}  ${count(c).padStart(6)}  ${sec(c.costMs).padStart(8)}  ${c.costFrom}`);
  const total = plan.cells.reduce((a, c) => a + c.costMs, 0);
  const sel = plan.selection;
  const subset = sel ? ` (a subset: --case ${sel.include.join(' ') || '*'}${sel.exclude.length ? ` --exclude ${sel.exclude.join(' ')}` : ''})` : '';
  out.push(`${plan.cells.length} cells on ${plan.arch}, ${sec(total)} of cases in all${subset}`);
  if (plan.shards) {
    out.push('');
    for (const s of plan.shards.assignment) {
      out.push(`shard ${s.index}/${plan.shards.total}  ${sec(s.costMs).padStart(8)}  ${s.cells.join(' ') || '(no cells: this shard runs nothing)'}`);
    }
    const loads = plan.shards.assignment.map((s) => s.costMs);
    out.push(`plan ${plan.shards.hash}: longest shard ${sec(Math.max(...loads))}, shortest ${sec(Math.min(...loads))} (boots counted)`);
  }
  return `${out.join('\n')}\n`;
}

/** The options `run` takes for subsets, shards, bundles and parallel guests (parseArgs shapes). */
export const SCALE_OPTIONS = {
  case: { type: 'string', multiple: true }, exclude: { type: 'string', multiple: true },
  shard: { type: 'string' }, plan: { type: 'string' }, timings: { type: 'string' },
  prepared: { type: 'string' }, jobs: { type: 'string' },
} as const;

export const SCALE_HELP = `Subsets, shards, bundles (see 'vfio-conformance list', 'plan', 'prepare', 'merge'):
  --case GLOB        run only case ids matching (repeatable; '*' matches any characters, '/' too);
                     results.json records the selection and the gate calls it a subset
  --exclude GLOB     leave out ids matching (repeatable)
  --shard I/N        run only shard I of N of the plan (1-based: --shard $CI_NODE_INDEX/$CI_NODE_TOTAL)
  --plan HASH|FILE   refuse to run unless the plan is this one (its hash, or 'plan --json' output)
  --timings RUN      a previous run whose durations balance the shards (give every shard the same)
  --prepared DIR     boot from a bundle written by 'prepare --out DIR': build nothing
  --jobs N|auto      up to N guests (profiles) at once (default auto: one per core under KVM, one
                     per two cores under TCG, as many as the free memory holds; the run says how
                     many and why). --jobs 1: one after the other.`;

export interface ScaleValues {
  case?: string[];
  exclude?: string[];
  shard?: string;
  plan?: string;
  timings?: string;
}

/** --case/--exclude/--shard/--plan/--timings as the runner's scope options; bad input fails here, before any build. */
export function scopeOptions(v: ScaleValues): ScopeOptions {
  if (v.plan && !v.shard) throw new HarnessError('--plan names the plan of a shard: give --shard I/N too');
  return {
    selection: parseSelection(v.case, v.exclude),
    ...(v.shard ? { shard: parseShard(v.shard) } : {}),
    ...(v.plan ? { named: namedPlan(v.plan) } : {}),
    ...(v.timings ? { timings: readResults(resultsPathOf(v.timings)) } : {}),
  };
}
