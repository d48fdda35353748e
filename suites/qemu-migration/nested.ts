import type { ClientChannel } from 'ssh2';
import type { Target } from '../../harness/target/target.js';
import { QmpClient, type MigrationInfo, type QmpEvent } from '../../harness/qemu/qmp.js';
import { HarnessError } from '../../base/errors.js';
import { ROOTFS_GUEST_DIR, ROOTFS_MOUNT_OPTS, ROOTFS_TAG } from '../../images/rootfs/build.js';
import {
  cf8Address, ioPorts, parsePortRead, parseQemuVersion, programIoBarsHmp, qemuUnsupportedReason, vfioOptions,
  type QemuVersion,
} from './parse.js';

/**
 * Where and how the real client runs on the target.
 *  - nested (the harness's guest): the Debian rootfs arrives over virtio-9p (tag vfioc-rootfs); it
 *    is mounted beside the initramfs root and QEMU runs under `chroot` with the guest's /proc, /sys,
 *    /dev and /tmp bound in.
 *  - host: a lab host's own QEMU (`run --qemu PATH`, else qemu-system-x86_64 on its PATH), no nesting.
 */
export interface ClientEnv {
  kind: 'nested' | 'host';
  /** command prefix that enters the QEMU's root ('' on a lab host) */
  prefix: string;
  qemu: string;
  version?: QemuVersion;
  /** set when this QEMU cannot be the client: the cases report expected-unsupported with it */
  unsupported?: string;
  /** no QEMU at all: the cases are skipped with this */
  missing?: string;
  options: ReturnType<typeof vfioOptions>;
  /** scratch folder seen by the QEMUs and the shell alike */
  work: string;
  /** a 64 KiB firmware of HLT instructions (see makeFirmware) */
  firmware: string;
}

const WORK = '/tmp/vfioc-qm';

