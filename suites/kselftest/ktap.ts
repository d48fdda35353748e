import { Parser, type Result } from 'tap-parser';

/**
 * KTAP ingestion for kselftest_harness programs (tools/testing/selftests/kselftest_harness.h),
 * run directly or under run_kselftest.sh. Pure functions: text in, results out.
 *
 * What the stream looks like (vfio-uapi.md 5.3):
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
 * Under run_kselftest.sh the program's lines are prefixed with "# " and closed by a test point of
 * the program (`ok 1 selftests: iommu: iommufd`, `not ok 1 ... # TIMEOUT 45 seconds`). Kernel
 * console lines (`[   12.345678] ...`) may be interleaved when the console and the program share a
 * terminal; other garbage may appear anywhere. The test points themselves are parsed by tap-parser
 * (status, SKIP/TODO directives, nesting); this module adds what TAP does not know: which diagnostic
 * lines belong to which test (the `RUN` ... test point bracket), kselftest's extra directives
 * (XFAIL, XPASS, TIMEOUT), and a test that was running when the stream ended.
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
  /** for nested streams: the name of the enclosing test (`selftests: iommu: iommufd`) */
  parent?: string;
}

export interface KtapReport {
  tests: KtapTest[];
  /** the plan of the top-level stream of results (1..N), if one was printed */
  planned?: number;
  /** `# Totals: pass:N fail:N ...` of the (innermost) program, if printed */
  totals?: Record<string, number>;
  /** the stream ended normally: plan satisfied and nothing left running */
  complete: boolean;
  /** console lines taken out of the stream */
  console: string[];
  /** lines that are neither TAP nor harness diagnostics nor console */
  garbage: string[];
}

/** `[   12.345678] ...` (printk with timestamps), possibly glued to the end of a program line. */
const CONSOLE_RE = /\[\s*\d+\.\d{3,9}\]\s/;
const RUN_RE = /^\s*RUN\s+(\S+)\s+\.\.\.\s*$/;
const END_RE = /^\s*(OK|FAIL|XFAIL|XPASS|SKIP)\s{2,}(\S+)\s*$/;
const TEST_POINT_RE = /^(?:not )?ok\b/;
const PLAN_RE = /^\d+\.\.\d+/;
const VERSION_RE = /^K?TAP version \d+/;
const KS_DIRECTIVE_RE = /^(.*?)\s+#\s*(TIMEOUT|XFAIL|XPASS|SKIP|TODO)\b\s*(.*)$/i;

interface Line {
  /** nesting depth: 0 top level, 1 inside run_kselftest.sh's "# " wrapping, ... */
  depth: number;
  /** the TAP payload at that depth (no "# " wrapping) */
  text: string;
  /** what was printed */
  raw: string;
  /** harness diagnostic at this depth (a "# ..." comment), without the "# " */
  comment?: string;
}

/**
 * Split a raw line into its nesting depth and payload. A line "# # #  RUN x ..." at depth 1 is a
 * comment of the nested program; "# ok 3 x" is a test point of the nested program. Nesting is only
 * considered when the stream has nested test points (`nested`), so a program's own "# # ..."
 * diagnostics are not mistaken for nesting.
 */
function classify(raw: string, nested: boolean): Line {
  let text = raw.replace(/\r$/, '');
  let depth = 0;
  if (nested) {
    for (;;) {
      const m = /^# (.*)$/.exec(text);
      if (!m) break;
      const inner = m[1]!;
      if (TEST_POINT_RE.test(inner) || PLAN_RE.test(inner) || VERSION_RE.test(inner) || inner.startsWith('#')) {
        depth++;
        text = inner;
        continue;
      }
      break;
    }
  }
  const c = /^#\s?(.*)$/.exec(text);
  return { depth, text, raw, comment: c ? c[1]! : undefined };
}

