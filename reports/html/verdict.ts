/**
 * What a result is to a reader, once the gate has spoken: a regression, a known failure (and why),
 * a warning, a skip, expected-unsupported or a pass. The report only reads the verdict; the gate
 * (reports/gate.ts) computes it from the results and the expectations or baseline.
 */
import type { CaseResult, Status } from '../../base/results/schema.js';

/**
 * The gate's verdict as the report shows it: which failures are known (and why) and how many
 * regressions. Computed from the results and the expectations by the caller.
 */
export interface ReportVerdict {
  exitCode: 0 | 1 | 2;
  regressions: number;
  /** `${id}\0${profile}\0${device id}` -> why it is known (expectations or baseline) */
  known: Map<string, string>;
  /** why the exit code is 2 (harness errors, an incomplete run) */
  harnessProblems?: string[];
}

export const knownKey = (id: string, profile: string, device: string): string => `${id}\0${profile}\0${device}`;

/** Why a failed result is known, when the verdict says it is. */
export const knownWhy = (v: ReportVerdict | undefined, r: CaseResult): string | undefined => v?.known.get(knownKey(r.id, r.profile, r.device.id));

/** The reader's categories, most severe first: the order of the matrix chips, filters and cell colours. */
export const CATEGORIES = ['fail', 'known', 'blocked', 'warning', 'skip', 'unsupported', 'pass'] as const;
export type Category = typeof CATEGORIES[number];

export const CATEGORY_LABEL: Record<Category, string> = {
  fail: 'fail',
  known: 'known',
  blocked: 'blocked',
  warning: 'warning',
  skip: 'skip',
  unsupported: 'unsupported (expected)',
  pass: 'pass',
};

const FAILING: ReadonlySet<Status> = new Set(['fail', 'error']);

export const isFailing = (s: Status): boolean => FAILING.has(s);

/**
 * fail and error are a regression ("fail") unless the verdict knows them; a status this page does
 * not know yet counts with the skips (it did not pass and did not fail).
 */
export function categoryOf(r: CaseResult, v: ReportVerdict | undefined): Category {
  if (FAILING.has(r.status)) return knownWhy(v, r) !== undefined ? 'known' : 'fail';
  switch (r.status) {
    case 'pass': return 'pass';
    case 'warning': return 'warning';
    // never a pass: it did not get to its own check, and names the case that explains it
    case 'blocked': return 'blocked';
    case 'expected-unsupported': return 'unsupported';
    default: return 'skip';
  }
}

/** The most severe category of several. */
export function worst(cats: Iterable<Category>): Category {
  let best = CATEGORIES.length - 1;
  for (const c of cats) best = Math.min(best, CATEGORIES.indexOf(c));
  return CATEGORIES[best]!;
}

export type Counts = Record<Category, number>;
export const zeroCounts = (): Counts => ({ fail: 0, known: 0, blocked: 0, warning: 0, skip: 0, unsupported: 0, pass: 0 });
