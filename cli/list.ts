import { parseArgs } from 'node:util';
import { readResults } from '../base/results/file.js';
import { globMatch } from '../base/glob.js';
import { resolveMatrix, suitesFor } from '../runner/matrix.js';
import { checkSelection, listSuites, parseSelection, selectListed, type ListedCase } from '../runner/select.js';
import { SUITES } from '../suites/registry.js';
import { resultsPathOf } from './compare.js';

const HELP = `vfio-conformance list [--suite S ...] [--profile P ...] [--case GLOB ...] [--exclude GLOB ...] [--from RUN] [--json]
  Print the case ids a run would have, one a line, in run order (as a kselftest program's -l).
  Pick them with 'run --case GLOB' and '--exclude GLOB' ('*' matches any characters, '/' included).

  Not every id is known before a target is seen. Each line says how it is known:
    (no mark)  static: the same on every target
    derived    setup derives it from what it finds; listed for the default target, and the note
               at the end says from what (the migration arcs follow the device's migration flags:
               listed for mtty-2; a real device with other flags has other arcs)
    pattern    ids that cannot be listed before setup (one case per test a selftest program prints
               with -l): a glob standing for them; '--from RUN' lists the ids a run of them had

Options:
  --suite S       only this suite (repeatable; default: all). Suites: ${SUITES.map((s) => s.name).join(', ')}
  --profile P     print one line per profile and id, the profile first (repeatable)
  --case GLOB     only ids matching (repeatable); --exclude GLOB drops ids matching (repeatable)
  --from RUN      a run directory: fill the patterns with the ids that run reported
  --json          an array of {suite, id, known, from?, pattern?, profile?}`;

export async function listCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      suite: { type: 'string', multiple: true }, profile: { type: 'string', multiple: true }, arch: { type: 'string' },
      case: { type: 'string', multiple: true }, exclude: { type: 'string', multiple: true },
      from: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  const m = resolveMatrix({ suite: values.suite, profile: values.profile, arch: values.arch });
  const sel = parseSelection(values.case, values.exclude);
  let listed = listSuites(m.suites);
  if (values.from) listed = fillPatterns(listed, values.from);
  checkSelection(listed, sel);
  listed = selectListed(listed, sel);
  const profiles = values.profile?.length ? m.profiles.map((p) => p.name) : [undefined];
  const runsOn = (profile: string) => new Set(suitesFor(m, m.profiles.find((p) => p.name === profile)!).map((s) => s.name));
  const rows = profiles.flatMap((profile) => (profile ? listed.filter((c) => runsOn(profile).has(c.suite)) : listed).map((c) => ({ ...c, ...(profile ? { profile } : {}) })));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  const width = Math.max(...rows.map((r) => r.id.length + (r.profile ? r.profile.length + 1 : 0)));
  for (const r of rows) {
    const name = r.profile ? `${r.profile} ${r.id}` : r.id;
    const mark = r.pattern ? 'pattern' : r.known === 'derived' ? 'derived' : '';
    process.stdout.write(`${mark ? `${name.padEnd(width)}  ${mark}` : name}\n`);
  }
  const notes = new Set(listed.filter((r) => r.from).map((r) => `${r.pattern ? 'pattern' : 'derived'} (${r.suite}): ${r.from}`));
  const count = (f: (r: ListedCase) => boolean) => listed.filter(f).length;
  const patterns = count((r) => !!r.pattern);
  const tail = patterns ? `, ${patterns} pattern${patterns > 1 ? 's' : ''} (ids known once set up)` : '';
  process.stderr.write(`${count((r) => r.known === 'static')} static, ${count((r) => r.known === 'derived' && !r.pattern)} derived${tail}\n`);
  for (const n of notes) process.stderr.write(`  ${n}\n`);
  return 0;
}

/** A pattern entry becomes the ids a previous run reported under it, each marked as seen there. */
function fillPatterns(listed: ListedCase[], run: string): ListedCase[] {
  const path = resultsPathOf(run);
  const seen = [...new Set(readResults(path).results.map((r) => r.id))];
  return listed.flatMap((c) => {
    if (!c.pattern) return [c];
    const ids = seen.filter((id) => globMatch(c.id, id));
    if (!ids.length) return [c];
    return ids.map((id) => ({ suite: c.suite, id, known: 'derived' as const, from: `reported by ${path} (${c.from ?? ''})` }));
  });
}
