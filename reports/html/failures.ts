/**
 * Failures first: regressions, then known failures grouped by their expectation's reason, then
 * warnings; each folded, with its full case id, the reason, observed vs expected, measurements, the
 * console excerpt and the step log (those two filled in from the packed results when opened, so the
 * page stays small). Skips and expected-unsupported results follow at the end, grouped by reason.
 */
import type { CaseResult, RunResults } from '../../base/results/schema.js';
import { clip, duration, esc, plural, statusLabel, valueText } from './text.js';
import { categoryOf, knownWhy, type Category, type ReportVerdict } from './verdict.js';

/** Console lines shown before the page unpacks the rest. */
const FAULT_HEAD = 6;

function kvTable(observed: Record<string, unknown> | undefined, expected: Record<string, unknown> | undefined): string {
  const keys = [...new Set([...Object.keys(observed ?? {}), ...Object.keys(expected ?? {})])];
  if (keys.length === 0) return '<p class="muted">No observed or expected values recorded.</p>';
  const rows = keys.map((k) => {
    const o = observed && k in observed ? valueText(observed[k]) : '—';
    const e = expected && k in expected ? valueText(expected[k]) : '—';
    const differs = !!expected && k in expected && !!observed && JSON.stringify(observed[k]) !== JSON.stringify(expected[k]);
    return `<tr${differs ? ' class="differs"' : ''}><th scope="row">${esc(k)}</th><td>${esc(o)}</td><td>${esc(e)}</td></tr>`;
  });
  return '<table class="kv observed-expected"><thead><tr><th scope="col">value</th><th scope="col">observed</th><th scope="col">expected</th></tr></thead>' +
    `<tbody>${rows.join('')}</tbody></table>`;
}

function measurementsTable(m: Record<string, unknown> | undefined): string {
  const keys = Object.keys(m ?? {});
  if (!m || keys.length === 0) return '';
  return `<table class="kv measurements"><thead><tr><th scope="col">measurement</th><th scope="col">this run</th></tr></thead><tbody>${keys
    .map((k) => `<tr><th scope="row">${esc(k)}</th><td>${esc(valueText(m[k]))}</td></tr>`).join('')}</tbody></table>`;
}

/** One result, folded. `n` is its index in results.json: the page unpacks its log by it. */
export function resultDetails(r: CaseResult, n: number, v: ReportVerdict | undefined): string {
  const cat = categoryOf(r, v);
  const why = knownWhy(v, r);
  const parts: string[] = [];
  parts.push(`<div class="reason"><strong>Reason:</strong> ${r.reason === undefined ? '<span class="muted">(no reason given)</span>' : esc(r.reason)}</div>`);
  if (why !== undefined) parts.push(`<div class="known"><strong>Known failure:</strong> ${esc(why)}</div>`);
  if (r.blockedBy) parts.push(`<div class="blocked"><strong>Blocked by:</strong> <code>${esc(r.blockedBy)}</code> (the case that tests the precondition)</div>`);
  const device = `${r.device.id} (${r.device.driver}, ${r.device.class})`;
  parts.push(`<p class="muted">suite ${esc(r.suite)} · profile ${esc(r.profile)} · device ${esc(device)} · ${esc(duration(r.durationMs))}</p>`);
  parts.push(kvTable(r.observed, r.expected), measurementsTable(r.measurements));
  r.faults.forEach((f, i) => {
    const head = f.lines.slice(0, FAULT_HEAD).join('\n');
    const more = f.lines.length > FAULT_HEAD ? `\n[${f.lines.length - FAULT_HEAD} more lines: shown when the page has unpacked them]` : '';
    parts.push(`<div class="fault"><strong>Console: ${esc(f.kind)}</strong> ${esc(f.title)}${f.step ? ` <span class="muted">(during step ${esc(f.step)})</span>` : ''}` +
      `<pre class="fault-lines" data-n="${n}" data-fault="${i}">${esc(head + more)}</pre></div>`);
  });
  const lines = r.log?.length ?? 0;
  if (lines > 0) parts.push(`<div><strong>Step log</strong> <span class="muted">(${plural(lines, 'line')})</span><pre class="step-log" data-n="${n}">(unpacking the step log…)</pre></div>`);
  const arts = Object.entries(r.artifacts);
  if (arts.length > 0) parts.push(`<div><strong>Artifacts</strong> <span class="mono">${arts.map(([k, p]) => `${esc(k)}: ${esc(p)}`).join(' · ')}</span></div>`);
  return `<details class="result c-${cat}" id="r-${n}" data-n="${n}" data-status="${esc(r.status)}" data-profile="${esc(r.profile)}">` +
    `<summary><span class="chip c-${cat}">${esc(statusLabel(r.status))}</span> <code class="id">${esc(r.id)}</code> ` +
    `<span class="muted">${esc(r.profile)} · ${esc(r.device.id)}</span> <span class="why">${esc(clip(r.reason ?? '', 140))}</span></summary>${parts.join('')}</details>`;
}

