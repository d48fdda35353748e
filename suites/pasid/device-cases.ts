/**
 * PASID attach, replace and detach through vfio-pci's cdev and iommufd on a real PCI function with a
 * PASID capability (our QEMU's pasid-dma behind VT-d in scalable mode), with the device's own
 * PASID-tagged DMA as the proof (vfio-uapi.md §3). Three IOASes map the same two IOVAs to different
 * buffers, one PASID-compatible HWPT on each: R (the RID's domain), A and B. A transfer copies
 * IOVA_SRC to IOVA_DST; where the copy lands says which page tables translated it, byte for byte.
 */
import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import type { ConsoleFault, DeviceInfo } from '../../base/results/schema.js';
import { DeviceManager } from '../../harness/devices/manager.js';
import { HarnessError } from '../../base/errors.js';
import type { CaseContext, CaseDef, CaseOutcome } from '../types.js';
import { Checks } from '../migration/steps.js';
import { IOMMUFD, Iommufd, errOf, must, outcome } from '../dirty/api.js';
import { PDMA, PasidDmaEngine, extCaps, findPasidDma, hostConfig, pasidCap, vtdPasidBits, type CopyResult } from './pasid-dma.js';

const VFIO_PASID = 1; // VFIO_DEVICE_ATTACH_PASID / VFIO_DEVICE_DETACH_PASID
const MAP_RW_FIXED = 1 | 2 | 4; // IOMMU_IOAS_MAP_FIXED_IOVA | WRITEABLE | READABLE
const PAGE = 4096;
/** clear of the x86 MSI window and low memory; the same in every IOAS */
const IOVA_SRC = 0x0100_0000;
const IOVA_DST = IOVA_SRC + PAGE;
const LEN = PAGE;
const P1 = 100;
const P2 = 200;
/** never attached by any case */
const P3 = 300;
const PCI_EXT_CAP_ID_PASID = 0x1b;

type DomName = 'R' | 'A' | 'B';
const DOMS: DomName[] = ['R', 'A', 'B'];

interface Dom {
  ioas: number;
  hwpt: number;
  /** user addresses of the source and destination pages mapped at IOVA_SRC and IOVA_DST */
  src: number;
  dst: number;
}

export interface Ready {
  kind: 'ready';
  bdf: string;
  manager: DeviceManager;
  fd: Iommufd;
  dev: number;
  devid: number;
  engine: PasidDmaEngine;
  doms: Record<DomName, Dom>;
  /** a HWPT on R's IOAS allocated without IOMMU_HWPT_ALLOC_PASID */
  nonPasid: number;
  maxPasidLog2: number;
  facts: { deviceWidth?: number; iommuPasidBits?: number; pasidControl?: number; sysIommu: string };
  allocations: { addr: number; length: number }[];
  patterns: number;
}

/** The device is there but the kernel's uAPI has no PASID attach: what it answered to each probe. */
interface Unsupported {
  kind: 'unsupported';
  probes: Record<string, string>;
  bdf: string;
  manager: DeviceManager;
  close: number[];
}

export type DeviceState = Ready | Unsupported | { kind: 'absent'; why: string } | { kind: 'broken'; why: string };

const WHY_UNSUPPORTED = 'this kernel\'s uAPI has no VFIO_DEVICE_ATTACH_PASID (PASID attach through VFIO cdev + iommufd arrived in 6.15; the 6.12 tree lacks it)';
const PROBE: Record<'attach' | 'detach' | 'hwpt', { probe: string; want: string }> = {
  attach: { probe: 'vfioAttachPasid', want: 'EINVAL' },
  detach: { probe: 'vfioDetachPasid', want: 'EINVAL' },
  hwpt: { probe: 'hwptAllocPasid', want: 'EOPNOTSUPP' },
};

type Body = (m: Ready, c: Checks, obs: Record<string, unknown>, ctx: CaseContext) => Promise<Record<string, unknown>>;

