import t from 'tap';
import { judgeQtest, parseQtestTap, parseQtests, readQtests, type QtestSpec } from '../../images/qemu/qtests.js';
import { HarnessError } from '../../base/errors.js';

// What intel-iommu-test printed under `--tap -k` against our build (09:06 UTC), without the lines of
// QEMU's own warnings and one of the four "starting QEMU" lines kept to show they are ignored.
const PASSED = `# random seed: R02Sdbfb0a7d87a5b9649c84992624394de8
1..4
# Start of x86_64 tests
# Start of q35 tests
# Start of intel-iommu tests
# starting QEMU: exec /tmp/qt-1Eg7/qemu-system-x86_64 -qtest unix:/tmp/qtest-24639.sock -M q35 -device intel-iommu,x-scalable-mode=on,x-flts=on -accel qtest
ok 1 /x86_64/q35/intel-iommu/stage-1
# Start of ssads tests
ok 2 /x86_64/q35/intel-iommu/ssads/ecap
ok 3 /x86_64/q35/intel-iommu/ssads/dma
ok 4 /x86_64/q35/intel-iommu/ssads/off
# End of ssads tests
# End of intel-iommu tests
# End of q35 tests
# End of x86_64 tests
`;
const spec: QtestSpec = { name: 'intel-iommu-test', target: 'x86_64', required: ['/q35/intel-iommu/ssads/'] };

t.test('the qtests file: name, target, required paths; mistakes named with their line', async (t) => {
  t.same(parseQtests('# c\n\nintel-iommu-test x86_64 /q35/intel-iommu/ssads/  # ours\nfoo-test aarch64\n'), [
    { name: 'intel-iommu-test', target: 'x86_64', required: ['/q35/intel-iommu/ssads/'] },
    { name: 'foo-test', target: 'aarch64', required: [] },
  ]);
  t.throws(() => parseQtests('intel-iommu x86_64'), HarnessError);
  t.throws(() => parseQtests('\nintel-iommu.c x86_64', 'qtests'), /qtests:2: 'intel-iommu\.c' is not a qtest name/);
  t.throws(() => parseQtests('a-test riscv64'), /target 'riscv64' is not x86_64 or aarch64/);
  t.throws(() => parseQtests('a-test x86_64 q35/x'), /must start with \//);
  t.throws(() => parseQtests('a-test x86_64\na-test x86_64'), /listed twice/);
  const ours = readQtests();
  t.ok(ours.some((q) => q.name === 'intel-iommu-test' && q.required.length > 0), 'the repository lists the VT-d qtest with its required paths');
});

t.test('GLib TAP: results, skips, plan, bail out', async (t) => {
  const run = parseQtestTap(PASSED);
  t.equal(run.plan, 4);
  t.same(run.tests.map((x) => [x.n, x.ok, x.path]), [[1, true, '/x86_64/q35/intel-iommu/stage-1'], [2, true, '/x86_64/q35/intel-iommu/ssads/ecap'], [3, true, '/x86_64/q35/intel-iommu/ssads/dma'], [4, true, '/x86_64/q35/intel-iommu/ssads/off']]);
  const skipped = parseQtestTap('ok 1 /x86_64/q35/intel-iommu/ssads/dma # SKIP no edu device\nnot ok 2 /x86_64/a\n1..2\n');
  t.same(skipped.tests, [{ n: 1, ok: true, path: '/x86_64/q35/intel-iommu/ssads/dma', skip: 'no edu device' }, { n: 2, ok: false, path: '/x86_64/a' }]);
  t.equal(parseQtestTap('Bail out! ERROR:../tests/qtest/x.c:12 assertion failed\n').bailOut, 'ERROR:../tests/qtest/x.c:12 assertion failed');
});

t.test('judging a run: every failure, short plan, skipped or missing required test is named', async (t) => {
  t.same(judgeQtest(parseQtestTap(PASSED), spec, 0), []);
  t.same(judgeQtest(parseQtestTap(PASSED.replace('ok 3', 'not ok 3')), spec, 1), ['not ok 3 /x86_64/q35/intel-iommu/ssads/dma']);
  t.same(judgeQtest(parseQtestTap(PASSED.replace('ssads/dma', 'ssads/dma # SKIP no edu device')), spec, 0), ['/x86_64/q35/intel-iommu/ssads/dma was skipped: no edu device']);
  t.same(judgeQtest(parseQtestTap('ok 1 /x86_64/q35/intel-iommu/stage-1\n1..1\n'), spec, 0), ['no test under /q35/intel-iommu/ssads/ ran']);
  t.same(judgeQtest(parseQtestTap(PASSED.replace('1..4\n', '')), spec, 0), ['no TAP plan: the qtest did not finish']);
  t.same(judgeQtest(parseQtestTap(PASSED.replace(/^ok 4.*\n/m, '')), spec, 0), ['3 of 4 planned tests reported']);
  t.same(judgeQtest(parseQtestTap(PASSED), spec, 134), ['exit code 134'], 'an abort after the last line still fails');
});
