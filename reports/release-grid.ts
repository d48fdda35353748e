/**
 * `compare --html`: the release grid. N runs (kernels, QEMUs or drivers) as one grid of case x run,
 * grouped by suite: each cell is the case's status in that run, and a cell whose run changed the
 * case against the run before it is outlined and labelled with the change (new failure, fixed,
 * errno or other observed change, status change, new, gone). Above it, one summary line per pair of
 * runs; beside each changed row, what changed; for cases with measurements, their spread across
 * runs (never counted as a change) and a picture of them.
 */
import {
  CHANGE_CLASSES, byImportance, changeText, changedKeys, keyAcross, measurementSpread,
  type ChangeClass, type Comparison, type CompareRow,
} from './compare.js';
import { REPORT_CSS } from './html/style.js';
import { cspMeta, esc, jsonForScript, plural, statusLabel } from './html/text.js';
import { dotStrip, seriesOf, type DotRow } from './svg.js';

/** The word a changed cell carries. observed-change is most often an errno that moved. */
const CHANGE_WORD: Record<ChangeClass, string> = {
  'new-failure': 'new failure',
  fixed: 'fixed',
  'status-change': 'status changed',
  vanished: 'gone',
  'new-case': 'new',
  'observed-change': 'observed changed',
  unchanged: '',
};

const GRID_CSS = `
.cls { font-weight: 600; white-space: nowrap; }
.cls-new-failure { color: var(--fail); } .cls-fixed { color: var(--pass); } .cls-status-change { color: var(--warning); }
.cls-new-case, .cls-vanished { color: var(--eu); } .cls-observed-change { color: var(--error); } .cls-unchanged { color: var(--muted); font-weight: normal; }
table.pairs { border-collapse: collapse; margin: 6px 0; } table.pairs th, table.pairs td { border: 1px solid var(--border); padding: 3px 8px; text-align: left; }
table.pairs td.zero { color: #8c959f; }
table.grid { border-collapse: separate; border-spacing: 0; }
table.grid th, table.grid td { border-bottom: 1px solid var(--border); padding: 2px 8px; text-align: left; vertical-align: top; }
table.grid thead th { background: #f6f8fa; }
table.grid th.case { font-weight: normal; white-space: nowrap; }
table.grid tr.suite-head th { background: #f6f8fa; font-size: 14px; padding-top: 8px; }
table.grid td.cell { text-align: center; white-space: nowrap; font-size: 12.5px; }
table.grid td.ch { outline: 2px solid currentColor; outline-offset: -2px; }
table.grid td.ch small { display: block; font-size: 10.5px; font-weight: 600; }
table.grid td.what div { font-family: var(--mono); font-size: 12px; white-space: pre-wrap; width: 21em; overflow-wrap: anywhere; }
table.grid th.case .where { display: block; font-size: 12px; }
table.grid td.nw { white-space: nowrap; }
`;

const GRID_SCRIPT = `(function () {
  'use strict';
  var form = document.getElementById('filters');
  var text = document.getElementById('f-text');
  var shown = document.getElementById('shown');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#grid tbody tr.case'));
  var heads = Array.prototype.slice.call(document.querySelectorAll('#grid tbody tr.suite-head'));
  function apply() {
    var cls = {};
    Array.prototype.forEach.call(form.querySelectorAll('input[name=class]'), function (b) { if (b.checked) cls[b.value] = true; });
    var q = text.value.trim().toLowerCase();
    var visible = 0;
    var perSuite = {};
    rows.forEach(function (row) {
      var show = !!cls[row.getAttribute('data-class')] && (!q || row.getAttribute('data-id').toLowerCase().indexOf(q) >= 0);
      row.hidden = !show;
      if (show) { visible++; perSuite[row.getAttribute('data-suite')] = true; }
    });
    heads.forEach(function (h) { h.hidden = !perSuite[h.getAttribute('data-suite')]; });
    shown.textContent = 'showing ' + visible + ' of ' + rows.length + ' cases';
    shown.setAttribute('data-visible', String(visible));
  }
  form.addEventListener('input', apply);
  form.addEventListener('change', apply);
  form.addEventListener('submit', function (ev) { ev.preventDefault(); });
  text.addEventListener('keydown', function (ev) { if (ev.key === 'Escape') { text.value = ''; apply(); } });
  apply();
  document.documentElement.setAttribute('data-ready', 'true');
})();`;

