import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PrivateApt } from '../../harness/kernel/apt.js';
import { compareDebVersions } from '../../harness/kernel/debversion.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { runLogged } from '../../base/proc.js';
import { sha256 } from '../../base/hash.js';
import { Progress } from '../../base/progress.js';

/** Where the QEMU under test comes from: Debian's `qemu` source package, or a user's tree. */
export type QemuSpec =
  | { kind: 'debian'; series: string | 'latest' }
  | { kind: 'tree'; path: string };

export interface QemuSource {
  spec: QemuSpec;
  /** stable identity: debian-10.2.2+ds-1, or tree-<hash of its real path> */
  id: string;
  /** the unpacked, Debian-patched source tree (never built in: builds are out of tree) */
  dir: string;
  /** upstream version from the tree's VERSION file */
  version: string;
  /** users' trees change under us: build incrementally, key by the build's own inputs */
  mutable: boolean;
  /** a newer listed version whose files the mirror did not serve, and why */
  fellBack?: string;
}

export const DEFAULT_QEMU = 'debian:latest';

/** debian:latest | debian:X.Y | PATH to a QEMU tree. */
export function parseQemuSpec(spec: string): QemuSpec {
  const m = /^debian:(latest|\d+\.\d+)$/.exec(spec);
  if (m) return { kind: 'debian', series: m[1]! };
  if (/^[a-z]+:/.test(spec)) {
    throw new HarnessError(`unknown QEMU source '${spec}': use debian:latest, debian:X.Y (e.g. debian:10.2), or a path to a QEMU tree`);
  }
  return { kind: 'tree', path: resolve(spec) };
}

function checkTree(dir: string): string {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new HarnessError(`QEMU tree not found: ${dir}`);
  for (const f of ['configure', 'meson.build', 'VERSION', join('hw', 'i386', 'intel_iommu.c')]) {
    if (!existsSync(join(dir, f))) throw new HarnessError(`${dir} is not a QEMU tree (no ${f})`);
  }
  return readFileSync(join(dir, 'VERSION'), 'utf8').trim();
}

/** 1:10.2.2+ds-1 -> 10.2 */
function seriesOf(debVersion: string): string {
  return debVersion.replace(/^\d+:/, '').split('.').slice(0, 2).join('.');
}

function idOf(debVersion: string): string {
  return `debian-${debVersion.replace(/^\d+:/, '').replace(/[^A-Za-z0-9.+-]/g, '_')}`;
}

/**
 * The newest listed version of the series whose files the mirror serves. An unstable suite's index
 * can list a version whose files are not (yet, or any longer) on the mirror (404): fall back to the
 * next one down and say which and why, rather than fail the build. A version already unpacked in
 * the cache is taken without a download; a version the mirror refused is remembered until the lists
 * are next refreshed, so a no-change build asks the mirror nothing.
 */
async function newestServed(series: string | 'latest', root: string): Promise<{ version: string; dsc?: string; fellBack?: string }> {
  const apt = new PrivateApt('unstable', undefined, undefined, true);
  await apt.update();
  const listsAt = apt.listsUpdatedAt();
  const memo = join(root, '.unserved.json');
  let unserved: { listsAt: number; versions: Record<string, string> } = { listsAt, versions: {} };
  try {
    const m = JSON.parse(readFileSync(memo, 'utf8')) as typeof unserved;
    if (m.listsAt === listsAt) unserved = m;
  } catch { /* none remembered */ }
  const listed = (await apt.sourceVersions('qemu'))
    .filter((v) => series === 'latest' || seriesOf(v) === series)
    .sort((a, b) => compareDebVersions(b, a));
  if (!listed.length) throw new HarnessError(`no Debian source package qemu${series === 'latest' ? '' : ` of series ${series}`} in the unstable suite's deb-src lists`);
  const skipped: string[] = [];
  for (const version of listed) {
    const why = unserved.versions[version];
    if (why) { skipped.push(`${version}: ${why}`); continue; }
    if (existsSync(join(root, idOf(version), '.complete'))) return { version, fellBack: skipped.join('; ') || undefined };
    const dir = join(root, '.downloads', version.replace(/[^A-Za-z0-9.+-]/g, '_'));
    rmSync(dir, { recursive: true, force: true });
    try {
      const dsc = await apt.downloadSource('qemu', version, dir);
      return { version, dsc, fellBack: skipped.join('; ') || undefined };
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      if (!(e instanceof HarnessError)) throw e;
      const reason = e.message.replace(/^apt-get source \S+ failed: /, '');
      skipped.push(`${version}: ${reason}`);
      unserved.versions[version] = reason;
      mkdirSync(root, { recursive: true });
      writeFileSync(memo, JSON.stringify(unserved));
    }
  }
  throw new HarnessError(`no listed qemu source version could be downloaded (${skipped.join('; ')})`);
}

/** A source unpacked earlier, used when the lists or the mirror cannot be reached. */
function unpackedFallback(series: string): QemuSource | undefined {
  const root = cachePath('qemu-sources');
  if (!existsSync(root)) return undefined;
  const ids = readdirSync(root).filter((d) => existsSync(join(root, d, '.complete')))
    .filter((d) => series === 'latest' || seriesOf(d.replace(/^debian-/, '')) === series)
    .sort((a, b) => compareDebVersions(b.replace(/^debian-/, ''), a.replace(/^debian-/, '')));
  const id = ids[0];
  if (!id) return undefined;
  const dir = join(root, id, 'src');
  return { spec: { kind: 'debian', series }, id, dir, version: checkTree(dir), mutable: false };
}

export async function resolveQemuSource(spec: QemuSpec): Promise<QemuSource> {
  if (spec.kind === 'tree') {
    const version = checkTree(spec.path);
    const real = realpathSync(spec.path);
    return { spec, id: `tree-${sha256(real).slice(0, 12)}`, dir: real, version, mutable: true };
  }
  const root = cachePath('qemu-sources');
  const p = new Progress(`qemu source (debian:${spec.series})`);
  p.update('reading the deb-src lists');
  let got;
  try {
    got = await newestServed(spec.series, root);
  } catch (e) {
    const fb = unpackedFallback(spec.series);
    if (!fb) throw e;
    p.done(`lists or mirror unreachable (${(e as Error).message}); using the unpacked ${fb.id}`);
    return fb;
  }
  if (got.fellBack) process.stderr.write(`qemu source: newer listed versions not served by the mirror, skipped: ${got.fellBack}\n`);
  const id = idOf(got.version);
  const dest = join(root, id);
  if (!got.dsc) {
    const dir = join(dest, 'src');
    p.done(`${id} (unpacked earlier)`);
    return { spec, id, dir, version: checkTree(dir), mutable: false, fellBack: got.fellBack };
  }
  // dpkg-source -x applies Debian's own patches: the +ds repack needs some of them to configure at all.
  p.update(`unpacking ${got.version} with Debian's patches`);
  const tmp = `${dest}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    await runLogged('dpkg-source', ['--no-check', '-x', got.dsc!, join(tmp, 'src')], { log: join(tmp, 'unpack.log'), what: `dpkg-source -x ${got.dsc}` });
    const version = checkTree(join(tmp, 'src'));
    writeFileSync(join(tmp, '.complete'), `qemu ${got.version}\n`);
    rmSync(dest, { recursive: true, force: true });
    renameSync(tmp, dest);
    rmSync(join(got.dsc!, '..'), { recursive: true, force: true });
    p.done(`${id} (QEMU ${version})`);
    return { spec, id, dir: join(dest, 'src'), version, mutable: false, fellBack: got.fellBack };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
