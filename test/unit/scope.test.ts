import t from 'tap';
import { resolveMatrix } from '../../runner/matrix.js';
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
  t.equal(seen.length, m.profiles.length * m.suites.length, 'every cell');
  t.throws(() => runScope(m, { shard: { index: 1, total: 3 }, named: { hash: 'ffffffffffffffff' } }), /--plan ffffffffffffffff: this run's plan is/);
});
