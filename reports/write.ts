import { join } from 'node:path';
import { writeFileAtomicSync } from './results-file.js';
import { toJUnit, JUNIT_FILE } from './junit.js';
import { renderHtml, HTML_FILE } from './html.js';
import type { RunResults } from './schema.js';

/**
 * JUnit and HTML for a run, synchronously and atomically: called after each profile, at the end,
 * and from the exit hook of an interrupted run (which cannot await).
 */
export function writeRunReports(runDir: string, res: RunResults): void {
  writeFileAtomicSync(join(runDir, JUNIT_FILE), toJUnit(res));
  writeFileAtomicSync(join(runDir, HTML_FILE), renderHtml(res));
}
