import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HarnessError } from '../../base/errors.js';
import { renderCompareHtml } from '../../reports/release-grid.js';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { repoPath } from '../../base/paths.js';
import { sampleRun } from '../../bench/sample-run.js';
import { classify, compareRuns, formatCompareText, measurementSpread, observedDiff, type ChangeClass, type Comparison, type CompareRow } from '../../reports/compare.js';
import { compareCommand } from '../../cli/compare.js';
import { validateResults } from '../../base/results/file.js';
import { SCHEMA_VERSION, type CaseResult, type RunResults, type Status } from '../../base/results/schema.js';
import { runInfo } from '../helpers/results.js';

const mtty = { driver: 'mtty', class: 'sample' as const, id: 'mtty-2' };

function r(id: string, status: Status, observed?: Record<string, unknown>, over: Partial<CaseResult> = {}): CaseResult {
  return { id, suite: id.split('/')[0]!, profile: 'q35-vtd', device: mtty, status, ...(observed ? { observed } : {}), durationMs: 10, faults: [], artifacts: {}, ...over };
}

function run(release: string, results: CaseResult[]): RunResults {
  return validateResults({
    schema: SCHEMA_VERSION,
    run: runInfo({ kernel: { release, sourceId: `debian:linux-source-${release}`, configHash: 'abc', arch: 'x86_64' } }),
    results,
  });
}

/** [id, status in A (null = absent), status in B, class] with observed values where they matter. */
const TWO: { id: string; a: [Status, Record<string, unknown>?] | null; b: [Status, Record<string, unknown>?] | null; cls: ChangeClass }[] = [
  { id: 'migration/arc/STOP->RUNNING', a: ['pass', { errno: 'OK' }], b: ['pass', { errno: 'OK' }], cls: 'unchanged' },
  { id: 'migration/arc/STOP->RESUMING', a: ['pass', { errno: 'EINVAL' }], b: ['pass', { errno: 'ENOTTY' }], cls: 'observed-change' },
  { id: 'migration/arc/STOP->STOP_COPY', a: ['pass'], b: ['fail'], cls: 'new-failure' },
  { id: 'migration/arc/RUNNING->STOP', a: ['warning'], b: ['error'], cls: 'new-failure' },
  { id: 'migration/arc/RUNNING->RUNNING_P2P', a: ['skip'], b: ['fail'], cls: 'new-failure' },
  { id: 'migration/precopy/info', a: ['expected-unsupported'], b: ['fail'], cls: 'new-failure' },
  { id: 'migration/close-reopen/in-RESUMING', a: ['fail'], b: ['pass'], cls: 'fixed' },
  { id: 'migration/stream/bad-header', a: ['error'], b: ['expected-unsupported'], cls: 'fixed' },
  { id: 'migration/stream/short-read', a: ['fail'], b: ['warning'], cls: 'fixed' },
  { id: 'pasid/attach', a: ['expected-unsupported', { errno: 'ENOTTY' }], b: ['pass', { errno: 'OK' }], cls: 'status-change' },
  { id: 'migration/precopy-v2/info', a: ['skip'], b: ['pass'], cls: 'status-change' },
  { id: 'migration/reset/in-STOP_COPY', a: ['fail'], b: ['error'], cls: 'status-change' },
  { id: 'migration/reset/in-RESUMING', a: ['fail'], b: ['skip'], cls: 'status-change' },
  { id: 'migration/reset/in-PRE_COPY', a: ['pass'], b: ['skip'], cls: 'status-change' },
  { id: 'migration/old/gone', a: ['pass'], b: null, cls: 'vanished' },
  { id: 'pasid/replace', a: null, b: ['pass'], cls: 'new-case' },
  { id: 'migration/precopy/sizes', a: ['pass', { precopy: { initialBytes: 4096, dirtyBytes: 0 } }], b: ['pass', { precopy: { initialBytes: 8192, dirtyBytes: 0 } }], cls: 'observed-change' },
  { id: 'migration/stop-copy/size', a: ['pass', {}], b: ['pass', { dataSize: 4096 }], cls: 'observed-change' },
  { id: 'migration/arc/RUNNING->PRE_COPY', a: ['pass', { a: 1, b: [1, 2] }], b: ['pass', { b: [1, 2], a: 1 }], cls: 'unchanged' },
];

