import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, readdirSync, appendFileSync } from 'node:fs';
import { join, basename } from 'node:path';
import { cpus } from 'node:os';
import { ARCHES, type Arch } from '../arch.js';
import { fragmentsFor, verifyConfig, describeDropped, kconfigSymbols, splitAbsent, type Fragment } from './config.js';
import { parseKernelSpec, resolveSource, type KernelSource, type KernelSpec } from './source.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath, cacheRoot } from '../../base/paths.js';
import { hashParts, sha256, sha256File } from '../../base/hash.js';
import { runLogged, capture, which } from '../../base/proc.js';
import { Progress, info } from '../../base/progress.js';
import { withLock } from '../../base/lock.js';
import { missingString, readCacheMeta } from './cache-meta.js';

/**
 * Bump when the build recipe changes in a way that changes the output for the same inputs
 * (base config target, make targets, install layout): old cache entries then stop matching.
 */
const RECIPE = '1';

export interface KernelBuild {
  /** cache key of this build: (source id, arch, fragments, recipe) for packages; tree id + config for trees */
  key: string;
  arch: Arch['name'];
  sourceId: string;
  sourceDir: string;
  release: string;
  configHash: string;
  /** bootable image (bzImage / Image) */
  image: string;
  /** INSTALL_MOD_PATH root: holds lib/modules/<release> */
  modulesDir: string;
  /** holds linux/vfio.h: pass as -I to the agent and selftests */
  headersDir: string;
  config: string;
  /** log of the build that produced this */
  log: string;
  cached: boolean;
  buildSeconds?: number;
}

export interface BuildOptions {
  kernel?: string | KernelSpec;
  arch?: Arch;
  /** user fragments merged after ours (paths) */
  extraFragments?: string[];
  jobs?: number;
  /** ignore a cached result and rebuild (the object dir is reused) */
  force?: boolean;
}

function readExtra(paths: string[]): Fragment[] {
  return paths.map((p) => {
    if (!existsSync(p)) throw new HarnessError(`config fragment not found: ${p}`);
    return { name: `user-${basename(p)}`, text: readFileSync(p, 'utf8') };
  });
}

function metaPath(dir: string): string {
  return join(dir, 'build.json');
}

/**
 * The build recorded in `dir`, when it is whole: its metadata parses and the image and uapi headers
 * it names are there. Anything else is said (with `then`, what the caller does about it).
 */
export function loadMeta(dir: string, then: string, say?: (line: string) => void): KernelBuild | undefined {
  const m = readCacheMeta<KernelBuild>(metaPath(dir), 'kernel', (b) => {
    const field = missingString(b, ['key', 'release', 'image', 'headersDir', 'config']);
    if (field) return field;
    if (!existsSync(b.image)) return `its image ${b.image} is gone`;
    if (!existsSync(join(b.headersDir, 'linux', 'vfio.h'))) return `its headers ${b.headersDir} are gone`;
    return undefined;
  }, then, say);
  return m && { ...m, cached: true };
}

async function makeEnv(): Promise<Record<string, string>> {
  const env: Record<string, string> = {
    // Fixed identity so two builds of the same inputs are the same bytes and ccache hits on init/version.
    KBUILD_BUILD_USER: 'vfio-conformance',
    KBUILD_BUILD_HOST: 'build',
  };
  if (await which('ccache')) {
    env.CCACHE_DIR = cachePath('ccache');
    // Paths under the cache root are hashed relative to the build dir, so a new build dir still hits.
    env.CCACHE_BASEDIR = cacheRoot();
    env.CCACHE_MAXSIZE = '5G';
  }
  return env;
}

async function makeArgs(src: KernelSource, arch: Arch, obj: string): Promise<string[]> {
  const args = ['-C', src.dir, `O=${obj}`, `ARCH=${arch.kernelArch}`];
  if (arch.crossCompile) args.push(`CROSS_COMPILE=${arch.crossCompile}`);
  if (await which('ccache')) args.push(`CC=ccache ${arch.crossCompile}gcc`);
  return args;
}

