import { existsSync } from 'node:fs';
import type { Arch } from '../arch.js';
import { HarnessError } from '../../base/errors.js';
import { locate, probeQemu, type QemuCaps } from './probe.js';
import { profileTypes, type Profile } from './profiles.js';

/**
 * Which QEMU a run uses: the host's (`system`), the one we build and patch (`built`, images/qemu),
 * or a binary the user names (`path`). Results record which, with the build's source and series,
 * so an emulated capability is never mistaken for something else.
 */
export type QemuOrigin = 'system' | 'built' | 'path';

export interface QemuBuildId {
  sourceId: string;
  series: { hash: string; patches: string[] };
}

export interface QemuBinary {
  origin: QemuOrigin;
  arch: Arch['name'];
  /** absolute path of qemu-system-* */
  path: string;
  caps: QemuCaps;
  /**
   * -L directories: a QEMU built from Debian's +ds source has no firmware blobs of its own; the
   * system's SeaBIOS and option ROMs serve it. The host's QEMU finds its own.
   */
  firmwareDirs: string[];
  build?: QemuBuildId;
}

/** What results.json records of a QEMU. */
export interface QemuInfo {
  origin: QemuOrigin;
  version: string;
  binary: string;
  sourceId?: string;
  series?: { hash: string; patches: string[] };
}

/** Firmware the system packages install (seabios, qemu-system-data): what a built QEMU boots with. */
export const SYSTEM_FIRMWARE = ['/usr/share/seabios', '/usr/share/qemu'];

/**
 * Open a QEMU binary for a set of profiles: locate it, and ask it about exactly the machine and
 * device types those profiles name. A missing binary is a one-line error naming it.
 */
export async function openQemu(o: { origin: QemuOrigin; binary: string; arch: Arch; profiles: Profile[]; build?: QemuBuildId }): Promise<QemuBinary> {
  const path = await locate(o.binary).catch((e: unknown) => {
    if (e instanceof HarnessError && o.origin === 'system') {
      throw new HarnessError(`${e.message}: install QEMU (Debian: qemu-system-${o.arch.name === 'x86_64' ? 'x86' : 'arm'}) or use --qemu built`);
    }
    throw e;
  });
  return {
    origin: o.origin,
    arch: o.arch.name,
    path,
    caps: await probeQemu(path, profileTypes(o.profiles)),
    firmwareDirs: o.origin === 'system' ? [] : SYSTEM_FIRMWARE.filter((d) => existsSync(d)),
    build: o.build,
  };
}

export function qemuInfo(q: QemuBinary): QemuInfo {
  return { origin: q.origin, version: q.caps.version, binary: q.path, ...(q.build ? { sourceId: q.build.sourceId, series: q.build.series } : {}) };
}

/** One line for logs and listings: "QEMU 10.2.2 (built debian-10.2.2+ds-1, series none)". */
export function describeQemu(q: QemuBinary): string {
  const from = q.origin === 'built' && q.build ? `built ${q.build.sourceId}, series ${q.build.series.patches.length ? q.build.series.hash : 'none'}` : q.origin === 'path' ? q.path : 'system';
  return `QEMU ${q.caps.version} (${from})`;
}
