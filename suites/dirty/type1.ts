import type { AgentClient } from '../../harness/agent/client.js';
import type { Args, Reply } from '../../harness/agent/protocol.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import type { CaseDef } from '../types.js';
import { Checks } from '../migration/steps.js';
import { atLeast, errOf, outcome } from './api.js';
import { bitmapBytes } from './bitmap.js';

/**
 * Legacy VFIO type1 VFIO_IOMMU_DIRTY_PAGES (vfio-uapi.md §2.1) with mtty in a real container
 * (CONFIG_VFIO_CONTAINER). mtty is an emulated (mdev) device that never pins or writes guest memory,
 * so the container keeps "pinned-page scope" and every bitmap must be all zero; the page size is
 * PAGE_SIZE because no IOMMU domain backs the container.
 */
export interface Type1State {
  agent: AgentClient;
  /** container fd with mtty's group, type1v2, or why it could not be set up */
  container?: number;
  /** a second container set to type1 v1 (VFIO_TYPE1_IOMMU), for EACCES */
  v1Container?: number;
  setupError?: string;
  headers?: [number, number];
}

type Case = CaseDef<Type1State>;
/** the state once setup made the container: what the cases run on */
type Ready = Type1State & { container: number };
type DirtyArgs = Omit<Args<'container_dirty'>, 'container' | 'action'>;

const PG = 4096;
/** Two adjacent mappings (A then B) made at setup, and C / D made by the cases. */
export const A = { iova: 0x100000, size: 0x100000 };
export const B = { iova: 0x200000, size: 0x10000 };
const C = { iova: 0x400000, size: 0x10000 };
const D = { iova: 0x500000, size: 0x10000 };

function dirty(s: Ready, action: Args<'container_dirty'>['action'], args: DirtyArgs = {}): Promise<Reply<'container_dirty'>> {
  return s.agent.request('container_dirty', { container: s.container, action, ...args });
}

/** GET_BITMAP over [iova, iova+size) at the container's page size with a right-sized bitmap unless overridden. */
function get(s: Ready, iova: number, size: number, extra: DirtyArgs = {}): Promise<Reply<'container_dirty'>> {
  return dirty(s, 'get_bitmap', { iova, size, pgsize: PG, ...extra });
}

export async function mapType1(agent: AgentClient, container: number): Promise<void> {
  for (const m of [A, B]) {
    const r = await agent.request('container_map', { container, iova: m.iova, size: m.size });
    if (!r.ok) throw new Error(`VFIO_IOMMU_MAP_DMA 0x${m.iova.toString(16)}+0x${m.size.toString(16)} failed: ${r.err}`);
  }
}


