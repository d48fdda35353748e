/**
 * IOMMU dirty tracking of the real IOMMU driver (issue 15, item 3): edu bound to vfio-pci and opened
 * through iommufd, a HWPT allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING, and the pages edu's DMA
 * really wrote as the oracle for IOMMU_HWPT_GET_DIRTY_BITMAP. The IOMMU's dirty bits come from the
 * vIOMMU of a profile that emulates them (intel-iommu-dirty: our QEMU's VT-d second-stage A/D;
 * amd-iommu-dirty: its AMD-Vi host Access/Dirty bits); on any other profile only the capability case
 * runs, and it checks that the flag and the allocation agree. The main window is mapped in 4 KiB
 * IOPTEs (IOMMU_OPTION_HUGE_PAGES off), so a report must be exact: a missing page is a lost write, an
 * extra page a page that was never written. The huge-page cases map hugetlb memory on an IOAS of their
 * own, where the driver picks larger IOPTEs and may report a dirty IOPTE's whole range.
 */
import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import { HarnessError } from '../../base/errors.js';
import type { CaseDef, CaseOutcome, Suite } from '../types.js';
import { skipCases } from '../types.js';
import { Checks } from '../migration/steps.js';
import { IOMMUFD, Iommufd, errOf, must, outcome } from '../dirty/api.js';
import { fromHex, type Bits } from '../dirty/bitmap.js';
import { bindEdu, EduEngine, findEdu, type BoundEdu } from '../dma/edu.js';
import { PAGE, WINDOW_PAGES, WRITE_SETS, contiguousPair, lastPagesOfBlocks, pagesWritten, splitExtra, writesFor, type WriteSet, type Write } from './plan.js';

/** The tracked window and the page edu reads its pattern from: 2 MiB-aligned, below edu's 28-bit mask. */
const WINDOW_IOVA = 0x0400_0000;
const SOURCE_IOVA = 0x0080_0000;
/** The hugetlb windows (an IOAS of their own) start at this 2 MiB boundary or 64 KiB past it. */
const HUGE_IOVA = 0x0800_0000;
const HUGE = 2 * 1024 * 1024;
const CONTIG = 64 * 1024;
/** A 16-page range the unmap case maps, writes and unmaps on the main IOAS. */
const UNMAP_IOVA = 0x0300_0000;
const UNMAP_PAGES = 16;

/** A mapped range edu writes into: its IOVA, the agent's memory behind it, its size in pages. */
interface Win {
  iova: number;
  addr: number;
  pages: number;
}

interface Session {
  fd: Iommufd;
  dev: number;
  ioas: number;
  devid: number;
  engine: EduEngine;
  window: Win;
  source: number;
}

interface DirtyHwState {
  agent: AgentClient;
  target: Target;
  /** the IOMMU by vendor, named in every case's observed values */
  vendor: string;
  edu: BoundEdu;
  sysIommu: string;
  session: Session;
  /** IOMMU_HW_CAP_DIRTY_TRACKING as GET_HW_INFO reported it */
  capable: boolean;
  allocations: { addr: number; length: number }[];
}
type Unbound = { why: string };
type State = DirtyHwState | Unbound;

let seq = 0;
/** A fresh byte pattern per case, so bytes of an earlier case never pass for this one's. */
function pattern(): string {
  const s = ++seq;
  return Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 13 + s * 57 + 1) & 0xff)).toString('hex');
}

/** Put a fresh pattern into edu's buffer (a DMA read of the source page, outside the window). */
async function loadPattern(s: DirtyHwState): Promise<string> {
  const p = pattern();
  await must(s.agent, 'mem_write', { addr: s.session.source, data: p }, 'mem_write source page');
  await s.session.engine.dma({ toRam: false, iova: SOURCE_IOVA, bufOffset: 0, count: p.length / 2 });
  return p;
}

/** Run the writes; the memory behind each must then hold the pattern (the DMA went through the mapping). */
async function write(s: DirtyHwState, writes: Write[], p: string, c: Checks, win = s.session.window): Promise<void> {
  for (const w of writes) await s.session.engine.dma({ toRam: true, iova: win.iova + w.offset, bufOffset: 0, count: w.count });
  let landed = 0;
  for (const w of writes) {
    const r = await must(s.agent, 'mem_read', { addr: win.addr + w.offset, length: w.count }, 'mem_read window');
    if (r.data === p.slice(0, w.count * 2)) landed++;
  }
  c.eq('transfers whose bytes arrived in the mapped memory', landed, writes.length);
}

