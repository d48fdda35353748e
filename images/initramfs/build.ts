import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, renameSync, lstatSync, rmSync } from 'node:fs';
import { join, relative, basename } from 'node:path';
import { gzipSync } from 'node:zlib';
import { writeCpio, readCpio, fileEntry, type CpioEntry } from './cpio.js';
import type { KernelBuild } from '../../harness/kernel/build.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath, repoPath } from '../../base/paths.js';
import { sha256, hashParts } from '../../base/hash.js';
import { capture } from '../../base/proc.js';
import { getArch } from '../../harness/arch.js';
import { binaryWithLibraries, userlandFor } from './userland.js';

export interface ExtraFile {
  guestPath: string;
  hostPath: string;
  mode?: number;
}

export interface ImageOptions {
  kernel: KernelBuild;
  /** static agent binary, installed as /usr/bin/vfio-agent */
  agent?: string;
  /** out-of-tree modules replacing in-tree ones of the same name (a driver developer's work in progress) */
  modules?: string[];
  files?: ExtraFile[];
}

export interface Image {
  path: string;
  /** sha256 of the uncompressed archive: the image's identity in results and reproducers */
  hash: string;
  /** the guest's SSH host key, as an OpenSSH public key line: the harness trusts nothing else */
  hostKey: string;
  /** modules that replaced in-tree ones */
  replaced: { name: string; sha256: string; srcversion?: string }[];
  cached: boolean;
}


function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

async function moduleInfo(path: string): Promise<{ name: string; srcversion?: string; vermagic?: string }> {
  const out = await capture('modinfo', ['-F', 'name', path], `modinfo ${path}`).catch(() => '');
  const src = await capture('modinfo', ['-F', 'srcversion', path], 'modinfo').catch(() => '');
  const ver = await capture('modinfo', ['-F', 'vermagic', path], 'modinfo').catch(() => '');
  return { name: out.trim() || basename(path, '.ko').replace(/-/g, '_'), srcversion: src.trim() || undefined, vermagic: ver.trim() || undefined };
}

/** The kernel's installed modules, with user modules put in place of in-tree ones of the same name. */
async function moduleEntries(k: KernelBuild, userModules: string[]): Promise<{ entries: CpioEntry[]; replaced: Image['replaced'] }> {
  const root = join(k.modulesDir, 'lib', 'modules', k.release);
  if (!existsSync(root)) throw new HarnessError(`kernel build has no modules for ${k.release} at ${root}`, { log: k.log });
  const files = new Map<string, string>();
  for (const p of walk(root)) {
    if (lstatSync(p).isSymbolicLink()) continue; // build/source links point into the host's tree
    files.set(relative(root, p), p);
  }
  const replaced: Image['replaced'] = [];
  for (const m of userModules) {
    if (!existsSync(m)) throw new HarnessError(`module not found: ${m}`);
    const info = await moduleInfo(m);
    if (info.vermagic && !info.vermagic.startsWith(`${k.release} `)) {
      throw new HarnessError(`${m} was built for ${info.vermagic.split(' ')[0]}, not for the kernel under test ${k.release}`);
    }
    const inTree = [...files.keys()].find((rel) => basename(rel, '.ko').replace(/-/g, '_') === info.name);
    const rel = inTree ?? join('updates', basename(m));
    files.set(rel, m);
    replaced.push({ name: info.name, sha256: sha256(readFileSync(m)), srcversion: info.srcversion });
  }
  const entries: CpioEntry[] = [...files].map(([rel, p]) => fileEntry(join('lib', 'modules', k.release, rel), p, 0o644));
  return { entries, replaced };
}

async function hostKeyFor(inputsKey: string): Promise<{ priv: Buffer; pub: string }> {
  const dir = cachePath('images', 'hostkeys');
  mkdirSync(dir, { recursive: true });
  const priv = join(dir, `${inputsKey}.dropbear`);
  if (!existsSync(priv)) {
    const tmp = `${priv}.${process.pid}`;
    await capture('dropbearkey', ['-t', 'ed25519', '-f', tmp], 'dropbearkey');
    renameSync(tmp, priv);
  }
  const pubOut = await capture('dropbearkey', ['-y', '-f', priv], 'dropbearkey -y');
  const pub = pubOut.split('\n').find((l) => l.startsWith('ssh-ed25519 '));
  if (!pub) throw new HarnessError(`dropbearkey printed no public key for ${priv}`);
  return { priv: readFileSync(priv), pub: pub.split(' ').slice(0, 2).join(' ') };
}