export function shq(s: string): string {
  return /^[A-Za-z0-9_./:=,+@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

async function sh(target: Target, cmd: string, timeoutMs = 30_000): Promise<string> {
  const r = await target.exec(cmd, { timeoutMs });
  if (r.code !== 0) throw new HarnessError(`'${cmd.slice(0, 120)}' failed on the target: ${r.stderr.trim().split('\n').pop() || `exit ${r.code}`}`);
  return r.stdout;
}

/**
 * Find the real client. In a guest booted with the rootfs share, mount it (idempotent) and bind the
 * guest's pseudo-filesystems into it so the chrooted QEMU sees /dev/vfio and the mdev devices.
 */
export async function detectClient(target: Target): Promise<ClientEnv> {
  const none = { migrationEvents: false, enableMigration: false, iommufd: false, multifdTransfer: false };
  const tags = await target.exec('cat /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null | tr "\\0" "\\n"', { timeoutMs: 10_000 });
  let prefix = '';
  let kind: ClientEnv['kind'] = 'host';
  const given = target.clientQemu;
  let qemu = given?.kind === 'binary' ? given.path : 'qemu-system-x86_64';
  if (tags.stdout.split(/\s+/).includes(ROOTFS_TAG)) {
    const R = ROOTFS_GUEST_DIR;
    await sh(target, [
      'set -e',
      `mkdir -p ${R}`,
      `grep -q ' ${R} 9p ' /proc/mounts || mount -t 9p -o ${ROOTFS_MOUNT_OPTS} ${ROOTFS_TAG} ${R}`,
      ...['proc', 'sys', 'dev', 'tmp'].map((d) => `grep -q ' ${R}/${d} ' /proc/mounts || mount --bind /${d} ${R}/${d}`),
    ].join('\n'));
    prefix = `chroot ${R} `;
    kind = 'nested';
    qemu = 'qemu-system-x86_64';
  }
  const base = { kind, prefix, qemu, options: none, work: WORK, firmware: `${WORK}/halt.bin` };
  const v = await target.exec(`${prefix}${shq(qemu)} --version`, { timeoutMs: 30_000 });
  if (v.code !== 0) {
    return {
      ...base,
      missing: kind === 'nested'
        ? `the rootfs share is mounted but its QEMU does not run: ${v.stderr.trim().split('\n').pop()}`
        : given?.kind === 'none' ? given.reason : `no QEMU on the target (${qemu}): boot the guest with the Debian rootfs (images/rootfs; the suite's machine requirement) or give a lab host's QEMU >= 8.0 with --qemu PATH`,
    };
  }
  const version = parseQemuVersion(v.stdout);
  const help = await target.exec(`${prefix}${shq(qemu)} -device vfio-pci,help`, { timeoutMs: 30_000 });
  const env: ClientEnv = { ...base, version, options: vfioOptions(help.stdout + help.stderr) };
  env.unsupported = qemuUnsupportedReason(version, help.stdout + help.stderr);
  if (!env.unsupported) await makeFirmware(target, env);
  return env;
}

/**
 * The nested guest's firmware: 64 KiB of HLT (0xF4). The CPU starts at the reset vector, halts with
 * interrupts off and stays there, so the VM is "running" from the first instruction, nothing in the
 * guest ever touches the device, and the harness programs the BARs itself through the config ports
 * (SeaBIOS would do the same but needs ~5 s under nested TCG per VM, which the 60 s budget cannot pay
 * for ~10 source VMs).
 */
async function makeFirmware(target: Target, env: ClientEnv): Promise<void> {
  await sh(target, `mkdir -p ${env.work} && [ -s ${env.firmware} ] || head -c 65536 /dev/zero | tr '\\000' '\\364' > ${env.firmware}`);
}

/**
 * The device a nested QEMU is given: an mdev instance by its sysfs node, or a lab host's PCI
 * function by its address. QEMU finds the group (legacy container) or the cdev (iommufd) from
 * either, so nothing else on the command line depends on which it is.
 */
export type VfioHost = { kind: 'mdev'; uuid: string } | { kind: 'pci'; bdf: string };

export function vfioHostProp(h: VfioHost): string {
  return h.kind === 'mdev' ? `sysfsdev=/sys/bus/mdev/devices/${h.uuid}` : `host=${h.bdf}`;
}

/** uuid or BDF: what results and logs name the device by. */
export function vfioHostId(h: VfioHost): string {
  return h.kind === 'mdev' ? h.uuid : h.bdf;
}

export interface NestedOptions {
  name: string;
  device: VfioHost;
  incoming?: boolean;
  backend: 'container' | 'iommufd';
  /** extra -device vfio-pci properties */
  vfioProps?: string[];
}

/** The PCI slot the assigned device gets in the nested guest, and the I/O bases given to its BARs. */
export const DEVICE_SLOT = 4;
export const IO_BASES = [0xc060, 0xc068];
export const DEVICE_ID = 'dev0';

/** HMP's port access sizes: /b, /h (16 bits), /w (32 bits). */
const PORT_SIZE = { 1: 'b', 2: 'h', 4: 'w' } as const;

export function nestedArgs(env: ClientEnv, o: NestedOptions): string[] {
  const props = [
    vfioHostProp(o.device), `id=${DEVICE_ID}`, `addr=${DEVICE_SLOT}.0`,
    ...(env.options.enableMigration ? ['enable-migration=on'] : []),
    ...(env.options.migrationEvents ? ['migration-events=on'] : []),
    ...(o.backend === 'iommufd' ? ['iommufd=iommufd0'] : []),
    ...(o.vfioProps ?? []),
  ];
  return [
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-accel', 'tcg,tb-size=64', '-machine', 'q35', '-m', '128M', '-bios', env.firmware,
    '-serial', 'none', '-monitor', 'none', '-qmp', 'stdio',
    ...(o.backend === 'iommufd' ? ['-object', 'iommufd,id=iommufd0'] : []),
    '-device', `vfio-pci,${props.join(',')}`,
    ...(o.incoming ? ['-incoming', 'defer'] : []),
  ];
}

/**
 * One nested QEMU, started over an SSH exec channel with its QMP on stdio: the channel is the QMP
 * stream (no socket, no relay), its stderr is QEMU's.
 */
export class NestedQemu {
  stderr = '';
  private constructor(readonly name: string, readonly argv: string[], private readonly ch: ClientChannel, readonly qmp: QmpClient, private readonly target: Target, private readonly env: ClientEnv) {}

  static async start(target: Target, env: ClientEnv, o: NestedOptions, timeoutMs = 20_000): Promise<NestedQemu> {
    const argv = [env.qemu, ...nestedArgs(env, o)];
    // The shell writes the pid file and execs QEMU in its place (the same pid): QEMU's own -pidfile
    // locks the file, and that lock once failed with EAGAIN on a name no other QEMU had used.
    const ch = await target.openChannel(`echo $$ > ${env.work}/${o.name}.pid && exec ${env.prefix}${argv.map(shq).join(' ')}`);
    let err = '';
    ch.stderr.on('data', (b: Buffer) => { err += b.toString('utf8'); });
    const exited = new Promise<void>((r) => ch.once('close', () => r()));
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.fromStream(ch, timeoutMs);
    } catch (e) {
      // QEMU's reason is its last stderr line, which can arrive after QMP saw the exit
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
      throw new HarnessError(`nested QEMU '${o.name}' did not start: ${(e as Error).message}${err.trim() ? `; stderr: ${err.trim().slice(-500)}` : ''}`);
    }
    const q = new NestedQemu(o.name, argv, ch, qmp, target, env);
    ch.stderr.removeAllListeners('data');
    q.stderr = err;
    ch.stderr.on('data', (b: Buffer) => { q.stderr += b.toString('utf8'); });
    return q;
  }

  get events(): QmpEvent[] {
    return this.qmp.events;
  }

  get alive(): boolean {
    return !this.qmp.closed;
  }

  async hmp(cmd: string): Promise<string> {
    return this.qmp.execute('human-monitor-command', { 'command-line': cmd }, 10_000);
  }

  /** Program the device's I/O BARs through the config ports and return the bases QEMU reports. */
  async programBars(count: number): Promise<number[]> {
    for (const l of programIoBarsHmp(DEVICE_SLOT, IO_BASES.slice(0, count))) {
      const r = await this.hmp(l);
      if (r.trim()) throw new HarnessError(`HMP '${l}' on ${this.name}: ${r.trim()}`);
    }
    return this.ports();
  }

  /** The device's mapped I/O BARs as QEMU sees them (HMP info pci): one base per mtty port. */
  async ports(): Promise<number[]> {
    return ioPorts(await this.hmp('info pci'), DEVICE_ID);
  }

  async outb(port: number, val: number): Promise<void> {
    const r = await this.hmp(`o /b 0x${port.toString(16)} 0x${val.toString(16)}`);
    if (r.trim()) throw new HarnessError(`HMP o /b 0x${port.toString(16)} on ${this.name}: ${r.trim()}`);
  }

  async inb(port: number): Promise<number> {
    const r = await this.hmp(`i /b 0x${port.toString(16)}`);
    const v = parsePortRead(r);
    if (v === undefined) throw new HarnessError(`HMP i /b 0x${port.toString(16)} on ${this.name} answered '${r.trim()}'`);
    return v;
  }

  /**
   * A register of the assigned device's config space (bus 0, DEVICE_SLOT), through the legacy
   * configuration ports: what a driver in the nested guest would read. 0xcf8 is written only
   * when the dword addressed changes.
   */
  async cfgRead(reg: number, size: 1 | 2 | 4): Promise<number> {
    await this.cfgAddress(reg);
    const port = 0xcfc + (reg & 3);
    const r = await this.hmp(`i /${PORT_SIZE[size]} 0x${port.toString(16)}`);
    const v = parsePortRead(r);
    if (v === undefined) throw new HarnessError(`HMP i /${PORT_SIZE[size]} 0x${port.toString(16)} on ${this.name} answered '${r.trim()}'`);
    return v;
  }

  async cfgWrite(reg: number, size: 1 | 2 | 4, val: number): Promise<void> {
    await this.cfgAddress(reg);
    const port = 0xcfc + (reg & 3);
    const r = await this.hmp(`o /${PORT_SIZE[size]} 0x${port.toString(16)} 0x${(val >>> 0).toString(16)}`);
    if (r.trim()) throw new HarnessError(`HMP o 0x${port.toString(16)} on ${this.name}: ${r.trim()}`);
  }

  private cf8 = -1;
  private async cfgAddress(reg: number): Promise<void> {
    const a = cf8Address(0, DEVICE_SLOT, 0, reg);
    if (a === this.cf8) return;
    const r = await this.hmp(`o /w 0xcf8 0x${a.toString(16)}`);
    if (r.trim()) throw new HarnessError(`HMP o /w 0xcf8 on ${this.name}: ${r.trim()}`);
    this.cf8 = a;
  }

  async setParams(params: Record<string, unknown>): Promise<void> {
    if (Object.keys(params).length) await this.qmp.execute('migrate-set-parameters', params, 10_000);
  }

  async setCaps(caps: Record<string, boolean>): Promise<void> {
    const list = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
    if (list.length) await this.qmp.execute('migrate-set-capabilities', { capabilities: list }, 10_000);
  }

  async status(): Promise<string> {
    return (await this.qmp.execute('query-status', {}, 10_000)).status;
  }

  async migration(): Promise<MigrationInfo> {
    return this.qmp.execute('query-migrate', {}, 10_000);
  }

  /** Poll query-migrate until `pred` holds (or a final status, or the timeout). */
  async waitMigrationStatus(pred: (status: string) => boolean, timeoutMs = 20_000): Promise<MigrationInfo> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.migration();
      if (pred(info.status ?? '') || ['completed', 'failed', 'cancelled'].includes(info.status ?? '')) return info;
      if (Date.now() > end) throw new HarnessError(`${this.name}: migration still '${info.status ?? 'none'}' after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 30));
    }
  }

  /** The next VFIO_MIGRATION event with this device-state (QAPI name), counting events from `since`. */
  waitVfioState(state: string, timeoutMs = 20_000, since = 0): Promise<QmpEvent> {
    return this.qmp.waitEvent('VFIO_MIGRATION', (e) => e.data?.['device-state'] === state, timeoutMs, since);
  }

  /** Ask QEMU to quit; if it does not go, kill it by its pid file. Never throws. */
  async stop(): Promise<void> {
    if (this.alive) {
      await this.qmp.execute('quit', {}, 5_000).catch(() => undefined);
      const end = Date.now() + 3_000;
      while (this.alive && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    }
    if (this.alive) {
      await this.target.exec(`kill -9 $(cat ${this.env.work}/${this.name}.pid) 2>/dev/null`, { timeoutMs: 5_000 }).catch(() => undefined);
    }
    this.qmp.close();
    try { this.ch.close(); } catch { /* already closed */ }
  }
}
