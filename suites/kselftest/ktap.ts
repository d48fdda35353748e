/**
 * KTAP ingestion (Documentation/dev-tools/ktap.rst) for kselftest_harness programs
 * (tools/testing/selftests/kselftest_harness.h), run directly or under run_kselftest.sh, and for
 * KUnit's output. Pure functions: text in, results out.
 *
 * What a kselftest stream looks like (vfio-uapi.md 5.3):
 *
 *   TAP version 13
 *   1..246
 *   # Starting 246 tests from 29 test cases.
 *   #  RUN           iommufd.simple_close ...
 *   #            OK  iommufd.simple_close
 *   ok 1 iommufd.simple_close
 *   #  RUN           iommufd_viommu.no_viommu.hw_queue ...
 *   #      SKIP      Skipping test for variant no_viommu
 *   #            OK  iommufd_viommu.no_viommu.hw_queue
 *   ok 200 iommufd_viommu.no_viommu.hw_queue # SKIP Skipping test for variant no_viommu
 *   # Totals: pass:241 fail:0 xfail:0 xpass:0 skip:5 error:0
 *
 * Subtests come in two forms. Under run_kselftest.sh the program's lines are prefixed with "# " and
 * closed by a test point of the program (`ok 1 selftests: iommu: iommufd`, `not ok 1 ... # TIMEOUT
 * 45 seconds`). KUnit indents a suite's lines (4 spaces, 2, or a tab in older kernels) under a
 * `# Subtest: NAME` line, and the suite's own test point follows them. Either way every subtest is
 * one result, named with its parent. Kernel console lines (`[   12.345678] ...`) may be interleaved
 * when the console and the program share a terminal; other garbage may appear anywhere.
 *
 * One pass over the lines, written for KTAP rather than borrowed from a TAP 14 parser: KTAP has its
 * own header, directives TAP lacks (XFAIL, XPASS, TIMEOUT, ERROR), and kselftest's wrapping, and the
 * diagnostics between a test's `RUN` line and its test point belong to that test, which only a walk
 * in stream order can say (the kernel's kunit_parser.py is a hand-written walk for the same reasons).
 * From TAP it keeps: test points with or without a number and "- ", `\#` in a name, SKIP/TODO,
 * YAML diagnostic blocks (kept with their test), and "Bail out!".
 */

export type KtapStatus = 'pass' | 'fail' | 'skip' | 'error';

export interface KtapTest {
  /** `fixture.variant.test`, `fixture.test`, or the plain test name */
  name: string;
  status: KtapStatus;
  reason?: string;
  /** the diagnostic lines of this test (between its RUN line and its test point), as printed */
  lines: string[];
  /** the test point number, when there was one */
  number?: number;
  /** for subtests: the name of the enclosing test (`selftests: iommu: iommufd`, a KUnit suite) */
  parent?: string;
}

export interface KtapReport {
  tests: KtapTest[];
  /** the plan of the top-level stream of results (1..N), if one was printed */
  planned?: number;
  /** `# Totals: pass:N fail:N ...` of the (innermost) program, if printed */
  totals?: Record<string, number>;
  /** the stream ended normally: plan satisfied, nothing left running, no bail out */
  complete: boolean;
  /** console lines taken out of the stream */
  console: string[];
  /** lines that are neither KTAP nor harness diagnostics nor console */
  garbage: string[];
}

/** `[   12.345678] ...` (printk with timestamps), possibly glued to the end of a program line. */
const CONSOLE_RE = /\[\s*\d+\.\d{3,9}\]\s/;
const RUN_RE = /^\s*RUN\s+(\S+)\s+\.\.\.\s*$/;
const END_RE = /^\s*(OK|FAIL|XFAIL|XPASS|SKIP)\s{2,}(\S+)\s*$/;
const TEST_POINT_RE = /^(?:not )?ok\b/;
const PLAN_RE = /^\d+\.\.\d+/;
const VERSION_RE = /^K?TAP version \d+/;
const BAIL_RE = /^Bail out!\s*(.*)$/;
const DIRECTIVES = ['SKIP', 'TODO', 'XFAIL', 'XPASS', 'TIMEOUT', 'ERROR'] as const;
type Directive = typeof DIRECTIVES[number];