/**
 * Build the guest initramfs. Reproducible: the archive is a function of its inputs (sorted entries,
 * fixed metadata), so it is cached by the hash of its own bytes, and the host key is tied to the
 * inputs so the same inputs give the same image.
 */
export async function buildInitramfs(o: ImageOptions): Promise<Image> {
  const userland = await userlandFor(getArch(o.kernel.arch));
  const init = readFileSync(repoPath('images', 'initramfs', 'init.sh'));
  const entries: CpioEntry[] = [
    { type: 'file', path: 'init', data: init, mode: 0o755 },
    ...(await binaryWithLibraries(userland, '/bin/busybox', 'bin/busybox')),
    ...(await binaryWithLibraries(userland, '/usr/sbin/dropbear', 'usr/sbin/dropbear')),
    { type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    { type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'dir', path: 'proc' }, { type: 'dir', path: 'sys' }, { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'symlink', path: 'sbin', target: 'bin' },
    { type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
    { type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\n') },
    { type: 'file', path: 'etc/shells', data: Buffer.from('/bin/sh\n') },
  ];
  const mods = await moduleEntries(o.kernel, o.modules ?? []);
  entries.push(...mods.entries);
  if (o.agent) entries.push(fileEntry('usr/bin/vfio-agent', o.agent, 0o755));
  for (const f of o.files ?? []) entries.push(fileEntry(f.guestPath, f.hostPath, f.mode));

  const inputsKey = hashParts(Object.fromEntries(entries.map((e) => [e.path, e.type === 'file' ? sha256(e.data) : JSON.stringify(e)]))).slice(0, 24);
  const key = await hostKeyFor(inputsKey);
  entries.push({ type: 'file', path: 'etc/dropbear/host_key', data: key.priv, mode: 0o600 });

  let archive = writeCpio(entries);
  if (mods.replaced.length) archive = await withDepmod(archive, o.kernel.release);
  const hash = sha256(archive);
  const dir = cachePath('images', hash.slice(0, 24));
  const path = join(dir, 'initramfs.cpio.gz');
  const meta = join(dir, 'image.json');
  if (existsSync(meta)) return { ...(JSON.parse(readFileSync(meta, 'utf8')) as Image), cached: true };
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${path}.tmp`, gzipSync(archive, { level: 6 }));
  renameSync(`${path}.tmp`, path);
  const image: Image = { path, hash, hostKey: key.pub, replaced: mods.replaced, cached: false };
  writeFileSync(meta, JSON.stringify(image, null, 2));
  return image;
}

/**
 * A replaced module may sit elsewhere than the in-tree one (updates/): rerun depmod over the
 * modules as they will be in the guest so modprobe finds it.
 */
async function withDepmod(archive: Buffer, release: string): Promise<Buffer> {
  const tmp = cachePath('tmp', `depmod-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  const entries = readCpio(archive);
  for (const e of entries) {
    if (!e.path.startsWith(`lib/modules/${release}/`) || (e.mode & 0o170000) !== 0o100000) continue;
    const p = join(tmp, e.path);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, e.data);
  }
  try {
    await capture('depmod', ['-b', tmp, release], 'depmod');
    const out: CpioEntry[] = entries.map((e) => {
      const fresh = join(tmp, e.path);
      const kind = e.mode & 0o170000;
      if (kind === 0o040000) return { type: 'dir', path: e.path, mode: e.mode & 0o7777 };
      if (kind === 0o120000) return { type: 'symlink', path: e.path, target: e.data.toString() };
      if (kind === 0o020000) return { type: 'char', path: e.path, major: e.rdev[0], minor: e.rdev[1], mode: e.mode & 0o7777 };
      const data = e.path.startsWith(`lib/modules/${release}/modules.`) && existsSync(fresh) ? readFileSync(fresh) : e.data;
      return { type: 'file', path: e.path, data, mode: e.mode & 0o7777 };
    });
    return writeCpio(out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

