import type { QemuCaps } from './probe.js';

/**
 * A -machine or -device value written once for every QEMU: the type, then properties, where a
 * property QEMU has renamed is a list of alternatives, newest name first ('scalable-mode=on' in 11.1,
 * 'x-scalable-mode=on' before). The binary's own property list picks the first it knows.
 */
export interface QemuOption {
  type: string;
  props?: (string | readonly string[] | { ifKnown: string })[];
}

export type Rendered = { ok: true; value: string } | { ok: false; why: string };

const nameOf = (prop: string): string => prop.split('=')[0]!;

/**
 * Machine properties every QEMU accepts without listing them under `-machine T,help`: kernel-irqchip
 * is the accelerator's property, which -machine forwards to it (QEMU's accel-compat options).
 */
const UNLISTED = new Set(['machine:kernel-irqchip']);
/** qdev's own options, which no `-device T,help` lists: a device's name and the bus it sits on */
const QDEV_OPTIONS = new Set(['id', 'bus']);

export function renderOption(kind: 'machine' | 'device', o: QemuOption, caps: QemuCaps): Rendered {
  const known = kind === 'machine' ? caps.machines : caps.devices;
  if (!known.includes(o.type)) return { ok: false, why: `QEMU ${caps.version} has no ${kind} '${o.type}'` };
  const props = caps.props[`${kind}:${o.type}`] ?? [];
  const parts = [o.type];
  for (const p of o.props ?? []) {
    // A property only newer QEMUs have, whose older behaviour is what it turns on (amd-iommu's
    // dma-remap): set where the binary lists it, left out where it does not exist.
    if (typeof p === 'object' && 'ifKnown' in p) {
      if (props.includes(nameOf(p.ifKnown))) parts.push(p.ifKnown);
      continue;
    }
    const alternatives = typeof p === 'string' ? [p] : p;
    const chosen = alternatives.find((a) => props.includes(nameOf(a)) || UNLISTED.has(`${kind}:${nameOf(a)}`)
      || (kind === 'device' && QDEV_OPTIONS.has(nameOf(a))));
    if (!chosen) {
      return { ok: false, why: `QEMU ${caps.version}'s ${o.type} has no property ${alternatives.map(nameOf).join(' or ')}` };
    }
    parts.push(chosen);
  }
  return { ok: true, value: parts.join(',') };
}

/** The value as the newest QEMU spells it: for listings and messages, where no binary is at hand. */
export function describeOption(o: QemuOption): string {
  return [o.type, ...(o.props ?? []).map((p) => (typeof p === 'string' ? p : 'ifKnown' in p ? p.ifKnown : p[0]!))].join(',');
}

/** Every machine and device type a set of options names, to probe the binary for exactly those. */
export function typesOf(machines: QemuOption[], devices: QemuOption[]): { machines: string[]; devices: string[] } {
  return { machines: [...new Set(machines.map((m) => m.type))], devices: [...new Set(devices.map((d) => d.type))] };
}
