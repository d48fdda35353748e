import t from 'tap';
import { readFileSync } from 'node:fs';
import { repoPath } from '../../base/paths.js';
import { parseKtap, parseTestList, parseTestPoint, type KtapTest } from '../../suites/kselftest/ktap.js';
import { outcomeOf } from '../../suites/kselftest/index.js';

// Real output of the 7.2.13 selftests (see test/fixtures/ktap/README.md), and variants derived from it.
const fx = (name: string): string => readFileSync(repoPath('test', 'fixtures', 'ktap', name), 'utf8');
const FULL = fx('iommufd-7.2.13.txt');
const FAIL_NTH = fx('iommufd_fail_nth-7.2.13.txt');
const LIST = fx('iommufd-list-7.2.13.txt');
const ONE_SKIP = fx('iommufd-one-skip-7.2.13.txt');
const INTERLEAVED = fx('iommufd-mock_domain-no-hugepages-kmsg-interleaved-7.2.13.txt');
const KILLED = fx('iommufd-no-hugepages-killed-after-4s-7.2.13.txt');

const count = (ts: KtapTest[]) => {
  const c: Record<string, number> = {};
  for (const x of ts) c[x.status] = (c[x.status] ?? 0) + 1;
  return c;
};
const brief = (ts: KtapTest[]) => ts.map((x) => ({ name: x.name, status: x.status, reason: x.reason }));

t.test('a full iommufd run', async (t) => {
  const r = parseKtap(FULL);
  t.equal(r.tests.length, 246);
  t.same(count(r.tests), { pass: 241, skip: 5 });
  t.equal(r.planned, 246);
  t.equal(r.complete, true);
  t.same(r.totals, { pass: 241, fail: 0, xfail: 0, xpass: 0, skip: 5, error: 0 }, 'Totals line read');
  t.same(r.garbage, []);
  t.equal(new Set(r.tests.map((x) => x.name)).size, 246, 'names are unique');
  t.same(r.tests.map((x) => x.number), Array.from({ length: 246 }, (_, i) => i + 1), 'test points in order');
  const first = r.tests[0]!;
  t.same(first, {
    name: 'iommufd.simple_close', status: 'pass', number: 1,
    lines: ['#  RUN           iommufd.simple_close ...', '#            OK  iommufd.simple_close', 'ok 1 iommufd.simple_close'],
  });
  const skip = r.tests.find((x) => x.name === 'iommufd_viommu.no_viommu.hw_queue')!;
  t.equal(skip.status, 'skip');
  t.equal(skip.reason, 'Skipping test for variant no_viommu', 'skip reason kept');
  t.match(skip.lines[1], /SKIP\s+Skipping test for variant no_viommu/);
  t.equal(r.tests.filter((x) => x.name.startsWith('iommufd_dirty_tracking.')).length, 54, '9 variants x 6 dirty-tracking tests');
  t.ok(r.tests.filter((x) => x.name.startsWith('iommufd_device_pasid.')).every((x) => x.status === 'pass'));
});

t.test('iommufd_fail_nth and a single -r run with a skip', async (t) => {
  const f = parseKtap(FAIL_NTH);
  t.same(f.tests.map((x) => x.name), ['basic', 'map_domain', 'map_file_domain', 'map_two_domains', 'access_rw', 'access_pin', 'access_pin_domain', 'device'].map((n) => `basic_fail_nth.${n}`));
  t.ok(f.tests.every((x) => x.status === 'pass'));
  t.equal(f.complete, true);
  const one = parseKtap(ONE_SKIP);
  t.same(brief(one.tests), [{ name: 'iommufd_viommu.no_viommu.hw_queue', status: 'skip', reason: 'Skipping test for variant no_viommu' }]);
  t.equal(one.complete, true);
});

t.test('-l lists exactly the tests a full run runs, in run order', async (t) => {
  const listed = parseTestList(LIST);
  t.equal(listed.length, 246);
  t.same(listed.map((x) => x.full), parseKtap(FULL).tests.map((x) => x.name));
  t.same(listed[0], { fixture: 'iommufd', variant: '', test: 'simple_close', full: 'iommufd.simple_close' });
  t.ok(listed.some((x) => x.full === 'change_process.account_mm.basic'), 'zipped variant column read');
  t.ok(listed.some((x) => x.full === 'iommufd_dirty_tracking.domain_dirty128M_huge.get_dirty_bitmap_no_clear'), 'long names past the column width');
  t.same(parseTestList(''), []);
  t.same(parseTestList('Usage: ./x [-h|-l|-d]\n'), [], 'not a list');
});