function twoRuns(): { A: RunResults; B: RunResults } {
  const A = run('6.12.9', TWO.filter((x) => x.a).map((x) => r(x.id, x.a![0], x.a![1])));
  const B = run('7.2.0', TWO.filter((x) => x.b).map((x) => r(x.id, x.b![0], x.b![1])));
  return { A, B };
}

function row(c: Comparison, id: string, profile = 'q35-vtd'): CompareRow {
  const found = c.rows.find((x) => x.id === id && x.profile === profile && x.occurrence === 1);
  if (!found) throw new Error(`no row ${id}`);
  return found;
}

t.test('every class of change between two runs', async (t) => {
  const { A, B } = twoRuns();
  const c = compareRuns([{ label: 'runs/6.12', res: A }, { label: 'runs/7.2', res: B }]);
  t.equal(c.rows.length, TWO.length, 'one row per case');
  for (const x of TWO) {
    const rw = row(c, x.id);
    t.equal(rw.overall.class, x.cls, `${x.id}: ${x.a?.[0] ?? 'absent'} -> ${x.b?.[0] ?? 'absent'} is ${x.cls}`);
    t.equal(rw.class, x.cls);
    t.same(rw.transitions.map((tr) => tr.class), [x.cls], 'two runs: one transition, same as overall');
    t.same(rw.statuses, [x.a?.[0] ?? null, x.b?.[0] ?? null]);
  }
  const errno = row(c, 'migration/arc/STOP->RESUMING');
  t.same(errno.overall.observedChanges, [{ key: 'errno', before: 'EINVAL', after: 'ENOTTY' }], 'EINVAL -> ENOTTY while both pass');
  t.same(errno.observed, [{ errno: 'EINVAL' }, { errno: 'ENOTTY' }], 'observed values per run');
  t.same(row(c, 'migration/precopy/sizes').overall.observedChanges, [{ key: 'precopy.initialBytes', before: 4096, after: 8192 }], 'nested keys by dotted path');
  const added = row(c, 'migration/stop-copy/size').overall.observedChanges;
  t.same(added, [{ key: 'dataSize', after: 4096 }], 'a key that appeared');
  t.notOk('before' in added[0]!, 'no before when the key was absent');
  t.same(row(c, 'pasid/attach').overall.observedChanges, [{ key: 'errno', before: 'ENOTTY', after: 'OK' }], 'observed changes listed with a status change too');
  t.same(row(c, 'migration/old/gone').observed, [{}, null], 'absent = null, present without observed = {}');

  const expected: Record<string, number> = {};
  for (const x of TWO) expected[x.cls] = (expected[x.cls] ?? 0) + 1;
  t.same(c.summary.consecutive.length, 1);
  for (const [k, n] of Object.entries(c.summary.overall.counts)) t.equal(n, expected[k] ?? 0, `${k} count`);
  t.same(c.summary.consecutive[0]!.counts, c.summary.overall.counts);
  t.same(c.runs.map((x) => [x.tag, x.label, x.kernel]), [['A', 'runs/6.12', '6.12.9'], ['B', 'runs/7.2', '7.2.0']]);
  t.equal(c.runs[0]!.counts.fail, 4);
});

