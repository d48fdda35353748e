/**
 * Whether the device's state travelled with the VM. mtty gives a generic client something to
 * check: its UART scratch and line-control registers are in its migration stream and reachable
 * through the nested guest's I/O ports. A virtio-net VF (virtio_vfio_pci) is checked through its
 * own registers, as a driver would read them (VirtioNetState below). Other real devices have no
 * such probe that holds for every driver, so for them the cases check what QEMU reports
 * (completion, run state, the device states QEMU walked, device bytes) and say that the content
 * was not verified.
 */
import { HarnessError } from '../../base/errors.js';
import type { NestedQemu } from './nested.js';
import { UART } from './parse.js';

export interface StateCheck {
  /** On a VM about to be migrated: give its device content to carry (the seed varies it per hop). */
  load(q: NestedQemu, seed: number): Promise<void>;
  /**
   * Where the VM is now (its destination, or its source after a rollback): the content must be what
   * was loaded last. Records what it read into `into`; returns what differs, or undefined.
   */
  verify(q: NestedQemu, into: Record<string, unknown>): Promise<string | undefined>;
}

export const NOT_VERIFIED = 'not verified for real devices: the content check reads mtty registers; a real device is checked by the migration outcome, the device states QEMU walked and the device bytes';

export class Unverified implements StateCheck {
  async load(): Promise<void> { /* nothing generic to write */ }
  async verify(_q: NestedQemu, into: Record<string, unknown>): Promise<undefined> {
    into.deviceState = NOT_VERIFIED;
    return undefined;
  }
}

type Pattern = { port: number; reg: 'SCR' | 'LCR'; val: number }[];
type Regs = Record<string, number>;

/** A value pattern per seed: SCR and LCR of both ports (LCR without DLAB, so the registers stay plain). */
export function pattern(seed: number): Pattern {
  const s = (0x40 + seed * 7) & 0x7f;
  return [
    { port: 0, reg: 'SCR', val: s | 0x80 }, { port: 0, reg: 'LCR', val: 0x1b },
    { port: 1, reg: 'SCR', val: (~s) & 0x7f }, { port: 1, reg: 'LCR', val: 0x03 },
  ];
}

export function diffRegs(want: Regs, got: Regs): string[] {
  return Object.keys(want).filter((k) => want[k] !== got[k]).map((k) => `${k}: wrote 0x${want[k]!.toString(16)}, read 0x${(got[k] ?? -1).toString(16)}`);
}

async function writeRegs(q: NestedQemu, ports: number[], p: Pattern): Promise<Regs> {
  for (const x of p) await q.outb(ports[x.port]! + UART[x.reg], x.val);
  return Object.fromEntries(p.map((x) => [`port${x.port}.${x.reg}`, x.val]));
}

async function readRegs(q: NestedQemu, ports: number[], p: Pattern): Promise<Regs> {
  const out: Regs = {};
  for (const x of p) out[`port${x.port}.${x.reg}`] = await q.inb(ports[x.port]! + UART[x.reg]);
  return out;
}

/** mtty-2: two UART ports, one I/O BAR each. */
const PORTS = 2;

/** The UART registers of one VM's mtty-2, followed from QEMU to QEMU as the VM moves. */
export class UartState implements StateCheck {
  private readonly ports = new Map<NestedQemu, number[]>();
  private p: Pattern = [];
  private wrote: Regs = {};

  async load(q: NestedQemu, seed: number): Promise<void> {
    const fresh = !this.ports.has(q);
    const ports = this.ports.get(q) ?? (await this.attach(q));
    this.p = pattern(seed);
    this.wrote = await writeRegs(q, ports, this.p);
    // once per VM: a device that does not keep a write is no migration finding
    if (!fresh) return;
    const bad = diffRegs(this.wrote, await readRegs(q, ports, this.p));
    if (bad.length) throw new HarnessError(`the source device did not keep what was written before any migration: ${bad.join('; ')}`);
  }

  async verify(q: NestedQemu, into: Record<string, unknown>): Promise<string | undefined> {
    let ports = this.ports.get(q);
    if (!ports) {
      // a destination: the BARs arrive programmed with the config space
      ports = await q.ports();
      into.destinationPorts = ports.map((x) => `0x${x.toString(16)}`);
      if (ports.length !== PORTS) return `the device has ${ports.length} mapped I/O BARs, the source had ${PORTS}`;
      this.ports.set(q, ports);
    }
    const read = await readRegs(q, ports, this.p);
    into.state = { wrote: this.wrote, read };
    const bad = diffRegs(this.wrote, read);
    return bad.length ? bad.join('; ') : undefined;
  }

