import t from 'tap';
import { HarnessError } from '../../base/errors.js';
import { SUITES } from '../../suites/registry.js';
import { DEFAULT_PROFILES } from '../../harness/qemu/profiles.js';
import { BOOT_MS, assignShards, buildPlan, checkNamedPlan, parseShard, type Cell } from '../../runner/plan.js';
import { parseSelection } from '../../runner/select.js';
import { defaultSizedRun } from '../helpers/matrix.js';

const input = (over: Partial<Parameters<typeof buildPlan>[0]> = {}) => ({ arch: 'x86_64', profiles: [...DEFAULT_PROFILES], suites: SUITES, ...over });

t.test('cells are profile x suite in run order, with counts and default costs', async (t) => {
  const p = buildPlan(input());
  t.equal(p.cells.length, DEFAULT_PROFILES.length * SUITES.length);
  t.same(p.cells.slice(0, SUITES.length).map((c) => c.suite), SUITES.map((s) => s.name));
  const dma = p.cells.find((c) => c.key === 'none/dma')!;
  t.equal(dma.cases, 16);
  t.equal(dma.casesKnown, 'static');
  t.equal(p.cells.find((c) => c.key === 'none/migration')!.casesKnown, 'derived');
  t.equal(p.cells.find((c) => c.key === 'none/kselftest')!.cases, undefined, 'selftests: count unknown');
  t.ok(p.cells.every((c) => c.costFrom === 'default' && c.costMs > 0));
  t.equal(p.shards, undefined, 'no split without --shards');
});

t.test('a profile limited to some suites gets cells for those only', async (t) => {
  const p = buildPlan(input({ limits: { 'intel-iommu-dirty': ['iommu-dirty', 'dma'] } }));
  t.same(p.cells.filter((c) => c.profile === 'intel-iommu-dirty').map((c) => c.suite), ['dma', 'iommu-dirty'].sort((a, b) => SUITES.findIndex((s) => s.name === a) - SUITES.findIndex((s) => s.name === b)));
  t.equal(p.cells.filter((c) => c.profile === 'none').length, SUITES.length, 'an unlimited profile keeps every suite');
});

t.test('a selection keeps only the cells it reaches, counted', async (t) => {
  const p = buildPlan(input({ selection: parseSelection(['dma/type1/*', 'pasid/*']) }));
  t.same([...new Set(p.cells.map((c) => c.suite))], ['pasid', 'dma']);
  t.equal(p.cells.find((c) => c.key === 'none/dma')!.cases, 3);
});

t.test('timings give the costs: the cell measured, else the suite mean over profiles', async (t) => {
  const run = defaultSizedRun();
  run.results = run.results.filter((r) => r.profile !== 'amd-iommu');
  const p = buildPlan(input({ timings: run }));
  const measured = run.results.filter((r) => r.profile === 'none' && r.suite === 'dirty').reduce((a, r) => a + r.durationMs, 0);
  t.same(p.cells.find((c) => c.key === 'none/dirty')!, { ...p.cells.find((c) => c.key === 'none/dirty')!, costMs: measured, costFrom: 'timings' });
  t.equal(p.cells.find((c) => c.key === 'amd-iommu/dirty')!.costFrom, 'timings-suite-mean');
});

t.test('the split is deterministic, covers every cell once, and is balanced', async (t) => {
  const timings = defaultSizedRun();
  for (const n of [1, 2, 3, 4, 8, 40]) {
    const a = buildPlan(input({ shards: n, timings }));
    const b = buildPlan(input({ shards: n, timings }));
    t.same(a, b, `${n} shards: same inputs, same plan`);
    const cells = a.shards!.assignment.flatMap((s) => s.cells);
    t.same([...cells].sort(), a.cells.map((c) => c.key).sort(), `${n} shards: every cell exactly once`);
    t.same(a.shards!.assignment.map((s) => s.index), Array.from({ length: n }, (_, i) => i + 1), '1-based indexes');
    // Longest-first greedy: the longest shard exceeds the mean by at most one cell and one boot.
    const loads = a.shards!.assignment.map((s) => s.costMs);
    const total = a.cells.reduce((x, c) => x + c.costMs, 0);
    const bound = Math.max(total / n + Math.max(...a.cells.map((c) => c.costMs)) + BOOT_MS * DEFAULT_PROFILES.length, Math.max(...a.cells.map((c) => c.costMs)) + BOOT_MS);
    t.ok(Math.max(...loads) <= bound, `${n} shards: longest ${Math.max(...loads)} ms <= ${Math.round(bound)} ms`);
    for (const s of a.shards!.assignment) {
      const order = s.cells.map((k) => a.cells.findIndex((c) => c.key === k));
      t.same(order, [...order].sort((x, y) => x - y), 'a shard runs its cells in plan order (one boot per profile)');
    }
  }
  const p4 = buildPlan(input({ shards: 4, timings }));
  const loads = p4.shards!.assignment.map((s) => s.costMs);
  t.ok(Math.max(...loads) / Math.min(...loads) < 1.25, `4 shards of the default matrix within 25% of each other (${loads.join(', ')})`);
});

