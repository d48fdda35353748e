import t from 'tap';
import { execa } from 'execa';
import xml2js from 'xml2js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoPath } from '../../base/paths.js';
import { MAX_TEXT_BYTES, sanitizeXmlText, toJUnit, truncateMiddle, writeJUnit } from '../../reports/junit.js';
import { validateResults } from '../../base/results/file.js';
import { SCHEMA_VERSION, type CaseResult, type RunInfo, type RunResults } from '../../base/results/schema.js';
import { runInfo as baseRunInfo } from '../helpers/results.js';

const XSD = repoPath('test', 'fixtures', 'junit', 'jenkins-junit.xsd');
/** the strict Ant-style schema Jenkins' xunit plugin enforces (origin and licence in the file) */
const STRICT_XSD = repoPath('test', 'fixtures', 'junit', 'xunit-junit-strict.xsd');

function runInfo(over: Partial<RunInfo> = {}): RunInfo {
  return baseRunInfo({ ...over });
}

const mtty = { driver: 'mtty', class: 'sample' as const, id: 'mtty-2', fingerprint: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dataSize: 4096 } };

function result(id: string, over: Partial<CaseResult> = {}): CaseResult {
  return {
    id,
    suite: 'migration',
    profile: 'q35-vtd',
    device: mtty,
    status: 'pass',
    observed: { errno: 0 },
    durationMs: 1234,
    faults: [],
    artifacts: {},
    log: [`-> {"op":"set_state","arc":"${id}"}`, '<- {"ok":true}'],
    ...over,
  };
}

function doc(results: CaseResult[], run: Partial<RunInfo> = {}): RunResults {
  return validateResults({ schema: SCHEMA_VERSION, run: runInfo(run), results });
}

/** A run with every status, two suites, two profiles. */
function mixedRun(): RunResults {
  return doc([
    result('migration/arc/STOP->STOP_COPY'),
    result('migration/arc/STOP_COPY->STOP', {
      status: 'fail',
      reason: 'SET_STATE returned EINVAL, contract says success',
      observed: { errno: 'EINVAL', state: 'STOP_COPY' },
      expected: { errno: 0, state: 'STOP' },
      faults: [{ kind: 'warning', title: 'WARNING: CPU: 0 PID: 77 at drivers/vfio/vfio_main.c', step: 'migration/arc/STOP_COPY->STOP', lines: ['Call Trace:', ' vfio_ioctl_device_feature+0x1a/0x2b'] }],
      artifacts: { reproducer: 'repro/arc-STOP_COPY-STOP.sh' },
    }),
    result('migration/arc/RUNNING->RUNNING_P2P', { status: 'skip', reason: 'device has no P2P flag', observed: undefined }),
    result('migration/stream/bad-header', { status: 'error', reason: 'agent died (EOF on stdout)' }),
    result('migration/precopy/slow', { status: 'warning', reason: 'precopy took 3.2s for 4 KiB' }),
    result('migration/arc/STOP->STOP_COPY', { profile: 'virt-smmuv3' }),
    result('pasid/attach', { suite: 'pasid', status: 'expected-unsupported', reason: 'no PASID support on 6.12 mtty', device: { driver: 'none', class: 'none', id: 'iommufd-mock' } }),
  ]);
}

interface Parsed {
  testsuites: {
    $: Record<string, string>;
    testsuite?: {
      $: Record<string, string>;
      properties?: { property: { $: { name: string; value: string } }[] }[];
      testcase?: {
        $: Record<string, string>;
        properties?: { property: { $: { name: string; value: string } }[] }[];
        skipped?: { $?: Record<string, string> }[];
        failure?: { $: Record<string, string>; _?: string }[];
        error?: { $: Record<string, string>; _?: string }[];
        'system-out'?: string[];
      }[];
    }[];
  };
}

async function parse(xml: string): Promise<Parsed> {
  return (await xml2js.parseStringPromise(xml)) as Parsed;
}

function cases(p: Parsed) {
  return (p.testsuites.testsuite ?? []).flatMap((s) => s.testcase ?? []);
}

function prop(list: { property: { $: { name: string; value: string } }[] }[] | undefined, name: string): string | undefined {
  return list?.[0]?.property.find((x) => x.$.name === name)?.$.value;
}

