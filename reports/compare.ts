/**
 * Comparing runs: each case (id + profile + device.id) across two or more runs, classified between
 * consecutive runs and between the first and the last:
 *
 *   new-failure      pass | warning | expected-unsupported | skip  ->  fail | error
 *   fixed            fail | error  ->  pass | warning | expected-unsupported
 *   new-case         absent -> present
 *   vanished         present -> absent
 *   status-change    any other change of status (pass -> expected-unsupported, skip -> pass,
 *                    fail -> error, fail -> skip, ...); blocked is neither failing nor OK here: the
 *                    case it names carries the new failure or the fix, so pass -> blocked and
 *                    blocked -> pass are status changes
 *   observed-change  same status, but an observed value differs (errno EINVAL -> ENOTTY while both
 *                    pass). Observed objects are flattened to dotted keys (a.b.c); arrays and other
 *                    values are compared whole.
 *   unchanged        same status and same observed values (or absent in both runs)
 *
 * Measurements (timings, byte counts, generated UUIDs) are never a change: `measurementSpread`
 * gives their range across the runs for the release grid.
 *
 * Observed differences are listed with every transition that has them, whatever its class.
 * If a run reports the same case more than once, the repeats are keyed `#2`, `#3`... in order, so
 * each is compared with its counterpart.
 */
import { STATUSES, type CaseResult, type RunResults, type Status } from '../base/results/schema.js';
import { valueText } from './html/text.js';

export type ChangeClass = 'new-failure' | 'fixed' | 'new-case' | 'vanished' | 'status-change' | 'observed-change' | 'unchanged';

/** Most important first: the order of summaries and of the changed rows. */
export const CHANGE_CLASSES: readonly ChangeClass[] = ['new-failure', 'fixed', 'status-change', 'vanished', 'new-case', 'observed-change', 'unchanged'];

/** One observed key that differs. `before`/`after` missing (undefined, omitted in JSON) = key absent. */
export interface ObservedDiff {
  key: string;
  before?: unknown;
  after?: unknown;
}

export interface Transition {
  /** run indexes (into Comparison.runs) */
  from: number;
  to: number;
  class: ChangeClass;
  /** observed keys that differ between the two runs (only when the case is in both) */
  observedChanges: ObservedDiff[];
}

export interface CompareRow {
  /** JSON of [id, profile, deviceId] (plus `#n` for repeats) */
  key: string;
  id: string;
  /** 1, or n for the n-th report of the same case within a run */
  occurrence: number;
  suite: string;
  profile: string;
  device: string;
  /** status per run; null where the run has no such case */
  statuses: (Status | null)[];
  /** observed values per run; null where the run has no such case, {} where it recorded none */
  observed: (Record<string, unknown> | null)[];
  /** measurements per run (timings, bytes, generated ids): shown with their spread, never a change */
  measurements: (Record<string, unknown> | null)[];
  reasons: (string | null)[];
  /** between run i and run i+1 */
  transitions: Transition[];
  /** between the first and the last run (equal to transitions[0] for two runs) */
  overall: Transition;
  /** the most important class among the transitions and overall ('unchanged' if none changed) */
  class: ChangeClass;
}

export interface ComparedRun {
  label: string;
  /** short column name: A, B, C ... */
  tag: string;
  kernel?: string;
  accel?: string;
  qemu?: string;
  startedAt: string;
  complete: boolean;
  harnessErrors: number;
  results: number;
  counts: Record<Status, number>;
}

export type ClassCounts = Record<ChangeClass, number>;

export interface Comparison {
  runs: ComparedRun[];
  rows: CompareRow[];
  summary: {
    /** per consecutive pair: counts of rows per class */
    consecutive: { from: number; to: number; counts: ClassCounts }[];
    /** first vs last */
    overall: { from: number; to: number; counts: ClassCounts };
  };
}

const FAILING: ReadonlySet<Status> = new Set(['fail', 'error']);
const OK: ReadonlySet<Status> = new Set(['pass', 'warning', 'expected-unsupported']);

