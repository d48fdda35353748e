/**
 * What the device manager will do on a lab host, decided from a sysfs snapshot before anything is
 * touched (pure: `--dry-run` prints this and stops; the unit tests check it without a host).
 */
import { HarnessError } from '../../base/errors.js';
import { normalizeBdf, type PciDevice, type PciSnapshot } from './sysfs.js';

/** One `--device` argument: `BDF[,driver=NAME][,vfs=N]`. */
export interface DeviceRequest {
  bdf: string;
  /** the driver to bind: a vfio variant driver (mlx5_vfio_pci, hisi_acc_vfio_pci ...) or vfio-pci */
  driver: string;
  /** a PF: create this many VFs and bind the VFs (not the PF) */
  vfs?: number;
}

export const DEFAULT_DRIVER = 'vfio-pci';
const NAME_RE = /^[A-Za-z0-9_.-]+$/;

export function parseDeviceArg(s: string, defaultDriver = DEFAULT_DRIVER): DeviceRequest {
  const [bdf, ...opts] = s.split(',');
  const r: DeviceRequest = { bdf: normalizeBdf(bdf ?? ''), driver: defaultDriver };
  for (const o of opts) {
    const [k, v] = o.split('=', 2);
    if (k === 'driver' && v && NAME_RE.test(v)) r.driver = v;
    else if (k === 'vfs' && v && /^\d+$/.test(v)) r.vfs = Number(v);
    else throw new HarnessError(`--device ${s}: '${o}' is not driver=NAME or vfs=N`);
  }
  return r;
}

export type Step =
  /** load a driver's module so it can be bound */
  | { op: 'modprobe'; driver: string }
  /** set a PF's sriov_numvfs (from -> to) */
  | { op: 'create-vfs'; pf: string; from: number; to: number; driver: string }
  /** bind a device to `to`; `from`/`override` are what to restore */
  | { op: 'bind'; bdf: string; from?: string; override?: string; to: string }
  /** already on the wanted driver: nothing to do, nothing to restore */
  | { op: 'keep'; bdf: string; driver: string };

export interface Plan {
  requests: DeviceRequest[];
  steps: Step[];
  /** things the user should know (other devices sharing an IOMMU group ...); nothing is done about them */
  warnings: string[];
}

function describe(d: PciDevice): string {
  return `${d.bdf} [${d.vendor.replace(/^0x/, '')}:${d.device.replace(/^0x/, '')}]`;
}

/** Bind steps for one device (or a VF not created yet: `vf` is a placeholder name). */
function bindStep(d: PciDevice, driver: string): Step {
  if (d.driver === driver) return { op: 'keep', bdf: d.bdf, driver };
  return { op: 'bind', bdf: d.bdf, from: d.driver, override: d.override, to: driver };
}

/**
 * The plan for the listed devices only. Errors (an unknown address, VFs asked of a device without
 * SR-IOV, more VFs than it has) throw before anything is done.
 */
