import { mkdirSync } from 'node:fs';
import { ResultsWriter } from '../base/results/file.js';
import { onShutdown } from '../base/shutdown.js';
import type { CaseResult, RunInfo, RunResults } from '../base/results/schema.js';
import type { RunnerHooks } from './run-cases.js';

export type RunError = RunInfo['errors'][number];

/** What a run tells its caller as it goes; the cli prints it and makes the reports. */
export interface RunEvents {
  progress(line: string): void;
  result(profile: string, r: CaseResult): void;
  error(e: RunError): void;
  /** The harness is being stopped (a signal, a crash): make reports of what was recorded, synchronously. */
  stopped(outDir: string, res: RunResults): void;
}

/** A finished (or cut short) run: its directory and its results, for the reports and the gate. */
export interface RunOutcome {
  outDir: string;
  writer: ResultsWriter;
}

/**
 * The run directory and its results.json, kept current as results arrive, for a guest run and a
 * lab host alike; a harness stopped half-way still leaves reports of what it did.
 */
export class RunRecord {
  readonly writer: ResultsWriter;
  private readonly unhook: () => void;

  constructor(readonly outDir: string, info: RunInfo, private readonly events: RunEvents) {
    mkdirSync(outDir, { recursive: true });
    this.writer = new ResultsWriter(outDir, info);
    this.unhook = onShutdown(() => events.stopped(outDir, this.writer.snapshot()));
  }

  /** The runner's hooks for one profile; `adjust` adds what every result of this run carries. */
  hooks(profile: string, adjust?: (r: CaseResult) => void): RunnerHooks {
    return {
      result: (r) => {
        adjust?.(r);
        this.writer.add(r);
        this.events.result(profile, r);
      },
      error: (e) => this.error(e),
      progress: (m) => this.events.progress(m),
    };
  }

  error(e: RunError): void {
    this.writer.updateRun({ errors: [...this.writer.run.errors, e] });
    this.events.error(e);
  }

  /** Stop listening for the shutdown; the caller finishes the run (reports, gate). */
  close(): RunOutcome {
    this.unhook();
    return { outDir: this.outDir, writer: this.writer };
  }
}
