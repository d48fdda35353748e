import type { AgentClient } from '../../harness/agent/client.js';
import type { AnyReply, Args, OkReply, OpName, Reply } from '../../harness/agent/protocol.js';
import { HarnessError } from '../../base/errors.js';
import type { CaseOutcome } from '../types.js';
import type { Checks } from '../migration/steps.js';

/** uAPI constants (include/uapi/linux/iommufd.h, vfio.h) and the selftest ABI (drivers/iommu/iommufd/iommufd_test.h). */
export const IOMMUFD = {
  HWPT_ALLOC_NEST_PARENT: 1 << 0,
  HWPT_ALLOC_DIRTY_TRACKING: 1 << 1,
  HWPT_ALLOC_PASID: 1 << 3,
  HW_CAP_DIRTY_TRACKING: 1 << 0,
  GET_DIRTY_BITMAP_NO_CLEAR: 1,
  OPTION_HUGE_PAGES: 1,
  OPTION_OP_SET: 0,
} as const;

export const MOCK = {
  /** MOCK_APERTURE_START: the mock domain's aperture starts at 16 MiB */
  APERTURE_START: 1 << 24,
  /** MOCK_PAGE_SIZE (7.2) / MOCK_IO_PAGE_SIZE = PAGE_SIZE/2 (6.12): the mock IOPTE granule */
  PAGE_SIZE: 2048,
  HW_INFO_TYPE_SELFTEST: 0xfeedbeef,
  FLAGS_DEVICE_NO_DIRTY: 1 << 0,
  FLAGS_DEVICE_PASID: 1 << 2,
  PASID_WIDTH: 20,
  /** IOMMU_TEST_PASID_RESERVED: the second non-blocking set on this PASID fails with ENOMEM */
  PASID_RESERVED: 1024,
} as const;

/** The errno name of a reply, 'OK' on success. An agent refusal (BADREQ/UNSUPPORTED) is a harness problem. */
export function errOf(r: AnyReply): string {
  if (r.ok) return 'OK';
  if (r.err === 'BADREQ') throw new HarnessError(`agent refused a request: ${r.msg ?? ''}`);
  if (r.err === 'UNSUPPORTED') return 'UNSUPPORTED';
  return r.err ?? `E${r.errno}`;
}

/** A step that must succeed for the case to mean anything: failure is a harness-level error. */
export async function must<O extends OpName>(agent: AgentClient, op: O, args: Args<O>, what?: string): Promise<OkReply<O>> {
  const r = await agent.request(op, args);
  if (!r.ok) throw new HarnessError(`${what ?? op} failed: ${r.err}${r.where ? ` (${r.where})` : ''}${r.msg ? `: ${r.msg}` : ''}`);
  return r;
}

export function outcome(c: Checks, observed: Record<string, unknown>, expected: Record<string, unknown>): CaseOutcome {
  return { status: c.passed ? 'pass' : 'fail', reason: c.reason(), observed, expected };
}

/** A mock device bound to an iommufd: the selftest object, its auto-attached HWPT and its device id. */
export interface MockDev {
  stdev: number;
  hwpt: number;
  idev: number;
}

/** What a GET_DIRTY_BITMAP case may set beyond the range and page size. */
export type BitmapExtra = Omit<Args<'get_dirty_bitmap'>, 'iommufd' | 'hwpt' | 'iova' | 'length' | 'page_size'>;

/** Thin wrappers over the agent's iommufd ops for one /dev/iommu fd. */
export class Iommufd {
  constructor(readonly agent: AgentClient, readonly fd: number) {}

  static async open(agent: AgentClient): Promise<Iommufd> {
    const r = await must(agent, 'iommufd_open', {}, 'open /dev/iommu');
    return new Iommufd(agent, r.fd);
  }

  async ioas(): Promise<number> {
    return (await must(this.agent, 'ioas_alloc', { iommufd: this.fd }, 'IOMMU_IOAS_ALLOC')).ioas;
  }

  /** Map IOVA -> fresh memory 1:1 in 4 KiB pages: no huge IOPTEs, so one mock IOPTE per 2 KiB bit. */
  async noHugePages(ioas: number): Promise<void> {
    await must(this.agent, 'ioas_option', { iommufd: this.fd, object: ioas, option: IOMMUFD.OPTION_HUGE_PAGES, option_op: IOMMUFD.OPTION_OP_SET, val: 0 }, 'IOMMU_OPTION HUGE_PAGES=0');
  }

  async map(ioas: number, iova: number, length: number): Promise<{ addr: number }> {
    const r = await must(this.agent, 'ioas_map', { iommufd: this.fd, ioas, iova, length }, `IOMMU_IOAS_MAP ${length} bytes at 0x${iova.toString(16)}`);
    return { addr: r.addr };
  }

