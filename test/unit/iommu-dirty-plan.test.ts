import t from 'tap';
import { PAGE, WINDOW_PAGES, WRITE_SETS, contiguousPair, lastPagesOfBlocks, pagesWritten, splitExtra, writesFor } from '../../suites/iommu-dirty/plan.js';

t.test('each page set is written exactly: the transfers touch those pages and no other', async (t) => {
  for (const [name, pages] of Object.entries(WRITE_SETS)) {
    const writes = writesFor(pages);
    t.same(pagesWritten(writes), [...pages].sort((a, b) => a - b), name);
    for (const w of writes) {
      t.ok(w.count > 0 && w.count <= 2048, `${name}: ${w.count} bytes fits one edu transfer`);
      t.ok(w.offset >= 0 && w.offset + w.count <= WINDOW_PAGES * PAGE, `${name}: inside the window`);
    }
  }
});

t.test('adjacent pages share one straddling transfer; lone pages get a short write inside the page', async (t) => {
  t.same(writesFor([4, 5]), [{ offset: 5 * PAGE - 1024, count: 2048 }], "1 KiB on either side of the boundary between pages 4 and 5");
  t.equal(writesFor(WRITE_SETS.dense).length, 16, '32 consecutive pages in 16 transfers');
  const lone = writesFor([7]);
  t.equal(lone.length, 1);
  t.ok(lone[0]!.offset > 7 * PAGE && lone[0]!.offset + lone[0]!.count <= 8 * PAGE, 'not at the first byte, not past the page');
  t.same(pagesWritten(writesFor([1, 2, 3])), [1, 2, 3], 'an odd run: a pair and a single');
  t.throws(() => writesFor([WINDOW_PAGES]), RangeError);
});

t.test('the sets cover what issue 15 asks for', async (t) => {
  t.ok(WRITE_SETS['both-ends'].includes(0) && WRITE_SETS['both-ends'].includes(WINDOW_PAGES - 1), 'first and last page');
  t.ok(WRITE_SETS['across-2mib'].includes(511) && WRITE_SETS['across-2mib'].includes(512), 'either side of the 2 MiB boundary');
  t.ok(WRITE_SETS.sparse.some((p) => p % 64 === 0), 'a page on a u64 word boundary of the bitmap');
});

t.test('across-2mib: one transfer crosses the 2 MiB boundary itself', async (t) => {
  const boundary = 512 * PAGE;
  t.ok(writesFor(WRITE_SETS['across-2mib']).some((w) => w.offset < boundary && w.offset + w.count > boundary));
});

t.test('extra pages are explained only inside a block that holds a written page', async (t) => {
  t.same(splitExtra([0, 1, 511, 512, 700], [3], 512), { explained: [0, 1, 511], unexplained: [512, 700] });
  // a window starting 16 pages into its first block: pages 0..495 share block 0 with the 16 before it
  t.same(splitExtra([495, 496], [10], 512, 16), { explained: [495], unexplained: [496] });
  t.same(splitExtra([5], [], 16), { explained: [], unexplained: [5] }, 'nothing written explains nothing');
  t.same(lastPagesOfBlocks([3, 15, 17], 16), [15, 31]);
  t.same(lastPagesOfBlocks([0], 16, 1), [14], 'with one page of the block before the window');
});

t.test('a contiguous pair is physically adjacent and starts on a boundary of twice the page size', async (t) => {
  // the layout seen on amd-iommu-dirty: two hugetlb pages at 0x3000000 and 0x3200000 (frames of 4 KiB)
  t.equal(contiguousPair([0x3000, 0x3200], 512), 0, 'adjacent on a 4 MiB boundary: one 4 MiB entry fits');
  t.equal(contiguousPair([0x2a00, 0x3400], 512), undefined, 'not adjacent');
  t.equal(contiguousPair([0x3200, 0x3400], 512), undefined, 'adjacent, but the first starts 2 MiB past a 4 MiB boundary');
  t.equal(contiguousPair([0x3400, 0x3200, 0x5000, 0x5200], 512), 2, 'the first pair that qualifies, not the first two pages');
  t.equal(contiguousPair([0x3200, 0x3000], 512), undefined, 'descending frames are no contiguous mapping');
  t.equal(contiguousPair([0x3000], 512), undefined, 'one page is no pair');
});
