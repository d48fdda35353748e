/**
 * Dirty bitmaps as the kernel writes them: bit i (LSB-first within little-endian u64 words, i.e.
 * byte i/8, bit i%8) stands for page `iova + i * page_size`. Pure helpers, no I/O.
 */

/** A set of page indices within [0, nbits). */
export type Bits = number[];

/** Bytes of a bitmap holding `nbits` bits, rounded up to whole u64 words (the kernel's unit). */
export function bitmapBytes(nbits: number): number {
  return Math.ceil(nbits / 64) * 8;
}

/** Encode page indices as the kernel's bitmap (hex of `bitmapBytes(nbits)` bytes). */
export function toHex(bits: Bits, nbits: number): string {
  const b = Buffer.alloc(bitmapBytes(nbits));
  for (const i of bits) {
    if (!Number.isInteger(i) || i < 0 || i >= nbits) throw new RangeError(`bit ${i} outside [0, ${nbits})`);
    b[i >> 3]! |= 1 << (i & 7);
  }
  return b.toString('hex');
}

/** Decode a bitmap; only the first `nbits` bits count, the rest is returned as `beyond`. */
export function fromHex(hex: string, nbits: number): { bits: Bits; beyond: Bits } {
  const b = Buffer.from(hex, 'hex');
  const bits: Bits = [];
  const beyond: Bits = [];
  for (let byte = 0; byte < b.length; byte++) {
    const v = b[byte]!;
    if (!v) continue;
    for (let k = 0; k < 8; k++) {
      if (!(v & (1 << k))) continue;
      const i = byte * 8 + k;
      (i < nbits ? bits : beyond).push(i);
    }
  }
  return { bits, beyond };
}

export interface Comparison {
  /** marked (expected) but not reported: the tracker lost a write */
  falseNegatives: number;
  /** reported but never marked: costs an extra page copy, not correctness */
  falsePositives: number;
  /** bits set past the end of the range (the kernel wrote outside what it was asked for) */
  beyond: number;
  expected: number;
  reported: number;
  /** the first few wrong indices, for the failure message */
  firstMissing: Bits;
  firstExtra: Bits;
}

/** Compare what was reported with what was expected, bit by bit. */
export function compareBits(expected: Bits, reportedHex: string, nbits: number): Comparison {
  const { bits, beyond } = fromHex(reportedHex, nbits);
  const want = new Set(expected);
  const got = new Set(bits);
  const missing = expected.filter((i) => !got.has(i));
  const extra = bits.filter((i) => !want.has(i));
  return {
    falseNegatives: missing.length,
    falsePositives: extra.length,
    beyond: beyond.length,
    expected: want.size,
    reported: got.size,
    firstMissing: missing.slice(0, 8),
    firstExtra: extra.slice(0, 8),
  };
}

/** Compare two reports of the same range with each other (the oracle): indices where they differ. */
export function diffReports(aHex: string, bHex: string, nbits: number): { onlyA: Bits; onlyB: Bits } {
  const a = new Set(fromHex(aHex, nbits).bits);
  const b = new Set(fromHex(bHex, nbits).bits);
  return { onlyA: [...a].filter((i) => !b.has(i)), onlyB: [...b].filter((i) => !a.has(i)) };
}

/**
 * Write patterns chosen to hit the bitmap code's edges: every other page (the selftest's), all,
 * a sparse prime stride that crosses byte and u64 boundaries at odd places, and the edges (first and
 * last page, and either side of the first u64 boundary).
 */
export const PATTERNS = ['every-other', 'all', 'sparse', 'edges'] as const;
export type Pattern = (typeof PATTERNS)[number];

export function patternBits(p: Pattern, nbits: number): Bits {
  const out: Bits = [];
  switch (p) {
    case 'every-other':
      for (let i = 0; i < nbits; i += 2) out.push(i);
      break;
    case 'all':
      for (let i = 0; i < nbits; i++) out.push(i);
      break;
    case 'sparse':
      for (let i = 3; i < nbits; i += 61) out.push(i);
      if (nbits > 0 && out[out.length - 1] !== nbits - 1) out.push(nbits - 1);
      break;
    case 'edges':
      for (const i of [0, 63, 64, nbits - 1]) if (i >= 0 && i < nbits && !out.includes(i)) out.push(i);
      break;
  }
  return out.sort((a, b) => a - b);
}

/**
 * What a read at a coarser page size must report: page j of size `factor` fine pages is dirty when
 * any of its fine pages is (the kernel folds; it must never drop a write).
 */
export function foldBits(bits: Bits, factor: number): Bits {
  return [...new Set(bits.map((i) => Math.floor(i / factor)))].sort((a, b) => a - b);
}

/** Bits of a sub-range starting `offset` pages in and `count` pages long, re-based to 0. */
export function windowBits(bits: Bits, offset: number, count: number): Bits {
  return bits.filter((i) => i >= offset && i < offset + count).map((i) => i - offset);
}
