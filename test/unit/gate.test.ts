import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HarnessError } from '../../base/errors.js';
import { gate, globMatch, readExpectations, validateExpectations, type Expectations } from '../../reports/gate.js';
import { validateResults } from '../../base/results/file.js';
import { SCHEMA_VERSION, type CaseResult, type RunInfo, type RunResults, type Status } from '../../base/results/schema.js';
import { runInfo } from '../helpers/results.js';

const mtty = { driver: 'mtty', class: 'sample' as const, id: 'mtty-2' };

function r(id: string, status: Status, over: Partial<CaseResult> = {}): CaseResult {
  return { id, suite: id.split('/')[0]!, profile: 'q35-vtd', device: mtty, status, durationMs: 10, faults: [], artifacts: {}, ...(status === 'fail' ? { reason: `${id} broke` } : {}), ...over };
}

function run(results: CaseResult[], over: Partial<RunInfo> = {}, release = '7.2.0'): RunResults {
  return validateResults({
    schema: SCHEMA_VERSION,
    run: runInfo({ kernel: { release, sourceId: 'tree', configHash: 'abc', arch: 'x86_64' }, suites: ['migration'], ...over }),
    results,
  });
}

const CLOSE = 'migration/close-reopen/in-RESUMING';
const clean = (): CaseResult[] => [r('migration/arc/STOP->RUNNING', 'pass'), r('migration/arc/RUNNING->RUNNING_P2P', 'skip', { reason: 'no P2P' }), r('pasid/attach', 'expected-unsupported'), r('migration/precopy/info', 'warning')];
const expectations = (known: Expectations['known']): Expectations => validateExpectations({ schema: 1, known });

t.test('globs', async (t) => {
  t.ok(globMatch('migration/close-reopen/*', CLOSE));
  t.ok(globMatch('*', ''));
  t.ok(globMatch('migration/*/in-*', CLOSE), '* crosses /');
  t.notOk(globMatch('migration/close-reopen', CLOSE), 'anchored');
  t.ok(globMatch('7.2*', '7.2.0-rc3'));
  t.notOk(globMatch('7.2*', '6.12.9'));
  t.ok(globMatch('migration/arc/STOP->RUNNING', 'migration/arc/STOP->RUNNING'), 'exact id');
  t.notOk(globMatch('a.c', 'abc'), '. is literal');
  t.ok(globMatch('a(b)[c]+?', 'a(b)[c]+?'), 'regexp characters are literal');
});

t.test('exit 0: no failures', async (t) => {
  const g = gate(run(clean()));
  t.equal(g.exitCode, 0);
  t.same([g.regressions, g.knownFailures, g.unexpectedPasses, g.harnessProblems], [[], [], [], []]);
  t.match(g.summary, /gate: OK \(exit 0\): 0 regressions, 0 known failures, 0 unexpected passes; 4 results$/);
});

t.test('exit 0: a failure present in the baseline with the same status', async (t) => {
  const baseline = run([...clean(), r(CLOSE, 'fail'), r('migration/stream/bad', 'error')], {}, '7.1.0');
  const g = gate(run([...clean(), r(CLOSE, 'fail'), r('migration/stream/bad', 'error')]), { baseline });
  t.equal(g.exitCode, 0);
  t.same(g.regressions, []);
  t.same(g.knownFailures.map((i) => [i.id, i.status, i.baselineStatus, i.known?.source]), [[CLOSE, 'fail', 'fail', 'baseline'], ['migration/stream/bad', 'error', 'error', 'baseline']]);
  t.match(g.summary, /known failure: migration\/close-reopen\/in-RESUMING \[q35-vtd mtty-2\] fail: failing the same way \(fail\) in the baseline/);
});

t.test('exit 1: a new failure', async (t) => {
  const baseline = run([...clean(), r(CLOSE, 'pass')]);
  const g = gate(run([...clean(), r(CLOSE, 'fail')]), { baseline });
  t.equal(g.exitCode, 1);
  t.same(g.regressions.map((i) => [i.id, i.status, i.baselineStatus, i.reason]), [[CLOSE, 'fail', 'pass', `${CLOSE} broke`]]);
  t.match(g.summary, /regression: migration\/close-reopen\/in-RESUMING \[q35-vtd mtty-2\] fail: .* broke \(baseline: pass\)/);
  t.match(g.summary, /gate: REGRESSION \(exit 1\): 1 regression, 0 known failures/);

  t.equal(gate(run([r(CLOSE, 'error')])).exitCode, 1, 'an error without baseline or expectations');
  const other = gate(run([r(CLOSE, 'error')]), { baseline: run([r(CLOSE, 'fail')]) });
  t.equal(other.exitCode, 1, 'failing another way in the baseline (fail -> error) is a regression');
  t.equal(other.regressions[0]!.baselineStatus, 'fail');
  const moved = gate(run([r(CLOSE, 'fail', { profile: 'virt-smmuv3' })]), { baseline: run([r(CLOSE, 'fail')]) });
  t.equal(moved.exitCode, 1, 'the same failure on another profile is not excused');
  t.equal(moved.regressions[0]!.baselineStatus, null, 'not in the baseline');
  t.match(moved.summary, /\(not in the baseline\)/);
  const newCase = gate(run([r('new/case', 'fail')]), { baseline: run([r(CLOSE, 'pass')]) });
  t.equal(newCase.exitCode, 1, 'a new case that fails');
  t.match(newCase.summary, /note: 1 case of the baseline is not in this run/);
});