  /** A fresh VM's firmware programs nothing: give the device's I/O BARs their bases. */
  private async attach(q: NestedQemu): Promise<number[]> {
    const ports = await q.programBars(PORTS);
    if (ports.length !== PORTS) throw new HarnessError(`${q.name}: the device's I/O BARs did not map (info pci shows ${ports.length})`);
    this.ports.set(q, ports);
    return ports;
  }
}

// ---------------------------------------------------------------------------------------------
// virtio-net VF (virtio_vfio_pci)

/**
 * Register offsets of virtio 1.x: the vendor capability fields (struct virtio_pci_cap, and the
 * window of struct virtio_pci_cfg_cap), and the common configuration (include/uapi/linux/virtio_pci.h).
 */
const CAP = { ID: 0, NEXT: 1, CFG_TYPE: 3, BAR: 4, OFFSET: 8, LENGTH: 12, DATA: 16 } as const;
const CAP_VNDR = 0x09;
const CFG = { COMMON: 1, DEVICE: 4, PCI: 5 } as const;
const COMMON = { DFSELECT: 0, DF: 4, GFSELECT: 8, GF: 12, STATUS: 20, Q_SELECT: 22, Q_SIZE: 24, Q_DESCLO: 32, Q_DESCHI: 36 } as const;
const STATUS = { ACKNOWLEDGE: 1, DRIVER: 2, FEATURES_OK: 8 } as const;
const VIRTIO_NET_F_MAC = 5;
const VIRTIO_F_VERSION_1 = 32;

/** Where a VF's registers are: the common and device configuration in the BAR, and the config-space window onto it. */
export interface VirtioLayout {
  bar: number; common: number; device: number; window: number;
  /** the access length the window holds now: rewritten only when it changes */
  len?: number;
}

/** The part of a virtio-net VF's state the check carries, as its driver reads it back. */
export interface VirtioNetRegs { status: number; driverFeatures: [number, number]; queue0Size: number; queue0Desc: number; mac: string }

/** Per seed: a queue 0 size (a power of two the device takes) and a page-aligned descriptor ring address. */
export function virtioPattern(seed: number): { queue0Size: number; queue0Desc: number } {
  return { queue0Size: [64, 32, 16, 128][seed % 4]!, queue0Desc: 0x1000_0000 + seed * 0x1_0000 };
}

export function diffVirtio(want: VirtioNetRegs, got: VirtioNetRegs): string[] {
  const hex = (v: unknown): string => (typeof v === 'number' ? `0x${v.toString(16)}` : Array.isArray(v) ? v.map(hex).join('/') : String(v));
  return (Object.keys(want) as (keyof VirtioNetRegs)[])
    .filter((k) => hex(want[k]) !== hex(got[k]))
    .map((k) => `${k}: source ${hex(want[k])}, read ${hex(got[k])}`);
}

/**
 * A virtio-net VF's state as its driver in the nested guest sees it. The nested guest runs no
 * driver, so the check plays one through the VF's PCI configuration access capability
 * (VIRTIO_PCI_CAP_PCI_CFG), a window onto the BAR reached with config cycles alone: nothing has to
 * be mapped. On the source it takes the device through the virtio initialisation up to
 * FEATURES_OK (features VERSION_1 and MAC) with queue 0 given a size and a descriptor ring address
 * (not enabled: the rings are not in memory), varied per seed, and notes the VF's MAC. Where the
 * VM is afterwards, the device must read back that status, those driver features and that queue
 * configuration, and the source VF's MAC (a destination VF has its own until the state arrives).
 */
export class VirtioNetState implements StateCheck {
  private readonly layouts = new Map<NestedQemu, VirtioLayout>();
  private want: VirtioNetRegs | undefined;