/** DMA reads from window pages: they must set no Dirty bit. */
async function read(s: DirtyHwState, pages: Bits): Promise<void> {
  for (const p of pages) await s.session.engine.dma({ toRam: false, iova: s.session.window.iova + p * PAGE, bufOffset: 0, count: 64 });
}

interface Report {
  errno: string;
  pages: Bits;
  missing: Bits;
  extra: Bits;
}

async function report(s: DirtyHwState, hwpt: number, expected: Bits, noClear = false, win = s.session.window): Promise<Report> {
  const r = await s.session.fd.bitmap(hwpt, win.iova, win.pages * PAGE, PAGE, noClear ? { flags: IOMMUFD.GET_DIRTY_BITMAP_NO_CLEAR } : {});
  if (!r.ok) return { errno: errOf(r), pages: [], missing: [...expected], extra: [] };
  // bits past the window count as extra: the kernel wrote outside what it was asked for
  const { bits, beyond } = fromHex(r.bitmap, win.pages);
  const want = new Set(expected);
  const got = new Set(bits);
  return { errno: 'OK', pages: bits, missing: expected.filter((i) => !got.has(i)), extra: [...bits.filter((i) => !want.has(i)), ...beyond] };
}

/** One report judged exactly: missing pages are lost writes, extra pages were never written (4 KiB IOPTEs). */
function judge(c: Checks, what: string, r: Report): void {
  c.eq(`${what}: GET_DIRTY_BITMAP`, r.errno, 'OK');
  c.ok(`${what}: no page written by the device is missing`, r.missing.length === 0, `missing ${r.missing.slice(0, 8).join(', ')}`);
  c.ok(`${what}: no page reported that the device did not write`, r.extra.length === 0, `extra ${r.extra.slice(0, 8).join(', ')}`);
}

const figures = (r: Report) => ({ reported: r.pages.length, missing: r.missing, extra: r.extra });

/**
 * A case on a HWPT of its own: allocated with DIRTY_TRACKING on the session's IOAS (or `on`, another
 * IOAS holding `win`), so it holds the window's mappings; edu's RID attached to it, tracking on and a
 * clearing read first (what mapping left behind is not the case's). Afterwards edu goes back to the
 * session's IOAS and the HWPT is destroyed.
 */
async function onDirtyHwpt(
  s: DirtyHwState, run: (hwpt: number, c: Checks) => Promise<CaseOutcome>, on = { ioas: s.session.ioas, win: s.session.window },
): Promise<CaseOutcome> {
  const { fd, devid, ioas, dev } = s.session;
  const hwpt = await fd.mustHwpt(devid, on.ioas, IOMMUFD.HWPT_ALLOC_DIRTY_TRACKING);
  try {
    await must(s.agent, 'vfio_attach_pt', { dev, pt_id: hwpt }, 'attach edu to the dirty-tracking HWPT');
    const c = new Checks();
    c.eq('SET_DIRTY_TRACKING(enable)', errOf(await fd.tracking(hwpt, true)), 'OK');
    c.eq('the clearing read before the case', errOf(await fd.bitmap(hwpt, on.win.iova, on.win.pages * PAGE, PAGE)), 'OK');
    const o = await run(hwpt, c);
    await fd.tracking(hwpt, false);
    return o;
  } finally {
    await s.agent.request('vfio_attach_pt', { dev, pt_id: ioas });
    await fd.destroy(hwpt);
  }
}

/** Free 2 MiB hugetlb pages: at least `n`, raising nr_hugepages if need be; the old count to restore. */
async function hugepages(t: Target, n: number): Promise<{ restore: number } | { why: string }> {
  const dir = '/sys/kernel/mm/hugepages/hugepages-2048kB';
  const get = async () => {
    const r = await t.exec(`cat ${dir}/nr_hugepages ${dir}/free_hugepages`, { timeoutMs: 10_000 });
    const [nr, free] = r.stdout.trim().split(/\s+/).map(Number);
    return { nr: nr ?? NaN, free: free ?? NaN };
  };
  const before = await get();
  if (!Number.isFinite(before.free)) return { why: `no 2 MiB hugetlb pages in the guest (${dir})` };
  if (before.free < n) await t.exec(`echo ${before.nr + n - before.free} > ${dir}/nr_hugepages`, { timeoutMs: 30_000 });
  const after = await get();
  if (!(after.free >= n)) return { why: `the guest could reserve only ${after.free} free 2 MiB hugetlb pages, the case needs ${n}` };
  return { restore: before.nr };
}