t.test('longest first: the big cells are spread before the small ones fill the gaps', async (t) => {
  const cell = (key: string, costMs: number): Cell => ({ key, profile: key.split('/')[0]!, suite: key.split('/')[1]!, casesKnown: 'static', costMs, costFrom: 'default' });
  const s = assignShards([cell('p/a', 10), cell('p/b', 10_000), cell('p/c', 10_000), cell('p/d', 20)], 2);
  t.same(s.map((x) => x.cells), [['p/b', 'p/d'], ['p/a', 'p/c']]);
});

t.test('the hash names the inputs and the split', async (t) => {
  const base = buildPlan(input({ shards: 4 })).shards!.hash;
  t.match(base, /^[0-9a-f]{16}$/);
  t.not(buildPlan(input({ shards: 3 })).shards!.hash, base, 'shard count');
  t.not(buildPlan(input({ shards: 4, selection: parseSelection([], ['dma/*']) })).shards!.hash, base, 'selection');
  t.not(buildPlan(input({ shards: 4, profiles: ['none', 'intel-iommu'] })).shards!.hash, base, 'profiles');
  t.not(buildPlan(input({ shards: 4, timings: defaultSizedRun() })).shards!.hash, base, 'timings that move cells');
});

t.test('--shard I/N: 1-based, one-line errors', async (t) => {
  t.same(parseShard('2/4'), { index: 2, total: 4 });
  t.same(parseShard('4/4'), { index: 4, total: 4 });
  t.throws(() => parseShard('0/4'), /--shard 0\/4: shards count from 1 \(1\.\.4\)/);
  t.throws(() => parseShard('5/4'), /--shard 5\/4: index 5 is past the total 4/);
  t.throws(() => parseShard('x'), /--shard 'x': expected I\/N/);
  t.throws(() => parseShard('1/0'), /the total must be at least 1/);
  t.throws(() => parseShard('-1/4'), /expected I\/N/);
  for (const bad of ['0/4', '5/4', 'x']) {
    try { parseShard(bad); } catch (e) {
      t.ok(e instanceof HarnessError && e.exitCode === 2 && !e.message.includes('\n'), `${bad}: a one-line HarnessError, exit 2`);
    }
  }
});

t.test('a plan that differs from the one named is refused, saying what differs', async (t) => {
  const p = buildPlan(input({ shards: 4 }));
  t.doesNotThrow(() => checkNamedPlan(p, { hash: p.shards!.hash }));
  t.throws(() => checkNamedPlan(p, { hash: '0123456789abcdef' }), /--plan 0123456789abcdef: this run's plan is [0-9a-f]{16}/);
  const other = buildPlan(input({ shards: 4, profiles: ['none'] }));
  t.throws(() => checkNamedPlan(p, { file: 'plan.json', plan: other }), /--plan plan.json: .*profiles none,intel-iommu.* here, none there/);
  const three = buildPlan(input({ shards: 3 }));
  t.throws(() => checkNamedPlan(p, { file: 'plan.json', plan: three }), /shard total 4 here, 3 there/);
});

t.test('plan and shard selection of a default-sized run: within 1 s', async (t) => {
  const timings = defaultSizedRun();
  t.ok(timings.results.length > 2500, `${timings.results.length} results`);
  const t0 = performance.now();
  const p = buildPlan(input({ shards: 8, timings }));
  const ms = performance.now() - t0;
  t.ok(p.shards);
  t.ok(ms < 1000, `plan with timings and 8 shards took ${ms.toFixed(1)} ms`);
  t.comment(`plan + 8 shards from ${timings.results.length} timed results: ${ms.toFixed(1)} ms`);
});

t.test('a subset or a shard never gates as the complete matrix', async (t) => {
  const { gate } = await import('../../reports/gate.js');
  const { shardsOf } = await import('../helpers/matrix.js');
  const full = defaultSizedRun();
  t.equal(gate(full).subset, undefined, 'the whole matrix');
  const sub = { ...full, run: { ...full.run, selection: { include: ['dma/*'], exclude: [] } } };
  t.match(gate(sub).subset, /a subset of the matrix \(--case dma\/\*\)/);
  t.match(gate(sub).summary, /\(a subset, not the complete matrix\)$/);
  const shard = shardsOf(full, buildPlan(input({ shards: 2 })))[1]!;
  t.match(gate(shard).subset, /^shard 2\/2 of plan [0-9a-f]{16}: only its cells/);
});
