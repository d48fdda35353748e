import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelBuild } from '../../harness/kernel/build.js';
import { readCacheMeta } from '../../harness/kernel/cache-meta.js';
import { hashParts } from '../../base/hash.js';
import { HarnessError } from '../../base/errors.js';
import { runLogged } from '../../base/proc.js';
import { getArch } from '../../harness/arch.js';
import { unpackPackages } from '../initramfs/userland.js';

/** static libraries the selftests link, for a cross build */
const CROSS_LIBS = ['libcap-dev', 'libcap2', 'uuid-dev', 'libuuid1'];

/**
 * Bump when the recipe (targets, flags, layout) changes: old cache entries then stop matching.
 */
const RECIPE = '1';

/** The selftest directories we build, and the programs each must produce. */
const TARGETS: { dir: string; optional: boolean; extraMake: string[] }[] = [
  // iommufd + iommufd_fail_nth; -lcap comes from the Makefile (libcap-dev, static libcap.a)
  { dir: 'iommu', optional: false, extraMake: [] },
  // 7.2 only (absent in 6.12): libvfio, -luuid (static libuuid.a from uuid-dev), -pthread
  { dir: 'vfio', optional: true, extraMake: [] },
];

export interface SelftestBinary {
  /** `<dir>/<program>`, e.g. `iommu/iommufd`; installed in the guest as /opt/kselftest/<name> */
  name: string;
  path: string;
}

export interface SelftestBuildError {
  /** the selftest directory that failed (`iommu`, `vfio`) */
  dir: string;
  /** one line: what failed and the first compiler error */
  message: string;
  /** the full build log */
  log: string;
}

export interface SelftestBuild {
  binaries: SelftestBinary[];
  /** the first failure (kept for callers that only report one) */
  error?: { message: string; log: string };
  /** every directory that did not build; the others' binaries are still usable */
  errors: SelftestBuildError[];
  /** /opt/kselftest/manifest.json for the guest (GuestManifest): what is there and what did not build */
  manifest: string;
  cached: boolean;
}

interface Manifest {
  binaries: SelftestBinary[];
  errors: SelftestBuildError[];
}

function cacheKey(kernel: KernelBuild): string {
  return hashParts({ kernel: kernel.key, source: kernel.sourceId, arch: kernel.arch, recipe: RECIPE }).slice(0, 16);
}

function loadCached(dir: string): SelftestBuild | undefined {
  const manifest = join(dir, 'manifest.json');
  const m = readCacheMeta<Manifest>(join(dir, 'build.json'), 'kselftest', (x) => {
    if (!Array.isArray(x.binaries) || !Array.isArray(x.errors)) return 'no binaries and errors lists';
    const gone = x.binaries.find((b) => typeof b?.path !== 'string' || !existsSync(b.path));
    if (gone) return `program ${gone.name ?? '?'} is gone`;
    return existsSync(manifest) ? undefined : 'no manifest.json';
  }, 'building the selftests again');
  if (!m) return undefined;
  return { ...m, error: m.errors[0] && { message: m.errors[0].message, log: m.errors[0].log }, manifest, cached: true };
}

/** Executables make left in OUTPUT (not objects, not the libvfio folder, not .d files). */
function programsIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => {
    const st = statSync(join(dir, n));
    return st.isFile() && (st.mode & 0o111) !== 0 && !/\.(o|d|sh|a)$/.test(n);
  }).sort();
}

/**
 * Builds the kernel's own iommu (and, where the tree has them, vfio) selftests statically, against
 * the headers installed by the kernel build, so they run in the initramfs guest without a libc.
 *
 * A directory that does not compile (6.12.117's iommu selftests, a tree with a half-backported vfio
 * library) is recorded as an error with its first compiler error and log, never thrown: the suite
 * turns it into a failed result. Cached by (kernel build key, source id); a failed build is cached
 * as well, because the same inputs fail the same way.
 */