/** Hugetlb pages the contiguous case searches for a physically contiguous pair aligned to 4 MiB. */
const HUGE_SEARCH = 8;

/**
 * A case on hugetlb memory mapped at HUGE_IOVA + `offset` on an IOAS of its own with huge pages
 * allowed, so the driver may use IOPTEs larger than 4 KiB; the source page is mapped there too, for
 * loadPattern. The window is two 2 MiB pages. Which IOPTE sizes the driver can pick depends on the
 * physical layout as well: two hugetlb pages that happen to be contiguous and aligned to 4 MiB, at a
 * 4 MiB-aligned IOVA, can be one 4 MiB entry (AMD v1 writes it as two replicated 2 MiB entries).
 * With `contiguous`, the window is such a pair, found among HUGE_SEARCH pages by their page frames;
 * without it, `offset` alone must settle the sizes.
 */
async function onHugeWindow(
  s: DirtyHwState, offset: number, run: (hwpt: number, c: Checks, win: Win) => Promise<CaseOutcome>, contiguous = false,
): Promise<CaseOutcome> {
  const { fd } = s.session;
  const count = contiguous ? HUGE_SEARCH : 2;
  const hp = await hugepages(s.target, count);
  if ('why' in hp) return { status: 'skip', reason: hp.why };
  const length = count * HUGE;
  let addr: number | undefined;
  const ioas = await fd.ioas();
  try {
    addr = (await must(s.agent, 'mem_alloc', { length, hugetlb: true }, `mem_alloc ${length >> 20} MiB of hugetlb memory`)).addr;
    let first = 0;
    if (contiguous) {
      const pfns: number[] = [];
      for (let i = 0; i < count; i++) pfns.push((await must(s.agent, 'mem_pfn', { addr: addr + i * HUGE }, 'mem_pfn of a hugetlb page')).pfn);
      const pair = contiguousPair(pfns, HUGE / PAGE);
      if (pair === undefined) {
        return { status: 'skip', reason: `none of the ${count} hugetlb pages the guest gave is followed by its physical neighbour on a 4 MiB boundary (page frames ${pfns.map((p) => `0x${p.toString(16)}`).join(', ')}): no driver can map them with a 4 MiB entry` };
      }
      first = pair;
    }
    const win: Win = { iova: HUGE_IOVA + offset, addr: addr + first * HUGE, pages: (2 * HUGE) / PAGE };
    await must(s.agent, 'ioas_map', { iommufd: fd.fd, ioas, iova: win.iova, length: 2 * HUGE, addr: win.addr }, 'IOMMU_IOAS_MAP hugetlb window');
    await must(s.agent, 'ioas_map', { iommufd: fd.fd, ioas, iova: SOURCE_IOVA, length: PAGE, addr: s.session.source }, 'IOMMU_IOAS_MAP source page');
    return await onDirtyHwpt(s, (hwpt, c) => run(hwpt, c, win), { ioas, win });
  } finally {
    await fd.destroy(ioas);
    if (addr !== undefined) await s.agent.request('mem_free', { addr, length });
    await s.target.exec(`echo ${hp.restore} > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`, { timeoutMs: 30_000 });
  }
}

/**
 * Judge a report on a window mapped with IOPTEs up to `blockPages` pages: nothing written may be
 * missing, and each block holding a written page is reported exactly (4 KiB IOPTEs) or whole (the
 * uAPI reports a dirty IOPTE's range); a block reported in part, or an extra page in a block nothing
 * was written to, is wrong.
 */
function judgeBlocks(c: Checks, r: Report, written: Bits, blockPages: number) {
  c.eq('GET_DIRTY_BITMAP', r.errno, 'OK');
  c.ok('no page written by the device is missing', r.missing.length === 0, `missing ${r.missing.slice(0, 8).join(', ')}`);
  const { explained, unexplained } = splitExtra(r.extra, written, blockPages);
  c.ok('every extra page shares a block with a written page', unexplained.length === 0, `unexplained ${unexplained.slice(0, 8).join(', ')}`);
  const reported = new Set(r.pages);
  const partial: number[] = [];
  for (const block of new Set(written.map((p) => Math.floor(p / blockPages)))) {
    const inBlock = Array.from({ length: blockPages }, (_, i) => block * blockPages + i);
    const n = inBlock.filter((p) => reported.has(p)).length;
    const exact = inBlock.filter((p) => written.includes(p)).length;
    if (n !== exact && n !== blockPages) partial.push(block);
  }
  c.ok(`each written block of ${blockPages} pages is reported exactly or whole`, partial.length === 0, `block(s) ${partial.join(', ')} reported in part`);
  return { reported: r.pages.length, missing: r.missing, explainedExtra: explained.length, unexplained, partialBlocks: partial };
}