/** Generate .config: tinyconfig, then our fragments with the kernel's own merge_config.sh, then olddefconfig. */
async function configure(src: KernelSource, arch: Arch, dir: string, obj: string, frags: Fragment[], log: string, env: Record<string, string>): Promise<void> {
  const base = await makeArgs(src, arch, obj);
  mkdirSync(join(dir, 'fragments'), { recursive: true });
  const paths = frags.map((f, i) => {
    const p = join(dir, 'fragments', `${String(i).padStart(2, '0')}-${f.name}`);
    writeFileSync(p, f.text);
    return p;
  });
  await runLogged('make', [...base, 'tinyconfig'], { log, env, what: 'make tinyconfig' });
  await runLogged(join(src.dir, 'scripts', 'kconfig', 'merge_config.sh'), ['-m', '-O', obj, join(obj, '.config'), ...paths], {
    log, env: { ...env, ARCH: arch.kernelArch, ...(arch.crossCompile ? { CROSS_COMPILE: arch.crossCompile } : {}) }, cwd: src.dir, what: 'merge_config.sh',
  });
  await runLogged('make', [...base, 'olddefconfig'], { log, env, what: 'make olddefconfig' });
  const known = kconfigSymbols(await capture('grep', ['-rhE', '--include=Kconfig*', '^\\s*(menu)?config\\s+[A-Za-z0-9_]+\\s*$', src.dir], 'reading the tree\'s Kconfig symbols'));
  const { dropped, absent } = splitAbsent(verifyConfig(frags, readFileSync(join(obj, '.config'), 'utf8')), known);
  if (absent.length) {
    const note = `kernel config: not in this tree (an older kernel), left out: ${absent.map((x) => `${x.option} (from ${x.from})`).join(', ')}`;
    process.stderr.write(`${note}\n`);
    appendFileSync(log, `${note}\n`);
  }
  if (dropped.length) {
    throw new HarnessError(`kernel config: ${dropped.length} requested option(s) did not survive olddefconfig: ${describeDropped(dropped)}`, { log: join(obj, '.config') });
  }
}

async function compile(src: KernelSource, arch: Arch, obj: string, jobs: number, log: string, env: Record<string, string>): Promise<void> {
  const base = await makeArgs(src, arch, obj);
  const p = new Progress(`kernel build ${src.id} (${arch.name}, -j${jobs})`);
  let objects = 0;
  let last = '';
  await runLogged('make', [...base, `-j${jobs}`], {
    log, env, what: 'kernel build',
    onLine: (l) => {
      const m = /^\s+(CC|AS|LD|AR|CC \[M\]|LD \[M\])\s+(\S+)/.exec(l);
      if (m) { objects++; last = m[2]!; p.update(`${objects} objects, ${last}`); }
    },
  });
  p.done(`${objects} objects compiled`);
}

async function install(src: KernelSource, arch: Arch, obj: string, out: string, log: string, env: Record<string, string>): Promise<{ release: string; image: string; modulesDir: string; headersDir: string }> {
  const base = await makeArgs(src, arch, obj);
  const modulesDir = join(out, 'modules');
  const hdr = join(out, 'headers');
  rmSync(modulesDir, { recursive: true, force: true });
  rmSync(hdr, { recursive: true, force: true });
  await runLogged('make', [...base, `INSTALL_MOD_PATH=${modulesDir}`, 'INSTALL_MOD_STRIP=1', 'modules_install'], { log, env, what: 'make modules_install' });
  await runLogged('make', [...base, `INSTALL_HDR_PATH=${hdr}`, 'headers_install'], { log, env, what: 'make headers_install' });
  const release = (await capture('make', [...base, '-s', 'kernelrelease'], 'make kernelrelease', { env })).trim().split('\n').pop()!;
  const image = join(out, basename(arch.kernelImage));
  copyFileSync(join(obj, arch.kernelImage), image);
  copyFileSync(join(obj, '.config'), join(out, 'config'));
  return { release, image, modulesDir, headersDir: join(hdr, 'include') };
}

async function checkTools(arch: Arch): Promise<void> {
  const need = ['make', `${arch.crossCompile}gcc`, 'flex', 'bison', 'bc', 'depmod', 'xz', 'dpkg-deb'];
  const missing: string[] = [];
  for (const t of need) if (!(await which(t))) missing.push(t);
  if (missing.length) {
    throw new HarnessError(`kernel build needs ${missing.join(', ')}: install the build dependencies (see .ci/run for the apt-get line)`);
  }
}

