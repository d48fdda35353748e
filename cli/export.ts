import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { readResults, writeFileAtomicSync } from '../base/results/file.js';
import { toKcidb } from '../reports/kcidb.js';
import { readExpectations } from '../reports/gate.js';
import { repoPath } from '../base/paths.js';
import { resultsPathOf } from './compare.js';

const HELP = `vfio-conformance export --kcidb RUN --origin NAME [--git-url URL] [--commit SHA] [--artifacts-url URL]
                          [--run-id ID] [--out FILE] [--baseline RUN] [--expectations F | --no-expectations]
  Write a run (or one shard, or merged shards) as a KCIDB I/O v5 document: one checkout, one build
  and one test per result, for 'kcidb-submit' or KernelCI's API. Ids are '<origin>:...' and the same
  on every export of the same run, so submitting again updates rather than duplicates.

  Test paths: vfio_conformance.<suite>.<...> (e.g. vfio_conformance.migration.arc.STOP_to_RUNNING),
  kselftest.<dir>.<program>.<fixture>.<variant>.<test>; the profile is in the test's environment.
  Status: pass, warning, expected-unsupported -> PASS; fail -> FAIL (a known failure stays FAIL, its
  reason in misc.known); skip -> SKIP; error -> ERROR; a case that never ran ("not run: ...", e.g. a
  missing shard's cells) -> MISS.

Options:
  --kcidb RUN          the run directory (or results.json) to export
  --origin NAME        your CI system's KCIDB origin (lower-case letters, digits, _)
  --git-url URL        the https:// repository of the kernel tree; --commit SHA its full commit hash
  --artifacts-url URL  where the run directory is published: consoles and reproducers are linked
  --run-id ID          what makes this run's tests distinct from another run of the same plan (a CI
                       pipeline id); default: the plan hash of a sharded run, else its start time
  --out FILE           write there (default: standard output)`;

export async function exportCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kcidb: { type: 'string' }, origin: { type: 'string' }, 'git-url': { type: 'string' }, commit: { type: 'string' },
      'artifacts-url': { type: 'string' }, 'run-id': { type: 'string' }, out: { type: 'string' },
      baseline: { type: 'string' }, expectations: { type: 'string' }, 'no-expectations': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (!values.kcidb) throw new HarnessError('export needs --kcidb RUN (the only format today; see --help)');
  if (!values.origin) throw new HarnessError('export --kcidb needs --origin NAME (your CI system\'s KCIDB origin)');
  const res = readResults(resultsPathOf(values.kcidb));
  const doc = toKcidb(res, {
    origin: values.origin, gitUrl: values['git-url'], commit: values.commit, artifactsUrl: values['artifacts-url'], runId: values['run-id'],
    baseline: values.baseline ? readResults(resultsPathOf(values.baseline)) : undefined,
    expectations: values['no-expectations'] ? undefined : readExpectations(values.expectations ?? repoPath('expectations', 'known.json')),
  });
  const text = `${JSON.stringify(doc, null, 2)}\n`;
  if (values.out) {
    writeFileAtomicSync(resolve(values.out), text);
    process.stderr.write(`export: ${(doc.tests as unknown[]).length} tests to ${values.out}\n`);
  } else process.stdout.write(text);
  return 0;
}
