import t from 'tap';
import { validateCaseResult, validateResults } from '../../base/results/file.js';
import { CaseResultShape, RunInfoShape, SCHEMA_VERSION, type CaseResult, type RunInfo } from '../../base/results/schema.js';
import { arrayOf, num, object, oneOf, optional, problemsOf, recordOf, str, type Infer } from '../../base/results/shape.js';

/** A result with every field of the type set, optional ones included. */
const full = (): CaseResult => ({
  id: 'migration/arc/STOP->RUNNING', suite: 'migration', profile: 'none',
  device: { driver: 'mtty', class: 'sample', id: 'mtty-2', fingerprint: { flags: 3 }, modules: [{ name: 'mtty', srcversion: 'ABC', sha256: 'x' }] },
  status: 'fail', reason: 'EINVAL', observed: { errno: 'EINVAL' }, expected: { errno: 0 }, durationMs: 3,
  faults: [{ kind: 'oops', title: 'BUG', step: 's', lines: ['l'] }], artifacts: { console: 'c.log' }, log: ['x'],
});

const fullRun = (): RunInfo => ({
  tool: { name: 'vfio-conformance', version: '0.1.0' }, startedAt: 'a', endedAt: 'b', complete: true,
  host: { hostname: 'h', arch: 'x64', cpus: 2 }, qemu: { version: '7.2', binary: 'q' }, accel: 'tcg',
  kernel: { release: 'r', sourceId: 's', configHash: 'c', arch: 'x86_64' }, profiles: ['none'], suites: ['migration'],
  target: { kind: 'qemu', address: 'x' }, errors: [{ profile: 'none', message: 'm', log: 'l' }],
});

t.test('every field the result type declares is checked: absent (unless optional) and mistyped', async (t) => {
  t.same(problemsOf(CaseResultShape, full(), 'r'), []);
  const optionalKeys = ['reason', 'observed', 'expected', 'log'];
  for (const k of Object.keys(full())) {
    const without = full() as unknown as Record<string, unknown>;
    delete without[k];
    const p = problemsOf(CaseResultShape, without, 'r');
    if (optionalKeys.includes(k)) t.same(p, [], `${k} may be left out`);
    else t.match(p, [new RegExp(`^r\\.${k}: expected .*, missing$`)], `${k} is required`);
    const wrong = { ...full(), [k]: k === 'durationMs' ? 'slow' : 12345 };
    t.match(problemsOf(CaseResultShape, wrong, 'r'), [new RegExp(`^r\\.${k}: expected .*, got (number 12345|string "slow")$`)], `${k} mistyped`);
  }
});

t.test('every field the run type declares is checked; extra fields are kept', async (t) => {
  t.same(problemsOf(RunInfoShape, { ...fullRun(), labHost: { facts: {} } }, 'run'), [], 'an extra field is allowed');
  const optionalKeys = ['endedAt', 'qemu', 'accel', 'kernel'];
  for (const k of Object.keys(fullRun())) {
    const without = fullRun() as Record<string, unknown>;
    delete without[k];
    const p = problemsOf(RunInfoShape, without, 'run');
    if (optionalKeys.includes(k)) t.same(p, [], `${k} may be left out`);
    else t.match(p, [new RegExp(`^run\\.${k}: expected .*, missing$`)], `${k} is required`);
    t.equal(problemsOf(RunInfoShape, { ...fullRun(), [k]: 12345 }, 'run').length, 1, `${k} mistyped`);
  }
  const doc = validateResults({ schema: SCHEMA_VERSION, run: { ...fullRun(), labHost: { facts: { a: 'b' } } }, results: [full()] });
  t.same(doc.run.labHost, { facts: { a: 'b' } }, 'kept as read');
});

t.test('nested paths, odd keys and every problem at once', async (t) => {
  const bad = { ...full(), device: { driver: 1, class: 'virtual', id: 'x', modules: [{ name: 'm' }] }, artifacts: { 'qemu cmdline': 3 }, faults: [null] };
  t.same(problemsOf(CaseResultShape, bad, 'results[7]'), [
    'results[7].device.driver: expected a string, got number 1',
    'results[7].device.class: expected one of real|variant|sample|emulated|none, got string "virtual"',
    'results[7].device.modules[0].sha256: expected a string, missing',
    'results[7].faults[0]: expected an object, got null',
    'results[7].artifacts["qemu cmdline"]: expected a string (a path), got number 3',
  ]);
  t.throws(() => validateCaseResult([], 'case'), /case: expected an object, got an array/);
});

t.test('shape building blocks: the type and the check come from one declaration', async (t) => {
  const Point = object({ x: num({ min: 0 }), tag: optional(oneOf(['a', 'b'])), names: arrayOf(str({ nonEmpty: true })), meta: optional(recordOf(num())) });
  type Point = Infer<typeof Point>;
  const p: Point = { x: 1, names: ['n'] };
  t.same(problemsOf(Point, p, 'p'), []);
  t.same(problemsOf(Point, { x: -1, tag: 'c', names: ['', 2], meta: { k: 'v' } }, 'p'), [
    'p.x: expected a number >= 0, got -1',
    'p.tag: expected one of a|b, got string "c"',
    'p.names[0]: expected a non-empty string, got ""',
    'p.names[1]: expected a string, got number 2',
    'p.meta.k: expected a number, got string "v"',
  ]);
  t.same(problemsOf(Point, { x: Infinity, names: 'n' }, 'p'), ['p.x: expected a number, got number Infinity', 'p.names: expected an array of strings, got string "n"']);
  t.same(problemsOf(Point, { x: 0, names: [], tag: undefined }, 'p'), [], 'an optional field set to undefined is absent');
});
