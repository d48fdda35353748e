/**
 * The first screen: the gate's verdict as the one headline, the run's facts on one line, and the
 * summary matrix of suites x profiles (each cell counting its categories, coloured by the worst,
 * and a link to its cases).
 */
import type { RunResults } from '../../base/results/schema.js';
import { profilesOf, suitesOf } from './charts.js';
import { anchor, duration, esc, plural } from './text.js';
import { CATEGORIES, CATEGORY_LABEL, categoryOf, zeroCounts, type Category, type Counts, type ReportVerdict } from './verdict.js';

export function countAll(res: RunResults, v: ReportVerdict | undefined): Counts {
  const c = zeroCounts();
  for (const r of res.results) c[categoryOf(r, v)]++;
  return c;
}

/** The headline: what the gate decided, then what it counted. */
export function headline(res: RunResults, v: ReportVerdict | undefined): string {
  const c = countAll(res, v);
  const run = res.run;
  const problems = [
    ...(v?.harnessProblems ?? run.errors.map((e) => `${e.profile ? `${e.profile}: ` : ''}${e.message}`)),
    ...(!v?.harnessProblems && !run.complete ? [`the run did not complete: ${res.results.length} results were recorded`] : []),
  ];
  const facts = `${plural(c.fail, 'regression')} · ${plural(c.known, 'known failure')} · ${plural(run.errors.length, 'harness error')}`;
  let cls: string;
  let word: string;
  if (v === undefined) {
    cls = problems.length > 0 ? 'harness' : c.fail > 0 ? 'unknown' : 'good';
    word = problems.length > 0 ? 'Harness error' : c.fail > 0 ? `${plural(c.fail, 'failure')}, not gated` : 'No failures';
  } else {
    cls = v.exitCode === 2 ? 'harness' : v.exitCode === 1 ? 'bad' : 'good';
    word = v.exitCode === 2 ? 'Harness error: the run cannot be trusted' : v.exitCode === 1 ? `Regression: ${plural(v.regressions, 'case')} failed that nothing explains` : 'OK: nothing regressed';
  }
  const detail = v === undefined
    ? `${plural(c.fail, 'failed result')} (no baseline or expectations were given, so none is known) · ${plural(run.errors.length, 'harness error')}`
    : facts;
  return `<header class="verdict ${cls}" id="verdict" data-exit="${v?.exitCode ?? ''}" data-regressions="${v ? v.regressions : ''}" data-known="${c.known}">` +
    `<h1>${esc(word)}</h1><p>${esc(detail)}</p>` +
    (problems.length > 0 ? `<ul class="problems">${problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>` : '') +
    `${run.complete ? '' : '<p id="incomplete"><strong>Run INCOMPLETE</strong>: it is still going or died half-way.</p>'}</header>`;
}

/** Kernel, QEMU, accelerator and the run in one line. */
export function factsLine(res: RunResults): string {
  const run = res.run;
  const k = run.kernel;
  const took = run.endedAt ? Date.parse(run.endedAt) - Date.parse(run.startedAt) : NaN;
  const parts = [
    `kernel <b>${esc(k?.release ?? 'not recorded')}</b>${k ? ` (${esc(k.arch)}, ${esc(k.sourceId)}, config ${esc(k.configHash.slice(0, 12))})` : ''}`,
    `QEMU <b>${esc(run.qemu?.version ?? 'not recorded')}</b>${run.qemu?.origin === 'built' ? ' (ours)' : ''}${qemuOthers(run)}`,
    `<b>${esc(run.accel?.toUpperCase() ?? 'accel not recorded')}</b>`,
    `${esc(run.target.kind === 'ssh' ? `lab host ${run.target.address ?? ''}` : 'QEMU guests')}`,
    `<b>${esc(plural(res.results.length, 'result'))}</b> in ${Number.isFinite(took) ? esc(duration(took)) : 'an unrecorded time'}`,
    `${esc(run.startedAt.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC'))}`,
    `${esc(run.host.hostname)} (${run.host.cpus} CPUs)`,
    `${esc(run.tool.name)} ${esc(run.tool.version)}`,
  ];
  return `<p class="facts" id="facts">${parts.join(' · ')}</p>`;
}

function cell(c: Counts, suite: string, profile: string | undefined): string {
  const total = CATEGORIES.reduce((a, k) => a + c[k], 0);
  if (total === 0) return '<td class="c-none" data-total="0"><span class="mx">—</span></td>';
  const worst = CATEGORIES.find((k) => k !== 'pass' && k !== 'unsupported' && k !== 'skip' && c[k] > 0) ?? (c.pass + c.unsupported > 0 ? 'pass' : 'skip');
  const chips = CATEGORIES.filter((k: Category) => k !== 'pass' && c[k] > 0)
    .map((k) => `<span class="chip c-${k}" data-count="${k}">${c[k]} ${esc(k === 'unsupported' ? 'unsupp.' : CATEGORY_LABEL[k])}</span>`);
  const label = `${suite}${profile ? ` on ${profile}` : ', all profiles'}: ${CATEGORIES.filter((k) => c[k] > 0).map((k) => `${c[k]} ${CATEGORY_LABEL[k]}`).join(', ')}`;
  return `<td class="c-${worst}" data-total="${total}"><a class="mx" href="#${anchor('suite', suite)}"${profile ? ` data-profile="${esc(profile)}"` : ' data-profile=""'} aria-label="${esc(label)}">` +
    `<span class="n" data-count="pass">${c.pass}</span> pass${chips.length ? '<br>' : ''}${chips.join('')}</a></td>`;
}

/** Suites x profiles, plus the whole run per suite. */
export function matrix(res: RunResults, v: ReportVerdict | undefined): string {
  const profiles = profilesOf(res);
  const suites = suitesOf(res);
  const counts = new Map<string, Counts>();
  const at = (s: string, p: string) => {
    const k = JSON.stringify([s, p]);
    let c = counts.get(k);
    if (!c) counts.set(k, (c = zeroCounts()));
    return c;
  };
  for (const r of res.results) {
    const cat = categoryOf(r, v);
    at(r.suite, r.profile)[cat]++;
    at(r.suite, '')[cat]++;
  }
  const head = `<thead><tr><th scope="col">suite \\ profile</th>${profiles.map((p) => `<th scope="col">${esc(p)}</th>`).join('')}<th scope="col">all profiles</th></tr></thead>`;
  const body = suites.map((s) => `<tr data-suite="${esc(s)}"><th scope="row"><a href="#${anchor('suite', s)}">${esc(s)}</a></th>` +
    `${profiles.map((p) => cell(at(s, p), s, p)).join('')}${cell(at(s, ''), s, undefined)}</tr>`).join('');
  return `<table class="matrix" id="matrix" aria-label="results per suite and profile">${head}<tbody>${body}</tbody></table>`;
}

/**
 * Profiles that ran on another QEMU than the run's (ours, for hardware only our patches emulate):
 * named in the facts line, so an emulated capability is never taken for the host QEMU's.
 */
function qemuOthers(run: RunResults['run']): string {
  const other = Object.entries(run.profileQemu ?? {});
  if (other.length === 0) return '';
  // the patches behind the profile's hardware when the run names them, else the whole series
  const patches = (p: string, q: { series?: { patches: string[] } }) => run.profileEmulation?.[p] ?? q.series?.patches ?? [];
  return ` (${other.map(([p, q]) => `${esc(p)} on ${q.origin === 'built' ? 'our ' : ''}QEMU ${esc(q.version)}` +
    `${patches(p, q).length ? ` + ${esc(patches(p, q).join(', '))}` : ''}`).join('; ')})`;
}
