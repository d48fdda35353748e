import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { repoPath } from '../base/paths.js';

/** The whole default matrix as `npm run conformance` runs it, once the kernel and QEMU are built. */
export interface MatrixFigure {
  seconds: number;
  results: number;
  /** results per status */
  statuses: Record<string, number>;
  /** profiles booted, each with the suites it ran and its results */
  profiles: Record<string, { suites: string[]; results: number }>;
  /** the run's exit code: 0 gate OK, 1 a regression, 2 a harness error */
  exitCode: number;
  /** the host's 1-minute load average before the run: other work on the host skews the time */
  loadBefore: number;
}

type Row = { profile: string; suite: string; status: string };

export async function matrixFigure(): Promise<MatrixFigure> {
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-bench-matrix-'));
  try {
    const loadBefore = loadavg()[0]!;
    const t0 = performance.now();
    // exit 1 (a regression) is a figure too; only a run that wrote nothing is no figure
    const r = await execa('node', [repoPath('dist', 'cli', 'main.js'), 'run', '--out', dir], { reject: false, stdio: ['ignore', 'ignore', 'inherit'] });
    const seconds = (performance.now() - t0) / 1000;
    let rows: Row[];
    try {
      rows = (JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { results: Row[] }).results;
    } catch (e) {
      throw new Error(`the default run wrote no results (exit ${r.exitCode}): ${(e as Error).message}`);
    }
    const statuses: Record<string, number> = {};
    const profiles: MatrixFigure['profiles'] = {};
    for (const x of rows) {
      statuses[x.status] = (statuses[x.status] ?? 0) + 1;
      const p = (profiles[x.profile] ??= { suites: [], results: 0 });
      p.results++;
      if (!p.suites.includes(x.suite)) p.suites.push(x.suite);
    }
    return { seconds: Math.round(seconds * 10) / 10, results: rows.length, statuses, profiles, exitCode: r.exitCode ?? -1, loadBefore };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
