/**
 * OpenSSH known_hosts, as far as the harness needs it to decide whether a lab host's key is the one
 * the user trusts: plain and hashed (`|1|salt|hash`) host fields, `[host]:port` for a port other than
 * 22, comma lists, `*`/`?` wildcards and `!` negation, `@revoked` lines. `@cert-authority` lines are
 * read but never match (host certificates are not supported): a host known only through a CA is
 * "unknown" here, and the user has to add its key.
 *
 * The decision is OpenSSH's strict one: a key listed for the host is trusted; a host listed with
 * other keys only is refused (never "also accept this one"); a revoked key is refused; a host not
 * listed at all is unknown, which the caller refuses unless the user opted in to adding it.
 */
import { createHash, createHmac } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface KnownHostEntry {
  /** 1-based line number in the file */
  line: number;
  marker?: 'revoked' | 'cert-authority';
  /** the host field as written (comma list, maybe hashed) */
  hosts: string;
  keyType: string;
  key: Buffer;
}

export type HostKeyVerdict =
  | { kind: 'match'; line: number }
  | { kind: 'unknown' }
  | { kind: 'revoked'; line: number }
  /** the host is listed, with a key of the same type that differs */
  | { kind: 'mismatch'; line: number; knownType: string }
  /** the host is listed, but only with keys of other types */
  | { kind: 'other-type'; line: number; knownType: string };

/** The name a host is looked up under: `host` on port 22, `[host]:port` otherwise. */
export function lookupName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The key type written inside an SSH public key blob (its first string). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const n = blob.readUInt32BE(0);
  if (n <= 0 || n > 64 || 4 + n > blob.length) return 'unknown';
  return blob.subarray(4, 4 + n).toString('latin1');
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.replace(/\r$/, '').trim();
    if (l === '' || l.startsWith('#')) continue;
    const f = l.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (f[0]?.startsWith('@')) {
      const m = f.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else continue; // unknown marker: OpenSSH ignores the line too
    }
    const [hosts, keyType, b64] = f;
    if (!hosts || !keyType || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) continue;
    const key = Buffer.from(b64, 'base64');
    out.push({ line: i + 1, marker, hosts, keyType, key });
  }
  return out;
}

/** OpenSSH's match_pattern: `*` any run, `?` one character, case-insensitive for host names. */
function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  return re.test(name);
}

function hashedMatch(field: string, name: string): boolean {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, name))
  const m = /^\|1\|([^|]+)\|([^|]+)$/.exec(field);
  if (!m) return false;
  const salt = Buffer.from(m[1]!, 'base64');
  const want = Buffer.from(m[2]!, 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return got.length === want.length && got.equals(want);
}

/** Does a known_hosts host field name this host? */
export function hostFieldMatches(field: string, host: string, port: number): boolean {
  const name = lookupName(host, port);
  if (field.startsWith('|')) return hashedMatch(field, name);
  let matched = false;
  for (const p of field.split(',')) {
    if (p === '') continue;
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false; // a negated match excludes the line outright
    } else if (globMatch(p, name)) {
      matched = true;
    }
  }
  return matched;
}

/** What known_hosts says about `key` presented by host:port. */
export function checkHostKey(entries: KnownHostEntry[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const mine = entries.filter((e) => e.marker !== 'cert-authority' && hostFieldMatches(e.hosts, host, port));
  const revoked = mine.find((e) => e.marker === 'revoked' && e.key.equals(key));
  if (revoked) return { kind: 'revoked', line: revoked.line };
  const plain = mine.filter((e) => e.marker === undefined);
  const hit = plain.find((e) => e.key.equals(key));
  if (hit) return { kind: 'match', line: hit.line };
  const type = keyTypeOf(key);
  const sameType = plain.find((e) => keyTypeOf(e.key) === type);
  if (sameType) return { kind: 'mismatch', line: sameType.line, knownType: sameType.keyType };
  const other = plain[0];
  if (other) return { kind: 'other-type', line: other.line, knownType: other.keyType };
  return { kind: 'unknown' };
}

/** The known_hosts line for a key (plain, not hashed: the user can read what was added). */
export function knownHostsLine(host: string, port: number, key: Buffer): string {
  return `${lookupName(host, port)} ${keyTypeOf(key)} ${key.toString('base64')}`;
}

/** SHA256 fingerprint as OpenSSH prints it. */
export function fingerprintOf(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Verifies a host key against a known_hosts file, read afresh each time. Returns true to trust;
 * otherwise `problem` holds the one-line reason. With `acceptNew`, an unknown host's key is
 * appended to the file (and trusted); a mismatch is refused whatever the options.
 */
export class KnownHostsVerifier {
  problem?: string;
  /** set when a key was appended: the line written */
  added?: { line: number; text: string };

  constructor(readonly file: string, readonly host: string, readonly port: number, readonly acceptNew: boolean) {}

  verify(key: Buffer): boolean {
    this.problem = undefined;
    const text = existsSync(this.file) ? readFileSync(this.file, 'utf8') : '';
    const v = checkHostKey(parseKnownHosts(text), this.host, this.port, key);
    const who = lookupName(this.host, this.port);
    const fp = fingerprintOf(key);
    switch (v.kind) {
      case 'match':
        return true;
      case 'revoked':
        this.problem = `SSH host key of ${who} (${keyTypeOf(key)} ${fp}) is marked @revoked in ${this.file}:${v.line}: refusing to connect`;
        return false;
      case 'mismatch':
        this.problem = `SSH host key of ${who} has CHANGED: it presents ${keyTypeOf(key)} ${fp}, ${this.file}:${v.line} has another ${v.knownType} key: refusing to connect (if the change is expected, remove that line)`;
        return false;
      case 'other-type':
        this.problem = `SSH host key of ${who} is ${keyTypeOf(key)} ${fp}, but ${this.file}:${v.line} lists only a ${v.knownType} key for it: refusing to connect (add the ${keyTypeOf(key)} key to ${this.file} if it is the host's)`;
        return false;
      case 'unknown': {
        if (!this.acceptNew) {
          this.problem = `SSH host ${who} is not in ${this.file} (it presents ${keyTypeOf(key)} ${fp}): refusing to connect; add its key there, or pass --accept-new-host-key to add it`;
          return false;
        }
        mkdirSync(dirname(this.file), { recursive: true });
        const line = knownHostsLine(this.host, this.port, key);
        const sep = text === '' || text.endsWith('\n') ? '' : '\n';
        appendFileSync(this.file, `${sep}${line}\n`, { mode: 0o600 });
        this.added = { line: readFileSync(this.file, 'utf8').trimEnd().split('\n').length, text: line };
        return true;
      }
    }
  }
}
