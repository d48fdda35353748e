import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseQemuSpec, resolveQemuSource, type QemuSource, type QemuSpec } from './source.js';
import { pythonTools } from './tools.js';
import { readSeries, applySeries, type Series } from './series.js';
import { buildQtests, readQtests, type QtestSpec } from './qtests.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath, cacheRoot, repoPath } from '../../base/paths.js';
import { hashParts } from '../../base/hash.js';
import { readCacheMeta } from '../../harness/kernel/cache-meta.js';
import { runLogged, which } from '../../base/proc.js';
import { Progress, info } from '../../base/progress.js';
import { withLock } from '../../base/lock.js';

/** Bump when the recipe changes the output for the same inputs: old cache entries stop matching. */
const RECIPE = '1';

/** The QEMU targets we build: the guests' architectures, named as QEMU names its binaries. */
export const QEMU_TARGETS = { x86_64: 'x86_64', arm64: 'aarch64' } as const;

/** Our device selection's name in configs/devices/<target>-softmmu/ (images/qemu/devices/*.mak). */
const DEVICES = 'vfio-conformance';

/**
 * configure for what the profiles run and nothing else: no GUI, docs, tools or guest agent; user
 * networking (SSH forwarding) and virtfs (the real-client suite's rootfs); KVM for lab hosts whose
 * KVM works. Every other optional feature is off (--without-default-features), which with the
 * trimmed device lists is what keeps the cold build short on 2 cores.
 */
export const CONFIGURE_FLAGS = [
  `--target-list=${Object.values(QEMU_TARGETS).map((t) => `${t}-softmmu`).join(',')}`,
  '--without-default-features',
  '--enable-tcg', '--enable-kvm', '--enable-slirp', '--enable-fdt=system', '--enable-virtfs', '--enable-attr',
  '--disable-docs', '--disable-tools', '--disable-guest-agent', '--disable-werror', '--disable-install-blobs',
  // No -g: a fifth less compile time, and ccache then hits across build directories (with -g it
  // hashes the directory, and every patch series gets a directory of its own).
  '--disable-debug-info',
];

export interface QemuBuild {
  /** cache key: (source id, patch series, configure flags, device lists, build tools, recipe) */
  key: string;
  sourceId: string;
  sourceDir: string;
  /** upstream version, from the tree's VERSION file */
  version: string;
  series: { hash: string; patches: string[] };
  /** qemu-system-* per guest architecture */
  binaries: Record<keyof typeof QEMU_TARGETS, string>;
  /** the build directory (ninja targets such as qtests are built here) */
  buildDir: string;
  /** the series' qtests (images/qemu/patches/qtests), built here: name -> binary */
  qtests?: Record<string, string>;
  configureFlags: string[];
  /** whether the device lists were trimmed to the profiles' (a user's tree keeps its defaults) */
  trimmed: boolean;
  log: string;
  cached: boolean;
  builtAt: string;
  buildSeconds?: number;
  /** a newer listed Debian version the mirror did not serve */
  fellBack?: string;
}

export interface QemuBuildOptions {
  qemu?: string | QemuSpec;
  jobs?: number;
  force?: boolean;
}

function metaPath(dir: string): string {
  return join(dir, 'build.json');
}

/** A recorded build whose binaries still exist; one that cannot be used is said (readCacheMeta), not silently rebuilt. */
function loadMeta(dir: string, then: string, say?: (line: string) => void): QemuBuild | undefined {
  const m = readCacheMeta<QemuBuild>(metaPath(dir), 'qemu build', (b) => {
    if (!b.binaries || typeof b.binaries !== 'object') return 'no binaries recorded';
    const missing = Object.values(b.binaries).filter((x) => !existsSync(x));
    return missing.length ? `binaries missing: ${missing.join(', ')}` : undefined;
  }, then, say);
  return m && { ...m, cached: true };
}

async function checkTools(): Promise<void> {
  const need = ['gcc', 'ninja', 'pkg-config', 'python3', 'dpkg-source', 'patch'];
  const missing: string[] = [];
  for (const t of need) if (!(await which(t))) missing.push(t);
  if (missing.length) throw new HarnessError(`qemu build needs ${missing.join(', ')}: run scripts/setup.sh (it installs QEMU's build dependencies)`);
}

