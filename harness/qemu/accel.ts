import { accessSync, constants, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { dirname } from 'node:path';
import { execa } from 'execa';
import { hostArchName, isNativeArch, type Arch } from '../arch.js';
import { qemuArgs, type Accel } from './cmdline.js';
import type { Profile } from './profiles.js';
import type { QemuBinary } from './binary.js';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { capture } from '../../base/proc.js';

export type AccelMode = 'auto' | Accel;

export async function qemuVersion(arch: Arch): Promise<string> {
  let out: string;
  try {
    out = await capture(arch.qemuBinary, ['--version'], `${arch.qemuBinary} --version`);
  } catch {
    throw new HarnessError(`${arch.qemuBinary} not found or not runnable: install QEMU (Debian: qemu-system-${arch.name === 'x86_64' ? 'x86' : 'arm'})`);
  }
  const m = /version\s+(\S+)/.exec(out);
  return m ? m[1]! : out.split('\n')[0]!;
}

function kvmOpenable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

interface Verdict { accel: Accel; reason: string; at: string }

function verdictFile(): string {
  return cachePath('accel.json');
}

function readVerdicts(): Record<string, Verdict> {
  try {
    return JSON.parse(readFileSync(verdictFile(), 'utf8')) as Record<string, Verdict>;
  } catch {
    return {};
  }
}

export const PROBE_MARKER = 'vfio-conformance: probe-ok';

/**
 * /dev/kvm existing proves nothing: on a nested host it can accept a VM and then fail on the first
 * instruction its emulator lacks. So KVM counts as usable only when a short boot under KVM reaches
 * the guest's userspace. The verdict is cached per host kernel, QEMU version and arch.
 */
export async function chooseAccel(mode: AccelMode, arch: Arch, probe: { kernel: string; initrd: string; profile: Profile; qemu: QemuBinary }): Promise<{ accel: Accel; reason: string }> {
  if (mode === 'tcg') return { accel: 'tcg', reason: 'requested' };
  if (mode === 'kvm') {
    if (!existsSync('/dev/kvm')) throw new HarnessError('--accel kvm: /dev/kvm does not exist on this host');
    if (!kvmOpenable()) throw new HarnessError('--accel kvm: /dev/kvm cannot be opened (permissions?)');
    return { accel: 'kvm', reason: 'requested' };
  }
  if (!isNativeArch(arch)) return { accel: 'tcg', reason: `${arch.name} guest on a ${hostArchName()} host: KVM runs only guests of the host's own architecture` };
  if (!existsSync('/dev/kvm') || !kvmOpenable()) return { accel: 'tcg', reason: '/dev/kvm absent or not accessible' };
  // Keyed by the binary too: a QEMU built with another configure (or KVM disabled) can differ from the host's.
  const key = `${release()}|${arch.name}|${probe.qemu.caps.version}|${probe.qemu.path}`;
  const known = readVerdicts()[key];
  if (known) return { accel: known.accel, reason: `${known.reason} (probe cached ${known.at})` };

  process.stderr.write('accel: probing whether KVM can run a guest on this host (once per host and QEMU version)\n');
  const args = qemuArgs({ arch, profile: probe.profile, qemu: probe.qemu, accel: 'kvm', kernel: probe.kernel, initrd: probe.initrd, append: ['vfioc_probe=1'], memMiB: 512, smp: 1 });
  const r = await execa(probe.qemu.path, args, { reject: false, timeout: 40_000, stdin: 'ignore', all: true });
  const out = String(r.all ?? '');
  const ok = out.includes(PROBE_MARKER);
  const firstErr = out.split('\n').find((l) => /KVM internal error|failed to set MSR|emulation failure|kvm:/i.test(l));
  const v: Verdict = {
    accel: ok ? 'kvm' : 'tcg',
    reason: ok ? 'KVM probe boot reached userspace' : `KVM probe boot failed${r.timedOut ? ' (timed out)' : ''}${firstErr ? `: ${firstErr.trim()}` : ''}`,
    at: new Date().toISOString(),
  };
  const all = readVerdicts();
  all[key] = v;
  mkdirSync(dirname(verdictFile()), { recursive: true });
  writeFileSync(verdictFile(), JSON.stringify(all, null, 2));
  return { accel: v.accel, reason: v.reason };
}

/** The cached probe verdict for this host and arch, if a probe has run (any QEMU version). */
export function readCachedAccel(arch: Arch): string | undefined {
  const prefix = `${release()}|${arch.name}|`;
  const hit = Object.entries(readVerdicts()).find(([k]) => k.startsWith(prefix));
  if (!hit) return undefined;
  return hit[1].accel === 'kvm' ? 'kvm (probe boot ok)' : 'tcg (KVM probe boot failed)';
}