function tagFor(i: number): string {
  return i < 26 ? String.fromCharCode(65 + i) : `R${i + 1}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Canonical JSON (sorted keys) so {a,b} and {b,a} compare equal. */
function canon(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (isPlainObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? String(v);
}

/** Flatten nested plain objects to dotted keys; an empty object stays a value. */
export function flatten(o: Record<string, unknown>, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isPlainObject(v) && Object.keys(v).length > 0) flatten(v, key, out);
    else out.set(key, v);
  }
  return out;
}

export function observedDiff(a: Record<string, unknown> | undefined, b: Record<string, unknown> | undefined): ObservedDiff[] {
  const fa = flatten(a ?? {});
  const fb = flatten(b ?? {});
  const keys = [...new Set([...fa.keys(), ...fb.keys()])];
  const out: ObservedDiff[] = [];
  for (const k of keys) {
    const ha = fa.has(k);
    const hb = fb.has(k);
    if (ha && hb && canon(fa.get(k)) === canon(fb.get(k))) continue;
    const d: ObservedDiff = { key: k };
    if (ha) d.before = fa.get(k);
    if (hb) d.after = fb.get(k);
    out.push(d);
  }
  return out;
}

/** The class of one transition between two runs' versions of a case (null = absent). */
export function classify(a: { status: Status; observed?: Record<string, unknown> } | null, b: { status: Status; observed?: Record<string, unknown> } | null): { class: ChangeClass; observedChanges: ObservedDiff[] } {
  if (!a && !b) return { class: 'unchanged', observedChanges: [] };
  if (!a) return { class: 'new-case', observedChanges: [] };
  if (!b) return { class: 'vanished', observedChanges: [] };
  const observedChanges = observedDiff(a.observed, b.observed);
  if (a.status === b.status) return { class: observedChanges.length > 0 ? 'observed-change' : 'unchanged', observedChanges };
  if (FAILING.has(b.status) && !FAILING.has(a.status)) return { class: 'new-failure', observedChanges };
  if (FAILING.has(a.status) && OK.has(b.status)) return { class: 'fixed', observedChanges };
  return { class: 'status-change', observedChanges };
}

function zeroCounts(): ClassCounts {
  return Object.fromEntries(CHANGE_CLASSES.map((c) => [c, 0])) as ClassCounts;
}

function keyed(res: RunResults): Map<string, { r: CaseResult; n: number }> {
  const m = new Map<string, { r: CaseResult; n: number }>();
  const seen = new Map<string, number>();
  for (const r of res.results) {
    const base = JSON.stringify([r.id, r.profile, r.device.id]);
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    m.set(n === 1 ? base : `${base}#${n}`, { r, n });
  }
  return m;
}

