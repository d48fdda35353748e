import { HarnessError } from '../base/errors.js';

/**
 * Architectures as data: everything that differs between an x86_64 and an arm64 guest lives here,
 * so the kernel build, the image build, the agent build and the QEMU command line take it from one
 * place instead of branching on the architecture.
 */
export interface Arch {
  name: 'x86_64' | 'arm64';
  /** ARCH= for the kernel's make */
  kernelArch: string;
  /** CROSS_COMPILE= when the host is not this arch (empty when native) */
  crossCompile: string;
  /** the C compiler for the agent and selftests */
  cc: string;
  /** built image, relative to the build dir */
  kernelImage: string;
  qemuBinary: string;
  /** serial console device inside the guest */
  console: string;
  /** base config fragment in images/kconfig */
  baseFragment: string;
  /** Debian architecture, for guest userspace packages */
  debArch: string;
  /** kernel command line words for a TCG guest */
  tcgCmdline: string[];
  /** whether the real-client suite's nested QEMU (images/rootfs) exists for guests of this arch */
  nestedClient: boolean;
}

export const ARCHES: Record<Arch['name'], Arch> = {
  x86_64: {
    name: 'x86_64',
    kernelArch: 'x86_64',
    crossCompile: '',
    cc: 'gcc',
    kernelImage: 'arch/x86/boot/bzImage',
    qemuBinary: 'qemu-system-x86_64',
    console: 'ttyS0',
    baseFragment: 'base-x86_64.config',
    debArch: 'amd64',
    // Under TCG the TSC looks unstable to the clocksource watchdog; that costs seconds of boot for nothing.
    // no_timer_check: on a loaded host the IO-APIC timer check can miss its ticks and panic a TCG guest
    // behind an interrupt-remapping IOMMU ("timer doesn't work through Interrupt-remapped IO-APIC");
    // KVM guests skip that check for the same reason (kvmclock sets it).
    tcgCmdline: ['tsc=reliable', 'no_timer_check'],
    nestedClient: true,
  },
  arm64: {
    name: 'arm64',
    kernelArch: 'arm64',
    crossCompile: 'aarch64-linux-gnu-',
    cc: 'aarch64-linux-gnu-gcc',
    kernelImage: 'arch/arm64/boot/Image',
    qemuBinary: 'qemu-system-aarch64',
    console: 'ttyAMA0',
    baseFragment: 'base-arm64.config',
    debArch: 'arm64',
    // the architected timer has no such watchdog trouble
    tcgCmdline: [],
    nestedClient: false,
  },
};

export function getArch(name: string): Arch {
  const a = (ARCHES as Record<string, Arch>)[name];
  if (!a) throw new HarnessError(`unknown architecture '${name}' (known: ${Object.keys(ARCHES).join(', ')})`);
  return a;
}

/** Node names the host's CPU x64/arm64; ours are x86_64/arm64. */
export function hostArchName(): string {
  return process.arch === 'x64' ? 'x86_64' : process.arch;
}

/** A guest of the host's own architecture: the only kind KVM can run, and the host's binaries fit it. */
export function isNativeArch(arch: Arch): boolean {
  return hostArchName() === arch.name;
}
