/**
 * Our QEMU's PASID DMA test device (1b36:0015, `-device pasid-dma`,
 * images/qemu/patches/0006-hw-misc-pasid-dma-test-device.patch): a copy engine whose transfers carry a
 * PASID the driver programs, translated by the vIOMMU in that PASID's address space. Found on the
 * target, bound to vfio-pci, and driven through BAR0 with the agent's region ops. Register layout
 * from the patch's docs/specs/pasid-dma.rst.
 */
import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import { HarnessError } from '../../base/errors.js';
import { DeviceRegions } from '../dma/regions.js';

export const PDMA = {
  VENDOR: '0x1b36',
  DEVICE: '0x0015',
  /** the QEMU patch that emulates it: results name it, so it is never taken for hardware */
  PATCH: '0006-hw-misc-pasid-dma-test-device.patch',
  BAR0: 0,
  /** VFIO_PCI_CONFIG_REGION_INDEX */
  CONFIG: 7,
  REG_ID: 0x00,
  REG_SRC: 0x08,
  REG_DST: 0x10,
  REG_LEN: 0x18,
  REG_PASID: 0x1c,
  REG_CMD: 0x20,
  REG_STATUS: 0x24,
  REG_ERR_ADDR: 0x28,
  REG_DONE_LEN: 0x30,
  ID: 0x414d4450,
  PASID_EN: 0x8000_0000,
  MAX_LEN: 64 * 1024,
  ST_BUSY: 1 << 0,
  ST_DONE: 1 << 1,
  PCI_COMMAND: 0x04,
  CMD_MEMORY: 0x2,
  CMD_MASTER: 0x4,
} as const;

/** STATUS bits 8-12, in the words of docs/specs/pasid-dma.rst */
const STATUS_ERRORS: [number, string][] = [
  [1 << 8, 'ERR_READ'],
  [1 << 9, 'ERR_WRITE'],
  [1 << 10, 'ERR_NO_AS'],
  [1 << 11, 'ERR_INVAL'],
  [1 << 12, 'ERR_MASTER'],
];

/** The error bits of a STATUS value by name ('OK' when none), e.g. 'ERR_READ'. */
export function statusName(status: number): string {
  const names = STATUS_ERRORS.filter(([bit]) => (status & bit) !== 0).map(([, n]) => n);
  return names.length ? names.join('|') : 'OK';
}

const PCI_EXT_CAP_ID_PASID = 0x1b;

export interface ExtCap {
  id: number;
  version: number;
  offset: number;
}

/**
 * The PCIe extended capabilities of a config space image (4096 bytes, or fewer: the list ends where
 * the image does), following the Next Capability Offset of each header from 0x100. A header with
 * id 0 and a next pointer is a placeholder (what vfio-pci leaves at 0x100 when it hides the first
 * capability) and is skipped. A loop or an offset into the first 256 bytes ends the walk.
 */
export function extCaps(config: Buffer): ExtCap[] {
  const out: ExtCap[] = [];
  const seen = new Set<number>();
  let off = 0x100;
  while (off >= 0x100 && off + 4 <= config.length && !seen.has(off)) {
    seen.add(off);
    const hdr = config.readUInt32LE(off);
    if (hdr === 0 || hdr === 0xffffffff) break;
    const id = hdr & 0xffff;
    if (id !== 0) out.push({ id, version: (hdr >>> 16) & 0xf, offset: off });
    off = (hdr >>> 20) & 0xffc;
  }
  return out;
}

/** The PASID capability's Max PASID Width and Control register, or undefined when there is none. */
export function pasidCap(config: Buffer): { offset: number; width: number; control: number } | undefined {
  const cap = extCaps(config).find((c) => c.id === PCI_EXT_CAP_ID_PASID);
  if (!cap || cap.offset + 8 > config.length) return undefined;
  return { offset: cap.offset, width: (config.readUInt16LE(cap.offset + 4) >> 8) & 0x1f, control: config.readUInt16LE(cap.offset + 6) };
}

/**
 * The PASID width an Intel VT-d unit supports: ECAP.PSS (bits 39:35) + 1, when ECAP.PASID (bit 40)
 * is set; 0 without PASID. `ecap` is /sys/class/iommu/dmarN/intel-iommu/ecap (hex, no 0x).
 */
