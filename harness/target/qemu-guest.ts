import { createWriteStream, mkdirSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execa, type ResultPromise } from 'execa';
import type { ClientChannel } from 'ssh2';
import type { Arch } from '../arch.js';
import type { Profile } from '../qemu/profiles.js';
import { guestVcpus, qemuArgs, shellQuote, type Accel, type MachineSpec } from '../qemu/cmdline.js';
import { openQemu, type QemuBinary } from '../qemu/binary.js';
import { connectWithRetry, type ExecOptions, type ExecResult, type SshSession } from '../ssh/client.js';
import { clientKey } from '../ssh/keys.js';
import { ConsoleWatcher } from '../watch/console.js';
import { writeStepMarker } from './marker.js';
import { HarnessError } from '../../base/errors.js';
import { freePort } from './net.js';
import { readHangState } from '../qemu/hang-state.js';
import { onShutdown } from '../../base/shutdown.js';
import type { ClientQemu, Target } from './target.js';
import type { ConsoleFault } from '../../base/results/schema.js';
import type { BoundDevice } from '../devices/manager.js';

export const READY_MARKER = 'vfio-conformance: ready';

export interface GuestOptions {
  arch: Arch;
  profile: Profile;
  /** the QEMU to boot with (default: the host's, probed) */
  qemu?: QemuBinary;
  accel: Accel;
  kernel: string;
  initrd: string;
  /** the image's SSH host key: the only key the harness accepts */
  hostKey: string;
  /** folder for console.log, qemu.log, qemu-cmdline.txt */
  logDir: string;
  bootTimeoutMs?: number;
  memMiB?: number;
  smp?: number;
  devices?: string[];
  append?: string[];
  /**
   * extra QEMU arguments after the generated ones: e.g. the virtio-9p share of the Debian rootfs
   * (`-fsdev local,...` + `-device virtio-9p-pci,...`, see images/rootfs) that `-device` alone
   * cannot express
   */
  qemuArgs?: string[];
  facts?: Record<string, string>;
  /** what the run arranged for a suite's nested QEMU (see Target.clientQemu) */
  clientQemu?: ClientQemu;
}

/** Every QEMU this process started, so an interrupt or a crash of the harness leaves none behind. */
const live = new Set<ResultPromise>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  onShutdown(() => { for (const c of live) { try { c.kill('SIGKILL'); } catch { /* already gone */ } } });
}

/**
 * The last thing QEMU complained about on stderr, for a death's reason: an assertion or an error
 * tells a QEMU crash from a guest that died. Warnings and the line QEMU prints when the harness
 * stops it are not complaints.
 */
export function qemuComplaint(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const last = lines.reverse().find((l) => !/: warning: |terminating on signal/.test(l));
  return last?.replace(/^qemu-system-\w+: /, '');
}

/** A guest the harness booted: QEMU with the profile's IOMMU, its console watched, reached over SSH. */
export class QemuGuest implements Target {
  readonly kind = 'qemu' as const;
  readonly name: string;
  readonly facts: Record<string, string>;
  readonly clientQemu?: ClientQemu;
  readonly consoleLog: string;
  readonly qemuLog: string;
  readonly argv: string[];
  /** QMP control socket of this QEMU (for tools and for the real-client suite) */
  qmpSocket?: string;
  /** devices the device manager bound inside this guest (a profile's guestDevices), for the suites */
  devices?: BoundDevice[];
  /** run before the guest goes down: putting back what the device manager changed */
  private readonly closing: (() => Promise<unknown>)[] = [];
  /** milliseconds from QEMU start to the ready line, and to the first SSH session */
  readonly timing: { readyMs?: number; sshMs?: number } = {};
  private ssh?: SshSession;
  private exited?: string;
  /** how many vCPUs QEMU was given */
  private vcpus = 1;
  /** the end of QEMU's stderr: what it said before it died (an assertion, an error) */
  private stderrTail = '';
  private readonly watcher = new ConsoleWatcher();
  private consoleTail = '';

  private constructor(
    o: GuestOptions,
    private readonly child: ResultPromise,
    private readonly port: number,
    argv: string[],
    private readonly consoleOut: WriteStream,
  ) {
    this.name = o.profile.name;
    this.argv = argv;
    this.consoleLog = join(o.logDir, 'console.log');
    this.qemuLog = join(o.logDir, 'qemu.log');
    this.facts = { profile: o.profile.name, accel: o.accel, arch: o.arch.name, ...(o.facts ?? {}) };
    this.clientQemu = o.clientQemu;
  }

