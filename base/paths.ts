import { homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, found from this compiled file (dist/base/paths.js) or its source. */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/base -> repo, or base -> repo when run from source
  const up = here.includes(`${'/'}dist${'/'}`) ? '../..' : '..';
  return resolve(here, up);
}

export function repoPath(...parts: string[]): string {
  return join(repoRoot(), ...parts);
}

/**
 * Where sources, builds, images and verdicts are cached. Outside the repo so a fresh clone
 * reuses a warm cache; VFIO_CONFORMANCE_CACHE moves it (CI runners with a cache volume).
 */
export function cacheRoot(): string {
  const env = process.env.VFIO_CONFORMANCE_CACHE;
  if (env) return resolve(env);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'vfio-conformance');
}

export function cachePath(...parts: string[]): string {
  return join(cacheRoot(), ...parts);
}
