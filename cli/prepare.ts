import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { HarnessError } from '../base/errors.js';
import { getArch } from '../harness/arch.js';
import { DEFAULT_KERNEL } from '../harness/kernel/source.js';
import { prepare } from '../runner/prepare.js';
import { writeBundle } from '../runner/bundle.js';
import { rootfsMachine } from '../images/rootfs/build.js';

const HELP = `vfio-conformance prepare --out DIR [--kernel SPEC] [--arch A] [--module FILE.ko ...] [--rootfs]
  Build (or take from the cache) everything a guest needs and write it to DIR as one bundle: the
  kernel image, the initramfs (modules, agent, the kernel's selftests), the kernel config, the agent,
  and manifest.json with the kernel spec, the arch and every file's sha256. Ship DIR as a CI
  artifact; 'run --prepared DIR' on the test runners boots from it and builds nothing.

Options:
  --out DIR          the bundle directory (replaced if it holds a bundle)
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --arch A           x86_64 (default) or arm64
  --module FILE.ko   replace the in-tree module of the same name in the guest (repeatable)
  --rootfs           add the qemu-migration suite's Debian tree (about 480 MB; x86_64 only):
                     without it that suite's cases skip on a run from the bundle, saying why`;

export async function prepareCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' }, kernel: { type: 'string', default: DEFAULT_KERNEL }, arch: { type: 'string', default: 'x86_64' },
      module: { type: 'string', multiple: true }, rootfs: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (!values.out) throw new HarnessError('prepare needs --out DIR (where the bundle goes)');
  const arch = getArch(values.arch!);
  if (values.rootfs && !arch.nestedClient) throw new HarnessError(`--rootfs: the nested QEMU client is built for x86_64 guests only, not ${arch.name}`);
  const p = await prepare({ kernel: values.kernel, arch, modules: values.module });
  const rootfs = values.rootfs ? (await rootfsMachine()).rootfs : undefined;
  const kernelSpec = values.kernel!.startsWith('debian:') ? values.kernel! : resolve(values.kernel!);
  const m = await writeBundle(p, resolve(values.out), { kernelSpec, rootfs });
  const mib = (Object.values(m.files).reduce((a, f) => a + f.bytes, 0) + (m.rootfs?.bytes ?? 0)) / 2 ** 20;
  const rootfsNote = m.rootfs ? `, rootfs with QEMU ${m.rootfs.qemuVersion}` : '';
  process.stdout.write(`prepared ${values.out}: ${m.kernel.release} (${m.arch}), image ${m.image.hash.slice(0, 12)}${rootfsNote}, ${mib.toFixed(0)} MiB\n`);
  return 0;
}
