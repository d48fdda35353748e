/**
 * A newc ("070701") cpio writer. Written here rather than shelling out to cpio so the archive is
 * reproducible by construction (entries sorted, mtime 0, uid/gid 0, inode numbers by position) and
 * device nodes such as /dev/console can be added without root.
 */
import { readFileSync, statSync } from 'node:fs';

export type CpioEntry =
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(ino: number, mode: number, size: number, name: string, rmaj = 0, rmin = 0): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const fields = [ino, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, size, 0, 0, rmaj, rmin, nameBytes.length, 0];
  const h = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return Buffer.concat([h, nameBytes, Buffer.alloc(pad4(h.length + nameBytes.length))]);
}

/** Parent directories first, then everything sorted by path: the same inputs give the same bytes. */
/** A host file as an archive entry at `guestPath` (leading / dropped), with its own mode unless given. */
export function fileEntry(guestPath: string, hostPath: string, mode?: number): CpioEntry {
  return { type: 'file', path: guestPath.replace(/^\//, ''), data: readFileSync(hostPath), mode: mode ?? (statSync(hostPath).mode & 0o777) };
}

export function normalize(entries: CpioEntry[]): CpioEntry[] {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '').replace(/\/+$/, '');
    if (!path) continue;
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!byPath.has(dir)) byPath.set(dir, { type: 'dir', path: dir });
    }
    byPath.set(path, { ...e, path });
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export function writeCpio(entries: CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let ino = 1;
  for (const e of normalize(entries)) {
    switch (e.type) {
      case 'dir':
        chunks.push(header(ino++, S_IFDIR | (e.mode ?? 0o755), 0, e.path));
        break;
      case 'file':
        chunks.push(header(ino++, S_IFREG | (e.mode ?? 0o644), e.data.length, e.path), e.data, Buffer.alloc(pad4(e.data.length)));
        break;
      case 'symlink': {
        const t = Buffer.from(e.target, 'utf8');
        chunks.push(header(ino++, S_IFLNK | 0o777, t.length, e.path), t, Buffer.alloc(pad4(t.length)));
        break;
      }
      case 'char':
        chunks.push(header(ino++, S_IFCHR | (e.mode ?? 0o600), 0, e.path, e.major, e.minor));
        break;
    }
  }
  chunks.push(header(0, 0, 0, 'TRAILER!!!'));
  return Buffer.concat(chunks);
}

/** Read back a newc archive (for tests and for `image inspect`). */
export function readCpio(buf: Buffer): { path: string; mode: number; size: number; data: Buffer; rdev: [number, number] }[] {
  const out = [];
  let off = 0;
  for (;;) {
    if (buf.toString('ascii', off, off + 6) !== '070701') throw new Error(`bad cpio magic at ${off}`);
    const f = (i: number) => parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = f(1), size = f(6), rmaj = f(9), rmin = f(10), nsize = f(11);
    const nameStart = off + 110;
    const path = buf.toString('utf8', nameStart, nameStart + nsize - 1);
    const dataStart = nameStart + nsize + pad4(110 + nsize);
    if (path === 'TRAILER!!!') break;
    out.push({ path, mode, size, data: buf.subarray(dataStart, dataStart + size), rdev: [rmaj, rmin] as [number, number] });
    off = dataStart + size + pad4(size);
  }
  return out;
}
