import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HarnessError } from '../../base/errors.js';
import { hashParts } from '../../base/hash.js';
import { runLogged } from '../../base/proc.js';

/** Our patch series: the names in `series` order, their text, and one hash over both (part of the build's key). */
export interface Series {
  hash: string;
  patches: string[];
  texts?: Record<string, string>;
}

/** Read images/qemu/patches/series: one patch file name a line, '#' comments, applied in that order. */
export function readSeries(dir: string): Series {
  const file = join(dir, 'series');
  if (!existsSync(file)) throw new HarnessError(`patch series missing: ${file}`);
  const patches = readFileSync(file, 'utf8').split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
  const seen = new Set<string>();
  const texts: Record<string, string> = {};
  for (const name of patches) {
    if (seen.has(name)) throw new HarnessError(`${file}: ${name} is listed twice`);
    seen.add(name);
    const p = join(dir, name);
    if (!existsSync(p)) throw new HarnessError(`${file} lists ${name}, which is not in ${dir}`);
    texts[name] = readFileSync(p, 'utf8');
  }
  const hash = patches.length ? hashParts(Object.fromEntries(patches.map((n, i) => [`${String(i).padStart(3, '0')} ${n}`, texts[n]!]))).slice(0, 16) : 'none';
  return { hash, patches, texts };
}

/**
 * Apply the series onto a tree, in order. A patch that does not apply stops the build and names
 * itself and the first hunk that failed: applying the rest onto a half-patched tree would only
 * bury the real error under consequential ones.
 */
export async function applySeries(series: Series, tree: string, log: string): Promise<void> {
  for (const name of series.patches) {
    try {
      await runLogged('patch', ['-p1', '--batch', '--forward', '--no-backup-if-mismatch', '-d', tree], {
        log, what: `patch ${name}`, input: series.texts![name]!,
      });
    } catch (e) {
      const detail = e instanceof HarnessError ? e.message.replace(/^patch \S+ failed: /, '') : String(e);
      throw new HarnessError(`QEMU patch ${name} does not apply: ${detail}`, { log });
    }
  }
}
