import t from 'tap';
import { execa } from 'execa';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HarnessError } from '../../base/errors.js';
import {
  ResultsValidationError,
  ResultsWriter,
  junitOutcome,
  jsonErrorPosition,
  parseResults,
  readResults,
  validateCaseResult,
  validateResults,
} from '../../base/results/file.js';
import { SCHEMA_VERSION, type CaseResult, type RunInfo, type RunResults } from '../../base/results/schema.js';
import { runInfo as baseRunInfo } from '../helpers/results.js';

function runInfo(over: Partial<RunInfo> = {}): RunInfo {
  // A run still going: no endedAt key at all (undefined would be a key that JSON drops).
  const { endedAt: _ended, ...running } = baseRunInfo({ complete: false, kernel: { release: '6.12.9', sourceId: 'debian:linux-source-6.12', configHash: 'abc123', arch: 'x86_64' }, profiles: ['q35-vtd'], suites: ['migration'] });
  void _ended;
  return { ...running, ...over };
}

function result(i: number, over: Partial<CaseResult> = {}): CaseResult {
  return {
    id: `migration/arc/${i}`,
    suite: 'migration',
    profile: 'q35-vtd',
    device: { driver: 'mtty', class: 'sample', id: 'mtty-2', fingerprint: { flags: ['STOP_COPY', 'P2P'] } },
    status: 'pass',
    observed: { errno: 0 },
    durationMs: 12 + i,
    faults: [],
    artifacts: {},
    log: [`step ${i}`],
    ...over,
  };
}

function validDoc(n = 5): RunResults {
  return { schema: SCHEMA_VERSION, run: runInfo(), results: Array.from({ length: n }, (_, i) => result(i)) };
}

type Asserts = Pick<typeof t, 'ok' | 'fail' | 'match' | 'notMatch'>;

function expectError(t: Asserts, fn: () => unknown, re: RegExp, what: string): void {
  try {
    fn();
    t.fail(`${what}: expected an error`);
  } catch (err) {
    t.ok(err instanceof HarnessError, `${what}: is a HarnessError`);
    const msg = (err as Error).message;
    t.match(msg, re, what);
    t.notMatch(msg, /\n/, `${what}: one line`);
  }
}

const resultsModule = new URL('../../base/results/file.js', import.meta.url).href;

