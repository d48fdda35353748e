import type { AgentClient } from '../../harness/agent/client.js';
import type { AnyReply } from '../../harness/agent/protocol.js';
import type { Target } from '../../harness/target/target.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import type { CaseDef, CaseOutcome, Suite } from '../types.js';
import { skipCases } from '../types.js';
import { HarnessError } from '../../base/errors.js';
import { createMtty, removeMtty } from '../migration/devices.js';
import { Checks } from '../migration/steps.js';
import { IOMMUFD, MOCK, Iommufd, errOf, mockUnavailable, outcome, type MockDev } from '../dirty/api.js';
import { DEVICE_LISTED, deviceCases, setupDevice, teardownDevice, type DeviceState } from './device-cases.js';

/**
 * PASID attach / replace / detach (vfio-uapi.md §3). On kernels with VFIO_DEVICE_ATTACH_PASID (7.2)
 * the rules are exercised on the IOMMUFD_TEST PASID-capable mock device (MOCK_FLAGS_DEVICE_PASID,
 * 20 PASID bits) through the selftest PASID ops, which call iommufd_device_attach/replace/detach
 * with a PASID exactly as vfio-pci's pasid_attach_ioas does; and at the VFIO layer on mtty, a device
 * without PASID ops. On kernels without it (6.12) every case is "expected unsupported" and asserts
 * that the kernel refuses the flag. The pasid/device/* cases (./device-cases.ts) prove the success
 * paths through vfio-pci on our QEMU's PASID DMA device, with its PASID-tagged DMA; each result's
 * device says where it ran (fingerprint.ranOn: iommufd-mock, mtty or device).
 */

const VFIO_ATTACH_PASID = 1; // VFIO_DEVICE_ATTACH_PASID / VFIO_DEVICE_DETACH_PASID
const P1 = 100;
const P2 = 200;

interface Supported {
  kind: 'supported';
  fd: Iommufd;
  ioas: number;
  /** PASID-capable mock device, RID on the IOAS's auto domain at setup */
  dev: MockDev;
  /** a mock device without PASID (max_pasids 0) */
  plainDev: MockDev;
  /** two PASID-compatible paging HWPTs and one that is not */
  s2: number;
  s2b: number;
  nonPasid: number;
}

interface Unsupported {
  kind: 'unsupported';
  /** what the kernel said to each probe of the missing uAPI */
  probes: Record<string, string>;
}

export interface PasidState {
  agent: AgentClient;
  mode: Supported | Unsupported;
  /** mtty through its cdev (bound, RID attached to an IOAS), or why not */
  mtty?: { dev: number; ioas: number; iommufd: number };
  mttyError?: string;
  uuids: string[];
  /** the PASID DMA device (pasid/device/* cases), or why not */
  device: DeviceState;
}

type Case = CaseDef<PasidState>;

/** What each case needs of the kernel, and how its absence is asserted on a kernel without PASID. */
const UNSUPPORTED_PROBE: Record<string, { probe: string; want: string }> = {
  vfio: { probe: 'vfioAttach', want: 'EINVAL' },
  vfioDetach: { probe: 'vfioDetach', want: 'EINVAL' },
  mock: { probe: 'mockPasidDevice', want: 'EINVAL' },
  hwpt: { probe: 'hwptAllocPasid', want: 'EOPNOTSUPP' },
};

const WHY_UNSUPPORTED = 'this kernel\'s uAPI has no VFIO_DEVICE_ATTACH_PASID (PASID attach through VFIO cdev + iommufd arrived in 6.15; the 6.12 tree lacks it)';

function pasidCase(id: string, device: DeviceInfo, needs: keyof typeof UNSUPPORTED_PROBE, run: (m: Supported, s: PasidState, c: Checks, obs: Record<string, unknown>) => Promise<Record<string, unknown>>): Case {
  return {
    id,
    device,
    async run(s): Promise<CaseOutcome> {
      if (s.mode.kind === 'unsupported') {
        const { probe, want } = UNSUPPORTED_PROBE[needs]!;
        const got = s.mode.probes[probe];
        const c = new Checks();
        c.eq(`the kernel refuses the missing uAPI (${probe})`, got, want);
        return c.passed
          ? { status: 'expected-unsupported', reason: `${WHY_UNSUPPORTED}; asserted: ${probe} gave ${got}`, observed: { [probe]: got }, expected: { [probe]: want } }
          : { status: 'fail', reason: `headers lack PASID uAPI but the kernel did not refuse it: ${c.reason()}`, observed: { [probe]: got }, expected: { [probe]: want } };
      }
      const c = new Checks();
      const obs: Record<string, unknown> = {};
      const exp = await run(s.mode, s, c, obs);
      return outcome(c, obs, exp);
    },
  };
}

