import { readFileSync } from 'node:fs';
import { hostname, cpus, arch as hostArch } from 'node:os';
import { join } from 'node:path';
import { repoPath } from '../base/paths.js';
import { HarnessError } from '../base/errors.js';
import type { RunInfo } from '../base/results/schema.js';

/** The tool's name and version as package.json states them: the one place the version is written. */
export function readTool(pkgFile = repoPath('package.json')): RunInfo['tool'] {
  let pkg: { name?: unknown; version?: unknown };
  try {
    pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as typeof pkg;
  } catch (e) {
    throw new HarnessError(`cannot read the tool's version from ${pkgFile}: ${(e as Error).message}`);
  }
  if (typeof pkg.name !== 'string' || typeof pkg.version !== 'string') {
    throw new HarnessError(`${pkgFile}: no name and version strings`);
  }
  return { name: pkg.name, version: pkg.version };
}

let tool: RunInfo['tool'] | undefined;
/** readTool, once per process. */
export function toolInfo(): RunInfo['tool'] {
  tool ??= readTool();
  return tool;
}

/** What differs between runs: everything in RunInfo except what every run fills in the same way. */
export type RunFacts = Pick<RunInfo, 'profiles' | 'suites' | 'target'>
  & Partial<Pick<RunInfo, 'qemu' | 'accel' | 'kernel'>>
  & Record<string, unknown>;

/**
 * The one place a run's RunInfo is made, for a guest run and a lab host alike: the tool, the host
 * and the start time are filled in here; the caller says what it ran on.
 */
export function newRunInfo(started: Date, facts: RunFacts): RunInfo {
  return {
    tool: toolInfo(),
    startedAt: started.toISOString(),
    complete: false,
    host: { hostname: hostname(), arch: hostArch(), cpus: cpus().length },
    ...facts,
    errors: [],
  };
}

/** runs/<start time>-<what ran>, the default run directory. */
export function defaultRunDir(started: Date, label: string): string {
  return join('runs', `${started.toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${label}`);
}
