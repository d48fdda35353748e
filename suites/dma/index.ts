/**
 * Real DMA through the (v)IOMMU: QEMU's edu device bound to vfio-pci, programmed by the agent, its
 * transfers checked in memory and its faults in the console (vfio-uapi.md §2, §3; environment.md
 * "Devices"). Three ways in: the iommufd cdev (IOAS mappings, HWPT dirty capability, PASID on a
 * device without PASID), and a legacy type1 container (mappings, DIRTY_PAGES after a real write).
 */
import type { AgentClient } from '../../harness/agent/client.js';
import type { AnyReply } from '../../harness/agent/protocol.js';
import type { Target } from '../../harness/target/target.js';
import type { ConsoleFault, DeviceInfo } from '../../base/results/schema.js';
import { HarnessError } from '../../base/errors.js';
import type { CaseContext, CaseDef, CaseOutcome, Suite } from '../types.js';
import { skipCases } from '../types.js';
import { Checks } from '../migration/steps.js';
import { IOMMUFD, Iommufd, errOf, must, outcome } from '../dirty/api.js';
import { bindEdu, EduEngine, EDU, findEdu, type BoundEdu } from './edu.js';
import { fromHex } from '../dirty/bitmap.js';

const PAGE = 4096;
/** IOMMU_IOAS_MAP_* and VFIO_DMA_MAP_FLAG_* */
const MAP = { FIXED_IOVA: 1, WRITEABLE: 2, READABLE: 4 } as const;
const T1 = { READ: 1, WRITE: 2 } as const;
const VFIO_ATTACH_PASID = 1;
/** bytes of a write that is meant to fault */
const FAULTING_WRITE = 4;
/** IOMMU_HW_INFO_TYPE_* (include/uapi/linux/iommufd.h, 7.2) */
const HW_TYPE = { NONE: 0, INTEL_VTD: 1, ARM_SMMUV3: 2, AMD: 4 } as const;
/** one IOVA window per case, below edu's 28-bit DMA mask and clear of the arm64 MSI window at 128 MiB */
const iovaFor = (slot: number) => 0x0100_0000 + slot * 0x10_0000;

interface CdevSession {
  fd: Iommufd;
  dev: number;
  ioas: number;
  devid: number;
  /** the auto-domain HWPT the RID was attached to */
  ptId: number;
}
interface GroupSession {
  dev: number;
  container: number;
  groupFd: number;
}

export interface DmaState {
  agent: AgentClient;
  target: Target;
  edu: BoundEdu;
  cdev?: CdevSession;
  group?: GroupSession;
  allocations: { addr: number; length: number }[];
  /** what /sys/class/iommu says the IOMMU is: the hw_info type it must report */
  sysIommu: string;
  /** the IOMMU drivers' iommufd options the running kernel has (from /proc/config.gz) */
  iommuConfig: Set<string>;
  /** patterns handed out on this target, so each differs from the last */
  patterns: number;
}

/** A pattern that differs per call, so a stale buffer can never pass for a fresh transfer. */
function pattern(st: DmaState, n: number): string {
  const s = ++st.patterns;
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + s * 31 + (i >> 8)) & 0xff)).toString('hex');
}

async function alloc(s: DmaState, length: number): Promise<number> {
  const r = await must(s.agent, 'mem_alloc', { length }, 'mem_alloc');
  s.allocations.push({ addr: r.addr, length });
  return r.addr;
}

const memRead = async (s: DmaState, addr: number, length: number) => (await must(s.agent, 'mem_read', { addr, length })).data;
const memWrite = (s: DmaState, addr: number, hex: string) => must(s.agent, 'mem_write', { addr, data: hex });

/** The iommufd path: closes the group session first (a device is open through one path at a time). */
async function openCdev(s: DmaState): Promise<CdevSession> {
  if (s.cdev) return s.cdev;
  if (!s.edu.device.cdev) throw new HarnessError(`${s.edu.bdf} has no VFIO device cdev`);
  await closeGroup(s);
  const r = await s.agent.request('open_cdev', { path: s.edu.device.cdev });
  if (!r.ok) throw new HarnessError(`opening ${s.edu.device.cdev} through iommufd failed at ${r.where ?? '?'}: ${r.err}`);
  s.cdev = { fd: new Iommufd(s.agent, r.iommufd), dev: r.dev, ioas: r.ioas, devid: r.devid, ptId: r.pt_id };
  await new EduEngine(s.agent, s.cdev.dev).enableBusMaster();
  return s.cdev;
}