function writtenCase(name: WriteSet, device: DeviceInfo): CaseDef<State> {
  return dirtyCase(`iommu-dirty/written/${name}`, device, (s) => onDirtyHwpt(s, async (hwpt, c) => {
    const writes = writesFor(WRITE_SETS[name]);
    const expected = pagesWritten(writes);
    const p = await loadPattern(s);
    await write(s, writes, p, c);
    const r = await report(s, hwpt, expected);
    judge(c, `${writes.length} transfers to ${expected.length} pages`, r);
    return outcome(c, { transfers: writes.length, written: expected.length, ...figures(r) }, { reported: expected.length, missing: [], extra: [] });
  }));
}

const CASES = (device: DeviceInfo): CaseDef<State>[] => [
  {
    id: 'iommu-dirty/capability', device, timeoutMs: 60_000,
    run: async (s) => {
      if ('why' in s) throw new HarnessError(s.why);
      // IOMMU_HW_CAP_DIRTY_TRACKING <=> HWPT_ALLOC(DIRTY_TRACKING) works; a HWPT without it refuses tracking.
      const { fd, devid, ioas } = s.session;
      const c = new Checks();
      const a = await fd.hwptAlloc(devid, ioas, IOMMUFD.HWPT_ALLOC_DIRTY_TRACKING);
      if (a.ok) await fd.destroy(a.hwpt);
      c.eq('HWPT_ALLOC(DIRTY_TRACKING)', errOf(a), s.capable ? 'OK' : 'EOPNOTSUPP');
      const plain = await fd.mustHwpt(devid, ioas, 0);
      const t = await fd.tracking(plain, true);
      await fd.destroy(plain);
      c.eq('SET_DIRTY_TRACKING on a HWPT allocated without DIRTY_TRACKING', errOf(t), 'EOPNOTSUPP');
      return outcome(c, { iommu: s.vendor, capDirtyTracking: s.capable, hwptAllocDirty: errOf(a), trackingOnPlainHwpt: errOf(t) }, { hwptAllocDirty: s.capable ? 'OK' : 'EOPNOTSUPP', trackingOnPlainHwpt: 'EOPNOTSUPP' });
    },
  },
  ...(Object.keys(WRITE_SETS) as WriteSet[]).map((n) => writtenCase(n, device)),
  dirtyCase('iommu-dirty/clear-then-second-round', device, (s) => onDirtyHwpt(s, async (hwpt, c) => {
    // Round 2 writes page 300 again: only the driver's IOTLB flush after clearing its Dirty bit lets
    // the IOMMU set it again; a stale cached translation would let the write through unrecorded.
    const round1 = writesFor([300, 600, 601]);
    const round2 = writesFor([300, 301, 900]);
    const p = await loadPattern(s);
    await write(s, round1, p, c);
    const r1 = await report(s, hwpt, pagesWritten(round1));
    judge(c, 'round 1 (clearing read)', r1);
    await write(s, round2, p, c);
    const r2 = await report(s, hwpt, pagesWritten(round2));
    judge(c, 'round 2', r2);
    return outcome(c, { round1: figures(r1), round2: figures(r2) }, { round2: { reported: pagesWritten(round2).length, missing: [], extra: [] } });
  })),
  dirtyCase('iommu-dirty/no-clear-keeps', device, (s) => onDirtyHwpt(s, async (hwpt, c) => {
    const writes = writesFor([5, 6, 700]);
    const want = pagesWritten(writes);
    await write(s, writes, await loadPattern(s), c);
    const a = await report(s, hwpt, want, true);
    const b = await report(s, hwpt, want, true);
    const cleared = await report(s, hwpt, want);
    const after = await report(s, hwpt, []);
    judge(c, 'first NO_CLEAR read', a);
    judge(c, 'second NO_CLEAR read', b);
    judge(c, 'clearing read', cleared);
    judge(c, 'read after the clearing read', after);
    return outcome(c, { noClear: [a.pages.length, b.pages.length], cleared: cleared.pages.length, after: after.pages.length }, { noClear: [want.length, want.length], cleared: want.length, after: 0 });
  })),
  dirtyCase('iommu-dirty/dma-read-clean', device, (s) => onDirtyHwpt(s, async (hwpt, c) => {
    await read(s, [10, 11, 12, 800]);
    const r = await report(s, hwpt, []);
    judge(c, 'after DMA reads only', r);
    const writes = writesFor([11]);
    await write(s, writes, await loadPattern(s), c);
    const w = await report(s, hwpt, pagesWritten(writes));
    judge(c, 'after one write among the pages read', w);
    return outcome(c, { afterReads: figures(r), afterWrite: figures(w) }, { afterReads: { reported: 0 }, afterWrite: { reported: 1 } });
  })),
  dirtyCase('iommu-dirty/huge-page', device, (s) => onHugeWindow(s, HUGE, async (hwpt, c, win) => {
    // 2 MiB past a 4 MiB boundary no 4 MiB entry fits the window, whatever the physical layout: each
    // block is one 2 MiB IOPTE. One page written in each block, so each is reported whole.
    const writes = writesFor([3, 700]);
    const written = pagesWritten(writes);
    await write(s, writes, await loadPattern(s), c, win);
    const r = await report(s, hwpt, written, false, win);
    const figures = judgeBlocks(c, r, written, HUGE / PAGE);
    const after = await report(s, hwpt, [], false, win);
    judge(c, 'read after the clearing read', after);
    return outcome(c, { ...figures, afterClear: after.pages.length }, { missing: [], unexplained: [], partialBlocks: [], afterClear: 0 });
  })),
  dirtyCase('iommu-dirty/huge-contiguous', device, (s) => onHugeWindow(s, 0, async (hwpt, c, win) => {
    // Two physically contiguous hugetlb pages on a 4 MiB boundary at a 4 MiB-aligned IOVA: AMD v1
    // maps them with one 4 MiB entry (two replicated 2 MiB entries, NextLevel 7), VT-d with two 2 MiB
    // entries. Either way a write in each 2 MiB half reports both halves whole; a report one item
    // short of the contiguous entry (generic_pt record_dirty) loses the second half, 2 MiB at once.
    const writes = writesFor([3, 700]);
    const written = pagesWritten(writes);
    await write(s, writes, await loadPattern(s), c, win);
    const r = await report(s, hwpt, written, false, win);
    const figures = judgeBlocks(c, r, written, HUGE / PAGE);
    return outcome(c, { ...figures, physicallyContiguous: true }, { missing: [], unexplained: [], partialBlocks: [], physicallyContiguous: true });
  }, true)),
  dirtyCase('iommu-dirty/contiguous-entries', device, (s) => onHugeWindow(s, CONTIG, async (hwpt, c, win) => {
    // 64 KiB past a 2 MiB boundary the largest IOPTE that fits is 64 KiB: AMD v1 writes it as 16
    // replicated entries (NextLevel 7), a generic_pt contiguous entry; VT-d has no such size and maps
    // 4 KiB. Written: the last page of one 64 KiB block, a middle page of the next, the last of a third;
    // a report one page short of a block (generic_pt record_dirty) loses the last pages.
    const blockPages = CONTIG / PAGE;
    const writes = writesFor([15, 21, 47]);
    const written = pagesWritten(writes);
    await write(s, writes, await loadPattern(s), c, win);
    const r = await report(s, hwpt, written, false, win);
    const figures = judgeBlocks(c, r, written, blockPages);
    const lastPages = lastPagesOfBlocks(written, blockPages);
    return outcome(c, { ...figures, lastPagesOfBlocks: lastPages.filter((p) => r.pages.includes(p)) }, { missing: [], unexplained: [], partialBlocks: [] });
  })),
  dirtyCase('iommu-dirty/unmap-after-writes', device, (s) => onDirtyHwpt(s, async (hwpt, c) => {
    // IOMMU_IOAS_UNMAP of a range the device wrote: 7.2 has no unmap-and-read path (iommufd's VFIO
    // compat refuses VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP), so what was dirty there is read before the
    // unmap or lost. After it, GET_DIRTY_BITMAP over the hole must fail (the range is not mapped:
    // iommufd's walk says EINVAL), and the dirty bits of what stays mapped must be untouched.
    const { fd, ioas } = s.session;
    const length = UNMAP_PAGES * PAGE;
    const addr = (await must(s.agent, 'mem_alloc', { length }, 'mem_alloc unmap range')).addr;
    const win: Win = { iova: UNMAP_IOVA, addr, pages: UNMAP_PAGES };
    let mapped = false;
    try {
      await must(s.agent, 'ioas_map', { iommufd: fd.fd, ioas, iova: UNMAP_IOVA, length, addr }, 'IOMMU_IOAS_MAP unmap range');
      mapped = true;
      const p = await loadPattern(s);
      const inRange = writesFor([1, 7]);
      const kept = writesFor([42]);
      await write(s, inRange, p, c, win);
      await write(s, kept, p, c);
      const before = await report(s, hwpt, pagesWritten(inRange), true, win);
      judge(c, 'the range before the unmap (NO_CLEAR)', before);
      const u = await s.agent.request('ioas_unmap', { iommufd: fd.fd, ioas, iova: UNMAP_IOVA, length });
      c.eq('IOMMU_IOAS_UNMAP', errOf(u), 'OK');
      mapped = !u.ok;
      const hole = await fd.bitmap(hwpt, UNMAP_IOVA, length, PAGE);
      const holeBits = hole.ok ? fromHex(hole.bitmap, UNMAP_PAGES).bits : [];
      c.eq('GET_DIRTY_BITMAP over the unmapped range', errOf(hole), 'EINVAL');
      const rest = await report(s, hwpt, pagesWritten(kept));
      judge(c, 'the window, still mapped', rest);
      return outcome(
        c,
        { beforeUnmap: before.pages, unmap: errOf(u), afterUnmap: { errno: errOf(hole), pages: holeBits }, stillMapped: figures(rest) },
        { beforeUnmap: pagesWritten(inRange), unmap: 'OK', afterUnmap: { errno: 'EINVAL' }, stillMapped: { reported: 1, missing: [], extra: [] } },
      );
    } finally {
      if (mapped) await s.agent.request('ioas_unmap', { iommufd: fd.fd, ioas, iova: UNMAP_IOVA, length });
      await s.agent.request('mem_free', { addr, length });
    }
  })),
  dirtyCase('iommu-dirty/tracking-off-then-on', device, (s) => onDirtyHwpt(s, async (hwpt, c) => {
    const { fd } = s.session;
    const p = await loadPattern(s);
    c.eq('SET_DIRTY_TRACKING(disable)', errOf(await fd.tracking(hwpt, false)), 'OK');
    await write(s, writesFor([20, 520]), p, c);
    const off = await report(s, hwpt, []);
    judge(c, 'writes while tracking is off', off);
    c.eq('SET_DIRTY_TRACKING(enable) again', errOf(await fd.tracking(hwpt, true)), 'OK');
    const fresh = await report(s, hwpt, []);
    judge(c, 'right after enabling again', fresh);
    const writes = writesFor([21]);
    await write(s, writes, p, c);
    const on = await report(s, hwpt, pagesWritten(writes));
    judge(c, 'a write after enabling again', on);
    return outcome(c, { whileOff: off.pages.length, afterEnable: fresh.pages.length, afterWrite: figures(on) }, { whileOff: 0, afterEnable: 0, afterWrite: { reported: 1 } });
  })),
];