t.test('exit 0: a known failure matched by id glob and kernel glob', async (t) => {
  const exp = expectations([
    { id: 'dirty/*', reason: 'unrelated', status: 'error' },
    { id: 'migration/close-reopen/*', kernel: '7.2*', profile: '*', device: 'mtty-*', reason: 'mtty keeps migration state across close (kernel bug)' },
  ]);
  const g = gate(run([...clean(), r(CLOSE, 'fail')]), { expectations: exp });
  t.equal(g.exitCode, 0);
  t.same(g.regressions, []);
  t.same(g.knownFailures.map((i) => [i.id, i.known]), [[CLOSE, { source: 'expectations', index: 1, reason: 'mtty keeps migration state across close (kernel bug)' }]]);
  t.match(g.summary, /known failure: migration\/close-reopen\/in-RESUMING \[q35-vtd mtty-2\] fail: expected \(known\[1\]\): mtty keeps migration state/);
  t.match(g.summary, /gate: OK \(exit 0\): 0 regressions, 1 known failure, 0 unexpected passes; 5 results, 2 expectations$/);

  const both = gate(run([r(CLOSE, 'fail')]), { expectations: exp, baseline: run([r(CLOSE, 'fail')]) });
  t.equal(both.knownFailures[0]!.known?.source, 'expectations', 'the expectation (with its reason) wins over the baseline');
  t.equal(gate(run([r(CLOSE, 'error')]), { expectations: exp }).exitCode, 0, 'no status in the entry: fail or error');
});

t.test('exit 1: a known failure whose kernel glob does not match', async (t) => {
  const exp = expectations([{ id: 'migration/close-reopen/*', kernel: '7.2*', reason: 'kernel bug fixed in 7.3' }]);
  const g = gate(run([r(CLOSE, 'fail')], {}, '6.12.9'), { expectations: exp });
  t.equal(g.exitCode, 1);
  t.same(g.regressions.map((i) => i.id), [CLOSE]);
  t.same(g.knownFailures, []);
  t.equal(gate(run([r(CLOSE, 'fail')], { kernel: undefined }), { expectations: exp }).exitCode, 1, 'no kernel recorded: a kernel pattern matches ""');

  const narrow = (k: Expectations['known'][number]) => gate(run([r(CLOSE, 'fail')]), { expectations: expectations([k]) }).exitCode;
  t.equal(narrow({ id: CLOSE, device: 'mtty-1', reason: 'x' }), 1, 'device glob does not match');
  t.equal(narrow({ id: CLOSE, profile: 'virt-*', reason: 'x' }), 1, 'profile glob does not match');
  t.equal(narrow({ id: CLOSE, status: 'error', reason: 'x' }), 1, 'status does not match');
  t.equal(narrow({ id: CLOSE, status: 'fail', reason: 'x' }), 0, 'status matches');
  t.equal(narrow({ id: 'migration/close-reopen', reason: 'x' }), 1, 'exact id must be the whole id');
});

t.test('a QEMU failure is keyed by the QEMU the profile ran on, never hiding the kernel on another QEMU', async (t) => {
  const exp = expectations([{ id: 'dma/edu/read-only-mapping', qemu: '10.2*', reason: 'QEMU 10.2 reports no fault' }]);
  const ro = r('dma/edu/read-only-mapping', 'fail');
  const qemu = (version: string) => ({ version, binary: '/q', origin: 'built' as const });
  t.equal(gate(run([ro], { qemu: qemu('10.2.2') }), { expectations: exp }).exitCode, 0, "the run's QEMU matches");
  t.equal(gate(run([ro], { qemu: qemu('7.2.22') }), { expectations: exp }).exitCode, 1, 'another QEMU: a regression');
  t.equal(gate(run([ro], { qemu: qemu('7.2.22'), profileQemu: { 'q35-vtd': qemu('10.2.2') } }), { expectations: exp }).exitCode, 0, "the profile's own QEMU counts");
  t.equal(gate(run([ro]), { expectations: exp }).exitCode, 1, 'no QEMU recorded: a qemu pattern matches ""');
  t.throws(() => expectations([{ id: 'x', qemu: 7 as unknown as string, reason: 'r' }]), /known\[0\]\.qemu: expected a string/);
});

