import { parseArgs } from 'node:util';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { RESULTS_FILE, readResults, writeFileAtomicSync } from '../base/results/file.js';
import { compareRuns, formatCompareText } from '../reports/compare.js';
import { renderCompareHtml } from '../reports/release-grid.js';
import type { RunResults } from '../base/results/schema.js';

const HELP = `vfio-conformance compare RUN_A RUN_B [RUN_C ...] [--json] [--html FILE]
  Compare runs case by case (case id + profile + device). RUN is a run directory (holding
  ${RESULTS_FILE}) or the path of a ${RESULTS_FILE}. Runs are compared in the order given, each with the
  next, and the first with the last. Each case is classified as:
    new-failure      pass/warning/expected-unsupported/skip -> fail/error
    fixed            fail/error -> pass/warning/expected-unsupported
    new-case         not in the earlier run
    vanished         not in the later run
    status-change    any other change of status (e.g. expected-unsupported -> pass, skip -> pass)
    observed-change  same status, different observed values (e.g. errno EINVAL -> ENOTTY, both pass)
    unchanged
  The terminal table shows the counts per class, then only the cases that changed, with their
  changed observed values under them. Measurements (timings, byte counts, generated UUIDs) are
  never a change: --html shows their spread across the runs.

Options:
  --json        print the whole comparison as JSON instead of the table
  --html FILE   also write the release grid to FILE: one static page, case x run grouped by suite,
                each cell that changed outlined and named, a summary line per pair of runs
  -h, --help    this text

Exit codes: 0 the comparison was printed (whatever it shows), 2 bad input (missing or invalid
results file, fewer than two runs).`;

/** A run directory (holding results.json) or a results file. */
export function resultsPathOf(arg: string): string {
  let isDir = false;
  try {
    isDir = statSync(arg).isDirectory();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new HarnessError(`${arg}: no such run directory or results file`, { cause: err });
    throw new HarnessError(`${arg}: cannot read: ${e.message}`, { cause: err });
  }
  return isDir ? join(arg, RESULTS_FILE) : arg;
}

export async function compareCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, html: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw new HarnessError(`compare: ${(err as Error).message.split('\n')[0]} (see vfio-conformance compare --help)`, { cause: err });
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length < 2) {
    throw new HarnessError(`compare needs at least two runs, got ${positionals.length} (see vfio-conformance compare --help)`);
  }
  if (values.html !== undefined && values.html.trim() === '') throw new HarnessError('compare: --html needs a file name');

  const runs: { label: string; res: RunResults }[] = positionals.map((arg) => ({ label: arg, res: readResults(resultsPathOf(arg)) }));
  const c = compareRuns(runs);

  if (values.html !== undefined) {
    const path = resolve(values.html);
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (err) {
      throw new HarnessError(`cannot create the directory of ${values.html}: ${(err as Error).message}`, { cause: err });
    }
    writeFileAtomicSync(path, renderCompareHtml(c));
    process.stderr.write(`vfio-conformance: wrote ${values.html}\n`);
  }
  process.stdout.write(values.json ? `${JSON.stringify(c, null, 2)}\n` : formatCompareText(c));
  return 0;
}
