/**
 * The qtests our patch series brings (QEMU's tests/qtest): named in images/qemu/patches/qtests,
 * built by `qemu build` beside qemu-system-*, and run against the built binary. Each patch emulates
 * hardware the guest kernel then relies on; its qtest is the check that the emulation itself does
 * what the specification says, before any kernel looks at it.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { HarnessError } from '../../base/errors.js';
import { repoPath } from '../../base/paths.js';
import { runLogged } from '../../base/proc.js';
import { SYSTEM_FIRMWARE } from '../../harness/qemu/binary.js';

/** One qtest binary (tests/qtest/<name>.c) and the test paths our patches add to it. */
export interface QtestSpec {
  name: string;
  /**
   * Test path prefixes (without the /<arch> QEMU puts first) that must have run and passed: a
   * qtest that skips its new tests (a device missing from the build) must not count as a pass.
   */
  required: string[];
  /** the qemu-system target the qtest runs against */
  target: 'x86_64' | 'aarch64';
}

export const QTESTS_FILE = repoPath('images', 'qemu', 'patches', 'qtests');

/**
 * Parse the qtests file: `NAME TARGET [PATH-PREFIX...]` a line, '#' comments. A name must be a
 * qtest's file name without .c, so a typo fails here and not as an unknown ninja target.
 */
export function parseQtests(text: string, file = QTESTS_FILE): QtestSpec[] {
  const out: QtestSpec[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const [name, target, ...required] = line.split(/\s+/);
    const where = `${file}:${i + 1}`;
    if (!/^[a-z0-9][a-z0-9-]*-test$/.test(name!)) throw new HarnessError(`${where}: '${name}' is not a qtest name (tests/qtest/NAME.c, NAME ending in -test)`);
    if (target !== 'x86_64' && target !== 'aarch64') throw new HarnessError(`${where}: target '${target ?? ''}' is not x86_64 or aarch64`);
    const bad = required.find((p) => !p.startsWith('/'));
    if (bad) throw new HarnessError(`${where}: test path '${bad}' must start with /`);
    if (out.some((q) => q.name === name)) throw new HarnessError(`${where}: ${name} is listed twice`);
    out.push({ name: name!, target, required });
  });
  return out;
}

export function readQtests(file = QTESTS_FILE): QtestSpec[] {
  if (!existsSync(file)) return [];
  return parseQtests(readFileSync(file, 'utf8'), file);
}

const target = (name: string) => `tests/qtest/${name}`;

/** Build the listed qtests in a configured QEMU build directory; name -> binary. */
export async function buildQtests(buildDir: string, specs: QtestSpec[], o: { jobs: number; log: string; env: Record<string, string> }): Promise<Record<string, string>> {
  if (!specs.length) return {};
  for (const q of specs) {
    const known = await execa('ninja', ['-C', buildDir, '-t', 'query', target(q.name)], { reject: false, env: o.env });
    if (known.exitCode !== 0) throw new HarnessError(`qtest ${q.name} (images/qemu/patches/qtests) is not a target of this QEMU build: no tests/qtest/${q.name}.c in the tree, or its meson.build does not list it`);
  }
  await runLogged('ninja', ['-C', buildDir, `-j${o.jobs}`, ...specs.map((q) => target(q.name))], { log: o.log, env: o.env, what: 'qtest build (ninja)' });
  return Object.fromEntries(specs.map((q) => [q.name, join(buildDir, target(q.name))]));
}

/** One TAP line of a qtest (GLib's g_test with --tap). */
export interface TapTest {
  n: number;
  ok: boolean;
  /** the test path, e.g. /x86_64/q35/intel-iommu/ssads/dma */
  path: string;
  skip?: string;
}

export interface TapRun {
  plan?: number;
  tests: TapTest[];
  bailOut?: string;
}