/** A case that needs the dirty-capable IOMMU: on any other it is a skip that says so. */
function dirtyCase(id: string, device: DeviceInfo, run: (s: DirtyHwState) => Promise<CaseOutcome>): CaseDef<State> {
  return {
    id, device, timeoutMs: 90_000,
    run: async (s) => {
      if ('why' in s) throw new HarnessError(s.why);
      if (!s.capable) return { status: 'skip', reason: `the IOMMU (${s.vendor}, ${s.sysIommu}) reports no IOMMU_HW_CAP_DIRTY_TRACKING: dirty tracking of real DMA needs a profile that emulates it (intel-iommu-dirty or amd-iommu-dirty on our QEMU)` };
      const o = await run(s);
      return o.observed ? { ...o, observed: { iommu: s.vendor, ...o.observed } } : o;
    },
  };
}

/** The IOMMU's vendor from its /sys/class/iommu name (dmarN, ivhdN, smmu3.*): for observed values. */
function vendorOf(sysIommu: string): string {
  if (/^dmar/.test(sysIommu)) return 'Intel VT-d';
  if (/^ivhd/.test(sysIommu)) return 'AMD-Vi';
  if (/^smmu3/.test(sysIommu)) return 'Arm SMMUv3';
  return sysIommu;
}

const PLACEHOLDER: DeviceInfo = { driver: 'vfio-pci', class: 'emulated', id: 'edu' };