t.test('writer: valid file after construction and after every add', async (t) => {
  const dir = join(t.testdir(), 'run');
  const w = new ResultsWriter(dir, runInfo());
  let doc = readResults(join(dir, 'results.json'));
  t.equal(doc.schema, SCHEMA_VERSION);
  t.equal(doc.results.length, 0);
  t.equal(doc.run.complete, false);
  for (let i = 0; i < 6; i++) {
    w.add(result(i, i === 3 ? { status: 'skip', reason: 'no P2P on mtty', observed: undefined } : {}));
    doc = readResults(w.path);
    t.equal(doc.results.length, i + 1, `after add ${i + 1}`);
    t.equal(doc.run.complete, false);
  }
  t.same(doc.results[2], result(2), 'results round-trip');
  t.equal(doc.results[3]?.status, 'skip');
  t.notOk('observed' in (doc.results[3] ?? {}), 'undefined fields are dropped');
  t.equal(w.count, 6);
  t.same(readdirSync(dir), ['results.json'], 'no temporary files left behind');
  // The file is pretty-printed JSON, one field a line
  t.match(readFileSync(w.path, 'utf8'), /^\{\n  "schema": 1,\n  "run": \{\n    "tool"/);
});

t.test('writer: records a copy; updateRun and finish', async (t) => {
  const dir = t.testdir();
  const w = new ResultsWriter(dir, runInfo());
  const r = result(1);
  w.add(r);
  r.status = 'fail';
  (r.observed as Record<string, unknown>).errno = 'EINVAL';
  t.equal(readResults(w.path).results[0]?.status, 'pass', 'later mutation by the caller is not recorded');

  w.updateRun({ accel: 'kvm', errors: [{ profile: 'q35-vtd', message: 'guest did not boot', log: 'console.log' }] });
  let doc = readResults(w.path);
  t.equal(doc.run.accel, 'kvm');
  t.equal(doc.run.errors.length, 1);
  t.equal(doc.run.tool.name, 'vfio-conformance', 'other run fields kept');

  expectError(t, () => w.updateRun({ accel: 'hvf' as 'kvm' }), /run\.accel: expected one of kvm\|tcg/, 'invalid run patch refused');
  t.equal(readResults(w.path).run.accel, 'kvm', 'file unchanged by a refused patch');

  w.finish({ endedAt: '2025-01-02T04:00:00.000Z' });
  doc = readResults(w.path);
  t.equal(doc.run.complete, true);
  t.equal(doc.run.endedAt, '2025-01-02T04:00:00.000Z');
  t.equal(doc.results.length, 1);
  expectError(t, () => w.add(result(2)), /already finished/, 'add after finish');
  expectError(t, () => w.finish(), /already finished/, 'finish twice');
});

t.test('writer: finish defaults endedAt to now', async (t) => {
  const w = new ResultsWriter(t.testdir(), runInfo());
  const before = Date.now();
  w.finish();
  const doc = readResults(w.path);
  t.equal(doc.run.complete, true);
  t.ok(Date.parse(doc.run.endedAt ?? '') >= before - 1000);
});

t.test('writer: refuses an invalid result and leaves the file as it was', async (t) => {
  const w = new ResultsWriter(t.testdir(), runInfo());
  w.add(result(0));
  expectError(t, () => w.add({ ...result(1), status: 'passed' as 'pass' }), /results\[1\]\.status: expected one of pass\|fail\|error\|skip\|expected-unsupported\|warning\|blocked, got string "passed"/, 'bad status');
  expectError(t, () => w.add({ ...result(1), durationMs: -1 }), /durationMs: expected a number >= 0/, 'negative duration');
  t.equal(readResults(w.path).results.length, 1);
  w.add(result(1));
  t.equal(readResults(w.path).results[1]?.id, 'migration/arc/1', 'index of a later valid add is right');
  expectError(t, () => new ResultsWriter(t.testdir(), { ...runInfo(), complete: 'no' as unknown as boolean }), /run\.complete: expected true or false/, 'bad run info');
});

async function childAddsThen(dir: string, n: number, end: string) {
  const code = `
    import { ResultsWriter } from ${JSON.stringify(resultsModule)};
    const w = new ResultsWriter(${JSON.stringify(dir)}, ${JSON.stringify(runInfo())});
    const r = ${JSON.stringify(result(0))};
    for (let i = 0; i < ${n}; i++) w.add({ ...r, id: 'migration/arc/' + i });
    ${end}
    w.add({ ...r, id: 'never' });
  `;
  return execa(process.execPath, ['--input-type=module', '-e', code], { reject: false });
}

t.test('kill: SIGKILL after N adds leaves a valid file with N results, complete:false', async (t) => {
  const dir = t.testdir();
  const res = await childAddsThen(dir, 7, `process.kill(process.pid, 'SIGKILL');`);
  t.equal(res.signal, 'SIGKILL', res.stderr);
  const doc = readResults(join(dir, 'results.json'));
  t.equal(doc.results.length, 7);
  t.equal(doc.run.complete, false);
  t.same(doc.results.map((r) => r.id), Array.from({ length: 7 }, (_, i) => `migration/arc/${i}`));
});

t.test('kill: process.exit after N adds leaves a valid file with N results', async (t) => {
  const dir = t.testdir();
  const res = await childAddsThen(dir, 4, `process.exit(3);`);
  t.equal(res.exitCode, 3, res.stderr);
  const doc = readResults(join(dir, 'results.json'));
  t.equal(doc.results.length, 4);
  t.equal(doc.run.complete, false);
});

t.test('kill: SIGKILL at an arbitrary moment, mid-write, never leaves a broken file', async (t) => {
  const dir = t.testdir();
  // Big results so each rewrite takes a while and the kill lands inside writes.
  const code = `
    import { ResultsWriter } from ${JSON.stringify(resultsModule)};
    const w = new ResultsWriter(${JSON.stringify(dir)}, ${JSON.stringify(runInfo())});
    const r = ${JSON.stringify(result(0))};
    const log = Array.from({ length: 400 }, (_, i) => 'agent <- {"op":"set_state","i":' + i + '} '.padEnd(100, 'x'));
    for (let i = 0; i < 400; i++) { w.add({ ...r, id: 'migration/arc/' + i, log }); process.stdout.write(i + 1 + '\\n'); }
  `;
  const sub = execa(process.execPath, ['--input-type=module', '-e', code], { reject: false });
  let done = 0;
  await new Promise<void>((resolve) => {
    sub.stdout.on('data', (d: Buffer) => {
      const last = d.toString().trim().split('\n').pop();
      done = Number(last);
      if (done >= 8) {
        sub.kill('SIGKILL');
        resolve();
      }
    });
    void sub.then(() => resolve());
  });
  const res = await sub;
  t.equal(res.signal, 'SIGKILL', `killed after ${done} acknowledged adds`);
  const doc = readResults(join(dir, 'results.json'));
  t.equal(doc.run.complete, false);
  t.ok(doc.results.length >= done && doc.results.length <= done + 2, `file holds ${doc.results.length} results, ${done} acknowledged`);
  doc.results.forEach((r, i) => t.equal(r.id, `migration/arc/${i}`));
  t.end();
});

t.test('read: missing file, directory, empty, malformed, truncated', async (t) => {
  const dir = t.testdir();
  expectError(t, () => readResults(join(dir, 'nope.json')), /nope\.json: results file not found/, 'missing file');
  mkdirSync(join(dir, 'sub'));
  expectError(t, () => readResults(join(dir, 'sub')), /is a directory/, 'directory');

  const empty = join(dir, 'empty.json');
  writeFileSync(empty, '');
  expectError(t, () => readResults(empty), /empty\.json: file is empty \(truncated or not JSON\)/, 'empty file');

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{\n  "schema": 1,\n  "run": ,\n}');
  expectError(t, () => readResults(bad), /bad\.json: truncated or not JSON \(at position \d+, line 3 column \d+/, 'malformed JSON');

  const text = JSON.stringify(validDoc(10), null, 2);
  const cut = join(dir, 'cut.json');
  writeFileSync(cut, text.slice(0, Math.floor(text.length / 2)));
  expectError(t, () => readResults(cut), /cut\.json: truncated or not JSON \(at end of file, position \d+, line \d+ column \d+/, 'truncated file');

  const html = join(dir, 'index.html');
  writeFileSync(html, '<!doctype html><title>report</title>');
  expectError(t, () => readResults(html), /truncated or not JSON/, 'not JSON at all');
});

t.test('read: schema versions', async (t) => {
  const dir = t.testdir();
  const write = (name: string, doc: unknown): string => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify(doc));
    return p;
  };
  expectError(t, () => readResults(write('v0.json', { ...validDoc(), schema: 0 })), /results schema version 0 found, this tool reads version 1 \(written by an older/, 'schema 0');
  expectError(t, () => readResults(write('v99.json', { ...validDoc(), schema: 99 })), /results schema version 99 found, this tool reads version 1 \(written by a newer .*upgrade/, 'schema 99');
  const { schema: _s, ...noSchema } = validDoc();
  expectError(t, () => readResults(write('none.json', noSchema)), /no "schema" field: not a vfio-conformance results file/, 'no schema');
  expectError(t, () => readResults(write('str.json', { ...validDoc(), schema: '1' })), /schema: expected an integer version, got string "1"/, 'schema as string');
  expectError(t, () => readResults(write('arr.json', [1, 2])), /expected a JSON object .* got an array/, 'array at top level');
  // A schema-99 file with a broken body still reports the version, not the body.
  expectError(t, () => readResults(write('v99b.json', { schema: 99, run: 1 })), /version 99 found/, 'version checked first');
});

t.test('read: missing and mistyped fields name their JSON path', async (t) => {
  const cases: [string, (d: RunResults) => void, RegExp][] = [
    ['results[3].status missing', (d) => { delete (d.results[3] as Partial<CaseResult>).status; }, /^results: results\[3\]\.status: expected one of pass\|fail\|error\|skip\|expected-unsupported\|warning\|blocked, missing$/],
    ['bad status', (d) => { (d.results[1] as { status: string }).status = 'ok'; }, /results\[1\]\.status: expected one of pass\|fail\|.*, got string "ok"/],
    ['device missing', (d) => { delete (d.results[0] as Partial<CaseResult>).device; }, /results\[0\]\.device: expected an object, missing/],
    ['device class', (d) => { (d.results[2]!.device as { class: string }).class = 'virtual'; }, /results\[2\]\.device\.class: expected one of real\|variant\|sample\|emulated\|none/],
    ['fault line', (d) => { d.results[4]!.faults = [{ kind: 'oops', title: 'BUG', lines: ['a', 7 as unknown as string] }]; }, /results\[4\]\.faults\[0\]\.lines\[1\]: expected a string, got number 7/],
    ['artifact', (d) => { d.results[0]!.artifacts = { 'qemu cmdline': 3 as unknown as string }; }, /results\[0\]\.artifacts\["qemu cmdline"\]: expected a string/],
    ['durationMs', (d) => { (d.results[0] as { durationMs: unknown }).durationMs = '12'; }, /results\[0\]\.durationMs: expected a number, got string "12"/],
    ['empty id', (d) => { d.results[0]!.id = ''; }, /results\[0\]\.id: expected a non-empty string/],
    ['run.host.cpus', (d) => { (d.run.host as { cpus: unknown }).cpus = 'two'; }, /run\.host\.cpus: expected a number, got string "two"/],
    ['run.complete', (d) => { delete (d.run as Partial<RunInfo>).complete; }, /run\.complete: expected true or false, missing/],
    ['run.target.kind', (d) => { (d.run.target as { kind: string }).kind = 'local'; }, /run\.target\.kind: expected one of qemu\|ssh/],
    ['run.errors[0].message', (d) => { d.run.errors = [{ profile: 'x' } as unknown as { message: string }]; }, /run\.errors\[0\]\.message: expected a string, missing/],
    ['results not an array', (d) => { (d as { results: unknown }).results = {}; }, /results: expected an array, got an object/],
    ['run missing', (d) => { delete (d as Partial<RunResults>).run; }, /run: expected an object, missing/],
  ];
  for (const [what, mutate, re] of cases) {
    const d = validDoc();
    mutate(d);
    expectError(t, () => validateResults(JSON.parse(JSON.stringify(d))), re, what);
  }
});

t.test('read: several problems are all kept, the first is in the message', async (t) => {
  const d = validDoc() as unknown as { results: Record<string, unknown>[] };
  d.results[0]!.status = 'x';
  d.results[1]!.suite = 1;
  d.results[2]!.faults = null;
  try {
    validateResults(d, 'runs/A/results.json');
    t.fail('expected an error');
  } catch (err) {
    t.ok(err instanceof ResultsValidationError);
    const e = err as ResultsValidationError;
    t.match(e.message, /^runs\/A\/results\.json: results\[0\]\.status: .* \(and 2 more problems\)$/);
    t.equal(e.problems.length, 3);
    t.match(e.problems[2], /results\[2\]\.faults: expected an array, got null/);
  }
});

t.test('read: valid documents, extra fields kept, BOM tolerated', async (t) => {
  const dir = t.testdir();
  const d = validDoc(3) as RunResults & { note?: string };
  d.run.ci = { job: 42 };
  d.results[0]!.expected = { errno: 'EINVAL' };
  const p = join(dir, 'results.json');
  writeFileSync(p, '\uFEFF' + JSON.stringify(d));
  const back = readResults(p);
  t.same(back, d);
  t.same(back.run.ci, { job: 42 });
  t.same(parseResults(JSON.stringify(d)), d);
  t.same(validateCaseResult(result(1)), result(1));
  expectError(t, () => validateCaseResult({ ...result(1), faults: 'none' }, 'case'), /case\.faults: expected an array/, 'validateCaseResult');
});

t.test('jsonErrorPosition finds where JSON stops being JSON', async (t) => {
  const cases: [string, number][] = [
    ['{"a": 1,}', 8],
    ['{"a": ', 6],
    ['[1, 2', 5],
    ['{"a": tru}', 9],
    ['{"a": "x\\q"}', 9],
    ['{"a": 01}', 7],
    ['{"a": 1} x', 9],
    ['"abc', 4],
    ['', 0],
    ['{"a": [1, {"b": null}], "c": "\\u00e9"}', 38],
  ];
  for (const [text, at] of cases) t.equal(jsonErrorPosition(text), at, JSON.stringify(text));
});

t.test('status mapping for JUnit', async (t) => {
  t.same(junitOutcome('pass'), { element: 'passed' });
  t.same(junitOutcome('fail'), { element: 'failure', type: 'fail' });
  t.same(junitOutcome('error'), { element: 'error', type: 'error' });
  t.same(junitOutcome('skip', 'why'), { element: 'skipped' });
  const eu = junitOutcome('expected-unsupported', 'no PASID on 6.12');
  t.equal(eu.element, 'passed', 'expected-unsupported is asserted, so it passes');
  t.match(eu, { note: /expected-unsupported.*no PASID on 6\.12/ });
  const w = junitOutcome('warning', 'slow arc');
  t.equal(w.element, 'passed');
  t.match(w, { note: /warning: slow arc/ });
  t.same(junitOutcome('blocked', 'reset left STOP'), { element: 'skipped' }, 'blocked is never passed in JUnit');
});