/** The id a PASID is attached to, per the selftest's CHECK_HWPT (0 = detached); OK means "matches". */
async function check(m: Supported, pasid: number, hwpt: number): Promise<string> {
  return errOf(await m.fd.pasid(m.dev.stdev, 'check', pasid, hwpt));
}

function mockCases(device: DeviceInfo): Case[] {
  const E = (r: AnyReply) => errOf(r);
  return [
    pasidCase('pasid/mock/hw-info', device, 'mock', async (m, _s, c, obs) => {
      const a = await m.fd.hwInfo(m.dev.idev);
      const b = await m.fd.hwInfo(m.plainDev.idev);
      obs.pasidDevice = a.max_pasid_log2;
      obs.plainDevice = b.max_pasid_log2;
      c.eq('out_max_pasid_log2 of the PASID mock device', a.max_pasid_log2, MOCK.PASID_WIDTH);
      c.eq('out_max_pasid_log2 of a mock device without PASID', b.max_pasid_log2, 0);
      return { pasidDevice: MOCK.PASID_WIDTH, plainDevice: 0 };
    }),
    pasidCase('pasid/mock/attach-while-rid-not-compatible', device, 'mock', async (m, _s, c, obs) => {
      // RID still on the IOAS auto domain, which is never PASID-compatible.
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'attach', P1, m.s2));
      c.eq('PASID attach while the RID sits on a non-PASID domain', obs.errno, 'EINVAL');
      obs.detached = await check(m, P1, 0);
      c.eq('PASID still detached', obs.detached, 'OK');
      return { errno: 'EINVAL', detached: 'OK' };
    }),
    pasidCase('pasid/mock/attach', device, 'mock', async (m, _s, c, obs) => {
      const rid = await m.fd.mockReplace(m.dev.stdev, m.s2);
      obs.ridToPasidHwpt = E(rid);
      c.eq('RID replaced onto a PASID-compatible HWPT', obs.ridToPasidHwpt, 'OK');
      const r = await m.fd.pasid(m.dev.stdev, 'attach', P1, m.s2);
      obs.attach = E(r);
      obs.ptIdEcho = r.pt_id === m.s2;
      obs.check = await check(m, P1, m.s2);
      c.eq(`attach PASID ${P1}`, obs.attach, 'OK');
      c.eq('pt_id echoed', obs.ptIdEcho, true);
      c.eq('PASID now on that HWPT', obs.check, 'OK');
      return { ridToPasidHwpt: 'OK', attach: 'OK', ptIdEcho: true, check: 'OK' };
    }),
    pasidCase('pasid/mock/attach-twice', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'attach', P1, m.s2b));
      obs.check = await check(m, P1, m.s2);
      c.eq('second attach of the same PASID (iommufd level; VFIO would turn it into a replace)', obs.errno, 'EBUSY');
      c.eq('still on the first HWPT', obs.check, 'OK');
      return { errno: 'EBUSY', check: 'OK' };
    }),
    pasidCase('pasid/mock/replace', device, 'mock', async (m, _s, c, obs) => {
      obs.replace = E(await m.fd.pasid(m.dev.stdev, 'replace', P1, m.s2b));
      obs.check = await check(m, P1, m.s2b);
      obs.replaceSame = E(await m.fd.pasid(m.dev.stdev, 'replace', P1, m.s2b));
      c.eq('replace onto another PASID-compatible HWPT', obs.replace, 'OK');
      c.eq('PASID now on the new HWPT', obs.check, 'OK');
      c.eq('replace onto the same HWPT (no-op)', obs.replaceSame, 'OK');
      return { replace: 'OK', check: 'OK', replaceSame: 'OK' };
    }),
    pasidCase('pasid/mock/replace-to-ioas', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'replace', P1, m.ioas));
      obs.check = await check(m, P1, m.s2b);
      c.eq('replace onto an IOAS (its auto domain is never PASID-compatible)', obs.errno, 'EINVAL');
      c.eq('a failed replace leaves the old HWPT', obs.check, 'OK');
      return { errno: 'EINVAL', check: 'OK' };
    }),
    pasidCase('pasid/mock/replace-to-non-pasid-hwpt', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'replace', P1, m.nonPasid));
      obs.check = await check(m, P1, m.s2b);
      c.eq('replace onto a HWPT allocated without IOMMU_HWPT_ALLOC_PASID', obs.errno, 'EINVAL');
      c.eq('old HWPT kept', obs.check, 'OK');
      return { errno: 'EINVAL', check: 'OK' };
    }),
    pasidCase('pasid/mock/rid-to-non-compatible-while-pasid-attached', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.mockReplace(m.dev.stdev, m.nonPasid));
      c.eq('RID replace onto a non-PASID HWPT while a PASID is attached', obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    pasidCase('pasid/mock/replace-unattached', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'replace', P2, m.s2));
      c.eq(`replace of PASID ${P2}, never attached`, obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    pasidCase('pasid/mock/detach', device, 'mock', async (m, _s, c, obs) => {
      obs.detach = E(await m.fd.pasid(m.dev.stdev, 'detach', P1));
      obs.detached = await check(m, P1, 0);
      c.eq(`detach PASID ${P1}`, obs.detach, 'OK');
      c.eq('PASID has no domain afterwards', obs.detached, 'OK');
      return { detach: 'OK', detached: 'OK' };
    }),
    pasidCase('pasid/mock/detach-never-attached', device, 'mock', async (m, _s, c, obs) => {
      obs.detach = E(await m.fd.pasid(m.dev.stdev, 'detach', 300));
      c.eq('detach of a PASID never attached (not an error)', obs.detach, 'OK');
      return { detach: 'OK' };
    }),
    pasidCase('pasid/mock/attach-ioas', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'attach', P1, m.ioas));
      obs.detached = await check(m, P1, 0);
      c.eq('PASID attach with pt_id = IOAS', obs.errno, 'EINVAL');
      c.eq('PASID stays detached', obs.detached, 'OK');
      return { errno: 'EINVAL', detached: 'OK' };
    }),
    pasidCase('pasid/mock/attach-non-pasid-hwpt', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.dev.stdev, 'attach', P1, m.nonPasid));
      c.eq('PASID attach to a HWPT allocated without IOMMU_HWPT_ALLOC_PASID', obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    pasidCase('pasid/mock/pasid-range', device, 'mock', async (m, _s, c, obs) => {
      const max = 1 << MOCK.PASID_WIDTH;
      obs.lastValid = E(await m.fd.pasid(m.dev.stdev, 'attach', max - 1, m.s2));
      if (obs.lastValid === 'OK') await m.fd.pasid(m.dev.stdev, 'detach', max - 1);
      obs.outOfRange = E(await m.fd.pasid(m.dev.stdev, 'attach', max, m.s2));
      obs.outOfRangeDetached = await check(m, max, 0);
      c.eq(`PASID 2^${MOCK.PASID_WIDTH}-1 (last in range)`, obs.lastValid, 'OK');
      c.eq(`PASID 2^${MOCK.PASID_WIDTH} (max_pasids of the device)`, obs.outOfRange, 'EINVAL');
      c.eq('the out-of-range PASID has no domain', obs.outOfRangeDetached, 'OK');
      return { lastValid: 'OK', outOfRange: 'EINVAL', outOfRangeDetached: 'OK' };
    }),
    pasidCase('pasid/mock/device-without-pasid', device, 'mock', async (m, _s, c, obs) => {
      obs.errno = E(await m.fd.pasid(m.plainDev.stdev, 'attach', P1, m.s2));
      c.eq('PASID attach on a mock device with max_pasids 0', obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    pasidCase('pasid/mock/replace-failure-keeps-old', device, 'mock', async (m, _s, c, obs) => {
      // The mock fails the second non-blocking set on PASID 1024 (IOMMU_TEST_PASID_RESERVED) with
      // ENOMEM: the core must roll back to the old domain.
      const p = MOCK.PASID_RESERVED;
      obs.attach = E(await m.fd.pasid(m.dev.stdev, 'attach', p, m.s2));
      obs.replace = E(await m.fd.pasid(m.dev.stdev, 'replace', p, m.s2b));
      obs.check = await check(m, p, m.s2);
      obs.detach = E(await m.fd.pasid(m.dev.stdev, 'detach', p));
      c.eq('attach PASID 1024', obs.attach, 'OK');
      c.eq('replace that the driver fails', obs.replace, 'ENOMEM');
      c.eq('PASID still on the old HWPT', obs.check, 'OK');
      c.eq('detach', obs.detach, 'OK');
      return { attach: 'OK', replace: 'ENOMEM', check: 'OK', detach: 'OK' };
    }),
    pasidCase('pasid/mock/hwpt-alloc-pasid', device, 'hwpt', async (m, _s, c, obs) => {
      const r = await m.fd.hwptAlloc(m.dev.idev, m.ioas, IOMMUFD.HWPT_ALLOC_PASID);
      obs.errno = E(r);
      if (r.ok) await m.fd.destroy(r.hwpt);
      c.eq('IOMMU_HWPT_ALLOC with IOMMU_HWPT_ALLOC_PASID (mock accepts it)', obs.errno, 'OK');
      return { errno: 'OK' };
    }),
  ];
}

function vfioCases(device: DeviceInfo, emulatedWhy: string): Case[] {
  const withMtty = (id: string, needs: 'vfio' | 'vfioDetach', fn: (s: PasidState, mt: NonNullable<PasidState['mtty']>, c: Checks, obs: Record<string, unknown>) => Promise<Record<string, unknown>>): Case => {
    const inner = pasidCase(id, device, needs, async (_m, s, c, obs) => {
      if (!s.mtty) throw new HarnessError(`mtty not available: ${s.mttyError ?? 'unknown'}`);
      return fn(s, s.mtty, c, obs);
    });
    return inner;
  };
  return [
    withMtty('pasid/vfio/mtty-attach', 'vfio', async (s, mt, c, obs) => {
      obs.errno = errOf(await s.agent.request('vfio_attach_pt', { dev: mt.dev, pt_id: mt.ioas, flags: VFIO_ATTACH_PASID, pasid: P1 }));
      c.eq('VFIO_DEVICE_ATTACH_IOMMUFD_PT with VFIO_DEVICE_ATTACH_PASID on mtty (no pasid_attach_ioas)', obs.errno, 'EOPNOTSUPP');
      return { errno: 'EOPNOTSUPP' };
    }),
    withMtty('pasid/vfio/mtty-detach', 'vfioDetach', async (s, mt, c, obs) => {
      obs.errno = errOf(await s.agent.request('vfio_detach_pt', { dev: mt.dev, flags: VFIO_ATTACH_PASID, pasid: P1 }));
      c.eq('VFIO_DEVICE_DETACH_IOMMUFD_PT with VFIO_DEVICE_DETACH_PASID on mtty', obs.errno, 'EOPNOTSUPP');
      return { errno: 'EOPNOTSUPP' };
    }),
    withMtty('pasid/vfio/attach-unknown-flag', 'vfio', async (s, mt, c, obs) => {
      obs.errno = errOf(await s.agent.request('vfio_attach_pt', { dev: mt.dev, pt_id: mt.ioas, flags: 2, pasid: P1 }));
      c.eq('ATTACH with flag bit 1', obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    withMtty('pasid/vfio/detach-unknown-flag', 'vfioDetach', async (s, mt, c, obs) => {
      obs.errno = errOf(await s.agent.request('vfio_detach_pt', { dev: mt.dev, flags: 2 }));
      c.eq('DETACH with flag bit 1', obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    {
      id: 'pasid/vfio/emulated-pci-device',
      device: { driver: 'vfio-pci', class: 'emulated', id: '-' },
      async run() {
        return { status: 'skip', reason: emulatedWhy };
      },
    },
  ];
}

async function setupSupported(agent: AgentClient): Promise<Supported> {
  const fd = await Iommufd.open(agent);
  const ioas = await fd.ioas();
  const dev = await fd.mustMockDomain(ioas, MOCK.FLAGS_DEVICE_PASID);
  const plainDev = await fd.mustMockDomain(ioas, 0);
  const s2 = await fd.mustHwpt(dev.idev, ioas, IOMMUFD.HWPT_ALLOC_PASID);
  const s2b = await fd.mustHwpt(dev.idev, ioas, IOMMUFD.HWPT_ALLOC_PASID);
  const nonPasid = await fd.mustHwpt(dev.idev, ioas, 0);
  return { kind: 'supported', fd, ioas, dev, plainDev, s2, s2b, nonPasid };
}

/** Ask the kernel for each missing piece once; every case then asserts the answer it depends on. */
async function probeUnsupported(agent: AgentClient, mtty: PasidState['mtty'], mockWhy?: string): Promise<Unsupported> {
  const probes: Record<string, string> = {};
  if (mtty) {
    probes.vfioAttach = errOf(await agent.request('vfio_attach_pt', { dev: mtty.dev, pt_id: mtty.ioas, flags: VFIO_ATTACH_PASID, pasid: P1 }));
    probes.vfioDetach = errOf(await agent.request('vfio_detach_pt', { dev: mtty.dev, flags: VFIO_ATTACH_PASID, pasid: P1 }));
  }
  // Without the mock (6.12 behind a hardware IOMMU) only the VFIO probes can be asked; the mock cases skip.
  if (mockWhy) return { kind: 'unsupported', probes };
  const fd = await Iommufd.open(agent);
  const ioas = await fd.ioas();
  const m = await fd.mockDomain(ioas, MOCK.FLAGS_DEVICE_PASID);
  probes.mockPasidDevice = errOf(m);
  const plain = await fd.mustMockDomain(ioas);
  probes.hwptAllocPasid = errOf(await fd.hwptAlloc(plain.idev, ioas, IOMMUFD.HWPT_ALLOC_PASID));
  await fd.close();
  return { kind: 'unsupported', probes };
}

const MOCK_LISTED: DeviceInfo = { driver: 'iommufd_mock', class: 'none', id: '-' };

export const pasidSuite: Suite<PasidState> = {
  name: 'pasid',
  async setup(target: Target, agent: AgentClient) {
    const uapi = agent.hello?.uapi ?? {};
    const state: PasidState = { agent, uuids: [], mode: { kind: 'unsupported', probes: {} }, device: { kind: 'absent', why: 'not set up' } };
    try {
      const [m] = await createMtty(target, 'mtty-1', 1);
      state.uuids = [m!.uuid];
      const o = await agent.request('open_cdev', { path: m!.cdev });
      if (o.ok) state.mtty = { dev: o.dev, ioas: o.ioas, iommufd: o.iommufd };
      else state.mttyError = `open_cdev: ${o.err} at ${o.where ?? '?'}`;
    } catch (e) {
      state.mttyError = (e as Error).message;
    }
    const probeFd = await Iommufd.open(agent);
    const mockWhy = await mockUnavailable(probeFd, await probeFd.ioas());
    await probeFd.close();
    if (!uapi.attach_pasid) state.mode = await probeUnsupported(agent, state.mtty, mockWhy);
    else if (!mockWhy) state.mode = await setupSupported(agent);
    else state.mode = { kind: 'unsupported', probes: {} };
    const mockDev: DeviceInfo = { driver: 'iommufd_mock', class: 'none', id: 'IOMMUFD_TEST (MOCK_FLAGS_DEVICE_PASID)', fingerprint: {
      ranOn: 'iommufd-mock', attachPasidUapi: !!uapi.attach_pasid, ...(state.mode.kind === 'unsupported' ? { probes: state.mode.probes } : {}) } };
    const mttyDev: DeviceInfo = { driver: 'mtty', class: 'sample', id: 'mtty-1', fingerprint: { ranOn: 'mtty', instance: state.uuids[0] } };
    const dev = await setupDevice(target, agent, !!uapi.attach_pasid);
    state.device = dev.state;
    const profile = target.facts.profile ?? target.name;
    const emulatedWhy = `the successful PASID attach through VFIO is tested by the pasid/device/* cases, on our QEMU's PASID DMA `
      + `device (profile intel-iommu-pasid; this is '${profile}'); QEMU's edu has no PASID capability: the dma suite's `
      + 'dma/pasid/* cases check how vfio-pci treats such a device';
    const mock = mockCases(mockDev);
    // With the uAPI present, every case (VFIO ones too) runs against the mock-backed setup.
    const vfio = vfioCases(mttyDev, emulatedWhy);
    return { state, cases: [...(mockWhy ? skipCases(mock, mockWhy) : mock), ...(mockWhy && uapi.attach_pasid ? skipCases(vfio, mockWhy) : vfio), ...deviceCases(dev.device)] };
  },
  list: () => [...mockCases(MOCK_LISTED), ...vfioCases(MOCK_LISTED, ''), ...deviceCases(DEVICE_LISTED)].map((c) => ({ id: c.id, known: 'static' as const })),
  async teardown(state, target, agent) {
    if (state.mode.kind === 'supported') await state.mode.fd.close();
    if (state.mtty) {
      await agent.request('close', { fd: state.mtty.dev });
      await agent.request('close', { fd: state.mtty.iommufd });
    }
    if (state.uuids.length) await removeMtty(target, state.uuids).catch(() => undefined);
    await teardownDevice(state.device, agent);
  },
};