/** A test point: `(not )ok [N] [- ]description[ # [DIRECTIVE] [diagnostic]]`. */
export interface TestPoint {
  ok: boolean;
  number?: number;
  name: string;
  directive?: Directive;
  /** what follows the directive (SKIP's reason, TIMEOUT's "45 seconds"), or the bare diagnostic */
  text: string;
}

export function parseTestPoint(line: string): TestPoint | undefined {
  const m = /^(not )?ok\b\s*(\d+)?\s*(?:-(?:\s+|$))?(.*)$/.exec(line);
  if (!m) return undefined;
  // the first '#' that starts the rest or follows white space, and is not escaped, ends the name
  const d = /^(?:(.*?)\s+)?(?<!\\)#\s*(.*)$/.exec(m[3]!);
  const desc = d ? d[1] ?? '' : m[3]!;
  const after = d ? d[2]! : '';
  const kind = /^([A-Za-z]+)\b\s*(.*)$/.exec(after);
  const directive = DIRECTIVES.find((x) => x === kind?.[1]?.toUpperCase());
  return {
    ok: !m[1], number: m[2] ? Number(m[2]) : undefined, name: desc.replace(/\\#/g, '#').trim(),
    directive, text: (directive ? kind![2]! : after).trim(),
  };
}

/** Take console lines out: whole lines, and console text glued onto the end of a program line. */
function separateConsole(raw: string): { keep?: string; console?: string } {
  const m = CONSOLE_RE.exec(raw);
  if (!m) return { keep: raw };
  if (m.index === 0 || /^\s*$/.test(raw.slice(0, m.index)) || /^<\d+>$/.test(raw.slice(0, m.index).trim())) return { console: raw };
  return { keep: raw.slice(0, m.index), console: raw.slice(m.index) };
}

const isKtap = (text: string): boolean => TEST_POINT_RE.test(text) || PLAN_RE.test(text) || VERSION_RE.test(text) || text.startsWith('#') || BAIL_RE.test(text);

/**
 * The nesting of a line and its payload. run_kselftest.sh's "# " wrapping counts only when the
 * stream has wrapped test points (`wrapped`), so a program's own "# # ..." diagnostics are not
 * mistaken for nesting. Indentation counts for KTAP lines only, level by level as it deepens
 * (KUnit indents by 4 spaces, 2, or a tab), so an indented line of a program's output stays output.
 */
class Nesting {
  /** indentation of each level, per wrapping depth */
  private readonly indents: number[][] = [];
  constructor(private readonly wrapped: boolean) {}

  classify(raw: string): { depth: number; text: string; ktap: boolean } {
    let text = raw.replace(/\r$/, '');
    let depth = 0;
    if (this.wrapped) {
      for (let m = /^# (.*)$/.exec(text); m; m = /^# (.*)$/.exec(text)) {
        const inner = m[1]!;
        if (!(TEST_POINT_RE.test(inner) || PLAN_RE.test(inner) || VERSION_RE.test(inner) || inner.startsWith('#'))) break;
        depth++;
        text = inner;
      }
    }
    const ws = /^[ \t]*/.exec(text)![0];
    const body = text.slice(ws.length);
    if (!isKtap(body)) return { depth, text, ktap: body === '' };
    const width = ws.replace(/\t/g, '        ').length;
    const stack = (this.indents[depth] ??= [0]);
    while (stack.length > 1 && stack[stack.length - 1]! > width) stack.pop();
    if (width > stack[stack.length - 1]!) stack.push(width);
    return { depth: depth + stack.length - 1, text: body, ktap: true };
  }
}

function parseTotals(comment: string): Record<string, number> | undefined {
  const m = /^Totals:\s*(.*)$/.exec(comment.trim());
  if (!m) return undefined;
  const out: Record<string, number> = {};
  for (const kv of m[1]!.matchAll(/(\w+):(\d+)/g)) out[kv[1]!] = Number(kv[2]);
  return out;
}

/**
 * The reason a failed test gives: the harness's own explanation ("Test terminated by assertion",
 * "Test terminated by timeout") together with the first assertion message (`file.c:123:test:...`).
 */
function failReason(name: string, lines: string[]): string | undefined {
  const comments = lines.map((l) => /^#\s?(.*)$/.exec(l.trim().replace(/^(# )+(?=#)/, ''))?.[1]?.trim()).filter((x): x is string => !!x);
  const useful = comments.filter((c) => !RUN_RE.test(c) && !END_RE.test(c));
  // the harness names the test by its own name, without fixture and variant ("# area: Test failed")
  const short = name.split('.').pop()!;
  const harness = useful.find((c) => c.startsWith(`${short}: `) || c.startsWith(`${name}: `));
  // KUnit: "# test: EXPECTATION FAILED at lib/kunit/example-test.c:30" says it all
  const kunit = useful.find((c) => /^\S+: (EXPECTATION|ASSERTION) FAILED at /.test(c));
  if (kunit) return kunit.slice(kunit.indexOf(': ') + 2);
  const assertion = useful.find((c) => /^[\w./-]+\.[ch]:\d+:/.test(c));
  const parts = [assertion, harness?.slice(harness.indexOf(': ') + 2)].filter((x): x is string => !!x);
  if (parts.length) return parts.join(': ');
  return useful.find((c) => c.length > 0);
}

interface Open {
  name: string;
  lines: string[];
}

/** One nesting level's bookkeeping while walking the stream. */
interface Level {
  running?: Open;
  /** diagnostic lines seen since the last test point and not inside a RUN bracket */
  loose: string[];
  /** lines of each finished test, waiting for its test point */
  finished?: Open;
  /** the enclosing test, when a `# selftests:` or `# Subtest:` line named it */
  parent?: string;
  /** results of this level, named with their parent when its test point closes the level */
  results: KtapTest[];
}

/**
 * Parse a KTAP stream into one result per test and subtest. Never throws: what cannot be read is
 * reported as garbage; a test that started and never reached its test point becomes an error
 * ('stream ended while running'), and tests after it are not invented.
 */
export function parseKtap(text: string): KtapReport {
  const rawLines = text.split('\n');
  if (rawLines.length && rawLines[rawLines.length - 1] === '') rawLines.pop();
  const wrapped = rawLines.some((l) => /^(# )+(not )?ok \d+/.test(l));
  const nesting = new Nesting(wrapped);

  const results: KtapTest[] = [];
  const consoleLines: string[] = [];
  const garbage: string[] = [];
  const levels: Level[] = [];
  const level = (d: number): Level => (levels[d] ??= { loose: [], results: [] });
  const emit = (d: number, r: KtapTest) => { results.push(r); level(d).results.push(r); };
  /** the deepest running test: console lines and stray output belong to it */
  const deepestRunning = () => [...levels].reverse().find((x) => x?.running)?.running;
  let totals: Record<string, number> | undefined;
  let planned: number | undefined;
  let bailed = false;
  let lastDepth = 0;
  /** the result a YAML block after its test point belongs to, while inside the block */
  let yaml: { to: KtapTest; open: boolean } | undefined;

  /** Close the levels below `d`: what still runs there was cut off; their results get `parent`. */
  const closeBelow = (d: number, parent: string | undefined, why: string) => {
    for (let i = levels.length - 1; i > d; i--) {
      const lv = levels[i];
      if (!lv) continue;
      const open = lv.running ?? lv.finished;
      if (open) emit(i, { name: open.name, status: 'error', reason: why, lines: open.lines, ...(lv.parent ?? parent ? { parent: lv.parent ?? parent } : {}) });
      if (parent) for (const r of lv.results) r.parent ??= parent;
    }
    levels.length = d + 1;
  };

  for (const raw of rawLines) {
    const sep = separateConsole(raw);
    if (sep.console !== undefined) {
      consoleLines.push(sep.console);
      (deepestRunning()?.lines ?? level(lastDepth).loose).push(sep.console);
    }
    if (sep.keep === undefined) continue;
    const k = sep.keep;
    if (yaml) {
      // TAP's YAML block after a test point: `  ---` ... `  ...`, kept with that test
      if (yaml.open || /^\s+---\s*$/.test(k)) {
        yaml.to.lines.push(k);
        yaml.open = !/^\s+\.\.\.\s*$/.test(k);
        if (!yaml.open) yaml = undefined;
        continue;
      }
      yaml = undefined;
    }
    const l = nesting.classify(k);
    if (!l.ktap) {
      // not KTAP: reported, and kept with the output of the test it was printed during (KUnit's
      // "Expected 1 + 1 == 3, but" lines)
      garbage.push(k);
      (deepestRunning()?.lines ?? level(lastDepth).loose).push(k);
      continue;
    }
    const lv = level(l.depth);
    lastDepth = l.depth;
    const bail = BAIL_RE.exec(l.text);
    if (bail) {
      bailed = true;
      closeBelow(l.depth - 1, undefined, `bailed out${bail[1] ? `: ${bail[1]}` : ''}`);
      continue;
    }
    const comment = /^#\s?(.*)$/.exec(l.text)?.[1];
    if (comment !== undefined) {
      const run = RUN_RE.exec(comment);
      if (run) {
        if (lv.running) {
          // a RUN without an end: the test died without its test point (should not happen in one program)
          emit(l.depth, { name: lv.running.name, status: 'error', reason: 'no result printed before the next test started', lines: lv.running.lines, ...(lv.parent ? { parent: lv.parent } : {}) });
        }
        lv.running = { name: run[1]!, lines: [k] };
        continue;
      }
      const sel = /^selftests: (.+)$/.exec(comment.trim());
      if (sel) level(l.depth + 1).parent = `selftests: ${sel[1]!.trim()}`;
      const sub = /^Subtest: (.+)$/.exec(comment.trim());
      if (sub) lv.parent = sub[1]!.trim();
      const t = parseTotals(comment);
      if (t) totals = t;
      const end = END_RE.exec(comment);
      if (lv.running) {
        lv.running.lines.push(k);
        if (end && end[2] === lv.running.name && end[1] !== 'SKIP') { lv.finished = lv.running; lv.running = undefined; }
      } else {
        lv.loose.push(k);
      }
      continue;
    }
    const point = parseTestPoint(l.text);
    if (point) {
      const name = point.name;
      let own: Open | undefined;
      if (lv.finished?.name === name) own = lv.finished;
      else if (lv.running?.name === name) own = lv.running;
      lv.finished = undefined;
      if (own === lv.running) lv.running = undefined;
      const testLines = own ? [...own.lines, k] : [...lv.loose, k];
      lv.loose = [];
      // the subtests (a nested program, a KUnit suite) ended: what was running there did not finish
      const timeout = point.directive === 'TIMEOUT' ? `killed by the runner's timeout (TIMEOUT${point.text ? ` ${point.text}` : ''})` : undefined;
      closeBelow(l.depth, name, timeout ?? 'stream ended while running');
      const r = toTest(point, testLines, lv.parent);
      emit(l.depth, r);
      yaml = { to: r, open: false };
      continue;
    }
    // the first top-level plan is the stream's (a plan at the end, as TAP allows, counts the same)
    const plan = /^(\d+)\.\.(\d+)/.exec(l.text);
    if (plan && l.depth === 0 && planned === undefined) planned = Number(plan[2]) - Number(plan[1]) + 1;
    // plan, version, blank: part of the running test's output if one runs, else nothing to keep
    if (lv.running && !PLAN_RE.test(l.text) && !VERSION_RE.test(l.text)) lv.running.lines.push(k);
  }
  // Whatever is still running at the end of the stream was cut off. A test whose end line (OK/FAIL)
  // was printed but not its test point is cut off as well: the test point is the result, the end
  // line only the harness's progress.
  let cut = false;
  for (let d = levels.length - 1; d >= 0; d--) {
    const lv = levels[d];
    const open = lv?.running ?? lv?.finished;
    if (lv && open) {
      emit(d, { name: open.name, status: 'error', reason: 'stream ended while running', lines: open.lines, ...(lv.parent ? { parent: lv.parent } : {}) });
      cut = true;
    }
  }
  const topPoints = (levels[0]?.results ?? []).filter((r) => r.number !== undefined).length;
  const complete = !cut && !bailed && planned !== undefined && topPoints >= planned;
  return { tests: results, planned, totals, complete, console: consoleLines, garbage };
}

function toTest(p: TestPoint, lines: string[], parent?: string): KtapTest {
  const base = { name: p.name, lines, number: p.number, ...(parent ? { parent } : {}) };
  const why = (label: string) => `${label}${p.text ? `: ${p.text}` : ''}`;
  switch (p.directive) {
    case 'SKIP': return { ...base, status: 'skip', reason: p.text || 'skipped (no reason given)' };
    case 'TIMEOUT': return { ...base, status: 'fail', reason: `timeout${p.text ? ` (${p.text})` : ''}` };
    case 'ERROR': return { ...base, status: 'error', reason: why('error') };
    // TAP: a TODO test is expected not to work yet, so its failure is no failure
    case 'TODO': return { ...base, status: 'pass', reason: why('todo') };
    case 'XFAIL': if (p.ok) return { ...base, status: 'pass', reason: why('expected failure') }; break;
    case 'XPASS': if (!p.ok) return { ...base, status: 'fail', reason: why('unexpected pass') }; break;
    default: break;
  }
  if (p.ok) return { ...base, status: 'pass' };
  return { ...base, status: 'fail', reason: failReason(p.name, lines) ?? 'not ok' };
}

/** A kselftest_harness test as `-l` lists it. */
export interface ListedTest {
  fixture: string;
  variant: string;
  test: string;
  /** what `-r` takes and what the program prints: `fixture[.variant].test` */
  full: string;
}

/**
 * Parse `<program> -l` (kselftest_harness.h test_harness_list_tests): per fixture a table of rows
 * `%-20s %-25s %s` (fixture on the first row only, variants and tests zipped into columns). Every
 * (variant x test) of a fixture is one test; a fixture without variants runs its tests once.
 */
export function parseTestList(text: string): ListedTest[] {
  const out: ListedTest[] = [];
  let fixture: { name: string; variants: string[]; tests: string[] } | undefined;
  const flush = () => {
    if (!fixture) return;
    const vs = fixture.variants.length ? fixture.variants : [''];
    for (const v of vs) {
      for (const t of fixture.tests) out.push({ fixture: fixture.name, variant: v, test: t, full: `${fixture.name}${v ? `.${v}` : ''}.${t}` });
    }
    fixture = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!line.trim() || line.startsWith('# FIXTURE') || /^-{10,}$/.test(line.trim())) { if (/^-{10,}$/.test(line.trim())) flush(); continue; }
    let rest: string;
    if (!/^\s/.test(line)) {
      flush();
      const name = /^(\S+)/.exec(line)![1]!;
      fixture = { name, variants: [], tests: [] };
      rest = line.slice(Math.max(20, name.length) + 1);
    } else {
      if (!fixture) continue;
      rest = line.slice(21);
    }
    let variant = '';
    let test: string;
    if (/^\S/.test(rest)) {
      variant = /^(\S+)/.exec(rest)![1]!;
      test = rest.slice(Math.max(25, variant.length) + 1).trim();
    } else {
      test = rest.trim();
    }
    if (variant) fixture!.variants.push(variant);
    if (test) fixture!.tests.push(test);
  }
  flush();
  return out;
}
