/**
 * Build once, test many: a prepared bundle is everything a guest boot needs, written by `prepare
 * --out DIR` on a build runner and shipped to test runners as a CI artifact, where `run --prepared
 * DIR` boots from it and never builds (no kernel build, no apt, no compiler).
 *
 *   DIR/manifest.json   bundle version, arch, the kernel spec it was built from, the kernel's
 *                       identity (release, source id, config hash, cache key), the image's hash,
 *                       host key and replaced modules, the agent's hash, the selftests' status,
 *                       and every file with its size and sha256
 *   DIR/kernel          the bootable image (bzImage / Image)
 *   DIR/initramfs       the image: busybox, dropbear, agent, modules, selftests
 *   DIR/config          the kernel's .config (reproducers carry it)
 *   DIR/vfio-agent      the agent (also inside the initramfs; kept for replay and lab hosts)
 *   DIR/rootfs/         with --rootfs: the qemu-migration suite's Debian tree (QEMU >= 8.0)
 *
 * Reading checks the manifest, the arch, and every file's size and sha256 (the rootfs by its file
 * list and sizes): a missing or altered file is one line naming it.
 */
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { sha256, sha256File } from '../base/hash.js';
import { writeFileAtomicSync } from '../base/results/file.js';
import { getArch, type Arch } from '../harness/arch.js';
import type { Prepared } from './prepare.js';
import { NESTED_MEM_MIB, rootfsQemuArgs, type Rootfs, type RootfsMachine } from '../images/rootfs/build.js';

export const BUNDLE_VERSION = 1;
export const MANIFEST = 'manifest.json';
const FILES = { kernel: 'kernel', initramfs: 'initramfs', config: 'config', agent: 'vfio-agent' } as const;
type FileRole = keyof typeof FILES;

export interface BundleManifest {
  bundle: number;
  arch: string;
  kernelSpec: string;
  createdAt: string;
  kernel: { release: string; sourceId: string; configHash: string; key: string };
  image: { hash: string; hostKey: string; replaced: Prepared['image']['replaced'] };
  agent: { sha256: string };
  selftests: { binaries: string[]; errors: { dir: string; message: string }[] };
  files: Record<FileRole, { path: string; bytes: number; sha256: string }>;
  rootfs?: { key: string; qemuVersion: string; files: number; bytes: number; listing: string };
}

export interface Bundle {
  dir: string;
  manifest: BundleManifest;
  prepared: Prepared;
  /** the rootfs tree in the bundle, when it has one */
  rootfs?: Rootfs;
}

/** Every regular file under `dir` with its size, sorted: the rootfs's identity without hashing 500 MB. */
function treeListing(dir: string): { files: number; bytes: number; listing: string } {
  const lines: string[] = [];
  let bytes = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) { lines.push(`${relative(dir, p)}\0${st.size}`); bytes += st.size; }
    }
  };
  walk(dir);
  return { files: lines.length, bytes, listing: sha256(lines.join('\n')) };
}

