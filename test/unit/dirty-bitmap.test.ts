import t from 'tap';
import {
  PATTERNS, bitmapBytes, compareBits, diffReports, foldBits, fromHex, patternBits, toHex, windowBits,
} from '../../suites/dirty/bitmap.js';
import { rangeList, LOG_MAX_RANGES } from '../../suites/dirty/dmalog.js';

t.test('bitmap layout: LSB-first little-endian u64 words, rounded up to whole words', async (t) => {
  t.equal(bitmapBytes(1), 8);
  t.equal(bitmapBytes(64), 8);
  t.equal(bitmapBytes(65), 16);
  t.equal(bitmapBytes(65536), 8192, '128 MiB at 2 KiB pages: an 8 KiB bitmap');
  // bit 0 -> byte 0 bit 0; bit 9 -> byte 1 bit 1; bit 63 -> byte 7 bit 7; bit 64 -> byte 8 bit 0
  t.equal(toHex([0, 9, 63, 64], 65), '0102000000000080' + '0100000000000000');
  t.same(fromHex('0102000000000080' + '0100000000000000', 65), { bits: [0, 9, 63, 64], beyond: [] });
  t.same(fromHex('ff', 4), { bits: [0, 1, 2, 3], beyond: [4, 5, 6, 7] }, 'bits past nbits are reported apart');
  t.throws(() => toHex([8], 8), RangeError);
  t.equal(toHex([], 0), '');
});

t.test('round trip for every pattern and awkward sizes', async (t) => {
  for (const n of [1, 4, 8, 63, 64, 65, 160, 32768, 65536]) {
    for (const p of PATTERNS) {
      const bits = patternBits(p, n);
      t.ok(bits.every((i) => i >= 0 && i < n), `${p}/${n} in range`);
      t.same(fromHex(toHex(bits, n), n).bits, bits, `${p}/${n}`);
    }
  }
  t.same(patternBits('edges', 160), [0, 63, 64, 159]);
  t.same(patternBits('edges', 4), [0, 3]);
  t.same(patternBits('sparse', 64), [3, 63]);
  t.equal(patternBits('every-other', 5).length, 3);
  t.equal(patternBits('all', 70).length, 70);
});

t.test('compareBits: false negatives, false positives, beyond', async (t) => {
  const exact = compareBits([1, 5], toHex([1, 5], 8), 8);
  t.match(exact, { falseNegatives: 0, falsePositives: 0, beyond: 0, expected: 2, reported: 2 });
  // the 7.2 contiguous-IOPTE shape: bit 3 written, bit 2 reported
  const shifted = compareBits([3], toHex([2], 8), 8);
  t.match(shifted, { falseNegatives: 1, falsePositives: 1, firstMissing: [3], firstExtra: [2] });
  const extra = compareBits([], '0f' + '00'.repeat(7), 2);
  t.match(extra, { falseNegatives: 0, falsePositives: 2, beyond: 2, reported: 2 }, 'only the first nbits count; the rest is "beyond"');
  t.match(compareBits([0], '', 8), { falseNegatives: 1, reported: 0 }, 'an empty reply loses everything');
});

t.test('diffReports, foldBits, windowBits', async (t) => {
  t.same(diffReports(toHex([1, 2], 8), toHex([2, 3], 8), 8), { onlyA: [1], onlyB: [3] });
  t.same(diffReports(toHex([4], 8), toHex([4], 8), 8), { onlyA: [], onlyB: [] });
  t.same(foldBits([0, 1, 3, 8], 2), [0, 1, 4], 'a 4 KiB page is dirty when either 2 KiB half is');
  t.same(windowBits([0, 2, 4, 6, 8], 2, 5), [0, 2, 4]);
});

t.test('DMA logging range strings', async (t) => {
  t.equal(rangeList(2), '0x100000:0x1000,0x102000:0x1000');
  t.equal(rangeList(0), '');
  const many = rangeList(LOG_MAX_RANGES + 1).split(',');
  t.equal(many.length, 257, 'one more than LOG_MAX_RANGES (PAGE_SIZE / 16)');
  const starts = many.map((r) => Number(r.split(':')[0]));
  t.ok(starts.every((s, i) => i === 0 || s - starts[i - 1]! === 0x2000), 'non-overlapping, a page apart');
});
