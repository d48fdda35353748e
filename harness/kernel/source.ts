import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { PrivateApt } from './apt.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { sha256 } from '../../base/hash.js';
import { Progress } from '../../base/progress.js';

/** Where a kernel comes from: a Debian linux-source package, or a user's tree. */
export type KernelSpec =
  | { kind: 'debian'; series: string | 'latest' }
  | { kind: 'tree'; path: string };

export interface KernelSource {
  spec: KernelSpec;
  /** stable identity: debian-7.2.13-1, or tree-<hash of its real path> */
  id: string;
  /** the unpacked source tree */
  dir: string;
  /** true for trees that may change under us (users' trees): build incrementally, do not key by content */
  mutable: boolean;
}

export const DEFAULT_KERNEL = 'debian:latest';

/** debian:7.2 | debian:6.12 | debian:latest | PATH (a directory holding a kernel tree). */
export function parseKernelSpec(spec: string): KernelSpec {
  const m = /^debian:(latest|\d+\.\d+)$/.exec(spec);
  if (m) return { kind: 'debian', series: m[1]! };
  if (spec.startsWith('debian:')) {
    throw new HarnessError(`unknown kernel spec '${spec}': use debian:X.Y (e.g. debian:6.12, debian:7.2), debian:latest, or a path to a kernel tree`);
  }
  if (/^[a-z]+:/.test(spec)) {
    throw new HarnessError(`unknown kernel spec '${spec}': use debian:X.Y, debian:latest, or a path to a kernel tree`);
  }
  return { kind: 'tree', path: resolve(spec) };
}

function checkTree(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new HarnessError(`kernel tree not found: ${dir}`);
  for (const f of ['Makefile', 'Kconfig', join('scripts', 'kconfig', 'merge_config.sh')]) {
    if (!existsSync(join(dir, f))) throw new HarnessError(`${dir} is not a kernel tree (no ${f})`);
  }
}

/**
 * Which suite carries which series: the machine's own suite first (bookworm has 6.12), then the
 * unstable suite through the same mirror (the newest series). `latest` is the highest series the
 * unstable suite has.
 */
async function findPackage(series: string | 'latest'): Promise<{ apt: PrivateApt; pkg: string; version: string }> {
  const candidates: PrivateApt[] = series === 'latest' ? [new PrivateApt('unstable')] : [new PrivateApt('machine'), new PrivateApt('unstable')];
  for (const apt of candidates) {
    await apt.update();
    let pkg = `linux-source-${series}`;
    if (series === 'latest') {
      const names = (await apt.names('^linux-source-[0-9]+\\.[0-9]+$'))
        .sort((a, b) => cmpSeries(b.replace('linux-source-', ''), a.replace('linux-source-', '')));
      if (!names[0]) continue;
      pkg = names[0];
    }
    const version = await apt.candidate(pkg);
    if (version) return { apt, pkg, version };
  }
  throw new HarnessError(`no Debian package linux-source-${series} in this machine's suites or the unstable suite`);
}

function cmpSeries(a: string, b: string): number {
  const [a1 = 0, a2 = 0] = a.split('.').map(Number);
  const [b1 = 0, b2 = 0] = b.split('.').map(Number);
  return a1 - b1 || a2 - b2;
}

/** A source unpacked earlier for this series, used when the package lists cannot be reached. */
function unpackedFallback(series: string): KernelSource | undefined {
  const root = cachePath('sources');
  if (!existsSync(root)) return undefined;
  const ids = readdirSync(root).filter((d) => existsSync(join(root, d, '.complete')));
  const match = ids.filter((d) => series === 'latest' || d.startsWith(`debian-${series}.`)).sort().pop();
  if (!match) return undefined;
  const dir = readdirSync(join(root, match)).find((d) => d.startsWith('linux-source-'));
  return dir ? { spec: { kind: 'debian', series }, id: match, dir: join(root, match, dir), mutable: false } : undefined;
}

export async function resolveSource(spec: KernelSpec): Promise<KernelSource> {
  if (spec.kind === 'tree') {
    checkTree(spec.path);
    const real = realpathSync(spec.path);
    return { spec, id: `tree-${sha256(real).slice(0, 12)}`, dir: real, mutable: true };
  }
  let found;
  try {
    found = await findPackage(spec.series);
  } catch (e) {
    const fb = unpackedFallback(spec.series);
    if (fb) {
      process.stderr.write(`kernel source: package lists unreachable (${(e as Error).message}); using the unpacked ${fb.id}\n`);
      return fb;
    }
    throw e;
  }
  const id = `debian-${found.version.replace(/[^A-Za-z0-9.+-]/g, '_')}`;
  const root = cachePath('sources', id);
  const series = found.pkg.replace('linux-source-', '');
  const dir = join(root, `linux-source-${series}`);
  if (existsSync(join(root, '.complete'))) return { spec, id, dir, mutable: false };

  const p = new Progress(`kernel source ${found.pkg} ${found.version}`);
  p.update('downloading');
  const tmp = `${root}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const deb = await found.apt.download(found.pkg, found.version, tmp);
    p.update('unpacking');
    // The .deb holds one tarball; stream it straight out of the package into tar (no install, no dpkg state).
    const tarball = `usr/src/linux-source-${series}.tar.xz`;
    const r = await execa('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -xO "./$2" | tar -xJ -C "$3"`, 'sh', deb, tarball, tmp], { reject: false });
    if (r.exitCode !== 0) throw new HarnessError(`unpacking ${found.pkg} failed: ${String(r.stderr).trim().split('\n').pop()}`);
    rmSync(deb);
    checkTree(join(tmp, `linux-source-${series}`));
    writeFileSync(join(tmp, '.complete'), `${found.pkg} ${found.version}\n`);
    rmSync(root, { recursive: true, force: true });
    renameSync(tmp, root);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  p.done(`unpacked to ${dir}`);
  return { spec, id, dir, mutable: false };
}
