import { join } from 'node:path';
import type { ResultsWriter } from '../base/results/file.js';
import { writeRunReports } from '../reports/write.js';
import { gate, type Expectations } from '../reports/gate.js';
import { JUNIT_FILE } from '../reports/junit.js';
import { HTML_FILE } from '../reports/html.js';
import type { RunResults, Status } from '../base/results/schema.js';

const ORDER: Status[] = ['pass', 'warning', 'expected-unsupported', 'skip', 'fail', 'error'];

/**
 * The end of every run, QEMU or lab host: mark it complete, write the reports, gate, print what a
 * CI log needs (counts, the gate's verdict and regressions, known failures grouped by reason, where
 * the files are) and return the exit code.
 */
export function finishRun(writer: ResultsWriter, outDir: string, gating: { baseline?: RunResults; expectations?: Expectations }): number {
  writer.finish();
  return reportRun(writer.snapshot(), outDir, gating);
}

/** Reports, counts, the gate's verdict and the exit code of a finished run (or of merged shards). */
export function reportRun(res: RunResults, outDir: string, gating: { baseline?: RunResults; expectations?: Expectations }): number {
  writeRunReports(outDir, res, gating);
  const counts = new Map<Status, number>();
  for (const r of res.results) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const summary = ORDER.filter((s) => counts.get(s)).map((s) => `${counts.get(s)} ${s}`).join(', ') || 'no results';
  const g = gate(res, gating);
  const verdict = g.summary.split('\n').filter((l) => !l.startsWith('known failure:')).join('\n');
  process.stdout.write(`${summary}\n${verdict}\nresults: ${join(outDir, 'results.json')}\njunit:   ${join(outDir, JUNIT_FILE)}\nreport:  ${join(outDir, HTML_FILE)}\n`);
  const byReason = new Map<string, Set<string>>();
  for (const k of g.knownFailures) {
    const why = k.known?.reason ?? '';
    byReason.set(why, (byReason.get(why) ?? new Set()).add(k.id));
  }
  for (const [why, ids] of byReason) process.stderr.write(`  known (${ids.size} case${ids.size > 1 ? 's' : ''}: ${[...ids].slice(0, 3).join(', ')}${ids.size > 3 ? ', ...' : ''}): ${why}\n`);
  return g.exitCode;
}