t.test('a crash that can end any case is known by what it failed with, and never makes a pass unexpected', async (t) => {
  const abort = 'agent connection lost: channel closed; the machine died or stopped answering during this case (QEMU killed by SIGABRT: '
    + '../src/system/physmem.c:760: iotlb_to_section: Assertion `section_index < d->map.sections_nb\' failed.); a fresh one is used for what follows';
  const exp = expectations([{ id: 'migration/*', qemu: '10.2*', status: 'error', failure: '*QEMU killed by SIGABRT: *iotlb_to_section: Assertion*', reason: 'QEMU TCG race' }]);
  const q = { qemu: { version: '10.2.2', binary: '/q', origin: 'built' as const } };
  t.equal(gate(run([r('migration/arc/STOP->RUNNING', 'error', { reason: abort })], q), { expectations: exp }).exitCode, 0, 'the abort, on whichever case');
  t.equal(gate(run([r('migration/arc/STOP->RUNNING', 'error', { reason: 'did not finish within 60 s' })], q), { expectations: exp }).exitCode, 1, 'another error of the same case');
  const g = gate(run([r('migration/arc/STOP->RUNNING', 'pass')], q), { expectations: exp });
  t.same(g.unexpectedPasses, [], 'a pass has no failure to match');
  t.throws(() => expectations([{ id: 'x', failure: '', reason: 'r' }]), /known\[0\]\.failure: expected a non-empty string/);
});

t.test('unexpected passes are listed, exit code unchanged', async (t) => {
  const exp = expectations([{ id: CLOSE, reason: 'kernel bug' }]);
  const g = gate(run([...clean(), r(CLOSE, 'pass')]), { expectations: exp });
  t.equal(g.exitCode, 0);
  t.same(g.unexpectedPasses.map((i) => [i.id, i.status, i.known]), [[CLOSE, 'pass', { source: 'expectations', index: 0, reason: 'kernel bug' }]]);
  t.match(g.summary, /unexpected pass: migration\/close-reopen\/in-RESUMING \[q35-vtd mtty-2\] pass matches known\[0\] \("kernel bug"\)/);
  t.same(gate(run([r(CLOSE, 'skip')]), { expectations: exp }).unexpectedPasses, [], 'a skip is not a pass');
});

t.test('exit 2: harness errors or an incomplete run', async (t) => {
  const errors = gate(run(clean(), { errors: [{ profile: 'virt-smmuv3', message: 'guest did not boot', log: 'runs/x/console.log' }] }));
  t.equal(errors.exitCode, 2);
  t.same(errors.harnessProblems, ['harness error (profile virt-smmuv3): guest did not boot (see runs/x/console.log)']);
  t.match(errors.summary, /gate: HARNESS ERROR \(exit 2\)/);

  const incomplete = gate(run(clean(), { complete: false }));
  t.equal(incomplete.exitCode, 2);
  t.match(incomplete.harnessProblems[0], /did not complete/);

  const both = gate(run([r(CLOSE, 'fail')], { complete: false }));
  t.equal(both.exitCode, 2, '2 wins over 1');
  t.equal(both.regressions.length, 1, 'regressions are still reported');
});

