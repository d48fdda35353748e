import { readFileSync, readdirSync, existsSync, mkdirSync, writeFileSync, statSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { capture } from '../../base/proc.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';

/** One apt source entry, from either sources.list syntax. */
export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
  signedBy?: string;
}

/** Parse deb822 (.sources) text. Only `Types: deb` stanzas count: we download binary packages. */
export function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    let key = '';
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && key) { fields[key] += ` ${raw.trim()}`; continue; }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) { key = m[1]!.toLowerCase(); fields[key] = m[2]!.trim(); }
    }
    if (!fields.uris || !(fields.types ?? '').split(/\s+/).includes('deb')) continue;
    if ((fields.enabled ?? 'yes').toLowerCase() === 'no') continue;
    for (const uri of fields.uris.split(/\s+/)) {
      out.push({
        uri,
        suites: (fields.suites ?? '').split(/\s+/).filter(Boolean),
        components: (fields.components ?? 'main').split(/\s+/).filter(Boolean),
        signedBy: fields['signed-by'],
      });
    }
  }
  return out;
}

/** Parse one-line-style sources.list text. */
export function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line.startsWith('deb ')) continue;
    const rest = line.slice(4).replace(/\[[^\]]*\]/, '').trim().split(/\s+/);
    const [uri, suite, ...components] = rest;
    if (uri && suite) out.push({ uri, suites: [suite], components: components.length ? components : ['main'] });
  }
  return out;
}

/** Every enabled binary source of this machine's apt configuration. */
export function machineSources(etc = '/etc/apt'): AptSource[] {
  const out: AptSource[] = [];
  const list = join(etc, 'sources.list');
  if (existsSync(list)) out.push(...parseOneLine(readFileSync(list, 'utf8')));
  const dir = join(etc, 'sources.list.d');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      const p = join(dir, f);
      if (f.endsWith('.sources')) out.push(...parseDeb822(readFileSync(p, 'utf8')));
      else if (f.endsWith('.list')) out.push(...parseOneLine(readFileSync(p, 'utf8')));
    }
  }
  return out;
}

/**
 * The machine's main Debian archive mirror: the first source carrying a plain release suite (not
 * -security, not -updates). Newer suites are reached through the same mirror, so no registry host
 * is ever written in this code.
 */
export function mainMirror(sources: AptSource[]): AptSource {
  const main = sources.find((s) => s.suites.some((x) => !/-(security|updates|backports)$/.test(x) && !x.includes('/')));
  if (!main) {
    throw new HarnessError('no Debian archive found in the apt configuration (/etc/apt/sources.list, /etc/apt/sources.list.d): cannot fetch kernel sources; use --kernel PATH with a kernel tree instead');
  }
  return main;
}

/** `apt-cache policy A B ...` output: package (without an :arch suffix) -> candidate version. */
export function parsePolicy(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const block of out.split(/^(?=\S+:\s*$)/m)) {
    const name = /^(\S+):\s*$/m.exec(block)?.[1]?.replace(/:[a-z0-9]+$/, '');
    const v = /Candidate:\s*(\S+)/.exec(block)?.[1];
    if (name && v && v !== '(none)') m.set(name, v);
  }
  return m;
}

/** apt-cache's answers from one version of the lists (see PrivateApt.answers). */
interface ListsAnswers {
  /** mtime of the lists' `updated` stamp they came from */
  listsAt: number;
  /** package -> candidate version, null when the suite has none */
  versions: Record<string, string | null>;
  /** search regex -> package names */
  searches: Record<string, string[]>;
}

const ANSWERS_FILE = 'candidates.json';

/**
 * A private apt state in the harness cache: its own lists and sources, so fetching kernel sources
 * never touches the host's package state. `suite: 'machine'` mirrors the host's own sources;
 * a suite name (unstable) points the host's main mirror at that suite.
 */