export function compareRuns(runs: { label: string; res: RunResults }[]): Comparison {
  const maps = runs.map((r) => keyed(r.res));
  // Rows in order of first appearance, earliest run first.
  const keys: string[] = [];
  const known = new Set<string>();
  for (const m of maps) for (const k of m.keys()) if (!known.has(k)) { known.add(k); keys.push(k); }

  const rows: CompareRow[] = keys.map((key) => {
    const found = maps.map((m) => m.get(key));
    const per = found.map((x) => x?.r ?? null);
    const any = per.find((r): r is CaseResult => r !== null)!;
    const occurrence = found.find((x) => x !== undefined)!.n;
    const transition = (from: number, to: number): Transition => ({ from, to, ...classify(per[from] ?? null, per[to] ?? null) });
    const transitions: Transition[] = [];
    for (let i = 0; i + 1 < runs.length; i++) transitions.push(transition(i, i + 1));
    const overall = runs.length >= 2 ? transition(0, runs.length - 1) : { from: 0, to: 0, class: 'unchanged' as const, observedChanges: [] };
    const classes = new Set([overall.class, ...transitions.map((t) => t.class)]);
    const cls = CHANGE_CLASSES.find((c) => classes.has(c)) ?? 'unchanged';
    return {
      key,
      id: any.id,
      occurrence,
      suite: any.suite,
      profile: any.profile,
      device: any.device.id,
      statuses: per.map((r) => r?.status ?? null),
      observed: per.map((r) => (r ? { ...(r.observed ?? {}) } : null)),
      measurements: per.map((r) => (r ? { ...(r.measurements ?? {}) } : null)),
      reasons: per.map((r) => r?.reason ?? null),
      transitions,
      overall,
      class: cls,
    };
  });

  const consecutive = runs.slice(1).map((_, i) => {
    const counts = zeroCounts();
    for (const r of rows) counts[r.transitions[i]!.class]++;
    return { from: i, to: i + 1, counts };
  });
  const overallCounts = zeroCounts();
  for (const r of rows) overallCounts[r.overall.class]++;

  return {
    runs: runs.map(({ label, res }, i) => {
      const counts = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>;
      for (const r of res.results) counts[r.status]++;
      return {
        label,
        tag: tagFor(i),
        kernel: res.run.kernel?.release,
        accel: res.run.accel,
        qemu: res.run.qemu?.version,
        startedAt: res.run.startedAt,
        complete: res.run.complete,
        harnessErrors: res.run.errors.length,
        results: res.results.length,
        counts,
      };
    }),
    rows,
    summary: { consecutive, overall: { from: 0, to: Math.max(0, runs.length - 1), counts: overallCounts } },
  };
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

export function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function statusText(s: Status | null): string {
  return s === null ? '-' : s === 'expected-unsupported' ? 'exp-unsupp' : s;
}

function countsLine(c: ClassCounts): string {
  return CHANGE_CLASSES.map((k) => `${k} ${c[k]}`).join('  ');
}

/** Values of one observed key across the runs, for the lines under a changed row. */
export function keyAcross(row: CompareRow, key: string): string[] {
  return row.observed.map((o) => {
    if (o === null) return '-';
    const f = flatten(o);
    return f.has(key) ? clip(valueText(f.get(key)), 40) : '(absent)';
  });
}

/** Rows most important class first, in their original order within a class. */
export function byImportance(rows: CompareRow[]): CompareRow[] {
  return rows
    .map((r, i) => ({ r, i }))
    .sort((a, b) => CHANGE_CLASSES.indexOf(a.r.class) - CHANGE_CLASSES.indexOf(b.r.class) || a.i - b.i)
    .map((x) => x.r);
}

export function changedKeys(row: CompareRow): string[] {
  const keys: string[] = [];
  for (const t of [...row.transitions, row.overall]) for (const d of t.observedChanges) if (!keys.includes(d.key)) keys.push(d.key);
  return keys;
}

export function changeText(c: Comparison, row: CompareRow): string {
  if (c.runs.length <= 2) return row.overall.class;
  const parts = row.transitions.filter((t) => t.class !== 'unchanged').map((t) => `${c.runs[t.from]!.tag}→${c.runs[t.to]!.tag} ${t.class}`);
  return parts.join(', ') || row.overall.class;
}

/**
 * The terminal view: the runs, the counts per class (each consecutive pair, and first→last when
 * there are more than two runs), then only the rows that changed, most important first, each
 * followed by its changed observed values.
 */
export function formatCompareText(c: Comparison): string {
  const out: string[] = [];
  out.push('Runs:');
  for (const r of c.runs) {
    const notes = [r.complete ? '' : 'INCOMPLETE', r.harnessErrors > 0 ? `${r.harnessErrors} harness error${r.harnessErrors > 1 ? 's' : ''}` : ''].filter(Boolean);
    out.push(
      `  ${r.tag}  ${r.label}  kernel ${r.kernel ?? '?'}${r.accel ? ` (${r.accel})` : ''}, ${r.results} results: ` +
        `${r.counts.pass} pass, ${r.counts.fail} fail, ${r.counts.error} error, ${r.counts.skip} skip, ` +
        `${r.counts['expected-unsupported']} exp-unsupp, ${r.counts.warning} warning, ${r.counts.blocked} blocked` +
        (notes.length > 0 ? `  [${notes.join(', ')}]` : ''),
    );
  }
  out.push('');
  out.push('Summary:');
  for (const s of c.summary.consecutive) out.push(`  ${c.runs[s.from]!.tag}→${c.runs[s.to]!.tag}: ${countsLine(s.counts)}`);
  if (c.runs.length > 2) {
    const o = c.summary.overall;
    out.push(`  ${c.runs[o.from]!.tag}→${c.runs[o.to]!.tag} (first→last): ${countsLine(o.counts)}`);
  }
  out.push('');
  const changed = byImportance(c.rows.filter((r) => r.class !== 'unchanged'));
  if (changed.length === 0) {
    out.push(`No changes: all ${c.rows.length} cases have the same status and observed values in every run.`);
    return `${out.join('\n')}\n`;
  }
  out.push(`Changed cases (${changed.length} of ${c.rows.length}):`);
  const header = ['CASE', 'PROFILE', 'DEVICE', ...c.runs.map((r) => r.tag), 'CHANGE'];
  // A suite that appears or disappears as a whole (255 selftests on a newer kernel) is one line, not 255.
  const { shown, groups } = groupAppearing(changed);
  const table = shown.map((r) => [clip(r.occurrence > 1 ? `${r.id} #${r.occurrence}` : r.id, 72), clip(r.profile, 20), clip(r.device, 20), ...r.statuses.map(statusText), changeText(c, r)]);
  for (const g of groups) {
    table.push([clip(`${g.prefix}/* (${g.rows.length} cases)`, 72), clip(g.rows[0]!.profile, 20), clip(g.rows[0]!.device, 20), ...g.rows[0]!.statuses.map((s) => (s === null ? '-' : 'various')), changeText(c, g.rows[0]!)]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  out.push(line(header));
  shown.forEach((r, n) => {
    out.push(line(table[n]!));
    for (const k of changedKeys(r)) out.push(`    ${k}: ${keyAcross(r, k).join(' → ')}`);
  });
  groups.forEach((_, n) => out.push(line(table[shown.length + n]!)));
  return `${out.join('\n')}\n`;
}

const GROUP_MIN = 8;

/**
 * New and vanished cases that share an id prefix (all but the last path component), profile,
 * device and class are folded into one group once there are GROUP_MIN of them; everything else,
 * and every status or observed change, stays a row of its own.
 */
function groupAppearing(rows: CompareRow[]): { shown: CompareRow[]; groups: { prefix: string; rows: CompareRow[] }[] } {
  const buckets = new Map<string, CompareRow[]>();
  for (const r of rows) {
    if (r.class !== 'new-case' && r.class !== 'vanished') continue;
    const prefix = r.id.includes('/') ? r.id.slice(0, r.id.lastIndexOf('/')) : r.id;
    const key = JSON.stringify([prefix, r.profile, r.device, r.class]);
    buckets.set(key, [...(buckets.get(key) ?? []), r]);
  }
  const groups: { prefix: string; rows: CompareRow[] }[] = [];
  const folded = new Set<CompareRow>();
  for (const [key, rs] of buckets) {
    if (rs.length < GROUP_MIN) continue;
    groups.push({ prefix: (JSON.parse(key) as string[])[0]!, rows: rs });
    for (const r of rs) folded.add(r);
  }
  return { shown: rows.filter((r) => !folded.has(r)), groups };
}

export interface Spread { key: string; min: number; max: number; values: (number | null)[] }

/** Numeric measurements of a row across the runs (dotted keys), with their range. */
export function measurementSpread(row: CompareRow): Spread[] {
  const keys = new Set<string>();
  const flat = row.measurements.map((m) => (m ? flatten(m) : null));
  for (const f of flat) if (f) for (const [k, v] of f) if (typeof v === 'number') keys.add(k);
  return [...keys].map((key) => {
    const values = flat.map((f) => {
      const v = f?.get(key);
      return typeof v === 'number' ? v : null;
    });
    const present = values.filter((v): v is number => v !== null);
    return { key, min: Math.min(...present), max: Math.max(...present), values };
  });
}
