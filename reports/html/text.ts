/**
 * Text for HTML: escaping, JSON inside a script element, values as text, the CSP line, and the
 * short words a status is shown with. Every string from results.json goes through `esc` exactly once.
 */
import { createHash } from 'node:crypto';
import type { Status } from '../../base/results/schema.js';

/** Escape text for HTML element content and (double- or single-quoted) attribute values. */
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

/** `<meta>` CSP allowing only the given inline scripts (by hash) and inline styles. */
export function cspMeta(scripts: string[]): string {
  const hashes = scripts.map((s) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`);
  const policy = `default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src ${hashes.join(' ') || "'none'"}; base-uri 'none'; form-action 'none'`;
  return `<meta http-equiv="Content-Security-Policy" content="${esc(policy)}">`;
}

/** Short text shown for a status. */
export const STATUS_LABEL: Record<Status, string> = {
  pass: 'pass',
  fail: 'FAIL',
  error: 'ERROR',
  skip: 'skip',
  'expected-unsupported': 'unsupported (expected)',
  warning: 'warning',
  blocked: 'blocked',
};

/** A status's label, and the status itself for one this page does not know yet. */
export const statusLabel = (s: Status): string => STATUS_LABEL[s] ?? s;

export const plural = (n: number, word: string, many = `${word}s`): string => `${n.toLocaleString('en-US')} ${n === 1 ? word : many}`;

/** 452300 ms -> "7 min 32 s"; 1234 -> "1.2 s". */
export function duration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const s = Math.round(ms / 1000);
  return s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** 1536 -> "1.5 KiB". */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** A fragment id made of a name: `suite-qemu-migration`. */
export const anchor = (prefix: string, name: string): string => `${prefix}-${name.replace(/[^A-Za-z0-9_-]+/g, '_')}`;

/** Cut a one-line summary of a long text. */
export function clip(s: string, max: number): string {
  const line = s.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}