interface Indexed { r: CaseResult; n: number }

/** Regressions past this many are grouped by suite (each group open), so one broken suite does not bury the rest. */
const GROUP_REGRESSIONS = 20;

function group(title: string, items: Indexed[], v: ReportVerdict | undefined, key: (x: Indexed) => string, open = false): string {
  const groups = new Map<string, Indexed[]>();
  for (const x of items) {
    const k = key(x);
    groups.set(k, [...(groups.get(k) ?? []), x]);
  }
  return [...groups].sort((a, b) => b[1].length - a[1].length)
    .map(([k, xs]) => `<details class="group" data-group="${esc(title)}"${open ? ' open' : ''}><summary>${esc(clip(k, 220))} <span class="muted">(${plural(xs.length, 'result')})</span></summary>` +
      `<div class="members">${xs.map((x) => resultDetails(x.r, x.n, v)).join('')}</div></details>`).join('');
}

export function failuresSection(res: RunResults, v: ReportVerdict | undefined): string {
  const by = new Map<Category, Indexed[]>();
  res.results.forEach((r, n) => {
    const c = categoryOf(r, v);
    by.set(c, [...(by.get(c) ?? []), { r, n }]);
  });
  const fail = by.get('fail') ?? [];
  const known = by.get('known') ?? [];
  const warn = by.get('warning') ?? [];
  const blocked = by.get('blocked') ?? [];
  const out: string[] = ['<section id="failures"><h2>Failures first</h2>'];
  if (fail.length + known.length + warn.length + blocked.length === 0) out.push('<p class="muted">No failures and no warnings.</p>');
  if (fail.length > 0) {
    out.push(`<h3 id="regressions">${v ? 'Regressions' : 'Failures'} (${fail.length})</h3>`);
    out.push(fail.length > GROUP_REGRESSIONS
      ? group('regressions', fail, v, (x) => x.r.suite, true)
      : fail.map((x) => resultDetails(x.r, x.n, v)).join(''));
  }
  if (known.length > 0) {
    out.push(`<h3 id="known">Known failures (${known.length}), by reason</h3>`);
    out.push(group('known', known, v, (x) => knownWhy(v, x.r) ?? ''));
  }
  if (blocked.length > 0) {
    out.push(`<h3 id="blocked">Blocked by a precondition (${blocked.length}), by the case that explains them</h3>`);
    out.push(group('blocked', blocked, v, (x) => x.r.blockedBy ?? '(no case named)'));
  }
  if (warn.length > 0) {
    out.push(`<h3 id="warnings">Warnings (${warn.length})</h3>`);
    out.push(warn.map((x) => resultDetails(x.r, x.n, v)).join(''));
  }
  out.push('</section>');
  return out.join('');
}

/** Skips and expected-unsupported results, by reason: a link target for every such cell. */
export function notRunSection(res: RunResults, v: ReportVerdict | undefined): string {
  const items: Indexed[] = [];
  res.results.forEach((r, n) => {
    const c = categoryOf(r, v);
    if (c === 'skip' || c === 'unsupported') items.push({ r, n });
  });
  if (items.length === 0) return '';
  const groups = new Map<string, Indexed[]>();
  for (const x of items) {
    const k = `${statusLabel(x.r.status)}: ${x.r.reason ?? '(no reason given)'}`;
    groups.set(k, [...(groups.get(k) ?? []), x]);
  }
  const body = [...groups].sort((a, b) => b[1].length - a[1].length).map(([k, xs]) =>
    `<details class="group"><summary>${esc(clip(k, 220))} <span class="muted">(${plural(xs.length, 'result')})</span></summary><ul class="members">${xs
      .map((x) => `<li id="r-${x.n}" data-n="${x.n}"><code>${esc(x.r.id)}</code> <span class="muted">${esc(x.r.profile)} · ${esc(x.r.device.id)}</span></li>`).join('')}</ul></details>`);
  return `<section id="not-run"><h2>Skipped and expected-unsupported (${items.length}), by reason</h2>${body.join('')}</section>`;
}