function runsLine(c: Comparison): string {
  return `<ul class="runs" id="runs">${c.runs.map((r) => {
    const fails = r.counts.fail + r.counts.error;
    const notes = [r.complete ? '' : 'INCOMPLETE', r.harnessErrors ? plural(r.harnessErrors, 'harness error') : ''].filter(Boolean);
    return `<li><b>${esc(r.tag)}</b> <span class="mono">${esc(r.label)}</span> · kernel <b>${esc(r.kernel ?? '?')}</b> · QEMU ${esc(r.qemu ?? '?')}` +
      ` · ${esc(r.accel ?? '?')} · ${esc(plural(r.results, 'result'))}, ${esc(plural(fails, 'failure'))}` +
      `${notes.length ? ` · <strong class="st-error">${esc(notes.join(', '))}</strong>` : ''}</li>`;
  }).join('')}</ul>`;
}

function pairsTable(c: Comparison): string {
  const pairs = [...c.summary.consecutive];
  if (c.runs.length > 2) pairs.push(c.summary.overall);
  const shown = CHANGE_CLASSES.filter((k) => k !== 'unchanged');
  return `<table class="pairs" id="class-counts"><thead><tr><th scope="col">runs</th>${shown.map((k) => `<th scope="col" class="cls cls-${k}">${esc(CHANGE_WORD[k])}</th>`).join('')}` +
    '<th scope="col">unchanged</th></tr></thead><tbody>' +
    pairs.map((p, i) => `<tr><th scope="row">${esc(c.runs[p.from]!.tag)} → ${esc(c.runs[p.to]!.tag)}${i === c.summary.consecutive.length ? ' (first → last)' : ''}` +
      ` <span class="muted">${esc(c.runs[p.from]!.kernel ?? '')} → ${esc(c.runs[p.to]!.kernel ?? '')}</span></th>` +
      `${[...shown, 'unchanged' as const].map((k) => `<td class="${p.counts[k] ? `cls cls-${k}` : 'zero'}" data-count="${k}">${p.counts[k]}</td>`).join('')}</tr>`).join('') +
    '</tbody></table>';
}

function cells(c: Comparison, r: CompareRow): string {
  return r.statuses.map((s, i) => {
    const t = i > 0 ? r.transitions[i - 1] : undefined;
    const changed = t && t.class !== 'unchanged' ? t.class : undefined;
    const reason = r.reasons[i];
    const title = [reason, changed ? `${c.runs[i - 1]!.tag} → ${c.runs[i]!.tag}: ${CHANGE_WORD[changed]}` : ''].filter(Boolean).join('\n');
    const cat = s === null ? 'none' : s === 'fail' || s === 'error' ? 'fail' : s === 'expected-unsupported' ? 'unsupported' : s;
    const errno = changed === 'observed-change' && t!.observedChanges.some((d) => /errno$/i.test(d.key));
    const mark = changed ? `<small class="cls cls-${changed}">${esc(errno ? 'errno changed' : CHANGE_WORD[changed])}</small>` : '';
    return `<td class="cell c-${cat}${changed ? ` ch cls-${changed}` : ''}"${changed ? ` data-change="${changed}"` : ''}${title ? ` title="${esc(title)}"` : ''}>` +
      `${s === null ? '—' : esc(statusLabel(s))}${mark}</td>`;
  }).join('');
}

function what(r: CompareRow): string {
  const lines = changedKeys(r).map((k) => `${k}: ${keyAcross(r, k).join(' → ')}`);
  for (const s of measurementSpread(r)) {
    lines.push(`~ ${s.key}: ${s.min === s.max ? s.min : `${s.min}–${s.max}`} (${s.values.map((v) => (v === null ? '-' : v)).join(' / ')})`);
  }
  return lines.join('\n');
}