export async function buildSelftests(kernel: KernelBuild, outDir: string): Promise<SelftestBuild> {
  const dir = join(outDir, `${kernel.sourceId}-${kernel.arch}-${cacheKey(kernel)}`);
  const hit = loadCached(dir);
  if (hit) return hit;

  const selftests = join(kernel.sourceDir, 'tools', 'testing', 'selftests');
  mkdirSync(dir, { recursive: true });
  const binaries: SelftestBinary[] = [];
  const errors: SelftestBuildError[] = [];
  // A cross build links libcap.a (and libuuid.a for vfio) of the guest's architecture, from Debian's packages.
  const arch = getArch(kernel.arch);
  const sysroot = arch.crossCompile ? (await unpackPackages(arch, CROSS_LIBS)).root : undefined;
  const includes = [`-isystem ${kernel.headersDir}`, ...(sysroot ? [`-isystem ${join(sysroot, 'usr', 'include')}`] : [])].join(' ');
  const ldflags = ['-static', ...(sysroot ? [`-L${join(sysroot, 'usr', 'lib', arch.crossCompile.replace(/-$/, ''))}`] : [])].join(' ');
  const crossArgs = arch.crossCompile ? [`ARCH=${arch.kernelArch}`, `CROSS_COMPILE=${arch.crossCompile}`] : [];
  for (const t of TARGETS) {
    const src = join(selftests, t.dir);
    if (!existsSync(join(src, 'Makefile'))) {
      if (!t.optional) {
        errors.push({ dir: t.dir, message: `${src}/Makefile not found: this tree has no ${t.dir} selftests`, log: kernel.log });
      }
      continue;
    }
    // Build into a private folder, move it into place only when make succeeded.
    const out = join(dir, t.dir);
    const tmp = `${out}.tmp-${process.pid}`;
    const log = join(dir, `${t.dir}.log`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    writeFileSync(log, `# ${new Date().toISOString()} ${kernel.sourceId} ${t.dir} selftests\n`);
    const args = ['-C', src, `OUTPUT=${tmp}`, `KHDR_INCLUDES=${includes}`, `LDFLAGS=${ldflags}`, ...crossArgs, ...t.extraMake];
    try {
      await runLogged('make', args, { log, what: `${t.dir} selftests build`, timeoutMs: 10 * 60_000, env: { ...process.env, MAKEFLAGS: '' } });
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      const msg = e instanceof HarnessError ? e.message : `${t.dir} selftests build failed: ${(e as Error).message}`;
      errors.push({ dir: t.dir, message: msg, log });
      continue;
    }
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
    const progs = programsIn(out);
    if (!progs.length) {
      errors.push({ dir: t.dir, message: `${t.dir} selftests build produced no programs`, log });
      continue;
    }
    for (const p of progs) binaries.push({ name: `${t.dir}/${p}`, path: join(out, p) });
  }
  const guest: GuestManifest = { kernel: kernel.release, sourceId: kernel.sourceId, binaries: binaries.map((x) => x.name), errors };
  const manifest = join(dir, 'manifest.json');
  writeFileSync(manifest, `${JSON.stringify(guest, null, 2)}\n`);
  const m: Manifest = { binaries, errors };
  writeFileSync(join(dir, 'build.json.tmp'), JSON.stringify(m, null, 2));
  renameSync(join(dir, 'build.json.tmp'), join(dir, 'build.json'));
  return { ...m, error: errors[0] && { message: errors[0].message, log: errors[0].log }, manifest, cached: false };
}

/** What the guest finds in /opt/kselftest/manifest.json: which programs are there and what did not build. */
export interface GuestManifest {
  kernel: string;
  sourceId: string;
  /** `<dir>/<program>` names under /opt/kselftest */
  binaries: string[];
  errors: SelftestBuildError[];
}

/** Where the selftests live in the guest. */
export const GUEST_DIR = '/opt/kselftest';