/** `xmllint --noout --schema jenkins-junit.xsd -`, the document on stdin; both schemas unless told. */
async function xmllint(xml: string, schemas: string[] = [XSD, STRICT_XSD]) {
  for (const schema of schemas) {
    const r = await execa('xmllint', ['--noout', '--schema', schema, '-'], { input: xml, reject: false });
    if (r.exitCode !== 0 || schemas.length === 1) return { exitCode: r.exitCode, stderr: `${schema}: ${r.stderr}` };
  }
  return { exitCode: 0, stderr: 'validates under both schemas' };
}

t.test('validates against the Jenkins JUnit schema (xmllint)', async (t) => {
  const res = await xmllint(toJUnit(mixedRun()));
  t.equal(res.exitCode, 0, res.stderr);
  t.match(res.stderr, /validates/);
});

t.test('the default output validates under the strict xunit schema; testcase properties only on request', async (t) => {
  const plain = toJUnit(mixedRun());
  t.equal((await xmllint(plain, [STRICT_XSD])).exitCode, 0, 'strict schema');
  t.notMatch(plain, /<testcase [^>]*>\s*<properties>/, 'no testcase properties by default');
  t.notMatch(/<testsuites [^>]*>/.exec(plain)![0], /skipped=|timestamp=/, 'testsuites carries only what the strict schema allows');
  const withProps = toJUnit(mixedRun(), { testcaseProperties: true });
  t.match(withProps, /<testcase [^>]*>\s*<properties>/, 'testcase properties with the option');
  t.equal((await xmllint(withProps, [XSD])).exitCode, 0, 'still valid for the Jenkins JUnit plugin');
  const strict = await xmllint(withProps, [STRICT_XSD]);
  t.not(strict.exitCode, 0, 'the strict schema refuses testcase properties');
  t.match(strict.stderr, /Element 'properties': This element is not expected/);
});

t.test('the strict schema is not a rubber stamp either', async (t) => {
  const bad: [string, string][] = [
    ['testcase properties', '<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="a"><properties/></testcase></testsuite></testsuites>'],
    ['timestamp on testsuites', '<testsuites timestamp="2025-01-01T00:00:00"><testsuite name="s" tests="0" failures="0" errors="0"/></testsuites>'],
    ['testsuite without counts', '<testsuites><testsuite name="s"/></testsuites>'],
    ['unknown testcase attribute', '<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="a" status="ok"/></testsuite></testsuites>'],
    ['time not a number', '<testsuites><testsuite name="s" tests="0" failures="0" errors="0" time="1s"/></testsuites>'],
  ];
  for (const [what, xml] of bad) t.not((await xmllint(`<?xml version="1.0"?>\n${xml}\n`, [STRICT_XSD])).exitCode, 0, what);
  const good = '<testsuites name="n" tests="1"><testsuite name="s" tests="1" failures="0" errors="0" skipped="1"><testcase name="a"><skipped/></testcase></testsuite></testsuites>';
  t.equal((await xmllint(`<?xml version="1.0"?>\n${good}\n`, [STRICT_XSD])).exitCode, 0, 'a minimal good file passes');
});

t.test('the schema is not a rubber stamp: broken JUnit is refused', async (t) => {
  const bad: [string, string][] = [
    ['testcase without name', '<testsuites><testsuite name="s"><testcase classname="c"/></testsuite></testsuites>'],
    ['two outcomes', '<testsuites><testsuite name="s"><testcase name="a"><failure/><error/></testcase></testsuite></testsuites>'],
    ['negative count', '<testsuites><testsuite name="s" tests="-1"/></testsuites>'],
    ['bad timestamp', '<testsuites><testsuite name="s" timestamp="yesterday"/></testsuites>'],
    ['unknown element', '<testsuites><testsuite name="s"><testcase name="a"><flaky/></testcase></testsuite></testsuites>'],
  ];
  for (const [what, xml] of bad) {
    const res = await xmllint(`<?xml version="1.0"?>\n${xml}\n`, [XSD]);
    t.not(res.exitCode, 0, what);
  }
});

