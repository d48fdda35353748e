/**
 * index.html: one static, self-contained page per run (inline CSS, inline SVG and one small inline
 * script; no external asset, no server; it works from file://). It only presents results.json,
 * in the order a maintainer reads it:
 *  1. the gate's verdict as the headline, the run's facts on one line, and a summary matrix of
 *     suites x profiles whose cells count each category and link to their cases;
 *  2. failures first: regressions, known failures grouped by reason, warnings (html/failures.ts);
 *  3. pictures: time per profile and suite, boot time, the real client's downtime and bytes, the
 *     dirty oracle's extra pages (html/charts.ts, svg.ts);
 *  4. the cases of each suite, ids in full, one column per profile, with filters (html/tables.ts);
 *  5. FSM arc coverage, then skips and expected-unsupported by reason.
 * Step logs and console lines are not written out: the whole results.json travels gzip-compressed
 * in the page (html/pack.ts) and the script unpacks a result's log when it is opened, which keeps a
 * default run's page under 3 MB. A Content-Security-Policy admits only the page's own script.
 */
import { join } from 'node:path';
import { writeFileAtomicSync } from '../base/results/file.js';
import type { RunResults } from '../base/results/schema.js';
import { pictures } from './html/charts.js';
import { coverageSection } from './html/coverage.js';
import { failuresSection, notRunSection } from './html/failures.js';
import { factsLine, headline, matrix } from './html/headline.js';
import { packResults } from './html/pack.js';
import { PAGE_SCRIPT } from './html/script.js';
import { REPORT_CSS } from './html/style.js';
import { caseTables } from './html/tables.js';
import { cspMeta, esc } from './html/text.js';
import type { ReportVerdict } from './html/verdict.js';

export { esc, jsonForScript, valueText, cspMeta, STATUS_LABEL } from './html/text.js';
export { REPORT_CSS } from './html/style.js';
export { knownKey, type ReportVerdict } from './html/verdict.js';
export { arcCoverage } from './html/coverage.js';

export const HTML_FILE = 'index.html';

/** The whole page for one run; `verdict` is the gate's (absent when no gate was applied). */
export function renderHtml(res: RunResults, verdict?: ReportVerdict): string {
  const title = `vfio-conformance ${res.run.kernel?.release ?? ''} ${res.run.startedAt}`.replace(/\s+/g, ' ').trim();
  return (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
    cspMeta([PAGE_SCRIPT]) +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${esc(title)}</title><style>${REPORT_CSS}</style></head><body>\n` +
    `<section id="summary">${headline(res, verdict)}${factsLine(res)}${res.results.length ? matrix(res, verdict) : ''}</section>\n` +
    failuresSection(res, verdict) + '\n' +
    pictures(res) + '\n' +
    caseTables(res, verdict) + '\n' +
    coverageSection(res) +
    notRunSection(res, verdict) + '\n' +
    packResults(res) + '\n' +
    `<script>${PAGE_SCRIPT}</script>\n</body></html>\n`
  );
}

/** Write `<runDir>/index.html` atomically; returns its path. */
export function writeHtml(runDir: string, res: RunResults, verdict?: ReportVerdict): string {
  const path = join(runDir, HTML_FILE);
  writeFileAtomicSync(path, renderHtml(res, verdict));
  return path;
}
