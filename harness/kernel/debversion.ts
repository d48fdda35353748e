/**
 * Debian version ordering (deb-version(7)): [epoch:]upstream[-revision], compared epoch first, then
 * upstream, then revision, each by alternating non-digit and digit runs, where '~' sorts before
 * everything (even the end of the string) and letters sort before other characters. Needed to pick
 * the newest of a source package's listed versions: apt lists them in index order, not by version.
 */
export function compareDebVersions(a: string, b: string): number {
  const pa = split(a);
  const pb = split(b);
  return pa.epoch - pb.epoch || comparePart(pa.upstream, pb.upstream) || comparePart(pa.revision, pb.revision);
}

function split(v: string): { epoch: number; upstream: string; revision: string } {
  const colon = v.indexOf(':');
  const epoch = colon > 0 ? Number(v.slice(0, colon)) || 0 : 0;
  const rest = colon > 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf('-');
  return dash > 0 ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) } : { epoch, upstream: rest, revision: '' };
}

/** Weight of one character in the non-digit runs: '~' lowest, the end of a run next, letters, then the rest. */
function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // non-digit run
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const ca = i < a.length && !/\d/.test(a[i]!) ? a[i] : undefined;
      const cb = j < b.length && !/\d/.test(b[j]!) ? b[j] : undefined;
      const d = order(ca) - order(cb);
      if (d) return d;
      if (ca !== undefined) i++;
      if (cb !== undefined) j++;
    }
    // digit run, compared as numbers (leading zeros do not count)
    let na = '';
    let nb = '';
    while (i < a.length && /\d/.test(a[i]!)) na += a[i++];
    while (j < b.length && /\d/.test(b[j]!)) nb += b[j++];
    const d = Number(na || '0') - Number(nb || '0');
    if (d) return d;
  }
  return 0;
}
