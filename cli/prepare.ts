import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { getArch } from '../harness/arch.js';
import { DEFAULT_KERNEL } from '../harness/kernel/source.js';
import { rootfsMachine } from '../images/rootfs/build.js';
import { prepare } from '../runner/prepare.js';
import { writeBundle } from '../runner/bundle.js';

const HELP = `vfio-conformance prepare [--arch ARCH ...] [--kernel SPEC] [--rootfs] [--out DIR] [--module FILE.ko ...]
  Build, or find in the cache, what runs and the project's own tests boot: per architecture the
  kernel under test, the agent, the kernel's selftests and the image; with --rootfs also the Debian
  rootfs of the real-client suite. Each long step shows its progress. npm test runs this first, so a
  cold cache is built in the open rather than inside a test that prints nothing for minutes.

  With --out DIR it also writes a bundle there for CI (build once, test many): the kernel image, the
  initramfs (modules, agent, selftests), the kernel config, the agent, with --rootfs the rootfs, and
  manifest.json with the kernel spec, the arch and every file's sha256. Ship DIR as an artifact;
  'run --prepared DIR' on the test runners boots from it and builds nothing.

Options:
  --arch ARCH        x86_64 (default) or arm64 (repeatable; one with --out)
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --rootfs           also the Debian rootfs with a QEMU >= 8.0 (qemu-migration suite; x86_64 guests;
                     about 480 MB in a bundle)
  --out DIR          write a bundle to DIR (replaced if it holds one)
  --module FILE.ko   with --out: replace the in-tree module of the same name in the bundle's image`;

export async function prepareCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: 'string', multiple: true }, kernel: { type: 'string', default: DEFAULT_KERNEL },
      rootfs: { type: 'boolean' }, out: { type: 'string' }, module: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  // every name checked before the first (long) build starts
  const arches = (values.arch ?? ['x86_64']).map(getArch);
  if (values.out && arches.length > 1) throw new HarnessError('--out writes one bundle, for one --arch: prepare each architecture into its own directory');
  if (values.module?.length && !values.out) throw new HarnessError('--module goes into a bundle: give --out DIR');
  if (values.out && values.rootfs && !arches[0]!.nestedClient) {
    throw new HarnessError(`--rootfs in a bundle: the nested QEMU client is built for x86_64 guests only, not ${arches[0]!.name}`);
  }
  for (const arch of arches) {
    const p = await prepare({ kernel: values.kernel, arch, modules: values.module });
    process.stderr.write(`prepare: ${arch.name}: kernel ${p.kernel.release}, image ${p.image.hash.slice(0, 12)}\n`);
    if (!values.out) continue;
    const rootfs = values.rootfs ? (await rootfsMachine()).rootfs : undefined;
    const kernelSpec = values.kernel!.startsWith('debian:') ? values.kernel! : resolve(values.kernel!);
    const m = await writeBundle(p, resolve(values.out), { kernelSpec, rootfs });
    const mib = (Object.values(m.files).reduce((a, f) => a + f.bytes, 0) + (m.rootfs?.bytes ?? 0)) / 2 ** 20;
    const rootfsNote = m.rootfs ? `, rootfs with QEMU ${m.rootfs.qemuVersion}` : '';
    process.stdout.write(`prepared ${values.out}: ${m.kernel.release} (${m.arch}), image ${m.image.hash.slice(0, 12)}${rootfsNote}, ${mib.toFixed(0)} MiB\n`);
    return 0;
  }
  if (values.rootfs) {
    const r = await rootfsMachine();
    process.stderr.write(`prepare: rootfs ${r.rootfs.key} (QEMU ${r.rootfs.qemuVersion})\n`);
  }
  return 0;
}
