import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { HarnessError } from '../../base/errors.js';
import { repoPath } from '../../base/paths.js';
import { readResults } from '../../base/results/file.js';
import { SUITES } from '../../suites/registry.js';
import { DEFAULT_PROFILES } from '../../harness/qemu/profiles.js';
import { buildPlan } from '../../runner/plan.js';
import { mergeShards, type ShardRun } from '../../reports/merge.js';
import { gate } from '../../reports/gate.js';
import type { RunResults } from '../../base/results/schema.js';
import { defaultSizedRun, shardsOf } from '../helpers/matrix.js';

const full = defaultSizedRun();
const plan = (n: number) => buildPlan({ arch: 'x86_64', profiles: [...DEFAULT_PROFILES], suites: SUITES, shards: n, timings: full });
const asRuns = (shards: RunResults[]): ShardRun[] => shards.map((res) => ({ source: `runs/shard-${res.run.shard!.index}`, dir: `/ci/runs/shard-${res.run.shard!.index}`, res }));
const view = (res: RunResults) => res.results.map((r) => `${r.profile} ${r.id} ${r.status}`);
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

t.test('the shards of a plan merge into the unsharded run: same results, plan order, complete', async (t) => {
  for (const n of [1, 3, 8]) {
    const p = plan(n);
    const merged = mergeShards(asRuns(shardsOf(full, p)).reverse(), '/ci/runs/merged');
    t.same(view(merged), view(full), `${n} shards, given in any order: the same ids and statuses in the same order`);
    t.equal(merged.run.complete, true);
    t.equal(merged.run.shard, undefined, 'the merged run is not a shard');
    t.same(merged.run.merged, { shards: n, planHash: p.shards!.hash, from: Array.from({ length: n }, (_, i) => `runs/shard-${i + 1}`), missing: [] });
    t.same(merged.run.profiles, [...DEFAULT_PROFILES]);
    t.equal(gate(merged).exitCode, gate(full).exitCode, 'gates as the unsharded run');
  }
});

t.test('artifact paths are rewritten relative to the merged run', async (t) => {
  const merged = mergeShards(asRuns(shardsOf(full, plan(2))), '/ci/runs/merged');
  const withConsole = merged.results.find((r) => r.artifacts.console)!;
  t.match(withConsole.artifacts.console, /^\.\.\/shard-[12]\/[a-z-]+\/boot-0\/console\.log$/);
});

t.test('a missing shard: its cells become error results naming it, and the gate exits 2', async (t) => {
  const p = plan(4);
  const shards = shardsOf(full, p);
  const merged = mergeShards(asRuns([shards[0]!, shards[1]!, shards[3]!]), '/out');
  const lost = p.shards!.assignment[2]!.cells;
  const errs = merged.results.filter((r) => r.id.endsWith('/not-reported'));
  t.same(errs.map((r) => `${r.profile}/${r.suite}`).sort(), [...lost].sort(), 'one error result per cell of shard 3');
  t.ok(errs.every((r) => r.status === 'error' && /^not run: shard 3\/4 did not report/.test(r.reason ?? '')));
  t.same(merged.run.merged?.missing, [3]);
  t.equal(merged.run.complete, false);
  t.match(merged.run.errors.at(-1)?.message, /^shard 3\/4 did not report: its cells .* have no results$/);
  const g = gate(merged);
  t.equal(g.exitCode, 2);
});

