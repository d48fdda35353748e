/**
 * PCI devices as sysfs shows them on a host, read in one shell command and parsed here (pure, so
 * it is unit-tested without a host).
 */
import { HarnessError } from '../../base/errors.js';

export interface PciDevice {
  bdf: string;
  vendor: string;
  device: string;
  class?: string;
  /** bound driver, if any */
  driver?: string;
  /** driver_override, undefined when "(null)" */
  override?: string;
  iommuGroup?: string;
  /** SR-IOV PF: current and total VFs */
  numvfs?: number;
  totalvfs?: number;
  /** a VF: its PF */
  physfn?: string;
  /** a PF: its VFs, in virtfn order */
  virtfns: string[];
  /** /dev/vfio/devices/vfioN when bound to a vfio driver with cdev support */
  cdev?: string;
}

export interface PciSnapshot {
  devices: Map<string, PciDevice>;
  /** driver names under /sys/bus/pci/drivers */
  drivers: Set<string>;
}

/** The command that prints the snapshot `parseDiscovery` reads. Read-only. */
export const DISCOVER_CMD = [
  'cd /sys/bus/pci/devices || exit 3',
  'for d in *; do',
  '  echo "dev $d"',
  '  echo "vendor $(cat $d/vendor)"; echo "device $(cat $d/device)"; echo "class $(cat $d/class)"',
  '  [ -e $d/driver ] && echo "driver $(basename $(readlink $d/driver))"',
  '  [ -e $d/driver_override ] && echo "override $(cat $d/driver_override)"',
  '  [ -e $d/iommu_group ] && echo "group $(basename $(readlink $d/iommu_group))"',
  '  [ -e $d/sriov_totalvfs ] && echo "totalvfs $(cat $d/sriov_totalvfs)" && echo "numvfs $(cat $d/sriov_numvfs)"',
  '  [ -e $d/physfn ] && echo "physfn $(basename $(readlink $d/physfn))"',
  '  for v in $d/virtfn*; do [ -e "$v" ] && echo "virtfn ${v#$d/virtfn} $(basename $(readlink $v))"; done',
  '  for c in $d/vfio-dev/vfio*; do [ -e "$c" ] && echo "cdev /dev/vfio/devices/$(basename $c)"; done',
  'done',
  'for x in /sys/bus/pci/drivers/*; do echo "drv $(basename $x)"; done',
  'true',
].join('\n');

const BDF_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** `3b:00.1` or `0000:3B:00.1` -> `0000:3b:00.1`; anything else is an error. */
export function normalizeBdf(s: string): string {
  const x = s.trim().toLowerCase();
  const full = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(x) ? `0000:${x}` : x;
  if (!BDF_RE.test(full)) throw new HarnessError(`'${s}' is not a PCI address (want DDDD:BB:SS.F, e.g. 0000:3b:00.1)`);
  return full;
}

export function isBdf(s: string): boolean {
  return BDF_RE.test(s);
}

export function parseDiscovery(text: string): PciSnapshot {
  const devices = new Map<string, PciDevice>();
  const drivers = new Set<string>();
  const vfs = new Map<string, [number, string][]>();
  let cur: PciDevice | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const sp = line.indexOf(' ');
    if (sp < 0) continue;
    const k = line.slice(0, sp);
    const v = line.slice(sp + 1).trim();
    if (k === 'drv') { drivers.add(v); continue; }
    if (k === 'dev') {
      if (!isBdf(v)) { cur = undefined; continue; }
      cur = { bdf: v, vendor: '', device: '', virtfns: [] };
      devices.set(v, cur);
      continue;
    }
    if (!cur) continue;
    switch (k) {
      case 'vendor': cur.vendor = v; break;
      case 'device': cur.device = v; break;
      case 'class': cur.class = v; break;
      case 'driver': cur.driver = v; break;
      case 'override': if (v !== '(null)' && v !== '') cur.override = v; break;
      case 'group': cur.iommuGroup = v; break;
      case 'totalvfs': cur.totalvfs = Number(v); break;
      case 'numvfs': cur.numvfs = Number(v); break;
      case 'physfn': cur.physfn = v; break;
      case 'cdev': cur.cdev = v; break;
      case 'virtfn': {
        const [n, bdf] = v.split(/\s+/);
        if (bdf && isBdf(bdf)) {
          const l = vfs.get(cur.bdf) ?? [];
          l.push([Number(n), bdf]);
          vfs.set(cur.bdf, l);
        }
        break;
      }
    }
  }
  for (const [pf, l] of vfs) {
    const d = devices.get(pf);
    if (d) d.virtfns = l.sort((a, b) => a[0] - b[0]).map(([, b]) => b);
  }
  return { devices, drivers };
}
