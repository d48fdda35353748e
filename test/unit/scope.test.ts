import t from 'tap';
import { resolveMatrix, suitesFor } from '../../runner/matrix.js';
import { runScope } from '../../runner/scope.js';
import { parseSelection } from '../../runner/select.js';
import { cellKey } from '../../runner/plan.js';

t.test('no shard: every profile with every selected suite', async (t) => {
  const m = resolveMatrix({ profile: ['none', 'intel-iommu'] });
  const s = runScope(m);
  t.same(s.cells.map((c) => c.profile.name), ['none', 'intel-iommu']);
  t.equal(s.cells[0]!.suites.length, m.suites.length);
  t.equal(s.shard, undefined);
  const sub = runScope(m, { selection: parseSelection(['dma/*']) });
  t.same(sub.cells[0]!.suites.map((x) => x.name), ['dma']);
  t.same(sub.selection, { include: ['dma/*'], exclude: [] });
});

t.test('shards: together they run every cell once; each records its plan', async (t) => {
  const m = resolveMatrix({});
  const seen: string[] = [];
  let hash: string | undefined;
  for (const index of [1, 2, 3]) {
    const s = runScope(m, { shard: { index, total: 3 } });
    t.equal(s.shard!.index, index);
    hash ??= s.shard!.planHash;
    t.equal(s.shard!.planHash, hash, 'one plan for all shards');
    const cells = s.cells.flatMap((c) => c.suites.map((x) => cellKey(c.profile.name, x.name)));
    t.same(cells, s.shard!.cells, 'the scope runs exactly the cells the shard records');
    seen.push(...cells);
  }
  t.equal(seen.length, new Set(seen).size, 'no cell twice');
  t.equal(seen.length, m.profiles.reduce((n, p) => n + suitesFor(m, p).length, 0), 'every cell');
  t.throws(() => runScope(m, { shard: { index: 1, total: 3 }, named: { hash: 'ffffffffffffffff' } }), /--plan ffffffffffffffff: this run's plan is/);
});

t.test('a profile that exists for some suites runs only those, unless --suite names others', async (t) => {
  const m = resolveMatrix({ profile: ['intel-iommu-sm', 'intel-iommu-dirty', 'intel-iommu-pasid'] });
  const by = new Map(runScope(m).cells.map((c) => [c.profile.name, c.suites.map((x) => x.name)]));
  t.equal(by.get('intel-iommu-sm')?.length, m.suites.length, 'the base profile runs every suite');
  t.same(by.get('intel-iommu-dirty'), ['dma', 'iommu-dirty'].sort((a, b) => m.suites.findIndex((x) => x.name === a) - m.suites.findIndex((x) => x.name === b)));
  t.ok(by.get('intel-iommu-pasid')?.includes('pasid') && !by.get('intel-iommu-pasid')?.includes('migration'));

  const named = resolveMatrix({ profile: ['intel-iommu-dirty'], suite: ['migration'] });
  t.same(runScope(named).cells.map((c) => c.suites.map((x) => x.name)), [['migration']], 'a named suite runs on it');

  // a selection that leaves such a profile none of its suites leaves the profile out: nothing to boot it for
  const sub = runScope(m, { selection: parseSelection(['migration/*']) });
  t.same(sub.cells.map((c) => c.profile.name), ['intel-iommu-sm']);

  // the shards of the default matrix never hold a cell the profile does not run
  const all = resolveMatrix({});
  const cells = [1, 2].flatMap((index) => runScope(all, { shard: { index, total: 2 } }).shard!.cells);
  t.notOk(cells.includes(cellKey('amd-iommu-dirty', 'migration')), 'no amd-iommu-dirty/migration cell');
  t.ok(cells.includes(cellKey('amd-iommu-dirty', 'iommu-dirty')));
});
