/**
 * A device whose driver binds but offers no migration: on the virtio-vf profile, a virtio-net VF
 * whose PF has no administration virtqueue, under virtio_vfio_pci (virtiovf_pci_probe() gives it
 * migration ops only when virtio_pci_admin_has_dev_parts() says the PF can serve them). The uAPI's
 * answer for such a device is VFIO_DEVICE_FEATURE_MIGRATION failing with ENOTTY (no mig_ops in
 * vfio_ioctl_device_feature_migration()): that is its expected-unsupported, and any other answer a
 * failure. The case asks the device itself when it runs.
 */
import type { AgentClient } from '../../harness/agent/client.js';
import type { BoundDevice } from '../../harness/devices/manager.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import type { CaseDef } from '../types.js';
import { openCdev } from './devices.js';

export const NO_MIGRATION_ID = 'migration/feature/no-migration';
/** the uAPI's errno for a device without migration support */
export const NO_MIGRATION_ERRNO = 'ENOTTY';

/** How the device's driver answers VFIO_DEVICE_FEATURE_MIGRATION: 'OK' or an errno name. */
export async function migrationAnswer(agent: AgentClient, d: BoundDevice): Promise<string> {
  const dev = await openCdev(agent, d.cdev!, d.bdf);
  try {
    const r = await agent.request('mig_flags', { dev: dev.fd });
    return r.ok ? 'OK' : String(r.err);
  } finally {
    await agent.request('close', { fd: dev.fd });
  }
}

/** The first of `extra` (devices beyond the migrating pair) that refuses migration, and its case. */
export async function noMigrationCases<S>(agent: AgentClient, extra: BoundDevice[], info: (d: BoundDevice) => DeviceInfo): Promise<CaseDef<S>[]> {
  for (const d of extra) {
    if (!d.cdev || (await migrationAnswer(agent, d)) === 'OK') continue;
    return [{
      id: NO_MIGRATION_ID,
      device: info(d),
      async run(_s, ctx) {
        const errno = await migrationAnswer(ctx.agent, d);
        const observed = { errno };
        const expected = { errno: NO_MIGRATION_ERRNO };
        if (errno !== NO_MIGRATION_ERRNO) {
          return { status: 'fail', reason: `${d.bdf} (${d.driver}): VFIO_DEVICE_FEATURE_MIGRATION gave ${errno}, not ${NO_MIGRATION_ERRNO} (a device without migration ops)`, observed, expected };
        }
        const reason = `${d.bdf} (${d.driver}): the driver offers no migration on this device: VFIO_DEVICE_FEATURE_MIGRATION gave ${errno}`;
        return { status: 'expected-unsupported', reason, observed, expected };
      },
    }];
  }
  return [];
}