t.test('structure, names, classnames, counts', async (t) => {
  const p = await parse(toJUnit(mixedRun()));
  const suites = p.testsuites.testsuite ?? [];
  t.same(suites.map((s) => s.$.name), ['migration/q35-vtd/mtty-2', 'migration/virt-smmuv3/mtty-2', 'pasid/q35-vtd/iommufd-mock']);
  t.same(p.testsuites.$, { name: 'vfio-conformance', tests: '7', failures: '1', errors: '1', time: '8.638' });
  for (const s of suites) {
    const tcs = s.testcase ?? [];
    t.equal(s.$.tests, String(tcs.length), `${s.$.name} tests`);
    t.equal(s.$.failures, String(tcs.filter((c) => c.failure).length), `${s.$.name} failures`);
    t.equal(s.$.errors, String(tcs.filter((c) => c.error).length), `${s.$.name} errors`);
    t.equal(s.$.skipped, String(tcs.filter((c) => c.skipped).length), `${s.$.name} skipped`);
    t.equal(s.$.hostname, 'ci-1');
    t.equal(s.$.timestamp, '2025-01-02T03:04:05');
    const sum = tcs.reduce((a, c) => a + Math.round(Number(c.$.time) * 1000), 0);
    t.equal(Math.round(Number(s.$.time) * 1000), sum, `${s.$.name} time is the sum`);
  }
  const first = suites[0]!;
  t.same(first.$, { name: 'migration/q35-vtd/mtty-2', tests: '5', failures: '1', errors: '1', skipped: '1', time: '6.170', timestamp: '2025-01-02T03:04:05', hostname: 'ci-1', id: '0', package: 'vfio-conformance.migration' });
  const tc = first.testcase![0]!;
  t.same(tc.$, { name: 'migration/arc/STOP->STOP_COPY', classname: 'vfio-conformance.migration.q35-vtd', time: '1.234' });
  t.equal(suites[2]!.testcase![0]!.$.classname, 'vfio-conformance.pasid.q35-vtd');
  t.equal(suites.some((s) => (s.$.name ?? '').startsWith('harness')), false, 'no harness suite for a complete run without errors');
});

t.test('environment properties', async (t) => {
  const p = await parse(toJUnit(mixedRun()));
  const s = p.testsuites.testsuite![0]!;
  const expected: Record<string, string> = {
    'kernel.release': '6.12.9',
    'kernel.sourceId': 'debian:linux-source-6.12',
    'kernel.configHash': 'c0ffee',
    'qemu.version': '9.2.0',
    accel: 'tcg',
    profile: 'q35-vtd',
    suite: 'migration',
    'device.driver': 'mtty',
    'device.class': 'sample',
    'device.id': 'mtty-2',
    'host.hostname': 'ci-1',
    'run.complete': 'true',
  };
  for (const [k, v] of Object.entries(expected)) t.equal(prop(s.properties, k), v, k);
  t.same(JSON.parse(prop(s.properties, 'device.fingerprint') ?? 'null'), mtty.fingerprint, 'fingerprint as JSON');
  t.equal(prop(p.testsuites.testsuite![2]!.properties, 'device.driver'), 'none');
  t.equal(prop(s.properties, 'profile.emulatedBy'), undefined, 'a profile on the run\'s QEMU names no patch');
});

t.test('a profile on our QEMU names that QEMU and the patches behind its hardware', async (t) => {
  const built = { origin: 'built' as const, version: '10.2.2', binary: '/c/qemu/b/qemu-system-x86_64', series: { hash: 'abc', patches: ['0001-a.patch', '0002-b.patch'] } };
  const p = await parse(toJUnit(doc([result('iommu-dirty/clear', { suite: 'iommu-dirty', profile: 'vtd-dirty' }), result('migration/arc/STOP->STOP_COPY')],
    { profileQemu: { 'vtd-dirty': built }, profileEmulation: { 'vtd-dirty': ['0001-a.patch'] } })));
  const [dirty, plain] = p.testsuites.testsuite!;
  t.equal(prop(dirty!.properties, 'profile.emulatedBy'), '0001-a.patch');
  t.equal(prop(dirty!.properties, 'profile.qemu.version'), '10.2.2');
  t.equal(prop(plain!.properties, 'profile.qemu.version'), undefined);
  t.equal(prop(plain!.properties, 'qemu.version'), '9.2.0', 'the run\'s QEMU stays for every suite');
});

