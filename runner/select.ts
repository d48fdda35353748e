/**
 * Subsets of the matrix by case id: `list` shows the ids, `run --case GLOB --exclude GLOB` runs the
 * ids the includes match (all when none is given) less those an exclude matches. A suite is set up
 * only when some id it lists (or a pattern it cannot list before setup) may be selected; the cases
 * its setup returns are filtered by the same rule, so a derived id (another device's arcs) is
 * selected exactly as a listed one.
 */
import { HarnessError } from '../base/errors.js';
import { globMatch, globsMayOverlap } from '../base/glob.js';
import type { CaseListing, Suite } from '../suites/types.js';

export interface Selection {
  include: string[];
  exclude: string[];
}

/** One listed id with its suite: what `list` prints. */
export interface ListedCase extends CaseListing {
  suite: string;
}

/** undefined when neither --case nor --exclude was given: the whole matrix. */
export function parseSelection(include: string[] = [], exclude: string[] = []): Selection | undefined {
  for (const [flag, globs] of [['--case', include], ['--exclude', exclude]] as const) {
    for (const g of globs) {
      if (!g.trim()) throw new HarnessError(`${flag} needs a case id or a glob (e.g. 'migration/arc/*'), got an empty string`);
    }
  }
  if (!include.length && !exclude.length) return undefined;
  return { include: [...include], exclude: [...exclude] };
}

export function selects(sel: Selection | undefined, id: string): boolean {
  if (!sel) return true;
  if (sel.include.length && !sel.include.some((g) => globMatch(g, id))) return false;
  return !sel.exclude.some((g) => globMatch(g, id));
}

/** A pattern entry (ids unknown before setup) may hold selected ids unless an exclude covers it whole. */
function patternMaySelect(sel: Selection, pattern: string): boolean {
  if (sel.exclude.some((g) => globMatch(g, pattern))) return false;
  return !sel.include.length || sel.include.some((g) => globsMayOverlap(g, pattern));
}

/** Every suite's listing, in run order, each entry tagged with its suite. */
export function listSuites(suites: Suite<unknown>[]): ListedCase[] {
  return suites.flatMap((s) => {
    if (!s.list) throw new HarnessError(`suite '${s.name}' cannot list its cases before setup (it has no list())`);
    return s.list().map((c) => ({ ...c, suite: s.name }));
  });
}

/** The listed entries a selection keeps (patterns that may hold selected ids included). */
export function selectListed(listed: ListedCase[], sel: Selection | undefined): ListedCase[] {
  if (!sel) return listed;
  return listed.filter((c) => (c.pattern ? patternMaySelect(sel, c.id) : selects(sel, c.id)));
}

/**
 * A --case glob that can match nothing is a typo: refuse it before anything is built. A glob counts
 * when it matches a listed id or may reach a pattern's ids.
 */
export function checkSelection(listed: ListedCase[], sel: Selection | undefined): void {
  if (!sel) return;
  for (const g of sel.include) {
    const hit = listed.some((c) => (c.pattern ? globsMayOverlap(g, c.id) : globMatch(g, c.id)));
    if (!hit) throw new HarnessError(`--case '${g}' matches no case id of the suites in this run (see 'vfio-conformance list'; '*' matches any characters, '/' included)`);
  }
  if (!selectListed(listed, sel).length) throw new HarnessError(`--case ${sel.include.join(' ')} with --exclude ${sel.exclude.join(' ')} leaves no case to run`);
}

/** The suites a selection may reach, each set up as usual and keeping only the selected cases. */
export function selectSuites(suites: Suite<unknown>[], sel: Selection | undefined): Suite<unknown>[] {
  if (!sel) return suites;
  return suites
    .filter((s) => !s.list || selectListed(listSuites([s]), sel).length > 0)
    .map((s) => restrictSuite(s, sel));
}

/** The same suite, whose setup returns only the cases `sel` selects. */
export function restrictSuite<S>(suite: Suite<S>, sel: Selection): Suite<S> {
  return {
    ...suite,
    async setup(target, agent) {
      const r = await suite.setup(target, agent);
      return { ...r, cases: r.cases.filter((c) => selects(sel, c.id)) };
    },
  };
}
