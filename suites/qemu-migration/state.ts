/**
 * Whether the device's state travelled with the VM. mtty gives a generic client something to
 * check: its UART scratch and line-control registers are in its migration stream and reachable
 * through the nested guest's I/O ports. A real device has no such probe that holds for every
 * driver, so for it the cases check what QEMU reports (completion, run state, the device states
 * QEMU walked, device bytes) and say that the content was not verified.
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