t.test('refusals: not a shard, other plan, kernel or image, a shard twice, a cell twice', async (t) => {
  const shards = shardsOf(full, plan(3));
  const runs = asRuns(shards);
  const refuse = (list: ShardRun[], re: RegExp, what: string) => t.throws(() => mergeShards(list, '/out'), re, what);
  refuse([{ ...runs[0]!, res: full, source: 'runs/full' }], /runs\/full: not a shard/, 'an unsharded run');
  const other = clone(runs[1]!);
  other.res.run.shard!.planHash = 'ffffffffffffffff';
  refuse([runs[0]!, other], /runs\/shard-2 and runs\/shard-1 are not shards of one run: run\.shard\.planHash is "ffffffffffffffff" there and "[0-9a-f]{16}" here/, 'another plan');
  const kernel = clone(runs[1]!);
  kernel.res.run.kernel!.configHash = 'other';
  refuse([runs[0]!, kernel], /run\.kernel\.configHash is "other" there and "c0ffee" here/, 'another kernel config');
  const image = clone(runs[1]!);
  image.res.run.image = { hash: 'img-b' };
  const imageA = clone(runs[0]!);
  imageA.res.run.image = { hash: 'img-a' };
  refuse([imageA, image], /run\.image\.hash is "img-b" there and "img-a" here/, 'another image');
  refuse([runs[0]!, { ...runs[0]!, source: 'copy' }], /shard 1\/3 given twice \(runs\/shard-1 and copy\)/, 'a shard twice');
  const stray = clone(runs[1]!);
  stray.res.results.push(clone(runs[0]!.res.results[0]!));
  refuse([runs[0]!, stray], /runs\/shard-2: result .* of cell .* is outside the shard's cells/, 'a result of another shard\'s cell');
  const overlap = clone(runs[1]!);
  overlap.res.run.shard!.cells = [...overlap.res.run.shard!.cells, runs[0]!.res.run.shard!.cells[0]!];
  refuse([runs[0]!, overlap], /cell .* reported twice: by runs\/shard-1 and by runs\/shard-2/, 'a cell claimed by two shards');
  try { mergeShards([runs[0]!, other], '/out'); } catch (e) {
    t.ok(e instanceof HarnessError && e.exitCode === 2 && !e.message.includes('\n'), 'one line, exit 2');
  }
});

t.test('merge of 8 shards of a default-sized run, the whole command: within 2 s', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-merge-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const shards = shardsOf(full, plan(8));
  const dirs = shards.map((s) => {
    const d = join(dir, `shard-${s.run.shard!.index}`);
    mkdirSync(d);
    writeFileSync(join(d, 'results.json'), JSON.stringify(s, null, 2));
    return d;
  });
  const main = repoPath('dist', 'cli', 'main.js');
  // bash's `time`: wall clock and the CPU the command itself used (a kernel build beside it inflates
  // the wall clock several times on these 2 cores; the CPU time is what the command costs).
  const quoted = [main, 'merge', ...dirs, '--out', join(dir, 'merged'), '--no-expectations'].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('bash', ['-c', `TIMEFORMAT='%R %U %S'; time node ${quoted} 2>/dev/null`], { encoding: 'utf8' });
  const [wall, user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number) as [number, number, number];
  t.equal(r.status, 1, `exit 1: the made-up results have failures (stdout: ${r.stdout.slice(0, 300)})`);
  const merged = readResults(join(dir, 'merged', 'results.json'));
  t.same(view(merged), view(full));
  t.ok(readFileSync(join(dir, 'merged', 'junit.xml'), 'utf8').includes('<testsuites'), 'junit.xml written');
  t.ok(readFileSync(join(dir, 'merged', 'index.html'), 'utf8').includes('<html'), 'index.html written');
  t.ok(user + sys <= 2, `merge of 8 shards (${merged.results.length} results), node start to exit: ${(user + sys).toFixed(2)} s of CPU (${wall.toFixed(2)} s wall)`);
  t.comment(`merge of 8 shards, ${merged.results.length} results, whole command: ${wall.toFixed(2)} s wall, ${(user + sys).toFixed(2)} s CPU`);
  // a missing shard through the command: exit 2
  const r2 = spawnSync(process.execPath, [main, 'merge', ...dirs.slice(1), '--out', join(dir, 'merged2'), '--no-expectations'], { encoding: 'utf8' });
  t.equal(r2.status, 2, 'a missing shard exits 2');
  t.match(r2.stdout + r2.stderr, /shard 1\/8 did not report/);
});