function grid(c: Comparison): string {
  const head = '<thead><tr><th scope="col" class="case">case <span class="muted">(profile · device)</span></th>' +
    `${c.runs.map((r) => `<th scope="col" title="${esc(r.label)}">${esc(r.tag)}<br><span class="muted">${esc(r.kernel ?? '')}</span></th>`).join('')}` +
    '<th scope="col">change, and what changed (~ measurement: range, per run)</th></tr></thead>';
  const suites = [...new Set(c.rows.map((r) => r.suite))];
  const body = suites.map((suite) => {
    const rows = byImportance(c.rows.filter((r) => r.suite === suite));
    return `<tr class="suite-head" data-suite="${esc(suite)}"><th colspan="${c.runs.length + 2}" scope="rowgroup">${esc(suite)}</th></tr>` +
      rows.map((r) => `<tr class="case" data-class="${r.class}" data-suite="${esc(suite)}" data-id="${esc(r.id)}">` +
        `<th scope="row" class="case"><code>${esc(r.occurrence > 1 ? `${r.id} #${r.occurrence}` : r.id)}</code>` +
        `<span class="where muted">${esc(r.profile)} · ${esc(r.device)}</span></th>${cells(c, r)}` +
        `<td class="what"><span class="cls cls-${r.class}">${esc(changeText(c, r))}</span><div>${esc(what(r))}</div></td></tr>`).join('');
  }).join('');
  return `<div class="scroll"><table class="grid" id="grid">${head}<tbody>${body}</tbody></table></div>`;
}

/** Measurements across runs, as dots: one row per case and key, one colour per run. */
function measurementPictures(c: Comparison): string {
  const rows = new Map<string, DotRow>();
  for (const r of c.rows) {
    for (const s of measurementSpread(r)) {
      if (!/Ms$/.test(s.key) || s.key.includes('.')) continue;
      const label = `${r.id.split('/').slice(1).join('/')} · ${s.key}`;
      let row = rows.get(label);
      if (!row) rows.set(label, (row = { label, points: [] }));
      s.values.forEach((v, i) => { if (v !== null) row!.points.push({ series: i, value: v }); });
    }
  }
  if (rows.size === 0) return '';
  const list = [...rows.values()].sort((a, b) => (a.label < b.label ? -1 : 1)).slice(0, 40);
  const series = seriesOf(c.runs.map((r) => `${r.tag} ${r.kernel ?? r.label}`));
  return `<section id="measurements"><h2>Measurements across runs</h2><p class="muted">Timings vary from run to run of the same behaviour: ` +
    `they are shown with their spread and never counted as a change.</p>${dotStrip('measurements per case across runs', list, series, (v) => `${v.toFixed(0)} ms`, 900)}</section>`;
}

function filters(): string {
  return `<form class="filters" id="filters" role="search" aria-label="filter cases"><fieldset><legend>change</legend>${CHANGE_CLASSES.map(
    (k) => `<label class="cls cls-${k}"><input type="checkbox" name="class" value="${k}"${k === 'unchanged' ? '' : ' checked'}> ${esc(CHANGE_WORD[k] || 'unchanged')}</label>`,
  ).join('')}</fieldset><label>case <input type="search" id="f-text" placeholder="filter case ids" autocomplete="off"></label><span id="shown" aria-live="polite"></span></form>`;
}

/** The release grid page for a comparison of two or more runs. */
export function renderCompareHtml(c: Comparison): string {
  const o = c.summary.overall.counts;
  const first = c.runs[0];
  const last = c.runs[c.runs.length - 1];
  const headline = `${first?.kernel ?? first?.label ?? ''} → ${last?.kernel ?? last?.label ?? ''}: ${plural(o['new-failure'], 'new failure')}, ${o.fixed} fixed, ` +
    `${plural(o['status-change'] + o['observed-change'], 'other change')}, ${o['new-case']} new, ${o.vanished} gone`;
  const bad = c.summary.consecutive.some((p) => p.counts['new-failure'] > 0);
  return (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
    cspMeta([GRID_SCRIPT]) +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>vfio-conformance release grid: ${esc(c.runs.map((r) => r.kernel ?? r.label).join(' vs '))}</title><style>${REPORT_CSS}${GRID_CSS}</style></head><body>\n` +
    `<section id="summary"><header class="verdict ${bad ? 'bad' : 'good'}" id="verdict"><h1>Release grid of ${c.runs.length} runs</h1><p>${esc(headline)}</p></header>` +
    `${runsLine(c)}<h2>Changes per pair of runs</h2>${pairsTable(c)}</section>\n` +
    `<section id="results"><h2>Cases</h2>${filters()}${grid(c)}</section>\n` +
    measurementPictures(c) +
    `<script type="application/json" id="vfio-comparison">${jsonForScript(c)}</script>\n` +
    `<script>${GRID_SCRIPT}</script>\n</body></html>\n`
  );
}
