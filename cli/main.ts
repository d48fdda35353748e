#!/usr/bin/env node
import { HarnessError } from '../base/errors.js';
import { toolInfo } from '../runner/run-info.js';

const USAGE = `vfio-conformance — a conformance harness for Linux VFIO live migration

Usage:
  vfio-conformance run [--suite S ...] [--profile P ...] [--kernel SPEC] [--out DIR]
        Build the kernel, boot it behind each emulated IOMMU and run the suites.
  vfio-conformance list [--suite S ...] [--case GLOB ...] [--json]
        Print the case ids (static, or derived from the default device) for run --case/--exclude.
  vfio-conformance plan [--suite S ...] [--profile P ...] [--shards N] [--timings RUN] [--json]
        The run's cells (profile x suite) with case counts and costs; with --shards, the split for CI.
  vfio-conformance merge RUN... [--out DIR] [--baseline RUN] [--expectations F]
        One results.json, junit.xml and index.html from the shards of a plan; gates as run does.
  vfio-conformance export --kcidb RUN --origin NAME [--git-url URL] [--commit SHA] [--out FILE]
        A KCIDB I/O v5 document (checkout, build, tests) of a run or a shard, for KernelCI.
  vfio-conformance kernel build [--kernel SPEC] [--json]
        Build (or find in the cache) the kernel under test.
  vfio-conformance prepare [--arch ARCH ...] [--rootfs] [--out DIR]
        Build (or find in the cache) everything a guest boot needs: kernel, agent, selftests, image;
        with --out, a bundle for CI that 'run --prepared DIR' boots from without building.
  vfio-conformance qemu build [--qemu SPEC] [--json]
        Build (or find in the cache) the QEMU under test, with our patch series.
  vfio-conformance boot --profile P [--kernel SPEC] -- CMD...
        Boot a guest, run CMD in it over SSH, print its output, exit with its code.
  vfio-conformance compare RUN_A RUN_B [...] [--json] [--html FILE]
        Compare runs case by case: new failures, fixes, new and vanished cases, changed errnos.
  vfio-conformance replay BUNDLE
        Play back a failed case from its reproducer bundle and show where replies differ.
  vfio-conformance profiles [--json]
        List the machine profiles and whether this host can run each.

Kernel SPEC: debian:latest (default: the newest linux-source package of the unstable suite),
debian:X.Y (e.g. debian:6.12 from this machine's own suite), or PATH to a kernel tree.

Each command takes --help. Exit codes: 0 success, 1 test failures or regressions, 2 harness error.
Cache: ~/.cache/vfio-conformance (set VFIO_CONFORMANCE_CACHE to move it).`;

type Command = (argv: string[]) => Promise<number>;

/** Loaded on demand: `merge` or `list` should not pay for loading the whole harness. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run.js')).runCommand,
  compare: async () => (await import('./compare.js')).compareCommand,
  replay: async () => (await import('./replay.js')).replayCommand,
  kernel: async () => (await import('./kernel.js')).kernelCommand,
  boot: async () => (await import('./boot.js')).bootCommand,
  profiles: async () => (await import('./profiles.js')).profilesCommand,
  list: async () => (await import('./list.js')).listCommand,
  plan: async () => (await import('./plan.js')).planCommand,
  merge: async () => (await import('./merge.js')).mergeCommand,
  export: async () => (await import('./export.js')).exportCommand,
  prepare: async () => (await import('./prepare.js')).prepareCommand,
  qemu: async () => (await import('./qemu.js')).qemuCommand,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version') {
    const tool = toolInfo();
    process.stdout.write(`${tool.name} ${tool.version}\n`);
    return 0;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    process.stderr.write(`vfio-conformance: unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; see --help)\n`);
    return 2;
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    if (e instanceof HarnessError) {
      process.stderr.write(`vfio-conformance: ${e.oneLine()}\n`);
      if (process.env.VFIO_CONFORMANCE_DEBUG) process.stderr.write(`${e.stack}\n`);
      process.exitCode = e.exitCode;
    } else if (e instanceof Error && String((e as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS_')) {
      // a flag parseArgs refused (unknown, missing its value, a value that looks like a flag): one line
      process.stderr.write(`vfio-conformance: ${e.message.split('\n')[0]} (see --help)\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`vfio-conformance: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 2;
    }
  },
);
