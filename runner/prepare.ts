import { ARCHES, type Arch } from '../harness/arch.js';
import { buildKernel, type KernelBuild } from '../harness/kernel/build.js';
import { buildInitramfs, type Image } from '../images/initramfs/build.js';
import { buildAgent } from '../images/agent/build.js';
import { buildSelftests, GUEST_DIR, type SelftestBuild } from '../images/kselftest/build.js';
import { cachePath } from '../base/paths.js';
import { Progress } from '../base/progress.js';
import { chooseAccel, type AccelMode } from '../harness/qemu/accel.js';
import { openQemu, type QemuBinary } from '../harness/qemu/binary.js';
import type { Accel } from '../harness/qemu/cmdline.js';
import type { Profile } from '../harness/qemu/profiles.js';

export interface PrepareOptions {
  kernel?: string;
  arch?: Arch;
  modules?: string[];
  extraFragments?: string[];
  jobs?: number;
}

export interface Prepared {
  arch: Arch;
  kernel: KernelBuild;
  agent: { path: string; sha256: string };
  image: Image;
  /**
   * The kernel's own selftests (tools/testing/selftests/iommu, .../vfio), built statically from the
   * same tree and installed in the image under /opt/kselftest/<dir>/<program>, with
   * /opt/kselftest/manifest.json saying what is there and what did not build (the kselftest suite
   * reads it, so a tree whose selftests do not compile gives a failed result, not a missing suite).
   */
  selftests: SelftestBuild;
}

/** Everything a guest boot needs, built or taken from the cache: kernel, agent, initramfs. */
export async function prepare(o: PrepareOptions): Promise<Prepared> {
  const arch = o.arch ?? ARCHES.x86_64;
  const kernel = await buildKernel({ kernel: o.kernel, arch, extraFragments: o.extraFragments, jobs: o.jobs });
  if (kernel.cached) process.stderr.write(`kernel: ${kernel.release} (${kernel.sourceId}, cached)\n`);
  const agent = await buildAgent({ headersDir: kernel.headersDir, outDir: cachePath('agents'), cc: arch.cc });
  const st = new Progress('kselftest');
  const selftests = await buildSelftests(kernel, cachePath('kselftest'));
  if (!selftests.cached) {
    st.done(`${selftests.binaries.length} programs${selftests.errors.map((e) => `; ${e.message} (see ${e.log})`).join('')}`);
  }
  const files = [
    { guestPath: `${GUEST_DIR.slice(1)}/manifest.json`, hostPath: selftests.manifest, mode: 0o644 },
    ...selftests.binaries.map((b) => ({ guestPath: `${GUEST_DIR.slice(1)}/${b.name}`, hostPath: b.path, mode: 0o755 })),
  ];
  const p = new Progress('image');
  const image = await buildInitramfs({ kernel, agent: agent.path, modules: o.modules, files });
  p.done(`${image.cached ? 'cached' : 'built'} ${image.hash.slice(0, 12)}`);
  return { arch, kernel, agent, image, selftests };
}

/** The accelerator for this host, decided by a probe boot of the prepared kernel on the run's QEMU (cached). */
export async function decideAccel(mode: AccelMode, p: Prepared, profile: Profile, qemu?: QemuBinary): Promise<{ accel: Accel; reason: string; qemu: QemuBinary }> {
  const q = qemu ?? await openQemu({ origin: 'system', binary: p.arch.qemuBinary, arch: p.arch, profiles: [profile] });
  const a = await chooseAccel(mode, p.arch, { kernel: p.kernel.image, initrd: p.image.path, profile, qemu: q });
  return { ...a, qemu: q };
}
