/**
 * results.json: writing it incrementally and atomically during a run, and reading it back with
 * validation. Everything downstream (JUnit, HTML, compare, gating) reads through `readResults`, so a
 * file from another schema version, a truncated copy or a hand-edited file is refused here with
 * one line naming what is wrong and where, instead of surfacing later as `undefined` in a report.
 *
 * Atomicity: every mutation serialises the whole document, writes it to a temporary file in the same
 * directory, fsyncs it, renames it over results.json and fsyncs the directory. rename(2) within one
 * file system is atomic, so a reader (or a run killed at any instant, even by SIGKILL in the middle
 * of a write) only ever sees the previous complete file or the new complete file. A run that died
 * half-way therefore leaves a valid results.json with `run.complete: false` and every result that
 * `add()` had returned for.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { HarnessError } from '../errors.js';
import {
  SCHEMA_VERSION,
  CaseResultShape,
  RunInfoShape,
  type CaseResult,
  type ConsoleFault,
  type DeviceInfo,
  type RunInfo,
  type RunResults,
  type Status,
} from './schema.js';
import { arrayOf, got, isObject, problemsOf } from './shape.js';

export const RESULTS_FILE = 'results.json';

// ---------------------------------------------------------------------------------------------
// Atomic write
// ---------------------------------------------------------------------------------------------

let tmpCounter = 0;

/**
 * Write `data` to `path` so that `path` is, at every instant, either its old content or `data`:
 * temp file in the same directory (same file system, so rename is atomic), fsync, rename, fsync dir.
 */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${++tmpCounter}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w', 0o644);
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try { closeSync(fd); } catch { /* already failing */ }
    }
    try { rmSync(tmp, { force: true }); } catch { /* best effort */ }
    throw new HarnessError(`cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
  // Make the rename itself durable. Some file systems refuse fsync on a directory; the rename has
  // still happened atomically, only its durability across a power cut is weaker there.
  try {
    const dfd = openSync(dir, 'r');
    try { fsyncSync(dfd); } finally { closeSync(dfd); }
  } catch { /* best effort */ }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/**
 * Keeps results.json current while a run goes on. Each call returns only once the new file is on
 * disk (synchronous on purpose: when `add()` returns, a kill cannot lose that result).
 * Each result is serialised once when added and the file is assembled from those pieces, so a
 * rewrite costs one write of the file, not a re-serialisation of every result.
 */
export class ResultsWriter {
  readonly path: string;
  private runInfo: RunInfo;
  private readonly resultCopies: CaseResult[] = [];
  private readonly serialised: string[] = [];
  private finished = false;

  constructor(readonly runDir: string, runInfo: RunInfo) {
    this.path = join(runDir, RESULTS_FILE);
    const run = clone(runInfo);
    const problems = problemsOf(RunInfoShape, run, 'run');
    if (problems.length > 0) throw validationError('invalid run info', problems);
    this.runInfo = run;
    mkdirSync(runDir, { recursive: true });
    this.flush();
  }

  /** A snapshot of the run info as last written. */
  get run(): RunInfo {
    return clone(this.runInfo);
  }

  /** Snapshots of the results written so far, in order. */
  get results(): CaseResult[] {
    return this.resultCopies.map(clone);
  }

  get count(): number {
    return this.serialised.length;
  }

  /** Validate `result`, record a copy of it (later changes by the caller are not seen) and rewrite the file. */
  add(result: CaseResult): void {
    this.assertOpen('add a result');
    const copy = clone(result);
    const problems = problemsOf(CaseResultShape, copy, `results[${this.serialised.length}]`);
    if (problems.length > 0) throw validationError(`refusing to record result ${JSON.stringify(result?.id)}`, problems);
    this.serialised.push(`    ${indent(JSON.stringify(copy, null, 2), '    ')}`);
    this.resultCopies.push(copy);
    try {
      this.flush();
    } catch (err) {
      this.serialised.pop();
      this.resultCopies.pop();
      throw err;
    }
  }

  /** Merge `patch` into the run info (validated as a whole) and rewrite the file. */
  updateRun(patch: Partial<RunInfo>): void {
    this.assertOpen('update the run');
    this.setRun({ ...this.runInfo, ...clone(patch) } as RunInfo);
  }

  /** Mark the run complete (endedAt defaults to now) and rewrite the file. No mutation is accepted after. */
  finish(patch: Partial<RunInfo> = {}): void {
    this.assertOpen('finish the run');
    this.setRun({ ...this.runInfo, ...clone(patch), complete: true, endedAt: patch.endedAt ?? new Date().toISOString() } as RunInfo);
    this.finished = true;
  }

  /** The document as last written. */
  snapshot(): RunResults {
    return { schema: SCHEMA_VERSION, run: this.run, results: this.results };
  }

  private setRun(next: RunInfo): void {
    const problems = problemsOf(RunInfoShape, next, 'run');
    if (problems.length > 0) throw validationError('invalid run info', problems);
    const prev = this.runInfo;
    this.runInfo = next;
    try {
      this.flush();
    } catch (err) {
      this.runInfo = prev;
      throw err;
    }
  }

  private assertOpen(what: string): void {
    if (this.finished) throw new HarnessError(`cannot ${what}: ${this.path} is already finished`);
  }

  private flush(): void {
    const results = this.serialised.length === 0 ? '[]' : `[\n${this.serialised.join(',\n')}\n  ]`;
    const text =
      `{\n  "schema": ${SCHEMA_VERSION},\n` +
      `  "run": ${indent(JSON.stringify(this.runInfo, null, 2), '  ')},\n` +
      `  "results": ${results}\n}\n`;
    writeFileAtomicSync(this.path, text);
  }
}

/** Indent the continuation lines of pretty-printed JSON (the first line follows a key or a list pad). */
function indent(json: string, pad: string): string {
  return json.replace(/\n/g, `\n${pad}`);
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

// ---------------------------------------------------------------------------------------------
// Reading and validation
// ---------------------------------------------------------------------------------------------

/** A HarnessError that also carries every problem found (the message names the first). */
export class ResultsValidationError extends HarnessError {
  constructor(message: string, readonly problems: string[]) {
    super(message, { exitCode: 2 });
    this.name = 'ResultsValidationError';
  }
}

function validationError(prefix: string, problems: string[]): ResultsValidationError {
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
  return new ResultsValidationError(`${prefix}: ${problems[0]}${more}`, problems);
}

/**
 * Read and validate a results file. Throws HarnessError with one line naming the file and the
 * problem: missing, empty/truncated/not JSON (with position), other schema version, or the JSON path
 * of the first bad field.
 */
export function readResults(path: string): RunResults {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new HarnessError(`${path}: results file not found`, { cause: err });
    if (e.code === 'EISDIR') throw new HarnessError(`${path}: is a directory, expected a results file (did you mean ${join(path, RESULTS_FILE)}?)`, { cause: err });
    throw new HarnessError(`${path}: cannot read results file: ${e.message}`, { cause: err });
  }
  return parseResults(text, path);
}

/** Parse and validate the text of a results file; `source` names it in error messages. */
export function parseResults(text: string, source = 'results.json'): RunResults {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') throw new HarnessError(`${source}: file is empty (truncated or not JSON)`);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new HarnessError(`${source}: truncated or not JSON ${describeJsonError(text, err as Error)}`, { cause: err });
  }
  return validateResults(obj, source);
}

function describeJsonError(text: string, err: Error): string {
  const msg = err.message;
  // V8 names the position for some errors only ("... in JSON at position 12"), and Node 20 not for
  // an unexpected token; find it ourselves when it is missing.
  const m = /at position (\d+)/.exec(msg);
  const pos = m ? Number(m[1]) : jsonErrorPosition(text);
  const detail = msg
    .replace(/\s*in JSON at position \d+.*$/s, '')
    .replace(/, (\.\.\.)?".*" is not valid JSON$/s, '') // Node 20+ quotes a snippet; the position says more
    .replace(/\s+/g, ' ')
    .slice(0, 120);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  const where = pos >= text.length ? `at end of file, position ${pos}` : `at position ${pos}`;
  return `(${where}, line ${line} column ${column}: ${detail})`;
}

/**
 * Offset of the first JSON syntax error in `text` (text.length when it ends too early), by a small
 * recursive-descent scan. Only used to word an error, after JSON.parse has already refused the text.
 */
export function jsonErrorPosition(text: string): number {
  let i = 0;
  const n = text.length;
  class Stop { constructor(readonly at: number) {} }
  const ws = (): void => { while (i < n && ' \t\n\r'.includes(text[i]!)) i++; };
  const fail = (): never => { throw new Stop(Math.min(i, n)); };
  const lit = (word: string): void => { for (const ch of word) { if (text[i] !== ch) fail(); i++; } };
  const str = (): void => {
    i++; // opening quote
    for (;;) {
      if (i >= n) fail();
      const c = text.charCodeAt(i);
      if (c === 0x22) { i++; return; }
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        if (i >= n) fail();
        if (text[i] === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) { i += k; fail(); }
          i += 5;
        } else if ('"\\/bfnrt'.includes(text[i]!)) i++;
        else fail();
      } else i++;
    }
  };
  const number = (): void => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '' || m[0] === '-') fail();
    i += m![0].length;
  };
  const value = (): void => {
    ws();
    if (i >= n) fail();
    const c = text[i]!;
    if (c === '{') {
      i++; ws();
      if (text[i] === '}') { i++; return; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        str(); ws();
        if (text[i] !== ':') fail();
        i++; value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return; }
        fail();
      }
    } else if (c === '[') {
      i++; ws();
      if (text[i] === ']') { i++; return; }
      for (;;) {
        value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return; }
        fail();
      }
    } else if (c === '"') str();
    else if (c === 't') lit('true');
    else if (c === 'f') lit('false');
    else if (c === 'n') lit('null');
    else number();
  };
  try {
    value();
    ws();
    if (i < n) fail();
    return n; // parsed fine here: JSON.parse must have refused something else; point at the end
  } catch (e) {
    return e instanceof Stop ? e.at : n; // e.g. nesting too deep for the stack: point at the end
  }
}

/**
 * Validate a parsed results document against the shapes schema.ts declares its types with. Unknown
 * extra fields are kept (forward-compatible additions within a schema version); missing or mistyped
 * known fields are errors naming their JSON path, e.g. `results[3].status: expected one of
 * pass|fail|..., got "ok"`.
 */
export function validateResults(obj: unknown, source = 'results'): RunResults {
  if (!isObject(obj)) throw new HarnessError(`${source}: expected a JSON object with "schema", "run" and "results", ${got(obj)}`);
  if (!('schema' in obj)) {
    throw new HarnessError(`${source}: no "schema" field: not a vfio-conformance results file (this tool reads schema version ${SCHEMA_VERSION})`);
  }
  const schema = obj.schema;
  if (typeof schema !== 'number' || !Number.isInteger(schema)) {
    throw new HarnessError(`${source}: schema: expected an integer version, ${got(schema)} (this tool reads schema version ${SCHEMA_VERSION})`);
  }
  if (schema !== SCHEMA_VERSION) {
    const hint = schema > SCHEMA_VERSION
      ? 'written by a newer vfio-conformance; upgrade this tool to read it'
      : 'written by an older vfio-conformance; read it with that version or re-run';
    throw new HarnessError(`${source}: results schema version ${schema} found, this tool reads version ${SCHEMA_VERSION} (${hint})`);
  }
  const problems = [
    ...problemsOf(RunInfoShape, obj.run, 'run'),
    ...problemsOf(arrayOf(CaseResultShape), obj.results, 'results'),
  ];
  if (problems.length > 0) throw validationError(source, problems);
  return obj as unknown as RunResults;
}

/** Validate one case result; throws like validateResults. `path` names it in messages. */
export function validateCaseResult(obj: unknown, path = 'result'): CaseResult {
  const problems = problemsOf(CaseResultShape, obj, path);
  if (problems.length > 0) throw validationError('invalid result', problems);
  return obj as CaseResult;
}

// ---------------------------------------------------------------------------------------------
// Status mapping for JUnit
// ---------------------------------------------------------------------------------------------

export type JUnitOutcome =
  | { element: 'failure' | 'error'; type: Status }
  | { element: 'skipped' }
  /** a passed testcase; `note` goes first in system-out and into the testcase property `vfio-conformance.status` */
  | { element: 'passed'; note?: string };

/**
 * How a status appears to JUnit readers (Jenkins, GitLab, GitHub report actions), which only know
 * passed / failure / error / skipped:
 *   fail  -> <failure>   the device or kernel broke the contract
 *   error -> <error>     the harness could not complete the case (agent died, timeout, ...)
 *   skip  -> <skipped message=reason>   the case could not run and says why
 *   expected-unsupported -> passed. It is not skipped: the case ran and asserted that the kernel or
 *            device refuses the feature the documented way (e.g. -ENOTTY / no flag). Reporting it
 *            as skipped would hide a regression in that assertion and inflate "skipped" counts in
 *            CI dashboards. The status is kept visible as a testcase property and a system-out line.
 *   warning -> passed, with the reason in system-out and a property. The contract held but something
 *            deserves a look (e.g. slow arc, kernel WARNING not attributable to the step). A JUnit
 *            failure would gate CI on it, and JUnit has no "passed with warning" state, so the
 *            reason travels as output; the HTML report and compare show warnings first-class.
 *   blocked -> <skipped message="blocked by ID: reason">. The case's own assertion never ran (a
 *            precondition another case tests failed), so it is neither passed nor a failure of
 *            its own: the named case carries the failure, and CI counts it once.
 */
export function junitOutcome(status: Status, reason?: string): JUnitOutcome {
  switch (status) {
    case 'pass':
      return { element: 'passed' };
    case 'fail':
      return { element: 'failure', type: 'fail' };
    case 'error':
      return { element: 'error', type: 'error' };
    case 'skip':
      return { element: 'skipped' };
    case 'expected-unsupported':
      return { element: 'passed', note: `expected-unsupported: asserted as unsupported on this kernel/device${reason ? ` (${reason})` : ''}` };
    case 'warning':
      return { element: 'passed', note: `warning: ${reason ?? '(no reason given)'}` };
    case 'blocked':
      return { element: 'skipped' };
  }
}

/** Re-exported so callers of this module have the types at hand. */
export type { CaseResult, ConsoleFault, DeviceInfo, RunInfo, RunResults, Status };
