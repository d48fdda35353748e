import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binaryWithLibraries, elfDeps, realInRoot, type Userland } from '../../images/initramfs/userland.js';
import { HarnessError } from '../../base/errors.js';

const work = mkdtempSync(join(tmpdir(), 'vfioc-userland-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('realInRoot follows absolute and relative links inside the root, never out of it', async (t) => {
  const root = join(work, 'links');
  mkdirSync(join(root, 'usr', 'lib', 'tri'), { recursive: true });
  writeFileSync(join(root, 'usr', 'lib', 'tri', 'libc.so.6'), 'x');
  symlinkSync('usr/lib', join(root, 'lib'));
  symlinkSync('/lib/tri/libc.so.6', join(root, 'usr', 'lib', 'libc-abs'));
  symlinkSync('tri/libc.so.6', join(root, 'usr', 'lib', 'libc-rel'));
  t.equal(realInRoot(root, '/lib/tri/libc.so.6'), '/usr/lib/tri/libc.so.6', 'a directory link (merged /usr)');
  t.equal(realInRoot(root, '/usr/lib/libc-abs'), '/usr/lib/tri/libc.so.6', 'an absolute target is read inside the root');
  t.equal(realInRoot(root, '/usr/lib/libc-rel'), '/usr/lib/tri/libc.so.6');
  t.throws(() => realInRoot(root, '/lib/tri/missing.so'), HarnessError);
  symlinkSync('loop2', join(root, 'loop1'));
  symlinkSync('loop1', join(root, 'loop2'));
  t.throws(() => realInRoot(root, '/loop1'), /too many symlinks/);
});

t.test('elfDeps reads NEEDED and the interpreter of a real dynamically linked binary', async (t) => {
  const d = await elfDeps('/usr/sbin/dropbear');
  t.ok(d.needed.includes('libc.so.6'), `needs libc: ${d.needed.join(', ')}`);
  t.match(d.interp ?? '', /^\/lib.*\/ld-linux/);
  const s = await elfDeps('/bin/busybox');
  t.same(s.needed, [], 'busybox-static needs nothing');
  t.equal(s.interp, undefined);
});

t.test('a foreign-style root: dropbear and its closure resolved inside it, loader aliased at the ABI path', async (t) => {
  // Build a root the way dpkg-deb -x leaves one, from the host's own files: libraries under
  // lib/<triplet>, and the loader only reachable through the ELF's interpreter path.
  const root = join(work, 'root');
  const tri = 'x86_64-linux-gnu';
  mkdirSync(join(root, 'usr', 'sbin'), { recursive: true });
  mkdirSync(join(root, 'lib', tri), { recursive: true });
  copyFileSync('/usr/sbin/dropbear', join(root, 'usr', 'sbin', 'dropbear'));
  const d = await elfDeps('/usr/sbin/dropbear');
  const queue = [...d.needed];
  const copied = new Set<string>();
  while (queue.length) {
    const lib = queue.shift()!;
    if (copied.has(lib)) continue;
    copied.add(lib);
    copyFileSync(join('/lib', tri, lib), join(root, 'lib', tri, lib));
    queue.push(...(await elfDeps(join('/lib', tri, lib))).needed);
  }
  copyFileSync(join('/lib', tri, 'ld-linux-x86-64.so.2'), join(root, 'lib', tri, 'ld-linux-x86-64.so.2'));
  mkdirSync(join(root, 'lib64'));
  symlinkSync(`/lib/${tri}/ld-linux-x86-64.so.2`, join(root, 'lib64', 'ld-linux-x86-64.so.2'));
  const u: Userland = { root, triplet: tri };
  const entries = await binaryWithLibraries(u, '/usr/sbin/dropbear', 'usr/sbin/dropbear');
  const byPath = new Map(entries.map((e) => [e.path, e]));
  t.equal(byPath.get('usr/sbin/dropbear')?.type, 'file');
  for (const lib of copied) t.equal(byPath.get(`lib/${tri}/${lib}`)?.type, 'file', lib);
  t.equal(byPath.get(`lib/${tri}/ld-linux-x86-64.so.2`)?.type, 'file', 'the loader itself');
  t.match(byPath.get('lib64/ld-linux-x86-64.so.2'), { type: 'symlink', target: `/lib/${tri}/ld-linux-x86-64.so.2` }, 'the interpreter path points at it');

  rmSync(join(root, 'lib', tri, 'libc.so.6'));
  await t.rejects(binaryWithLibraries(u, '/usr/sbin/dropbear', 'usr/sbin/dropbear'), /needs libc\.so\.6, which is not under/, 'a missing library is named');
  await t.rejects(binaryWithLibraries(u, '/usr/sbin/nothing', 'x'), /not found/);
});
