/**
 * The cases of each suite as a table: one row per case (and device, where the suite ran on more
 * than one), one column per profile, the case id in full. A non-pass cell links to its result.
 * One filter bar above them all: category checkboxes, a text filter on the id, a profile select.
 */
import type { CaseResult, RunResults } from '../../base/results/schema.js';
import { profilesOf, suitesOf } from './charts.js';
import { anchor, esc, plural, statusLabel } from './text.js';
import { CATEGORIES, CATEGORY_LABEL, categoryOf, knownWhy, worst, type ReportVerdict } from './verdict.js';

interface Row { id: string; device: string; cells: Map<string, { r: CaseResult; n: number }[]> }

function rowsOf(res: RunResults, suite: string): Row[] {
  const rows = new Map<string, Row>();
  res.results.forEach((r, n) => {
    if (r.suite !== suite) return;
    const key = JSON.stringify([r.id, r.device.id]);
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { id: r.id, device: r.device.id, cells: new Map() }));
    row.cells.set(r.profile, [...(row.cells.get(r.profile) ?? []), { r, n }]);
  });
  return [...rows.values()];
}

function cell(list: { r: CaseResult; n: number }[] | undefined, profile: string, v: ReportVerdict | undefined): string {
  if (!list) return `<td class="cell c-none" data-profile="${esc(profile)}" data-cat="">—</td>`;
  const cats = list.map((x) => categoryOf(x.r, v));
  const cat = worst(cats);
  const first = list.find((x) => categoryOf(x.r, v) === cat)!;
  const word = cat === 'known' ? `${statusLabel(first.r.status)} (known)` : cat === 'unsupported' ? 'unsupp.' : statusLabel(first.r.status);
  const label = list.length > 1 ? `${word} ×${list.length}` : word;
  const attrs = `class="cell c-${cat}" data-profile="${esc(profile)}" data-cat="${[...new Set(cats)].join(' ')}"`;
  if (cat === 'pass') return `<td ${attrs}>${esc(label)}</td>`;
  const title = [first.r.reason, knownWhy(v, first.r)].filter((x) => x).join('\nknown: ');
  return `<td ${attrs}><a href="#r-${first.n}" title="${esc(title)}">${esc(label)}</a></td>`;
}

function suiteTable(res: RunResults, suite: string, profiles: string[], v: ReportVerdict | undefined): string {
  const rows = rowsOf(res, suite);
  const devices = new Set(rows.map((r) => r.device));
  const withDevice = devices.size > 1;
  const head = `<thead><tr><th scope="col" class="case">case</th>${withDevice ? '<th scope="col">device</th>' : ''}` +
    `${profiles.map((p) => `<th scope="col" data-profile="${esc(p)}">${esc(p)}</th>`).join('')}</tr></thead>`;
  const body = rows.map((row) => `<tr class="case" data-id="${esc(row.id)}"><th scope="row" class="case"><code>${esc(row.id)}</code></th>` +
    `${withDevice ? `<td class="dev">${esc(row.device)}</td>` : ''}${profiles.map((p) => cell(row.cells.get(p), p, v)).join('')}</tr>`).join('');
  const only = withDevice ? '' : ` on ${esc([...devices][0] ?? '')}`;
  return `<section class="suite" id="${anchor('suite', suite)}" data-suite="${esc(suite)}"><h2>${esc(suite)} ` +
    `<span class="muted">${esc(plural(rows.length, 'case'))}${only} · <span class="shown" aria-live="polite"></span></span></h2>` +
    `<div class="scroll"><table class="cases">${head}<tbody>${body}</tbody></table></div></section>`;
}

export function filterBar(res: RunResults): string {
  const profiles = profilesOf(res);
  return '<form class="filters" id="filters" role="search" aria-label="filter cases">' +
    `<fieldset><legend>show</legend>${CATEGORIES.map((c) => `<label class="c-${c}"><input type="checkbox" name="cat" value="${c}" checked> ${esc(CATEGORY_LABEL[c])}</label>`).join('')}</fieldset>` +
    '<label>case <input type="search" id="f-text" placeholder="filter case ids (press /)" autocomplete="off" aria-keyshortcuts="/"></label>' +
    `<label>profile <select id="f-profile"><option value="">all profiles</option>${profiles.map((p) => `<option value="${esc(p)}">${esc(p)}</option>`).join('')}</select></label>` +
    `<span id="shown" aria-live="polite">${res.results.length === 0 ? 'no results' : ''}</span></form>`;
}

export function caseTables(res: RunResults, v: ReportVerdict | undefined): string {
  if (res.results.length === 0) return '<section id="cases"><h2>Cases</h2><p class="muted">No results recorded.</p></section>';
  const profiles = profilesOf(res);
  return `<section id="cases"><h2>Cases by suite</h2>${filterBar(res)}${suitesOf(res).map((s) => suiteTable(res, s, profiles, v)).join('')}</section>`;
}