/** The legacy path: closes the cdev session first (a device is open through one path at a time). */
async function openGroup(s: DmaState): Promise<GroupSession> {
  if (s.group) return s.group;
  await closeCdev(s);
  if (!s.edu.device.iommuGroup) throw new HarnessError(`${s.edu.bdf} has no IOMMU group`);
  const r = await s.agent.request('open_group', { group: Number(s.edu.device.iommuGroup), device: s.edu.bdf });
  if (!r.ok) throw new HarnessError(`opening group ${s.edu.device.iommuGroup} (${s.edu.bdf}) failed at ${r.where ?? '?'}: ${r.err}`);
  s.group = { dev: r.dev, container: r.container, groupFd: r.group_fd };
  await new EduEngine(s.agent, s.group.dev).enableBusMaster();
  return s.group;
}

async function closeGroup(s: DmaState): Promise<void> {
  if (!s.group) return;
  for (const fd of [s.group.dev, s.group.groupFd, s.group.container]) await s.agent.request('close', { fd });
  s.group = undefined;
}

async function closeCdev(s: DmaState): Promise<void> {
  if (!s.cdev) return;
  await s.agent.request('close', { fd: s.cdev.dev });
  await s.cdev.fd.close();
  s.cdev = undefined;
}

/**
 * Wait for this case's IOMMU fault to be printed: the vIOMMU reports it from an interrupt, after the
 * transfer "finished". Waiting here also keeps a late report from landing on the next case.
 */
