import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrivateApt } from '../../harness/kernel/apt.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { capture } from '../../base/proc.js';

/**
 * Python build tools QEMU needs and bookworm has too old or not at all: QEMU 10.x wants meson >= 1.5
 * (bookworm has 1.0) and Debian's +ds repack drops the meson wheel QEMU bundles. The unstable suite's
 * `meson` and `python3-pycotap` are architecture-all Python that runs on bookworm's python3, so they
 * are downloaded and unpacked into the cache, never installed: the host's packages stay as they were.
 */
const TOOLS = ['meson', 'python3-pycotap'] as const;

export interface PythonTools {
  /** put first on PATH: holds `meson` */
  bin: string;
  /** put on PYTHONPATH: holds mesonbuild and pycotap (the build's own venv imports meson from here too) */
  pythonPath: string;
  /** package=version of each, for the build's cache key and log */
  versions: string[];
}

export async function pythonTools(): Promise<PythonTools> {
  const apt = new PrivateApt('unstable');
  await apt.update();
  const versions = await apt.candidates([...TOOLS]);
  const missing = TOOLS.filter((t) => !versions.has(t));
  if (missing.length) throw new HarnessError(`the unstable suite has no ${missing.join(', ')}: cannot build QEMU (it needs meson >= 1.5)`);
  const ids = TOOLS.map((t) => `${t}=${versions.get(t)}`);
  const root = cachePath('tools', ids.join('_').replace(/[^A-Za-z0-9.+=_-]/g, '_'));
  const done = { bin: join(root, 'usr', 'bin'), pythonPath: join(root, 'usr', 'lib', 'python3', 'dist-packages'), versions: ids };
  if (existsSync(join(root, '.complete'))) return done;
  const tmp = `${root}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    for (const t of TOOLS) {
      const deb = await apt.download(t, versions.get(t)!, join(tmp, '.debs'));
      await capture('dpkg-deb', ['-x', deb, tmp], `unpacking ${t}`);
    }
    rmSync(join(tmp, '.debs'), { recursive: true, force: true });
    if (!readdirSync(join(tmp, 'usr', 'bin')).includes('meson')) throw new HarnessError(`the meson package unpacked without usr/bin/meson (${tmp})`);
    writeFileSync(join(tmp, '.complete'), `${ids.join('\n')}\n`);
    rmSync(root, { recursive: true, force: true });
    renameSync(tmp, root);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return done;
}
