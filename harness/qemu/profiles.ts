import type { Arch } from '../arch.js';
import { HarnessError } from '../../base/errors.js';
import { renderOption, typesOf, type QemuOption } from './options.js';
import type { QemuCaps } from './probe.js';

/**
 * A machine profile: one emulated IOMMU (or none) and what the guest must be told about it.
 * Profiles are data so `profiles` can list them, tests can check every command line, and a new
 * IOMMU model is one entry here.
 */
export interface Profile {
  name: string;
  arch: Arch['name'];
  description: string;
  /** -machine value, property names as the binary spells them (harness/qemu/options.ts) */
  machine: QemuOption;
  /** -device lines for the IOMMU, placed before any other PCI device (QEMU requires that for intel-iommu) */
  iommuDevices: QemuOption[];
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
  devices: QemuOption[];
  /**
   * Which QEMU the profile runs on unless the run names one: 'built' for hardware only our patched
   * QEMU emulates (images/qemu/patches); the host's QEMU otherwise.
   */
  qemu?: 'built';
  /**
   * The patches of our series (images/qemu/patches/NAME) whose emulated hardware this profile uses:
   * recorded with its results, so an emulated capability is never taken for hardware or for stock QEMU.
   */
  emulatedBy?: string[];
  /**
   * Devices to bind inside the guest once it is up, as `--device` spells them for a lab host
   * (harness/devices): the suites then drive them as a lab host's devices, and the bindings are
   * put back before the guest goes down.
   */
  guestDevices?: string[];
  /**
   * The suites this profile exists for, when it adds one piece of emulated hardware to a profile
   * the matrix already has: unless a run names its suites, it runs only these, since every other
   * suite would repeat the base profile's results case for case (measured on 7.2.13: 631 to 639 of
   * the 652 results each of intel-iommu-dirty, intel-iommu-pasid and amd-iommu-dirty equalled
   * intel-iommu-sm's or amd-iommu's, status and observed values). Absent: every suite.
   */
  suites?: string[];
  /**
   * vCPUs under TCG when fewer than the suites ask for: for hardware whose emulation meets a TCG
   * race with more than one vCPU (see the profile's comment). KVM guests get what the suites ask.
   */
  tcgVcpus?: number;
}

/** QEMU's educational PCI device (1234:11e8): a DMA engine the suites drive through vfio-pci. */
const EDU: QemuOption = { type: 'edu' };
/** q35 with the IOAPIC in QEMU: VT-d and AMD-Vi interrupt remapping need the split irqchip. */
const Q35_SPLIT: QemuOption = { type: 'q35', props: ['kernel-irqchip=split'] };
/**
 * A virtio-net SR-IOV PF with the virtio administration virtqueue and two VFs behind one root port
 * (images/qemu/patches/0007-0009): the guest's virtio_vfio_pci migrates the VFs through the PF.
 * QEMU wants the VFs first and the PF after them; the VFs' function numbers follow the PF's.
 */
const VIRTIO_VF_DEVICES: QemuOption[] = [
  // SeaBIOS sizes the port's window for the PF's BARs only; the VFs' BARs need room of their own.
  { type: 'pcie-root-port', props: ['id=vfrp', 'chassis=8', 'pref64-reserve=64M'] },
  { type: 'virtio-net-pci', props: ['bus=vfrp', 'addr=0.1', 'sriov-pf=vfpf', 'romfile='] },
  { type: 'virtio-net-pci', props: ['bus=vfrp', 'addr=0.2', 'sriov-pf=vfpf', 'romfile='] },
  { type: 'virtio-net-pci', props: ['id=vfpf', 'bus=vfrp', 'addr=0.0', 'x-admin-vq=on', 'romfile='] },
  // A second PF without the admin virtqueue, on a port of its own: its VF binds to virtio_vfio_pci,
  // which then offers no migration (the expected-unsupported device of both migration suites).
  { type: 'pcie-root-port', props: ['id=vfrp2', 'chassis=9', 'pref64-reserve=64M'] },
  { type: 'virtio-net-pci', props: ['bus=vfrp2', 'addr=0.1', 'sriov-pf=vfpf2', 'romfile='] },
  { type: 'virtio-net-pci', props: ['id=vfpf2', 'bus=vfrp2', 'addr=0.0', 'romfile='] },
];