export async function writeBundle(p: Prepared, dir: string, o: { kernelSpec: string; rootfs?: Rootfs }): Promise<BundleManifest> {
  if (existsSync(join(dir, MANIFEST))) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const sources: Record<FileRole, string> = { kernel: p.kernel.image, initramfs: p.image.path, config: p.kernel.config, agent: p.agent.path };
  const files = {} as BundleManifest['files'];
  for (const role of Object.keys(FILES) as FileRole[]) {
    const dest = join(dir, FILES[role]);
    copyFileSync(sources[role], dest);
    files[role] = { path: FILES[role], bytes: lstatSync(dest).size, sha256: await sha256File(dest) };
  }
  let rootfs: BundleManifest['rootfs'];
  if (o.rootfs) {
    cpSync(o.rootfs.dir, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    rootfs = { key: o.rootfs.key, qemuVersion: o.rootfs.qemuVersion, ...treeListing(join(dir, 'rootfs')) };
  }
  const manifest: BundleManifest = {
    bundle: BUNDLE_VERSION, arch: p.arch.name, kernelSpec: o.kernelSpec, createdAt: new Date().toISOString(),
    kernel: { release: p.kernel.release, sourceId: p.kernel.sourceId, configHash: p.kernel.configHash, key: p.kernel.key },
    image: { hash: p.image.hash, hostKey: p.image.hostKey, replaced: p.image.replaced },
    agent: { sha256: p.agent.sha256 },
    selftests: { binaries: p.selftests.binaries.map((b) => b.name), errors: p.selftests.errors.map((e) => ({ dir: e.dir, message: e.message })) },
    files,
    ...(rootfs ? { rootfs } : {}),
  };
  writeFileAtomicSync(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Read and verify a bundle for `arch` (when given); throws one line naming what is wrong. */
export async function readBundle(dir: string, arch?: Arch): Promise<Bundle> {
  const mpath = join(dir, MANIFEST);
  let m: BundleManifest;
  try {
    m = JSON.parse(readFileSync(mpath, 'utf8')) as BundleManifest;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new HarnessError(code === 'ENOENT'
      ? `--prepared ${dir}: no ${MANIFEST} (not a bundle: write one with 'vfio-conformance prepare --out DIR')`
      : `--prepared ${dir}: ${MANIFEST} is not readable JSON (${(e as Error).message.slice(0, 100)})`);
  }
  if (m.bundle !== BUNDLE_VERSION) throw new HarnessError(`--prepared ${dir}: bundle version ${String(m.bundle)}, this tool reads ${BUNDLE_VERSION} (prepare it again with this version)`);
  if (arch && m.arch !== arch.name) throw new HarnessError(`--prepared ${dir}: the bundle is for ${m.arch}, this run is ${arch.name} (prepare one with --arch ${arch.name})`);
  const bundleArch = getArch(m.arch);
  for (const role of Object.keys(FILES) as FileRole[]) {
    const f = m.files?.[role];
    if (!f) throw new HarnessError(`--prepared ${dir}: ${MANIFEST} lists no ${role} file`);
    const path = join(dir, f.path);
    if (!existsSync(path)) throw new HarnessError(`--prepared ${dir}: ${f.path} is missing (the ${role})`);
    if (lstatSync(path).size !== f.bytes) throw new HarnessError(`--prepared ${dir}: ${f.path} was altered: ${lstatSync(path).size} bytes, the manifest says ${f.bytes}`);
    const h = await sha256File(path);
    if (h !== f.sha256) throw new HarnessError(`--prepared ${dir}: ${f.path} was altered: sha256 ${h.slice(0, 16)}..., the manifest says ${f.sha256.slice(0, 16)}...`);
  }
  let rootfs: Rootfs | undefined;
  if (m.rootfs) {
    const rdir = join(dir, 'rootfs');
    if (!existsSync(rdir)) throw new HarnessError(`--prepared ${dir}: rootfs/ is missing (the manifest lists the qemu-migration rootfs)`);
    const t = treeListing(rdir);
    if (t.listing !== m.rootfs.listing) {
      throw new HarnessError(`--prepared ${dir}: rootfs/ was altered: ${t.files} files of ${t.bytes} bytes, `
        + `the manifest says ${m.rootfs.files} of ${m.rootfs.bytes} (or other names or sizes)`);
    }
    rootfs = { dir: rdir, key: m.rootfs.key, qemuVersion: m.rootfs.qemuVersion } as Rootfs;
  }
  const file = (role: FileRole) => join(dir, m.files[role].path);
  const prepared: Prepared = {
    arch: bundleArch,
    kernel: {
      key: m.kernel.key, arch: bundleArch.name, sourceId: m.kernel.sourceId, sourceDir: '', release: m.kernel.release,
      configHash: m.kernel.configHash, image: file('kernel'), modulesDir: '', headersDir: '', config: file('config'), log: '', cached: true,
    },
    agent: { path: file('agent'), sha256: m.agent.sha256 },
    image: { path: file('initramfs'), hash: m.image.hash, hostKey: m.image.hostKey, replaced: m.image.replaced, cached: true },
    selftests: {
      binaries: m.selftests.binaries.map((name) => ({ name, path: '' })),
      errors: m.selftests.errors.map((e) => ({ ...e, log: '(in the bundle\'s build job)' })),
      manifest: '', cached: true,
    },
  };
  return { dir, manifest: m, prepared, ...(rootfs ? { rootfs } : {}) };
}

/**
 * The rootfs a run from a bundle gives the suites that want one: the bundle's own, never a build.
 * A bundle without it cannot run such a suite: say so before anything boots.
 */
export function bundleRootfs(b: Bundle): () => Promise<RootfsMachine> {
  return async () => {
    if (!b.rootfs) throw new HarnessError(`--prepared ${b.dir}: the bundle has no rootfs for the qemu-migration suite (prepare it with --rootfs, or leave the suite out)`);
    return { qemuArgs: rootfsQemuArgs(b.rootfs.dir), memMiB: NESTED_MEM_MIB, smp: 2, rootfs: b.rootfs };
  };
}
