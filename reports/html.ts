/**
 * index.html: one static, self-contained page per run (inline CSS and a small inline script; no
 * external assets, no server). It only presents results.json:
 *  - a summary: tool, host, kernel, accel, QEMU, profiles, suites, target, counts per status,
 *    whether the run completed, and the harness errors;
 *  - a grid, one row per case id and one column per (profile, device), each cell coloured by status
 *    and carrying the status as text (and an aria-label), so it reads without colour too;
 *  - filters (status checkboxes, a text filter on the case id, a profile select) that hide rows:
 *    a row stays visible when its id matches the text and at least one of its cells in the selected
 *    profile(s) has a checked status; cells of unchecked statuses are dimmed, columns of other
 *    profiles hidden;
 *  - for every non-pass result, a <details> block (reason, observed vs expected, step log, console
 *    faults with their lines, artifacts) in a details row under its case, opened by clicking the cell.
 *
 * The page is rendered in full here (it reads without JavaScript; the script only filters and opens
 * details), so every string from results.json goes through `esc` exactly once. The results are also
 * embedded as JSON in <script type="application/json" id="vfio-results"> (with `<` written as
 * \u003c, so no `</script>` can end it early) for tools that want the data back from a saved page.
 * A Content-Security-Policy admits only the page's own inline script (by hash): even a string that
 * slipped past escaping could not run script or load anything.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../base/results/file.js';
import { STATUSES, type CaseResult, type RunResults, type Status } from '../base/results/schema.js';

export const HTML_FILE = 'index.html';

// ---------------------------------------------------------------------------------------------
// Shared with the compare page
// ---------------------------------------------------------------------------------------------

/** Escape text for HTML element content and (double- or single-quoted) attribute values. */
/** Why a failed result is known, when the verdict says it is. */
const knownWhy = (v: ReportVerdict | undefined, r: CaseResult) => v?.known.get(knownKey(r.id, r.profile, r.device.id));

export function esc(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return s.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;'));
}

/**
 * JSON for a <script type="application/json"> block: `<` (so no `</script` or `<!--`), `>` and `&`
 * as \u escapes, and U+2028/U+2029. JSON.parse(textContent) gives back exactly `data`.
 */
