import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { HarnessError } from '../../base/errors.js';
import { hashParts, sha256File } from '../../base/hash.js';
import { repoPath } from '../../base/paths.js';

export interface BuildAgentOptions {
  /** Directory holding `linux/vfio.h`, i.e. `<O>/usr/include` after `make headers_install`. */
  headersDir: string;
  outDir: string;
  /** Compiler command; defaults to $CC or gcc. */
  cc?: string;
  extraCflags?: string[];
}

export interface BuiltAgent {
  path: string;
  sha256: string;
  cached: boolean;
}

const BASE_CFLAGS = ['-static', '-O2', '-Wall', '-Wextra'];

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The line a user needs first: the compiler's first `error:`, else its first non-empty line. */
function firstErrorLine(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.find((l) => /\berror\b/i.test(l)) ?? lines[0] ?? 'no compiler output';
}

/**
 * Compiles the guest agent statically against one kernel's uapi headers.
 *
 * The cache key covers exactly what changes the binary: agent.c, the two headers whose contents
 * decide which ops are compiled in, the compiler and the flags. Other headers (asm/, linux/types.h)
 * follow from the same kernel and do not change on their own.
 */
export async function buildAgent(opts: BuildAgentOptions): Promise<BuiltAgent> {
  const src = repoPath('images', 'agent', 'agent.c');
  const cc = opts.cc ?? process.env.CC ?? 'gcc';
  const vfioH = join(opts.headersDir, 'linux', 'vfio.h');
  if (!(await exists(vfioH))) {
    throw new HarnessError(`agent build: ${vfioH} not found (headersDir must be <O>/usr/include)`);
  }
  const iommufdH = await readOrEmpty(join(opts.headersDir, 'linux', 'iommufd.h'));
  // -isystem puts the kernel's headers ahead of the libc's copy of linux/*.h, and keeps warnings
  // from headers we do not own out of our -Wall -Wextra output.
  const cflags = [...BASE_CFLAGS, ...(opts.extraCflags ?? []), '-isystem', opts.headersDir];
  // Without this, a pre-iommufd kernel's headers would fall through to the libc's iommufd.h.
  if (iommufdH === '') cflags.push('-DVFIO_AGENT_NO_IOMMUFD_H');
  const key = hashParts({
    agent: await readFile(src, 'utf8'),
    vfio: await readFile(vfioH, 'utf8'),
    iommufd: iommufdH,
    cc,
    // the include dir itself is not part of the key: the same headers elsewhere give the same binary
    flags: JSON.stringify([...BASE_CFLAGS, ...(opts.extraCflags ?? [])]),
  }).slice(0, 16);

  await mkdir(opts.outDir, { recursive: true });
  const out = join(opts.outDir, `vfio-agent-${key}`);
  const log = `${out}.log`;
  if (await exists(out)) {
    return { path: out, sha256: await sha256File(out), cached: true };
  }

  // Compile to a private name and rename, so a concurrent build or a killed compiler never leaves
  // a half-written binary under the cached name.
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  const r = await execa(cc, [...cflags, '-o', tmp, src], { reject: false, all: true, stdin: 'ignore' });
  const output = r.all ?? '';
  if (r.failed || r.exitCode !== 0) {
    await rm(tmp, { force: true });
    await writeFile(log, `$ ${r.command}\n${output}\n`);
    const why = r.exitCode === undefined ? (r.shortMessage ?? 'compiler did not run') : firstErrorLine(output);
    throw new HarnessError(`agent build failed: ${why}`, { log });
  }
  await rename(tmp, out);
  await rm(log, { force: true });
  return { path: out, sha256: await sha256File(out), cached: false };
}
