import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import type { CaseDef, Suite } from '../types.js';
import { skipCases } from '../types.js';
import { HarnessError } from '../../base/errors.js';
import { createMtty, removeMtty } from '../migration/devices.js';
import { Checks } from '../migration/steps.js';
import { Iommufd, IOMMUFD, errOf, headersVersion, mockUnavailable, outcome } from './api.js';
import { iommufdCases, makeFixture, mttyAccessCase, oracleCases, type Fixture, type IommufdState } from './iommufd.js';
import { A, mapType1, type1Cases, type Type1State } from './type1.js';
import { dmaLoggingCases, rangeList, type DmaLogState } from './dmalog.js';
import { bitmapBytes } from './bitmap.js';

export interface DirtyState extends IommufdState, Type1State, DmaLogState {
  uuids: string[];
  /** device and group fds of the two containers: closed before the mdevs are removed */
  groupFds: number[];
  /** memory the agent allocated for fixtures, freed at teardown */
  allocations: { addr: number; length: number }[];
  mtty?: { iommufd: number; devid: number; ioas: number };
}

/** Group number of an mdev: basename of its iommu_group link. */
export async function groupOf(target: Target, uuid: string): Promise<number> {
  const r = await target.exec(`basename "$(readlink /sys/bus/mdev/devices/${uuid}/iommu_group)"`, { timeoutMs: 10_000 });
  const n = Number(r.stdout.trim());
  if (r.code !== 0 || !Number.isInteger(n)) throw new HarnessError(`no iommu group for mdev ${uuid}: ${r.stderr.trim() || r.stdout.trim()}`);
  return n;
}

/** Why the real-device cases of this suite do not run on an emulated target (a lab host passes one with --device). */
export function realDeviceWhy(target: Target): string {
  const profile = target.facts.profile ?? target.name;
  return `profile '${profile}' has no device that is both behind a dirty-capable IOMMU and does DMA logging itself: ` +
    'mtty is an emulated iommufd access (GET_HW_INFO/HWPT_ALLOC give ENOENT), and edu has no DMA logging; ' +
    "an IOMMU's own dirty tracking against a device's real writes is the iommu-dirty suite's (the *-dirty profiles on our QEMU)";
}

const MOCK_DEVICE = (fp: Record<string, unknown>): DeviceInfo => ({ driver: 'iommufd_mock', class: 'none', id: 'IOMMUFD_TEST', fingerprint: fp });

/**
 * The three dirty-tracking mechanisms (vfio-uapi.md §2): iommufd HWPT tracking on the IOMMUFD_TEST
 * mock (every profile has it), legacy type1 DIRTY_PAGES with mtty in a VFIO container, and device DMA
 * logging on mtty (core validation). Three mtty-1 instances: one opened through its cdev (DMA logging,
 * the access check), one in a type1v2 container, one in a type1 v1 container (EACCES).
 */
export const dirtySuite: Suite<DirtyState> = {
  name: 'dirty',
  async setup(target: Target, agent: AgentClient) {
    const fd = await Iommufd.open(agent);
    const allocations: { addr: number; length: number }[] = [];
    // The plain mock device: its own IOAS, attached to an auto domain (no dirty ops).
    const plainIoas = await fd.ioas();
    const mockWhy = await mockUnavailable(fd, plainIoas);
    const plainDev = mockWhy ? { stdev: -1, hwpt: -1, idev: -1 } : await fd.mustMockDomain(plainIoas);
    const hw = mockWhy ? undefined : await fd.hwInfo(plainDev.idev);
    const fp = hw
      ? { hwInfoType: hw.ok ? `0x${hw.type.toString(16)}` : errOf(hw), capabilities: hw.capabilities, maxPasidLog2: hw.max_pasid_log2, agentUapi: agent.hello?.uapi }
      : { unavailable: mockWhy, agentUapi: agent.hello?.uapi };
    const mock = MOCK_DEVICE(fp);

    const fixtures = new Map<number, Promise<Fixture>>();
    const twins = new Map<number, Promise<number>>();
    const state: DirtyState = {
      agent, fd, uuids: [], allocations, groupFds: [],
      plain: { ioas: plainIoas, dev: plainDev },
      headers: headersVersion(agent),
      fixture(size) {
        let f = fixtures.get(size);
        if (!f) {
          f = makeFixture(fd, size).then((x) => { allocations.push({ addr: x.addr, length: size }); return x; });
          // a failed fixture is retried by the next case rather than poisoning all of them
          f.catch(() => fixtures.delete(size));
          fixtures.set(size, f);
        }
        return f;
      },
      twin(size) {
        let t = twins.get(size);
        if (!t) {
          t = state.fixture(size).then((f) => fd.mustHwpt(f.dev.idev, f.ioas, IOMMUFD.HWPT_ALLOC_DIRTY_TRACKING));
          t.catch(() => twins.delete(size));
          twins.set(size, t);
        }
        return t;
      },
    };

    // mtty: failures here make the mtty cases errors with the reason, not the whole suite.
    let mttyDevice: DeviceInfo = MTTY_DEVICE;
    try {
      const created = await createMtty(target, 'mtty-1', 3);
      state.uuids = created.map((x) => x.uuid);
      const [cdev, g2, g1] = created as [{ uuid: string; cdev: string }, { uuid: string; cdev: string }, { uuid: string; cdev: string }];
      mttyDevice = { ...mttyDevice, fingerprint: { instances: state.uuids } };
      const o = await agent.request('open_cdev', { path: cdev.cdev });
      if (o.ok) {
        state.dev = o.dev;
        state.mtty = { iommufd: o.iommufd, devid: o.devid, ioas: o.ioas };
      } else state.setupError = `open_cdev ${cdev.cdev}: ${o.err} at ${o.where ?? '?'}`;
      const grp = await agent.request('open_group', { group: await groupOf(target, g2.uuid), device: g2.uuid });
      if (grp.ok) {
        state.groupFds.push(grp.dev, grp.group_fd);
        state.container = grp.container;
        await mapType1(agent, state.container);
      } else state.setupError = `open_group (type1v2): ${grp.err} at ${grp.where ?? '?'}`;
      const v1 = await agent.request('open_group', { group: await groupOf(target, g1.uuid), device: g1.uuid, iommu_type: 1 });
      if (v1.ok) {
        state.groupFds.push(v1.dev, v1.group_fd);
        state.v1Container = v1.container;
      }
      else state.setupError = `open_group (type1 v1): ${v1.err} at ${v1.where ?? '?'}`;
    } catch (e) {
      state.setupError = (e as Error).message;
      state.container = undefined;
    }

    const cases = dirtyCases({
      mock, mtty: mttyDevice, realWhy: realDeviceWhy(target), mockWhy,
      mttyOpen: async () => {
        if (!state.mtty) throw new HarnessError(`mtty not available: ${state.setupError ?? 'unknown'}`);
        return state.mtty;
      },
    });
    return { state, cases };
  },
  list: () => dirtyCases({ mock: MOCK_DEVICE({}), mtty: MTTY_DEVICE, realWhy: '', mttyOpen: () => Promise.reject(new Error('listing only')) })
    .map((c) => ({ id: c.id, known: 'static' as const })),
  async teardown(state, target, agent) {
    // Every fd on an mdev must be closed first: removing an mdev waits until its users let go.
    for (const fd of [state.dev, state.mtty?.iommufd, ...state.groupFds, state.container, state.v1Container]) {
      if (fd !== undefined) await agent.request('close', { fd });
    }
    await state.fd.close();
    for (const a of state.allocations) await agent.request('mem_free', { addr: a.addr, length: a.length });
    // group fds close with the agent; removal of an mdev whose group is open would wait, so close first
    if (state.uuids.length) await removeMtty(target, state.uuids).catch(() => undefined);
  },
};