t.test('expectations file: reading and validation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-gate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const good = { schema: 1, known: [{ id: CLOSE, kernel: '7.2*', profile: '*', device: 'mtty-2', status: 'fail', reason: 'mtty keeps migration state across close (kernel bug)' }, { id: 'pasid/*', reason: 'no PASID' }] };
  t.same(readExpectations(file('good.json', JSON.stringify(good, null, 2))), good);
  t.same(readExpectations(file('empty-list.json', '{"schema":1,"known":[]}')), { schema: 1, known: [] });

  const bad = (name: string, text: string, re: RegExp): void => {
    const p = file(name, text);
    let err: unknown;
    try { readExpectations(p); } catch (e) { err = e; }
    t.ok(err instanceof HarnessError, `${name}: HarnessError`);
    const msg = (err as Error).message;
    t.match(msg, re, name);
    t.ok(msg.startsWith(p), `${name}: names the file`);
    t.notMatch(msg, /\n/, `${name}: one line`);
    t.equal((err as HarnessError).exitCode, 2);
  };
  bad('not-json.json', '{"schema":1,', /not valid JSON/);
  bad('empty.json', '  \n', /expectations file is empty/);
  bad('array.json', '[]', /top level: expected an object/);
  bad('no-schema.json', '{"known":[]}', /schema: missing \(expected "schema": 1\)/);
  bad('schema-2.json', '{"schema":2,"known":[]}', /schema: unsupported version 2/);
  bad('no-known.json', '{"schema":1}', /known: expected an array of known failures, missing/);
  bad('known-object.json', '{"schema":1,"known":{}}', /known: expected an array of known failures, got an object/);
  bad('extra-top.json', '{"schema":1,"known":[],"knwon":[]}', /knwon: unknown key/);
  bad('entry-string.json', '{"schema":1,"known":["x"]}', /known\[0\]: expected an object, got string "x"/);
  bad('no-reason.json', `{"schema":1,"known":[{"id":"${CLOSE}"}]}`, /known\[0\]\.reason: missing \(say why this failure is expected\)/);
  bad('blank-reason.json', '{"schema":1,"known":[{"id":"x","reason":"  "}]}', /known\[0\]\.reason: expected a non-empty string/);
  bad('no-id.json', '{"schema":1,"known":[{"reason":"x"},{}]}', /known\[0\]\.id: missing/);
  bad('id-number.json', '{"schema":1,"known":[{"id":3,"reason":"x"}]}', /known\[0\]\.id: expected a string, got number 3/);
  bad('bad-status.json', '{"schema":1,"known":[{"id":"x","reason":"y","status":"pass"}]}', /known\[0\]\.status: expected "fail" or "error", got string "pass"/);
  bad('typo.json', '{"schema":1,"known":[{"id":"x","reason":"y"},{"id":"x","reason":"y","kernal":"7.2*"}]}', /known\[1\]\.kernal: unknown key/);
  bad('kernel-null.json', '{"schema":1,"known":[{"id":"x","reason":"y","kernel":null}]}', /known\[0\]\.kernel: expected a string, got null/);
  let missing: unknown;
  try { readExpectations(join(dir, 'nope.json')); } catch (e) { missing = e; }
  t.match((missing as Error).message, /nope\.json: expectations file not found/);
});

t.test('blocked: not a regression by itself when the case it names failed; a regression when that case passed', async (t) => {
  const RESET = 'migration/reset/from-STOP';
  const blocked = (id: string, by = RESET) => r(id, 'blocked', { reason: 'after VFIO_DEVICE_RESET the device is in STOP, not RUNNING', blockedBy: by });
  const g = gate(run([...clean(), r(RESET, 'fail'), blocked('migration/arc/STOP->RUNNING_P2P'), blocked('migration/fd/saving-espipe')]));
  t.equal(g.exitCode, 1, 'the reset failure is the one regression');
  t.same(g.regressions.map((i) => i.id), [RESET]);
  t.same(g.blocked.map((i) => [i.id, i.blockedBy]), [['migration/arc/STOP->RUNNING_P2P', RESET], ['migration/fd/saving-espipe', RESET]]);
  t.match(g.summary, /blocked: 2 cases by the failure of migration\/reset\/from-STOP \[q35-vtd mtty-2\]/);

  const excused = gate(run([...clean(), r(RESET, 'fail'), blocked('migration/fd/saving-espipe')]), {
    expectations: expectations([{ id: RESET, reason: 'the driver under test does not reset its migration state' }]),
  });
  t.equal(excused.exitCode, 0, 'a known failure of the named case excuses what it blocks as well');
  t.same(excused.blocked.map((i) => i.id), ['migration/fd/saving-espipe']);

  const chain = gate(run([...clean(), r(RESET, 'fail'), blocked('migration/arc/RUNNING->STOP'), blocked('migration/fd/x', 'migration/arc/RUNNING->STOP')]));
  t.same(chain.regressions.map((i) => i.id), [RESET], 'a case blocked by a blocked case is not a regression either');

  const contradicts = gate(run([...clean(), r(RESET, 'pass'), blocked('migration/fd/saving-espipe')]));
  t.equal(contradicts.exitCode, 1, 'blocked while the named case passed: the run contradicts itself');
  t.match(contradicts.regressions[0]?.reason, /migration\/reset\/from-STOP did not fail in this run/);
  const otherDevice = gate(run([...clean(), r(RESET, 'fail', { device: { ...mtty, id: 'mtty-1' } }), blocked('migration/fd/saving-espipe')]));
  t.equal(otherDevice.exitCode, 1, 'the named case counts only on the same profile and device');
  const absent = gate(run([...clean(), blocked('migration/fd/saving-espipe')]));
  t.equal(absent.exitCode, 1, 'blocked by a case the run does not have');
});
