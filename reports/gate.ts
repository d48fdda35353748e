/**
 * Gating for CI: the exit code of `vfio-conformance run --baseline RUN_DIR [--expectations FILE]`.
 *
 *   2  the current run has harness errors (run.errors is not empty) or is incomplete: its results
 *      cannot be trusted to be all there, whatever they say;
 *   1  a case is fail or error and is neither failing the same way in the baseline (same id,
 *      profile and device.id with the same status) nor matched by a known failure in the
 *      expectations file: a regression;
 *   0  otherwise.
 *
 * A blocked case (its precondition, tested by the case named in `blockedBy`, did not hold) is
 * not a regression by itself when that named case did not pass in this run (fail, error, or blocked
 * in turn): the failure counts once, on the named case, which the rules above gate. It is listed
 * under `blocked`. A blocked case whose named case passed, or is absent, is a regression: the run
 * contradicts itself, and that must not pass unseen.
 *
 * Cases that fail but are excused (by the baseline or the expectations) are listed as known
 * failures. Results matched by an expectation that did not fail (pass, warning or
 * expected-unsupported) are listed as unexpected passes: they do not change the exit code, they
 * say an expectation can be removed.
 *
 * Expectations file (JSON):
 *
 *   {
 *     "schema": 1,
 *     "known": [
 *       {
 *         "id": "migration/close-reopen/in-RESUMING",   // exact case id, or a glob with *
 *         "kernel": "7.2*",          // optional: glob on run.kernel.release
 *         "profile": "*",            // optional: glob on the result's profile
 *         "qemu": "10.2*",           // optional: glob on the version of the QEMU the profile ran on
 *         "device": "mtty-2",        // optional: glob on the result's device.id
 *         "status": "fail",          // optional: "fail" or "error"; default: either
 *         "failure": "*Assertion*",  // optional: glob on the result's own reason (what it failed with)
 *         "reason": "mtty keeps migration state across close (kernel bug)"   // required
 *       }
 *     ]
 *   }
 *
 * (The file is plain JSON: no comments.) Globs: `*` matches any run of characters, `/` included;
 * every other character matches itself; the whole string must match. An absent field matches
 * anything; a "kernel" ("qemu") pattern is matched against "" when the run recorded no kernel (QEMU).
A failure that is QEMU's, not the kernel's, is keyed by "qemu" so it never hides the kernel's. Unknown keys
 * are refused, so a misspelt field cannot silently widen an entry.
 */
import { readFileSync } from 'node:fs';
import { HarnessError } from '../base/errors.js';
import type { CaseResult, RunResults, Status } from '../base/results/schema.js';

export const EXPECTATIONS_SCHEMA = 1;

export interface KnownFailure {
  id: string;
  kernel?: string;
  /** glob on the version of the QEMU the result's profile ran on (run.profileQemu, else run.qemu) */
  qemu?: string;
  profile?: string;
  device?: string;
  status?: 'fail' | 'error';
  /**
   * glob on the failure's own reason: a crash that can end any case (QEMU aborting on an
   * assertion) is known by what it says, not by the case it hit; a pass never matches
   */
  failure?: string;
  reason: string;
}

export interface Expectations {
  schema: 1;
  known: KnownFailure[];
}

/** One result as the gate reports it. */
export interface GateItem {
  id: string;
  profile: string;
  device: string;
  status: Status;
  reason?: string;
  /** status of the same case in the baseline: null = not in the baseline; undefined = no baseline */
  baselineStatus?: Status | null;
  /** status blocked: the case that tests the precondition that failed */
  blockedBy?: string;
  /** why it is excused (known failures) or which expectation it contradicts (unexpected passes) */
  known?: { source: 'expectations'; index: number; reason: string } | { source: 'baseline'; reason: string };
}

export interface GateResult {
  exitCode: 0 | 1 | 2;
  regressions: GateItem[];
  knownFailures: GateItem[];
  unexpectedPasses: GateItem[];
  /** blocked cases whose named precondition case did not pass: not regressions by themselves */
  blocked: GateItem[];
  /** why the exit code is 2 (harness errors, incomplete run); empty otherwise */
  harnessProblems: string[];
  /** human-readable, several lines, ending with the verdict */
  summary: string;
  /** set when the run is not the whole matrix (run --case/--exclude, one shard): what it is */
  subset?: string;
}

