import t from 'tap';
import type { AgentClient, AgentReply } from '../../harness/agent/client.js';
import type { BoundDevice } from '../../harness/devices/manager.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import type { CaseContext } from '../../suites/types.js';
import { migrationAnswer, noMigrationCases, NO_MIGRATION_ID } from '../../suites/migration/unsupported.js';
import { migrationSuite } from '../../suites/migration/index.js';

const vf = (bdf: string, n: number): BoundDevice =>
  ({ bdf, driver: 'virtio_vfio_pci', vendor: '0x1af4', device: '0x1041', iommuGroup: String(n), cdev: `/dev/vfio/devices/vfio${n}` });
const V1 = vf('0000:01:00.1', 0);
const V3 = vf('0000:02:00.1', 2);

/** The agent as far as VFIO_DEVICE_FEATURE_MIGRATION goes: per cdev, flags or an errno name; every fd closed is counted. */
function agent(answers: Record<string, number | string>): AgentClient & { open: Set<number> } {
  const byFd = new Map<number, string>();
  const open = new Set<number>();
  const reply = (r: Record<string, unknown>): AgentReply => ({ id: null, ok: true, errno: 0, err: null, ...r });
  return {
    open,
    async request(cmd: string, args: Record<string, unknown>): Promise<AgentReply> {
      if (cmd === 'open_cdev') { const fd = byFd.size + 3; byFd.set(fd, String(args.path)); open.add(fd); return reply({ dev: fd }); }
      if (cmd === 'close') { open.delete(args.fd as number); return reply({}); }
      if (cmd === 'mig_flags') {
        const a = answers[byFd.get(args.dev as number)!];
        return typeof a === 'number' ? reply({ flags: a }) : reply({ ok: false, errno: 25, err: a ?? 'ENOTTY' });
      }
      return reply({ ok: false, errno: 25, err: 'ENOTTY' });
    },
  } as unknown as AgentClient & { open: Set<number> };
}

const info = (d: BoundDevice): DeviceInfo => ({ driver: d.driver, class: 'variant', id: '1af4:1041', fingerprint: { bdf: d.bdf } });
const ctx = (a: AgentClient): CaseContext => ({ id: NO_MIGRATION_ID, agent: a, note: () => undefined, signal: new AbortController().signal } as unknown as CaseContext);

t.test("a device beyond the pair whose driver refuses migration: one case, expected-unsupported on ENOTTY", async (t) => {
  const a = agent({ [V3.cdev!]: 'ENOTTY' });
  const cases = await noMigrationCases(a, [V3], info);
  t.equal(cases.length, 1);
  t.equal(cases[0]!.id, NO_MIGRATION_ID);
  t.match(cases[0]!.device, { fingerprint: { bdf: V3.bdf } });
  const o = await cases[0]!.run(undefined, ctx(a));
  t.same(o, {
    status: 'expected-unsupported',
    reason: '0000:02:00.1 (virtio_vfio_pci): the driver offers no migration on this device: VFIO_DEVICE_FEATURE_MIGRATION gave ENOTTY',
    observed: { errno: 'ENOTTY' }, expected: { errno: 'ENOTTY' },
  });
  t.same(a.open, new Set(), 'every fd it opened is closed');
});

t.test('another answer than ENOTTY is a failure, asked again when the case runs', async (t) => {
  const answers: Record<string, number | string> = { [V3.cdev!]: 'ENOTTY' };
  const a = agent(answers);
  const [c] = await noMigrationCases(a, [V3], info);
  answers[V3.cdev!] = 'EIO';
  const o = await c!.run(undefined, ctx(a));
  t.equal(o.status, 'fail');
  t.equal(o.reason, '0000:02:00.1 (virtio_vfio_pci): VFIO_DEVICE_FEATURE_MIGRATION gave EIO, not ENOTTY (a device without migration ops)');
});

t.test('devices that migrate, or have no cdev, get no such case', async (t) => {
  t.same(await noMigrationCases(agent({ [V3.cdev!]: 0x7 }), [V3], info), []);
  t.same(await noMigrationCases(agent({}), [{ ...V3, cdev: undefined }], info), []);
  t.equal(await migrationAnswer(agent({ [V1.cdev!]: 0x7 }), V1), 'OK');
  t.equal(await migrationAnswer(agent({}), V1), 'ENOTTY');
});

t.test('the listing names the case, derived from the devices', async (t) => {
  const l = migrationSuite.list!().find((c) => c.id === NO_MIGRATION_ID);
  t.match(l, { known: 'derived', from: /whose driver offers no migration/ });
});
