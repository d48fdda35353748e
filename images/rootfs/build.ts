import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { machineSources, mainMirror, type AptSource } from '../../harness/kernel/apt.js';
import { missingString, readCacheMeta } from '../../harness/kernel/cache-meta.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { hashParts } from '../../base/hash.js';
import { capture, runLogged, which } from '../../base/proc.js';
import { Progress } from '../../base/progress.js';
import { withLock } from '../../base/lock.js';

/**
 * The second image kind: a minimal Debian rootfs holding a QEMU new enough for VFIO migration v2
 * (>= 8.0; the host's bookworm QEMU 7.2 is not), served to the guest read-only over virtio-9p.
 *
 * How the guest uses it (the choice, and why): the guest keeps our initramfs as its root and PID 1
 * (busybox, dropbear with the image's host key, the per-run client key, the agent, the kernel's
 * modules, the "ready" line: all unchanged), and the suite mounts this tree beside it and runs the
 * nested QEMU with `chroot`. That needs no second SSH server, no second host key, no init in the
 * rootfs, no switch_root (whose PID 1 on a 9p root can die before power-off), no copy of the
 * kernel's modules into the Debian tree, and no change to init.sh; the rootfs can stay read-only
 * and shared by every boot. The only thing the guest's boot gains is the 9p share (qemuArgs below)
 * and memory for the nested QEMUs.
 */

/** Bump when the recipe changes in a way the package list does not show (post-steps below). */
export const ROOTFS_RECIPE = 1;

export interface RootfsRecipe {
  suite: string;
  variant: string;
  packages: string[];
}

/** The recipe of the rootfs the qemu-migration suite needs. */
export const QEMU_ROOTFS: RootfsRecipe = {
  suite: 'unstable',
  variant: 'minbase',
  packages: ['qemu-system-x86', 'seabios', 'ipxe-qemu', 'kmod', 'iproute2', 'python3'],
};

/** The 9p mount tag the guest finds the rootfs under. */
export const ROOTFS_TAG = 'vfioc-rootfs';
/** Where the suite mounts it inside the guest. */
export const ROOTFS_GUEST_DIR = '/mnt/rootfs';
/** Mount options measured to work (cache=loose: L1 userspace at ~3.2 s and nested QEMU starts in ~0.8 s). */
export const ROOTFS_MOUNT_OPTS = 'trans=virtio,version=9p2000.L,msize=512000,cache=loose';

export interface Rootfs {
  /** the tree on the host */
  dir: string;
  /** cache key: hash of the recipe */
  key: string;
  recipe: RootfsRecipe;
  /** `qemu-system-x86_64 --version` of the tree's QEMU, e.g. 11.1.3 */
  qemuVersion: string;
  /** du -s of the tree, MiB */
  sizeMiB: number;
  builtAt: string;
  buildSeconds: number;
  cached: boolean;
}

export function rootfsKey(r: RootfsRecipe): string {
  return hashParts({
    suite: r.suite, variant: r.variant, packages: [...r.packages].sort().join(','),
    recipe: String(ROOTFS_RECIPE), arch: 'x86_64',
  }).slice(0, 16);
}

export function debootstrapArgs(r: RootfsRecipe, dir: string, mirror: string): string[] {
  return [`--variant=${r.variant}`, `--include=${r.packages.join(',')}`, r.suite, dir, mirror];
}

/**
 * QEMU options that hand the rootfs to a guest: a read-only 9p export (the cache stays pristine,
 * every boot shares it) under ROOTFS_TAG.
 */
export function rootfsQemuArgs(dir: string): string[] {
  return [
    '-fsdev', `local,id=rootfs,path=${dir},security_model=none,readonly=on`,
    '-device', `virtio-9p-pci,fsdev=rootfs,mount_tag=${ROOTFS_TAG}`,
  ];
}

/** What a guest that runs the nested QEMUs needs from its boot (the machine requirement of the suite). */
export interface RootfsMachine {
  /** extra QEMU arguments for the guest (the 9p share) */
  qemuArgs: string[];
  memMiB: number;
  smp: number;
  rootfs: Rootfs;
}

