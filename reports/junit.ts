/**
 * JUnit XML from results.json, for the readers users actually run:
 *  - Jenkins JUnit plugin: testsuite/testcase with classname split at the last dot into package and
 *    class; failure/error "message" as the error message and the body as the stack trace; skipped
 *    with message; system-out per testcase; testsuite properties, and testcase properties when the
 *    step has `keepProperties: true`. Checked against test/fixtures/junit/jenkins-junit.xsd.
 *  - Jenkins xunit plugin, which validates its input against a strict Ant-style schema
 *    (test/fixtures/junit/xunit-junit-strict.xsd): no <properties> in a testcase and only name,
 *    time, tests, failures and errors on <testsuites>. So testcase properties are written only with
 *    `testcaseProperties: true`, and what they said (a status JUnit has no word for, the original id
 *    of a renamed duplicate) always travels as a system-out line.
 *  - GitLab (artifacts:reports:junit): flattens all testcases; shows classname as the "suite" column
 *    and name as the name, and keys cases by classname + name (so that pair must be unique in the
 *    file, not only within a testsuite); the failure/error body is what it shows as output.
 *  - GitHub report actions (dorny/test-reporter, mikepenz/action-junit-report,
 *    EnricoMi/publish-unit-test-result-action): testsuite name, testcase name/classname/time,
 *    failure/error message and body, skipped message.
 *
 * Status mapping is `junitOutcome` in results-file.ts (expected-unsupported and warning are passed
 * testcases carrying a property and a system-out note).
 */
import xml2js from 'xml2js';
import { join } from 'node:path';
import type { CaseResult, DeviceInfo, RunResults } from '../base/results/schema.js';
import { junitOutcome, writeFileAtomicSync } from '../base/results/file.js';

export const JUNIT_FILE = 'junit.xml';
/** Largest system-out / failure body kept whole; longer ones keep head and tail. */
export const MAX_TEXT_BYTES = 64 * 1024;
/** Attributes (message) and property values are shown on one line by readers: keep them shorter. */
const MAX_ATTR_BYTES = 4 * 1024;

// ---------------------------------------------------------------------------------------------
// Text hygiene
// ---------------------------------------------------------------------------------------------

/**
 * Remove what XML 1.0 cannot carry: C0 controls other than \t \n \r, lone surrogates, U+FFFE and
 * U+FFFF. DEL and the C1 controls (U+007F-U+009F) are legal but discouraged (XML 1.0 §2.2) and are
 * only ever terminal noise or mojibake in a console log, so they go too. Escaping (&<>"') is the
 * builder's job; this only removes characters that no escaping can represent.
 */
// eslint-disable-next-line no-control-regex
const ILLEGAL_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function sanitizeXmlText(s: string): string {
  return s.replace(ILLEGAL_XML, '');
}

/**
 * Keep `s` within `maxBytes` of UTF-8: head and tail kept (cut on character boundaries), the middle
 * replaced by `[... N bytes truncated ...]`. The full text stays in results.json.
 */
export function truncateMiddle(s: string, maxBytes = MAX_TEXT_BYTES): string {
  const buf = Buffer.from(s, 'utf8');
  if (buf.length <= maxBytes) return s;
  const note = (n: number): string => `\n[... ${n} bytes truncated ...]\n`;
  const keep = Math.max(0, maxBytes - Buffer.byteLength(note(buf.length)));
  let headEnd = Math.floor(keep / 2);
  while (headEnd > 0 && ((buf[headEnd] ?? 0) & 0xc0) === 0x80) headEnd--; // don't split a character
  let tailStart = buf.length - (keep - Math.floor(keep / 2));
  while (tailStart < buf.length && ((buf[tailStart] ?? 0) & 0xc0) === 0x80) tailStart++;
  return buf.subarray(0, headEnd).toString('utf8') + note(tailStart - headEnd) + buf.subarray(tailStart).toString('utf8');
}

