import { randomUUID } from 'node:crypto';
import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import { HarnessError } from '../../base/errors.js';
import { Dev, FEATURE, errName } from './steps.js';

/** A device the migration suite can drive, as found or created on the target. */
export interface MigrationDevice {
  dev: Dev;
  /** /dev/vfio/devices/vfioN */
  cdev: string;
  /** mdev UUID or PCI BDF */
  sysId: string;
  info: DeviceInfo;
}

export interface Fingerprint {
  migrationFlags: number;
  stopCopyLength?: number;
  dmaLogging: string;
  precopyInfoV2: string;
  agentUapi: Record<string, boolean>;
}

const MTTY_PARENT = '/sys/class/mdev_bus/mtty';

/**
 * vendor:device as lspci writes it (sysfs says 0x15b3; results say 15b3:101e), stable across hosts:
 * a real device's id in results, and the identity a migration stream is only valid between.
 */
export function pciKind(d: { vendor: string; device: string }): string {
  const hex4 = (v: string) => v.replace(/^0x/i, '').toLowerCase().padStart(4, '0');
  return `${hex4(d.vendor)}:${hex4(d.device)}`;
}

/**
 * Create mtty instances through sysfs and find their cdevs. mtty is the hardware-free migration
 * target (flags 0x7); a lab host brings real VFs instead and skips this.
 */
export async function createMtty(target: Target, type: 'mtty-1' | 'mtty-2', count: number): Promise<{ uuid: string; cdev: string }[]> {
  const uuids = Array.from({ length: count }, () => randomUUID());
  const script = [
    'set -e',
    `[ -d ${MTTY_PARENT} ] || modprobe mtty`,
    `[ -d ${MTTY_PARENT} ] || { echo "no ${MTTY_PARENT} after modprobe mtty" >&2; exit 3; }`,
    // Idempotent: should the transport run this script a second time (dropbear can report a failed
    // exec for a command that did start), an instance that exists is not created again (EEXIST).
    ...uuids.map((u) => `[ -e /sys/bus/mdev/devices/${u} ] || echo ${u} > ${MTTY_PARENT}/mdev_supported_types/${type}/create`),
    ...uuids.map((u) => `echo ${u} $(ls /sys/bus/mdev/devices/${u}/vfio-dev)`),
  ].join('\n');
  const r = await target.exec(script, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new HarnessError(`creating ${count} ${type} instance(s) failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout.trim().split('\n').map((l) => {
    const [uuid, vfio] = l.trim().split(/\s+/);
    if (!uuid || !vfio) throw new HarnessError(`unexpected output while creating mtty instances: ${l}`);
    return { uuid, cdev: `/dev/vfio/devices/${vfio}` };
  });
}

export async function removeMtty(target: Target, uuids: string[]): Promise<void> {
  await target.exec(uuids.map((u) => `echo 1 > /sys/bus/mdev/devices/${u}/remove`).join('; '), { timeoutMs: 30_000 });
}

/** Open a cdev through iommufd: the path every current VMM uses. */
export async function openCdev(agent: AgentClient, cdev: string, label: string): Promise<Dev> {
  const r = await agent.request('open_cdev', { path: cdev });
  if (!r.ok) throw new HarnessError(`opening ${cdev} failed at ${r.where ?? '?'}: ${r.err}`);
  return new Dev(agent, r.dev, label);
}

/**
 * What the device says about itself. Every expectation of the suite derives from this (and the
 * model), so the same cases run unchanged against a real VF on a lab host.
 */
export async function fingerprint(agent: AgentClient, d: Dev): Promise<Fingerprint> {
  const flags = await agent.request('mig_flags', { dev: d.fd });
  if (!flags.ok) throw new HarnessError(`${d.label} does not support migration: VFIO_DEVICE_FEATURE_MIGRATION gave ${flags.err}`);
  const size = await d.dataSize();
  const dma = await d.feature(FEATURE.PROBE | FEATURE.SET | FEATURE.DMA_LOGGING_START);
  const v2 = await d.feature(FEATURE.PROBE | FEATURE.SET | FEATURE.MIG_PRECOPY_INFOv2);
  return {
    migrationFlags: flags.flags,
    stopCopyLength: size.ok ? size.stop_copy_length : undefined,
    dmaLogging: errName(dma),
    precopyInfoV2: errName(v2),
    agentUapi: agent.hello?.uapi ?? {},
  };
}

export function mttyInfo(type: string, uuid: string, fp?: Fingerprint): DeviceInfo {
  return { driver: 'mtty', class: 'sample', id: type, fingerprint: fp ? { ...fp, instance: uuid } : { instance: uuid } };
}
