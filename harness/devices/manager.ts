/**
 * The lab host's devices: discover them (sysfs over SSH), bind the listed ones to the driver under
 * test, and put back what was there before: at the end, on error, and on an interrupt.
 *
 * Safety, in code and not only in intent:
 * - Every sysfs write is built by `sysfsWrite`, which refuses (throws) for an address that is not
 *   on the allow-list: the --device addresses and the VFs this manager created under a listed PF.
 *   Nothing else writes to sysfs. A dry-run manager refuses every write.
 * - What was changed is journalled before it is changed, so a half-done step is undone too; undo
 *   commands are idempotent and run in reverse order.
 * - Restoring takes an SSH command, which cannot run inside a synchronous exit handler. On SIGINT /
 *   SIGTERM / exit, `armLastWords` runs the same restore script through the OpenSSH client with
 *   spawnSync (when `ssh` is installed and the host answers within its timeout); if that is not
 *   possible it prints the commands to run by hand. The normal path is `restore()` in a finally.
 */
import { spawnSync } from 'node:child_process';
import type { ExecOptions, ExecResult } from '../ssh/client.js';
import { HarnessError } from '../../base/errors.js';
import { onShutdown } from '../../base/shutdown.js';
import { makePlan, type DeviceRequest, type Plan, type Step } from './plan.js';
import { DISCOVER_CMD, isBdf, parseDiscovery, type PciSnapshot } from './sysfs.js';

/** What the manager needs of the host: a shell. (A LabHost, or anything with exec.) */
export interface Shell {
  exec(cmd: string, o?: ExecOptions): Promise<ExecResult>;
}

/** A device ready for the suites. */
export interface BoundDevice {
  bdf: string;
  driver: string;
  vendor: string;
  device: string;
  iommuGroup?: string;
  /** /dev/vfio/devices/vfioN (iommufd cdev), when the driver exposes one */
  cdev?: string;
  /** the PF, for a VF */
  physfn?: string;
}

type Undo =
  | { op: 'numvfs'; pf: string; from: number }
  | { op: 'bind'; bdf: string; from?: string; override?: string; createdVf: boolean };

type WriteOp = 'override' | 'numvfs' | 'unbind' | 'bind' | 'probe';

const NAME_RE = /^[A-Za-z0-9_.-]+$/;
const DEV = (b: string) => `/sys/bus/pci/devices/${b}`;

