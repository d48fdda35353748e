#!/usr/bin/env node
import { HarnessError } from '../base/errors.js';
import { kernelCommand } from './kernel.js';
import { bootCommand } from './boot.js';
import { profilesCommand } from './profiles.js';
import { runCommand } from './run.js';
import { compareCommand } from './compare.js';
import { replayCommand } from './replay.js';
import { prepareCommand } from './prepare.js';
import { toolInfo } from '../runner/run-info.js';
import { qemuCommand } from './qemu.js';

const USAGE = `vfio-conformance — a conformance harness for Linux VFIO live migration

Usage:
  vfio-conformance run [--suite S ...] [--profile P ...] [--kernel SPEC] [--out DIR]
        Build the kernel, boot it behind each emulated IOMMU and run the suites.
  vfio-conformance kernel build [--kernel SPEC] [--json]
        Build (or find in the cache) the kernel under test.
  vfio-conformance prepare [--arch ARCH ...] [--rootfs]
        Build (or find in the cache) everything a guest boot needs: kernel, agent, selftests, image.
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

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  run: runCommand,
  compare: compareCommand,
  replay: replayCommand,
  kernel: kernelCommand,
  prepare: prepareCommand,
  qemu: qemuCommand,
  boot: bootCommand,
  profiles: profilesCommand,
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
  const fn = COMMANDS[cmd];
  if (!fn) {
    process.stderr.write(`vfio-conformance: unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; see --help)\n`);
    return 2;
  }
  return fn(rest);
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
