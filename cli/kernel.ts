import { parseArgs } from 'node:util';
import { buildKernel, listBuilds } from '../harness/kernel/build.js';
import { getArch } from '../harness/arch.js';
import { DEFAULT_KERNEL } from '../harness/kernel/source.js';

const HELP = `vfio-conformance kernel build [options]
  Build the kernel under test from a tinyconfig base plus images/kconfig/*.config, verify that every
  requested option survived olddefconfig, and cache the result by (source, arch, fragments).
  A repeat with nothing changed is a cache hit and does not run make; a user's tree keeps one
  build directory and is rebuilt incrementally.

Options:
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --source SPEC      same as --kernel
  --arch ARCH        x86_64 (default) or arm64 (cross-built with aarch64-linux-gnu-gcc, base-arm64.config)
  --config FILE      an extra config fragment merged after ours (repeatable)
  --jobs N           make -j (default: cores + 1)
  --force            rebuild even when cached
  --json             print the result as JSON on stdout

vfio-conformance kernel list [--json]
  List cached builds.`;

export async function kernelCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(`${HELP}\n`); return sub ? 0 : 2; }
  const { values } = parseArgs({
    args: rest,
    options: {
      kernel: { type: 'string' }, source: { type: 'string' }, arch: { type: 'string', default: 'x86_64' },
      config: { type: 'string', multiple: true }, jobs: { type: 'string' }, force: { type: 'boolean' },
      json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (sub === 'list') {
    const b = listBuilds();
    if (values.json) process.stdout.write(`${JSON.stringify(b, null, 2)}\n`);
    else for (const k of b) process.stdout.write(`${k.release}\t${k.arch}\t${k.sourceId}\t${k.image}\n`);
    return 0;
  }
  if (sub !== 'build') { process.stderr.write(`vfio-conformance kernel: unknown subcommand '${sub}' (build, list)\n`); return 2; }
  const jobs = values.jobs ? Number(values.jobs) : undefined;
  if (jobs !== undefined && !(jobs > 0)) { process.stderr.write('vfio-conformance kernel build: --jobs takes a positive number\n'); return 2; }
  const k = await buildKernel({
    kernel: values.kernel ?? values.source ?? DEFAULT_KERNEL,
    arch: getArch(values.arch!),
    extraFragments: values.config,
    jobs,
    force: values.force,
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(k, null, 2)}\n`);
  } else {
    process.stdout.write([
      `release:  ${k.release}${k.cached ? ' (cached)' : ` (built in ${k.buildSeconds} s)`}`,
      `source:   ${k.sourceId} (${k.sourceDir})`,
      `image:    ${k.image}`,
      `modules:  ${k.modulesDir}`,
      `headers:  ${k.headersDir}`,
      `config:   ${k.config} (sha256 ${k.configHash.slice(0, 16)})`,
      '',
    ].join('\n'));
  }
  return 0;
}