t.test('outcomes: failure, error, skipped, expected-unsupported, warning', async (t) => {
  const p = await parse(toJUnit(mixedRun(), { testcaseProperties: true }));
  const all = cases(p);
  const by = (name: string, profile = 'q35-vtd') => all.find((c) => c.$.name === name && (c.$.classname ?? '').endsWith(profile))!;

  const pass = by('migration/arc/STOP->STOP_COPY');
  t.notOk(pass.failure || pass.error || pass.skipped, 'pass has no outcome element');
  t.match(pass['system-out']?.[0], /--- step log ---\n-> \{"op":"set_state"/);

  const fail = by('migration/arc/STOP_COPY->STOP');
  t.equal(fail.failure?.[0]?.$.message, 'SET_STATE returned EINVAL, contract says success');
  t.equal(fail.failure?.[0]?.$.type, 'fail');
  const body = fail.failure?.[0]?._ ?? '';
  t.match(body, /SET_STATE returned EINVAL/);
  t.match(body, /expected:\n\{\n  "errno": 0,\n  "state": "STOP"\n\}/, 'expected values in the body');
  t.match(body, /observed:\n\{\n  "errno": "EINVAL",\n  "state": "STOP_COPY"\n\}/, 'observed values in the body');
  const out = fail['system-out']?.[0] ?? '';
  t.match(out, /--- step log ---[\s\S]*--- console: warning: WARNING: CPU: 0 PID: 77 at drivers\/vfio\/vfio_main.c \(during step migration\/arc\/STOP_COPY->STOP\) ---\nCall Trace:\n vfio_ioctl_device_feature/, 'console fault after the step log');
  t.match(out, /--- artifacts ---\nreproducer: repro\/arc-STOP_COPY-STOP.sh/);

  const err = by('migration/stream/bad-header');
  t.equal(err.error?.[0]?.$.message, 'agent died (EOF on stdout)');
  t.notOk(err.failure);

  const skip = by('migration/arc/RUNNING->RUNNING_P2P');
  t.equal(skip.skipped?.[0]?.$?.message, 'device has no P2P flag', 'skipped carries the reason');

  const eu = by('pasid/attach');
  t.notOk(eu.failure || eu.error || eu.skipped, 'expected-unsupported is a passed testcase, not skipped');
  t.equal(prop(eu.properties, 'vfio-conformance.status'), 'expected-unsupported');
  t.match(eu['system-out']?.[0], /^\[vfio-conformance\] expected-unsupported: .*no PASID support on 6\.12 mtty/);

  const warn = by('migration/precopy/slow');
  t.notOk(warn.failure || warn.error || warn.skipped, 'warning is a passed testcase');
  t.equal(prop(warn.properties, 'vfio-conformance.status'), 'warning');
  t.equal(prop(warn.properties, 'vfio-conformance.reason'), 'precopy took 3.2s for 4 KiB');
  t.match(warn['system-out']?.[0], /^\[vfio-conformance\] warning: precopy took 3\.2s for 4 KiB/);
});

t.test('blocked: skipped (never passed), naming the case that carries the failure', async (t) => {
  const xml = toJUnit(doc([
    result('migration/reset/from-STOP', { status: 'fail', reason: 'state after reset: got STOP, expected RUNNING' }),
    result('migration/fd/saving-espipe', { status: 'blocked', reason: 'precondition not met: after VFIO_DEVICE_RESET mtty-2 is in STOP', blockedBy: 'migration/reset/from-STOP' }),
  ]));
  t.equal((await xmllint(xml)).exitCode, 0, 'valid JUnit');
  const p = await parse(xml);
  const blocked = cases(p).find((c) => c.$.name === 'migration/fd/saving-espipe')!;
  t.notOk(blocked.failure || blocked.error, 'counted once, on the reset case');
  t.match(blocked.skipped?.[0]?.$?.message, /^blocked by migration\/reset\/from-STOP: precondition not met/);
  t.match(p.testsuites.$, { failures: '1' });
  const withProps = await parse(toJUnit(doc([result('migration/fd/saving-espipe', { status: 'blocked', reason: 'r', blockedBy: 'migration/reset/from-STOP' })]), { testcaseProperties: true }));
  t.equal(prop(cases(withProps)[0]!.properties, 'vfio-conformance.status'), 'blocked', 'and as a property, when asked for');
});

t.test('special characters survive, illegal ones are stripped', async (t) => {
  const nasty = `migration/arc/STOP->STOP_COPY <&"'> \u{1F680} caf\u00e9`;
  const dirty = `${nasty}\u0000\u0007\u001b[31m\u007f\u0085\uD800\uFFFE\uFFFF\uDC00x`;
  const cleanName = `${nasty}[31mx`;
  t.equal(sanitizeXmlText(dirty), cleanName, 'sanitizeXmlText');
  t.equal(sanitizeXmlText('tab\tnl\ncr\r\u{1F600}'), 'tab\tnl\ncr\r\u{1F600}', 'legal whitespace and astral characters kept');
  const xml = toJUnit(doc([
    result(dirty, { status: 'fail', reason: `bad ${dirty}`, log: [`line with ${dirty}`, ']]> and <![CDATA[ too'] }),
    result(nasty, { status: 'skip', reason: `skip "because" <x> & 'y'\nsecond line` }),
  ]));
  t.notMatch(xml, /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/, 'no illegal control characters in the output');
  const lint = await xmllint(xml);
  t.equal(lint.exitCode, 0, lint.stderr);
  const p = await parse(xml);
  const tcs = cases(p);
  t.same(tcs.map((c) => c.$.name), [cleanName, nasty], 'names parse back as written (minus illegal characters)');
  t.equal(tcs[0]!.failure?.[0]?.$.message, `bad ${cleanName}`);
  t.match(tcs[0]!['system-out']?.[0], `line with ${cleanName}\n]]> and <![CDATA[ too`);
  t.equal(tcs[1]!.skipped?.[0]?.$?.message, `skip "because" <x> & 'y'\nsecond line`, 'newline in an attribute survives');
});

t.test('huge outputs are truncated with a note, head and tail kept', async (t) => {
  const log = Array.from({ length: 20000 }, (_, i) => `step ${i}: -> {"op":"read_data","len":4096} <- ok \u00e9\u{1F680}`);
  const huge = { blob: 'x'.repeat(300_000) };
  const xml = toJUnit(doc([result('migration/stream/huge', { status: 'fail', reason: 'stream mismatch', log, observed: huge, expected: { blob: 'y' } })]));
  const lint = await xmllint(xml);
  t.equal(lint.exitCode, 0, lint.stderr);
  const tc = cases(await parse(xml))[0]!;
  const out = tc['system-out']?.[0] ?? '';
  t.ok(Buffer.byteLength(out) <= MAX_TEXT_BYTES, `system-out ${Buffer.byteLength(out)} bytes`);
  t.match(out, /\n\[\.\.\. \d+ bytes truncated \.\.\.\]\n/);
  t.match(out, /^--- step log ---\nstep 0: /, 'head kept');
  t.match(out, /step 19999: .*\u{1F680}$/u, 'tail kept');
  t.notMatch(out, /\uFFFD/, 'no character cut in half');
  const body = tc.failure?.[0]?._ ?? '';
  t.ok(Buffer.byteLength(body) <= MAX_TEXT_BYTES);
  t.match(body, /^stream mismatch\n\nexpected:\n\{\n  "blob": "y"\n\}\n\nobserved:\n\{\n  "blob": "xxx/);
  t.match(body, /\[\.\.\. \d+ bytes truncated \.\.\.\]/);
  const n = Number(/\[\.\.\. (\d+) bytes truncated/.exec(out)?.[1]);
  t.equal(Buffer.byteLength(log.join('\n')) + Buffer.byteLength('--- step log ---\n') - n + Buffer.byteLength(`\n[... ${n} bytes truncated ...]\n`), Buffer.byteLength(out), 'the note counts exactly what was cut');
});

t.test('truncateMiddle', async (t) => {
  t.equal(truncateMiddle('short', 100), 'short');
  const emoji = '\u{1F680}'.repeat(1000); // 4000 bytes
  for (const max of [100, 101, 102, 103, 1000]) {
    const s = truncateMiddle(emoji, max);
    t.ok(Buffer.byteLength(s) <= max, `fits ${max}`);
    t.notMatch(s, /\uFFFD/, `no broken character at ${max}`);
    t.match(s, /^\u{1F680}+\n\[\.\.\. \d+ bytes truncated \.\.\.\]\n\u{1F680}+$/u);
  }
});

t.test('duplicate ids get unique names', async (t) => {
  const xml = toJUnit(doc([
    result('migration/reset/twice'),
    result('migration/reset/twice', { status: 'fail', reason: 'second run differs' }),
    result('migration/reset/twice #2'), // a real id that looks like a de-duplicated one
    result('migration/reset/twice'),
  ]));
  const lint = await xmllint(xml);
  t.equal(lint.exitCode, 0, lint.stderr);
  const tcs = cases(await parse(xml));
  const names = tcs.map((c) => c.$.name);
  t.same(names, ['migration/reset/twice', 'migration/reset/twice #2', 'migration/reset/twice #2 #2', 'migration/reset/twice #3']);
  t.equal(new Set(names).size, names.length, 'all unique');
  t.equal(tcs[1]!.properties, undefined, 'no testcase properties by default');
  const withProps = cases(await parse(toJUnit(doc([result('migration/reset/twice'), result('migration/reset/twice')]), { testcaseProperties: true })));
  t.equal(prop(withProps[1]!.properties, 'vfio-conformance.id'), 'migration/reset/twice', 'original id kept as a property on request');
  t.match(tcs[1]!['system-out']?.[0], /stands for result id "migration\/reset\/twice"/);
  t.ok(tcs[1]!.failure, 'outcome of the duplicate kept');
});

t.test('(classname, name) is unique across the file when a suite runs on two devices', async (t) => {
  const vf = { driver: 'mlx5_vfio_pci', class: 'real' as const, id: '0000:3b:00.1' };
  const xml = toJUnit(doc([
    result('migration/arc/STOP->RESUMING'),
    result('migration/arc/STOP->RESUMING', { device: vf }),
  ]));
  const p = await parse(xml);
  t.same(p.testsuites.testsuite!.map((s) => s.$.name), ['migration/q35-vtd/mtty-2', 'migration/q35-vtd/0000:3b:00.1']);
  const keys = cases(p).map((c) => `${c.$.classname}\u0000${c.$.name}`);
  t.equal(new Set(keys).size, 2, 'GitLab keys cases by classname + name');
  t.same(cases(p).map((c) => c.$.classname), ['vfio-conformance.migration.q35-vtd.mtty-2', 'vfio-conformance.migration.q35-vtd.0000:3b:00_1']);
});

t.test('harness errors and incomplete runs show up as errors', async (t) => {
  const xml = toJUnit(doc([result('migration/arc/STOP->STOP_COPY')], {
    complete: false,
    endedAt: undefined,
    errors: [{ profile: 'virt-smmuv3', message: 'guest did not boot within 300s', log: 'runs/x/console-virt-smmuv3.log' }],
  }));
  const lint = await xmllint(xml);
  t.equal(lint.exitCode, 0, lint.stderr);
  const p = await parse(xml);
  const harness = p.testsuites.testsuite!.find((s) => s.$.name === 'harness/run')!;
  t.ok(harness, 'harness suite present');
  t.same(harness.testcase!.map((c) => c.$.name), ['harness error (profile virt-smmuv3)', 'run incomplete']);
  t.equal(harness.testcase![0]!.error?.[0]?.$.message, 'guest did not boot within 300s');
  t.match(harness.testcase![0]!.error?.[0]?._, /log: runs\/x\/console-virt-smmuv3\.log/);
  t.match(harness.testcase![1]!.error?.[0]?.$.message, /did not complete.*1 results were recorded/);
  t.equal(p.testsuites.$.errors, '2');
  t.equal(p.testsuites.$.tests, '3');
});

t.test('empty run and writeJUnit', async (t) => {
  const empty = toJUnit(doc([]));
  const lint = await xmllint(empty);
  t.equal(lint.exitCode, 0, lint.stderr);
  t.same((await parse(empty)).testsuites.$, { name: 'vfio-conformance', tests: '0', failures: '0', errors: '0', time: '0.000' });

  const dir = t.testdir();
  const path = await writeJUnit(dir, mixedRun());
  t.equal(path, join(dir, 'junit.xml'));
  const text = readFileSync(path, 'utf8');
  t.match(text, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites /);
  t.equal(text, toJUnit(mixedRun()), 'deterministic');
});
