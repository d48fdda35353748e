/**
 * The shards of one plan (`run --shard I/N`) joined into one run, as if it had run on one host:
 *
 * - shards of different plans (plan hash, shard total), kernels (release, source, config, arch) or
 *   images (initramfs and agent hashes) are refused, naming the field that differs and both values;
 * - a shard given twice, or a cell (profile x suite) reported by two shards, is refused;
 * - a shard that did not report turns each of its cells into an error result that says so ("not
 *   run: shard 3/4 did not report"), and a run error: the gate then exits 2, as for a run that died;
 * - results keep plan order (cells as the plan lists them, a cell's results as its shard wrote them);
 *   artifact paths are rewritten relative to the merged run directory.
 */
import { isAbsolute, relative, resolve } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { SCHEMA_VERSION, type CaseResult, type RunInfo, type RunResults, type ShardInfo } from '../base/results/schema.js';

export interface ShardRun {
  /** how the user named it (a run directory), for messages */
  source: string;
  /** the directory its artifact paths are relative to */
  dir: string;
  res: RunResults;
}

const cellOf = (r: Pick<CaseResult, 'profile' | 'suite'>): string => `${r.profile}/${r.suite}`;

/** Fields every shard must agree on, with how to read them. */
const SAME: [string, (r: RunInfo) => unknown][] = [
  ['run.shard.planHash', (r) => r.shard?.planHash],
  ['run.shard.total', (r) => r.shard?.total],
  ['run.kernel.release', (r) => r.kernel?.release],
  ['run.kernel.sourceId', (r) => r.kernel?.sourceId],
  ['run.kernel.configHash', (r) => r.kernel?.configHash],
  ['run.kernel.arch', (r) => r.kernel?.arch],
  ['run.image.hash', (r) => (r.image as { hash?: string } | undefined)?.hash],
  ['run.image.agent', (r) => (r.image as { agent?: string } | undefined)?.agent],
  ['run.selection', (r) => JSON.stringify(r.selection ?? null)],
];

export function mergeShards(shards: ShardRun[], outDir: string): RunResults {
  if (!shards.length) throw new HarnessError('merge needs the run directories of the shards');
  for (const s of shards) {
    if (!s.res.run.shard) throw new HarnessError(`${s.source}: not a shard (its results.json has no run.shard): merge joins the run directories of 'run --shard I/N'`);
  }
  const first = shards[0]!;
  for (const s of shards.slice(1)) {
    for (const [field, get] of SAME) {
      const a = get(first.res.run);
      const b = get(s.res.run);
      if (a !== b) throw new HarnessError(`${s.source} and ${first.source} are not shards of one run: ${field} is ${show(b)} there and ${show(a)} here`);
    }
  }
  const info = first.res.run.shard!;
  const byIndex = new Map<number, ShardRun>();
  for (const s of shards) {
    const i = s.res.run.shard!.index;
    const dup = byIndex.get(i);
    if (dup) throw new HarnessError(`shard ${i}/${info.total} given twice (${dup.source} and ${s.source}): its cells would be reported twice`);
    byIndex.set(i, s);
  }
  // Each result belongs to a cell its own shard was assigned; a result elsewhere means two reports.
  const owner = new Map<string, ShardRun>();
  for (const s of [...byIndex.values()]) {
    const mine = new Set(s.res.run.shard!.cells);
    for (const c of mine) {
      const o = owner.get(c);
      if (o) throw new HarnessError(`cell ${c} reported twice: by ${o.source} and by ${s.source}`);
      owner.set(c, s);
    }
    for (const r of s.res.results) {
      if (!mine.has(cellOf(r))) throw new HarnessError(`${s.source}: result ${r.id} of cell ${cellOf(r)} is outside the shard's cells (${[...mine].join(', ') || 'none'})`);
    }
  }

  const missing = Array.from({ length: info.total }, (_, i) => i + 1).filter((i) => !byIndex.has(i));
  const byCell = new Map<string, CaseResult[]>();
  for (const s of byIndex.values()) {
    for (const r of s.res.results) {
      const list = byCell.get(cellOf(r)) ?? [];
      list.push(rebase(r, s.dir, outDir));
      byCell.set(cellOf(r), list);
    }
  }
  const errors: RunInfo['errors'] = [];
  for (const i of missing) {
    const cells = info.assignment[i - 1] ?? [];
    errors.push({ message: `shard ${i}/${info.total} did not report: ${cells.length ? `its cells ${cells.join(', ')} have no results` : 'it had no cells'}` });
    for (const c of cells) byCell.set(c, [notReported(c, i, info)]);
  }
  const order = info.plan.length ? info.plan : info.assignment.flat();
  const results = order.flatMap((c) => byCell.get(c) ?? []);

  const runs = [...byIndex.values()].map((s) => s.res.run);
  const ended = runs.map((r) => r.endedAt).filter((x): x is string => !!x).sort();
  const { shard: _shard, ...base } = first.res.run;
  const run: RunInfo = {
    ...base,
    startedAt: runs.map((r) => r.startedAt).sort()[0]!,
    ...(ended.length ? { endedAt: ended[ended.length - 1] } : {}),
    complete: missing.length === 0 && runs.every((r) => r.complete),
    profiles: unique(order.map((c) => c.slice(0, c.indexOf('/')))),
    suites: unique(order.map((c) => c.slice(c.indexOf('/') + 1))),
    errors: [...[...byIndex.values()].flatMap(shardErrors(outDir)), ...errors],
    merged: { shards: info.total, planHash: info.planHash, from: [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([, s]) => s.source), missing },
  };
  return { schema: SCHEMA_VERSION, run, results };
}

/** A shard's own run errors, saying which shard, their logs found from the merged directory. */
function shardErrors(outDir: string): (s: ShardRun) => RunInfo['errors'] {
  return (s) => s.res.run.errors.map((e) => ({
    ...e,
    message: `shard ${s.res.run.shard!.index}/${s.res.run.shard!.total}: ${e.message}`,
    ...(e.log ? { log: rebasePath(e.log, s.dir, outDir) } : {}),
  }));
}

function notReported(cell: string, index: number, info: ShardInfo): CaseResult {
  const [profile, suite] = [cell.slice(0, cell.indexOf('/')), cell.slice(cell.indexOf('/') + 1)];
  return {
    id: `${suite}/not-reported`, suite, profile, device: { driver: 'none', class: 'none', id: '-' }, status: 'error',
    reason: `not run: shard ${index}/${info.total} did not report (no run directory of it was given to merge), so cell ${cell} has no results`,
    durationMs: 0, faults: [], artifacts: {},
  };
}

function rebase(r: CaseResult, dir: string, outDir: string): CaseResult {
  const keys = Object.keys(r.artifacts);
  if (!keys.length) return r;
  const artifacts: Record<string, string> = {};
  for (const k of keys) artifacts[k] = rebasePath(r.artifacts[k]!, dir, outDir);
  return { ...r, artifacts };
}

/** A path the shard wrote relative to its directory, made relative to the merged one. */
function rebasePath(p: string, dir: string, outDir: string): string {
  if (isAbsolute(p)) return p;
  return relative(resolve(outDir), resolve(dir, p)) || '.';
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

function show(v: unknown): string {
  return v === undefined ? '(absent)' : JSON.stringify(v);
}
