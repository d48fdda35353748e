/**
 * Pure logic of the real-client suite: reading what QEMU says (HMP `info pci`, `i /b`, `--version`,
 * VFIO_MIGRATION events) and turning the states QEMU walked into FSM arcs. No I/O here, so all of
 * it is unit-tested against recorded text.
 */
import type { QmpEvent } from '../../harness/qemu/qmp.js';
import type { CaseResult } from '../../base/results/schema.js';
import { ALL_FLAGS, State, arcName, parseState, path, requiredArcs, stateName, type Arc } from '../migration/model.js';

// ---------------------------------------------------------------------------------------------
// QEMU version

export interface QemuVersion { major: number; minor: number; micro: number; text: string }

/** `QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1)` -> 11.1.3 */
export function parseQemuVersion(out: string): QemuVersion | undefined {
  const m = /version\s+(\d+)\.(\d+)(?:\.(\d+))?/.exec(out);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0), text: `${m[1]}.${m[2]}.${m[3] ?? 0}` };
}

export function versionAtLeast(v: QemuVersion, major: number, minor = 0): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

/** VFIO migration protocol v2 (the kernel's uAPI since 6.2) arrived in QEMU 8.0. */
export const MIN_QEMU = { major: 8, minor: 0 } as const;

/**
 * Why this QEMU cannot be the real client, or undefined when it can. `vfioHelp` is the output of
 * `-device vfio-pci,help` (an option list): a build without VFIO has none.
 */
export function qemuUnsupportedReason(v: QemuVersion | undefined, vfioHelp: string): string | undefined {
  if (!v) return 'could not read the QEMU version';
  if (!versionAtLeast(v, MIN_QEMU.major, MIN_QEMU.minor)) {
    return `QEMU ${v.text} is older than ${MIN_QEMU.major}.${MIN_QEMU.minor}: VFIO migration protocol v2 (the kernel's only one) arrived in QEMU 8.0`;
  }
  if (!/sysfsdev=/.test(vfioHelp)) return `QEMU ${v.text} has no vfio-pci device (built without VFIO)`;
  return undefined;
}

/**
 * QEMU's own words for "this device cannot migrate": at realize with enable-migration=on (QEMU
 * exits before QMP is up), or as the migration blocker `migrate` answers with when the option is
 * auto or absent. Only the variants that mean the driver lacks migration: a query that failed with
 * another errno is a driver fault, not missing support. ENOTTY is 25, EOPNOTSUPP 95 (no STOP_COPY).
 */
const REFUSALS = [
  'VFIO migration is not supported in kernel',
  // QEMU 11: the same refusal, through the init error
  'VFIO migration init failed: migration is not supported in kernel',
  "VFIO device doesn't support migration",
  "VFIO device doesn't support device and IOMMU dirty tracking",
  "Migration couldn't be initialized for VFIO device, err: -(?:25|95)\\b",
].join('|');
const REFUSAL_RE = new RegExp(`(?:(?:[0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]: )?(?:${REFUSALS})[^\\n]*`, 'i');

/**
 * The refusal QEMU gave (its text from the device name on, e.g. `0000:3b:00.1: VFIO migration is
 * not supported in kernel`), found in an error message or stderr; undefined when the text is not
 * such a refusal.
 */
export function migrationRefusal(text: string): string | undefined {
  return REFUSAL_RE.exec(text)?.[0].trim();
}

/** Options of `-device vfio-pci,help` the suite uses when present. */
export function vfioOptions(help: string): { migrationEvents: boolean; enableMigration: boolean; iommufd: boolean; multifdTransfer: boolean } {
  return {
    migrationEvents: /\bmigration-events=/.test(help),
    enableMigration: /\benable-migration=/.test(help),
    iommufd: /\biommufd=/.test(help),
    multifdTransfer: /\bx-migration-multifd-transfer=/.test(help),
  };
}

// ---------------------------------------------------------------------------------------------
// HMP

export interface PciBar { index: number; kind: 'io' | 'mem'; start?: number; end?: number }
export interface PciFunction { bus: number; device: number; fn: number; id: string; vendor?: string; bars: PciBar[] }