  async load(q: NestedQemu, seed: number): Promise<void> {
    const l = await this.layout(q);
    const p = virtioPattern(seed);
    const w = (off: number, size: 1 | 2 | 4, v: number) => bar(q, l, l.common + off, size, v);
    await w(COMMON.STATUS, 1, 0);
    await w(COMMON.STATUS, 1, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
    await w(COMMON.DFSELECT, 4, 0);
    const offered = await bar(q, l, l.common + COMMON.DF, 4);
    const features: [number, number] = [offered & (1 << VIRTIO_NET_F_MAC), 1 << (VIRTIO_F_VERSION_1 - 32)];
    for (const [i, f] of features.entries()) {
      await w(COMMON.GFSELECT, 4, i);
      await w(COMMON.GF, 4, f);
    }
    const status = STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK;
    await w(COMMON.STATUS, 1, status);
    await w(COMMON.Q_SELECT, 2, 0);
    await w(COMMON.Q_SIZE, 2, p.queue0Size);
    await w(COMMON.Q_DESCLO, 4, p.queue0Desc);
    await w(COMMON.Q_DESCHI, 4, 0);
    this.want = { status, driverFeatures: features, ...p, mac: await mac(q, l) };
    const bad = diffVirtio(this.want, await this.read(q));
    if (bad.length) throw new HarnessError(`the source VF did not keep what its driver wrote before any migration: ${bad.join('; ')}`);
  }

  async verify(q: NestedQemu, into: Record<string, unknown>): Promise<string | undefined> {
    if (!this.want) return 'nothing was loaded into the source VF';
    const got = await this.read(q);
    into.state = { source: this.want, read: got };
    const bad = diffVirtio(this.want, got);
    return bad.length ? bad.join('; ') : undefined;
  }

  private async read(q: NestedQemu): Promise<VirtioNetRegs> {
    const l = await this.layout(q);
    const r = (off: number, size: 1 | 2 | 4) => bar(q, l, l.common + off, size);
    const w = (off: number, size: 1 | 2 | 4, v: number) => bar(q, l, l.common + off, size, v);
    const driverFeatures: [number, number] = [0, 0];
    for (const i of [0, 1] as const) {
      await w(COMMON.GFSELECT, 4, i);
      driverFeatures[i] = await r(COMMON.GF, 4);
    }
    await w(COMMON.Q_SELECT, 2, 0);
    return {
      status: await r(COMMON.STATUS, 1), driverFeatures,
      queue0Size: await r(COMMON.Q_SIZE, 2), queue0Desc: await r(COMMON.Q_DESCLO, 4), mac: await mac(q, l),
    };
  }

  /** The virtio vendor capabilities, found as a driver finds them: the capability list from 0x34. */
  private async layout(q: NestedQemu): Promise<VirtioLayout> {
    const known = this.layouts.get(q);
    if (known) return known;
    const found: Partial<VirtioLayout> = {};
    let pos = (await q.cfgRead(0x34, 1)) & 0xfc;
    for (let n = 0; pos && n < 48; n++) {
      const head = await q.cfgRead(pos, 4);
      if ((head & 0xff) === CAP_VNDR) {
        const type = (head >>> 24) & 0xff;
        if (type === CFG.COMMON) {
          found.bar = (await q.cfgRead(pos + CAP.BAR, 4)) & 0xff;
          found.common = await q.cfgRead(pos + CAP.OFFSET, 4);
        }
        if (type === CFG.DEVICE) found.device = await q.cfgRead(pos + CAP.OFFSET, 4);
        if (type === CFG.PCI) found.window = pos;
      }
      pos = (head >>> 8) & 0xfc;
    }
    if (found.bar === undefined || found.common === undefined || found.device === undefined || found.window === undefined) {
      throw new HarnessError(`${q.name}: the assigned device shows no virtio common/device/PCI-window capability in its config space (found ${JSON.stringify(found)})`);
    }
    const l = found as VirtioLayout;
    await q.cfgWrite(l.window + CAP.BAR, 1, l.bar);
    this.layouts.set(q, l);
    return l;
  }
}

/** One access to the VF's BAR through the configuration window (write when `value` is given). */
async function bar(q: NestedQemu, l: VirtioLayout, offset: number, size: 1 | 2 | 4, value?: number): Promise<number> {
  await q.cfgWrite(l.window + CAP.OFFSET, 4, offset);
  if (l.len !== size) {
    await q.cfgWrite(l.window + CAP.LENGTH, 4, size);
    l.len = size;
  }
  if (value !== undefined) {
    await q.cfgWrite(l.window + CAP.DATA, size, value);
    return value;
  }
  return q.cfgRead(l.window + CAP.DATA, size);
}

async function mac(q: NestedQemu, l: VirtioLayout): Promise<string> {
  const lo = await bar(q, l, l.device, 4);
  const hi = await bar(q, l, l.device + 4, 2);
  return [lo, lo >>> 8, lo >>> 16, lo >>> 24, hi, hi >>> 8].map((b) => (b & 0xff).toString(16).padStart(2, '0')).join(':');
}
