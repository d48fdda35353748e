import type { CaseDef, Suite } from '../types.js';
import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import { migrationCases, type MigState } from './cases.js';
import { skipCases, type CaseListing, type SetupResult } from '../types.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import { createMtty, fingerprint, mttyInfo, openCdev, pciKind, removeMtty, type Fingerprint } from './devices.js';
import { Dev } from './steps.js';
import { mttyPersonality } from './personality.js';
import { virtioNetPersonality } from './virtio-net.js';
import { NO_MIGRATION_ID, noMigrationCases } from './unsupported.js';
import { readAll } from './steps.js';
import { State, VALID_FLAG_SETS, flagsName } from './model.js';

/**
 * The mtty types driven on a guest, each as a device of its own (results tell them apart by
 * device.id): 2 ports and a 96-byte stream, 1 port and a 60-byte stream (vfio-uapi.md §4.1, §4.4,
 * Appendix B). Both draw from one pool of 24 ports, so 2 + 2 instances always fit.
 */
const MTTY_TYPES = ['mtty-2', 'mtty-1'] as const;
/** the type the static listing names (listings show one device kind; both kinds run the same ids) */
const MTTY_TYPE = 'mtty-2';
/** STOP_COPY | P2P | PRE_COPY: what mtty advertises (environment.md, "Devices") */
const MTTY_FLAGS = 0x7;

/** One source/destination pair per device kind, in the order their cases run. */
interface SuiteState { pairs: MigState[]; uuids: string[] }

/** The cases of pair `i`: the runner hands every case the suite's state; each takes its own pair. */
function onPair(i: number, cases: CaseDef<MigState>[]): CaseDef<SuiteState>[] {
  return cases.map((c) => ({ ...c, run: (s: SuiteState, ctx) => c.run(s.pairs[i]!, ctx) }));
}

/**
 * The migration suite on mtty: per type two instances (source and destination), reset before use
 * because mtty keeps migration state across close/open, fingerprinted, then every case the model
 * derives from the advertised flags.
 */
export const migrationSuite: Suite<SuiteState> = {
  name: 'migration',
  async setup(target: Target, agent: AgentClient) {
    if (target.devices?.length) return realDeviceSetup(target, agent);
    const state: SuiteState = { pairs: [], uuids: [] };
    const cases: CaseDef<SuiteState>[] = [];
    for (const type of MTTY_TYPES) {
      const created = await createMtty(target, type, 2);
      state.uuids.push(...created.map((c) => c.uuid));
      const [a, b] = created as [{ uuid: string; cdev: string }, { uuid: string; cdev: string }];
      const src = await openCdev(agent, a.cdev, `${type} ${a.uuid} (source)`);
      const dst = await openCdev(agent, b.cdev, `${type} ${b.uuid} (destination)`);
      await src.reset();
      await dst.reset();
      const fp = await fingerprint(agent, src);
      const device = mttyInfo(type, a.uuid, fp);
      state.pairs.push(pairState(agent, { src, dst, srcPath: a.cdev, dstPath: b.cdev }, fp, device, mttyPersonality));
      cases.push(...onPair(state.pairs.length - 1, migrationCases(fp.migrationFlags, device)));
    }
    return { state, cases };
  },
  list: listMigrationCases,
  async teardown(state, target, agent) {
    // After a restart the agent is closed and its fds went with its process: only the instances are left.
    for (const p of agent.alive ? state.pairs : []) {
      await agent.request('close', { fd: p.src.fd });
      if (p.dst !== p.src) await agent.request('close', { fd: p.dst.fd });
    }
    if (state.uuids.length) await removeMtty(target, state.uuids);
  },
};

/**
 * The arcs and most other cases follow from the device's migration flags: ids every valid flag set
 * has are static, the others are listed for mtty (flags 0x7, the default device) and marked derived.
 */
function listMigrationCases(): CaseListing[] {
  const device: DeviceInfo = { driver: 'mtty', class: 'sample', id: MTTY_TYPE };
  const sets = VALID_FLAG_SETS.map((f) => new Set(migrationCases(f, device).map((c) => c.id)));
  const from = `the device's migration flags (listed for ${MTTY_TYPE}, flags ${flagsName(MTTY_FLAGS)})`;
  return [
    ...migrationCases(MTTY_FLAGS, device).map((c) => (sets.every((s) => s.has(c.id))
      ? { id: c.id, known: 'static' as const }
      : { id: c.id, known: 'derived' as const, from })),
    { id: NO_MIGRATION_ID, known: 'derived' as const, from: 'a real device beyond the pair whose driver offers no migration' },
  ];
}