/**
 * HMP `info pci`:
 *   Bus  0, device   4, function 0:
 *     Serial port: PCI device 4348:3253
 *       BAR0: I/O at 0xc060 [0xc067]
 *       BAR1: I/O (not mapped)
 *       id "dev0"
 */
export function parseInfoPci(text: string): PciFunction[] {
  const out: PciFunction[] = [];
  let cur: PciFunction | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    let m = /^Bus\s+(\d+),\s*device\s+(\d+),\s*function\s+(\d+):/.exec(line);
    if (m) {
      cur = { bus: Number(m[1]), device: Number(m[2]), fn: Number(m[3]), id: '', bars: [] };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    m = /PCI device ([0-9a-f]{4}:[0-9a-f]{4})/i.exec(line);
    if (m && !line.startsWith('PCI subsystem')) { cur.vendor ??= m[1]!.toLowerCase(); continue; }
    m = /^BAR(\d+):\s*(I\/O|\d+ bit (?:prefetchable )?memory)\s*(?:at\s+(0x[0-9a-f]+)\s*\[(0x[0-9a-f]+)\])?/i.exec(line);
    if (m) {
      const bar: PciBar = { index: Number(m[1]), kind: m[2] === 'I/O' ? 'io' : 'mem' };
      // QEMU prints an unassigned BAR as "not mapped" (or at 0xffff..., which is no address either)
      if (m[3] && m[4] && !/^0xf{8,}$/i.test(m[3])) { bar.start = parseInt(m[3], 16); bar.end = parseInt(m[4], 16); }
      cur.bars.push(bar);
      continue;
    }
    m = /^id\s+"([^"]*)"/.exec(line);
    if (m) cur.id = m[1]!;
  }
  return out;
}

/** The mapped I/O BARs of the device with this QOM id, in BAR order: each is one mtty port's base. */
export function ioPorts(infoPci: string, id: string): number[] {
  const f = parseInfoPci(infoPci).find((x) => x.id === id);
  if (!f) return [];
  return f.bars.filter((b) => b.kind === 'io' && b.start !== undefined).map((b) => b.start!);
}