export function jsonForScript(data: unknown): string {
  return JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** A value from observed/expected as text: strings as they are, anything else as JSON. */
export function valueText(v: unknown): string {
  if (v === undefined) return '(absent)';
  if (typeof v === 'string') return v;
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s;
}

/** Short text shown in a grid cell for a status. */
export const STATUS_LABEL: Record<Status, string> = {
  pass: 'pass',
  fail: 'FAIL',
  error: 'ERROR',
  skip: 'skip',
  'expected-unsupported': 'unsupported (expected)',
  warning: 'warning',
  blocked: 'blocked',
};

/** Which of several results of one cell gives it its colour (most severe first). */
const SEVERITY: readonly Status[] = ['error', 'fail', 'blocked', 'warning', 'skip', 'expected-unsupported', 'pass'];

/** CSS shared by the run report and the compare page. */
export const REPORT_CSS = `
table.cov { border-collapse: collapse; margin: 8px 0; } table.cov td, table.cov th { border: 1px solid var(--border); padding: 2px 8px; text-align: left; }
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#b01c1c; --fail-bg:#ffd8d3; --error:#6e1d8a; --error-bg:#f0d9fb;
  --skip:#57606a; --skip-bg:#eaeef2; --eu:#0550ae; --eu-bg:#ddf4ff; --warning:#7d4e00; --warning-bg:#fff1c2;
  --border:#d0d7de; --muted:#57606a; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 16px 20px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 20px 0 8px; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #f6f8fa; border: 1px solid var(--border); padding: 6px 8px; margin: 4px 0 8px; overflow: auto; max-height: 24em; white-space: pre; }
.banner { padding: 8px 12px; border-radius: 6px; margin: 8px 0; font-weight: 600; }
.banner.bad { background: var(--fail-bg); color: var(--fail); border: 1px solid var(--fail); }
.banner.good { background: var(--pass-bg); color: var(--pass); border: 1px solid var(--pass); }
.cell.known { opacity: 0.75; }
.known { margin: 4px 0; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.env dt { color: var(--muted); } dl.env dd { margin: 0; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; margin: 10px 0; padding: 0; list-style: none; }
.counts li { padding: 4px 10px; border-radius: 12px; border: 1px solid var(--border); }
.st-pass { background: var(--pass-bg); color: var(--pass); }
.st-fail { background: var(--fail-bg); color: var(--fail); font-weight: 600; }
.st-error { background: var(--error-bg); color: var(--error); font-weight: 600; }
.st-skip { background: var(--skip-bg); color: var(--skip); }
.st-expected-unsupported { background: var(--eu-bg); color: var(--eu); }
.st-warning { background: var(--warning-bg); color: var(--warning); }
.st-blocked { background: var(--skip-bg); color: var(--fail); font-style: italic; }
.st-none { color: #8c959f; }
.filters { position: sticky; top: 0; z-index: 3; background: #fff; border-bottom: 1px solid var(--border); padding: 8px 0; display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
.filters fieldset { border: 0; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 10px; }
.filters legend { float: left; margin-right: 6px; color: var(--muted); }
.filters label { white-space: nowrap; cursor: pointer; }
.filters input[type=search] { width: 22em; padding: 3px 6px; }
table.grid { border-collapse: separate; border-spacing: 0; margin-top: 8px; }
table.grid th, table.grid td { border-bottom: 1px solid var(--border); border-right: 1px solid var(--border); padding: 3px 8px; text-align: left; vertical-align: top; }
table.grid thead th { position: sticky; top: 44px; background: #f6f8fa; z-index: 2; }
table.grid th.case { font-weight: normal; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; word-break: break-all; max-width: 46em; }
table.grid td.cell { text-align: center; white-space: nowrap; min-width: 7em; }
td.cell button { all: unset; cursor: pointer; display: block; text-decoration: underline dotted; }
td.cell button:focus-visible { outline: 2px solid #0969da; }
td.cell.dim { opacity: 0.25; }
tr.details > td { background: #fbfcfd; padding: 6px 12px 10px; }
details.result { border: 1px solid var(--border); border-left: 6px solid var(--skip); border-radius: 4px; margin: 6px 0; padding: 4px 10px; background: #fff; }
details.result.st-fail { border-left-color: var(--fail); } details.result.st-error { border-left-color: var(--error); }
details.result.st-warning { border-left-color: var(--warning); } details.result.st-expected-unsupported { border-left-color: var(--eu); }
details.result { color: inherit; font-weight: normal; }
details.result > summary { cursor: pointer; font-weight: 600; }
details.result .reason { white-space: pre-wrap; margin: 6px 0; }
table.kv { border-collapse: collapse; margin: 6px 0; }
table.kv th, table.kv td { border: 1px solid var(--border); padding: 2px 8px; text-align: left; vertical-align: top; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; white-space: pre-wrap; }
table.kv thead th { background: #f6f8fa; font-family: inherit; }
table.kv tr.differs td { background: var(--fail-bg); }
.muted { color: var(--muted); }
[hidden] { display: none !important; }
`;

/** `<meta>` CSP allowing only the given inline scripts (by hash) and inline styles. */
export function cspMeta(scripts: string[]): string {
  const hashes = scripts.map((s) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`);
  const policy = `default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src ${hashes.join(' ') || "'none'"}; base-uri 'none'; form-action 'none'`;
  return `<meta http-equiv="Content-Security-Policy" content="${esc(policy)}">`;
}

// ---------------------------------------------------------------------------------------------
// Run report
// ---------------------------------------------------------------------------------------------

interface Column { profile: string; device: string; key: string }
interface Row { id: string; cells: Map<string, { r: CaseResult; n: number }[]> }

function worst(list: { r: CaseResult }[]): Status {
  for (const s of SEVERITY) if (list.some((x) => x.r.status === s)) return s;
  return 'pass';
}

function layout(res: RunResults): { columns: Column[]; rows: Row[] } {
  const colMap = new Map<string, Column>();
  const rowMap = new Map<string, Row>();
  res.results.forEach((r, n) => {
    const key = JSON.stringify([r.profile, r.device.id]);
    if (!colMap.has(key)) colMap.set(key, { profile: r.profile, device: r.device.id, key });
    let row = rowMap.get(r.id);
    if (!row) rowMap.set(r.id, (row = { id: r.id, cells: new Map() }));
    let cell = row.cells.get(key);
    if (!cell) row.cells.set(key, (cell = []));
    cell.push({ r, n });
  });
  // Columns in the run's profile order (profiles it did not announce last), devices in order of appearance.
  const order = (p: string): number => {
    const i = res.run.profiles.indexOf(p);
    return i < 0 ? res.run.profiles.length : i;
  };
  const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const columns = [...colMap.values()]
    .map((c, i) => ({ c, i }))
    .sort((a, b) => order(a.c.profile) - order(b.c.profile) || byName(a.c.profile, b.c.profile) || a.i - b.i)
    .map((x) => x.c);
  return { columns, rows: [...rowMap.values()] };
}

function kvTable(observed: Record<string, unknown> | undefined, expected: Record<string, unknown> | undefined): string {
  if (!observed && !expected) return '<p class="muted">No observed or expected values recorded.</p>';
  const keys = [...new Set([...Object.keys(observed ?? {}), ...Object.keys(expected ?? {})])];
  if (keys.length === 0) return '<p class="muted">No observed or expected values recorded.</p>';
  const rows = keys.map((k) => {
    const o = observed && k in observed ? valueText(observed[k]) : '—';
    const e = expected && k in expected ? valueText(expected[k]) : '—';
    const differs = !!expected && k in expected && !!observed && JSON.stringify(observed[k]) !== JSON.stringify(expected[k]);
    return `<tr${differs ? ' class="differs"' : ''}><th scope="row">${esc(k)}</th><td>${esc(o)}</td><td>${esc(e)}</td></tr>`;
  });
  return `<table class="kv observed-expected"><thead><tr><th scope="col">value</th><th scope="col">observed</th><th scope="col">expected</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function resultDetails(r: CaseResult, n: number, verdict: ReportVerdict | undefined): string {
  const parts: string[] = [];
  parts.push(`<div class="reason"><strong>Reason:</strong> ${r.reason === undefined ? '<span class="muted">(no reason given)</span>' : esc(r.reason)}</div>`);
  if (r.blockedBy) parts.push(`<div class="blocked"><strong>Blocked by:</strong> <code>${esc(r.blockedBy)}</code> (the case that tests the precondition)</div>`);
  const why = knownWhy(verdict, r);
  if (why) parts.push(`<div class="known"><strong>Known failure:</strong> ${esc(why)}</div>`);
  parts.push(
    `<p class="muted">suite ${esc(r.suite)} · profile ${esc(r.profile)} · device ${esc(r.device.id)} (${esc(r.device.driver)}, ${esc(r.device.class)}) · ${esc((r.durationMs / 1000).toFixed(3))} s</p>`,
  );
  parts.push(kvTable(r.observed, r.expected));
  if (r.faults.length > 0) {
    parts.push(`<div class="faults"><strong>Console faults (${r.faults.length})</strong>`);
    for (const f of r.faults) {
      parts.push(
        `<div class="fault"><div><span class="st-fail">${esc(f.kind)}</span> ${esc(f.title)}${f.step ? ` <span class="muted">during step ${esc(f.step)}</span>` : ''}</div><pre class="fault-lines">${esc(f.lines.join('\n'))}</pre></div>`,
      );
    }
    parts.push('</div>');
  }
  if (r.log && r.log.length > 0) parts.push(`<div><strong>Step log</strong><pre class="step-log">${esc(r.log.join('\n'))}</pre></div>`);
  const arts = Object.entries(r.artifacts);
  if (arts.length > 0) {
    parts.push(`<div><strong>Artifacts</strong><ul class="mono">${arts.map(([k, v]) => `<li>${esc(k)}: ${esc(v)}</li>`).join('')}</ul></div>`);
  }
  return (
    `<details class="result st-${esc(r.status)}" id="r-${n}" data-status="${esc(r.status)}" data-profile="${esc(r.profile)}">` +
    `<summary>${esc(STATUS_LABEL[r.status])} · ${esc(r.profile)} · ${esc(r.device.id)}</summary>${parts.join('')}</details>`
  );
}

function summary(res: RunResults, verdict: ReportVerdict | undefined): string {
  const run = res.run;
  const counts = new Map<Status, number>(STATUSES.map((s) => [s, 0]));
  for (const r of res.results) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const env: [string, string | undefined][] = [
    ['tool', `${run.tool.name} ${run.tool.version}`],
    ['started', run.startedAt],
    ['ended', run.endedAt ?? '(not recorded)'],
    ['host', `${run.host.hostname} (${run.host.arch}, ${run.host.cpus} CPUs)`],
    ['target', `${run.target.kind}${run.target.address ? ` ${run.target.address}` : ''}`],
    ['kernel', run.kernel ? `${run.kernel.release} (${run.kernel.arch})` : '(not recorded)'],
    ['kernel source', run.kernel?.sourceId],
    ['kernel config', run.kernel?.configHash],
    ['accel', run.accel ?? '(not recorded)'],
    ['QEMU', run.qemu ? `${run.qemu.version} (${run.qemu.binary})` : '(not recorded)'],
    ['profiles', run.profiles.join(', ') || '(none)'],
    ['suites', run.suites.join(', ') || '(none)'],
  ];
  const bad = !run.complete || run.errors.length > 0 || (counts.get('fail') ?? 0) + (counts.get('error') ?? 0) > 0;
  const problems = [
    [counts.get('fail') ?? 0, 'failed'],
    [counts.get('error') ?? 0, 'errors'],
    [run.errors.length, run.errors.length === 1 ? 'harness error' : 'harness errors'],
  ].filter(([n]) => n !== 0).map(([n, w]) => `${n} ${w}`);
  const state = run.complete
    ? `<div class="banner ${bad ? 'bad' : 'good'}" id="run-state" data-complete="true">Run complete: ${res.results.length} results${problems.length > 0 ? ` — ${problems.join(', ')}` : ', no failures'}</div>`
    : `<div class="banner bad" id="run-state" data-complete="false">Run INCOMPLETE: it is still going or died half-way; ${res.results.length} results were recorded</div>`;
  const gate = verdict === undefined
    ? ''
    : `<div class="banner ${verdict.exitCode === 0 ? 'good' : 'bad'}" id="gate" data-exit="${verdict.exitCode}">Gate: ${
      verdict.exitCode === 0 ? 'OK' : verdict.exitCode === 1 ? 'REGRESSION' : 'HARNESS ERROR'
    } — ${verdict.regressions} regression${verdict.regressions === 1 ? '' : 's'}, ${verdict.known.size} known failure${verdict.known.size === 1 ? '' : 's'} (expectations or baseline; marked "known" below)</div>`;
  const errors =
    run.errors.length === 0
      ? ''
      : `<h2>Harness errors (${run.errors.length})</h2><ul class="harness-errors">${run.errors
          .map((e) => `<li>${e.profile ? `<strong>${esc(e.profile)}</strong>: ` : ''}${esc(e.message)}${e.log ? ` <span class="muted">(log: <code>${esc(e.log)}</code>)</span>` : ''}</li>`)
          .join('')}</ul>`;
  return (
    `<section id="summary"><h1>vfio-conformance — ${esc(run.kernel?.release ?? 'unknown kernel')}${run.accel ? ` · ${esc(run.accel)}` : ''}</h1>` +
    state +
    gate +
    `<dl class="env">${env.filter(([, v]) => v !== undefined).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>` +
    `<ul class="counts" aria-label="results per status"><li>total <strong data-count="total">${res.results.length}</strong></li>${STATUSES.map(
      (s) => `<li class="st-${s}">${esc(STATUS_LABEL[s])} <strong data-count="${s}">${counts.get(s) ?? 0}</strong></li>`,
    ).join('')}</ul>` +
    errors +
    '</section>'
  );
}

function filters(res: RunResults, columns: Column[]): string {
  const profiles = [...new Set(columns.map((c) => c.profile))];
  return (
    `<form class="filters" id="filters" role="search" aria-label="filter cases">` +
    `<fieldset><legend>status</legend>${STATUSES.map(
      (s) => `<label class="st-${s}"><input type="checkbox" name="status" value="${s}" checked> ${esc(STATUS_LABEL[s])}</label>`,
    ).join('')}</fieldset>` +
    `<label>case <input type="search" id="f-text" placeholder="filter case id (substring)" autocomplete="off"></label>` +
    `<label>profile <select id="f-profile"><option value="">all profiles</option>${profiles.map((p) => `<option value="${esc(p)}">${esc(p)}</option>`).join('')}</select></label>` +
    `<span id="shown" aria-live="polite">${res.results.length === 0 ? 'no results' : ''}</span>` +
    '</form>'
  );
}

function grid(columns: Column[], rows: Row[], verdict: ReportVerdict | undefined): string {
  const profiles: { profile: string; span: number }[] = [];
  for (const c of columns) {
    const last = profiles[profiles.length - 1];
    if (last && last.profile === c.profile) last.span++;
    else profiles.push({ profile: c.profile, span: 1 });
  }
  const head =
    `<thead><tr><th scope="col" rowspan="2">case</th>${profiles.map((p) => `<th scope="colgroup" colspan="${p.span}" data-profile="${esc(p.profile)}" data-span="${p.span}">${esc(p.profile)}</th>`).join('')}</tr>` +
    `<tr>${columns.map((c) => `<th scope="col" data-profile="${esc(c.profile)}">${esc(c.device)}</th>`).join('')}</tr></thead>`;
  const body = rows.map((row, i) => {
    const details: string[] = [];
    const cells = columns.map((c) => {
      const list = row.cells.get(c.key);
      if (!list) return `<td class="cell st-none" data-profile="${esc(c.profile)}" data-status="" aria-label="not run">—</td>`;
      const st = worst(list);
      const statuses = [...new Set(list.map((x) => x.r.status))];
      const bad = list.filter((x) => x.r.status === 'fail' || x.r.status === 'error');
      const allKnown = bad.length > 0 && bad.every((x) => knownWhy(verdict, x.r));
      const label = `${list.length === 1 ? STATUS_LABEL[st] : `${STATUS_LABEL[st]} (${list.length} results)`}${allKnown ? ' (known)' : ''}`;
      const reasons = list.map((x) => x.r.reason).filter((x): x is string => !!x);
      const title = reasons.length > 0 ? ` title="${esc(reasons.join('\n'))}"` : '';
      const aria = `${row.id} on ${c.profile} ${c.device}: ${list.map((x) => x.r.status).join(', ')}`;
      const nonPass = list.filter((x) => x.r.status !== 'pass');
      for (const x of nonPass) details.push(resultDetails(x.r, x.n, verdict));
      const inner = nonPass.length > 0
        ? `<button type="button" data-open="r-${nonPass[0]!.n}" aria-label="${esc(`${aria} (show details)`)}">${esc(label)}</button>`
        : `<span aria-label="${esc(aria)}">${esc(label)}</span>`;
      return `<td class="cell st-${st}${allKnown ? ' known' : ''}" data-profile="${esc(c.profile)}" data-status="${esc(statuses.join(' '))}"${allKnown ? ' data-known="true"' : ''}${title}>${inner}</td>`;
    });
    const main = `<tr class="case" id="case-${i}" data-id="${esc(row.id)}"${details.length > 0 ? ` data-details="d-${i}"` : ''}><th scope="row" class="case">${esc(row.id)}</th>${cells.join('')}</tr>`;
    const drow = details.length > 0 ? `<tr class="details" id="d-${i}" hidden><td colspan="${columns.length + 1}">${details.join('')}</td></tr>` : '';
    return main + drow;
  });
  return `<table class="grid" id="grid">${head}<tbody>${body.join('')}</tbody></table>`;
}

/**
 * The page script: filters and details. Kept free of data (it reads the DOM), so its hash — and so
 * the CSP — does not depend on the run.
 */
const SCRIPT = `(function () {
  'use strict';
  var form = document.getElementById('filters');
  var text = document.getElementById('f-text');
  var profileSel = document.getElementById('f-profile');
  var shown = document.getElementById('shown');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#grid tr.case'));
  var heads = Array.prototype.slice.call(document.querySelectorAll('#grid thead th[data-profile]'));
  var opened = {};
  function checked() {
    var set = {};
    Array.prototype.forEach.call(form.querySelectorAll('input[name=status]'), function (b) { if (b.checked) set[b.value] = true; });
    return set;
  }
  function apply() {
    var st = checked();
    var q = text.value.trim().toLowerCase();
    var prof = profileSel.value;
    var visible = 0;
    heads.forEach(function (h) { h.hidden = !!prof && h.getAttribute('data-profile') !== prof; });
    rows.forEach(function (row) {
      var any = false;
      Array.prototype.forEach.call(row.querySelectorAll('td.cell'), function (td) {
        var inProfile = !prof || td.getAttribute('data-profile') === prof;
        td.hidden = !inProfile;
        var ss = (td.getAttribute('data-status') || '').split(' ');
        var hit = false;
        for (var i = 0; i < ss.length; i++) if (ss[i] && st[ss[i]]) hit = true;
        td.classList.toggle('dim', !hit);
        if (inProfile && hit) any = true;
      });
      var show = any && (!q || row.getAttribute('data-id').toLowerCase().indexOf(q) >= 0);
      row.hidden = !show;
      if (show) visible++;
      var did = row.getAttribute('data-details');
      if (did) {
        var d = document.getElementById(did);
        d.hidden = !show || !opened[did];
        if (show) {
          d.firstElementChild.colSpan = 1 + row.querySelectorAll('td.cell:not([hidden])').length;
          Array.prototype.forEach.call(d.querySelectorAll('details.result'), function (det) {
            det.hidden = !st[det.getAttribute('data-status')] || (!!prof && det.getAttribute('data-profile') !== prof);
          });
        }
      }
    });
    shown.textContent = 'showing ' + visible + ' of ' + rows.length + ' cases';
    shown.setAttribute('data-visible', String(visible));
  }
  function openResult(rid, scroll) {
    var det = document.getElementById(rid);
    if (!det) return;
    var drow = det.closest('tr.details');
    opened[drow.id] = true;
    det.open = true;
    apply();
    if (scroll) det.scrollIntoView({ block: 'nearest' });
  }
  document.getElementById('grid').addEventListener('click', function (ev) {
    var b = ev.target.closest ? ev.target.closest('button[data-open]') : null;
    if (!b) return;
    var rid = b.getAttribute('data-open');
    var det = document.getElementById(rid);
    var drow = det && det.closest('tr.details');
    if (drow && opened[drow.id] && det.open) { opened[drow.id] = false; apply(); return; }
    openResult(rid, true);
  });
  form.addEventListener('input', apply);
  form.addEventListener('change', apply);
  form.addEventListener('submit', function (ev) { ev.preventDefault(); });
  apply();
  var m = /^#(r-\\d+)$/.exec(location.hash);
  if (m) openResult(m[1], true);
})();`;

/**
 * Which kernel arcs each client walked, read from what the suites recorded: the direct-ioctl suite
 * puts the path the kernel composed in `expected.arcs` of its passing arc cases, the real-client
 * suite puts the arcs QEMU's walk implies in `observed.vfio.<side>.arcs`. Only arcs named there
 * appear; nothing is derived from the contract here.
 */
export function arcCoverage(res: RunResults): { arc: string; direct: number; realClient: string[] }[] {
  const direct = new Map<string, number>();
  const real = new Map<string, Set<string>>();
  for (const r of res.results) {
    if (r.suite === 'migration' && r.id.startsWith('migration/arc/') && r.status === 'pass') {
      const arcs = typeof r.expected?.arcs === 'string' ? r.expected.arcs : '';
      for (const a of arcs.split(',').map((x) => x.trim()).filter((x) => x && x !== 'none')) direct.set(a, (direct.get(a) ?? 0) + 1);
    }
    const vfio = (r.observed as { vfio?: Record<string, unknown> } | undefined)?.vfio;
    if (r.suite === 'qemu-migration' && vfio && typeof vfio === 'object') {
      for (const side of Object.values(vfio)) {
        for (const w of (Array.isArray(side) ? side : [side]) as { arcs?: unknown }[]) {
          for (const a of Array.isArray(w?.arcs) ? w.arcs : []) if (typeof a === 'string') real.set(a, (real.get(a) ?? new Set()).add(r.id));
        }
      }
    }
  }
  const arcs = [...new Set([...direct.keys(), ...real.keys()])].sort();
  return arcs.map((arc) => ({ arc, direct: direct.get(arc) ?? 0, realClient: [...(real.get(arc) ?? [])].sort() }));
}

function coverageSection(res: RunResults): string {
  const cov = arcCoverage(res);
  if (!cov.length || !cov.some((c) => c.realClient.length)) return '';
  const rows = cov.map((c) => `<tr><td><code>${esc(c.arc)}</code></td><td>${c.direct ? `${c.direct} case${c.direct > 1 ? 's' : ''}` : '<span class="muted">-</span>'}</td>` +
    `<td>${c.realClient.length ? esc(c.realClient.map((id) => id.split('/').pop()).join(', ')) : '<span class="muted">only the direct suite</span>'}</td></tr>`).join('');
  const onlyDirect = cov.filter((c) => !c.realClient.length).length;
  return `\n<section id="arc-coverage"><h2>FSM arc coverage</h2><p>${cov.length} kernel arcs walked; the real QEMU client walked ${cov.length - onlyDirect}, ${onlyDirect} only by the direct-ioctl suite.</p>` +
    `<table class="cov"><thead><tr><th>arc</th><th>direct-ioctl suite (passing paths through it)</th><th>real QEMU client (cases)</th></tr></thead><tbody>${rows}</tbody></table></section>\n`;
}

/** The whole page for one run. */
/**
 * The gate's verdict as the report shows it: which failures are known (and why) and how many
 * regressions. Computed from the results and the expectations by the caller; the report only reads it.
 */
export interface ReportVerdict {
  exitCode: 0 | 1 | 2;
  regressions: number;
  /** `${id}\0${profile}\0${device id}` -> why it is known (expectations or baseline) */
  known: Map<string, string>;
}

export const knownKey = (id: string, profile: string, device: string) => `${id}\0${profile}\0${device}`;

export function renderHtml(res: RunResults, verdict?: ReportVerdict): string {
  const { columns, rows } = layout(res);
  const title = `vfio-conformance ${res.run.kernel?.release ?? ''} ${res.run.startedAt}`.replace(/\s+/g, ' ').trim();
  return (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
    cspMeta([SCRIPT]) +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${esc(title)}</title><style>${REPORT_CSS}</style></head><body>\n` +
    summary(res, verdict) +
    '\n<section id="results"><h2>Results</h2>' +
    filters(res, columns) +
    (rows.length === 0 ? '<p class="muted">No results recorded.</p>' : grid(columns, rows, verdict)) +
    '</section>\n' +
    coverageSection(res) +
    `<script type="application/json" id="vfio-results">${jsonForScript(res)}</script>\n` +
    `<script>${SCRIPT}</script>\n</body></html>\n`
  );
}

/** Write `<runDir>/index.html` atomically; returns its path. */
export function writeHtml(runDir: string, res: RunResults): string {
  const path = join(runDir, HTML_FILE);
  writeFileAtomicSync(path, renderHtml(res));
  return path;
}
