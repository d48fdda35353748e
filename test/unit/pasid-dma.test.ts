import t from 'tap';
import { extCaps, pasidCap, statusName, vtdPasidBits } from '../../suites/pasid/pasid-dma.js';
import { whereLanded } from '../../suites/pasid/device-cases.js';

/** A 4 KiB config space with extended capability headers at the given offsets. */
function config(caps: { at: number; id: number; version?: number; next: number; body?: number[] }[]): Buffer {
  const b = Buffer.alloc(4096);
  for (const c of caps) {
    b.writeUInt32LE(((c.next & 0xffc) << 20 | (c.version ?? 1) << 16 | c.id) >>> 0, c.at);
    (c.body ?? []).forEach((x, i) => b.writeUInt16LE(x, c.at + 4 + 2 * i));
  }
  return b;
}

t.test('the extended capability list is followed from 0x100', async (t) => {
  // pasid-dma: PASID (0x1b) alone at 0x100, width 20, nothing enabled
  const dev = config([{ at: 0x100, id: 0x1b, next: 0, body: [20 << 8, 0] }]);
  t.same(extCaps(dev), [{ id: 0x1b, version: 1, offset: 0x100 }]);
  t.same(pasidCap(dev), { offset: 0x100, width: 20, control: 0 });
  // PASID second in the chain, enabled with Execute (control 0x3)
  const two = config([{ at: 0x100, id: 0x1, next: 0x148 }, { at: 0x148, id: 0x1b, next: 0, body: [(8 << 8) | 0x2, 0x3] }]);
  t.same(extCaps(two).map((c) => c.id), [0x1, 0x1b]);
  t.same(pasidCap(two), { offset: 0x148, width: 8, control: 0x3 });
});

t.test('vfio-pci\'s view: a hidden first capability leaves an id-0 header that still links on', async (t) => {
  const hidden = config([{ at: 0x100, id: 0, version: 0, next: 0x200 }, { at: 0x200, id: 0x10, next: 0 }]);
  t.same(extCaps(hidden), [{ id: 0x10, version: 1, offset: 0x200 }]);
  t.equal(pasidCap(hidden), undefined);
  t.same(extCaps(config([{ at: 0x100, id: 0, version: 0, next: 0 }])), [], 'only the placeholder: nothing visible');
});

t.test('a broken list ends the walk instead of looping', async (t) => {
  t.same(extCaps(config([{ at: 0x100, id: 0xb, next: 0x100 }])).length, 1, 'a capability pointing at itself');
  t.same(extCaps(config([{ at: 0x100, id: 0xb, next: 0x40 }])).length, 1, 'a next pointer into the first 256 bytes');
  t.same(extCaps(Buffer.alloc(256)), [], 'a 256-byte image (conventional PCI) has no extended space');
  const allOnes = Buffer.alloc(4096, 0xff);
  t.same(extCaps(allOnes), [], 'a device that reads all ones');
});

t.test('VT-d PASID width from ECAP: PSS + 1 when ECAP.PASID is set', async (t) => {
  // QEMU 10.2 intel-iommu, x-scalable-mode=on,x-pasid-mode=on: PASID (bit 40) and PSS 7
  const ecap = ((1n << 40n) | (7n << 35n) | 0xf0205an).toString(16);
  t.equal(vtdPasidBits(ecap), 8);
  t.equal(vtdPasidBits(`${ecap}\n`), 8, 'sysfs ends the value with a newline');
  t.equal(vtdPasidBits((19n << 35n).toString(16)), 0, 'PSS without ECAP.PASID means no PASID');
  t.equal(vtdPasidBits(((1n << 40n) | (19n << 35n)).toString(16)), 20, 'PSS 19: the full 20 bits');
});

t.test('STATUS error bits by name', async (t) => {
  t.equal(statusName(0x2), 'OK');
  t.equal(statusName(0x2 | 1 << 8), 'ERR_READ');
  t.equal(statusName(0x2 | 1 << 9 | 1 << 12), 'ERR_WRITE|ERR_MASTER');
  t.equal(statusName(1 << 10), 'ERR_NO_AS');
  t.equal(statusName(1 << 11), 'ERR_INVAL');
});

t.test('where a copy landed: exactly one domain holding its own source, byte for byte', async (t) => {
  const zero = '0000';
  const sent = { R: '1111', A: '2222', B: '3333' };
  t.equal(whereLanded(sent, { R: zero, A: '2222', B: zero }, zero), 'A');
  t.equal(whereLanded(sent, { R: zero, A: zero, B: zero }, zero), 'none', 'blocked: nothing changed');
  t.equal(whereLanded(sent, { R: zero, A: '1111', B: zero }, zero), 'corrupt', "A holds R's source: translated by the wrong tables");
  t.equal(whereLanded(sent, { R: zero, A: '2200', B: zero }, zero), 'corrupt', 'a partial copy');
  t.equal(whereLanded(sent, { R: '1111', A: '2222', B: zero }, zero), 'corrupt', 'two domains written');
});