export function makePlan(requests: DeviceRequest[], snap: PciSnapshot): Plan {
  const steps: Step[] = [];
  const warnings: string[] = [];
  const seen = new Set<string>();
  const listed = new Set(requests.map((r) => r.bdf));
  const boundTo = new Map<string, string>();
  for (const r of requests) {
    if (seen.has(r.bdf)) throw new HarnessError(`--device ${r.bdf} is listed twice`);
    seen.add(r.bdf);
    const d = snap.devices.get(r.bdf);
    if (!d) throw new HarnessError(`--device ${r.bdf}: no such PCI device on the host (see /sys/bus/pci/devices)`);
    if (!snap.drivers.has(r.driver) && !steps.some((s) => s.op === 'modprobe' && s.driver === r.driver)) steps.push({ op: 'modprobe', driver: r.driver });
    if (r.vfs !== undefined) {
      if (d.totalvfs === undefined) throw new HarnessError(`--device ${r.bdf},vfs=${r.vfs}: ${describe(d)} has no SR-IOV (no sriov_totalvfs)`);
      if (r.vfs > d.totalvfs) throw new HarnessError(`--device ${r.bdf},vfs=${r.vfs}: ${describe(d)} supports at most ${d.totalvfs} VFs`);
      if (r.vfs === 0) throw new HarnessError(`--device ${r.bdf},vfs=0: nothing to test (leave vfs= out to bind the device itself)`);
      const from = d.numvfs ?? 0;
      if (from !== r.vfs) {
        steps.push({ op: 'create-vfs', pf: r.bdf, from, to: r.vfs, driver: r.driver });
      } else {
        for (const vf of d.virtfns) {
          const v = snap.devices.get(vf);
          if (v) { steps.push(bindStep(v, r.driver)); boundTo.set(vf, r.driver); }
        }
      }
      continue;
    }
    if (d.physfn && listed.has(d.physfn) && requests.find((x) => x.bdf === d.physfn)?.vfs !== undefined) {
      throw new HarnessError(`--device ${r.bdf} is a VF of ${d.physfn}, whose VFs are already set up by vfs=`);
    }
    steps.push(bindStep(d, r.driver));
    boundTo.set(d.bdf, r.driver);
  }
  // vfio needs every device of an IOMMU group out of other drivers' hands: say so, touch nothing.
  for (const [bdf, driver] of boundTo) {
    if (!driver.includes('vfio')) continue;
    const g = snap.devices.get(bdf)?.iommuGroup;
    if (g === undefined) {
      warnings.push(`${bdf} has no IOMMU group: vfio will not take it (is the IOMMU on? intel_iommu=on / amd_iommu=on)`);
      continue;
    }
    for (const o of snap.devices.values()) {
      if (o.bdf === bdf || o.iommuGroup !== g || boundTo.has(o.bdf)) continue;
      if (o.driver && !o.driver.includes('vfio') && o.driver !== 'pcieport') {
        warnings.push(`${bdf} shares IOMMU group ${g} with ${o.bdf} (bound to ${o.driver}, not listed, left alone): vfio may refuse ${bdf} until that device is unbound`);
      }
    }
  }
  // modules first: a bind step needs its driver present
  steps.sort((a, b) => (a.op === 'modprobe' ? 0 : 1) - (b.op === 'modprobe' ? 0 : 1));
  return { requests, steps, warnings };
}

/** The plan as the user reads it (`--dry-run`, and the log of a run). */
export function formatPlan(plan: Plan, host: string, snap: PciSnapshot): string {
  const out: string[] = [`device plan for ${host}:`];
  const dev = (b: string) => { const d = snap.devices.get(b); return d ? describe(d) : b; };
  const restore: string[] = [];
  for (const s of plan.steps) {
    switch (s.op) {
      case 'modprobe':
        out.push(`  load      modprobe ${s.driver} (no /sys/bus/pci/drivers/${s.driver} yet)`);
        break;
      case 'create-vfs':
        out.push(`  create    ${dev(s.pf)}: sriov_numvfs ${s.from} -> ${s.to}, then bind each new VF to ${s.driver}`);
        restore.push(`  restore   ${dev(s.pf)}: sriov_numvfs ${s.to} -> ${s.from}${s.from ? ' (via 0)' : ''} (the VFs created go away)`);
        break;
      case 'bind':
        out.push(`  bind      ${dev(s.bdf)}: ${s.from ?? '(no driver)'} -> ${s.to} (driver_override=${s.to}, drivers_probe)`);
        restore.push(`  restore   ${dev(s.bdf)}: ${s.to} -> ${s.from ?? '(no driver)'}, driver_override=${s.override ?? '(none)'}`);
        break;
      case 'keep':
        out.push(`  keep      ${dev(s.bdf)}: already bound to ${s.driver}; left as is`);
        break;
    }
  }
  if (!plan.steps.length) out.push('  (nothing to do)');
  out.push(...restore.reverse());
  for (const w of plan.warnings) out.push(`  warning   ${w}`);
  out.push('  untouched every other PCI device');
  return out.join('\n');
}