/**
 * No device was opened: every case is a skip (skipCases never reads its pair) and there is nothing
 * to tear down. An empty state, not an absent one: onPair still indexes it before the skip runs.
 */
const NO_STATE: SuiteState = { pairs: [], uuids: [] };

/**
 * Real devices on a lab host: the first two bound devices are source and destination (one device
 * serves as both: it saves, is reset, and resumes its own stream). Everything expected comes from
 * the device's own fingerprint; a device that does not advertise migration gets every case as a
 * skip with the kernel's answer, not a failure.
 */
async function realDeviceSetup(target: Target, agent: AgentClient): Promise<SetupResult<SuiteState>> {
  const [a, b = a] = target.devices! as [NonNullable<Target['devices']>[number], NonNullable<Target['devices']>[number] | undefined];
  // A guest's devices are emulated by our QEMU and driven by the kernel's variant driver.
  const cls = target.kind === 'qemu' ? 'variant' : 'real';
  const info = (d: typeof a, fp?: Fingerprint | { unavailable: string }): DeviceInfo => ({
    driver: d!.driver, class: cls, id: pciKind(d!), fingerprint: { bdf: d!.bdf, ...(fp ?? {}) },
  });
  if (!a!.cdev) {
    const why = `${a!.bdf} (${a!.driver}) has no VFIO cdev (/dev/vfio/devices): bind it to vfio-pci or a VFIO variant driver`;
    return { state: NO_STATE, cases: onPair(0, skipCases(migrationCases(0x7, info(a)), why)) };
  }
  const src = await openCdev(agent, a!.cdev, `${a!.bdf} (source)`);
  const dst = b === a ? src : await openCdev(agent, b!.cdev!, `${b!.bdf} (destination)`);
  let fp: Fingerprint;
  try {
    fp = await fingerprint(agent, src);
  } catch (e) {
    const device = info(a, { unavailable: (e as Error).message });
    await agent.request('close', { fd: src.fd });
    if (dst !== src) await agent.request('close', { fd: dst.fd });
    return { state: NO_STATE, cases: onPair(0, skipCases(migrationCases(0x7, device), (e as Error).message)) };
  }
  await src.reset();
  if (dst !== src) await dst.reset();
  const device = info(a, fp);
  const personality = a!.driver === 'virtio_vfio_pci' ? virtioNetPersonality() : undefined;
  const pair = pairState(agent, { src, dst, srcPath: a!.cdev, dstPath: b!.cdev! }, fp, device, personality);
  // a device beyond the pair whose driver offers no migration: its known answer, asserted (first:
  // a pair case that takes the guest down cannot keep it from running)
  const extra = await noMigrationCases<SuiteState>(agent, target.devices!.slice(2), (d) => info(d));
  return { state: { pairs: [pair], uuids: [] }, cases: [...extra, ...onPair(0, migrationCases(fp.migrationFlags, device))] };
}

/**
 * The cases' view of a source/destination pair, whatever the devices are. The valid stream is
 * saved once from the destination; reopen closes and opens a device's cdev again (same Dev object,
 * new fd) so the cases' references stay valid.
 */
function pairState(agent: AgentClient, d: { src: Dev; dst: Dev; srcPath: string; dstPath: string }, fp: Fingerprint, device: DeviceInfo, personality?: MigState['personality']): MigState {
  let stream: Buffer | undefined;
  return {
    src: d.src, dst: d.dst, fp, device, personality,
    async validStream() {
      if (!stream) {
        await d.dst.start();
        const fd = await d.dst.reach(State.STOP_COPY);
        stream = (await readAll(agent, fd)).data;
        await agent.request('close', { fd });
        await d.dst.reset();
      }
      return stream;
    },
    async reopen(which) {
      const dev = which === 'src' ? d.src : d.dst;
      await agent.request('close', { fd: dev.fd });
      dev.reopened((await openCdev(agent, which === 'src' ? d.srcPath : d.dstPath, dev.label)).fd);
    },
  };
}