function deviceLists(): Record<string, string> {
  const dir = repoPath('images', 'qemu', 'devices');
  return Object.fromEntries(Object.values(QEMU_TARGETS).map((t) => {
    const f = join(dir, `${t}-softmmu.mak`);
    if (!existsSync(f)) throw new HarnessError(`device list missing: ${f}`);
    return [t, readFileSync(f, 'utf8')];
  }));
}

/** The tree a Debian build compiles: a copy of the unpacked source with our series and device lists on top. */
async function patchedTree(src: QemuSource, series: Series, devices: Record<string, string>, dir: string, log: string): Promise<string> {
  const tree = join(dir, 'src');
  const tmp = `${tree}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  // roms/ holds firmware sources a -kernel boot never builds (--disable-install-blobs): not copied.
  cpSync(src.dir, tmp, { recursive: true, verbatimSymlinks: true, filter: (s) => s !== join(src.dir, 'roms') });
  for (const [target, text] of Object.entries(devices)) writeFileSync(join(tmp, 'configs', 'devices', `${target}-softmmu`, `${DEVICES}.mak`), text);
  await applySeries(series, tmp, log);
  rmSync(tree, { recursive: true, force: true });
  renameSync(tmp, tree);
  return tree;
}

async function buildEnv(tools: { bin: string; pythonPath: string }): Promise<Record<string, string>> {
  const env: Record<string, string> = {
    PATH: `${tools.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    // QEMU's configure makes a venv (build/pyvenv) whose meson wrapper imports mesonbuild; it runs again
    // inside ninja, so the unpacked tools must stay importable for the whole build, not only configure.
    PYTHONPATH: tools.pythonPath,
  };
  if (await which('ccache')) {
    // Paths under the cache root hash relative to it, so a new build directory (another patch
    // series) still hits for every file the series did not touch.
    Object.assign(env, { CCACHE_DIR: cachePath('ccache'), CCACHE_BASEDIR: cacheRoot(), CCACHE_MAXSIZE: '5G', CCACHE_NOHASHDIR: '1' });
  }
  return env;
}

async function compile(buildDir: string, jobs: number, log: string, env: Record<string, string>, label: string): Promise<void> {
  const p = new Progress(label);
  let steps = '';
  await runLogged('ninja', ['-C', buildDir, `-j${jobs}`, ...Object.values(QEMU_TARGETS).map((t) => `qemu-system-${t}`)], {
    log, env, what: 'qemu build (ninja)',
    onLine: (l) => {
      const m = /^\[(\d+)\/(\d+)\]\s+(?:Compiling \S+ object |Linking target |Generating )?(\S+)/.exec(l);
      if (m) { steps = `${m[1]}/${m[2]}`; p.update(`${steps} ${m[3]!.split('/').pop()}`); }
    },
  });
  p.done(steps ? `${steps.split('/')[1]} steps` : 'up to date');
}

/**
 * Build (or find in the cache) the QEMU under test, for every guest architecture. A Debian package
 * is immutable, so its build is keyed by (source, series, configure flags, device lists, tools,
 * recipe) and a repeat never runs configure or ninja. A user's tree keeps one build directory,
 * builds as it is (its own patches, its default devices: we write nothing into it) and lets ninja
 * decide what changed.
 */
