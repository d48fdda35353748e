/**
 * Which pages the device writes in each case, and the DMA transfers that write exactly those pages.
 * Pure: the transfers are the oracle the dirty bitmap is judged against (design: what the device
 * really wrote, not what a mock was told).
 */
import type { Bits } from '../dirty/bitmap.js';

export const PAGE = 4096;
/** The tracked window: 1024 pages (4 MiB), two whole 2 MiB blocks, IOVA 2 MiB-aligned */
export const WINDOW_PAGES = 1024;
/** one edu transfer: at most this many bytes (QEMU 7.2's edu aborts on 4096; see suites/dma/edu.ts) */
const MAX_TRANSFER = 2048;

/** The page sets of issue 15's list: one page, sparse, dense, both ends, across a 2 MiB boundary. */
export const WRITE_SETS = {
  'one-page': [417],
  // a prime stride: crosses byte and u64 boundaries of the bitmap at odd places
  sparse: [3, 64, 125, 186, 247, 308, 369, 430, 491, 552, 613, 674, 735, 796, 857, 918, 979],
  // 32 consecutive pages, written two at a time by transfers that straddle a page boundary
  dense: Array.from({ length: 32 }, (_, i) => 96 + i),
  'both-ends': [0, WINDOW_PAGES - 1],
  // one transfer straddles the 2 MiB boundary (pages 511 and 512), two lone pages beside it
  'across-2mib': [509, 511, 512, 514],
} as const satisfies Record<string, Bits>;

export type WriteSet = keyof typeof WRITE_SETS;

/** One DMA write into the window: `count` bytes at byte `offset` of the window. */
export interface Write {
  offset: number;
  count: number;
}

/**
 * Transfers that write exactly `pages` (sorted, distinct): a pair of adjacent pages gets one
 * 2 KiB transfer straddling their boundary (one DMA, two translations), any other page a short
 * write at a page-dependent offset (so a page is never judged by its first bytes only).
 */
export function writesFor(pages: readonly number[]): Write[] {
  const sorted = [...new Set(pages)].sort((a, b) => a - b);
  const out: Write[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const p = sorted[i]!;
    if (p < 0 || p >= WINDOW_PAGES) throw new RangeError(`page ${p} outside the window [0, ${WINDOW_PAGES})`);
    if (sorted[i + 1] === p + 1) {
      out.push({ offset: (p + 1) * PAGE - MAX_TRANSFER / 2, count: MAX_TRANSFER });
      i++;
    } else {
      out.push({ offset: p * PAGE + ((p * 136) % (PAGE - 64)), count: 64 });
    }
  }
  return out;
}

/** The pages a set of writes touches: what an exact dirty tracker reports. */
export function pagesWritten(writes: readonly Write[]): Bits {
  const pages = new Set<number>();
  for (const w of writes) {
    for (let p = Math.floor(w.offset / PAGE); p <= Math.floor((w.offset + w.count - 1) / PAGE); p++) pages.add(p);
  }
  return [...pages].sort((a, b) => a - b);
}

/**
 * A report judged against a mapping whose IOPTEs are larger than the bitmap's page: the uAPI lets
 * the kernel report a dirty IOPTE's whole range, so an extra page is explained when it shares a
 * block of `blockPages` with a page that was written. `lead` is how many pages of its first block
 * lie before the window (the window's IOVA modulo the block size, in pages).
 */
export function splitExtra(extra: Bits, written: Bits, blockPages: number, lead = 0): { explained: Bits; unexplained: Bits } {
  const block = (p: number) => Math.floor((p + lead) / blockPages);
  const dirtyBlocks = new Set(written.map(block));
  const explained: Bits = [];
  const unexplained: Bits = [];
  for (const p of extra) (dirtyBlocks.has(block(p)) ? explained : unexplained).push(p);
  return { explained, unexplained };
}

/** The last page of each block of `blockPages` that `pages` touch: where a report one page short shows. */
export function lastPagesOfBlocks(pages: Bits, blockPages: number, lead = 0): Bits {
  const out = new Set<number>();
  for (const p of pages) out.add((Math.floor((p + lead) / blockPages) + 1) * blockPages - 1 - lead);
  return [...out].sort((a, b) => a - b);
}

/**
 * The index of the first of two hugetlb pages, each `framesPerPage` page frames, that are physically
 * contiguous and start on a boundary of twice their size: the only pair a driver can map with one
 * entry of that size. `pfns[i]` is the first frame of page i (consecutive in virtual memory).
 */
export function contiguousPair(pfns: number[], framesPerPage: number): number | undefined {
  for (let i = 0; i + 1 < pfns.length; i++) {
    const a = pfns[i] as number;
    if (a % (2 * framesPerPage) === 0 && pfns[i + 1] === a + framesPerPage) return i;
  }
  return undefined;
}
