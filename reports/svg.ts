/**
 * Small charts drawn as inline SVG (no library, no external asset): stacked horizontal bars and a
 * dot strip. Every chart carries role="img", an aria-label and a <title>, and every bar or dot a
 * <title> with its figure, so the numbers read without the picture.
 */
import { esc } from './html/text.js';

export interface Series { name: string; color: string }

/** Distinct, colour-blind-friendly enough (Okabe-Ito, then a few more). */
export const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#f0e442', '#000000', '#999999'];

export const seriesOf = (names: string[]): Series[] => names.map((name, i) => ({ name, color: PALETTE[i % PALETTE.length]! }));

const ROW = 20;
const TOP = 8;
const AXIS = 22;

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function labelWidth(labels: string[]): number {
  return Math.min(280, Math.max(60, ...labels.map((l) => l.length * 6.4 + 10)));
}

function axis(x0: number, w: number, y: number, max: number, unit: (v: number) => string): string {
  // quarters of a 2-led maximum (0.5 steps), fifths of a 1- or 5-led one: round numbers either way
  const steps = String(max)[0] === '2' ? 4 : 5;
  const ticks = Array.from({ length: steps + 1 }, (_, i) => i / steps).map((f) => {
    const x = x0 + f * w;
    return `<line class="grid" x1="${x}" x2="${x}" y1="${TOP}" y2="${y}"/><text x="${x}" y="${y + 14}" text-anchor="middle">${esc(unit(max * f))}</text>`;
  });
  return `${ticks.join('')}<line class="axis" x1="${x0}" x2="${x0 + w}" y1="${y}" y2="${y}"/>`;
}

export function legend(series: Series[]): string {
  return `<div class="legend">${series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join('')}</div>`;
}

export interface BarRow { label: string; values: number[] }

/** One bar per row, split into one segment per series; the row's total is written after the bar. */
export function stackedBars(title: string, rows: BarRow[], series: Series[], unit: (v: number) => string, width = 620): string {
  const lw = labelWidth(rows.map((r) => r.label));
  const w = width - lw - 70;
  const max = niceMax(Math.max(0, ...rows.map((r) => r.values.reduce((a, b) => a + b, 0))));
  const h = TOP + rows.length * ROW + AXIS;
  const body = rows.map((r, i) => {
    const y = TOP + i * ROW;
    let x = lw;
    const segs = r.values.map((v, k) => {
      const sw = (v / max) * w;
      const tip = esc(`${r.label}, ${series[k]!.name}: ${unit(v)}`);
      const seg = sw > 0 ? `<rect x="${x.toFixed(1)}" y="${y + 3}" width="${sw.toFixed(1)}" height="${ROW - 6}" fill="${series[k]!.color}"><title>${tip}</title></rect>` : '';
      x += sw;
      return seg;
    });
    const total = r.values.reduce((a, b) => a + b, 0);
    return `<text x="${lw - 6}" y="${y + ROW / 2 + 4}" text-anchor="end">${esc(r.label)}</text>${segs.join('')}` +
      `<text x="${(x + 4).toFixed(1)}" y="${y + ROW / 2 + 4}">${esc(unit(total))}</text>`;
  });
  return `<svg class="chart" role="img" aria-label="${esc(title)}" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}"><title>${esc(title)}</title>` +
    `${axis(lw, w, TOP + rows.length * ROW, max, unit)}${body.join('')}</svg>${legend(series)}`;
}

export interface DotRow { label: string; points: { series: number; value: number }[] }

/** One line per row, one dot per series on a shared axis: where the same figure lands per profile. */
export function dotStrip(title: string, rows: DotRow[], series: Series[], unit: (v: number) => string, width = 620): string {
  const lw = labelWidth(rows.map((r) => r.label));
  const w = width - lw - 20;
  const max = niceMax(Math.max(0, ...rows.flatMap((r) => r.points.map((p) => p.value))));
  const h = TOP + rows.length * ROW + AXIS;
  const body = rows.map((r, i) => {
    const y = TOP + i * ROW + ROW / 2;
    const dots = r.points.map((p) => {
      const s = series[p.series]!;
      // each series a little above or below the line, so equal values stay visible side by side
      const dy = (p.series - (series.length - 1) / 2) * (series.length > 1 ? Math.min(2.5, 10 / (series.length - 1)) : 0);
      return `<circle cx="${(lw + (p.value / max) * w).toFixed(1)}" cy="${(y + dy).toFixed(1)}" r="4" fill="${s.color}" fill-opacity="0.85"><title>${esc(`${r.label}, ${s.name}: ${unit(p.value)}`)}</title></circle>`;
    });
    return `<text x="${lw - 6}" y="${y + 4}" text-anchor="end">${esc(r.label)}</text><line class="grid" x1="${lw}" x2="${lw + w}" y1="${y}" y2="${y}"/>${dots.join('')}`;
  });
  return `<svg class="chart" role="img" aria-label="${esc(title)}" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}"><title>${esc(title)}</title>` +
    `${axis(lw, w, TOP + rows.length * ROW, max, unit)}${body.join('')}</svg>${legend(series)}`;
}
