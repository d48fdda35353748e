import { parseArgs } from 'node:util';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { RESULTS_FILE, readResults, writeFileAtomicSync } from '../base/results/file.js';
import { mergeShards } from '../reports/merge.js';
import { readExpectations } from '../reports/gate.js';
import { repoPath } from '../base/paths.js';
import { resultsPathOf } from './compare.js';
import { reportRun } from './finish.js';

const HELP = `vfio-conformance merge RUN... [--out DIR] [--baseline RUN] [--expectations F | --no-expectations]
  Join the run directories of the shards of one plan ('run --shard I/N') into one run: results.json,
  junit.xml and index.html in --out, then gate it as 'run' does.

  Refused (exit 2, one line naming the field and both values): shards of different plans (plan
  hash, shard total), kernels (release, source, config hash, arch), images or selections; a shard
  given twice, or a cell (profile x suite) reported by two shards. A shard whose directory is not
  given did not report: each of its cells becomes an error result saying so, and the exit is 2.

Options:
  --out DIR          where the merged run goes (default: runs/merged-<plan hash>)
  --baseline RUN     a previous run: failures that fail the same way there are not regressions
  --expectations F   known failures (default: expectations/known.json); --no-expectations counts all

Exit code: as run: 0 nothing regressed, 1 a regression, 2 a harness error, a missing shard or an
incomplete shard.`;

export async function mergeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string' }, baseline: { type: 'string' }, expectations: { type: 'string' },
      'no-expectations': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (!positionals.length) throw new HarnessError('merge needs the shards\' run directories (see --help)');
  const baseline = values.baseline ? readResults(resultsPathOf(values.baseline)) : undefined;
  const expectations = values['no-expectations'] ? undefined : readExpectations(values.expectations ?? repoPath('expectations', 'known.json'));
  const t0 = Date.now();
  const shards = positionals.map((source) => {
    const path = resultsPathOf(source);
    return { source, dir: dirname(resolve(path)), res: readResults(path) };
  });
  const planHash = shards[0]!.res.run.shard?.planHash ?? 'unknown';
  const outDir = resolve(values.out ?? join('runs', `merged-${planHash}`));
  const merged = mergeShards(shards, outDir);
  mkdirSync(outDir, { recursive: true });
  writeFileAtomicSync(join(outDir, RESULTS_FILE), `${JSON.stringify(merged, null, 2)}\n`);
  const m = merged.run.merged!;
  const missing = m.missing.length ? `; missing shard${m.missing.length > 1 ? 's' : ''} ${m.missing.join(', ')}` : '';
  process.stderr.write(`merge: ${shards.length} of ${m.shards} shards of plan ${m.planHash}, ${merged.results.length} results${missing} (${Date.now() - t0} ms)\n`);
  return reportRun(merged, outDir, { baseline, expectations });
}
