/**
 * QEMU's edu device (hw/misc/edu.c) as a DMA engine: found on the target, bound to vfio-pci with
 * the device manager (which restores the original binding), and programmed through BAR0 with the
 * agent's region ops. Register layout from QEMU's docs/specs/edu.rst.
 */
import type { AgentClient } from '../../harness/agent/client.js';
import { DeviceManager, type BoundDevice } from '../../harness/devices/manager.js';
import type { Target } from '../../harness/target/target.js';
import { HarnessError } from '../../base/errors.js';
import { DeviceRegions } from './regions.js';

export const EDU = {
  VENDOR: '0x1234',
  DEVICE: '0x11e8',
  BAR0: 0,
  /** VFIO_PCI_CONFIG_REGION_INDEX */
  CONFIG: 7,
  REG_ID: 0x00,
  REG_DMA_SRC: 0x80,
  REG_DMA_DST: 0x88,
  REG_DMA_COUNT: 0x90,
  REG_DMA_CMD: 0x98,
  CMD_RUN: 0x1,
  /** direction bit: set = EDU buffer to RAM, clear = RAM to EDU buffer */
  CMD_TO_RAM: 0x2,
  /** the device's internal DMA buffer, as the DMA engine addresses it */
  BUF: 0x40000,
  BUF_SIZE: 4096,
  /**
   * QEMU 7.2's edu aborts the whole QEMU on a 4096-byte transfer (an off-by-one in its range check),
   * so no transfer here is ever longer than this.
   */
  MAX_DMA: 2048,
  /** edu's default dma_mask is 28 bits: IOVAs above it are silently clamped, so stay below */
  IOVA_LIMIT: 1 << 28,
  /** PCI_COMMAND and its memory-space and bus-master bits */
  PCI_COMMAND: 0x04,
  CMD_MEMORY: 0x2,
  CMD_MASTER: 0x4,
} as const;

/** The first edu device on the target, or why there is none. */
export async function findEdu(target: Target): Promise<{ bdf: string } | { why: string }> {
  const r = await target.exec(
    `for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = ${EDU.VENDOR} ] && [ "$(cat $d/device)" = ${EDU.DEVICE} ] && basename $d; done; true`,
    { timeoutMs: 15_000 },
  );
  const bdf = r.stdout.trim().split('\n').filter(Boolean)[0];
  if (!bdf) return { why: `no edu device (${EDU.VENDOR.slice(2)}:${EDU.DEVICE.slice(2)}) on this target: the emulated DMA class needs a QEMU guest of a profile that adds '-device edu'` };
  return { bdf };
}

export interface BoundEdu {
  bdf: string;
  device: BoundDevice;
  manager: DeviceManager;
}

/**
 * Bind edu to vfio-pci. Without an IOMMU vfio-pci refuses the device (no VFIO_NOIOMMU in the guest
 * kernel): that is returned as a reason, with the kernel's words, not thrown.
 */
export async function bindEdu(target: Target, bdf: string): Promise<BoundEdu | { why: string }> {
  const manager = new DeviceManager(target, [{ bdf, driver: 'vfio-pci' }], { throwaway: target.kind === 'qemu' });
  try {
    const [device] = await manager.apply();
    if (!device?.cdev) {
      await manager.restore();
      return { why: `${bdf} is bound to vfio-pci but has no /dev/vfio/devices node (no VFIO_DEVICE_CDEV?)` };
    }
    return { bdf, device, manager };
  } catch (e) {
    return { why: `binding edu ${bdf} to vfio-pci failed: ${(e as Error).message}` };
  }
}

/** One programmed transfer. */
export interface Transfer {
  /** true: EDU buffer -> RAM (a DMA write to `iova`); false: RAM -> EDU buffer (a DMA read from `iova`) */
  toRam: boolean;
  iova: number;
  /** offset inside the EDU buffer */
  bufOffset: number;
  count: number;
}

/** Drives one opened edu (a vfio device fd) through BAR0. */
export class EduEngine {
  private readonly regs: DeviceRegions;

  constructor(agent: AgentClient, readonly dev: number) {
    this.regs = new DeviceRegions(agent, dev, 'edu');
  }

  /** The identification register: 0xRRrr00ed (major, minor version). Proves BAR0 is reachable. */
  id(): Promise<number> {
    return this.regs.read(EDU.BAR0, EDU.REG_ID, 4);
  }

  /** Memory decoding and bus mastering on: without bus mastering QEMU drops the device's DMA silently. */
  async enableBusMaster(): Promise<void> {
    const cmd = await this.regs.read(EDU.CONFIG, EDU.PCI_COMMAND, 2);
    await this.regs.write(EDU.CONFIG, EDU.PCI_COMMAND, 2, cmd | EDU.CMD_MEMORY | EDU.CMD_MASTER);
  }

  /**
   * Program one transfer and wait for the engine to finish (edu runs it from a 100 ms timer). A
   * transfer that faults in the IOMMU still "finishes": edu ignores the error, so success is judged
   * by the memory, and faults by the console.
   */
  async dma(t: Transfer, timeoutMs = 10_000): Promise<{ ms: number }> {
    if (t.count <= 0 || t.count > EDU.MAX_DMA) throw new HarnessError(`edu: transfer of ${t.count} bytes (1..${EDU.MAX_DMA} allowed: QEMU 7.2's edu aborts QEMU at 4096)`);
    if (t.bufOffset < 0 || t.bufOffset + t.count > EDU.BUF_SIZE - 1) throw new HarnessError(`edu: buffer range ${t.bufOffset}+${t.count} outside the device buffer (an out-of-range edu DMA aborts QEMU)`);
    if (t.iova + t.count > EDU.IOVA_LIMIT) throw new HarnessError(`edu: IOVA 0x${t.iova.toString(16)} beyond edu's 28-bit DMA mask`);
    const start = Date.now();
    await this.wait(timeoutMs, 'before programming');
    const buf = EDU.BUF + t.bufOffset;
    await this.regs.write(EDU.BAR0, EDU.REG_DMA_SRC, 8, t.toRam ? buf : t.iova);
    await this.regs.write(EDU.BAR0, EDU.REG_DMA_DST, 8, t.toRam ? t.iova : buf);
    await this.regs.write(EDU.BAR0, EDU.REG_DMA_COUNT, 8, t.count);
    await this.regs.write(EDU.BAR0, EDU.REG_DMA_CMD, 8, EDU.CMD_RUN | (t.toRam ? EDU.CMD_TO_RAM : 0));
    await this.wait(timeoutMs, 'after starting');
    return { ms: Date.now() - start };
  }

  private async wait(timeoutMs: number, when: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const cmd = await this.regs.read(EDU.BAR0, EDU.REG_DMA_CMD, 8);
      if (!(cmd & EDU.CMD_RUN)) return;
      if (Date.now() > deadline) throw new HarnessError(`edu: DMA engine still busy ${timeoutMs} ms ${when} a transfer (command register 0x${cmd.toString(16)})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