  mockDomain(ptId: number, devFlags?: number): Promise<Reply<'test_mock_domain'>> {
    return this.agent.request('test_mock_domain', { iommufd: this.fd, pt_id: ptId, ...(devFlags === undefined ? {} : { dev_flags: devFlags }) });
  }

  async mustMockDomain(ptId: number, devFlags?: number): Promise<MockDev> {
    const r = await this.mockDomain(ptId, devFlags);
    if (!r.ok) throw new HarnessError(`IOMMU_TEST_OP_MOCK_DOMAIN${devFlags ? `_FLAGS(0x${devFlags.toString(16)})` : ''} failed: ${r.err}`);
    return { stdev: r.stdev_id, hwpt: r.hwpt_id, idev: r.idev_id };
  }

  hwptAlloc(devId: number, ptId: number, flags = 0): Promise<Reply<'hwpt_alloc'>> {
    return this.agent.request('hwpt_alloc', { iommufd: this.fd, dev_id: devId, pt_id: ptId, flags });
  }

  async mustHwpt(devId: number, ptId: number, flags = 0): Promise<number> {
    const r = await this.hwptAlloc(devId, ptId, flags);
    if (!r.ok) throw new HarnessError(`IOMMU_HWPT_ALLOC(flags 0x${flags.toString(16)}) failed: ${r.err}`);
    return r.hwpt;
  }

  hwInfo(devId: number): Promise<Reply<'get_hw_info'>> {
    return this.agent.request('get_hw_info', { iommufd: this.fd, dev_id: devId });
  }

  tracking(hwpt: number, enable: boolean, extra: Pick<Args<'set_dirty_tracking'>, 'flags' | 'reserved'> = {}): Promise<Reply<'set_dirty_tracking'>> {
    return this.agent.request('set_dirty_tracking', { iommufd: this.fd, hwpt, enable, ...extra });
  }

  bitmap(hwpt: number, iova: number, length: number, pageSize: number, extra: BitmapExtra = {}): Promise<Reply<'get_dirty_bitmap'>> {
    return this.agent.request('get_dirty_bitmap', { iommufd: this.fd, hwpt, iova, length, page_size: pageSize, ...extra });
  }

  mark(hwpt: number, iova: number, length: number, pageSize: number, bitmapHex: string): Promise<Reply<'test_dirty'>> {
    return this.agent.request('test_dirty', { iommufd: this.fd, hwpt, iova, length, page_size: pageSize, bitmap: bitmapHex });
  }

  pasid(stdev: number, action: Args<'test_pasid'>['action'], pasid: number, ptId?: number): Promise<Reply<'test_pasid'>> {
    return this.agent.request('test_pasid', { iommufd: this.fd, stdev_id: stdev, action, pasid, ...(ptId === undefined ? {} : { pt_id: ptId }) });
  }

  mockReplace(stdev: number, ptId: number): Promise<Reply<'test_mock_replace'>> {
    return this.agent.request('test_mock_replace', { iommufd: this.fd, stdev_id: stdev, pt_id: ptId });
  }

  destroy(id: number): Promise<Reply<'destroy'>> {
    return this.agent.request('destroy', { iommufd: this.fd, object: id });
  }

  async close(): Promise<void> {
    await this.agent.request('close', { fd: this.fd });
  }
}

/** The kernel version the agent's headers came from (the kernel under test builds its own agent). */
export function headersVersion(agent: AgentClient): [number, number] | undefined {
  const h = agent.hello?.headers;
  if (typeof h !== 'string') return undefined;
  const m = /^(\d+)\.(\d+)/.exec(h);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function atLeast(v: [number, number] | undefined, major: number, minor: number): boolean | undefined {
  if (!v) return undefined;
  return v[0] > major || (v[0] === major && v[1] >= minor);
}

/**
 * Whether the IOMMUFD_TEST mock device can be attached here, and why not. 6.12 refuses it (EINVAL)
 * while a hardware IOMMU driver (VT-d) owns the system; 7.2 allows it on every profile.
 */
export async function mockUnavailable(fd: Iommufd, ioas: number): Promise<string | undefined> {
  const r = await fd.mockDomain(ioas);
  if (r.ok) {
    await fd.agent.request('destroy', { iommufd: fd.fd, object: r.stdev_id });
    return undefined;
  }
  return `the IOMMUFD_TEST mock device cannot attach on this kernel and profile (IOMMU_TEST_OP_MOCK_DOMAIN: ${r.err}${r.err === 'EINVAL' ? '; 6.12 refuses it while a hardware IOMMU driver is active' : ''})`;
}