const MTTY_DEVICE: DeviceInfo = { driver: 'mtty', class: 'sample', id: 'mtty-1' };

/** Every case of the suite in run order, for setup and for listing; `mockWhy` makes the mock's cases skips. */
function dirtyCases(d: { mock: DeviceInfo; mtty: DeviceInfo; realWhy: string; mockWhy?: string; mttyOpen: () => Promise<{ iommufd: number; devid: number; ioas: number }> }): CaseDef<DirtyState>[] {
  const onMock = (cs: CaseDef<DirtyState>[]) => (d.mockWhy ? skipCases(cs, d.mockWhy) : cs);
  return [
    ...onMock(iommufdCases(d.mock, d.realWhy) as CaseDef<DirtyState>[]),
    mttyAccessCase(d.mtty, d.mttyOpen) as CaseDef<DirtyState>,
    ...(type1Cases(d.mtty) as CaseDef<DirtyState>[]),
    ...(dmaLoggingCases(d.mtty) as CaseDef<DirtyState>[]),
    ...onMock(oracleCases(d.mock) as CaseDef<DirtyState>[]),
    idleOracle(d.mtty),
    {
      id: 'dirty/oracle/real-device',
      device: { driver: 'none', class: 'none', id: '-' },
      async run() {
        return { status: 'skip', reason: `${d.realWhy}; the three-way oracle (IOMMU HWPT vs device DMA logging vs type1) needs a device that really writes memory` };
      },
    },
  ];
}

/**
 * The only cross-mechanism agreement this machine can show honestly: mtty watched by type1 (its
 * container's mapping A) and by DMA logging (the same IOVA range on its twin) while nothing is
 * written — both must report nothing. Weak by construction (no writes), and labelled so.
 */
function idleOracle(device: DeviceInfo): CaseDef<DirtyState> {
  return {
    id: 'dirty/oracle/type1-vs-dma-logging-idle',
    device,
    async run(s) {
      if (s.container === undefined || s.dev === undefined) return { status: 'error', reason: `mtty not available: ${s.setupError ?? 'unknown'}` };
      const c = new Checks();
      await s.agent.request('container_dirty', { container: s.container, action: 'start' });
      await s.agent.request('dma_logging', { dev: s.dev, action: 'start', page_size: 4096, ranges: rangeList(1, A.iova, A.size) });
      const t1 = await s.agent.request('container_dirty', { container: s.container, action: 'get_bitmap', iova: A.iova, size: A.size, pgsize: 4096 });
      const dl = await s.agent.request('dma_logging', { dev: s.dev, action: 'report', iova: A.iova, length: A.size, page_size: 4096, bitmap_size: bitmapBytes(A.size / 4096) });
      await s.agent.request('dma_logging', { dev: s.dev, action: 'stop' });
      c.eq('type1 GET_BITMAP', errOf(t1), 'OK');
      c.eq('DMA logging REPORT', errOf(dl), 'OK');
      c.eq('type1 and DMA logging agree', t1.bitmap, dl.bitmap);
      // a failed read reports no count: undefined, never a 0 that would pass
      const total = t1.bits_set === undefined || dl.bits_set === undefined ? undefined : t1.bits_set + dl.bits_set;
      c.eq('pages dirty with no writes', total, 0);
      return outcome(c, { type1Bits: t1.bits_set, dmaLoggingBits: dl.bits_set, agree: t1.bitmap === dl.bitmap }, { type1Bits: 0, dmaLoggingBits: 0, agree: true, note: 'idle device: no writes to observe' });
    },
  };
}

