import type { Arch } from '../arch.js';
import { HarnessError } from '../../base/errors.js';

/**
 * A machine profile: one emulated IOMMU (or none) and what the guest must be told about it.
 * Profiles are data so `profiles` can list them, tests can check every command line, and a new
 * IOMMU model is one entry here.
 */
export interface Profile {
  name: string;
  arch: Arch['name'];
  description: string;
  /** -machine value */
  machine: string;
  /** -device lines for the IOMMU, placed before any other PCI device (QEMU requires that for intel-iommu) */
  iommuDevices: string[];
  /** kernel command line additions */
  cmdline: string[];
  /** what the guest should show: a /sys/class/iommu entry (regex) and a dmesg line (regex) */
  expect: { sysClassIommu?: RegExp; dmesg?: RegExp; irqRemap?: boolean };
  /** whether vfio-pci devices can be bound behind this profile (needs an IOMMU with interrupt isolation) */
  vfioPci: boolean;
  /**
   * Emulated PCI devices every guest of this profile gets, after the network card. QEMU's edu
   * device does real DMA through the vIOMMU: the 'emulated' device class beside mtty.
   */
  devices: string[];
}

/** QEMU's educational PCI device (1234:11e8): a DMA engine the suites drive through vfio-pci. */
const EDU = 'edu';

export const PROFILES: Profile[] = [
  {
    name: 'none',
    arch: 'x86_64',
    description: 'q35, no IOMMU: only the iommufd selftest mock and mdev devices',
    machine: 'q35',
    iommuDevices: [],
    cmdline: [],
    expect: { sysClassIommu: /^iommufd_selftest/ },
    vfioPci: false,
    devices: [EDU],
  },
  {
    name: 'intel-iommu',
    arch: 'x86_64',
    description: 'Intel VT-d with interrupt remapping',
    machine: 'q35,kernel-irqchip=split',
    iommuDevices: ['intel-iommu,intremap=on,caching-mode=on'],
    cmdline: ['intel_iommu=on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'intel-iommu-sm',
    arch: 'x86_64',
    description: 'Intel VT-d in scalable mode with PASID',
    machine: 'q35,kernel-irqchip=split',
    iommuDevices: ['intel-iommu,intremap=on,caching-mode=on,x-scalable-mode=on,x-pasid-mode=on'],
    cmdline: ['intel_iommu=on,sm_on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'amd-iommu',
    arch: 'x86_64',
    description: 'AMD-Vi with interrupt remapping',
    machine: 'q35,kernel-irqchip=split',
    iommuDevices: ['amd-iommu,intremap=on'],
    cmdline: [],
    expect: { sysClassIommu: /^ivhd\d+$/, dmesg: /AMD-Vi: Interrupt remapping enabled/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'virtio-iommu',
    arch: 'x86_64',
    description: 'virtio-iommu (no interrupt remapping: VFIO needs allow_unsafe_interrupts)',
    machine: 'q35',
    iommuDevices: ['virtio-iommu-pci'],
    // No IRQ remapping behind virtio-iommu: without these, binding a VFIO device fails with EPERM.
    cmdline: ['iommufd.allow_unsafe_interrupts=1', 'vfio_iommu_type1.allow_unsafe_interrupts=1'],
    expect: { sysClassIommu: /^virtio-iommu|^\d+:\d+:\d+\.\d+$|^virtio\d+$/, dmesg: /virtio_iommu/ },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'smmuv3',
    arch: 'arm64',
    description: 'arm64 virt with an emulated SMMUv3 (stage 1 only: no HTTU, no SSID) and GICv3 ITS',
    // gic-version=3: the TCG default (GICv2 + v2m) has no MSI isolation, and binding a VFIO device fails with EPERM.
    machine: 'virt,iommu=smmuv3,gic-version=3',
    iommuDevices: [],
    cmdline: [],
    expect: { sysClassIommu: /^smmu3\./, dmesg: /arm-smmu-v3/ },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'arm64-none',
    arch: 'arm64',
    description: 'arm64 virt with GICv3, no IOMMU: only the iommufd selftest mock and mdev devices',
    machine: 'virt,gic-version=3',
    iommuDevices: [],
    cmdline: [],
    expect: { sysClassIommu: /^iommufd_selftest/ },
    vfioPci: false,
    devices: [EDU],
  },
];

export const DEFAULT_PROFILES = PROFILES.filter((p) => p.arch === 'x86_64').map((p) => p.name);

export function getProfile(name: string): Profile {
  const p = PROFILES.find((x) => x.name === name);
  if (!p) throw new HarnessError(`unknown profile '${name}' (known: ${PROFILES.map((x) => x.name).join(', ')})`);
  return p;
}