function deviceCase(id: string, device: DeviceInfo, needs: keyof typeof PROBE, body: Body, faults = false): CaseDef<{ device: DeviceState }> {
  return {
    id,
    device,
    expectedFaults: faults ? ['iommu-fault'] : undefined,
    async run(s, ctx): Promise<CaseOutcome> {
      const d = s.device;
      if (d.kind === 'absent') return { status: 'skip', reason: d.why };
      if (d.kind === 'broken') throw new HarnessError(d.why);
      if (d.kind === 'unsupported') {
        const { probe, want } = PROBE[needs];
        const got = d.probes[probe];
        const c = new Checks();
        c.eq(`the kernel refuses the missing uAPI (${probe})`, got, want);
        return c.passed
          ? { status: 'expected-unsupported', reason: `${WHY_UNSUPPORTED}; asserted on ${d.bdf}: ${probe} gave ${got}`, observed: { [probe]: got }, expected: { [probe]: want } }
          : { status: 'fail', reason: `headers lack PASID uAPI but the kernel did not refuse it: ${c.reason()}`, observed: { [probe]: got }, expected: { [probe]: want } };
      }
      const c = new Checks();
      const obs: Record<string, unknown> = {};
      const t0 = Date.now();
      const exp = await body(d, c, obs, ctx);
      return { ...outcome(c, obs, exp), measurements: { ms: Date.now() - t0 } };
    },
  };
}

/**
 * Which domain's destination holds exactly its own source while every other stayed as it was
 * (`before`): 'none' when nothing changed, 'corrupt' for anything else (two changed, a partial or
 * foreign copy). `sent` and `got` map each domain to hex bytes.
 */
export function whereLanded<D extends string>(sent: Record<D, string>, got: Record<D, string>, before: string): D | 'none' | 'corrupt' {
  const changed = (Object.keys(got) as D[]).filter((d) => got[d] !== before);
  if (changed.length === 0) return 'none';
  const [d] = changed;
  return changed.length === 1 && got[d!] === sent[d!] ? d! : 'corrupt';
}

/** A pattern that differs per call and per domain, so a stale or misdirected copy never passes. */
function pattern(m: Ready, n: number): string {
  const s = ++m.patterns;
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + s * 37 + (i >> 8)) & 0xff)).toString('hex');
}

const hexRead = async (m: Ready, addr: number) => (await must(m.fd.agent, 'mem_read', { addr, length: LEN })).data;

/**
 * One transfer: fresh sources, zeroed destinations in every domain; then which domain's
 * destination holds exactly its own source ('none' when none changed, 'corrupt' for anything else).
 */
async function transfer(m: Ready, pasid: number | undefined): Promise<{ copy: CopyResult; landedIn: DomName | 'none' | 'corrupt' }> {
  const zero = '00'.repeat(LEN);
  const sent = {} as Record<DomName, string>;
  for (const d of DOMS) {
    sent[d] = pattern(m, LEN);
    await must(m.fd.agent, 'mem_write', { addr: m.doms[d].src, data: sent[d] });
    await must(m.fd.agent, 'mem_write', { addr: m.doms[d].dst, data: zero });
  }
  const copy = await m.engine.copy(IOVA_SRC, IOVA_DST, LEN, pasid);
  const got = {} as Record<DomName, string>;
  for (const d of DOMS) got[d] = await hexRead(m, m.doms[d].dst);
  return { copy, landedIn: whereLanded(sent, got, zero) };
}

/** A transfer that must land, byte for byte, in `want`'s mapping and nowhere else. */
async function lands(m: Ready, c: Checks, obs: Record<string, unknown>, key: string, pasid: number | undefined, want: DomName): Promise<void> {
  const t = await transfer(m, pasid);
  obs[key] = `${t.copy.error} -> ${t.landedIn}`;
  c.eq(`DMA ${pasid === undefined ? 'without PASID' : `tagged PASID ${pasid}`}: engine status`, t.copy.error, 'OK');
  c.eq(`DMA ${pasid === undefined ? 'without PASID' : `tagged PASID ${pasid}`} lands in HWPT ${want}'s mapping, byte for byte`, t.landedIn, want);
}