t.test('real failures, with kernel lines from /proc/kmsg interleaved', async (t) => {
  const r = parseKtap(INTERLEAVED);
  t.equal(r.tests.length, 42);
  t.same(count(r.tests), { pass: 36, fail: 6 });
  t.same(r.totals?.fail, 6);
  t.equal(r.complete, true);
  t.same(r.garbage, [], 'console lines are not garbage');
  t.ok(r.console.length > 400 && r.console.every((l) => /^<\d+>\[/.test(l)), 'console lines taken out');
  const f = r.tests.find((x) => x.name === 'iommufd_mock_domain.one_domain_hugepage.basic')!;
  t.equal(f.status, 'fail');
  t.equal(f.reason, 'iommufd.c:1767:basic:Expected MAP_FAILED (18446744073709551615) != buf (18446744073709551615): Test terminated by assertion');
  t.ok(f.lines.some((l) => /Adding to iommu group/.test(l)), 'the kernel lines printed while it ran are kept with the test');
  t.same(brief(r.tests.filter((x) => x.status === 'fail')).map((x) => x.name), [
    'one_domain_hugepage.basic', 'one_domain_hugepage.all_aligns', 'one_domain_hugepage.all_aligns_copy',
    'two_domains_hugepage.basic', 'two_domains_hugepage.all_aligns', 'two_domains_hugepage.all_aligns_copy',
  ].map((n) => `iommufd_mock_domain.${n}`));
});

t.test('a real stream cut by SIGKILL mid-test', async (t) => {
  const r = parseKtap(KILLED);
  t.equal(r.complete, false);
  t.equal(r.planned, 246);
  t.same(count(r.tests), { pass: 128, fail: 4, error: 1 }, 'the rest are not invented');
  const last = r.tests[r.tests.length - 1]!;
  t.same(brief([last]), [{ name: 'iommufd_mock_domain.two_domains.all_aligns_copy', status: 'error', reason: 'stream ended while running' }]);
  t.same(r.garbage, ['Killed'], "the shell's line is garbage, and kept as such");
});

t.test('synthetic truncations of the full run', async (t) => {
  const lines = FULL.split('\n');
  const full = parseKtap(FULL).tests;
  for (const cut of [1, 2, 3, 4, 5, 6, 100, 101, 102, 500, lines.length - 4]) {
    const r = parseKtap(lines.slice(0, cut).join('\n'));
    const runningAt = [...lines.slice(0, cut)].reverse().find((l) => /RUN|^(not )?ok /.test(l));
    const running = runningAt && /RUN\s+(\S+)/.exec(runningAt)?.[1];
    const done = full.filter((x) => r.tests.some((y) => y.name === x.name && y.status !== 'error'));
    t.same(brief(r.tests.filter((x) => x.status !== 'error')), brief(done), `cut at ${cut}: finished tests as in the full run`);
    t.same(r.tests.filter((x) => x.status === 'error').map((x) => [x.name, x.reason]), running ? [[running, 'stream ended while running']] : [], `cut at ${cut}: only the running test is an error`);
    t.ok(r.tests.length <= 246);
    t.equal(r.complete, r.tests.length === 246 && r.tests.every((x) => x.status !== 'error'), `cut at ${cut}: complete only once every planned test point is in`);
  }
  // cut in the middle of a test point line: "ok 1 iommufd.simp"
  const mid = FULL.slice(0, FULL.indexOf('ok 1 iommufd.simple_close') + 'ok 1 iommufd.simp'.length);
  const r = parseKtap(mid);
  t.equal(r.tests.length, 1);
  t.equal(r.complete, false);
});

t.test('synthetic interleaving: console lines between and glued onto program lines change nothing', async (t) => {
  const lines = FULL.split('\n');
  const out: string[] = [];
  lines.forEach((l, i) => {
    if (i % 7 === 3) out.push(`[   ${(10 + i / 100).toFixed(6)}] iommufd_mock iommufd_mock0: Adding to iommu group 0`);
    // printk without a newline boundary: the console line lands after the program's text
    if (i % 11 === 5 && l.length) out.push(`${l}[   ${(10 + i / 100).toFixed(6)}] WARNING: CPU: 0 PID: 1 at somewhere`);
    else out.push(l);
    if (i % 13 === 0) out.push(`<4>[   ${(10 + i / 100).toFixed(6)}] something else`);
  });
  const r = parseKtap(out.join('\n'));
  t.same(brief(r.tests), brief(parseKtap(FULL).tests));
  t.equal(r.complete, true);
  t.same(r.garbage, []);
  t.ok(r.console.some((l) => l.includes('WARNING: CPU')), 'glued console text is separated');
});

t.test('garbage anywhere is reported, results unchanged', async (t) => {
  const lines = FULL.split('\n');
  const out: string[] = [];
  lines.forEach((l, i) => { out.push(l); if (i % 50 === 10) out.push(i % 100 === 10 ? '\u0000\u0001\u00ff binary junk' : 'Segmentation fault'); });
  const r = parseKtap(out.join('\n'));
  t.same(brief(r.tests), brief(parseKtap(FULL).tests));
  t.ok(r.garbage.length >= 10);
  t.same(parseKtap('').tests, []);
  t.same(parseKtap('total nonsense\nmore\n').tests, []);
  t.same(parseKtap('\r\n\r\nok\n').tests.length, 1, 'a bare ok is a pass without a name, not a crash');
});

t.test('nested under run_kselftest.sh, with a runner TIMEOUT', async (t) => {
  const wrap = (text: string) => text.split('\n').filter((l) => l && !/^TAP version/.test(l)).map((l) => `# ${l}`);
  const fullLines = wrap(FULL);
  const cut = fullLines.findIndex((l) => l.includes('RUN           iommufd_ioas.mock_domain.area ...'));
  const nested = [
    'TAP version 13', '1..2',
    '# timeout set to 45', '# selftests: iommu: iommufd',
    ...fullLines.slice(0, cut + 1),
    'not ok 1 selftests: iommu: iommufd # TIMEOUT 45 seconds',
    '# timeout set to 45', '# selftests: iommu: iommufd_fail_nth',
    ...wrap(FAIL_NTH),
    'ok 2 selftests: iommu: iommufd_fail_nth',
  ].join('\n');
  const r = parseKtap(nested);
  t.equal(r.planned, 2);
  t.equal(r.complete, true);
  const outer = r.tests.filter((x) => !x.parent);
  t.same(brief(outer), [
    { name: 'selftests: iommu: iommufd', status: 'fail', reason: 'timeout (45 seconds)' },
    { name: 'selftests: iommu: iommufd_fail_nth', status: 'pass', reason: undefined },
  ]);
  const killed = r.tests.find((x) => x.name === 'iommufd_ioas.mock_domain.area')!;
  t.equal(killed.status, 'error');
  t.match(killed.reason, /TIMEOUT 45 seconds/);
  t.equal(killed.parent, 'selftests: iommu: iommufd');
  t.ok(r.tests.filter((x) => x.parent === 'selftests: iommu: iommufd_fail_nth').every((x) => x.status === 'pass'));
  t.equal(r.tests.filter((x) => x.parent === 'selftests: iommu: iommufd_fail_nth').length, 8);
  const inner = r.tests.filter((x) => x.parent === 'selftests: iommu: iommufd' && x.status !== 'error');
  t.same(brief(inner), brief(parseKtap(FULL).tests.slice(0, inner.length)), 'inner results as when run directly');
});

t.test('kselftest directives: XFAIL, XPASS, TIMEOUT, harness timeout', async (t) => {
  const r = parseKtap([
    'TAP version 13', '1..4',
    '#  RUN           f.a ...', '#          XFAIL  f.a', 'ok 1 f.a # XFAIL known broken',
    '#  RUN           f.b ...', '#          XPASS  f.b', 'not ok 2 f.b # XPASS fixed?',
    '#  RUN           f.c ...', '# c: Test terminated by timeout', '#          FAIL  f.c', 'not ok 3 f.c',
    'not ok 4 whole # TIMEOUT 30 seconds',
  ].join('\n'));
  t.same(brief(r.tests), [
    { name: 'f.a', status: 'pass', reason: 'expected failure: known broken' },
    { name: 'f.b', status: 'fail', reason: 'unexpected pass: fixed?' },
    { name: 'f.c', status: 'fail', reason: 'Test terminated by timeout' },
    { name: 'whole', status: 'fail', reason: 'timeout (30 seconds)' },
  ]);
});

t.test('outcome of one -r run', async (t) => {
  const one = parseKtap(ONE_SKIP).tests[0];
  t.same(outcomeOf('iommufd_viommu.no_viommu.hw_queue', one, { code: 0, out: ONE_SKIP, killed: false }), { status: 'skip', reason: 'Skipping test for variant no_viommu', observed: { exit: 0 } });
  t.same(outcomeOf('x.y', undefined, { code: 4, out: 'Usage: ...\nno device given\n', killed: false }), { status: 'skip', reason: 'program skipped: no device given' });
  t.match(outcomeOf('x.y', undefined, { code: 137, out: '', killed: true }), { status: 'error', reason: /killed after 40 s/ });
  const cut = parseKtap(KILLED).tests.pop();
  t.match(outcomeOf(cut!.name, cut, { code: 137, out: KILLED, killed: true }), { status: 'error', reason: /killed after 40 s \(stream ended while running\)/ });
});

const tree = (ts: KtapTest[]) => ts.map((x) => [x.parent ?? '', x.name, x.status]);

t.test('KUnit: tab-indented suites two levels deep give one result per subtest, each with its parent', async (t) => {
  const r = parseKtap(fx('kunit-all_passed_nested.log'));
  t.same(tree(r.tests), [
    ['sysctl_test', 'sysctl_test_dointvec_null_tbl_data', 'pass'],
    ['example', 'example_simple_test', 'pass'],
    ['example', 'example_mock_test', 'pass'],
    ['sysctl_test', 'example', 'pass'],
    ['sysctl_test', 'sysctl_test_dointvec_table_len_is_zero', 'pass'],
    ['sysctl_test', 'sysctl_test_dointvec_table_read_but_position_set', 'pass'],
    ['', 'sysctl_test', 'pass'],
    ['example', 'example_simple_test', 'pass'],
    ['example', 'example_mock_test', 'pass'],
    ['', 'example', 'pass'],
  ]);
  t.equal(r.planned, 2);
  t.equal(r.complete, true);
  t.same(r.garbage, ['\tinit_suite', '\tkunit example: all tests passed', 'kunit sysctl_test: all tests passed', 'init_suite', 'kunit example: all tests passed']);
});

t.test('KUnit: a failed expectation names where, and its suite fails', async (t) => {
  const r = parseKtap(fx('kunit-failure.log'));
  const f = r.tests.find((x) => x.status === 'fail' && x.parent === 'example')!;
  t.equal(f.name, 'example_simple_test');
  t.equal(f.reason, 'EXPECTATION FAILED at lib/kunit/example-test.c:30');
  t.ok(f.lines.includes('\tExpected 1 + 1 == 3, but'), 'the expectation\'s own lines stay with the test');
  t.same(tree(r.tests.filter((x) => !x.parent)), [['', 'sysctl_test', 'pass'], ['', 'example', 'fail']]);
  t.equal(r.tests.filter((x) => x.parent === 'sysctl_test').length, 8);
  t.equal(r.complete, true);
});

t.test('KTAP v1 without # Subtest lines: the parent is the test point that closes the subtests', async (t) => {
  t.same(tree(parseKtap(fx('kunit-failure-nested.log')).tests), [
    ['subtest 1', 'test 1', 'pass'], ['', 'subtest 1', 'fail'], ['subtest 2', 'subsubtest 1', 'fail'], ['', 'subtest 2', 'fail'],
  ]);
  const two = parseKtap(fx('kunit-ktap_output.log'));
  t.same(tree(two.tests), [['suite', 'case_1', 'pass'], ['suite', 'case_2', 'pass'], ['suite', 'case_3', 'pass'], ['', 'suite', 'pass']], '2-space indents');
  t.equal(two.complete, true);
});

t.test('run_kselftest.sh wrapping without RUN lines, and a SKIP test point without a name', async (t) => {
  const r = parseKtap(fx('kselftest-membarrier.log'));
  t.same(tree(r.tests), [
    ['selftests: membarrier: membarrier_test_single_thread', 'sys_membarrier available', 'pass'],
    ['selftests: membarrier: membarrier_test_single_thread', 'sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected', 'pass'],
    ['', 'selftests: membarrier: membarrier_test_single_thread', 'pass'],
    ['selftests: membarrier: membarrier_test_multi_thread', 'sys_membarrier available', 'pass'],
    ['selftests: membarrier: membarrier_test_multi_thread', 'sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected', 'pass'],
    ['', 'selftests: membarrier: membarrier_test_multi_thread', 'pass'],
    ['', '', 'skip'],
  ]);
  t.equal(r.tests[6]!.reason, 'selftests: membarrier: membarrier_test_multi_thread');
  t.equal(r.complete, true);
});

t.test('a KUnit suite cut off: the subtests seen are kept, the stream is incomplete', async (t) => {
  const lines = fx('kunit-all_passed_nested.log').split('\n');
  const r = parseKtap(lines.slice(0, lines.findIndex((l) => l.includes('ok 2 - example_mock_test')) + 1).join('\n'));
  t.same(tree(r.tests), [
    ['sysctl_test', 'sysctl_test_dointvec_null_tbl_data', 'pass'], ['example', 'example_simple_test', 'pass'], ['example', 'example_mock_test', 'pass'],
  ]);
  t.equal(r.complete, false);
});

t.test('test points as TAP writes them', async (t) => {
  t.same(parseTestPoint('ok 1 - a \\# b # TODO not yet'), { ok: true, number: 1, name: 'a # b', directive: 'TODO', text: 'not yet' });
  t.same(parseTestPoint('not ok 12 x # ERROR could not set up'), { ok: false, number: 12, name: 'x', directive: 'ERROR', text: 'could not set up' });
  t.same(parseTestPoint('ok 3 # SKIP why'), { ok: true, number: 3, name: '', directive: 'SKIP', text: 'why' });
  t.same(parseTestPoint('ok foo # skip lower case'), { ok: true, number: undefined, name: 'foo', directive: 'SKIP', text: 'lower case' });
  t.same(parseTestPoint('ok 5 foo # a remark'), { ok: true, number: 5, name: 'foo', directive: undefined, text: 'a remark' });
  t.same(parseTestPoint('ok 6 f#g'), { ok: true, number: 6, name: 'f#g', directive: undefined, text: '' }, 'a # inside a word is the name');
  t.same(parseTestPoint('ok'), { ok: true, number: undefined, name: '', directive: undefined, text: '' });
  t.equal(parseTestPoint('okay 1 x'), undefined);
  t.equal(parseTestPoint('# ok 1 x'), undefined);
});

t.test('directives, a YAML block and Bail out!', async (t) => {
  const r = parseKtap([
    'TAP version 13', '1..4',
    'not ok 1 t1 # TODO flaky on TCG',
    'not ok 2 t2 # ERROR no device',
    'not ok 3 t3', '  ---', '  message: "bad errno"', '  got: EINVAL', '  ...',
    '#  RUN           f.t4 ...', 'Bail out! cannot open /dev/vfio/vfio',
  ].join('\n'));
  t.same(brief(r.tests), [
    { name: 't1', status: 'pass', reason: 'todo: flaky on TCG' },
    { name: 't2', status: 'error', reason: 'error: no device' },
    { name: 't3', status: 'fail', reason: 'not ok' },
    { name: 'f.t4', status: 'error', reason: 'bailed out: cannot open /dev/vfio/vfio' },
  ]);
  t.same(r.tests[2]!.lines.slice(1), ['  ---', '  message: "bad errno"', '  got: EINVAL', '  ...'], 'the YAML block belongs to its test point');
  t.same(r.garbage, [], 'a YAML block is not garbage');
  t.equal(r.complete, false, 'a bail out is never complete');
});