/** HMP `i /b 0xc067` answers `portb[0xc067] = 0x5a`. */
export function parsePortRead(reply: string): number | undefined {
  const m = /port[bwl]\[0x[0-9a-f]+\]\s*=\s*(?:0x)?([0-9a-f]+)/i.exec(reply);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/**
 * The legacy PCI configuration mechanism (#1): the dword written to 0xcf8 to address a register of
 * bus/device/function. Lets the harness program BARs through the nested guest's I/O space itself,
 * with no firmware having to enumerate first.
 */
export function cf8Address(bus: number, device: number, fn: number, reg: number): number {
  return (0x80000000 | (bus << 16) | (device << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;
}

/** HMP lines that give BAR i of bus 0 device `device` the I/O base `bases[i]` and enable I/O decoding. */
export function programIoBarsHmp(device: number, bases: number[]): string[] {
  const hex = (n: number) => `0x${n.toString(16)}`;
  const lines: string[] = [];
  bases.forEach((b, i) => {
    lines.push(`o /w 0xcf8 ${hex(cf8Address(0, device, 0, 0x10 + 4 * i))}`, `o /w 0xcfc ${hex(b)}`);
  });
  // PCI_COMMAND (0x04): bit 0 = I/O space enable
  lines.push(`o /w 0xcf8 ${hex(cf8Address(0, device, 0, 0x04))}`, 'o /h 0xcfc 0x1');
  return lines;
}

/** UART register offsets mtty emulates and carries in its migration stream. */
export const UART = { LCR: 3, SCR: 7 } as const;

// ---------------------------------------------------------------------------------------------
// VFIO states QEMU walked

/** QAPI's QapiVfioMigrationState (`pre-copy-p2p`) -> the model's name (`PRE_COPY_P2P`). */
export function qapiStateName(s: string): string {
  return s.toUpperCase().replace(/-/g, '_');
}

/**
 * The device states QEMU set, in order, from its VFIO_MIGRATION events (`migration-events=on`),
 * for one device id (all when omitted).
 */
export function vfioStates(events: QmpEvent[], deviceId?: string): string[] {
  return events
    .filter((e) => e.event === 'VFIO_MIGRATION' && (deviceId === undefined || e.data?.['device-id'] === deviceId))
    .map((e) => qapiStateName(String(e.data?.['device-state'] ?? '?')));
}

/**
 * The transitions QEMU requested: consecutive pairs of the states it set, starting from the state
 * the device was in when QEMU opened it (RUNNING for a fresh instance: QEMU emits no event for it).
 * Event states that are not device states are QEMU's own phases and request nothing of the kernel
 * (QEMU 10+ reports `pre-copy-p2p-prepare` / `running-p2p-prepare` before the P2P request): they
 * stay in the recorded walk but are skipped here.
 */
export function requestedTransitions(states: string[], initial = 'RUNNING'): [string, string][] {
  const out: [string, string][] = [];
  let prev = initial;
  for (const s of states) {
    if (!isKnownState(s)) continue;
    if (s !== prev) out.push([prev, s]);
    prev = s;
  }
  return out;
}

/**
 * The single-step FSM arcs the kernel executed for those requests: each request (from -> to) is
 * expanded by the model into the arcs vfio_mig_get_next_state() makes the driver walk (QEMU's
 * RUNNING -> RESUMING on a destination is RUNNING->RUNNING_P2P, RUNNING_P2P->STOP, STOP->RESUMING).
 */
export function kernelArcs(transitions: [string, string][], flags: number = ALL_FLAGS): Arc[] {
  const out: Arc[] = [];
  for (const [a, b] of transitions) {
    const from = parseState(a);
    const to = parseState(b);
    if (from === undefined || to === undefined) continue;
    const p = path(from, to, flags);
    if (p.ok) out.push(...p.arcs);
  }
  return out;
}

/** What a case stores in `observed.vfio`: per side, the states QEMU set and the arcs they imply. */
export interface SideWalk {
  states: string[];
  requested: string[];
  arcs: string[];
}

export function sideWalk(events: QmpEvent[], deviceId: string, flags: number = ALL_FLAGS, initial = 'RUNNING'): SideWalk {
  const states = vfioStates(events, deviceId);
  const tr = requestedTransitions(states, initial);
  return { states, requested: tr.map(([a, b]) => `${a}->${b}`), arcs: kernelArcs(tr, flags).map(arcName) };
}

export interface ArcCoverage {
  /** flags the arcs were computed for (mtty: 0x7) */
  flags: number;
  /** every arc the kernel requires for these flags, with the real-client cases that walked it */
  arcs: { arc: string; cases: string[] }[];
  /** arcs QEMU walked */
  exercised: string[];
  /** arcs only the direct-ioctl suite (migration/arc/*) covers */
  directOnly: string[];
  /** the transitions QEMU requested, with how many times */
  requested: Record<string, number>;
}

/**
 * Which FSM arcs the real client exercised, from the results of the qemu-migration suite (their
 * observed.vfio walks), against every arc the kernel requires for `flags`.
 */
export function arcCoverage(results: Pick<CaseResult, 'id' | 'suite' | 'observed'>[], flags: number = ALL_FLAGS): ArcCoverage {
  const byArc = new Map<string, Set<string>>();
  const requested: Record<string, number> = {};
  for (const r of results) {
    if (r.suite !== 'qemu-migration') continue;
    const vfio = (r.observed as { vfio?: Record<string, SideWalk | SideWalk[]> } | undefined)?.vfio;
    if (!vfio) continue;
    for (const side of Object.values(vfio)) {
      for (const w of Array.isArray(side) ? side : [side]) {
        for (const a of w.arcs ?? []) byArc.set(a, (byArc.get(a) ?? new Set()).add(r.id));
        for (const t of w.requested ?? []) requested[t] = (requested[t] ?? 0) + 1;
      }
    }
  }
  const all = requiredArcs(flags).map((a) => arcName([a.from, a.to]));
  return {
    flags,
    arcs: all.map((arc) => ({ arc, cases: [...(byArc.get(arc) ?? [])].sort() })),
    exercised: all.filter((a) => byArc.has(a)),
    directOnly: all.filter((a) => !byArc.has(a)),
    requested,
  };
}

/** State names the model knows, for validating recorded walks. */
export function isKnownState(name: string): boolean {
  const n = parseState(name);
  return n !== undefined && n !== State.ERROR && stateName(n) === name;
}