export const PROFILES: Profile[] = [
  {
    name: 'none',
    arch: 'x86_64',
    description: 'q35, no IOMMU: only the iommufd selftest mock and mdev devices',
    machine: { type: 'q35' },
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
    machine: Q35_SPLIT,
    iommuDevices: [{ type: 'intel-iommu', props: ['intremap=on', 'caching-mode=on'] }],
    cmdline: ['intel_iommu=on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'intel-iommu-sm',
    arch: 'x86_64',
    description: 'Intel VT-d in scalable mode with PASID',
    machine: Q35_SPLIT,
    // QEMU 11.1 renamed x-scalable-mode and x-pasid-mode (a bool) to scalable-mode and pasid-bits (a
    // width); 8 bits is what x-pasid-mode=on advertised (ECAP.PSS = 7).
    iommuDevices: [{ type: 'intel-iommu', props: ['intremap=on', 'caching-mode=on', ['scalable-mode=on', 'x-scalable-mode=on'], ['pasid-bits=8', 'x-pasid-mode=on']] }],
    cmdline: ['intel_iommu=on,sm_on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'intel-iommu-dirty',
    arch: 'x86_64',
    description: 'Intel VT-d in scalable mode with second-stage A/D (ECAP SSADS, PASID-entry SSADE): dirty tracking, emulated by our QEMU',
    machine: Q35_SPLIT,
    // x-ssads: images/qemu/patches/0001-intel_iommu-second-stage-accessed-dirty.patch. No caching-mode:
    // QEMU refuses it beside x-ssads (an assigned device's DMA would bypass the A/D updates of the walk).
    iommuDevices: [{ type: 'intel-iommu', props: ['intremap=on', ['scalable-mode=on', 'x-scalable-mode=on'], 'x-ssads=on'] }],
    cmdline: ['intel_iommu=on,sm_on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
    qemu: 'built',
    emulatedBy: ['0001-intel_iommu-second-stage-accessed-dirty.patch'],
    suites: ['iommu-dirty', 'dma'],
  },
  {
    name: 'intel-iommu-pasid',
    arch: 'x86_64',
    description: 'Intel VT-d in scalable mode with PASID, and pasid-dma: a PCIe DMA engine whose transfers carry a PASID, emulated by our QEMU',
    machine: Q35_SPLIT,
    // pasid-dma: images/qemu/patches/0004 (a PASID's IOMMU address space for a PCI device) and 0005 (the
    // device, an RCiEP on pcie.0 with the PASID capability). x-pasid-mode gives ECAP.PSS = 7 (8 bits).
    // No arm64 twin: QEMU 10.2's SMMUv3 has no substream IDs (IDR1.SSIDSIZE 0, an STE with S1CDMAX != 0 is
    // refused as a bad STE in hw/arm/smmuv3.c), so the kernel sees max_pasids 0 behind it.
    iommuDevices: [{ type: 'intel-iommu', props: ['intremap=on', 'caching-mode=on', ['scalable-mode=on', 'x-scalable-mode=on'], ['pasid-bits=8', 'x-pasid-mode=on']] }],
    cmdline: ['intel_iommu=on,sm_on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU, { type: 'pasid-dma' }],
    qemu: 'built',
    emulatedBy: ['0005-pci-intel_iommu-address-space-per-PASID.patch', '0006-hw-misc-pasid-dma-test-device.patch'],
    suites: ['pasid', 'dma'],
  },
  {
    name: 'virtio-vf',
    arch: 'x86_64',
    description: 'Intel VT-d and a virtio-net SR-IOV PF with the virtio admin virtqueue (our QEMU): two VFs bound to '
      + 'virtio_vfio_pci, a vfio-pci variant driver migrating; a third VF behind a PF without the queue, which does not',
    machine: Q35_SPLIT,
    iommuDevices: [{ type: 'intel-iommu', props: ['intremap=on', 'caching-mode=on'] }],
    cmdline: ['intel_iommu=on'],
    expect: { sysClassIommu: /^dmar\d+$/, dmesg: /DMAR-IR: Enabled IRQ remapping/, irqRemap: true },
    vfioPci: true,
    devices: [EDU, ...VIRTIO_VF_DEVICES],
    // The machine's only bridges, in slot order: the guest numbers the admin PF's port bus 1 and the
    // other bus 2. The migrating pair comes first (the suites pair the first two that migrate).
    guestDevices: ['0000:01:00.0,driver=virtio_vfio_pci,vfs=2', '0000:02:00.0,driver=virtio_vfio_pci,vfs=1'],
    qemu: 'built',
    emulatedBy: ['0007-virtio-pci-admin-virtqueue.patch', '0008-virtio-pci-device-parts.patch', '0009-virtio-net-device-parts.patch'],
    suites: ['migration', 'qemu-migration'],
    // One vCPU under TCG. With two, in 4 whole runs QEMU 10.2.2 aborted in iotlb_to_section (a vCPU
    // applying a TLB entry from before a memory-map change, the VF resets changing the map) in 2,
    // and in 2 an agent request never completed (seen traced once: a vCPU's local APIC kept a timer
    // vector in service, so an admin command's completion interrupt was never taken). Both need a
    // second vCPU; with one, 3 of 3 whole runs were clean, in the same time (172-178 s).
    tcgVcpus: 1,
  },
  {
    name: 'amd-iommu',
    arch: 'x86_64',
    description: 'AMD-Vi with interrupt remapping',
    machine: Q35_SPLIT,
    // QEMU 10.1 added dma-remap (default off): without it AMD-Vi leaves every device in passthrough
    // and the kernel's DMA mappings are never applied. Older QEMUs always translated.
    iommuDevices: [{ type: 'amd-iommu', props: ['intremap=on', { ifKnown: 'dma-remap=on' }] }],
    cmdline: [],
    expect: { sysClassIommu: /^ivhd\d+$/, dmesg: /AMD-Vi: Interrupt remapping enabled/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'amd-iommu-dirty',
    arch: 'x86_64',
    description: 'AMD-Vi with host Access/Dirty updates (EFR HASup/HDSup, DTE HAD): dirty tracking, emulated by our QEMU',
    machine: Q35_SPLIT,
    // x-hd: images/qemu/patches/0003-amd_iommu-host-access-dirty.patch. QEMU refuses it without
    // dma-remap=on (no translation, so no walk to set Accessed and Dirty).
    iommuDevices: [{ type: 'amd-iommu', props: ['intremap=on', 'dma-remap=on', 'x-hd=on'] }],
    cmdline: [],
    expect: { sysClassIommu: /^ivhd\d+$/, dmesg: /AMD-Vi: Interrupt remapping enabled/, irqRemap: true },
    vfioPci: true,
    devices: [EDU],
    qemu: 'built',
    // the fix: Linux's v1 table maps every aligned 2 MiB as one Next Level 0 entry, which QEMU mis-sized
    emulatedBy: ['0002-amd_iommu-fix-the-page-size-of-default-size-large-pages.patch', '0003-amd_iommu-host-access-dirty.patch'],
    suites: ['iommu-dirty', 'dma'],
  },
  {
    name: 'virtio-iommu',
    arch: 'x86_64',
    description: 'virtio-iommu (no interrupt remapping: VFIO needs allow_unsafe_interrupts)',
    machine: { type: 'q35' },
    iommuDevices: [{ type: 'virtio-iommu-pci' }],
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
    machine: { type: 'virt', props: ['iommu=smmuv3', 'gic-version=3'] },
    iommuDevices: [],
    cmdline: [],
    expect: { sysClassIommu: /^smmu3\./, dmesg: /arm-smmu-v3/ },
    vfioPci: true,
    devices: [EDU],
  },
  {
    name: 'smmuv3-dirty',
    arch: 'arm64',
    description: 'arm64 virt with an SMMUv3 that updates the stage 1 Access flag and dirty state (IDR0.HTTU, CD.HA/HD, DBM): dirty tracking, emulated by our QEMU',
    // x-httu: images/qemu/patches/0004-hw-arm-smmuv3-httu.patch. It refuses stage=nested, which QEMU 10.2
    // gives the board's iommu=smmuv3: so a user-created SMMUv3 (stage 1 by default, what Linux's dirty
    // tracking uses).
    machine: { type: 'virt', props: ['gic-version=3'] },
    iommuDevices: [{ type: 'arm-smmuv3', props: ['primary-bus=pcie.0', 'x-httu=on'] }],
    cmdline: [],
    expect: { sysClassIommu: /^smmu3\./, dmesg: /arm-smmu-v3/ },
    vfioPci: true,
    devices: [EDU],
    qemu: 'built',
    emulatedBy: ['0004-hw-arm-smmuv3-httu.patch'],
    suites: ['iommu-dirty', 'dma'],
  },
  {
    name: 'arm64-none',
    arch: 'arm64',
    description: 'arm64 virt with GICv3, no IOMMU: only the iommufd selftest mock and mdev devices',
    machine: { type: 'virt', props: ['gic-version=3'] },
    iommuDevices: [],
    cmdline: [],
    expect: { sysClassIommu: /^iommufd_selftest/ },
    vfioPci: false,
    devices: [EDU],
  },
];

/** A profile that binds devices in its guest (a variant driver's own profile) runs when named. */
export const DEFAULT_PROFILES = PROFILES.filter((p) => p.arch === 'x86_64' && !p.guestDevices).map((p) => p.name);

export function getProfile(name: string): Profile {
  const p = PROFILES.find((x) => x.name === name);
  if (!p) throw new HarnessError(`unknown profile '${name}' (known: ${PROFILES.map((x) => x.name).join(', ')})`);
  return p;
}

/** What a profile looks like on one QEMU binary: its option values as that binary spells them. */
export type ResolvedProfile =
  | { ok: true; machine: string; iommuDevices: string[]; devices: string[] }
  | { ok: false; why: string };

/** Render a profile for a binary's capabilities; a profile it cannot express says why (the run skips it). */
export function resolveProfile(p: Profile, caps: QemuCaps): ResolvedProfile {
  const machine = renderOption('machine', p.machine, caps);
  if (!machine.ok) return machine;
  const iommuDevices: string[] = [];
  const devices: string[] = [];
  for (const [list, into] of [[p.iommuDevices, iommuDevices], [p.devices, devices]] as const) {
    for (const d of list) {
      const r = renderOption('device', d, caps);
      if (!r.ok) return r;
      into.push(r.value);
    }
  }
  return { ok: true, machine: machine.value, iommuDevices, devices };
}

/** The machine and device types a set of profiles names: what to probe a binary for. */
export function profileTypes(profiles: Profile[]): { machines: string[]; devices: string[] } {
  return typesOf(profiles.map((p) => p.machine), profiles.flatMap((p) => [...p.iommuDevices, ...p.devices]));
}