export class PrivateApt {
  readonly dir: string;
  /**
   * `arch`: a Debian architecture other than the host's (arm64 userspace for an arm64 guest), in lists of its own.
   * `withSources`: also deb-src entries (source packages: the QEMU under test), in lists of their own so the
   * binary-only states never download the Sources indexes.
   */
  constructor(readonly suite: string, readonly sources: AptSource[] = machineSources(), readonly arch?: string, readonly withSources = false) {
    this.dir = cachePath('apt', `${suite}${arch ? `-${arch}` : ''}${withSources ? '-src' : ''}`);
  }

  private opts(): string[] {
    return [
      ...(this.arch ? ['-o', `APT::Architecture=${this.arch}`, '-o', `APT::Architectures=${this.arch}`] : []),
      '-o', `Dir::State::Lists=${join(this.dir, 'lists')}`,
      '-o', `Dir::Etc::SourceList=${join(this.dir, 'sources.list')}`,
      '-o', 'Dir::Etc::SourceParts=-',
      '-o', `Dir::Cache=${join(this.dir, 'cache')}`,
      '-o', 'APT::Get::List-Cleanup=0',
      '-o', 'Debug::NoLocking=1',
    ];
  }

  private writeSources(): void {
    mkdirSync(join(this.dir, 'lists', 'partial'), { recursive: true });
    mkdirSync(join(this.dir, 'cache', 'archives', 'partial'), { recursive: true });
    const chosen = this.suite === 'machine'
      ? this.sources
      : [{ ...mainMirror(this.sources), suites: [this.suite] }];
    const types = this.withSources ? ['deb', 'deb-src'] : ['deb'];
    const lines = chosen.flatMap((s) => s.suites.flatMap((suite) => types.map((type) => {
      const signed = s.signedBy ? ` [signed-by=${s.signedBy}]` : '';
      return `${type}${signed} ${s.uri} ${suite} ${s.components.join(' ')}`;
    })));
    writeFileSync(join(this.dir, 'sources.list'), `${lines.join('\n')}\n`);
  }

  /** apt-get update, unless the lists are younger than maxAgeMs. */
  async update(maxAgeMs = 12 * 3600_000): Promise<void> {
    this.writeSources();
    const stamp = join(this.dir, 'updated');
    if (existsSync(stamp) && Date.now() - statSync(stamp).mtimeMs < maxAgeMs) return;
    await capture('apt-get', [...this.opts(), '-qq', 'update'], `apt-get update (${this.suite})`);
    writeFileSync(stamp, new Date().toISOString());
  }

  /** Candidate version of a package, or undefined when the suite has none. */
  async candidate(pkg: string): Promise<string | undefined> {
    return (await this.candidates([pkg])).get(pkg);
  }

  /**
   * Candidate versions of several packages in one apt-cache run (each run loads the whole package
   * cache: about a second), remembered until the lists are next updated.
   */
  async candidates(pkgs: string[]): Promise<Map<string, string>> {
    const known = this.answers();
    const missing = pkgs.filter((p) => !(p in known.versions));
    if (missing.length) {
      const out = await capture('apt-cache', [...this.opts(), 'policy', ...missing], 'apt-cache policy');
      const found = parsePolicy(out);
      for (const p of missing) known.versions[p] = found.get(p) ?? null;
      this.remember(known);
    }
    return new Map(pkgs.flatMap((p) => (known.versions[p] ? [[p, known.versions[p]!] as [string, string]] : [])));
  }

  /** Package names matching a regex (apt-cache search --names-only), remembered like candidates. */
  async names(regex: string): Promise<string[]> {
    const known = this.answers();
    const memo = known.searches[regex];
    if (memo) return memo;
    const out = await capture('apt-cache', [...this.opts(), 'search', '--names-only', regex], 'apt-cache search');
    const names = out.split('\n').map((l) => l.split(' - ')[0]!.trim()).filter(Boolean);
    known.searches[regex] = names;
    this.remember(known);
    return names;
  }