// Globs: one definition for expectations and --case (base/glob.ts); re-exported for readers of the gate.
export { globToRegExp, globMatch } from '../base/glob.js';
import { globMatch } from '../base/glob.js';

// ---------------------------------------------------------------------------------------------
// Expectations file
// ---------------------------------------------------------------------------------------------

const KNOWN_KEYS = new Set(['id', 'kernel', 'qemu', 'profile', 'device', 'status', 'failure', 'reason']);

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** Validate a parsed expectations document; `source` names it in the one-line error. */
export function validateExpectations(obj: unknown, source = 'expectations'): Expectations {
  const fail = (where: string, what: string): never => {
    throw new HarnessError(`${source}: ${where}: ${what}`, { exitCode: 2 });
  };
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return fail('top level', `expected an object {"schema": ${EXPECTATIONS_SCHEMA}, "known": [...]}, got ${typeName(obj)}`);
  const o = obj as Record<string, unknown>;
  if (o.schema === undefined) fail('schema', `missing (expected "schema": ${EXPECTATIONS_SCHEMA})`);
  if (o.schema !== EXPECTATIONS_SCHEMA) fail('schema', `unsupported version ${JSON.stringify(o.schema)} (this tool reads version ${EXPECTATIONS_SCHEMA})`);
  for (const k of Object.keys(o)) if (k !== 'schema' && k !== 'known') fail(k, 'unknown key (expected only "schema" and "known")');
  if (!Array.isArray(o.known)) return fail('known', `expected an array of known failures, ${o.known === undefined ? 'missing' : `got ${typeName(o.known)}`}`);
  const known: KnownFailure[] = o.known.map((e: unknown, i: number): KnownFailure => {
    const at = `known[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return fail(at, `expected an object, got ${typeName(e)}`);
    const x = e as Record<string, unknown>;
    for (const k of Object.keys(x)) if (!KNOWN_KEYS.has(k)) fail(`${at}.${k}`, `unknown key (allowed: ${[...KNOWN_KEYS].join(', ')})`);
    const str = (k: string, required: boolean): string | undefined => {
      const v = x[k];
      if (v === undefined) {
        if (required) fail(`${at}.${k}`, k === 'reason' ? 'missing (say why this failure is expected)' : 'missing');
        return undefined;
      }
      if (typeof v !== 'string') return fail(`${at}.${k}`, `expected a string, got ${typeName(v)}`);
      if (v.trim() === '') return fail(`${at}.${k}`, 'expected a non-empty string');
      return v;
    };
    const id = str('id', true)!;
    const reason = str('reason', true)!;
    const out: KnownFailure = { id, reason };
    for (const k of ['kernel', 'qemu', 'profile', 'device', 'failure'] as const) {
      const v = str(k, false);
      if (v !== undefined) out[k] = v;
    }
    if (x.status !== undefined) {
      if (x.status !== 'fail' && x.status !== 'error') fail(`${at}.status`, `expected "fail" or "error", got ${typeName(x.status)}`);
      out.status = x.status as 'fail' | 'error';
    }
    return out;
  });
  return { schema: EXPECTATIONS_SCHEMA, known };
}

/** Read and validate an expectations file; throws a one-line HarnessError naming the file and the problem. */
export function readExpectations(path: string): Expectations {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new HarnessError(`${path}: expectations file not found`, { cause: err });
    throw new HarnessError(`${path}: cannot read expectations file: ${e.message}`, { cause: err });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') throw new HarnessError(`${path}: expectations file is empty`);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message.replace(/\s+/g, ' ').slice(0, 160);
    throw new HarnessError(`${path}: not valid JSON (${msg})`, { cause: err });
  }
  return validateExpectations(obj, path);
}

// ---------------------------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------------------------

const FAILING: ReadonlySet<Status> = new Set(['fail', 'error']);
const PASSING: ReadonlySet<Status> = new Set(['pass', 'warning', 'expected-unsupported']);

function caseKey(r: CaseResult): string {
  return JSON.stringify([r.id, r.profile, r.device.id]);
}

/** Index of the first expectation whose patterns match `r` (status not considered), or -1. */
function matchRule(known: KnownFailure[], r: CaseResult, env: { kernel: string; qemu: (profile: string) => string }, wantStatus?: Status): number {
  return known.findIndex(
    (k) =>
      globMatch(k.id, r.id) &&
      (k.kernel === undefined || globMatch(k.kernel, env.kernel)) &&
      (k.qemu === undefined || globMatch(k.qemu, env.qemu(r.profile))) &&
      (k.profile === undefined || globMatch(k.profile, r.profile)) &&
      (k.device === undefined || globMatch(k.device, r.device.id)) &&
      (k.failure === undefined || (r.reason !== undefined && globMatch(k.failure, r.reason))) &&
      (wantStatus === undefined || (k.status === undefined ? FAILING.has(wantStatus) : k.status === wantStatus)),
  );
}

function describe(i: GateItem): string {
  return `${i.id} [${i.profile} ${i.device}] ${i.status}`;
}

export function gate(current: RunResults, opts: { baseline?: RunResults; expectations?: Expectations } = {}): GateResult {
  const env = {
    kernel: current.run.kernel?.release ?? '',
    qemu: (profile: string) => current.run.profileQemu?.[profile]?.version ?? current.run.qemu?.version ?? '',
  };
  const known = opts.expectations?.known ?? [];
  const baseline = new Map<string, Set<Status>>();
  if (opts.baseline) {
    for (const r of opts.baseline.results) {
      const k = caseKey(r);
      let s = baseline.get(k);
      if (!s) baseline.set(k, (s = new Set()));
      s.add(r.status);
    }
  }
  const baselineStatus = (r: CaseResult): Status | null | undefined => {
    if (!opts.baseline) return undefined;
    const s = baseline.get(caseKey(r));
    if (!s) return null;
    if (s.has(r.status)) return r.status;
    return [...s][0]!;
  };

  const regressions: GateItem[] = [];
  const knownFailures: GateItem[] = [];
  const unexpectedPasses: GateItem[] = [];
  const blocked: GateItem[] = [];
  const statusNow = new Map<string, Set<Status>>();
  for (const r of current.results) {
    const k = caseKey(r);
    statusNow.set(k, (statusNow.get(k) ?? new Set<Status>()).add(r.status));
  }
  const blockerDidNotPass = (r: CaseResult): boolean => {
    if (!r.blockedBy) return false;
    const s = statusNow.get(caseKey({ ...r, id: r.blockedBy }));
    return s !== undefined && [...s].some((x) => !PASSING.has(x) && x !== 'skip');
  };
  for (const r of current.results) {
    const item: GateItem = { id: r.id, profile: r.profile, device: r.device.id, status: r.status };
    if (r.reason !== undefined) item.reason = r.reason;
    if (r.blockedBy !== undefined) item.blockedBy = r.blockedBy;
    const bs = baselineStatus(r);
    if (bs !== undefined) item.baselineStatus = bs;
    if (FAILING.has(r.status)) {
      const rule = matchRule(known, r, env, r.status);
      if (rule >= 0) {
        knownFailures.push({ ...item, known: { source: 'expectations', index: rule, reason: known[rule]!.reason } });
      } else if (bs === r.status) {
        knownFailures.push({ ...item, known: { source: 'baseline', reason: `failing the same way (${r.status}) in the baseline` } });
      } else {
        regressions.push(item);
      }
    } else if (PASSING.has(r.status)) {
      const rule = matchRule(known, r, env);
      if (rule >= 0) unexpectedPasses.push({ ...item, known: { source: 'expectations', index: rule, reason: known[rule]!.reason } });
    } else if (r.status === 'blocked') {
      if (blockerDidNotPass(r)) blocked.push(item);
      else regressions.push({ ...item, reason: `${r.reason ?? 'blocked'} (but ${r.blockedBy ?? 'no case'} did not fail in this run)` });
    }
  }

  const harnessProblems: string[] = [];
  for (const e of current.run.errors) harnessProblems.push(`harness error${e.profile ? ` (profile ${e.profile})` : ''}: ${e.message}${e.log ? ` (see ${e.log})` : ''}`);
  if (!current.run.complete) harnessProblems.push(`the run did not complete (complete: false): ${current.results.length} results were recorded`);

  const exitCode: 0 | 1 | 2 = harnessProblems.length > 0 ? 2 : regressions.length > 0 ? 1 : 0;

  const lines: string[] = [];
  for (const p of harnessProblems) lines.push(p);
  for (const i of regressions) {
    const was = i.baselineStatus === undefined ? '' : i.baselineStatus === null ? ' (not in the baseline)' : ` (baseline: ${i.baselineStatus})`;
    lines.push(`regression: ${describe(i)}${i.reason ? `: ${i.reason}` : ''}${was}`);
  }
  for (const i of knownFailures) {
    const why = i.known?.source === 'expectations' ? `expected (known[${i.known.index}]): ${i.known.reason}` : i.known?.reason ?? '';
    lines.push(`known failure: ${describe(i)}: ${why}`);
  }
  const byBlocker = new Map<string, number>();
  for (const i of blocked) {
    const k = `${i.blockedBy} [${i.profile} ${i.device}]`;
    byBlocker.set(k, (byBlocker.get(k) ?? 0) + 1);
  }
  for (const [k, n] of byBlocker) lines.push(`blocked: ${n} case${n > 1 ? 's' : ''} by the failure of ${k}`);
  for (const i of unexpectedPasses) {
    const idx = i.known?.source === 'expectations' ? i.known.index : -1;
    lines.push(`unexpected pass: ${describe(i)} matches known[${idx}] ("${i.known?.reason ?? ''}"): remove or narrow that expectation?`);
  }
  if (opts.baseline) {
    const now = new Set(current.results.map(caseKey));
    const missing = [...baseline.keys()].filter((k) => !now.has(k)).length;
    if (missing > 0) lines.push(`note: ${missing} case${missing > 1 ? 's' : ''} of the baseline ${missing > 1 ? 'are' : 'is'} not in this run`);
  }
  const subset = subsetOf(current.run);
  if (subset) lines.push(`note: ${subset}`);
  const plural = (n: number, w: string, pl = `${w}s`): string => `${n} ${n === 1 ? w : pl}`;
  const verdict = exitCode === 2 ? 'HARNESS ERROR' : exitCode === 1 ? 'REGRESSION' : 'OK';
  lines.push(
    `gate: ${verdict} (exit ${exitCode}): ${plural(regressions.length, 'regression')}, ${plural(knownFailures.length, 'known failure')}, ` +
      `${plural(unexpectedPasses.length, 'unexpected pass', 'unexpected passes')}` +
      `${blocked.length > 0 ? `, ${blocked.length} blocked by a failed precondition` : ''}` +
      `${harnessProblems.length > 0 ? `, ${plural(harnessProblems.length, 'harness problem')}` : ''}; ${current.results.length} results` +
      `${opts.baseline ? ', compared with the baseline' : ''}${opts.expectations ? `, ${plural(known.length, 'expectation')}` : ''}` +
      `${subset ? ' (a subset, not the complete matrix)' : ''}`,
  );
  return { exitCode, regressions, knownFailures, unexpectedPasses, blocked, harnessProblems, summary: lines.join('\n'), ...(subset ? { subset } : {}) };
}

/** A shard or a --case run judges only what it ran: say so, so no one reads it as the whole matrix. */
export function subsetOf(run: RunResults['run']): string | undefined {
  const sel = run.selection;
  const picked = sel ? `--case ${sel.include.join(' ') || '*'}${sel.exclude.length ? ` --exclude ${sel.exclude.join(' ')}` : ''}` : undefined;
  if (run.shard) return `shard ${run.shard.index}/${run.shard.total} of plan ${run.shard.planHash}: only its cells (${run.shard.cells.join(', ') || 'none'})${picked ? `, ${picked}` : ''}; merge the shards for the matrix`;
  if (picked) return `a subset of the matrix (${picked}): not the complete matrix`;
  return undefined;
}
