import type { Arch } from '../harness/arch.js';
import type { ClientQemu } from '../harness/target/target.js';
import { rootfsMachine, type RootfsMachine } from '../images/rootfs/build.js';
import type { Suite } from '../suites/types.js';

/** The guest a run boots for its suites: what each profile's guest gets beyond the standard one. */
export interface MachineProvision {
  qemuArgs?: string[];
  memMiB?: number;
  smp?: number;
  /** told to every suite through Target.clientQemu */
  clientQemu?: ClientQemu;
}

/**
 * A suite that needs more than the standard guest (the real-client suite: a Debian rootfs with a
 * QEMU >= 8.0 over virtio-9p, and memory for nested QEMUs) gets it for the whole run: the share and
 * the memory are harmless to the other suites. The nested client (x86 QEMU, HLT firmware, port I/O)
 * exists for x86_64 guests only; on other architectures the suites are told why there is none.
 */
export async function provideMachine(
  suites: Suite<unknown>[], arch: Arch, buildRootfs: () => Promise<RootfsMachine> = rootfsMachine,
): Promise<MachineProvision> {
  const wants = suites.map((s) => s.machine).filter((m) => m !== undefined);
  const memMiB = Math.max(0, ...wants.map((m) => m.memMiB ?? 0)) || undefined;
  const smp = Math.max(0, ...wants.map((m) => m.smp ?? 0)) || undefined;
  if (!wants.some((m) => m.rootfs === 'debian-qemu')) return { memMiB, smp };
  if (!arch.nestedClient) {
    const reason = `the real-client suite's nested QEMU (the Debian rootfs image) is built for x86_64 guests only; `
      + `on ${arch.name} it runs on a lab host with --target and --qemu`;
    return { memMiB, smp, clientQemu: { kind: 'none', reason } };
  }
  const r = await buildRootfs();
  return { memMiB, smp, qemuArgs: r.qemuArgs, clientQemu: { kind: 'rootfs', key: r.rootfs.key, qemuVersion: r.rootfs.qemuVersion } };
}
