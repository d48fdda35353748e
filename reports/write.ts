import { join } from 'node:path';
import { writeFileAtomicSync } from '../base/results/file.js';
import { toJUnit, JUNIT_FILE } from './junit.js';
import { renderHtml, HTML_FILE, knownKey, type ReportVerdict } from './html.js';
import { gate, type Expectations, type GateResult } from './gate.js';
import type { RunResults } from '../base/results/schema.js';

/**
 * JUnit and HTML for a run, synchronously and atomically: called after each profile, at the end,
 * and from the exit hook of an interrupted run (which cannot await).
 */
export function writeRunReports(runDir: string, res: RunResults, gating?: Gating): void {
  writeFileAtomicSync(join(runDir, JUNIT_FILE), toJUnit(res));
  writeFileAtomicSync(join(runDir, HTML_FILE), renderHtml(res, gating && verdictOf(gate(res, gating))));
}

/** What the gate decides from: the run is judged against them in the report as at the exit code. */
export interface Gating {
  baseline?: RunResults;
  expectations?: Expectations;
}

export function verdictOf(g: GateResult): ReportVerdict {
  return {
    exitCode: g.exitCode,
    regressions: g.regressions.length,
    known: new Map(g.knownFailures.map((k) => [knownKey(k.id, k.profile, k.device), k.known?.reason ?? ''])),
    harnessProblems: g.harnessProblems,
  };
}
