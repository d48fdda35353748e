import t from 'tap';
import { writeCpio, readCpio, type CpioEntry } from '../../images/initramfs/cpio.js';

const entries: CpioEntry[] = [
  { type: 'file', path: 'usr/bin/tool', data: Buffer.from('abc'), mode: 0o755 },
  { type: 'file', path: 'init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
  { type: 'char', path: 'dev/console', major: 5, minor: 1 },
  { type: 'symlink', path: 'sbin', target: 'bin' },
  { type: 'file', path: 'etc/empty', data: Buffer.alloc(0) },
];

t.test('same inputs in any order give the same bytes', async (t) => {
  t.ok(writeCpio(entries).equals(writeCpio([...entries].reverse())));
});

t.test('round trip: parents created, sorted, modes, devices, symlinks, data', async (t) => {
  const back = readCpio(writeCpio(entries));
  t.same(back.map((e) => e.path), ['dev', 'dev/console', 'etc', 'etc/empty', 'init', 'sbin', 'usr', 'usr/bin', 'usr/bin/tool']);
  const tool = back.find((e) => e.path === 'usr/bin/tool')!;
  t.equal(tool.mode, 0o100755);
  t.equal(tool.data.toString(), 'abc');
  const con = back.find((e) => e.path === 'dev/console')!;
  t.equal(con.mode & 0o170000, 0o020000);
  t.same(con.rdev, [5, 1]);
  t.equal(back.find((e) => e.path === 'sbin')!.data.toString(), 'bin');
});

t.test('every header and data block is 4-byte aligned (newc)', async (t) => {
  const buf = writeCpio([{ type: 'file', path: 'a', data: Buffer.from('12345') }, { type: 'file', path: 'bb', data: Buffer.from('1') }]);
  t.equal(buf.length % 4, 0);
  t.equal(readCpio(buf).length, 2);
});

t.test('a later entry for the same path replaces the earlier one', async (t) => {
  const back = readCpio(writeCpio([{ type: 'file', path: '/x', data: Buffer.from('1') }, { type: 'file', path: 'x', data: Buffer.from('2') }]));
  t.equal(back.length, 1);
  t.equal(back[0]!.data.toString(), '2');
});