/**
 * Build (or find in the cache) the kernel under test. A Debian package is immutable, so its build
 * is keyed by (source id, arch, fragments, recipe) and a repeat never runs make. A user's tree
 * changes under us: it keeps one build directory and make's own dependency tracking decides.
 */
export async function buildKernel(o: BuildOptions = {}): Promise<KernelBuild> {
  const arch = o.arch ?? ARCHES.x86_64;
  const spec = typeof o.kernel === 'string' ? parseKernelSpec(o.kernel) : (o.kernel ?? parseKernelSpec('debian:latest'));
  const frags = [...fragmentsFor(arch), ...readExtra(o.extraFragments ?? [])];
  const fragHash = hashParts(Object.fromEntries(frags.map((f, i) => [`${i}:${f.name}`, f.text])));
  const jobs = o.jobs ?? cpus().length + 1;

  const src = await resolveSource(spec);
  const key = hashParts({ source: src.id, arch: arch.name, fragments: fragHash, recipe: RECIPE }).slice(0, 16);
  const dir = src.mutable ? cachePath('trees', `${src.id}-${arch.name}`) : cachePath('kernels', `${src.id}-${arch.name}-${key}`);
  if (!src.mutable && !o.force) {
    const hit = loadMeta(dir, 'rebuilding it (10-20 minutes)');
    if (hit) return hit;
  }
  await checkTools(arch);
  mkdirSync(dir, { recursive: true });
  // A second build of the same kernel (another terminal, a CI job on a shared cache) waits for the
  // first and then takes its result, instead of running make in the same tree at the same time.
  return withLock(join(dir, 'lock'), async () => {
    const built = !src.mutable && !o.force ? loadMeta(dir, 'rebuilding it') : undefined;
    return built ?? await buildLocked(src, arch, dir, frags, fragHash, key, jobs);
  }, {
    timeoutMs: 3 * 60 * 60_000,
    waiting: (holder) => info(`kernel ${src.id} ${arch.name}: another build of it is running (${holder}); waiting for it`),
  });
}

async function buildLocked(src: KernelSource, arch: Arch, dir: string, frags: Fragment[], fragHash: string, key: string, jobs: number): Promise<KernelBuild> {
  const obj = join(dir, 'obj');
  const out = join(dir, 'out');
  mkdirSync(obj, { recursive: true });
  mkdirSync(out, { recursive: true });
  const log = join(dir, 'build.log');
  writeFileSync(log, `# ${new Date().toISOString()} ${src.id} ${arch.name}\n`);
  const env = await makeEnv();
  const started = Date.now();

  // A tree keeps its .config while the fragments are the same, so make rebuilds only what changed.
  const stamp = join(dir, 'fragments.sha256');
  const configured = existsSync(join(obj, '.config')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === fragHash;
  if (!configured) {
    await configure(src, arch, dir, obj, frags, log, env);
    writeFileSync(stamp, fragHash);
  }
  await compile(src, arch, obj, jobs, log, env);
  const inst = await install(src, arch, obj, out, log, env);
  const configText = readFileSync(join(obj, '.config'), 'utf8');
  const build: KernelBuild = {
    key: src.mutable ? `${src.id}-${sha256(configText).slice(0, 8)}-${(await sha256File(inst.image)).slice(0, 8)}` : key,
    arch: arch.name,
    sourceId: src.id,
    sourceDir: src.dir,
    release: inst.release,
    configHash: sha256(configText),
    image: inst.image,
    modulesDir: inst.modulesDir,
    headersDir: inst.headersDir,
    config: join(out, 'config'),
    log,
    cached: false,
    buildSeconds: Math.round((Date.now() - started) / 100) / 10,
  };
  const tmp = `${metaPath(dir)}.tmp`;
  writeFileSync(tmp, JSON.stringify(build, null, 2));
  renameSync(tmp, metaPath(dir));
  return build;
}

/** Cached builds, newest first (for `kernel list` and for tests that want any built kernel). */
export function listBuilds(): KernelBuild[] {
  const out: KernelBuild[] = [];
  for (const sub of ['kernels', 'trees']) {
    const root = cachePath(sub);
    if (!existsSync(root)) continue;
    for (const d of readdirSync(root)) {
      const m = loadMeta(join(root, d), 'not listed');
      if (m) out.push(m);
    }
  }
  return out;
}
