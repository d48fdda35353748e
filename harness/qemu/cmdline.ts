import type { Arch } from '../arch.js';
import { resolveProfile, type Profile } from './profiles.js';
import type { QemuBinary } from './binary.js';
import { HarnessError } from '../../base/errors.js';

export type Accel = 'kvm' | 'tcg';

export interface MachineSpec {
  arch: Arch;
  profile: Profile;
  /** the binary this runs on: option names are spelt as it spells them, its firmware dirs passed */
  qemu: QemuBinary;
  accel: Accel;
  kernel: string;
  initrd: string;
  /** extra kernel command line words (the harness's own: client key, probe flag) */
  append?: string[];
  memMiB?: number;
  smp?: number;
  /** host port on 127.0.0.1 forwarded to the guest's SSH port; omitted for probe boots */
  sshPort?: number;
  qmpSocket?: string;
  /** -device lines after the network card and the profile's own devices (a test's extras) */
  devices?: string[];
}

/** Kernel command line: console first so early messages reach the log, panic=-1 so a panic ends QEMU. */
export function kernelCmdline(s: MachineSpec): string {
  return [
    `console=${s.arch.console}`,
    'panic=-1',
    ...(s.accel === 'tcg' ? s.arch.tcgCmdline : []),
    ...s.profile.cmdline,
    ...(s.append ?? []),
  ].join(' ');
}

/**
 * The full argv. -nodefaults and an explicit device list make the machine exactly what the
 * profile says; -no-reboot turns a guest reboot or panic into QEMU exiting, so nothing lingers.
 */
export function qemuArgs(s: MachineSpec): string[] {
  const r = resolveProfile(s.profile, s.qemu.caps);
  // The runner asks resolveProfile first and skips a profile the binary cannot express; reaching here
  // with one is a harness bug, said plainly rather than handed to QEMU as an unknown property.
  if (!r.ok) throw new HarnessError(`profile ${s.profile.name} cannot run on ${s.qemu.path}: ${r.why}`);
  const cpu = s.accel === 'kvm' ? 'host' : 'max';
  const args = [
    '-nodefaults', '-no-user-config', '-no-reboot',
    ...s.qemu.firmwareDirs.flatMap((d) => ['-L', d]),
    '-display', 'none',
    '-machine', r.machine,
    '-accel', s.accel === 'tcg' ? 'tcg,thread=multi,tb-size=512' : 'kvm',
    '-cpu', cpu,
    '-smp', String(guestVcpus(s)),
    '-m', `${s.memMiB ?? 2048}M`,
    '-kernel', s.kernel,
    '-initrd', s.initrd,
    '-append', kernelCmdline(s),
    // Serial console on stdio: the harness streams it into the console log and the watcher as it comes.
    '-chardev', 'stdio,id=con,signal=off',
    '-serial', 'chardev:con',
  ];
  for (const d of r.iommuDevices) args.push('-device', d);
  if (s.sshPort !== undefined) {
    // restrict=on: the guest reaches nothing but the forwarded port; romfile= skips the iPXE ROM.
    args.push('-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${s.sshPort}-:22`);
    args.push('-device', 'virtio-net-pci,netdev=n0,romfile=');
  }
  for (const d of [...r.devices, ...(s.devices ?? [])]) args.push('-device', d);
  if (s.qmpSocket) args.push('-qmp', `unix:${s.qmpSocket},server=on,wait=off`);
  return args;
}

/** Shell-quoted command line, for logs and reproducer bundles. */
export function shellQuote(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=,+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * The vCPUs a guest gets: what the run asked for (2 by default), or fewer under TCG when its
 * profile says so (Profile.tcgVcpus). Every boot of a profile goes through here: run, boot, replay.
 */
export function guestVcpus(s: Pick<MachineSpec, 'smp' | 'accel' | 'profile'>): number {
  const asked = s.smp ?? 2;
  const limit = s.accel === 'tcg' ? s.profile.tcgVcpus : undefined;
  return limit === undefined ? asked : Math.min(asked, limit);
}