export function vtdPasidBits(ecapHex: string): number {
  const ecap = BigInt(`0x${ecapHex.trim()}`);
  if (((ecap >> 40n) & 1n) === 0n) return 0;
  return Number((ecap >> 35n) & 0x1fn) + 1;
}

/** The first pasid-dma device on the target, or why there is none. */
export async function findPasidDma(target: Target): Promise<{ bdf: string } | { why: string }> {
  const r = await target.exec(
    `for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = ${PDMA.VENDOR} ] && [ "$(cat $d/device)" = ${PDMA.DEVICE} ] && basename $d; done; true`,
    { timeoutMs: 15_000 },
  );
  const bdf = r.stdout.trim().split('\n').filter(Boolean)[0];
  const id = `${PDMA.VENDOR.slice(2)}:${PDMA.DEVICE.slice(2)}`;
  if (!bdf) return { why: `no PASID DMA device (${id}, '-device pasid-dma' of our QEMU's ${PDMA.PATCH}) on this target: the device cases need profile intel-iommu-pasid` };
  return { bdf };
}

/** The device's config space as the host kernel sees it (root reads all 4096 bytes from sysfs). */
export async function hostConfig(target: Target, bdf: string): Promise<Buffer> {
  const r = await target.exec(`od -An -v -tx1 /sys/bus/pci/devices/${bdf}/config`, { timeoutMs: 10_000 });
  return Buffer.from(r.stdout.replace(/\s+/g, ''), 'hex');
}

export interface CopyResult {
  status: number;
  /** statusName(status) */
  error: string;
  doneLen: number;
  errAddr: number;
  ms: number;
}

/** Drives one opened pasid-dma (a vfio device fd) through BAR0. */
export class PasidDmaEngine {
  private readonly regs: DeviceRegions;

  constructor(agent: AgentClient, readonly dev: number) {
    this.regs = new DeviceRegions(agent, dev, 'pasid-dma');
  }

  id(): Promise<number> {
    return this.regs.read(PDMA.BAR0, PDMA.REG_ID, 4);
  }

  async enableBusMaster(): Promise<void> {
    const cmd = await this.regs.read(PDMA.CONFIG, PDMA.PCI_COMMAND, 2);
    await this.regs.write(PDMA.CONFIG, PDMA.PCI_COMMAND, 2, cmd | PDMA.CMD_MEMORY | PDMA.CMD_MASTER);
  }

  /**
   * Copy `len` bytes from IOVA `src` to IOVA `dst`, tagged with `pasid` (undefined: a request
   * without PASID, through the RID's domain), and wait until the engine is idle.
   */
  async copy(src: number, dst: number, len: number, pasid?: number, timeoutMs = 10_000): Promise<CopyResult> {
    if (len <= 0 || len > PDMA.MAX_LEN) throw new HarnessError(`pasid-dma: transfer of ${len} bytes (1..${PDMA.MAX_LEN} allowed)`);
    const start = Date.now();
    await this.regs.write(PDMA.BAR0, PDMA.REG_STATUS, 4, 0xffff_ffff);
    await this.regs.write(PDMA.BAR0, PDMA.REG_SRC, 8, src);
    await this.regs.write(PDMA.BAR0, PDMA.REG_DST, 8, dst);
    await this.regs.write(PDMA.BAR0, PDMA.REG_LEN, 4, len);
    await this.regs.write(PDMA.BAR0, PDMA.REG_PASID, 4, pasid === undefined ? 0 : (PDMA.PASID_EN | pasid) >>> 0);
    await this.regs.write(PDMA.BAR0, PDMA.REG_CMD, 4, 1);
    for (;;) {
      const status = await this.regs.read(PDMA.BAR0, PDMA.REG_STATUS, 4);
      if (!(status & PDMA.ST_BUSY) && status & PDMA.ST_DONE) {
        const doneLen = await this.regs.read(PDMA.BAR0, PDMA.REG_DONE_LEN, 4);
        const errAddr = await this.regs.read(PDMA.BAR0, PDMA.REG_ERR_ADDR, 8);
        return { status, error: statusName(status), doneLen, errAddr, ms: Date.now() - start };
      }
      if (Date.now() - start > timeoutMs) throw new HarnessError(`pasid-dma: transfer not done after ${timeoutMs} ms (STATUS 0x${status.toString(16)})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
