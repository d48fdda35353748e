/**
 * The pictures of a run, where people look rather than read: time per profile and suite, boot time
 * per profile, the real client's downtime and device bytes per case, and the dirty oracle's extra
 * pages. Each reads only what results.json recorded; a figure the run did not record is said so.
 */
import type { CaseResult, RunResults } from '../../base/results/schema.js';
import { dotStrip, seriesOf, stackedBars, type DotRow } from '../svg.js';
import { esc } from './text.js';

const seconds = (v: number): string => `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} s`;
const millis = (v: number): string => `${v.toFixed(0)} ms`;
/** Decimal units, so the round ticks of the axis (1000, 2000, ...) read as round numbers. */
const bytes = (v: number): string => (v < 1e3 ? `${v.toFixed(0)} B` : v < 1e6 ? `${+(v / 1e3).toFixed(1)} kB` : `${+(v / 1e6).toFixed(1)} MB`);

/** Profiles in the run's order, then any the results name that it did not announce. */
export function profilesOf(res: RunResults): string[] {
  return [...new Set([...res.run.profiles, ...res.results.map((r) => r.profile)])];
}

export function suitesOf(res: RunResults): string[] {
  return [...new Set([...res.run.suites, ...res.results.map((r) => r.suite)])].filter((s) => res.results.some((r) => r.suite === s));
}

function figure(caption: string, body: string, id: string): string {
  return `<figure id="${id}"><figcaption>${esc(caption)}</figcaption>${body}</figure>`;
}

function timePerProfile(res: RunResults, profiles: string[], suites: string[]): string {
  const rows = profiles.map((p) => ({
    label: p,
    values: suites.map((s) => res.results.filter((r) => r.profile === p && r.suite === s).reduce((a, r) => a + r.durationMs, 0) / 1000),
  }));
  return figure('Time per profile and suite (sum of case durations)', stackedBars('time per profile and suite', rows, seriesOf(suites), seconds), 'pic-time');
}

/** Boot times, when the run recorded them as `run.boots: [{profile, ms}]`. */
function bootPerProfile(res: RunResults, profiles: string[]): string {
  const raw = res.run.boots;
  const boots = Array.isArray(raw) ? raw.filter((b): b is { profile: string; ms: number } => typeof b?.profile === 'string' && typeof b?.ms === 'number') : [];
  if (boots.length === 0) return figure('Boot time per profile', '<p class="muted">This run recorded no boot times (run.boots).</p>', 'pic-boot');
  const rows = profiles.filter((p) => boots.some((b) => b.profile === p)).map((p) => {
    const mine = boots.filter((b) => b.profile === p).map((b) => b.ms / 1000);
    return { label: `${p}${mine.length > 1 ? ` (${mine.length} boots, longest)` : ''}`, values: [Math.max(...mine)] };
  });
  return figure('Boot time per profile (to the first SSH command)', stackedBars('boot time per profile', rows, seriesOf(['boot']), seconds), 'pic-boot');
}

/** A number from a result's measurements, or (runs written before measurements existed) its observed values. */
export function figureOf(r: CaseResult, key: string): number | undefined {
  const v = r.measurements?.[key] ?? r.observed?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function perCase(res: RunResults, profiles: string[], select: (r: CaseResult) => boolean, key: string, label = (r: CaseResult) => r.id.split('/').slice(1).join('/')): DotRow[] {
  const rows = new Map<string, DotRow>();
  for (const r of res.results) {
    if (!select(r)) continue;
    const v = figureOf(r, key);
    if (v === undefined) continue;
    const l = label(r);
    let row = rows.get(l);
    if (!row) rows.set(l, (row = { label: l, points: [] }));
    row.points.push({ series: Math.max(0, profiles.indexOf(r.profile)), value: v });
  }
  return [...rows.values()];
}

function realClient(res: RunResults, profiles: string[]): string[] {
  const qm = (r: CaseResult) => r.suite === 'qemu-migration';
  const series = seriesOf(profiles);
  const down = perCase(res, profiles, qm, 'downtimeMs');
  const dev = perCase(res, profiles, qm, 'deviceBytes');
  if (down.length === 0 && dev.length === 0) return [];
  return [
    figure('Real-client migration: downtime per case (QEMU\'s figure)', dotStrip('migration downtime per case and profile', down, series, millis), 'pic-downtime'),
    figure('Real-client migration: device bytes per case', dotStrip('device bytes per case and profile', dev, series, bytes), 'pic-bytes'),
  ];
}

function dirtyOracle(res: RunResults, profiles: string[]): string[] {
  const oracle = (r: CaseResult) => r.id.startsWith('dirty/oracle/');
  const rows = [
    ...perCase(res, profiles, oracle, 'falsePositivesA', (r) => `${r.id.split('/').pop()} · observer A`),
    ...perCase(res, profiles, oracle, 'falsePositivesB', (r) => `${r.id.split('/').pop()} · observer B`),
  ].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  if (rows.length === 0) return [];
  return [figure('Dirty oracle: extra pages reported (not written)', dotStrip('dirty oracle extra pages per observer and profile', rows, seriesOf(profiles), (v) => v.toFixed(0)), 'pic-oracle')];
}

export function pictures(res: RunResults): string {
  if (res.results.length === 0) return '';
  const profiles = profilesOf(res);
  const figs = [timePerProfile(res, profiles, suitesOf(res)), bootPerProfile(res, profiles), ...realClient(res, profiles), ...dirtyOracle(res, profiles)];
  return `<section id="pictures"><h2>Pictures</h2><div class="pictures">${figs.join('')}</div></section>`;
}