async function iommuFaults(target: Target, mark: number, waitMs: number): Promise<ConsoleFault[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const f = target.faultsSince(mark).filter((x) => x.kind === 'iommu-fault');
    if (f.length || Date.now() > deadline) return f;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The vIOMMU models that report a translation fault to the guest (QEMU's amd-iommu logs none). */
function reportsFaults(sysIommu: string): boolean {
  return !/^ivhd/.test(sysIommu);
}

/**
 * AMD-Vi and SMMUv3 answer IOMMU_GET_HW_INFO with their own type only when built with their iommufd
 * part (AMD_IOMMU_IOMMUFD, EXPERIMENTAL; ARM_SMMU_V3_IOMMUFD, 6.14+); otherwise the core says NONE.
 */
function expectedHwType(sysIommu: string, config: Set<string>): number | undefined {
  if (/^dmar/.test(sysIommu)) return HW_TYPE.INTEL_VTD;
  if (/^ivhd/.test(sysIommu)) return config.has('CONFIG_AMD_IOMMU_IOMMUFD') ? HW_TYPE.AMD : HW_TYPE.NONE;
  if (/^smmu3\./.test(sysIommu)) return config.has('CONFIG_ARM_SMMU_V3_IOMMUFD') ? HW_TYPE.ARM_SMMUV3 : HW_TYPE.NONE;
  if (/virtio|^\d+:/.test(sysIommu)) return HW_TYPE.NONE;
  return undefined;
}

/** RAM -> edu -> RAM through two IOVAs, both mapped: the second buffer must equal the first. */
async function roundTrip(engine: EduEngine, s: DmaState, src: { iova: number; addr: number }, dst: { iova: number; addr: number }, n: number): Promise<{ sent: string; got: string; ms: number }> {
  const sent = pattern(s, n);
  await memWrite(s, src.addr, sent);
  await memWrite(s, dst.addr, '00'.repeat(n));
  const a = await engine.dma({ toRam: false, iova: src.iova, bufOffset: 0, count: n });
  const b = await engine.dma({ toRam: true, iova: dst.iova, bufOffset: 0, count: n });
  return { sent, got: await memRead(s, dst.addr, n), ms: a.ms + b.ms };
}

/**
 * A write to an IOVA that must not reach `addr`: the memory stays as it was and the vIOMMU reports
 * the fault for this step. AMD's emulation reports nothing: a warning there, the memory still counts.
 */
async function blockedWrite(engine: EduEngine, s: DmaState, ctx: CaseContext, iova: number, addr: number | undefined, what: string): Promise<CaseOutcome> {
  const c = new Checks();
  const before = addr === undefined ? undefined : await memRead(s, addr, EDU.MAX_DMA);
  // a fresh pattern in the device buffer, so an escaped write would show
  const src = await alloc(s, PAGE);
  const srcIova = iovaFor(15);
  const m = await mustMapCdevOrGroup(s, srcIova, src, PAGE);
  await memWrite(s, src, pattern(s, EDU.MAX_DMA));
  await engine.dma({ toRam: false, iova: srcIova, bufOffset: 0, count: EDU.MAX_DMA });
  await m.unmap();
  const mark = ctx.target.faultMark();
  // One 4-byte access: virtio-iommu reports a fault per access, and the kernel prints them rate-limited
  // (10 per 5 s per call site); a 2 KiB write would use up the burst and hide the next cases' faults.
  await engine.dma({ toRam: true, iova, bufOffset: 0, count: FAULTING_WRITE });
  const faults = await iommuFaults(ctx.target, mark, reportsFaults(s.sysIommu) ? 6000 : 1000);
  const after = addr === undefined ? undefined : await memRead(s, addr, EDU.MAX_DMA);
  if (addr !== undefined) c.eq(`memory behind ${what} unchanged`, after === before, true);
  c.ok('the fault is pinned on this step', faults.every((f) => f.step === ctx.id), faults.map((f) => f.step ?? '(no step)').join(', '));
  const observed = { faultReported: faults.length > 0, faultTitle: faults[0]?.title, ...(addr === undefined ? {} : { memoryUnchanged: after === before }) };
  if (!faults.length) {
    if (!reportsFaults(s.sysIommu)) {
      return { status: c.passed ? 'warning' : 'fail', reason: c.reason() ?? `the write to ${what} was blocked, but this vIOMMU (${s.sysIommu}) reported no fault to the guest (QEMU's amd-iommu logs no I/O page faults)`, observed, expected: { faultReported: true } };
    }
    c.ok(`an IOMMU fault reported for the write to ${what}`, false, 'none in the console within 6 s');
  }
  return outcome(c, observed, { faultReported: true, ...(addr === undefined ? {} : { memoryUnchanged: true }) });
}

/** Map through whichever path is open (cdev IOAS or type1 container); returns its unmap. */
async function mustMapCdevOrGroup(s: DmaState, iova: number, addr: number, length: number, readOnly = false): Promise<{ unmap(): Promise<void> }> {
  if (s.cdev) {
    const { fd, ioas } = s.cdev;
    await must(s.agent, 'ioas_map', { iommufd: fd.fd, ioas, iova, length, addr, flags: MAP.FIXED_IOVA | MAP.READABLE | (readOnly ? 0 : MAP.WRITEABLE) }, `IOMMU_IOAS_MAP 0x${iova.toString(16)}`);
    return { unmap: async () => void (await must(s.agent, 'ioas_unmap', { iommufd: fd.fd, ioas, iova, length }, 'IOMMU_IOAS_UNMAP')) };
  }
  if (s.group) {
    const container = s.group.container;
    await must(s.agent, 'container_map', { container, iova, size: length, addr, flags: T1.READ | (readOnly ? 0 : T1.WRITE) }, `VFIO_IOMMU_MAP_DMA 0x${iova.toString(16)}`);
    return { unmap: async () => void (await must(s.agent, 'container_unmap', { container, iova, size: length }, 'VFIO_IOMMU_UNMAP_DMA')) };
  }
  throw new HarnessError('edu is not open');
}

/** RAM -> edu -> RAM through two fresh mappings of whichever path is open: what the device read, it wrote back. */
async function mappedRoundTrip(s: DmaState, dev: number): Promise<CaseOutcome> {
  const [a, b] = [await alloc(s, PAGE), await alloc(s, PAGE)];
  const ma = await mustMapCdevOrGroup(s, iovaFor(1), a, PAGE);
  const mb = await mustMapCdevOrGroup(s, iovaFor(2), b, PAGE);
  const r = await roundTrip(new EduEngine(s.agent, dev), s, { iova: iovaFor(1), addr: a }, { iova: iovaFor(2), addr: b }, EDU.MAX_DMA);
  await ma.unmap();
  await mb.unmap();
  const c = new Checks();
  c.ok('bytes the device wrote equal the bytes it read', r.got === r.sent, `first differing byte at ${firstDiff(r.sent, r.got)}`);
  return outcome(c, { bytes: EDU.MAX_DMA, identical: r.got === r.sent }, { identical: true });
}

/** A write after the unmap must not land in the old page: a stale IOTLB entry would let it. */
async function unmapThenWrite(s: DmaState, ctx: CaseContext, dev: number, what: string): Promise<CaseOutcome> {
  const engine = new EduEngine(s.agent, dev);
  const [a, b] = [await alloc(s, PAGE), await alloc(s, PAGE)];
  const ma = await mustMapCdevOrGroup(s, iovaFor(4), a, PAGE);
  const mb = await mustMapCdevOrGroup(s, iovaFor(5), b, PAGE);
  const warm = await roundTrip(engine, s, { iova: iovaFor(4), addr: a }, { iova: iovaFor(5), addr: b }, EDU.MAX_DMA);
  await ma.unmap();
  await mb.unmap();
  if (warm.got !== warm.sent) return { status: 'fail', reason: 'the mapped transfer before the unmap did not arrive', observed: { warmed: false } };
  await memWrite(s, b, '00'.repeat(EDU.MAX_DMA));
  return blockedWrite(engine, s, ctx, iovaFor(5), b, what);
}

function eduCase(id: string, device: DeviceInfo, run: (s: DmaState, ctx: CaseContext) => Promise<CaseOutcome>, faults = false): CaseDef<SuiteState> {
  return {
    id, device, ...(faults ? { expectedFaults: ['iommu-fault'] } : {}), timeoutMs: 60_000,
    // an unbound edu turns every case into a skip (skipCases), so a case never runs on one
    run: (s, ctx) => ('why' in s ? Promise.reject(new HarnessError(s.why)) : run(s, ctx)),
  };
}

function iommufdCases(device: DeviceInfo): CaseDef<SuiteState>[] {
  return [
    eduCase('dma/edu/hw-info', device, async (s) => {
      const { fd, devid } = await openCdev(s);
      const hw = await fd.hwInfo(devid);
      const c = new Checks();
      c.eq('IOMMU_GET_HW_INFO', errOf(hw), 'OK');
      const want = expectedHwType(s.sysIommu, s.iommuConfig);
      if (want !== undefined) c.eq(`hw_info type for ${s.sysIommu}`, hw.type, want);
      // edu has no PASID capability: the usable PASID width must be 0 whatever the IOMMU offers
      c.eq('out_max_pasid_log2 of a device without PASID', hw.max_pasid_log2, 0);
      return outcome(c, { type: hw.type, capabilities: hw.capabilities, maxPasidLog2: hw.max_pasid_log2, dataLen: hw.data_len }, { type: want ?? 'any', maxPasidLog2: 0 });
    }),
    eduCase('dma/edu/round-trip-mapped', device, async (s) => mappedRoundTrip(s, (await openCdev(s)).dev)),
    eduCase('dma/edu/write-unmapped-faults', device, async (s, ctx) => {
      const { dev } = await openCdev(s);
      return blockedWrite(new EduEngine(s.agent, dev), s, ctx, iovaFor(3), undefined, 'a never-mapped IOVA');
    }, true),
    eduCase('dma/edu/unmap-then-write', device, async (s, ctx) => {
      const { dev } = await openCdev(s);
      return unmapThenWrite(s, ctx, dev, 'an IOVA unmapped after use');
    }, true),
    eduCase('dma/edu/read-only-mapping', device, async (s, ctx) => {
      const { dev } = await openCdev(s);
      const engine = new EduEngine(s.agent, dev);
      const ro = await alloc(s, PAGE);
      const sent = pattern(s, EDU.MAX_DMA);
      await memWrite(s, ro, sent);
      const m = await mustMapCdevOrGroup(s, iovaFor(6), ro, PAGE, true);
      // the device may read it ...
      await engine.dma({ toRam: false, iova: iovaFor(6), bufOffset: 0, count: EDU.MAX_DMA });
      const back = await alloc(s, PAGE);
      const mb = await mustMapCdevOrGroup(s, iovaFor(7), back, PAGE);
      await engine.dma({ toRam: true, iova: iovaFor(7), bufOffset: 0, count: EDU.MAX_DMA });
      const readOk = (await memRead(s, back, EDU.MAX_DMA)) === sent;
      await mb.unmap();
      // ... and must not write it
      const o = await blockedWrite(engine, s, ctx, iovaFor(6), ro, 'a read-only mapping');
      await m.unmap();
      const c = new Checks();
      c.ok('the device read a read-only mapping', readOk);
      if (!c.passed) return { status: 'fail', reason: [c.reason(), o.reason].filter(Boolean).join('; '), observed: { ...o.observed, readOk } };
      return { ...o, observed: { ...o.observed, readOk } };
    }, true),
    eduCase('dma/iommufd/dirty-capability', device, async (s) => {
      // IOMMU_HW_CAP_DIRTY_TRACKING reported <=> HWPT_ALLOC with DIRTY_TRACKING succeeds; else EOPNOTSUPP.
      const { fd, devid, ioas } = await openCdev(s);
      const hw = await fd.hwInfo(devid);
      if (!hw.ok) return { status: 'fail', reason: `IOMMU_GET_HW_INFO failed: ${errOf(hw)}`, observed: { hwInfo: errOf(hw) } };
      const cap = (hw.capabilities & IOMMUFD.HW_CAP_DIRTY_TRACKING) !== 0;
      const a = await fd.hwptAlloc(devid, ioas, IOMMUFD.HWPT_ALLOC_DIRTY_TRACKING);
      if (a.ok) await fd.destroy(a.hwpt);
      const c = new Checks();
      c.eq('HWPT_ALLOC(DIRTY_TRACKING)', errOf(a), cap ? 'OK' : 'EOPNOTSUPP');
      return outcome(c, { capDirtyTracking: cap, hwptAllocDirty: errOf(a) }, { hwptAllocDirty: cap ? 'OK' : 'EOPNOTSUPP' });
    }),
    eduCase('dma/iommufd/dirty-bitmap-after-dma', device, async (s) => {
      const { fd, devid, ioas, dev } = await openCdev(s);
      const hw = await fd.hwInfo(devid);
      if (!hw.ok) return { status: 'fail', reason: `IOMMU_GET_HW_INFO failed: ${errOf(hw)}`, observed: { hwInfo: errOf(hw) } };
      if (!(hw.capabilities & IOMMUFD.HW_CAP_DIRTY_TRACKING)) {
        return { status: 'skip', reason: `the IOMMU (${s.sysIommu}) reports no IOMMU_HW_CAP_DIRTY_TRACKING; HWPT dirty tracking of a real DMA needs Intel SSADS, AMD HD or SMMUv3 HTTU (the *-dirty profiles: our QEMU emulates them)` };
      }
      return hwptDirtyAfterDma(s, fd, devid, ioas, dev);
    }),
  ];
}

/** A real IOMMU with dirty tracking: one DMA write must show up as exactly its page in the HWPT bitmap. */
async function hwptDirtyAfterDma(s: DmaState, fd: Iommufd, devid: number, ioas: number, dev: number): Promise<CaseOutcome> {
  const c = new Checks();
  const hwpt = await fd.mustHwpt(devid, ioas, IOMMUFD.HWPT_ALLOC_DIRTY_TRACKING);
  await must(s.agent, 'vfio_attach_pt', { dev, pt_id: hwpt }, 'attach the RID to the dirty-tracking HWPT');
  const len = 4 * PAGE;
  const [src, dst] = [await alloc(s, PAGE), await alloc(s, len)];
  const iovaSrc = iovaFor(8);
  const iovaDst = iovaFor(9);
  const ms = await mustMapCdevOrGroup(s, iovaSrc, src, PAGE);
  const md = await mustMapCdevOrGroup(s, iovaDst, dst, len);
  try {
    c.eq('enable tracking', errOf(await fd.tracking(hwpt, true)), 'OK');
    await fd.bitmap(hwpt, iovaDst, len, PAGE); // clear what the mapping itself left
    const engine = new EduEngine(s.agent, dev);
    await engine.dma({ toRam: false, iova: iovaSrc, bufOffset: 0, count: 64 });
    await engine.dma({ toRam: true, iova: iovaDst + 2 * PAGE, bufOffset: 0, count: 64 });
    const bm = await fd.bitmap(hwpt, iovaDst, len, PAGE);
    c.eq('GET_DIRTY_BITMAP', errOf(bm), 'OK');
    // the kernel's bitmap comes in whole u64 words: judge the pages, not the hex's length
    const pages = bm.ok ? fromHex(bm.bitmap as string, len / PAGE).bits.join(',') : '';
    c.eq('dirty pages after one write to page 2', pages, '2');
    await fd.tracking(hwpt, false);
    return outcome(c, { dirtyPages: pages, bitsSet: bm.bits_set }, { dirtyPages: '2' });
  } finally {
    await ms.unmap();
    await md.unmap();
    await s.agent.request('vfio_attach_pt', { dev, pt_id: ioas });
    await fd.destroy(hwpt);
  }
}

/** PASID through vfio-pci on a device without the PASID capability (vfio-uapi.md §3.3, §3.5). */
function pasidCases(device: DeviceInfo): CaseDef<SuiteState>[] {
  const attach = (s: DmaState, dev: number, pt: number, pasid: number, flags = VFIO_ATTACH_PASID) => s.agent.request('vfio_attach_pt', { dev, pt_id: pt, flags, pasid });
  const pasidUapi = (s: DmaState) => s.agent.hello?.uapi.attach_pasid === true;
  /** Before 7.2's PASID uAPI the flag is unknown and every PASID call is EINVAL. */
  const older = (s: DmaState, r: AnyReply, what: string): CaseOutcome | undefined => {
    if (pasidUapi(s)) return undefined;
    const got = errOf(r);
    return { status: got === 'EINVAL' ? 'expected-unsupported' : 'fail', reason: `this kernel has no VFIO PASID uAPI; ${what} gave ${got}, EINVAL expected for an unknown flag`, observed: { errno: got }, expected: { errno: 'EINVAL' } };
  };
  /** Why HWPT_ALLOC(PASID) said EOPNOTSUPP: the kernel has no such flag yet, or this IOMMU cannot. */
  const noPasidHwpt = (s: DmaState) => (pasidUapi(s)
    ? `this IOMMU (${s.sysIommu}) allocates no PASID-capable HWPT (EOPNOTSUPP)`
    : 'this kernel predates IOMMU_HWPT_ALLOC_PASID (6.15), so the flag is unknown (EOPNOTSUPP)');
  return [
    eduCase('dma/pasid/attach-ioas', device, async (s) => {
      const { dev, ioas } = await openCdev(s);
      const r = await attach(s, dev, ioas, 1);
      const o = older(s, r, 'ATTACH_PASID');
      if (o) return o;
      if (r.ok) await s.agent.request('vfio_detach_pt', { dev, flags: VFIO_ATTACH_PASID, pasid: 1 });
      const c = new Checks();
      c.eq('PASID attach with pt_id = IOAS on a device without PASID', errOf(r), 'EINVAL');
      return outcome(c, { errno: errOf(r) }, { errno: 'EINVAL' });
    }),
    eduCase('dma/pasid/pasid-hwpt-rid-on-auto-domain', device, async (s) => {
      const { fd, dev, ioas, devid } = await openCdev(s);
      const h = await fd.hwptAlloc(devid, ioas, IOMMUFD.HWPT_ALLOC_PASID);
      if (!h.ok) {
        const c = new Checks();
        c.eq('HWPT_ALLOC(PASID) where the IOMMU cannot', errOf(h), 'EOPNOTSUPP');
        return { ...outcome(c, { hwptAllocPasid: errOf(h) }, { hwptAllocPasid: 'OK or EOPNOTSUPP' }), ...(c.passed ? { status: 'expected-unsupported' as const, reason: noPasidHwpt(s) } : {}) };
      }
      const r = await attach(s, dev, h.hwpt, 1);
      const o = older(s, r, 'ATTACH_PASID');
      if (r.ok) await s.agent.request('vfio_detach_pt', { dev, flags: VFIO_ATTACH_PASID, pasid: 1 });
      await fd.destroy(h.hwpt);
      if (o) return o;
      const c = new Checks();
      c.eq('PASID attach while the RID sits on a non-PASID auto domain', errOf(r), 'EINVAL');
      return outcome(c, { hwptAllocPasid: 'OK', attach: errOf(r) }, { attach: 'EINVAL' });
    }),
    eduCase('dma/pasid/rid-and-pasid-on-pasid-hwpt', device, async (s) => {
      // The documented edge: both HWPTs PASID-capable, the device has no PASID: the core skips it and says 0.
      const { fd, dev, ioas, devid } = await openCdev(s);
      const h = await fd.hwptAlloc(devid, ioas, IOMMUFD.HWPT_ALLOC_PASID);
      if (!h.ok) return { status: errOf(h) === 'EOPNOTSUPP' ? 'expected-unsupported' : 'fail', reason: `HWPT_ALLOC(PASID) gave ${errOf(h)}: ${noPasidHwpt(s)}`, observed: { hwptAllocPasid: errOf(h) } };
      const hwpt = h.hwpt;
      try {
        const rid = await s.agent.request('vfio_attach_pt', { dev, pt_id: hwpt });
        if (!rid.ok) return { status: 'fail', reason: `replacing the RID onto a PASID-capable HWPT failed: ${errOf(rid)}`, observed: { ridReplace: errOf(rid) } };
        const r = await attach(s, dev, hwpt, 1);
        const o = older(s, r, 'ATTACH_PASID');
        if (o) return o;
        const d = await s.agent.request('vfio_detach_pt', { dev, flags: VFIO_ATTACH_PASID, pasid: 1 });
        const observed = { ridReplace: 'OK', attach: errOf(r), detach: errOf(d) };
        if (r.ok) return { status: 'warning', reason: 'the kernel accepted a PASID attach for a device with no PASID capability and programmed nothing (source-derived edge of iommu_attach_device_pasid, vfio-uapi.md §3.3)', observed, expected: { attach: 'EINVAL (or 0 with nothing programmed)' } };
        const c = new Checks();
        c.eq('PASID attach on a device without PASID', errOf(r), 'EINVAL');
        return outcome(c, observed, { attach: 'EINVAL' });
      } finally {
        await s.agent.request('vfio_attach_pt', { dev, pt_id: ioas });
        await fd.destroy(hwpt);
      }
    }),
    eduCase('dma/pasid/out-of-range', device, async (s) => {
      const { dev, ioas } = await openCdev(s);
      const r = await attach(s, dev, ioas, 0x8000_0000);
      const o = older(s, r, 'ATTACH_PASID with pasid 0x80000000');
      if (o) return o;
      const c = new Checks();
      c.eq('pasid >= 0x80000000', errOf(r), 'ENOSPC');
      return outcome(c, { errno: errOf(r) }, { errno: 'ENOSPC' });
    }),
    eduCase('dma/pasid/detach-never-attached', device, async (s) => {
      const { dev } = await openCdev(s);
      const r = await s.agent.request('vfio_detach_pt', { dev, flags: VFIO_ATTACH_PASID, pasid: 7 });
      const o = older(s, r, 'DETACH_PASID');
      if (o) return o;
      const c = new Checks();
      c.eq('DETACH_PASID of a PASID never attached', errOf(r), 'OK');
      return outcome(c, { errno: errOf(r) }, { errno: 'OK' });
    }),
    eduCase('dma/pasid/detach-unknown-flag', device, async (s) => {
      const { dev } = await openCdev(s);
      const r = await s.agent.request('vfio_detach_pt', { dev, flags: 0x2, pasid: 1 });
      const c = new Checks();
      c.eq('DETACH with an unknown flag bit', errOf(r), 'EINVAL');
      return outcome(c, { errno: errOf(r) }, { errno: 'EINVAL' });
    }),
  ];
}

/** The legacy container: mappings and VFIO_IOMMU_DIRTY_PAGES with a device that really writes. */
function type1Cases(device: DeviceInfo): CaseDef<SuiteState>[] {
  return [
    eduCase('dma/type1/round-trip-mapped', device, async (s) => mappedRoundTrip(s, (await openGroup(s)).dev)),
    eduCase('dma/type1/dirty-after-dma', device, async (s) => {
      // type1 cannot see device writes: an IOMMU-backed device that pins nothing gets every mapped page
      // reported dirty on every GET (vfio-uapi.md §2). The page really written must be among them.
      const { dev, container } = await openGroup(s);
      const len = 4 * PAGE;
      const [src, dst] = [await alloc(s, PAGE), await alloc(s, len)];
      const ms = await mustMapCdevOrGroup(s, iovaFor(12), src, PAGE);
      const md = await mustMapCdevOrGroup(s, iovaFor(13), dst, len);
      const c = new Checks();
      try {
        c.eq('DIRTY_PAGES START', errOf(await s.agent.request('container_dirty', { container, action: 'start' })), 'OK');
        const engine = new EduEngine(s.agent, dev);
        await engine.dma({ toRam: false, iova: iovaFor(12), bufOffset: 0, count: 64 });
        await engine.dma({ toRam: true, iova: iovaFor(13) + 2 * PAGE, bufOffset: 0, count: 64 });
        const get = await s.agent.request('container_dirty', { container, action: 'get_bitmap', iova: iovaFor(13), size: len, pgsize: PAGE });
        c.eq('GET_BITMAP', errOf(get), 'OK');
        const bits = parseInt((get.bitmap ?? '00').slice(0, 2), 16);
        c.ok('the page the device wrote is reported', (bits & 0b100) !== 0, `bitmap ${String(get.bitmap)}`);
        c.eq('pages reported (every mapped page, the device pins nothing)', get.bits_set, 4);
        c.eq('DIRTY_PAGES STOP', errOf(await s.agent.request('container_dirty', { container, action: 'stop' })), 'OK');
        return outcome(c, { bitmap: get.bitmap, bitsSet: get.bits_set }, { bitsSet: 4, writtenPageReported: true });
      } finally {
        await ms.unmap();
        await md.unmap();
      }
    }),
    eduCase('dma/type1/unmap-then-write', device, async (s, ctx) => {
      const { dev } = await openGroup(s);
      return unmapThenWrite(s, ctx, dev, 'an IOVA unmapped after use (type1)');
    }, true),
  ];
}

function firstDiff(a: string, b: string): number {
  for (let i = 0; i < a.length; i += 2) if (a.slice(i, i + 2) !== b.slice(i, i + 2)) return i / 2;
  return -1;
}

const CASES = (d: DeviceInfo) => [...iommufdCases(d), ...pasidCases(d), ...type1Cases(d)];
const PLACEHOLDER: DeviceInfo = { driver: 'vfio-pci', class: 'emulated', id: 'edu' };

/** Setup could not give a bound edu: every case reports the same skip, so the ids stay in every run. */
type Unbound = { why: string };
type SuiteState = DmaState | Unbound;

/** What /sys/class/iommu names (the IOMMU the hw_info type must match) and the IOMMU drivers' iommufd options. */
async function iommuFacts(target: Target): Promise<{ sysIommu: string; iommuConfig: Set<string> }> {
  const sys = await target.exec('ls /sys/class/iommu; echo --; zcat /proc/config.gz 2>/dev/null | grep -E "^CONFIG_(AMD_IOMMU|ARM_SMMU_V3)_IOMMUFD=y"', { timeoutMs: 10_000 });
  const [iommus = '', config = ''] = sys.stdout.split('--\n');
  return {
    sysIommu: iommus.split(/\s+/).find((x) => x && !x.startsWith('iommufd_selftest')) ?? 'none',
    iommuConfig: new Set(config.split('\n').filter(Boolean).map((l) => l.replace(/=y$/, ''))),
  };
}

export const dmaSuite: Suite<SuiteState> = {
  name: 'dma',
  async setup(target: Target, agent: AgentClient) {
    const found = await findEdu(target);
    if ('why' in found) return { state: found, cases: skipCases(CASES(PLACEHOLDER), found.why) };
    const facts = await iommuFacts(target);
    const bound = await bindEdu(target, found.bdf);
    if ('why' in bound) {
      const why = facts.sysIommu === 'none'
        ? `no IOMMU on this target: vfio-pci cannot take a device without an IOMMU group (the guest kernel has no VFIO_NOIOMMU), so the emulated DMA device is not testable here (${bound.why})`
        : bound.why;
      return { state: { why }, cases: skipCases(CASES({ ...PLACEHOLDER, fingerprint: { bdf: found.bdf } }), why) };
    }
    const state: DmaState = { agent, target, edu: bound, allocations: [], patterns: 0, ...facts };
    const engineId = await (async () => {
      const s = await openCdev(state);
      const id = await new EduEngine(agent, s.dev).id();
      const hw = await s.fd.hwInfo(s.devid);
      return { id: `0x${id.toString(16)}`, hwInfoType: hw.type, capabilities: hw.capabilities, maxPasidLog2: hw.max_pasid_log2 };
    })().catch((e: Error) => ({ error: e.message }));
    const device: DeviceInfo = { ...PLACEHOLDER, fingerprint: { bdf: bound.bdf, iommu: facts.sysIommu, ...engineId } };
    return { state, cases: CASES(device) };
  },
  list: () => CASES(PLACEHOLDER).map((c) => ({ id: c.id, known: 'static' as const })),
  async teardown(state, _target, agent) {
    if ('why' in state) return;
    await closeCdev(state);
    await closeGroup(state);
    for (const a of state.allocations) await agent.request('mem_free', { addr: a.addr, length: a.length });
    const r = await state.edu.manager.restore();
    if (!r.ok) throw new HarnessError(`edu ${state.edu.bdf}: its original driver binding was not restored: ${r.problems.join('; ')}`);
  },
};