  /**
   * What apt-cache answered from the current lists. Its answers are a function of the lists alone,
   * so they hold until update() fetches new lists (at most every 12 h, and then a new upload is
   * seen at once): the memo is keyed by the time of that update and dropped when it changes.
   */
  private answers(): ListsAnswers {
    const stamp = join(this.dir, 'updated');
    const listsAt = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
    try {
      const m = JSON.parse(readFileSync(join(this.dir, ANSWERS_FILE), 'utf8')) as Partial<ListsAnswers>;
      if (m.listsAt === listsAt && m.versions && typeof m.versions === 'object') {
        return { listsAt, versions: m.versions, searches: m.searches && typeof m.searches === 'object' ? m.searches : {} };
      }
    } catch { /* none yet, or unreadable: asked again */ }
    return { listsAt, versions: {}, searches: {} };
  }

  /** Keep the answers for the next process; lists never updated (listsAt 0) are not worth remembering. */
  private remember(a: ListsAnswers): void {
    if (!a.listsAt) return;
    // Another harness process may read it at the same moment: it sees the old file or the new one.
    const tmp = join(this.dir, `.${ANSWERS_FILE}.${process.pid}`);
    writeFileSync(tmp, JSON.stringify(a));
    renameSync(tmp, join(this.dir, ANSWERS_FILE));
  }

  /** Download a package file (not install) into dir; returns its path. */
  async download(pkg: string, version: string, dir: string): Promise<string> {
    mkdirSync(dir, { recursive: true });
    await capture('apt-get', [...this.opts(), '-qq', 'download', `${pkg}=${version}`], `apt-get download ${pkg}`, { cwd: dir });
    const f = readdirSync(dir).find((x) => x.startsWith(`${pkg}_`) && x.endsWith('.deb'));
    if (!f) throw new HarnessError(`apt-get download ${pkg} produced no .deb in ${dir}`);
    return join(dir, f);
  }

  /** When the lists were last refreshed (ms since the epoch), 0 if never: memos keyed on it expire with them. */
  listsUpdatedAt(): number {
    const stamp = join(this.dir, 'updated');
    return existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  }

  /** Versions of a source package the deb-src lists carry, in the lists' order (sort with compareDebVersions). */
  async sourceVersions(pkg: string): Promise<string[]> {
    const out = await capture('apt-cache', [...this.opts(), 'showsrc', '--only-source', pkg], `apt-cache showsrc ${pkg}`).catch(() => '');
    return [...out.matchAll(/^Version:\s*(\S+)/gm)].map((m) => m[1]!);
  }

  /**
   * Download a source package's files (.dsc, orig and debian tarballs) into dir, unpacking nothing.
   * Throws the fetch error's own line (a 404 names the missing file) so the caller can say why it
   * fell back to an older version.
   */
  async downloadSource(pkg: string, version: string, dir: string): Promise<string> {
    mkdirSync(dir, { recursive: true });
    const r = await execa('apt-get', [...this.opts(), '-qq', 'source', '--download-only', `${pkg}=${version}`], { cwd: dir, reject: false, stdin: 'ignore' });
    if (r.exitCode !== 0) {
      const lines = String(r.stderr).split('\n').filter((l) => l.startsWith('E:'));
      // "E: Failed to fetch http://.../qemu_11.1.3%2bds-1.dsc  404  Not Found [IP: ...]" -> "qemu_11.1.3+ds-1.dsc: 404 Not Found"
      const fetch = lines.map((l) => /Failed to fetch (\S+)\s+(\d{3}[^[]*)/.exec(l)).find(Boolean);
      const why = fetch ? `${decodeURIComponent(fetch[1]!.split('/').pop()!)}: ${fetch[2]!.replace(/\s+/g, ' ').trim()}` : lines[0] ?? `exit ${r.exitCode}`;
      throw new HarnessError(`apt-get source ${pkg}=${version} failed: ${why}`);
    }
    const dsc = readdirSync(dir).find((x) => x.startsWith(`${pkg}_`) && x.endsWith('.dsc'));
    if (!dsc) throw new HarnessError(`apt-get source ${pkg}=${version} produced no .dsc in ${dir}`);
    return join(dir, dsc);
  }
}