function clean(s: string, maxBytes = MAX_TEXT_BYTES): string {
  return truncateMiddle(sanitizeXmlText(s), maxBytes);
}

function attr(s: string): string {
  return clean(s, MAX_ATTR_BYTES);
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

interface XmlProperty { $: { name: string; value: string } }
interface XmlProperties { property: XmlProperty[] }
interface XmlTestcase {
  $: { name: string; classname: string; time: string };
  properties?: XmlProperties;
  skipped?: { $: { message: string } };
  failure?: { $: { message: string; type: string }; _: string };
  error?: { $: { message: string; type: string }; _: string };
  'system-out'?: string;
}
interface XmlTestsuite {
  $: Record<string, string>;
  properties?: XmlProperties;
  testcase: XmlTestcase[];
}

interface Counts { tests: number; failures: number; errors: number; skipped: number; ms: number }

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

/** Ant/Jenkins timestamp: ISO 8601 without zone (we write UTC). Undefined if unparseable. */
function antTimestamp(iso: string | undefined): string | undefined {
  if (!iso) return undefined;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return undefined;
  return new Date(t).toISOString().slice(0, 19);
}

function props(entries: [string, unknown][]): XmlProperties | undefined {
  const property: XmlProperty[] = [];
  for (const [name, v] of entries) {
    if (v === undefined || v === null) continue;
    const value = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
    property.push({ $: { name, value: clean(value) } });
  }
  return property.length > 0 ? { property } : undefined;
}

function json(v: unknown): string {
  return v === undefined ? '(not recorded)' : JSON.stringify(v, null, 2);
}

function failureBody(r: CaseResult): string {
  return [
    r.reason ?? '(no reason given)',
    '',
    'expected:',
    json(r.expected),
    '',
    'observed:',
    json(r.observed),
  ].join('\n');
}

function systemOut(r: CaseResult, notes: string[]): string {
  const parts: string[] = notes.map((n) => `[vfio-conformance] ${n}`);
  if (r.log && r.log.length > 0) {
    parts.push('--- step log ---', ...r.log);
  }
  for (const f of r.faults) {
    parts.push(`--- console: ${f.kind}: ${f.title}${f.step ? ` (during step ${f.step})` : ''} ---`, ...f.lines);
  }
  const artifacts = Object.entries(r.artifacts);
  if (artifacts.length > 0) {
    parts.push('--- artifacts ---', ...artifacts.map(([k, v]) => `${k}: ${v}`));
  }
  return parts.join('\n');
}

/** Gives each (classname, name) pair once: the second `x` becomes `x #2`, and so on. */
class UniqueNames {
  private readonly used = new Map<string, Set<string>>();
  take(scope: string, wanted: string): string {
    let set = this.used.get(scope);
    if (!set) this.used.set(scope, (set = new Set()));
    let name = wanted;
    for (let n = 2; set.has(name); n++) name = `${wanted} #${n}`;
    set.add(name);
    return name;
  }
}

function deviceProps(d: DeviceInfo): [string, unknown][] {
  return [
    ['device.driver', d.driver],
    ['device.class', d.class],
    ['device.id', d.id],
    ['device.fingerprint', d.fingerprint],
    ['device.modules', d.modules && d.modules.length > 0 ? d.modules : undefined],
  ];
}

function runProps(res: RunResults): [string, unknown][] {
  const run = res.run;
  return [
    ['vfio-conformance.version', `${run.tool.name} ${run.tool.version}`],
    ['results.schema', res.schema],
    ['run.startedAt', run.startedAt],
    ['run.complete', run.complete],
    ['host.hostname', run.host.hostname],
    ['host.arch', run.host.arch],
    ['target.kind', run.target.kind],
    ['target.address', run.target.address],
    ['kernel.release', run.kernel?.release],
    ['kernel.sourceId', run.kernel?.sourceId],
    ['kernel.configHash', run.kernel?.configHash],
    ['kernel.arch', run.kernel?.arch],
    ['qemu.version', run.qemu?.version],
    ['qemu.binary', run.qemu?.binary],
    ['accel', run.accel],
  ];
}

function count(c: Counts, tc: XmlTestcase, ms: number): void {
  c.tests++;
  c.ms += ms;
  if (tc.failure) c.failures++;
  if (tc.error) c.errors++;
  if (tc.skipped) c.skipped++;
}

function countAttrs(c: Counts): Record<string, string> {
  return { tests: String(c.tests), failures: String(c.failures), errors: String(c.errors), skipped: String(c.skipped), time: seconds(c.ms) };
}

function buildCase(r: CaseResult, name: string, classname: string, withProperties: boolean): XmlTestcase {
  const outcome = junitOutcome(r.status, r.reason);
  const tc: XmlTestcase = { $: { name, classname, time: seconds(r.durationMs) } };
  const notes: string[] = [];
  const cleanId = sanitizeXmlText(r.id);
  if (name !== cleanId) notes.push(`testcase name ${JSON.stringify(name)} stands for result id ${JSON.stringify(r.id)} (the same id was reported more than once)`);
  if (outcome.element === 'passed' && outcome.note) notes.push(outcome.note);
  const p = props([
    ['vfio-conformance.status', r.status],
    ['vfio-conformance.reason', r.reason === undefined ? undefined : attr(r.reason)],
    ['vfio-conformance.id', name !== cleanId ? r.id : undefined],
  ]);
  if (p && withProperties) tc.properties = p;
  switch (outcome.element) {
    case 'failure':
    case 'error':
      tc[outcome.element] = {
        $: { message: attr(r.reason ?? `${r.status} (no reason given)`), type: outcome.type },
        _: clean(failureBody(r)),
      };
      break;
    case 'skipped':
      tc.skipped = { $: { message: attr(r.status === 'blocked' ? `blocked by ${r.blockedBy ?? '(unnamed case)'}: ${r.reason ?? ''}` : r.reason ?? 'skipped (no reason given)') } };
      break;
    case 'passed':
      break;
  }
  const out = systemOut(r, notes);
  if (out.length > 0) tc['system-out'] = clean(out);
  return tc;
}

/**
 * The run as JUnit XML: one testsuite per (suite, profile, device.id), in order of first result.
 * Harness errors recorded in `run.errors`, and a run that never completed, become an extra
 * `harness/run` testsuite with <error> testcases, so CI readers cannot show a dead run as green.
 */
export interface JUnitOptions {
  /**
   * Also write <properties> in each testcase (vfio-conformance.status, .reason, .id) for readers that
   * keep them (Jenkins JUnit with keepProperties). The strict schema of Jenkins' xunit plugin refuses
   * the file then.
   */
  testcaseProperties?: boolean;
}

export function toJUnit(res: RunResults, opts: JUnitOptions = {}): string {
  interface Group { suite: string; profile: string; device: DeviceInfo; results: CaseResult[] }
  const groups = new Map<string, Group>();
  for (const r of res.results) {
    const k = JSON.stringify([r.suite, r.profile, r.device.id]);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { suite: r.suite, profile: r.profile, device: r.device, results: [] }));
    g.results.push(r);
  }
  // GitLab keys cases by classname + name across the whole file, so when one (suite, profile) ran
  // on several devices the device goes into the classname ('.' replaced so Jenkins does not split it).
  const devicesPer = new Map<string, Set<string>>();
  for (const g of groups.values()) {
    const k = JSON.stringify([g.suite, g.profile]);
    let s = devicesPer.get(k);
    if (!s) devicesPer.set(k, (s = new Set()));
    s.add(g.device.id);
  }

  const names = new UniqueNames();
  const suiteNames = new UniqueNames();
  const total: Counts = { tests: 0, failures: 0, errors: 0, skipped: 0, ms: 0 };
  const timestamp = antTimestamp(res.run.startedAt);
  const hostname = attr(res.run.host.hostname);
  const common = runProps(res);
  const testsuite: XmlTestsuite[] = [];

  const addSuite = (name: string, pkg: string, properties: XmlProperties | undefined, cases: [XmlTestcase, number][]): void => {
    const c: Counts = { tests: 0, failures: 0, errors: 0, skipped: 0, ms: 0 };
    for (const [tc, ms] of cases) {
      count(c, tc, ms);
      count(total, tc, ms);
    }
    const $: Record<string, string> = {
      name: suiteNames.take('', name),
      ...countAttrs(c),
      ...(timestamp ? { timestamp } : {}),
      hostname,
      id: String(testsuite.length),
      package: pkg,
    };
    // Key order is element order in the output: properties must come before the testcases.
    testsuite.push({ $, ...(properties ? { properties } : {}), testcase: cases.map(([tc]) => tc) });
  };

  for (const g of groups.values()) {
    const several = (devicesPer.get(JSON.stringify([g.suite, g.profile]))?.size ?? 1) > 1;
    const classname = attr(
      `vfio-conformance.${g.suite}.${g.profile}${several ? `.${g.device.id.replace(/\./g, '_')}` : ''}`,
    );
    const cases = g.results.map((r): [XmlTestcase, number] => {
      const name = names.take(classname, sanitizeXmlText(r.id) || '(unnamed)');
      return [buildCase(r, name, classname, opts.testcaseProperties === true), r.durationMs];
    });
    const pq = res.run.profileQemu?.[g.profile];
    const properties = props([...common, ['suite', g.suite], ['profile', g.profile],
      // the QEMU this profile really ran on, and the patches of ours behind its hardware
      ['profile.qemu.version', pq?.version], ['profile.qemu.binary', pq?.binary],
      ['profile.emulatedBy', res.run.profileEmulation?.[g.profile]?.join(', ')], ...deviceProps(g.device)]);
    addSuite(attr(`${g.suite}/${g.profile}/${g.device.id}`), attr(`vfio-conformance.${g.suite}`), properties, cases);
  }

  const harnessCases: [XmlTestcase, number][] = [];
  const harnessClass = 'vfio-conformance.harness';
  const harnessError = (name: string, message: string, body: string): XmlTestcase => ({
    $: { name: names.take(harnessClass, name), classname: harnessClass, time: seconds(0) },
    error: { $: { message: attr(message), type: 'harness' }, _: clean(body) },
  });
  for (const e of res.run.errors) {
    const name = `harness error${e.profile ? ` (profile ${sanitizeXmlText(e.profile)})` : ''}`;
    harnessCases.push([harnessError(name, e.message, `${e.message}${e.log ? `\nlog: ${e.log}` : ''}`), 0]);
  }
  if (!res.run.complete) {
    const msg = `the run did not complete (results.json has complete: false): it is still going or died half-way; ${res.results.length} results were recorded`;
    harnessCases.push([harnessError('run incomplete', msg, msg), 0]);
  }
  if (harnessCases.length > 0) addSuite('harness/run', 'vfio-conformance.harness', props(common), harnessCases);

  const builder = new xml2js.Builder({
    xmldec: { version: '1.0', encoding: 'UTF-8' },
    renderOpts: { pretty: true, indent: '  ', newline: '\n' },
  });
  return builder.buildObject({
    testsuites: {
      // the strict schema allows no skipped or timestamp here; each testsuite carries both
      $: { name: 'vfio-conformance', tests: String(total.tests), failures: String(total.failures), errors: String(total.errors), time: seconds(total.ms) },
      testsuite,
    },
  }) + '\n';
}

/** Write `<runDir>/junit.xml` atomically; returns its path. */
export async function writeJUnit(runDir: string, res: RunResults, opts: JUnitOptions = {}): Promise<string> {
  const path = join(runDir, JUNIT_FILE);
  writeFileAtomicSync(path, toJUnit(res, opts));
  return path;
}