/** 6 GiB: two nested TCG QEMUs (each with its translation cache) and the 9p page cache. */
export const NESTED_MEM_MIB = 6144;

export async function rootfsMachine(): Promise<RootfsMachine> {
  const rootfs = await buildRootfs();
  return { qemuArgs: rootfsQemuArgs(rootfs.dir), memMiB: NESTED_MEM_MIB, smp: 2, rootfs };
}

async function ensureDebootstrap(): Promise<string> {
  const have = await which('debootstrap');
  if (have) return have;
  process.stderr.write('rootfs: installing debootstrap (apt-get)\n');
  await capture('apt-get', ['install', '-y', '-qq', 'debootstrap'], 'apt-get install debootstrap', { env: { DEBIAN_FRONTEND: 'noninteractive', PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  const now = await which('debootstrap');
  if (!now) throw new HarnessError('debootstrap is not available after apt-get install debootstrap');
  return now;
}

/**
 * Build (or take from the cache) the Debian rootfs: debootstrap from the machine's own mirror (read
 * from its apt configuration, never written here), keyed by the hash of the recipe. ~48 s plus the
 * download on these machines, ~476 MB.
 */
export async function buildRootfs(recipe: RootfsRecipe = QEMU_ROOTFS, sources: AptSource[] = machineSources()): Promise<Rootfs> {
  const key = rootfsKey(recipe);
  const base = cachePath('rootfs', `debian-${recipe.suite}-${key}`);
  const meta = join(base, 'rootfs.json');
  const read = (): Rootfs | undefined => {
    const r = readCacheMeta<Rootfs>(meta, 'rootfs', (x) => missingString(x, ['dir', 'key', 'qemuVersion'])
      ?? (existsSync(x.dir) ? undefined : `its tree ${x.dir} is gone`), 'building it again');
    return r && { ...r, cached: true };
  };
  const absent = !existsSync(meta);
  const hit = read();
  if (hit) return hit;
  mkdirSync(base, { recursive: true });
  return withLock(join(base, 'lock'), async () => {
    // another process may have built it while we waited
    const built = absent && existsSync(meta) ? read() : undefined;
    if (built) return built;
    const mirror = mainMirror(sources).uri;
    const debootstrap = await ensureDebootstrap();
    const root = join(base, 'root');
    const tmp = join(base, `root.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
    const log = join(base, 'build.log');
    const started = Date.now();
    const p = new Progress('rootfs');
    try {
      await runLogged(debootstrap, debootstrapArgs(recipe, tmp, mirror), {
        log, what: `debootstrap ${recipe.suite}`, timeoutMs: 30 * 60_000,
        onLine: (l) => p.update(l.slice(0, 80)),
      });
      // Downloaded .debs are half the tree and never needed again.
      rmSync(join(tmp, 'var', 'cache', 'apt', 'archives'), { recursive: true, force: true });
      mkdirSync(join(tmp, 'var', 'cache', 'apt', 'archives', 'partial'), { recursive: true });
      const bin = join(tmp, 'usr', 'bin', 'qemu-system-x86_64');
      if (!existsSync(bin)) throw new HarnessError(`debootstrap finished but ${bin} is missing`, { log });
      const v = await capture('chroot', [tmp, 'qemu-system-x86_64', '--version'], 'qemu --version in the rootfs');
      const qemuVersion = /version\s+(\S+)/.exec(v)?.[1] ?? v.split('\n')[0]!;
      const du = await capture('du', ['-sm', tmp], 'du');
      renameSync(tmp, root);
      const r: Rootfs = {
        dir: root, key, recipe, qemuVersion, sizeMiB: Number(du.split(/\s+/)[0]),
        builtAt: new Date().toISOString(), buildSeconds: Math.round((Date.now() - started) / 100) / 10, cached: false,
      };
      writeFileSync(meta, `${JSON.stringify(r, null, 2)}\n`);
      p.done(`built ${key} (QEMU ${qemuVersion}, ${r.sizeMiB} MiB)`);
      return r;
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  });
}
