import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { HarnessError } from '../../base/errors.js';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  /** a private key (key auth); may be left out when `agent` is given */
  privateKey?: Buffer | string;
  /** an ssh-agent socket (SSH_AUTH_SOCK) to authenticate with */
  agent?: string;
  /**
   * The host key the server must present, as an OpenSSH public key line ("ssh-ed25519 AAAA...").
   * Nothing else is accepted: there is no silent trust.
   */
  hostKey?: string;
  /** called with the key the server presented when hostKey is not given; return true to trust it */
  verifyHostKey?: (key: Buffer) => boolean;
}

export interface ExecResult {
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  timeoutMs?: number;
  stdin?: string | Buffer;
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
}

function keyBlob(line: string): Buffer {
  const b64 = line.trim().split(/\s+/)[1];
  if (!b64) throw new HarnessError(`not an OpenSSH public key line: ${line}`);
  return Buffer.from(b64, 'base64');
}

/** One SSH connection (ssh2), with exec that times out and upload over exec (the guest has no sftp server). */
export class SshSession {
  private constructor(private readonly client: Client, readonly target: SshTarget) {}

  private closed = false;
  onClose?: () => void;

  static connect(t: SshTarget, readyTimeoutMs = 10_000): Promise<SshSession> {
    return new Promise((resolve, reject) => {
      const client = new Client();
      let hostKeyMismatch = false;
      const cfg: ConnectConfig = {
        host: t.host,
        port: t.port,
        username: t.username,
        privateKey: t.privateKey,
        agent: t.agent,
        readyTimeout: readyTimeoutMs,
        keepaliveInterval: 5_000,
        keepaliveCountMax: 6,
        hostVerifier: (key: Buffer) => {
          const ok = t.hostKey ? key.equals(keyBlob(t.hostKey)) : (t.verifyHostKey?.(key) ?? false);
          if (!ok) hostKeyMismatch = true;
          return ok;
        },
      };
      client.once('ready', () => {
        const s = new SshSession(client, t);
        client.on('close', () => { s.closed = true; s.onClose?.(); });
        resolve(s);
      });
      client.once('error', (err: Error) => {
        client.end();
        if (hostKeyMismatch) {
          reject(new HarnessError(`SSH host key of ${t.host}:${t.port} does not match the expected key: refusing to connect`));
        } else {
          reject(err);
        }
      });
      client.connect(cfg);
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Open an exec channel. dropbear now and then answers an exec request with a channel failure
   * ("Unable to exec") when channels open and close close together. Usually the command did not
   * start and asking again is safe; once (a run of 2590 cases) it seems to have run anyway, so the
   * scripts the suites send are written to be idempotent (createMtty checks before it creates).
   */
  private async channel(cmd: string): Promise<ClientChannel> {
    for (let i = 0; ; i++) {
      try {
        return await new Promise<ClientChannel>((resolve, reject) => {
          this.client.exec(cmd, (err, ch) => (err ? reject(err) : resolve(ch)));
        });
      } catch (e) {
        const msg = (e as Error).message;
        if (i >= 4 || !/Unable to exec/.test(msg) || this.closed) {
          throw new HarnessError(`ssh exec failed on ${this.target.host}:${this.target.port}: ${msg}`);
        }
        await new Promise((r) => setTimeout(r, 50 * (i + 1)));
      }
    }
  }

  /** Run a command; resolves with its exit code and output, never rejects on a non-zero exit. */
  exec(cmd: string, o: ExecOptions = {}): Promise<ExecResult> {
    return this.channel(cmd).then((ch) => new Promise<ExecResult>((resolve) => {
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      let done = false;
      const timer = o.timeoutMs ? setTimeout(() => {
        timedOut = true;
        // A hung guest command must not hang the harness: signal it, then drop the channel.
        try { ch.signal('KILL'); } catch { /* dropbear may not support signals */ }
        ch.close();
      }, o.timeoutMs) : undefined;
      ch.on('data', (b: Buffer) => { const s = b.toString('utf8'); stdout += s; o.onStdout?.(s); });
      ch.stderr.on('data', (b: Buffer) => { const s = b.toString('utf8'); stderr += s; o.onStderr?.(s); });
      const finish = (code: number | null, signal?: string) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, timedOut });
      };
      // 'exit' carries the status and may come before or not at all (a dropped connection); 'close' always ends it.
      let exitCode: number | null = null;
      let exitSignal: string | undefined;
      ch.on('exit', (code: number | null, signal?: string) => { exitCode = code; exitSignal = signal; });
      ch.on('close', () => finish(timedOut ? null : exitCode, exitSignal));
      if (o.stdin !== undefined) ch.end(o.stdin);
      else ch.end();
    }));
  }

  /** A long-lived channel for a line protocol (the agent). */
  openChannel(cmd: string): Promise<ClientChannel> {
    return this.channel(cmd);
  }

  /** Upload by piping the bytes into `cat` (no sftp-server in the guest). */
  async upload(data: Buffer, remotePath: string, mode = 0o644): Promise<void> {
    const dir = remotePath.replace(/\/[^/]*$/, '') || '/';
    const r = await this.exec(`mkdir -p '${dir}' && cat > '${remotePath}' && chmod ${mode.toString(8)} '${remotePath}'`, { stdin: data, timeoutMs: 60_000 });
    if (r.code !== 0) throw new HarnessError(`upload to ${remotePath} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  }

  close(): void {
    this.client.end();
  }
}

/**
 * Connect, retrying until the server answers or the deadline passes. Used after the guest says it
 * is ready, and to reconnect after a dropped connection; a host-key mismatch is never retried.
 */
export async function connectWithRetry(t: SshTarget, deadlineMs: number, isAlive?: () => boolean): Promise<SshSession> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  let delay = 50;
  while (Date.now() < end) {
    if (isAlive && !isAlive()) break;
    try {
      return await SshSession.connect(t, Math.max(1000, Math.min(10_000, end - Date.now())));
    } catch (e) {
      if (e instanceof HarnessError) throw e;
      last = e;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
  }
  throw new HarnessError(`no SSH answer from ${t.host}:${t.port} within ${Math.round(deadlineMs / 1000)} s${last ? ` (last error: ${(last as Error).message})` : ''}`);
}