t.test('cases are keyed by id + profile + device; repeats are compared in order', async (t) => {
  const A = run('6.12', [
    r('x/a', 'pass'),
    r('x/a', 'pass', undefined, { profile: 'virt-smmuv3' }),
    r('x/a', 'pass', undefined, { device: { ...mtty, id: 'mtty-1' } }),
    r('x/dup', 'pass'),
    r('x/dup', 'pass'),
  ]);
  const B = run('7.2', [
    r('x/a', 'pass'),
    r('x/a', 'fail', undefined, { profile: 'virt-smmuv3' }),
    r('x/dup', 'pass'),
    r('x/dup', 'fail'),
  ]);
  const c = compareRuns([{ label: 'A', res: A }, { label: 'B', res: B }]);
  t.equal(c.rows.length, 5);
  t.equal(row(c, 'x/a').class, 'unchanged');
  t.equal(row(c, 'x/a', 'virt-smmuv3').class, 'new-failure', 'other profile is another case');
  t.equal(c.rows.find((x) => x.device === 'mtty-1')?.class, 'vanished', 'other device is another case');
  const dups = c.rows.filter((x) => x.id === 'x/dup');
  t.same(dups.map((x) => [x.occurrence, x.class]), [[1, 'unchanged'], [2, 'new-failure']]);
  t.match(formatCompareText(c), /x\/dup #2 /, 'the repeat is named in the text table');
});

t.test('classify and observedDiff directly', async (t) => {
  t.equal(classify(null, null).class, 'unchanged');
  t.equal(classify({ status: 'pass' }, { status: 'pass', observed: {} }).class, 'unchanged', 'no observed = {}');
  t.equal(classify({ status: 'fail', observed: { e: 1 } }, { status: 'fail', observed: { e: 2 } }).class, 'observed-change', 'same failing status, other values');
  t.equal(classify({ status: 'skip' }, { status: 'expected-unsupported' }).class, 'status-change');
  t.equal(classify({ status: 'error' }, { status: 'skip' }).class, 'status-change');
  t.equal(classify({ status: 'pass' }, { status: 'blocked' }).class, 'status-change', 'blocked: the case it names carries the new failure');
  t.equal(classify({ status: 'fail' }, { status: 'blocked' }).class, 'status-change', 'and a blocked case is not fixed');
  const text = formatCompareText(compareRuns([
    { label: 'a', res: run('7.1.0', [r('migration/reset/from-STOP', 'pass'), r('migration/fd/x', 'pass')]) },
    { label: 'b', res: run('7.2.0', [r('migration/reset/from-STOP', 'fail'), r('migration/fd/x', 'blocked', undefined, { blockedBy: 'migration/reset/from-STOP' })]) },
  ]));
  t.match(text, /1 fail, 0 error, 0 skip, 0 exp-unsupp, 0 warning, 1 blocked/, 'blocked counted apart in the run line');
  t.same(observedDiff({ a: [1, 2] }, { a: [2, 1] }), [{ key: 'a', before: [1, 2], after: [2, 1] }], 'arrays compared whole, order matters');
  t.same(observedDiff({ a: { b: 1 } }, { a: 1 }), [{ key: 'a.b', before: 1 }, { key: 'a', after: 1 }]);
  t.same(observedDiff({ n: null }, {}), [{ key: 'n', before: null }], 'null is a value, not absence');
});

t.test('three runs: consecutive transitions and first vs last', async (t) => {
  const A = run('6.1', [r('m/flaky', 'pass'), r('m/gap', 'pass'), r('m/errno', 'pass', { errno: 'EINVAL' }), r('m/steady', 'pass'), r('pasid/attach', 'expected-unsupported')]);
  const B = run('6.12', [r('m/flaky', 'fail'), r('m/errno', 'pass', { errno: 'EINVAL' }), r('m/steady', 'pass'), r('pasid/attach', 'expected-unsupported')]);
  const C = run('7.2', [r('m/flaky', 'pass'), r('m/gap', 'pass'), r('m/errno', 'pass', { errno: 'ENOTTY' }), r('m/steady', 'pass'), r('pasid/attach', 'pass'), r('m/new', 'error')]);
  const c = compareRuns([{ label: 'a', res: A }, { label: 'b', res: B }, { label: 'c', res: C }]);
  const cls = (id: string) => { const x = row(c, id); return [x.transitions.map((tr) => tr.class), x.overall.class, x.class]; };
  t.same(cls('m/flaky'), [['new-failure', 'fixed'], 'unchanged', 'new-failure'], 'a failure in the middle is not hidden by first vs last');
  t.same(cls('m/gap'), [['vanished', 'new-case'], 'unchanged', 'vanished']);
  t.same(cls('m/errno'), [['unchanged', 'observed-change'], 'observed-change', 'observed-change']);
  t.same(cls('m/steady'), [['unchanged', 'unchanged'], 'unchanged', 'unchanged']);
  t.same(cls('pasid/attach'), [['unchanged', 'status-change'], 'status-change', 'status-change']);
  t.same(cls('m/new'), [['unchanged', 'new-case'], 'new-case', 'new-case'], 'absent in A and B');
  t.same(row(c, 'm/errno').transitions[1]!.observedChanges, [{ key: 'errno', before: 'EINVAL', after: 'ENOTTY' }]);
  t.same(c.summary.consecutive.map((s) => [s.from, s.to, s.counts['new-failure'], s.counts.fixed]), [[0, 1, 1, 0], [1, 2, 0, 1]]);
  t.same([c.summary.overall.from, c.summary.overall.to], [0, 2]);

  const text = formatCompareText(c);
  t.match(text, /A→B: .*new-failure 1/);
  t.match(text, /B→C: .*fixed 1/);
  t.match(text, /A→C \(first→last\): /);
  const header = text.split('\n').find((l) => l.startsWith('CASE'))!;
  t.match(header, /^CASE\s+PROFILE\s+DEVICE\s+A\s+B\s+C\s+CHANGE$/, 'a column per run');
  const flaky = text.split('\n').find((l) => l.startsWith('m/flaky'))!;
  t.match(flaky, /pass\s+fail\s+pass\s+A→B new-failure, B→C fixed/);
  t.match(text, /\n {4}errno: EINVAL → EINVAL → ENOTTY\n/, 'changed observed value across the three runs');
  t.notMatch(text, /m\/steady/, 'unchanged rows are not listed');
});

t.test('text output: summary first, then only the changed rows', async (t) => {
  const { A, B } = twoRuns();
  const c = compareRuns([{ label: 'runs/6.12', res: A }, { label: 'runs/7.2', res: B }]);
  const text = formatCompareText(c);
  const lines = text.split('\n');
  t.ok(lines.indexOf('Summary:') < lines.findIndex((l) => l.startsWith('CASE')), 'summary before the table');
  t.match(text, /A→B: new-failure 4 {2}fixed 3 {2}status-change 5 {2}vanished 1 {2}new-case 1 {2}observed-change 3 {2}unchanged 2/);
  t.match(text, /^ {2}A {2}runs\/6\.12 {2}kernel 6\.12\.9 \(tcg\), 18 results/m);
  for (const x of TWO) {
    const listed = lines.some((l) => l.startsWith(`${x.id} `));
    t.equal(listed, x.cls !== 'unchanged', `${x.id} ${x.cls === 'unchanged' ? 'not ' : ''}listed`);
  }
  t.match(text, /^migration\/arc\/STOP->RESUMING\s+q35-vtd\s+mtty-2\s+pass\s+pass\s+observed-change$/m);
  t.match(text, /^ {4}errno: EINVAL → ENOTTY$/m, 'errno change under its row');
  t.match(text, /^ {4}precopy\.initialBytes: 4096 → 8192$/m);
  t.match(text, /^ {4}dataSize: \(absent\) → 4096$/m);
  t.match(text, /^migration\/old\/gone\s+q35-vtd\s+mtty-2\s+pass\s+-\s+vanished$/m);
  const order = ['new-failure', 'fixed', 'status-change', 'vanished', 'new-case', 'observed-change'];
  const seen = lines.filter((l) => /^(migration|pasid)\//.test(l)).map((l) => l.trim().split(/\s+/).pop()!);
  t.same(seen, [...seen].sort((a, b) => order.indexOf(a) - order.indexOf(b)), 'most important first');
  for (const l of lines) t.ok(l.length <= 140, `line readable (${l.length} chars)`);

  const same = compareRuns([{ label: 'a', res: A }, { label: 'b', res: A }]);
  t.match(formatCompareText(same), /No changes: all 18 cases/);
});

t.test('HTML page', async (t) => {
  const { A, B } = twoRuns();
  B.results.push(r('pasid/<script>alert(1)</script>', 'fail', { note: '</script>' }));
  const c = compareRuns([{ label: 'runs/"6.12"', res: A }, { label: 'runs/7.2', res: B }]);
  const html = renderCompareHtml(c);
  t.match(html, /^<!DOCTYPE html>/);
  t.match(html, /Content-Security-Policy/);
  t.notMatch(html, /<script>alert/, 'ids escaped');
  t.match(html, /pasid\/&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  t.equal((html.match(/<script\b/g) ?? []).length, 2);
  const m = /<script type="application\/json" id="vfio-comparison">([\s\S]*?)<\/script>/.exec(html)!;
  t.same(JSON.parse(m[1]!), JSON.parse(JSON.stringify(c)), 'embedded comparison');
  t.match(html, /data-class="new-failure" data-suite="migration" data-id="migration\/arc\/STOP-&gt;STOP_COPY"/);
  t.match(html, /<td class="cell c-fail ch cls-new-failure" data-change="new-failure"[^>]*>FAIL<small class="cls cls-new-failure">new failure<\/small>/, 'the cell where it broke is marked');
  t.match(html, /<td class="cell c-pass ch cls-observed-change" data-change="observed-change"[^>]*>pass<small[^>]*>errno changed<\/small>/, 'an errno change while both pass is marked too');
  t.match(html, /<td class="cell c-pass ch cls-observed-change"[^>]*>pass<small[^>]*>observed changed<\/small>/, 'another observed change is named as such');
  t.match(html, /errno: EINVAL → ENOTTY/);
  t.match(html, /<input type="checkbox" name="class" value="unchanged">/, 'unchanged rows hidden by default');
  t.match(html, /runs\/&quot;6\.12&quot;/);
});

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { err.push(String(s)); return true; }) as typeof process.stderr.write;
  try {
    const code = await fn();
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

t.test('vfio-conformance compare', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-compare-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { A, B } = twoRuns();
  mkdirSync(join(dir, 'a'));
  writeFileSync(join(dir, 'a', 'results.json'), JSON.stringify(A));
  writeFileSync(join(dir, 'b.json'), JSON.stringify(B));
  const runA = join(dir, 'a');
  const runB = join(dir, 'b.json');

  const text = await capture(() => compareCommand([runA, runB]));
  t.equal(text.code, 0);
  t.match(text.out, /errno: EINVAL → ENOTTY/);
  t.match(text.out, new RegExp(`A {2}${runA.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} {2}kernel 6\\.12\\.9`), 'a run directory, labelled as given');

  const json = await capture(() => compareCommand([runA, runB, '--json']));
  t.equal(json.code, 0);
  const parsed = JSON.parse(json.out) as Comparison;
  t.equal(parsed.rows.length, TWO.length);
  t.equal(parsed.summary.overall.counts['observed-change'], 3);

  const htmlFile = join(dir, 'out', 'compare.html');
  const html = await capture(() => compareCommand(['--html', htmlFile, runA, runB]));
  t.equal(html.code, 0);
  t.match(readFileSync(htmlFile, 'utf8'), /<!DOCTYPE html>/);
  t.match(html.err, /wrote/);
  t.match(html.out, /^Runs:/, 'the table is still printed');

  const help = await capture(() => compareCommand(['--help']));
  t.equal(help.code, 0);
  t.match(help.out, /vfio-conformance compare RUN_A RUN_B/);

  const bad = async (argv: string[], re: RegExp, what: string): Promise<void> => {
    const err = await compareCommand(argv).then(() => null, (e: unknown) => e);
    t.ok(err instanceof HarnessError, `${what}: HarnessError`);
    const he = err as HarnessError;
    t.equal(he.exitCode, 2, `${what}: exit 2`);
    t.match(he.message, re, what);
    t.notMatch(he.message, /\n/, `${what}: one line`);
  };
  await bad([runA, join(dir, 'missing')], /missing: no such run directory or results file/, 'missing run');
  mkdirSync(join(dir, 'empty'));
  await bad([runA, join(dir, 'empty')], /empty\/results\.json: results file not found/, 'run directory without results.json');
  writeFileSync(join(dir, 'trunc.json'), JSON.stringify(A).slice(0, 200));
  await bad([runA, join(dir, 'trunc.json')], /trunc\.json: truncated or not JSON/, 'truncated file');
  await bad([runA], /at least two runs, got 1/, 'one run');
  await bad([runA, runB, '--bogus'], /compare: Unknown option '--bogus'.*--help/, 'unknown option');
  await bad([runA, runB, '--html'], /compare: .*--html.*--help/, '--html without a value');
});

t.test('text output folds a suite that appears as a whole into one line, but not a handful of cases', async (t) => {
  const base = [r('migration/arc/A->B', 'pass')];
  const many = Array.from({ length: 20 }, (_, i) => r(`kselftest/iommu/iommufd/t${i}`, 'pass'));
  const few = Array.from({ length: 3 }, (_, i) => r(`dirty/type1/c${i}`, 'pass'));
  const text = formatCompareText(compareRuns([{ label: 'A', res: run('6.12', base) }, { label: 'B', res: run('7.2', [...base, ...many, ...few]) }]));
  t.match(text, /kselftest\/iommu\/iommufd\/\* \(20 cases\)/);
  t.notMatch(text, /kselftest\/iommu\/iommufd\/t7\b/, 'the folded cases are not listed one by one');
  t.match(text, /dirty\/type1\/c0/, 'three new cases stay rows of their own');
  t.match(text, /Changed cases \(23 of 24\)/, 'the count still counts every case');
});

t.test('two runs of the same behaviour compare clean: measurements vary, nothing changes', async (t) => {
  const A = sampleRun({ seed: 7 });
  const B = sampleRun({ seed: 7 });
  let touched = 0;
  for (const r of B.results) {
    if (!r.measurements) continue;
    touched++;
    r.measurements = { ...r.measurements, totalTimeMs: (r.measurements.totalTimeMs as number) * 2 + 13, downtimeMs: 1, ramBytes: 42, devices: { source: 'another-uuid' } };
  }
  t.ok(touched >= 40, `${touched} results with measurements, every one changed`);
  const c = compareRuns([{ label: 'a', res: A }, { label: 'b', res: B }]);
  t.equal(c.summary.overall.counts.unchanged, A.results.length, 'every case unchanged');
  t.match(formatCompareText(c), /No changes: all 2590 cases/);
  const row = c.rows.find((r) => r.id === 'qemu-migration/multifd')!;
  t.same(measurementSpread(row).find((s) => s.key === 'downtimeMs')!.values[1], 1, 'the measurements are kept per run');
  const spread = measurementSpread(row).find((s) => s.key === 'totalTimeMs')!;
  t.ok(spread.max > spread.min, 'with their spread');

  // the same, with the figures in observed (as qemu-migration wrote them before measurements): 40 changes
  const old = (res: typeof A) => ({ ...res, results: res.results.map((r) => (r.measurements ? { ...r, observed: { ...r.observed, ...r.measurements } } : r)) });
  const before = compareRuns([{ label: 'a', res: old(A) }, { label: 'b', res: old(B) }]);
  t.equal(before.summary.overall.counts['observed-change'], touched, 'figures in observed made every real-client case an observed change');
});

t.test('the release grid in Chromium: 6.12 against two runs of 7.2', { skip: existsSync('/usr/bin/chromium') ? false : '/usr/bin/chromium is not installed' }, async (t) => {
  const runs = [['runs/6.12', '6.12.117'], ['runs/7.2', '7.2.13'], ['runs/7.2-again', '7.2.13']].map(([label, release]) => ({ label: label!, res: sampleRun({ release }) }));
  const c = compareRuns(runs);
  const dir = t.testdir();
  const file = join(dir, 'compare.html');
  writeFileSync(file, renderCompareHtml(c));
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless=new', '--no-sandbox', '--disable-gpu'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('html[data-ready=true]');
  const counts = c.summary.consecutive[1]!.counts;
  t.equal(Object.entries(counts).filter(([k, n]) => k !== 'unchanged' && n > 0).length, 0, 'B -> C: the same behaviour, nothing changed');
  t.equal(await page.locator('#class-counts tbody tr').nth(1).locator('td[data-count="unchanged"]').textContent(), '2590');
  const ab = c.summary.consecutive[0]!.counts;
  t.equal(await page.locator('#class-counts tbody tr').first().locator('td[data-count="new-failure"]').textContent(), String(ab['new-failure']), 'A -> B new failures shown');
  const changed = c.rows.filter((r) => r.class !== 'unchanged').length;
  t.equal(Number(await page.locator('#shown').getAttribute('data-visible')), changed, 'only the changed cases at first');
  t.ok(changed > 0);
  const cell = page.locator('#grid td[data-change="new-failure"]').first();
  t.ok(await cell.isVisible(), 'a cell that broke is marked');
  t.equal(await cell.locator('small').textContent(), 'new failure');
  t.not(await cell.evaluate((el) => getComputedStyle(el).outlineStyle), 'none', 'and outlined');
  await page.locator('#f-text').fill('precopy-v2');
  t.equal(Number(await page.locator('#shown').getAttribute('data-visible')), 5, 'the errno change of precopy-v2-opt-in on five profiles');
  t.match(await page.locator('#grid tr.case:visible td.what').first().textContent(), /errno: EINVAL → OK → OK/);
  await page.locator('#f-text').fill('');
  mkdirSync(repoPath('test-artifacts'), { recursive: true });
  await page.screenshot({ path: repoPath('test-artifacts', 'release-grid.png') });
  t.same(errors, []);
});
