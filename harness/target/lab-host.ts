import type { BoundDevice } from '../devices/manager.js';
import { writeStepMarker } from './marker.js';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { ClientChannel } from 'ssh2';
import ssh2 from 'ssh2';
import type { AgentReply } from '../agent/client.js';
import { connectWithRetry, SshSession, type ExecOptions, type ExecResult, type SshTarget } from '../ssh/client.js';
import { KnownHostsVerifier } from '../ssh/known-hosts.js';
import { ConsoleWatcher, stepMarker } from '../watch/console.js';
import { HarnessError } from '../../base/errors.js';
import type { ClientQemu, Target } from './target.js';
import type { ConsoleFault } from '../../base/results/schema.js';

/** `ssh://USER@HOST[:PORT]` (USER defaults to root, PORT to 22; IPv6 as `[::1]`). */
export interface SshAddress {
  user: string;
  host: string;
  port: number;
}

export function parseSshUrl(s: string): SshAddress {
  const m = /^ssh:\/\/(?:([^@/:\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[^@/:\s[\]]+)(?::(\d+))?\/?$/.exec(s.trim());
  if (!m) throw new HarnessError(`--target must look like ssh://USER@HOST[:PORT], not '${s}'`);
  const port = m[3] === undefined ? 22 : Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new HarnessError(`--target ${s}: port ${m[3]} is not a TCP port`);
  const host = m[2]!.startsWith('[') ? m[2]!.slice(1, -1) : m[2]!;
  return { user: m[1] ?? 'root', host, port };
}

export function formatSshUrl(a: SshAddress): string {
  const h = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `ssh://${a.user}@${h}${a.port === 22 ? '' : `:${a.port}`}`;
}

export interface LabHostOptions extends SshAddress {
  /** private key file; default ~/.ssh/id_ed25519, then ~/.ssh/id_rsa (when they exist) */
  identity?: string;
  /** default ~/.ssh/known_hosts */
  knownHosts?: string;
  /** add an unknown host's key to knownHosts (an explicit opt-in; a changed key is always refused) */
  acceptNewHostKey?: boolean;
  /** ssh-agent socket; default $SSH_AUTH_SOCK */
  agentSocket?: string;
  /** a static vfio-agent binary (local path) to upload and run from a temp dir on the host */
  agentBinary?: string;
  /** how long to keep trying to reach the host (reconnects; default 60 s) */
  connectTimeoutMs?: number;
  /**
   * follow the host's kernel log for faults (default true). Off for read-only uses (--dry-run, the
   * device manager's own connection): following writes an attach marker into the host's log.
   */
  followKernelLog?: boolean;
  /** the devices bound for this run (the device manager's result), for the suites */
  devices?: BoundDeviceInfo[];
}

/** A device the device manager bound for the run. */
export type BoundDeviceInfo = BoundDevice;

export interface Auth {
  privateKey?: Buffer;
  agent?: string;
  /** for messages: which key file / agent */
  describe: string;
}

/**
 * Which credentials to offer: the --identity file (must exist and be unencrypted, unless an agent
 * is there to hold it), else the default key files, plus the ssh-agent when SSH_AUTH_SOCK is set.
 */
export function resolveAuth(identity: string | undefined, agentSocket: string | undefined, home = homedir()): Auth {
  const agent = agentSocket && existsSync(agentSocket) ? agentSocket : undefined;
  const candidates = identity ? [identity] : [join(home, '.ssh', 'id_ed25519'), join(home, '.ssh', 'id_rsa')];
  for (const f of candidates) {
    if (!existsSync(f)) {
      if (identity) throw new HarnessError(`--identity ${f}: no such file`);
      continue;
    }
    const data = readFileSync(f);
    const parsed = ssh2.utils.parseKey(data);
    if (parsed instanceof Error) {
      // An encrypted key: the agent, if any, is expected to hold it (no passphrase prompts here).
      if (agent) return { agent, describe: `ssh-agent (${f} is not usable directly: ${parsed.message})` };
      throw new HarnessError(`cannot use the key ${f}: ${parsed.message} (load it into ssh-agent, or give an unencrypted --identity)`);
    }
    return { privateKey: data, agent, describe: agent ? `${f}, then ssh-agent` : f };
  }
  if (agent) return { agent, describe: 'ssh-agent' };
  throw new HarnessError(`no SSH credentials: no --identity, no ~/.ssh/id_ed25519 or ~/.ssh/id_rsa, no SSH_AUTH_SOCK`);
}

const KMSG_SEQ_RE = /^<?\d+>?,(\d+),/;

/**
 * An existing machine reached over SSH: the lab host with real VFs. Same Target as a QEMU guest:
 * exec/upload/openChannel over one SSH connection, faults from the host's kernel log (a
 * `cat /dev/kmsg` channel fed into a ConsoleWatcher), step markers written to /dev/kmsg.
 *
 * One LabHost is one connection. When it drops, isAlive() turns false with the reason, and the
 * runner's factory makes a new LabHost (LabHost.connect retries until the host answers).
 */
export class LabHost implements Target {
  readonly kind = 'ssh' as const;
  readonly name: string;
  readonly facts: Record<string, string> = {};
  /** the host's QEMU for the real-client suite, when the run named one (--qemu PATH) */
  clientQemu?: ClientQemu;
  /** where the uploaded agent runs on the host (a private temp dir), when one was uploaded */
  agentPath?: string;
  /** the devices bound for this run (device class real), for suites that test them */
  devices: BoundDeviceInfo[];
  private agentDir?: string;
  private kmsg?: ClientChannel;
  private readonly watcher = new ConsoleWatcher();
  private lost?: string;
  private closing = false;
  /** kmsg records are fed from the one after the attach marker; a reopened reader skips what was fed */
  private lastSeq = -1;
  private attachNonce = randomUUID();
  private attached = false;
  private kmsgPartial = '';
  private waiters: { text: string; resolve: () => void }[] = [];
  /** last lines of kmsg reader stderr, for messages */
  private kmsgErr = '';
  private kmsgRestarts = 0;

  private constructor(private readonly ssh: SshSession, readonly address: SshAddress & { devices?: BoundDeviceInfo[] }, readonly hostKeyNote?: string) {
    this.name = formatSshUrl(address);
    this.devices = [];
    this.setDevices(address.devices ?? []);
    ssh.onClose = () => { if (!this.closing) this.lost ??= `SSH connection to ${this.name} lost`; };
  }

  /**
   * Connect (host key checked against known_hosts), follow the kernel log, and upload the agent when
   * one is given. `retry`: keep trying until the deadline (a reconnect), instead of failing at once.
   */
  static async connect(o: LabHostOptions, retry = false): Promise<LabHost> {
    const knownHosts = o.knownHosts ?? join(homedir(), '.ssh', 'known_hosts');
    const verifier = new KnownHostsVerifier(knownHosts, o.host, o.port, o.acceptNewHostKey ?? false);
    const auth = resolveAuth(o.identity, o.agentSocket ?? process.env.SSH_AUTH_SOCK);
    const t: SshTarget = {
      host: o.host, port: o.port, username: o.user, privateKey: auth.privateKey, agent: auth.agent,
      verifyHostKey: (key) => verifier.verify(key),
    };
    let ssh: SshSession;
    try {
      ssh = retry ? await connectWithRetry(t, o.connectTimeoutMs ?? 60_000) : await SshSession.connect(t, o.connectTimeoutMs ?? 15_000);
    } catch (e) {
      if (verifier.problem) throw new HarnessError(verifier.problem);
      const msg = (e as Error).message;
      if (/authentication methods failed/i.test(msg)) throw new HarnessError(`SSH login as ${o.user} on ${formatSshUrl(o)} refused with ${auth.describe}`);
      throw new HarnessError(`cannot reach ${formatSshUrl(o)}: ${msg}`);
    }
    const note = verifier.added ? `added the host key of ${o.host}:${o.port} to ${knownHosts}:${verifier.added.line} (--accept-new-host-key)` : undefined;
    const h = new LabHost(ssh, o, note);
    try {
      await h.gatherFacts();
      if (o.followKernelLog !== false) await h.followKmsg();
      if (o.agentBinary) await h.installAgent(o.agentBinary);
    } catch (e) {
      await h.close();
      throw e;
    }
    return h;
  }

  /** Record the devices the device manager bound (they are in `facts.devices` as BDF=driver too). */
  setDevices(d: BoundDeviceInfo[]): void {
    this.devices = [...d];
    if (d.length) this.facts.devices = d.map((x) => `${x.bdf}=${x.driver}`).join(',');
    else delete this.facts.devices;
  }

  private async gatherFacts(): Promise<void> {
    const r = await this.exec('uname -r; uname -m; hostname; id -u', { timeoutMs: 15_000 });
    if (r.code !== 0) throw new HarnessError(`${this.name}: 'uname -r' failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    const [release, machine, host, uid] = r.stdout.trim().split('\n').map((s) => s.trim());
    Object.assign(this.facts, { kernel: release ?? '', arch: machine ?? '', hostname: host ?? '', target: this.name });
    if (uid !== '0') throw new HarnessError(`${this.name}: logged in as uid ${uid}; the lab host must be driven as root (sysfs binding, /dev/kmsg, /dev/vfio)`);
  }

  /**
   * Open the kernel-log reader. /dev/kmsg gives every record still in the ring buffer, so the
   * backlog is skipped up to an attach marker this connection writes; after a reader restart (cat
   * ends with EPIPE when the ring overwrote its position) records already fed are skipped by their
   * sequence number.
   */
  private async followKmsg(): Promise<void> {
    await this.openKmsg();
    const seen = this.waitFor(this.attachNonce, 10_000);
    const w = await this.exec(`echo 'vfio-conformance: lab-host attach ${this.attachNonce}' > /dev/kmsg`, { timeoutMs: 10_000 });
    if (w.code !== 0) throw new HarnessError(`${this.name}: cannot write to /dev/kmsg: ${w.stderr.trim() || `exit ${w.code}`}`);
    if (!(await seen)) throw new HarnessError(`${this.name}: cannot follow the kernel log (cat /dev/kmsg${this.kmsgErr ? `: ${this.kmsgErr.trim()}` : ' shows nothing'})`);
  }

  private async openKmsg(): Promise<void> {
    const ch = await this.ssh.openChannel('exec cat /dev/kmsg');
    this.kmsg = ch;
    this.kmsgPartial = '';
    ch.on('data', (b: Buffer) => this.onKmsg(b.toString('utf8')));
    ch.stderr.on('data', (b: Buffer) => { this.kmsgErr = (this.kmsgErr + b.toString('utf8')).slice(-500); });
    ch.on('close', () => {
      if (this.kmsg !== ch || this.closing || this.lost || this.ssh.isClosed) return;
      // the reader ended but the connection is up: restart it (records already fed are skipped)
      if (++this.kmsgRestarts > 20) { this.lost ??= `${this.name}: the kernel log reader keeps ending${this.kmsgErr ? ` (${this.kmsgErr.trim()})` : ''}`; return; }
      setTimeout(() => {
        if (this.closing || this.lost || this.ssh.isClosed) return;
        this.openKmsg().catch((e: Error) => { this.lost ??= `${this.name}: kernel log reader could not be restarted: ${e.message}`; });
      }, 200);
    });
  }

  private onKmsg(s: string): void {
    const data = this.kmsgPartial + s;
    const lines = data.split('\n');
    this.kmsgPartial = lines.pop() ?? '';
    let pass = false;
    for (const l of lines) {
      const m = KMSG_SEQ_RE.exec(l);
      if (!m) {
        // continuation (" SUBSYSTEM=...") of the record before
        if (pass) this.watcher.feed(`${l}\n`);
        continue;
      }
      const seq = Number(m[1]);
      if (!this.attached) {
        if (l.includes(this.attachNonce)) { this.attached = true; this.lastSeq = seq; }
        pass = false;
      } else {
        pass = seq > this.lastSeq;
        if (pass) { this.lastSeq = seq; this.watcher.feed(`${l}\n`); }
      }
      if (this.waiters.length) {
        const hit = this.waiters.filter((w) => l.includes(w.text));
        this.waiters = this.waiters.filter((w) => !hit.includes(w));
        for (const w of hit) w.resolve();
      }
    }
  }

  /** Resolves true when a kmsg record containing `text` has been read, false after `ms`. */
  private waitFor(text: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.waiters = this.waiters.filter((w) => w !== entry); resolve(false); }, ms);
      const entry = { text, resolve: () => { clearTimeout(t); resolve(true); } };
      this.waiters.push(entry);
    });
  }

  /** Upload the static agent to a private temp dir on the host and check that it answers hello. */
  async installAgent(local: string): Promise<void> {
    const d = await this.exec('mktemp -d /tmp/vfioc-agent.XXXXXX', { timeoutMs: 15_000 });
    const dir = d.stdout.trim();
    if (d.code !== 0 || !dir.startsWith('/tmp/vfioc-agent.')) throw new HarnessError(`${this.name}: mktemp failed: ${d.stderr.trim() || `exit ${d.code}`}`);
    this.agentDir = dir;
    const path = `${dir}/vfio-agent`;
    await this.ssh.upload(readFileSync(local), path, 0o755);
    // One request on stdin, then EOF: the agent answers and exits, and the channel closes before
    // anything else is opened (dropbear 2022.83 trips an assertion, `!channel->sent_close`, and
    // drops the connection when a channel is torn down from our side while others open).
    const r = await this.exec(`'${path}'`, { stdin: `${JSON.stringify({ id: 1, op: 'hello' })}\n`, timeoutMs: 15_000 });
    let hello: AgentReply | undefined;
    try {
      hello = JSON.parse(r.stdout.split('\n')[0] ?? '') as AgentReply;
    } catch {
      hello = undefined;
    }
    if (!hello?.ok) {
      const why = hello ? `hello answered ${hello.err ?? hello.msg}` : (r.stderr.trim().split('\n')[0] || `exit ${r.code}, no JSON reply`);
      throw new HarnessError(`${this.name}: the uploaded agent does not run there (${why}); build it against that host's kernel with --kernel PATH-TO-ITS-TREE`);
    }
    this.agentPath = path;
    this.facts.agent = path;
    const uapi = hello.uapi;
    if (uapi && typeof uapi === 'object') this.facts.agentUapi = Object.entries(uapi as Record<string, unknown>).filter(([, v]) => v === true).map(([k]) => k).join(',');
  }

  private session(): SshSession {
    if (this.lost || this.ssh.isClosed) throw new HarnessError(`lab host ${this.name} is unreachable: ${this.deathReason() ?? 'SSH connection closed'}`);
    return this.ssh;
  }

  exec(cmd: string, o?: ExecOptions): Promise<ExecResult> {
    return this.session().exec(cmd, o);
  }

  upload(data: Buffer, remotePath: string, mode?: number): Promise<void> {
    return this.session().upload(data, remotePath, mode);
  }

  /** A long-lived channel (the runner starts the uploaded agent at `agentPath` through it). */
  openChannel(cmd: string): Promise<ClientChannel> {
    return this.session().openChannel(cmd);
  }

  async mark(step: string): Promise<void> {
    const line = stepMarker(step);
    const seen = this.kmsg ? this.waitFor(line, 5_000) : Promise.resolve(false);
    await writeStepMarker((c, o) => this.exec(c, o), step, () => this.isAlive());
    // Wait (briefly) until the marker came back through the reader: what the kernel printed before
    // it has then been attributed to the step before.
    await seen;
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
    if (this.ssh.isClosed && !this.closing) this.lost ??= `SSH connection to ${this.name} lost`;
    return this.lost === undefined && !this.closing;
  }

  deathReason(): string | undefined {
    return this.lost;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    if (this.agentDir && !this.lost && !this.ssh.isClosed) {
      await this.exec(`rm -rf '${this.agentDir}'`, { timeoutMs: 10_000 }).catch(() => undefined);
    }
    this.closing = true;
    try { this.kmsg?.close(); } catch { /* gone */ }
    this.ssh.close();
  }
}

/**
 * The OpenSSH client command (without the remote command) reaching the same host with the same
 * trust: for the device manager's synchronous restore on an interrupt, where ssh2 cannot be awaited.
 */
export function opensshArgv(o: LabHostOptions): string[] {
  const knownHosts = o.knownHosts ?? join(homedir(), '.ssh', 'known_hosts');
  const a = ['ssh', '-p', String(o.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'ConnectTimeout=10'];
  if (o.identity) a.push('-i', o.identity, '-o', 'IdentitiesOnly=yes');
  a.push(`${o.user}@${o.host}`);
  return a;
}
