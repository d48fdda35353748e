import t from 'tap';
import { HarnessError } from '../../base/errors.js';
import { SUITES, getSuite } from '../../suites/registry.js';
import { checkSelection, listSuites, parseSelection, restrictSuite, selectListed, selectSuites, selects } from '../../runner/select.js';
import type { CaseDef, Suite } from '../../suites/types.js';
import type { Target } from '../../harness/target/target.js';
import type { AgentClient } from '../../harness/agent/client.js';

t.test('every registered suite lists its ids, each once', async (t) => {
  for (const s of SUITES) {
    t.ok(s.list, `${s.name} has list()`);
    const ids = s.list!().map((c) => c.id);
    t.ok(ids.length > 0, `${s.name} lists ids`);
    t.equal(new Set(ids).size, ids.length, `${s.name}: no id twice`);
    t.ok(ids.every((id) => id.startsWith(`${s.name}/`)), `${s.name}: ids start with the suite's name`);
  }
});

t.test('the migration listing marks flag-derived ids and keeps flag-independent ones static', async (t) => {
  const l = getSuite('migration').list!();
  const arc = l.find((c) => c.id === 'migration/arc/PRE_COPY->STOP');
  t.equal(arc?.known, 'derived', 'an arc from PRE_COPY (only PRE_COPY devices have it) is derived');
  t.match(arc?.from, /mtty-2/, 'and says which device it was listed for');
  t.equal(l.find((c) => c.id === 'migration/arc/STOP->RUNNING')?.known, 'static', 'an arc every flag set has is static');
  t.equal(l.find((c) => c.id === 'migration/feature/migration-flags')?.known, 'static');
  const ks = getSuite('kselftest').list!();
  t.ok(ks.every((c) => c.pattern && c.known === 'derived'), 'the selftests can only be listed as patterns');
});

t.test('selection: includes, then excludes; no selection selects all', async (t) => {
  t.equal(parseSelection([], []), undefined);
  const sel = parseSelection(['migration/arc/*', 'dma/edu/hw-info'], ['*->ERROR']);
  t.ok(selects(sel, 'migration/arc/STOP->RUNNING'));
  t.ok(selects(sel, 'dma/edu/hw-info'));
  t.notOk(selects(sel, 'migration/arc/STOP->ERROR'), 'excluded');
  t.notOk(selects(sel, 'dma/edu/round-trip-mapped'), 'not included');
  t.ok(selects(parseSelection([], ['dma/*']), 'pasid/x'), 'exclude alone keeps the rest');
  t.throws(() => parseSelection([''], []), /--case needs a case id/);
  t.throws(() => parseSelection([], [' ']), /--exclude needs a case id/);
});

t.test('a glob that matches nothing is refused; one that may reach a pattern is kept', async (t) => {
  const listed = listSuites(SUITES);
  const typo = `--case 'migration/arcs/*' matches no case id of the suites in this run `
    + `(see 'vfio-conformance list'; '*' matches any characters, '/' included)`;
  t.throws(() => checkSelection(listed, parseSelection(['migration/arcs/*'])), new HarnessError(typo));
  t.doesNotThrow(() => checkSelection(listed, parseSelection(['kselftest/iommu/iommufd/iommufd_ioas.*'])), 'selftest ids are unknown before setup: kept');
  const kept = selectListed(listed, parseSelection(['kselftest/iommu/iommufd/iommufd_ioas.*']));
  t.same(kept.map((c) => c.id), ['kselftest/iommu/iommufd/*'], 'only the pattern that may hold them');
  t.throws(() => checkSelection(listed, parseSelection(['dma/*'], ['dma/*'])), /leaves no case to run/);
});

const fakeCase = (id: string): CaseDef<unknown> => ({ id, device: { driver: 'none', class: 'none', id: '-' }, run: async () => ({ status: 'pass' }) });
const fakeSuite = (name: string, ids: string[]): Suite<unknown> => ({
  name,
  setup: async () => ({ state: undefined, cases: ids.map(fakeCase) }),
  list: () => ids.map((id) => ({ id, known: 'static' as const })),
});

t.test('a restricted suite sets up as usual and returns only the selected cases', async (t) => {
  const s = restrictSuite(fakeSuite('x', ['x/a', 'x/b', 'x/c']), parseSelection(['x/*'], ['x/b'])!);
  const r = await s.setup({} as Target, {} as AgentClient);
  t.same(r.cases.map((c) => c.id), ['x/a', 'x/c']);
  const suites = selectSuites([fakeSuite('x', ['x/a']), fakeSuite('y', ['y/a'])], parseSelection(['y/*']));
  t.same(suites.map((s) => s.name), ['y'], 'a suite none of whose ids is selected is not set up at all');
  t.equal(selectSuites(SUITES, undefined), SUITES, 'no selection: the suites as they are');
});