export async function buildQemu(o: QemuBuildOptions = {}): Promise<QemuBuild> {
  const spec = typeof o.qemu === 'string' ? parseQemuSpec(o.qemu) : (o.qemu ?? parseQemuSpec('debian:latest'));
  const jobs = o.jobs ?? cpus().length + 1;
  const src = await resolveQemuSource(spec);
  const series = src.mutable ? { hash: 'none', patches: [] } : readSeries(repoPath('images', 'qemu', 'patches'));
  const devices = src.mutable ? {} : deviceLists();
  const tools = await pythonTools();
  // QEMU's configure writes the compiler into meson's machine file as given: ccache must be named
  // there (meson does not add it on its own), or a new patch series recompiles all 1,500 objects.
  const cc = (await which('ccache')) ? ['--cc=ccache cc', '--cxx=ccache c++'] : [];
  const flags = src.mutable
    ? [...CONFIGURE_FLAGS, ...cc]
    : [...CONFIGURE_FLAGS, ...cc, '--without-default-devices', ...Object.values(QEMU_TARGETS).map((t) => `--with-devices-${t}=${DEVICES}`)];
  const key = hashParts({
    source: src.id, series: series.hash, flags: flags.join(' '), devices: JSON.stringify(devices), tools: tools.versions.join(' '), recipe: RECIPE,
  }).slice(0, 16);
  const dir = src.mutable ? cachePath('qemu-trees', src.id) : cachePath('qemu', `${src.id}-${key}`);
  const qtests = src.mutable ? [] : readQtests();
  if (!src.mutable && !o.force) {
    const hit = loadMeta(dir, 'building it again');
    // a qtest listed since this build was made is built into it (ninja: the rest is up to date)
    if (hit && qtests.every((q) => existsSync(hit.qtests?.[q.name] ?? ''))) return hit;
  }
  await checkTools();
  mkdirSync(dir, { recursive: true });
  // A second build of the same inputs (another terminal, a CI job sharing the cache) would delete the
  // tree the first one is compiling: it waits for the first, then takes its result.
  return withLock(join(dir, '.lock'), async () => {
    const built = !src.mutable && !o.force ? loadMeta(dir, 'building it again') : undefined;
    if (built && qtests.every((q) => existsSync(built.qtests?.[q.name] ?? ''))) return built;
    return buildLocked(src, series, devices, flags, key, dir, jobs, tools, qtests);
  }, {
    timeoutMs: 2 * 60 * 60_000,
    waiting: (holder) => info(`qemu ${src.id}: another build of it is running (${holder}); waiting for it`),
  });
}

async function buildLocked(src: QemuSource, series: Series, devices: Record<string, string>, flags: string[], key: string, dir: string, jobs: number, tools: { bin: string; pythonPath: string }, qtestSpecs: QtestSpec[]): Promise<QemuBuild> {
  const log = join(dir, 'build.log');
  writeFileSync(log, `# ${new Date().toISOString()} ${src.id} series ${series.hash}\n`);
  const env = await buildEnv(tools);
  const started = Date.now();
  const buildDir = join(dir, 'build');
  const stamp = join(dir, 'configured');
  const configured = existsSync(join(buildDir, 'build.ninja')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === key;
  if (!configured) {
    const tree = src.mutable ? src.dir : await patchedTree(src, series, devices, dir, log);
    rmSync(buildDir, { recursive: true, force: true });
    mkdirSync(buildDir, { recursive: true });
    const p = new Progress(`qemu configure ${src.id}`);
    p.update(`${series.patches.length} patches applied; running configure`);
    await runLogged(join(tree, 'configure'), flags, { log, env, cwd: buildDir, what: 'qemu configure' });
    writeFileSync(stamp, key);
    p.done('configured');
  }
  await compile(buildDir, jobs, log, env, `qemu build ${src.id} (-j${jobs})`);
  const binaries = Object.fromEntries(Object.entries(QEMU_TARGETS).map(([arch, t]) => [arch, join(buildDir, `qemu-system-${t}`)])) as QemuBuild['binaries'];
  for (const b of Object.values(binaries)) if (!existsSync(b)) throw new HarnessError(`qemu build finished without ${b}`, { log });
  const qtests = await buildQtests(buildDir, qtestSpecs, { jobs, log, env });
  const build: QemuBuild = {
    key, sourceId: src.id, sourceDir: src.dir, version: src.version, series, binaries, buildDir, qtests,
    configureFlags: flags, trimmed: !src.mutable, log, cached: false, builtAt: new Date().toISOString(),
    buildSeconds: Math.round((Date.now() - started) / 100) / 10, fellBack: src.fellBack,
  };
  const tmp = `${metaPath(dir)}.tmp`;
  writeFileSync(tmp, JSON.stringify(build, null, 2));
  renameSync(tmp, metaPath(dir));
  return build;
}

/** Cached builds, newest first (`qemu list`, and `--qemu built` picks the newest). */
export function listQemuBuilds(): QemuBuild[] {
  const out: QemuBuild[] = [];
  for (const sub of ['qemu', 'qemu-trees']) {
    const root = cachePath(sub);
    if (!existsSync(root)) continue;
    for (const d of readdirSync(root)) {
      const b = loadMeta(join(root, d), 'not listed');
      if (b) out.push(b);
    }
  }
  return out.sort((x, y) => (y.builtAt ?? '').localeCompare(x.builtAt ?? ''));
}
