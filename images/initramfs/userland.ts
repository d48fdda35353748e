/**
 * Where the guest's userspace binaries come from. A native guest takes them from the host's own
 * packages (busybox-static, dropbear-bin); a foreign one (arm64 on an x86 host) from Debian's packages
 * of that architecture, downloaded through a private apt state and unpacked with dpkg-deb -x into the
 * cache, never installed. Either way the image gets a binary plus the shared libraries its ELF
 * headers name, resolved inside that root (readelf works on any architecture; ldd only on the host's).
 */
import { existsSync, lstatSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Arch } from '../../harness/arch.js';
import { PrivateApt } from '../../harness/kernel/apt.js';
import { isNativeArch } from '../../harness/arch.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { hashParts } from '../../base/hash.js';
import { capture } from '../../base/proc.js';
import { fileEntry, type CpioEntry } from './cpio.js';

/** A filesystem tree holding the guest's binaries: '/' for a native guest, an unpacked set of packages otherwise. */
export interface Userland {
  root: string;
  /** the multiarch triplet of library directories (x86_64-linux-gnu, aarch64-linux-gnu) */
  triplet: string;
  /** package=version list it was unpacked from (foreign only), for the image's identity */
  packages?: string[];
}

const TRIPLET: Record<Arch['name'], string> = { x86_64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

/**
 * What the initramfs needs of a foreign architecture. dropbear-bin is dynamically linked in Debian;
 * its libraries are listed because apt-get download does not resolve dependencies, and the closure
 * check below fails loudly if a new dropbear needs one more.
 */
export const FOREIGN_PACKAGES = ['busybox-static', 'dropbear-bin', 'libc6', 'libcrypt1', 'libtomcrypt1', 'libtommath1', 'zlib1g', 'libgmp10'];

export async function userlandFor(arch: Arch): Promise<Userland> {
  if (isNativeArch(arch)) return { root: '/', triplet: TRIPLET[arch.name] };
  return foreignUserland(arch);
}

async function foreignUserland(arch: Arch): Promise<Userland> {
  const { root, packages } = await unpackPackages(arch, FOREIGN_PACKAGES);
  return { root, triplet: TRIPLET[arch.name], packages };
}

/**
 * Debian packages of a foreign architecture unpacked into one cached tree (never installed): the
 * guest's userspace, or a sysroot to cross-link against (libcap.a for the selftests). Keyed by the
 * exact versions, so a new package version makes a new tree.
 */
export async function unpackPackages(arch: Arch, names: string[]): Promise<{ root: string; packages: string[] }> {
  const apt = new PrivateApt('machine', undefined, arch.debArch);
  await apt.update();
  const versions = await apt.candidates(names);
  const packages = names.map((p) => {
    const v = versions.get(p);
    if (!v) throw new HarnessError(`no ${arch.debArch} package '${p}' in the machine's apt sources (needed for the ${arch.name} guest)`);
    return `${p}=${v}`;
  });
  const root = cachePath('userland', `${arch.debArch}-${hashParts({ packages: packages.join(' ') }).slice(0, 16)}`);
  if (existsSync(join(root, '.complete'))) return { root, packages };
  process.stderr.write(`image: unpacking ${arch.debArch} packages ${names.join(', ')}\n`);
  const tmp = `${root}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const debs = join(tmp, '.debs');
  for (const pv of packages) {
    const [p, v] = pv.split('=') as [string, string];
    const deb = await apt.download(p, v, debs);
    await capture('dpkg-deb', ['-x', deb, tmp], `dpkg-deb -x ${p}`);
  }
  rmSync(debs, { recursive: true, force: true });
  writeFileSync(join(tmp, '.complete'), `${packages.join('\n')}\n`);
  rmSync(root, { recursive: true, force: true });
  renameSync(tmp, root);
  return { root, packages };
}

/** Follow symlinks inside `root` (absolute targets are relative to it); returns the guest path of the real file. */
export function realInRoot(root: string, guestPath: string): string {
  let p = posix.normalize(guestPath);
  for (let hops = 0; hops < 40; hops++) {
    // resolve the first symlinked component
    const parts = p.split('/').filter(Boolean);
    let resolved = false;
    for (let i = 1; i <= parts.length; i++) {
      const prefix = `/${parts.slice(0, i).join('/')}`;
      const host = join(root, prefix);
      if (!existsSync(host) && !isLink(host)) throw new HarnessError(`${guestPath}: ${prefix} does not exist under ${root}`);
      if (isLink(host)) {
        const t = readlinkSync(host);
        const base = t.startsWith('/') ? t : posix.join(posix.dirname(prefix), t);
        p = posix.normalize(posix.join(base, ...parts.slice(i)));
        resolved = true;
        break;
      }
    }
    if (!resolved) return p;
  }
  throw new HarnessError(`${guestPath}: too many symlinks under ${root}`);
}

function isLink(p: string): boolean {
  try { return lstatSync(p).isSymbolicLink(); } catch { return false; }
}

/** NEEDED entries and the program interpreter of an ELF file (readelf reads any architecture). */
export async function elfDeps(file: string): Promise<{ needed: string[]; interp?: string }> {
  const out = await capture('readelf', ['-d', '-l', '-W', file], `readelf ${file}`);
  const needed = [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  const interp = /Requesting program interpreter: ([^\]]+)\]/.exec(out)?.[1];
  return { needed, interp };
}

/**
 * A binary at `guestPath` in the image, its libraries (transitively) and its loader, each at its real
 * path with symlinks for the names the ELF headers use.
 */
export async function binaryWithLibraries(u: Userland, fromPath: string, guestPath: string): Promise<CpioEntry[]> {
  const host = join(u.root, fromPath);
  if (!existsSync(host)) throw new HarnessError(`${host} not found: ${u.root === '/' ? 'install the guest userspace packages (busybox-static, dropbear-bin; see scripts/setup.sh)' : 'the unpacked packages lack it'}`);
  const out = new Map<string, CpioEntry>();
  out.set(guestPath, fileEntry(guestPath, host));
  const dirs = [`/lib/${u.triplet}`, `/usr/lib/${u.triplet}`, '/lib', '/usr/lib'];
  const queue = [host];
  const seen = new Set<string>();
  while (queue.length) {
    const f = queue.shift()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const { needed, interp } = await elfDeps(f);
    const names: string[] = [];
    if (interp) names.push(interp);
    for (const lib of needed) {
      const at = dirs.map((d) => posix.join(d, lib)).find((g) => existsSync(join(u.root, g)));
      if (!at) throw new HarnessError(`${fromPath} needs ${lib}, which is not under ${u.root} (${dirs.join(', ')})`);
      names.push(at);
    }
    for (const name of names) {
      const real = realInRoot(u.root, name);
      const rel = real.replace(/^\//, '');
      if (!out.has(rel)) {
        out.set(rel, fileEntry(rel, join(u.root, real), 0o755));
        queue.push(join(u.root, real));
      }
      const alias = name.replace(/^\//, '');
      if (alias !== rel && !out.has(alias)) out.set(alias, { type: 'symlink', path: alias, target: real });
    }
  }
  return [...out.values()];
}