/** Take console lines out: whole lines, and console text glued onto the end of a program line. */
function separateConsole(raw: string): { keep?: string; console?: string } {
  const m = CONSOLE_RE.exec(raw);
  if (!m) return { keep: raw };
  if (m.index === 0 || /^\s*$/.test(raw.slice(0, m.index)) || /^<\d+>$/.test(raw.slice(0, m.index).trim())) return { console: raw };
  return { keep: raw.slice(0, m.index), console: raw.slice(m.index) };
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
  const comments = lines.map((l) => /^#\s?(.*)$/.exec(l.replace(/^(# )+(?=#)/, ''))?.[1]?.trim()).filter((x): x is string => !!x);
  const useful = comments.filter((c) => !RUN_RE.test(c) && !END_RE.test(c));
  // the harness names the test by its own name, without fixture and variant ("# area: Test failed")
  const short = name.split('.').pop()!;
  const harness = useful.find((c) => c.startsWith(`${short}: `) || c.startsWith(`${name}: `));
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
  parent?: string;
  /** something was still open when the stream ended */
  cut?: boolean;
}

/**
 * Parse a kselftest KTAP stream into one result per test. Never throws: what cannot be read is
 * reported as garbage; a test that started and never reached its test point becomes an error
 * ('stream ended while running'), and tests after it are not invented.
 */
export function parseKtap(text: string): KtapReport {
  const rawLines = text.split('\n');
  if (rawLines.length && rawLines[rawLines.length - 1] === '') rawLines.pop();

  const consoleLines: string[] = [];
  const garbage: string[] = [];
  const kept: string[] = [];
  for (const raw of rawLines) {
    const s = separateConsole(raw);
    if (s.console !== undefined) consoleLines.push(s.console);
    if (s.keep !== undefined) kept.push(s.keep);
    else if (s.console !== undefined) kept.push('\u0000console\u0000' + s.console);
  }
  const nested = kept.some((l) => /^(# )+(not )?ok \d+/.test(l));

  // tap-parser sees the stream with run_kselftest.sh's "# " wrapping turned into TAP's 4-space
  // subtest indentation, and without console lines and garbage.
  const tapLines: string[] = [];
  const lines: (Line & { console?: boolean })[] = [];
  for (const k of kept) {
    if (k.startsWith('\u0000console\u0000')) {
      const raw = k.slice('\u0000console\u0000'.length);
      lines.push({ depth: -1, text: raw, raw, console: true });
      continue;
    }
    const l = classify(k, nested);
    lines.push(l);
    const isTap = TEST_POINT_RE.test(l.text) || PLAN_RE.test(l.text) || VERSION_RE.test(l.text) || l.comment !== undefined || /^\s*$/.test(l.text);
    if (!isTap) { garbage.push(k); continue; }
    // A nested stream's version line would open a second subtest in tap-parser: the indentation already does.
    if (VERSION_RE.test(l.text) && l.depth > 0) continue;
    // KTAP's own test-point directives that TAP does not know are kept out of the name below.
    tapLines.push(`${'    '.repeat(l.depth)}${l.text.replace(/^\s+/, '')}`);
  }

  const points: { depth: number; result: Result }[] = [];
  let planned: number | undefined;
  const parser = new Parser({ strict: false });
  const watch = (p: Parser, depth: number) => {
    p.on('assert', (r: Result) => points.push({ depth, result: r }));
    p.on('child', (c: Parser) => watch(c, depth + 1));
  };
  watch(parser, 0);
  try {
    parser.end(tapLines.map((l) => `${l}\n`).join(''));
  } catch {
    // tap-parser does not throw on bad input, but nothing here may
  }

  // Walk the lines again for what TAP does not carry: which diagnostics belong to which test.
  const results: KtapTest[] = [];
  const levels: Level[] = [];
  const level = (d: number): Level => (levels[d] ??= { loose: [] });
  let totals: Record<string, number> | undefined;
  let pointIdx = 0;
  const takePoint = (depth: number, name: string): Result | undefined => {
    // the next test point of tap-parser at this depth with this name (or the next at this depth)
    for (let i = pointIdx; i < points.length; i++) {
      const p = points[i]!;
      if (p.depth === depth && (cleanName(p.result.name) === name || !name)) {
        pointIdx = i + 1;
        return p.result;
      }
    }
    return undefined;
  };
  const lastDepth = { d: 0 };
  for (const l of lines) {
    if (l.console) {
      // attach to whatever is running at the deepest level
      const lv = [...levels].reverse().find((x) => x?.running);
      (lv?.running?.lines ?? level(lastDepth.d).loose).push(l.raw);
      continue;
    }
    const lv = level(l.depth);
    lastDepth.d = l.depth;
    if (l.comment !== undefined && l.depth >= 0) {
      // harness diagnostics of this level
      const run = RUN_RE.exec(l.comment);
      if (run) {
        if (lv.running) {
          // a RUN without an end: the test died without its test point (should not happen in one program)
          results.push({ name: lv.running.name, status: 'error', reason: 'no result printed before the next test started', lines: lv.running.lines, parent: lv.parent });
        }
        lv.running = { name: run[1]!, lines: [l.raw] };
        continue;
      }
      const sel = /^selftests: (.+)$/.exec(l.comment.trim());
      if (sel) level(l.depth + 1).parent = `selftests: ${sel[1]!.trim()}`;
      const t = parseTotals(l.comment);
      if (t) totals = t;
      const end = END_RE.exec(l.comment);
      if (lv.running) {
        lv.running.lines.push(l.raw);
        if (end && end[2] === lv.running.name && end[1] !== 'SKIP') { lv.finished = lv.running; lv.running = undefined; }
      } else {
        lv.loose.push(l.raw);
      }
      continue;
    }
    if (TEST_POINT_RE.test(l.text)) {
      const m = /^(?:not )?ok\s+(\d+)?\s*(?:-\s+)?(.*)$/.exec(l.text);
      const name = cleanName(m?.[2] ?? '');
      const r = takePoint(l.depth, name);
      let own: Open | undefined;
      if (lv.finished?.name === name) own = lv.finished;
      else if (lv.running?.name === name) own = lv.running;
      lv.finished = undefined;
      if (own === lv.running) lv.running = undefined;
      const testLines = own ? [...own.lines, l.raw] : [...lv.loose, l.raw];
      lv.loose = [];
      const inner = levels[l.depth + 1];
      if (inner) {
        // the nested program ended (or was killed): whatever it was running did not finish
        if (inner.running) {
          const d = directiveOf(l.text);
          results.push({
            name: inner.running.name, status: 'error', parent: inner.parent ?? name,
            reason: d && /TIMEOUT/i.test(d.kind) ? `killed by the runner's timeout (${d.kind} ${d.text})`.replace(/ \)$/, ')') : 'stream ended while running',
            lines: inner.running.lines,
          });
        }
        levels.length = l.depth + 1;
      }
      results.push(toTest(name, l.text, r, testLines, lv.parent));
      continue;
    }
    // tap-parser invents a plan at the end of a stream without one: the printed plan is the one that counts
    const plan = /^(\d+)\.\.(\d+)/.exec(l.text);
    if (plan && l.depth === 0 && planned === undefined) planned = Number(plan[2]) - Number(plan[1]) + 1;
    // plan, version, blank, garbage: attach to the running test if any (its output), else drop
    if (lv.running && !PLAN_RE.test(l.text) && !VERSION_RE.test(l.text)) lv.running.lines.push(l.raw);
  }
  // Whatever is still running at the end of the stream was cut off.
  // A test whose end line (OK/FAIL) was printed but not its test point is cut off as well: the
  // test point is the result, the end line only the harness's progress.
  for (let d = levels.length - 1; d >= 0; d--) {
    const lv = levels[d];
    const open = lv?.running ?? lv?.finished;
    if (lv && open) {
      results.push({ name: open.name, status: 'error', reason: 'stream ended while running', lines: open.lines, ...(lv.parent ? { parent: lv.parent } : {}) });
      lv.running = undefined;
      lv.finished = undefined;
      lv.cut = true;
    }
  }
  const topPoints = results.filter((r) => r.number !== undefined && !r.parent).length;
  const stillRunning = levels.some((x) => x?.cut);
  const complete = !stillRunning && planned !== undefined && topPoints >= planned;
  return { tests: results, planned, totals, complete, console: consoleLines, garbage };
}

function cleanName(n: string): string {
  const d = KS_DIRECTIVE_RE.exec(n);
  return (d ? d[1]! : n).trim();
}

function directiveOf(line: string): { kind: string; text: string } | undefined {
  const d = KS_DIRECTIVE_RE.exec(line);
  return d ? { kind: d[2]!.toUpperCase(), text: d[3]!.trim() } : undefined;
}

function toTest(name: string, line: string, r: Result | undefined, lines: string[], parent?: string): KtapTest {
  const ok = r ? r.ok : !line.startsWith('not ');
  const number = r?.id ?? (Number(/^(?:not )?ok\s+(\d+)/.exec(line)?.[1]) || undefined);
  const d = directiveOf(line);
  const base = { name, lines, number, ...(parent ? { parent } : {}) };
  if (r?.skip || d?.kind === 'SKIP') {
    const why = typeof r?.skip === 'string' && r.skip ? r.skip : d?.text;
    return { ...base, status: 'skip', reason: why || 'skipped (no reason given)' };
  }
  if (d?.kind === 'TIMEOUT') return { ...base, status: 'fail', reason: `timeout${d.text ? ` (${d.text})` : ''}` };
  if (ok) {
    if (d?.kind === 'XFAIL') return { ...base, status: 'pass', reason: `expected failure${d.text ? `: ${d.text}` : ''}` };
    if (r?.todo) return { ...base, status: 'pass', reason: `todo${typeof r.todo === 'string' ? `: ${r.todo}` : ''}` };
    return { ...base, status: 'pass' };
  }
  if (d?.kind === 'XPASS') return { ...base, status: 'fail', reason: `unexpected pass${d.text ? `: ${d.text}` : ''}` };
  return { ...base, status: 'fail', reason: failReason(name, lines) ?? 'not ok' };
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