/** Wait for this step's IOMMU fault: the vIOMMU reports it from an interrupt after the transfer ended. */
async function faultsOf(ctx: CaseContext, mark: number): Promise<ConsoleFault[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const f = ctx.target.faultsSince(mark).filter((x) => x.kind === 'iommu-fault');
    if (f.length || Date.now() > deadline) return f;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A transfer tagged `pasid` that must be blocked: a read fault on the engine, no memory changed, the fault on this step. */
async function blocked(m: Ready, c: Checks, obs: Record<string, unknown>, ctx: CaseContext, pasid: number): Promise<void> {
  const mark = ctx.target.faultMark();
  const t = await transfer(m, pasid);
  const faults = await faultsOf(ctx, mark);
  const text = faults.flatMap((f) => [f.title, ...f.lines]).join('\n');
  const tagged = new RegExp(`PASID 0x${pasid.toString(16)}\\b`, 'i').test(text);
  obs.blocked = `${t.copy.error} -> ${t.landedIn}`;
  obs.faultReported = faults.length > 0;
  obs.faultNamesPasid = tagged;
  c.eq(`DMA tagged PASID ${pasid}: engine status`, t.copy.error, 'ERR_READ');
  c.eq('the engine stopped at the first page', t.copy.doneLen, 0);
  c.eq('no memory changed', t.landedIn, 'none');
  c.ok('an IOMMU fault reported for it', faults.length > 0, 'none in the console within 5 s');
  c.ok('the fault is pinned on this step', faults.every((f) => f.step === ctx.id), faults.map((f) => f.step ?? '(no step)').join(', '));
  if (faults.length) c.ok(`the fault record names PASID 0x${pasid.toString(16)}`, tagged, faults[0]!.title);
}

const attach = (m: Ready, pt: number, pasid: number) => m.fd.agent.request('vfio_attach_pt', { dev: m.dev, pt_id: pt, flags: VFIO_PASID, pasid });
const detach = (m: Ready, pasid: number) => m.fd.agent.request('vfio_detach_pt', { dev: m.dev, flags: VFIO_PASID, pasid });

export function deviceCases(device: DeviceInfo): CaseDef<{ device: DeviceState }>[] {
  return [
    deviceCase('pasid/device/hw-info', device, 'attach', async (m, c, obs) => {
      const { deviceWidth, iommuPasidBits, pasidControl } = m.facts;
      Object.assign(obs, { maxPasidLog2: m.maxPasidLog2, deviceWidth, iommuPasidBits, pasidEnabled: pasidControl === undefined ? undefined : (pasidControl & 1) === 1 });
      const want = deviceWidth === undefined || iommuPasidBits === undefined ? undefined : Math.min(deviceWidth, iommuPasidBits);
      c.ok('the device has a PASID capability (host view of config space)', deviceWidth !== undefined);
      c.ok('the IOMMU supports PASID (VT-d ECAP.PASID)', (iommuPasidBits ?? 0) > 0, m.facts.sysIommu);
      c.eq('out_max_pasid_log2 = min(device Max PASID Width, IOMMU ECAP.PSS + 1)', m.maxPasidLog2, want);
      c.eq('the IOMMU driver enabled PASID in the device\'s PASID Control', obs.pasidEnabled, true);
      return { maxPasidLog2: want, deviceWidth, iommuPasidBits, pasidEnabled: true };
    }),
    deviceCase('pasid/device/config-space', device, 'attach', async (m, c, obs) => {
      // What a user of vfio-pci sees of the PASID capability (the vPASID question): one pread of the
      // config region. vfio_pci_config.c gives PCI_EXT_CAP_ID_PASID length 0 ("not yet"): hidden.
      const info = await must(m.fd.agent, 'region_info', { dev: m.dev, index: PDMA.CONFIG }, 'VFIO_DEVICE_GET_REGION_INFO (config)');
      const r = await must(m.fd.agent, 'pread', { fd: m.dev, max: 4096, offset: info.offset }, 'config space pread');
      const user = Buffer.from(r.data, 'hex');
      const caps = extCaps(user);
      obs.userExtCaps = caps.map((x) => `0x${x.id.toString(16)}@0x${x.offset.toString(16)}`).join(',') || 'none';
      obs.userHeader0x100 = user.length >= 0x104 ? `0x${user.readUInt32LE(0x100).toString(16).padStart(8, '0')}` : 'short';
      obs.pasidCapVisible = caps.some((x) => x.id === PCI_EXT_CAP_ID_PASID);
      c.eq('config space read through vfio-pci', r.n, Math.min(4096, info.size));
      c.eq('PASID capability visible to the vfio-pci user', obs.pasidCapVisible, false);
      return { pasidCapVisible: false };
    }),
    deviceCase('pasid/device/attach', device, 'attach', async (m, c, obs) => {
      const r = await attach(m, m.doms.A.hwpt, P1);
      obs.attach = errOf(r);
      obs.ptIdEcho = r.ok && r.pt_id === m.doms.A.hwpt;
      c.eq(`ATTACH PASID ${P1} to HWPT A`, obs.attach, 'OK');
      c.eq('pt_id echoed', obs.ptIdEcho, true);
      await lands(m, c, obs, 'tagged', P1, 'A');
      await lands(m, c, obs, 'untagged', undefined, 'R');
      return { attach: 'OK', ptIdEcho: true, tagged: 'OK -> A', untagged: 'OK -> R' };
    }),
    deviceCase('pasid/device/unattached-pasid-blocked', device, 'attach', async (m, c, obs, ctx) => {
      await blocked(m, c, obs, ctx, P2);
      return { blocked: 'ERR_READ -> none', faultReported: true, faultNamesPasid: true };
    }, true),
    deviceCase('pasid/device/replace', device, 'attach', async (m, c, obs) => {
      // VFIO turns a second ATTACH of an attached PASID into iommufd_device_replace()
      const r = await attach(m, m.doms.B.hwpt, P1);
      obs.replace = errOf(r);
      c.eq(`ATTACH PASID ${P1} again, to HWPT B (a replace)`, obs.replace, 'OK');
      await lands(m, c, obs, 'tagged', P1, 'B');
      return { replace: 'OK', tagged: 'OK -> B' };
    }),
    deviceCase('pasid/device/two-pasids', device, 'attach', async (m, c, obs) => {
      obs.attach = errOf(await attach(m, m.doms.A.hwpt, P2));
      c.eq(`ATTACH PASID ${P2} to HWPT A while ${P1} is on B`, obs.attach, 'OK');
      await lands(m, c, obs, 'first', P1, 'B');
      await lands(m, c, obs, 'second', P2, 'A');
      await lands(m, c, obs, 'untagged', undefined, 'R');
      return { attach: 'OK', first: 'OK -> B', second: 'OK -> A', untagged: 'OK -> R' };
    }),
    deviceCase('pasid/device/rid-to-non-pasid-hwpt', device, 'attach', async (m, c, obs) => {
      // iommufd_hwpt_pasid_compat(): the RID may not move to a non-PASID HWPT while PASIDs are attached
      obs.errno = errOf(await m.fd.agent.request('vfio_attach_pt', { dev: m.dev, pt_id: m.nonPasid }));
      c.eq('RID ATTACH to a HWPT without IOMMU_HWPT_ALLOC_PASID while PASIDs are attached', obs.errno, 'EINVAL');
      await lands(m, c, obs, 'untagged', undefined, 'R');
      return { errno: 'EINVAL', untagged: 'OK -> R' };
    }),
    deviceCase('pasid/device/detach', device, 'detach', async (m, c, obs, ctx) => {
      obs.detach = errOf(await detach(m, P1));
      c.eq(`DETACH PASID ${P1}`, obs.detach, 'OK');
      await blocked(m, c, obs, ctx, P1);
      await lands(m, c, obs, 'other', P2, 'A');
      obs.detachTwice = errOf(await detach(m, P1));
      obs.detachNeverAttached = errOf(await detach(m, P3));
      c.eq(`DETACH PASID ${P1} a second time (the uAPI: always 0)`, obs.detachTwice, 'OK');
      c.eq(`DETACH PASID ${P3}, never attached (always 0)`, obs.detachNeverAttached, 'OK');
      return { detach: 'OK', blocked: 'ERR_READ -> none', faultReported: true, faultNamesPasid: true, other: 'OK -> A', detachTwice: 'OK', detachNeverAttached: 'OK' };
    }, true),
    deviceCase('pasid/device/pasid-range', device, 'attach', async (m, c, obs) => {
      const last = 2 ** m.maxPasidLog2 - 1;
      obs.lastValid = errOf(await attach(m, m.doms.B.hwpt, last));
      c.eq(`ATTACH PASID 2^${m.maxPasidLog2}-1 (the last in range)`, obs.lastValid, 'OK');
      if (obs.lastValid === 'OK') {
        await lands(m, c, obs, 'lastTagged', last, 'B');
        await detach(m, last);
      }
      obs.outOfRange = errOf(await attach(m, m.doms.B.hwpt, last + 1));
      obs.beyondIda = errOf(await attach(m, m.doms.B.hwpt, 0x8000_0000));
      c.eq(`ATTACH PASID 2^${m.maxPasidLog2} (out_max_pasid_log2)`, obs.outOfRange, 'EINVAL');
      c.eq('ATTACH PASID 0x80000000 (past vfio-pci\'s IDA)', obs.beyondIda, 'ENOSPC');
      return { lastValid: 'OK', lastTagged: 'OK -> B', outOfRange: 'EINVAL', beyondIda: 'ENOSPC' };
    }),
    deviceCase('pasid/device/non-pasid-hwpt', device, 'hwpt', async (m, c, obs) => {
      obs.nonPasidHwpt = errOf(await attach(m, m.nonPasid, P3));
      obs.ioas = errOf(await attach(m, m.doms.A.ioas, P3));
      c.eq('ATTACH PASID to a HWPT allocated without IOMMU_HWPT_ALLOC_PASID', obs.nonPasidHwpt, 'EINVAL');
      c.eq('ATTACH PASID with pt_id = an IOAS (its auto domain is never PASID-compatible)', obs.ioas, 'EINVAL');
      return { nonPasidHwpt: 'EINVAL', ioas: 'EINVAL' };
    }),
  ];
}

const PLACEHOLDER: DeviceInfo = { driver: 'vfio-pci', class: 'emulated', id: 'pasid-dma', fingerprint: { ranOn: 'device', qemuDevice: 'pasid-dma', patch: PDMA.PATCH } };
export const DEVICE_LISTED = PLACEHOLDER;

async function bind(target: Target, bdf: string): Promise<{ manager: DeviceManager; cdev: string }> {
  const manager = new DeviceManager(target, [{ bdf, driver: 'vfio-pci' }], { throwaway: target.kind === 'qemu' });
  const [d] = await manager.apply();
  if (!d?.cdev) {
    await manager.restore();
    throw new HarnessError(`${bdf} is bound to vfio-pci but has no /dev/vfio/devices node (no VFIO_DEVICE_CDEV?)`);
  }
  return { manager, cdev: d.cdev };
}

async function iommuFacts(target: Target, bdf: string): Promise<Ready['facts']> {
  const r = await target.exec(`i=$(basename "$(readlink /sys/bus/pci/devices/${bdf}/iommu)"); echo "$i"; cat /sys/class/iommu/$i/intel-iommu/ecap 2>/dev/null || true`, { timeoutMs: 10_000 });
  const [sysIommu = 'none', ecap] = r.stdout.trim().split('\n');
  const cap = pasidCap(await hostConfig(target, bdf));
  return { sysIommu, iommuPasidBits: ecap ? vtdPasidBits(ecap) : undefined, deviceWidth: cap?.width, pasidControl: cap?.control };
}

/**
 * Find, bind and open the device; on a kernel with the PASID uAPI build the three domains and put
 * the RID on R (a PASID-compatible HWPT: iommufd refuses PASIDs beside a RID on an auto domain).
 */
export async function setupDevice(target: Target, agent: AgentClient, attachPasidUapi: boolean): Promise<{ state: DeviceState; device: DeviceInfo }> {
  const found = await findPasidDma(target);
  if ('why' in found) return { state: { kind: 'absent', why: found.why }, device: PLACEHOLDER };
  let bound: { manager: DeviceManager; cdev: string };
  try {
    bound = await bind(target, found.bdf);
  } catch (e) {
    return { state: { kind: 'broken', why: `binding ${found.bdf} to vfio-pci failed: ${(e as Error).message}` }, device: PLACEHOLDER };
  }
  const o = await agent.request('open_cdev', { path: bound.cdev });
  if (!o.ok) {
    await bound.manager.restore();
    return { state: { kind: 'broken', why: `opening ${bound.cdev} through iommufd failed at ${o.where ?? '?'}: ${o.err}` }, device: PLACEHOLDER };
  }
  const fd = new Iommufd(agent, o.iommufd);
  const engine = new PasidDmaEngine(agent, o.dev);
  const device: DeviceInfo = { ...PLACEHOLDER, id: found.bdf };
  if (!attachPasidUapi) {
    const probes: Record<string, string> = {
      vfioAttachPasid: errOf(await agent.request('vfio_attach_pt', { dev: o.dev, pt_id: o.ioas, flags: VFIO_PASID, pasid: P1 })),
      vfioDetachPasid: errOf(await agent.request('vfio_detach_pt', { dev: o.dev, flags: VFIO_PASID, pasid: P1 })),
      hwptAllocPasid: errOf(await fd.hwptAlloc(o.devid, o.ioas, IOMMUFD.HWPT_ALLOC_PASID)),
    };
    return { state: { kind: 'unsupported', probes, bdf: found.bdf, manager: bound.manager, close: [o.dev, o.iommufd] }, device: { ...device, fingerprint: { ...device.fingerprint, probes } } };
  }
  const m: Ready = {
    kind: 'ready', bdf: found.bdf, manager: bound.manager, fd, dev: o.dev, devid: o.devid, engine,
    doms: {} as Ready['doms'], nonPasid: 0, maxPasidLog2: 0, facts: { sysIommu: 'none' }, allocations: [], patterns: 0,
  };
  try {
    m.facts = await iommuFacts(target, found.bdf);
    const id = await engine.id();
    if (id !== PDMA.ID) throw new HarnessError(`BAR0 ID register reads 0x${id.toString(16)}, not the pasid-dma's 0x${PDMA.ID.toString(16)}`);
    await engine.enableBusMaster();
    m.maxPasidLog2 = (await must(agent, 'get_hw_info', { iommufd: fd.fd, dev_id: o.devid }, 'IOMMU_GET_HW_INFO')).max_pasid_log2;
    for (const d of DOMS) {
      const ioas = d === 'R' ? o.ioas : await fd.ioas();
      const mem = await must(agent, 'mem_alloc', { length: 2 * PAGE }, 'mem_alloc');
      m.allocations.push({ addr: mem.addr, length: 2 * PAGE });
      for (const [iova, addr] of [[IOVA_SRC, mem.addr], [IOVA_DST, mem.addr + PAGE]] as const) {
        await must(agent, 'ioas_map', { iommufd: fd.fd, ioas, iova, length: PAGE, addr, flags: MAP_RW_FIXED }, `IOMMU_IOAS_MAP 0x${iova.toString(16)} in ${d}`);
      }
      const hwpt = await fd.mustHwpt(o.devid, ioas, IOMMUFD.HWPT_ALLOC_PASID);
      m.doms[d] = { ioas, hwpt, src: mem.addr, dst: mem.addr + PAGE };
    }
    m.nonPasid = await fd.mustHwpt(o.devid, o.ioas, 0);
    await must(agent, 'vfio_attach_pt', { dev: o.dev, pt_id: m.doms.R.hwpt }, 'RID ATTACH to the PASID-compatible HWPT R');
  } catch (e) {
    await teardownDevice(m, agent);
    return { state: { kind: 'broken', why: `setting up ${found.bdf}: ${(e as Error).message}` }, device };
  }
  return { state: m, device: { ...device, fingerprint: { ...device.fingerprint, iommu: m.facts.sysIommu, maxPasidLog2: m.maxPasidLog2, deviceWidth: m.facts.deviceWidth } } };
}

export async function teardownDevice(d: DeviceState, agent: AgentClient): Promise<void> {
  if (d.kind === 'absent' || d.kind === 'broken') return;
  if (agent.alive) {
    if (d.kind === 'ready') {
      // closing the device fd detaches every PASID and the RID; the iommufd then frees the rest
      await agent.request('close', { fd: d.dev });
      await d.fd.close();
      for (const a of d.allocations) await agent.request('mem_free', a);
    } else {
      for (const fd of d.close) await agent.request('close', { fd });
    }
  }
  const r = await d.manager.restore();
  if (!r.ok) throw new HarnessError(`pasid-dma ${d.bdf}: its original driver binding was not restored: ${r.problems.join('; ')}`);
}