  static async boot(o: GuestOptions): Promise<QemuGuest> {
    hookExit();
    mkdirSync(o.logDir, { recursive: true });
    const key = await clientKey();
    const port = await freePort();
    // A unix socket path must fit in 108 bytes: keep it short and out of the (possibly deep) log dir.
    const qmpSocket = join(tmpdir(), `vfioc-${process.pid}-${port}.qmp`);
    const qemu = o.qemu ?? await openQemu({ origin: 'system', binary: o.arch.qemuBinary, arch: o.arch, profiles: [o.profile] });
    const spec: MachineSpec = {
      arch: o.arch, profile: o.profile, qemu, accel: o.accel, kernel: o.kernel, initrd: o.initrd,
      memMiB: o.memMiB, smp: o.smp, sshPort: port, devices: o.devices, qmpSocket,
      append: [`vfioc_key=${key.publicBlob}`, ...(o.append ?? [])],
    };
    const args = [...qemuArgs(spec), ...(o.qemuArgs ?? [])];
    const argv = [qemu.path, ...args];
    writeFileSync(join(o.logDir, 'qemu-cmdline.txt'), `${shellQuote(argv)}\n`);
    const consoleOut = createWriteStream(join(o.logDir, 'console.log'));
    const qemuErr = createWriteStream(join(o.logDir, 'qemu.log'));
    const started = Date.now();
    let child: ResultPromise;
    try {
      child = execa(qemu.path, args, { stdin: 'pipe', buffer: false, reject: false, cleanup: true, forceKillAfterDelay: 2000 });
    } catch (e) {
      throw new HarnessError(`cannot start ${qemu.path}: ${(e as Error).message}`);
    }
    live.add(child);
    const g = new QemuGuest(o, child, port, argv, consoleOut);
    g.qmpSocket = qmpSocket;
    g.vcpus = guestVcpus(spec);
    child.stderr?.pipe(qemuErr);
    child.stderr?.on('data', (b: Buffer) => { g.stderrTail = (g.stderrTail + b.toString('utf8')).slice(-4096); });
    child.stdout?.on('data', (b: Buffer) => g.onConsole(b.toString('utf8')));
    void child.then((r) => {
      live.delete(child);
      const how = r.signal ? `QEMU killed by ${r.signal}` : `QEMU exited with code ${r.exitCode}`;
      const said = qemuComplaint(g.stderrTail);
      g.exited = said ? `${how}: ${said}` : how;
      rmSync(qmpSocket, { force: true });
      g.watcher.flush?.();
      consoleOut.end();
    }, (e: Error) => { live.delete(child); g.exited = `QEMU failed: ${e.message}`; });
    try {
      await g.waitReady(o.bootTimeoutMs ?? 60_000);
      g.timing.readyMs = Date.now() - started;
      g.ssh = await connectWithRetry(
        { host: '127.0.0.1', port, username: 'root', privateKey: key.privateKey, hostKey: o.hostKey },
        Math.max(5_000, (o.bootTimeoutMs ?? 60_000) - (Date.now() - started)),
        () => g.isAlive(),
      );
      g.timing.sshMs = Date.now() - started;
    } catch (e) {
      await g.close();
      const why = g.exited ? `${g.describeDeath()}` : (e as Error).message;
      throw new HarnessError(`guest (${o.profile.name}) did not come up: ${why}`, { log: g.consoleLog });
    }
    return g;
  }

  private onConsole(s: string): void {
    this.consoleOut.write(s);
    this.watcher.feed(s);
    // keep a short tail for the ready line and for death messages
    this.consoleTail = (this.consoleTail + s).slice(-8192);
    this.readyWaiter?.();
  }

  private readyWaiter?: () => void;

  private waitReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`no '${READY_MARKER}' line on the console within ${Math.round(timeoutMs / 1000)} s`)); }, timeoutMs);
      const poll = setInterval(() => { if (this.exited) { cleanup(); reject(new Error(this.exited)); } }, 50);
      const cleanup = () => { clearTimeout(timer); clearInterval(poll); this.readyWaiter = undefined; };
      this.readyWaiter = () => { if (this.consoleTail.includes(READY_MARKER)) { cleanup(); resolve(); } };
      this.readyWaiter();
    });
  }

  private describeDeath(): string {
    const f = this.watcher.faults().find((x) => x.kind === 'panic') ?? this.watcher.faults()[0];
    return f ? `${this.exited}: ${f.title}` : (this.exited ?? 'unknown');
  }

  /** The vCPUs' state from QEMU's monitor (harness/qemu/hang-state.ts), while QEMU still runs. */
  async hangState(): Promise<string | undefined> {
    if (!this.qmpSocket || this.exited) return undefined;
    return readHangState(this.qmpSocket, this.facts.arch ?? 'x86_64', this.vcpus).catch((e: Error) => `QEMU's monitor did not answer: ${e.message}\n`);
  }

  private session(): SshSession {
    if (!this.ssh || !this.isAlive()) throw new HarnessError(`guest (${this.name}) is gone: ${this.deathReason() ?? 'no SSH session'}`, { log: this.consoleLog });
    return this.ssh;
  }

  exec(cmd: string, o?: ExecOptions): Promise<ExecResult> {
    return this.session().exec(cmd, o);
  }

  upload(data: Buffer, remotePath: string, mode?: number): Promise<void> {
    return this.session().upload(data, remotePath, mode);
  }

  openChannel(cmd: string): Promise<ClientChannel> {
    return this.session().openChannel(cmd);
  }

  mark(step: string): Promise<void> {
    return writeStepMarker((c, o) => this.exec(c, o), step, () => this.isAlive());
  }


  faultMark(): number {
    return this.watcher.mark();
  }

  faultsSince(mark: number): ConsoleFault[] {
    return this.watcher.faultsSince(mark);
  }

  allFaults(): ConsoleFault[] {
    return this.watcher.faults();
  }

  isAlive(): boolean {
    return this.exited === undefined;
  }

  deathReason(): string | undefined {
    return this.exited === undefined ? undefined : this.describeDeath();
  }

  /** Wait for QEMU to exit by itself (after a panic or poweroff); true if it did within the time. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (this.isAlive() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return !this.isAlive();
  }

  /** Run `fn` when the guest is closed, while its SSH session is still up (in reverse order). */
  onClose(fn: () => Promise<unknown>): void {
    this.closing.unshift(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closing.splice(0)) {
      if (this.isAlive()) await fn().catch(() => undefined);
    }
    try { this.ssh?.close(); } catch { /* connection already gone */ }
    if (this.isAlive()) {
      this.child.kill('SIGTERM');
      if (!(await this.waitExit(3000))) this.child.kill('SIGKILL');
    }
    await this.child.catch(() => undefined);
    live.delete(this.child);
  }

  get sshPort(): number {
    return this.port;
  }
}