/** Read the TAP GLib prints: `ok N /path`, `not ok N /path`, `# SKIP reason`, `1..N`, `Bail out!`. */
export function parseQtestTap(text: string): TapRun {
  const run: TapRun = { tests: [] };
  for (const line of text.split('\n')) {
    const plan = /^1\.\.(\d+)/.exec(line);
    if (plan) { run.plan = Number(plan[1]); continue; }
    const bail = /^Bail out!\s*(.*)$/.exec(line);
    if (bail) { run.bailOut = bail[1] || 'no reason given'; continue; }
    const m = /^(not )?ok (\d+)\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(SKIP|TODO)\b\s*(.*))?$/i.exec(line);
    if (!m) continue;
    const test: TapTest = { n: Number(m[2]), ok: !m[1], path: m[3]! };
    if (m[4]?.toUpperCase() === 'SKIP') test.skip = m[5] || 'no reason given';
    run.tests.push(test);
  }
  return run;
}

/**
 * What is wrong with one qtest run, in words (empty: it passed): a failed or missing test, a bail
 * out, a plan the run fell short of, a required test that did not run or was skipped.
 */
export function judgeQtest(run: TapRun, spec: QtestSpec, exitCode: number | undefined): string[] {
  const problems: string[] = [];
  if (run.bailOut) problems.push(`bailed out: ${run.bailOut}`);
  for (const t of run.tests.filter((x) => !x.ok)) problems.push(`not ok ${t.n} ${t.path}`);
  if (run.plan === undefined) problems.push('no TAP plan: the qtest did not finish');
  else if (run.tests.length !== run.plan) problems.push(`${run.tests.length} of ${run.plan} planned tests reported`);
  const strip = (p: string) => p.replace(/^\/[^/]+/, '');
  for (const r of spec.required) {
    const hits = run.tests.filter((t) => strip(t.path).startsWith(r));
    if (!hits.length) problems.push(`no test under ${r} ran`);
    for (const t of hits.filter((x) => x.skip)) problems.push(`${t.path} was skipped: ${t.skip}`);
  }
  if (exitCode !== 0 && !problems.length) problems.push(`exit code ${String(exitCode)}`);
  return problems;
}

export interface QtestResult {
  spec: QtestSpec;
  exitCode?: number;
  timedOut: boolean;
  run: TapRun;
  problems: string[];
  ms: number;
  /** stdout and stderr, for the report of a failure */
  output: string;
}

/**
 * Run one built qtest against the built QEMU. QTEST_QEMU_BINARY names a wrapper that adds the
 * system firmware directories, as the harness does for a built QEMU's boots (the +ds source ships
 * no SeaBIOS): qtest derives the target from that name, so it is called qemu-system-<target> too.
 */
export async function runQtest(spec: QtestSpec, build: { qtests?: Record<string, string>; buildDir: string }, o: { timeoutMs?: number } = {}): Promise<QtestResult> {
  const binary = build.qtests?.[spec.name];
  if (!binary || !existsSync(binary)) throw new HarnessError(`qtest ${spec.name} is not built in ${build.buildDir}: run 'vfio-conformance qemu build'`);
  const qemu = join(build.buildDir, `qemu-system-${spec.target}`);
  if (!existsSync(qemu)) throw new HarnessError(`no ${qemu} to run qtest ${spec.name} against`);
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-qtest-'));
  const wrapper = join(dir, `qemu-system-${spec.target}`);
  const firmware = SYSTEM_FIRMWARE.filter((d) => existsSync(d)).flatMap((d) => ['-L', d]).join(' ');
  writeFileSync(wrapper, `#!/bin/sh\nexec '${qemu}' ${firmware} "$@"\n`, { mode: 0o755 });
  const started = Date.now();
  try {
    const r = await execa(binary, ['--tap', '-k'], {
      reject: false, all: true, stdin: 'ignore', timeout: o.timeoutMs ?? 300_000,
      env: { QTEST_QEMU_BINARY: wrapper, PATH: process.env.PATH ?? '/usr/bin:/bin' }, extendEnv: false,
    });
    const run = parseQtestTap(String(r.stdout ?? ''));
    const problems = r.timedOut ? [`timed out after ${Math.round((o.timeoutMs ?? 300_000) / 1000)} s`] : judgeQtest(run, spec, r.exitCode);
    return { spec, exitCode: r.exitCode, timedOut: !!r.timedOut, run, problems, ms: Date.now() - started, output: String(r.all ?? '') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
