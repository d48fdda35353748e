import { parseArgs } from 'node:util';
import { getArch } from '../harness/arch.js';
import { DEFAULT_KERNEL } from '../harness/kernel/source.js';
import { rootfsMachine } from '../images/rootfs/build.js';
import { prepare } from '../runner/prepare.js';

const HELP = `vfio-conformance prepare [--arch ARCH ...] [--kernel SPEC] [--rootfs]
  Build, or find in the cache, what runs and the project's own tests boot: per architecture the
  kernel under test, the agent, the kernel's selftests and the image; with --rootfs also the Debian
  rootfs of the real-client suite. Each long step shows its progress. npm test runs this first, so a
  cold cache is built in the open rather than inside a test that prints nothing for minutes.

Options:
  --arch ARCH        x86_64 (default) or arm64 (repeatable)
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --rootfs           also the Debian rootfs with a QEMU >= 8.0 (qemu-migration suite; x86_64 guests)`;

export async function prepareCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: 'string', multiple: true }, kernel: { type: 'string', default: DEFAULT_KERNEL },
      rootfs: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  // every name checked before the first (long) build starts
  const arches = (values.arch ?? ['x86_64']).map(getArch);
  for (const arch of arches) {
    const p = await prepare({ kernel: values.kernel, arch });
    process.stderr.write(`prepare: ${arch.name}: kernel ${p.kernel.release}, image ${p.image.hash.slice(0, 12)}\n`);
  }
  if (values.rootfs) {
    const r = await rootfsMachine();
    process.stderr.write(`prepare: rootfs ${r.rootfs.key} (QEMU ${r.rootfs.qemuVersion})\n`);
  }
  return 0;
}
