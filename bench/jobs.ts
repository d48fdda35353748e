import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { repoPath } from '../base/paths.js';

/** The cells both runs do: four profiles so that two guests at once have work to share. */
export const JOBS_CELLS = {
  profiles: ['none', 'intel-iommu', 'amd-iommu', 'virtio-iommu'],
  suites: ['migration', 'dma', 'pasid'],
};

export interface JobsFigure {
  cells: typeof JOBS_CELLS;
  serialSeconds: number;
  parallelSeconds: number;
  jobs: number;
  ratio: number;
  results: number;
  /** ids whose status differs between the runs (a parallel run must give the serial run's results) */
  differences: string[];
}

type Row = { id: string; profile: string; status: string; device?: { id?: string } };

function outcomes(dir: string): Map<string, string> {
  const doc = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { results: Row[] };
  return new Map(doc.results.map((r) => [`${r.profile} ${r.device?.id ?? ''} ${r.id}`, r.status]));
}

async function timedRun(dir: string, jobs: number): Promise<number> {
  const args = [repoPath('dist', 'cli', 'main.js'), 'run', '--out', dir, '--jobs', String(jobs), '--no-expectations',
    ...JOBS_CELLS.profiles.flatMap((p) => ['--profile', p]), ...JOBS_CELLS.suites.flatMap((s) => ['--suite', s])];
  const t0 = performance.now();
  // exit 1 (failures) is a result, not a broken run; 2 means a profile could not run
  const r = await execa('node', args, { reject: false, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.exitCode === 2) throw new Error(`run --jobs ${jobs} ended with a harness error (see ${dir})`);
  return (performance.now() - t0) / 1000;
}

/**
 * `run --jobs 1` against `run --jobs N` on the same cells, the serial one first: wall time, and
 * whether both gave the same status for every case (guests in parallel must not change results).
 */
export async function jobsFigure(jobs = 2): Promise<JobsFigure> {
  const root = mkdtempSync(join(tmpdir(), 'vfioc-bench-jobs-'));
  try {
    const serialSeconds = await timedRun(join(root, 'serial'), 1);
    const parallelSeconds = await timedRun(join(root, 'parallel'), jobs);
    const a = outcomes(join(root, 'serial'));
    const b = outcomes(join(root, 'parallel'));
    const differences = [...new Set([...a.keys(), ...b.keys()])]
      .filter((k) => a.get(k) !== b.get(k))
      .map((k) => `${k}: ${a.get(k) ?? 'absent'} serially, ${b.get(k) ?? 'absent'} with --jobs ${jobs}`);
    const r2 = (x: number) => Math.round(x * 100) / 100;
    return {
      cells: JOBS_CELLS, jobs, results: a.size, differences,
      serialSeconds: r2(serialSeconds), parallelSeconds: r2(parallelSeconds), ratio: r2(parallelSeconds / serialSeconds),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
