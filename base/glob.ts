/**
 * Case-id globs, as the expectations file has them: `*` matches any run of characters, `/`
 * included; every other character matches itself; the whole id must match.
 */
export function globToRegExp(glob: string): RegExp {
  const body = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}$`, 's');
}

const cache = new Map<string, RegExp>();

export function globMatch(glob: string, s: string): boolean {
  let re = cache.get(glob);
  if (!re) cache.set(glob, (re = globToRegExp(glob)));
  return re.test(s);
}

/** The literal text before a glob's first `*` (all of it when there is none). */
export function globPrefix(glob: string): string {
  const i = glob.indexOf('*');
  return i < 0 ? glob : glob.slice(0, i);
}

/**
 * Whether some id could match both globs, judged by their literal prefixes only: used to tell a
 * selection that may reach ids a suite cannot list before setup from one that cannot.
 */
export function globsMayOverlap(a: string, b: string): boolean {
  const pa = globPrefix(a);
  const pb = globPrefix(b);
  return pa.startsWith(pb) || pb.startsWith(pa);
}