export async function discover(shell: Shell): Promise<PciSnapshot> {
  const r = await shell.exec(DISCOVER_CMD, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new HarnessError(`reading /sys/bus/pci/devices failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  return parseDiscovery(r.stdout);
}

export interface DeviceManagerOptions {
  dryRun?: boolean;
  log?: (line: string) => void;
  /**
   * The machine is a guest thrown away with this process: nothing to restore on an interrupt, and
   * no "run this on the lab host" script to print for it.
   */
  throwaway?: boolean;
}

export class DeviceManager {
  private readonly allowed: Set<string>;
  private journal: Undo[] = [];
  private disarm?: () => void;
  /** the snapshot the plan was made from */
  snapshot?: PciSnapshot;
  plan?: Plan;

  constructor(private readonly shell: Shell, readonly requests: DeviceRequest[], private readonly opts: DeviceManagerOptions = {}) {
    this.allowed = new Set(requests.map((r) => r.bdf));
  }

  /** Read the host's devices and decide what to do. Changes nothing. */
  async makePlan(): Promise<Plan> {
    this.snapshot = await discover(this.shell);
    this.plan = makePlan(this.requests, this.snapshot);
    return this.plan;
  }

  /**
   * The one place a sysfs write command is made. Throws for an address not on the allow-list, for
   * a dry run, and for a value that is not a plain name or number.
   */
  sysfsWrite(bdf: string, op: WriteOp, arg?: string | number): string {
    if (this.opts.dryRun) throw new HarnessError(`dry run: refusing to write to sysfs (${op} ${bdf})`);
    if (!isBdf(bdf) || !this.allowed.has(bdf)) throw new HarnessError(`refusing to touch ${bdf}: it is not a listed --device (nor a VF created under one)`);
    const a = arg === undefined ? '' : String(arg);
    if (a !== '' && !NAME_RE.test(a)) throw new HarnessError(`refusing to write '${a}' for ${bdf}: not a plain name`);
    switch (op) {
      case 'override': return a === '' ? `echo > ${DEV(bdf)}/driver_override` : `echo ${a} > ${DEV(bdf)}/driver_override`;
      case 'numvfs': if (!/^\d+$/.test(a)) throw new HarnessError(`sriov_numvfs must be a number, not '${a}'`); return `echo ${a} > ${DEV(bdf)}/sriov_numvfs`;
      case 'unbind': return `echo ${bdf} > ${DEV(bdf)}/driver/unbind`;
      case 'bind': if (a === '') throw new HarnessError('bind needs a driver'); return `echo ${bdf} > /sys/bus/pci/drivers/${a}/bind`;
      case 'probe': return `echo ${bdf} > /sys/bus/pci/drivers_probe`;
    }
  }

  private async run(script: string, what: string): Promise<string> {
    const r = await this.shell.exec(script, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new HarnessError(`${what} failed: ${(r.stderr.trim() || r.stdout.trim() || `exit ${r.code}`).split('\n').slice(-3).join(' | ')}`);
    return r.stdout;
  }

  /** Carry out the plan; returns the devices bound for the suites. Restores what it did if a step fails. */
  async apply(): Promise<BoundDevice[]> {
    if (this.opts.dryRun) throw new HarnessError('dry run: apply() is not allowed');
    const plan = this.plan ?? (await this.makePlan());
    const targets: { bdf: string; driver: string }[] = [];
    try {
      for (const s of plan.steps) await this.step(s, targets);
      const snap = await discover(this.shell);
      return targets.map(({ bdf, driver }) => {
        const d = snap.devices.get(bdf);
        if (!d) throw new HarnessError(`${bdf} disappeared after binding`);
        if (d.driver !== driver) throw new HarnessError(`${bdf} is bound to ${d.driver ?? 'no driver'} after binding it to ${driver}`);
        return { bdf, driver, vendor: d.vendor, device: d.device, iommuGroup: d.iommuGroup, cdev: d.cdev, physfn: d.physfn };
      });
    } catch (e) {
      const r = await this.restore().catch((x: Error) => ({ ok: false, problems: [x.message] }));
      const tail = r.ok ? 'what was changed has been restored' : `restoring failed too: ${r.problems.join('; ')}`;
      throw new HarnessError(`${(e as Error).message} (${tail})`);
    }
  }

  private async step(s: Step, targets: { bdf: string; driver: string }[]): Promise<void> {
    switch (s.op) {
      case 'modprobe':
        if (!NAME_RE.test(s.driver)) throw new HarnessError(`bad driver name ${s.driver}`);
        this.opts.log?.(`devices: modprobe ${s.driver}`);
        await this.run(`modprobe ${s.driver.replace(/-/g, '_')} && test -d /sys/bus/pci/drivers/${s.driver}`, `loading ${s.driver}`);
        return;
      case 'keep':
        targets.push({ bdf: s.bdf, driver: s.driver });
        return;
      case 'bind':
        await this.bind(s.bdf, s.to, s.from, s.override, false);
        targets.push({ bdf: s.bdf, driver: s.to });
        return;
      case 'create-vfs': {
        this.journal.push({ op: 'numvfs', pf: s.pf, from: s.from });
        this.arm();
        this.opts.log?.(`devices: ${s.pf}: sriov_numvfs ${s.from} -> ${s.to}`);
        const cmds = [...(s.from !== 0 ? [this.sysfsWrite(s.pf, 'numvfs', 0)] : []), this.sysfsWrite(s.pf, 'numvfs', s.to)];
        await this.run(['set -e', ...cmds].join('\n'), `creating ${s.to} VFs on ${s.pf}`);
        const snap = await discover(this.shell);
        const vfs = snap.devices.get(s.pf)?.virtfns ?? [];
        if (vfs.length !== s.to) throw new HarnessError(`${s.pf} shows ${vfs.length} VFs after sriov_numvfs=${s.to}`);
        for (const vf of vfs) {
          this.allowed.add(vf);
          const d = snap.devices.get(vf);
          if (d?.driver === s.driver) { targets.push({ bdf: vf, driver: s.driver }); continue; }
          await this.bind(vf, s.driver, d?.driver, d?.override, true);
          targets.push({ bdf: vf, driver: s.driver });
        }
        return;
      }
    }
  }

  private async bind(bdf: string, to: string, from: string | undefined, override: string | undefined, createdVf: boolean): Promise<void> {
    this.journal.push({ op: 'bind', bdf, from, override, createdVf });
    this.arm();
    this.opts.log?.(`devices: ${bdf}: ${from ?? '(no driver)'} -> ${to}`);
    const script = [
      'set -e',
      this.sysfsWrite(bdf, 'override', to),
      `if [ -e ${DEV(bdf)}/driver ]; then ${this.sysfsWrite(bdf, 'unbind')}; fi`,
      this.sysfsWrite(bdf, 'probe'),
      `now=$(basename "$(readlink ${DEV(bdf)}/driver 2>/dev/null)" 2>/dev/null || true)`,
      `if [ "$now" != '${to}' ]; then echo "${bdf} is bound to \${now:-no driver}, not ${to}; kernel says: $(dmesg | tail -n 3 | tr '\\n' ' ')" >&2; exit 1; fi`,
    ].join('\n');
    await this.run(script, `binding ${bdf} to ${to}`);
  }

  /** The script that undoes what the journal holds (reverse order, each undo idempotent, no set -e). */
  restoreScript(): string {
    const lines: string[] = [];
    const fail = (what: string) => `echo "restore failed: ${what}" >&2`;
    for (const u of [...this.journal].reverse()) {
      if (u.op === 'numvfs') {
        lines.push(`if [ -e ${DEV(u.pf)}/sriov_numvfs ] && [ "$(cat ${DEV(u.pf)}/sriov_numvfs)" != ${u.from} ]; then`);
        lines.push(`  ${this.sysfsWrite(u.pf, 'numvfs', 0)} || ${fail(`${u.pf} sriov_numvfs=0`)}`);
        if (u.from) lines.push(`  ${this.sysfsWrite(u.pf, 'numvfs', u.from)} || ${fail(`${u.pf} sriov_numvfs=${u.from}`)}`);
        lines.push('fi');
        continue;
      }
      if (u.createdVf) {
        // it goes away with the VFs; unbinding it first only costs time
        continue;
      }
      const d = DEV(u.bdf);
      lines.push(`if [ -e ${d} ]; then`);
      lines.push(`  cur=$(basename "$(readlink ${d}/driver 2>/dev/null)" 2>/dev/null || true)`);
      lines.push(`  if [ -n "$cur" ] && [ "$cur" != '${u.from ?? ''}' ]; then ${this.sysfsWrite(u.bdf, 'unbind')} || ${fail(`${u.bdf} unbind from $cur`)}; fi`);
      lines.push(`  ${this.sysfsWrite(u.bdf, 'override', u.override ?? '')} || ${fail(`${u.bdf} driver_override`)}`);
      if (u.from) {
        lines.push(`  if [ ! -e ${d}/driver ]; then ${this.sysfsWrite(u.bdf, 'bind', u.from)} || ${this.sysfsWrite(u.bdf, 'probe')} || ${fail(`${u.bdf} bind to ${u.from}`)}; fi`);
      }
      lines.push('fi');
    }
    lines.push('true');
    return lines.join('\n');
  }

  /** Undo everything done, then check the host looks as it did. Safe to call more than once. */
  async restore(): Promise<{ ok: boolean; problems: string[] }> {
    if (!this.journal.length) { this.disarm?.(); this.disarm = undefined; return { ok: true, problems: [] }; }
    const problems: string[] = [];
    const r = await this.shell.exec(this.restoreScript(), { timeoutMs: 120_000 });
    problems.push(...r.stderr.split('\n').filter((l) => l.startsWith('restore failed:')));
    if (r.code !== 0 && !problems.length) problems.push(`restore script exited ${r.code}: ${r.stderr.trim()}`);
    const snap = await discover(this.shell);
    for (const u of this.journal) {
      if (u.op === 'numvfs') {
        const n = snap.devices.get(u.pf)?.numvfs ?? 0;
        if (n !== u.from) problems.push(`${u.pf}: sriov_numvfs is ${n}, was ${u.from}`);
      } else if (!u.createdVf) {
        const d = snap.devices.get(u.bdf);
        if (!d) { problems.push(`${u.bdf} is gone`); continue; }
        if (d.driver !== u.from) problems.push(`${u.bdf}: bound to ${d.driver ?? 'no driver'}, was ${u.from ?? 'no driver'}`);
        if (d.override !== u.override) problems.push(`${u.bdf}: driver_override is ${d.override ?? '(null)'}, was ${u.override ?? '(null)'}`);
      }
    }
    this.opts.log?.(problems.length ? `devices: restore incomplete: ${problems.join('; ')}` : 'devices: original bindings restored');
    if (!problems.length) {
      this.journal = [];
      this.disarm?.();
      this.disarm = undefined;
    }
    return { ok: problems.length === 0, problems };
  }

  /** What has been changed and not restored yet (for tests and messages). */
  get pending(): number {
    return this.journal.length;
  }

  /** Whether an exit or a signal restores the bindings (or prints how): never for a throwaway guest. */
  get restoresOnExit(): boolean {
    return this.disarm !== undefined;
  }

  private lastWords?: string[];

  /**
   * The OpenSSH client command line (without the remote command) that reaches the host, for the
   * synchronous restore on exit and signals. Without it, an interrupt prints the commands instead.
   */
  setLastWords(sshArgv: string[]): void {
    this.lastWords = sshArgv;
  }

  private arm(): void {
    if (this.disarm || this.opts.throwaway) return;
    this.disarm = onShutdown(() => {
      if (!this.journal.length) return;
      const script = this.restoreScript();
      if (this.lastWords) {
        process.stderr.write('vfio-conformance: restoring the lab host\'s device bindings\n');
        const r = spawnSync(this.lastWords[0]!, [...this.lastWords.slice(1), 'sh -s'], { input: script, timeout: 30_000, encoding: 'utf8' });
        if (r.status === 0 && !/restore failed:/.test(r.stderr ?? '')) { this.journal = []; return; }
        process.stderr.write(`vfio-conformance: could not restore over ssh (${r.error?.message ?? (r.stderr || `exit ${r.status}`).trim()})\n`);
      }
      process.stderr.write(`vfio-conformance: the lab host's devices were left changed; run this on it as root to restore them:\n${script}\n`);
    });
  }
}