export function type1Cases(device: DeviceInfo): Case[] {
  const withContainer = (id: string, fn: (s: Ready, c: Checks, obs: Record<string, unknown>) => Promise<Record<string, unknown>>): Case => ({
    id,
    device,
    async run(s) {
      const container = s.container;
      if (container === undefined) return { status: 'error', reason: `type1 container not available: ${s.setupError ?? 'unknown'}` };
      const c = new Checks();
      const obs: Record<string, unknown> = {};
      const exp = await fn({ ...s, container }, c, obs);
      return outcome(c, obs, exp);
    },
  });
  const errCase = (name: string, want: string, why: string, fn: (s: Ready) => Promise<Reply<'container_dirty'>>): Case =>
    withContainer(`dirty/type1/errno/${name}`, async (s, c, obs) => {
      await dirty(s, 'start');
      obs.errno = errOf(await fn(s));
      c.eq(why, obs.errno, want);
      return { errno: want };
    });
  const zeroBitmap = (c: Checks, obs: Record<string, unknown>, what: string, r: Reply<'container_dirty'> | Reply<'container_unmap'>, pages: number): void => {
    obs[`${what}.errno`] = errOf(r);
    obs[`${what}.bitsSet`] = r.bits_set;
    obs[`${what}.bitmapBytes`] = (r.bitmap ?? '').length / 2;
    c.eq(`${what}: errno`, errOf(r), 'OK');
    c.eq(`${what}: pages reported dirty (mtty never pins)`, r.bits_set, 0);
    c.eq(`${what}: bitmap covers the range`, obs[`${what}.bitmapBytes`], bitmapBytes(pages));
  };
  return [
    withContainer('dirty/type1/info/migration-capability', async (s, c, obs) => {
      const r = await s.agent.request('container_info', { container: s.container });
      c.eq('VFIO_IOMMU_GET_INFO', errOf(r), 'OK');
      Object.assign(obs, { migrationCap: r.migration_cap, pgsizeBitmap: r.mig_pgsize_bitmap, maxDirtyBitmapSize: r.mig_max_dirty_bitmap_size, capFlags: r.mig_flags });
      c.eq('VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION present', r.migration_cap, true);
      c.eq('pgsize_bitmap = the one smallest page size (PAGE_SIZE: no IOMMU domain)', r.mig_pgsize_bitmap, PG);
      c.eq('max_dirty_bitmap_size (DIRTY_BITMAP_SIZE_MAX)', r.mig_max_dirty_bitmap_size, 268435456);
      c.eq('capability flags', r.mig_flags, 0);
      return { migrationCap: true, pgsizeBitmap: PG, maxDirtyBitmapSize: 268435456, capFlags: 0 };
    }),
    withContainer('dirty/type1/start', async (s, c, obs) => {
      obs.start = errOf(await dirty(s, 'start'));
      obs.startAgain = errOf(await dirty(s, 'start'));
      c.eq('START', obs.start, 'OK');
      c.eq('START while started (idempotent)', obs.startAgain, 'OK');
      return { start: 'OK', startAgain: 'OK' };
    }),
    withContainer('dirty/type1/get-bitmap/nothing-dirty', async (s, c, obs) => {
      await dirty(s, 'start');
      zeroBitmap(c, obs, 'A', await get(s, A.iova, A.size), A.size / PG);
      zeroBitmap(c, obs, 'A again', await get(s, A.iova, A.size), A.size / PG);
      return { 'A.bitsSet': 0, 'A again.bitsSet': 0 };
    }),
    withContainer('dirty/type1/get-bitmap/several-mappings', async (s, c, obs) => {
      await dirty(s, 'start');
      const size = B.iova + B.size - A.iova;
      zeroBitmap(c, obs, 'A+B', await get(s, A.iova, size), size / PG);
      return { 'A+B.bitsSet': 0 };
    }),
    withContainer('dirty/type1/get-bitmap/mapping-made-after-start', async (s, c, obs) => {
      await dirty(s, 'start');
      const m = await s.agent.request('container_map', { container: s.container, iova: C.iova, size: C.size });
      c.eq('MAP_DMA while tracking', errOf(m), 'OK');
      zeroBitmap(c, obs, 'C', await get(s, C.iova, C.size), C.size / PG);
      const u = await s.agent.request('container_unmap', { container: s.container, iova: C.iova, size: C.size, bitmap_pgsize: PG });
      zeroBitmap(c, obs, 'unmap C with GET_DIRTY_BITMAP', u, C.size / PG);
      c.eq('bytes unmapped', u.size, C.size);
      if (m.ok) await s.agent.request('mem_free', { addr: m.addr, length: C.size });
      return { 'C.bitsSet': 0, 'unmap C with GET_DIRTY_BITMAP.bitsSet': 0 };
    }),
    errCase('no-flag', 'EINVAL', 'DIRTY_PAGES with flags 0', (s) => dirty(s, 'start', { flags: 0 })),
    errCase('two-flags', 'EINVAL', 'START|STOP together', (s) => dirty(s, 'start', { flags: 3 })),
    errCase('unknown-flag', 'EINVAL', 'flag bit 3', (s) => dirty(s, 'start', { flags: 1 << 3 })),
    errCase('argsz-below-header', 'EINVAL', 'argsz 4', (s) => dirty(s, 'start', { argsz: 4 })),
    errCase('get-argsz-below-range', 'EINVAL', 'GET_BITMAP with argsz 8 + 39', (s) => get(s, A.iova, A.size, { argsz: 47 })),
    errCase('size-zero', 'EINVAL', 'GET_BITMAP size 0', (s) => get(s, A.iova, 0, { bitmap_size: 8 })),
    errCase('bitmap-size-zero', 'EINVAL', 'bitmap.size 0', (s) => get(s, A.iova, A.size, { bitmap_size: 0 })),
    // 16 pages fit in 2 bytes, but the kernel counts in u64 words: 8 bytes are required.
    errCase('bitmap-not-u64-rounded', 'EINVAL', 'bitmap.size 2 for 16 pages', (s) => get(s, B.iova, B.size, { bitmap_size: 2 })),
    errCase('bitmap-over-256MiB', 'EINVAL', 'bitmap.size DIRTY_BITMAP_SIZE_MAX + 8', (s) => get(s, A.iova, A.size, { bitmap_size: 268435456 + 8 })),
    errCase('pgsize-not-smallest', 'EINVAL', 'bitmap.pgsize 8192 (smallest is 4096)', (s) => get(s, A.iova, A.size, { pgsize: 2 * PG })),
    errCase('iova-unaligned', 'EINVAL', 'iova not page aligned', (s) => get(s, A.iova + 512, PG, { bitmap_size: 8 })),
    errCase('size-unaligned', 'EINVAL', 'size not page aligned', (s) => get(s, A.iova, A.size - 512, { bitmap_size: bitmapBytes(A.size / PG) })),
    errCase('range-bisects-start', 'EINVAL', 'range starting inside mapping A', (s) => get(s, A.iova + PG, A.size - PG)),
    errCase('range-bisects-end', 'EINVAL', 'range ending inside mapping A', (s) => get(s, A.iova, A.size / 2)),
    withContainer('dirty/type1/errno/range-wraps', async (s, c, obs) => {
      await dirty(s, 'start');
      // 7.2 checks with check_add_overflow (EOVERFLOW); 6.12 compared iova + size - 1 < iova (EINVAL).
      const seven = atLeast(s.headers, 7, 2);
      const old = atLeast(s.headers, 6, 13) === false;
      const want = seven ? ['EOVERFLOW'] : old ? ['EINVAL'] : ['EOVERFLOW', 'EINVAL'];
      const errno = errOf(await get(s, 18446744073709000000, 2 ** 32, { bitmap_size: 8 }));
      obs.errno = errno;
      c.ok('iova + size - 1 wraps', want.includes(errno), `got ${errno}, expected ${want.join(' or ')}`);
      return { errno: want.join('|') };
    }),
    {
      id: 'dirty/type1/errno/v1-container',
      device,
      async run(s) {
        if (s.v1Container === undefined) return { status: 'error', reason: `no type1 v1 container: ${s.setupError ?? 'setup did not make one'}` };
        const got = errOf(await s.agent.request('container_dirty', { container: s.v1Container, action: 'start' }));
        const c = new Checks();
        c.eq('DIRTY_PAGES START on a VFIO_TYPE1_IOMMU (v1) container', got, 'EACCES');
        return outcome(c, { errno: got }, { errno: 'EACCES' });
      },
    },
    withContainer('dirty/type1/stop', async (s, c, obs) => {
      await dirty(s, 'start');
      obs.stop = errOf(await dirty(s, 'stop'));
      obs.stopAgain = errOf(await dirty(s, 'stop'));
      obs.getAfterStop = errOf(await get(s, A.iova, A.size));
      const m = await s.agent.request('container_map', { container: s.container, iova: D.iova, size: D.size });
      const u = await s.agent.request('container_unmap', { container: s.container, iova: D.iova, size: D.size, bitmap_pgsize: PG });
      obs.unmapWithBitmapAfterStop = errOf(u);
      c.eq('STOP', obs.stop, 'OK');
      c.eq('STOP while stopped', obs.stopAgain, 'OK');
      c.eq('GET_BITMAP after STOP', obs.getAfterStop, 'EINVAL');
      c.eq('UNMAP_DMA with GET_DIRTY_BITMAP while not tracking', obs.unmapWithBitmapAfterStop, 'EINVAL');
      await s.agent.request('container_unmap', { container: s.container, iova: D.iova, size: D.size });
      if (m.ok) await s.agent.request('mem_free', { addr: m.addr, length: D.size });
      return { stop: 'OK', stopAgain: 'OK', getAfterStop: 'EINVAL', unmapWithBitmapAfterStop: 'EINVAL' };
    }),
  ];
}
