import { existsSync, readFileSync } from 'node:fs';

/** Checks a parsed metadata file; returns why the entry cannot be used, or undefined when it can. */
export type MetaCheck<T> = (m: T) => string | undefined;

/**
 * A cache entry's metadata, or undefined with the reason said on stderr. No file is a plain miss
 * (never built, or a build that did not finish); a file that does not parse or names outputs no
 * longer there is not, and what it costs (a kernel rebuild is 10-20 minutes) must not look like a
 * hang: `then` says what happens next ("rebuilding").
 */
export function readCacheMeta<T>(file: string, what: string, check: MetaCheck<T>, then: string, say = sayOnStderr): T | undefined {
  if (!existsSync(file)) return undefined;
  let why: string | undefined;
  let m: T | undefined;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as T;
    why = m && typeof m === 'object' ? check(m) : 'not a JSON object';
  } catch (e) {
    why = `unreadable: ${(e as Error).message}`;
  }
  if (why === undefined) return m;
  say(`${what}: cache entry ${file} cannot be used (${why}); ${then}`);
  return undefined;
}

function sayOnStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Field checks for MetaCheck: the first of `fields` that is not a non-empty string, named. */
export function missingString(m: object, fields: string[]): string | undefined {
  const bad = fields.find((f) => typeof (m as Record<string, unknown>)[f] !== 'string' || !(m as Record<string, string>)[f]);
  return bad === undefined ? undefined : `no ${bad}`;
}