async function alloc(agent: AgentClient, allocations: DirtyHwState['allocations'], length: number): Promise<number> {
  const r = await must(agent, 'mem_alloc', { length }, 'mem_alloc');
  allocations.push({ addr: r.addr, length });
  return r.addr;
}

export const iommuDirtySuite: Suite<State> = {
  name: 'iommu-dirty',
  list: () => CASES(PLACEHOLDER).map((c) => ({ id: c.id, known: 'static' as const })),
  async setup(target: Target, agent: AgentClient) {
    const found = await findEdu(target);
    if ('why' in found) return { state: found, cases: skipCases(CASES(PLACEHOLDER), found.why) };
    const sys = await target.exec('ls /sys/class/iommu', { timeoutMs: 10_000 });
    const sysIommu = sys.stdout.split(/\s+/).find((x) => x && !x.startsWith('iommufd_selftest')) ?? 'none';
    const bound = await bindEdu(target, found.bdf);
    if ('why' in bound) return { state: bound, cases: skipCases(CASES({ ...PLACEHOLDER, fingerprint: { bdf: found.bdf } }), bound.why) };
    const cdev = bound.device.cdev;
    if (!cdev) {
      await bound.manager.restore();
      throw new HarnessError(`${bound.bdf} has no VFIO device cdev`);
    }
    const r = await agent.request('open_cdev', { path: cdev });
    if (!r.ok) {
      await bound.manager.restore();
      throw new HarnessError(`opening ${bound.device.cdev} through iommufd failed at ${r.where ?? '?'}: ${r.err}`);
    }
    const fd = new Iommufd(agent, r.iommufd);
    const engine = new EduEngine(agent, r.dev);
    await engine.enableBusMaster();
    const ioas = r.ioas;
    // 4 KiB IOPTEs: set before the first mapping (the IOAS refuses the option once it has one)
    await fd.noHugePages(ioas);
    const allocations: DirtyHwState['allocations'] = [];
    const window: Win = { iova: WINDOW_IOVA, addr: await alloc(agent, allocations, WINDOW_PAGES * PAGE), pages: WINDOW_PAGES };
    const source = await alloc(agent, allocations, PAGE);
    await must(agent, 'ioas_map', { iommufd: fd.fd, ioas, iova: WINDOW_IOVA, length: WINDOW_PAGES * PAGE, addr: window.addr }, 'IOMMU_IOAS_MAP window');
    await must(agent, 'ioas_map', { iommufd: fd.fd, ioas, iova: SOURCE_IOVA, length: PAGE, addr: source }, 'IOMMU_IOAS_MAP source page');
    const hw = await fd.hwInfo(r.devid);
    const capable = hw.ok && (hw.capabilities & IOMMUFD.HW_CAP_DIRTY_TRACKING) !== 0;
    const session: Session = { fd, dev: r.dev, ioas, devid: r.devid, engine, window, source };
    const device: DeviceInfo = { ...PLACEHOLDER, fingerprint: { bdf: bound.bdf, iommu: sysIommu, hwInfoType: hw.type, capabilities: hw.capabilities } };
    return { state: { agent, target, vendor: vendorOf(sysIommu), edu: bound, sysIommu, session, capable, allocations }, cases: CASES(device) };
  },
  async teardown(state, _target, agent) {
    if ('why' in state) return;
    const { fd, ioas, dev } = state.session;
    await agent.request('ioas_unmap', { iommufd: fd.fd, ioas, iova: WINDOW_IOVA, length: WINDOW_PAGES * PAGE });
    await agent.request('ioas_unmap', { iommufd: fd.fd, ioas, iova: SOURCE_IOVA, length: PAGE });
    await agent.request('close', { fd: dev });
    await fd.close();
    for (const a of state.allocations) await agent.request('mem_free', { addr: a.addr, length: a.length });
    const r = await state.edu.manager.restore();
    if (!r.ok) throw new HarnessError(`edu ${state.edu.bdf}: its original driver binding was not restored: ${r.problems.join('; ')}`);
  },
};
