import { createConnection, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HarnessError } from '../../base/errors.js';

/** The commands the harness uses, with their arguments and return shapes (QEMU's QAPI schema). */
export interface QmpCommands {
  qmp_capabilities: { args: Record<string, never>; ret: Record<string, never> };
  'query-version': { args: Record<string, never>; ret: { qemu: { major: number; minor: number; micro: number }; package: string } };
  'query-status': { args: Record<string, never>; ret: { running: boolean; status: string } };
  'query-migrate': { args: Record<string, never>; ret: MigrationInfo };
  'migrate-set-capabilities': { args: { capabilities: { capability: string; state: boolean }[] }; ret: Record<string, never> };
  'migrate-set-parameters': { args: Record<string, unknown>; ret: Record<string, never> };
  migrate: { args: { uri: string }; ret: Record<string, never> };
  'migrate-incoming': { args: { uri: string }; ret: Record<string, never> };
  migrate_cancel: { args: Record<string, never>; ret: Record<string, never> };
  'migrate-continue': { args: { state: string }; ret: Record<string, never> };
  stop: { args: Record<string, never>; ret: Record<string, never> };
  cont: { args: Record<string, never>; ret: Record<string, never> };
  quit: { args: Record<string, never>; ret: Record<string, never> };
  'human-monitor-command': { args: { 'command-line': string }; ret: string };
}

export interface MigrationInfo {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'setup-time'?: number;
  ram?: { transferred: number; total: number };
  vfio?: { transferred: number };
  'error-desc'?: string;
  [k: string]: unknown;
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** A command QEMU refused: its error class and description, as QMP reports them. */
export class QmpError extends HarnessError {
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; command: string };

/**
 * A QMP client of our own: one socket, commands matched to replies by id, events kept in order
 * and waitable. Every wait has a timeout, because a wedged QEMU must not wedge the harness.
 */
export class QmpClient {
  private buf = '';
  private nextId = 1;
  private pending = new Map<string, Pending>();
  private waiters: { name: string; pred: (e: QmpEvent) => boolean; resolve: (e: QmpEvent) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private closedWhy?: string;
  /** every event since connect, in order (the real-client suite reads the VFIO_MIGRATION states from here) */
  readonly events: QmpEvent[] = [];
  greeting?: { QMP: { version: unknown; capabilities: unknown[] } };

  private constructor(private readonly sock: Duplex) {
    sock.setEncoding('utf8');
    sock.on('data', (s: string) => this.onData(s));
    sock.on('close', () => this.fail('QMP socket closed'));
    sock.on('error', (e: Error) => this.fail(e.message));
  }

  /** Connect to a QMP unix socket, read the greeting, leave capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path);
      const t = setTimeout(() => { s.destroy(); reject(new HarnessError(`QMP: no connection to ${path} within ${timeoutMs} ms`)); }, timeoutMs);
      s.once('connect', () => { clearTimeout(t); resolve(s); });
      s.once('error', (e) => { clearTimeout(t); reject(new HarnessError(`QMP: cannot connect to ${path}: ${e.message}`)); });
    });
    const c = new QmpClient(sock);
    await c.waitGreeting(timeoutMs);
    await c.execute('qmp_capabilities', {}, timeoutMs);
    return c;
  }

  /**
   * Speak QMP over any duplex byte stream instead of a unix socket: e.g. an SSH exec channel whose
   * command is a QEMU started with `-qmp stdio` inside the target (the real-client suite's nested
   * QEMUs). Reads the greeting and leaves capabilities negotiation mode, as connect() does.
   */
  static async fromStream(stream: Duplex, timeoutMs = 10_000): Promise<QmpClient> {
    const c = new QmpClient(stream);
    try {
      await c.waitGreeting(timeoutMs);
      await c.execute('qmp_capabilities', {}, timeoutMs);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  private greetingWaiter?: () => void;
  private greetingFailed?: (why: string) => void;

  private waitGreeting(timeoutMs: number): Promise<void> {
    if (this.greeting) return Promise.resolve();
    if (this.closedWhy) return Promise.reject(new HarnessError(`QMP: no greeting: ${this.closedWhy}`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new HarnessError(`QMP: no greeting within ${timeoutMs} ms`)), timeoutMs);
      this.greetingWaiter = () => { clearTimeout(t); resolve(); };
      // a stream that ends before the greeting (the QEMU behind it exited) fails at once, not at the timeout
      this.greetingFailed = (why) => { clearTimeout(t); reject(new HarnessError(`QMP: no greeting: ${why}`)); };
    });
  }

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.fail(`QMP sent a line that is not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if ('QMP' in msg) {
      this.greeting = msg as QmpClient['greeting'];
      this.greetingWaiter?.();
      return;
    }
    if (typeof msg.event === 'string') {
      const ev = msg as unknown as QmpEvent;
      this.events.push(ev);
      for (const w of [...this.waiters]) {
        if (w.name === ev.event && w.pred(ev)) {
          clearTimeout(w.timer);
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(ev);
        }
      }
      return;
    }
    const id = msg.id === undefined ? undefined : String(msg.id);
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p) return;
    this.pending.delete(id!);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, e.class ?? 'GenericError', e.desc ?? ''));
    } else {
      p.resolve(msg.return);
    }
  }

  private fail(why: string): void {
    if (this.closedWhy) return;
    this.closedWhy = why;
    if (!this.greeting) this.greetingFailed?.(why);
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new HarnessError(`QMP ${p.command}: ${why}`)); }
    this.pending.clear();
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(new HarnessError(`QMP: waiting for ${w.name}: ${why}`)); }
    this.waiters = [];
  }

  get closed(): boolean {
    return this.closedWhy !== undefined;
  }

  execute<C extends keyof QmpCommands>(command: C, args: QmpCommands[C]['args'] = {} as QmpCommands[C]['args'], timeoutMs = 30_000): Promise<QmpCommands[C]['ret']> {
    if (this.closedWhy) return Promise.reject(new HarnessError(`QMP ${command}: ${this.closedWhy}`));
    const id = `vfioc-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HarnessError(`QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, command });
      const msg: Record<string, unknown> = { execute: command, id };
      if (args && Object.keys(args).length) msg.arguments = args;
      this.sock.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** The next event of this name matching pred (events already received count too, from `since`). */
  waitEvent(name: string, pred: (e: QmpEvent) => boolean = () => true, timeoutMs = 30_000, since = 0): Promise<QmpEvent> {
    const seen = this.events.slice(since).find((e) => e.event === name && pred(e));
    if (seen) return Promise.resolve(seen);
    if (this.closedWhy) return Promise.reject(new HarnessError(`QMP: waiting for ${name}: ${this.closedWhy}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(new HarnessError(`QMP: no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push({ name, pred, resolve, reject, timer });
    });
  }

  /** Poll query-migrate until a final status (completed, failed, cancelled) or the timeout. */
  async waitMigration(timeoutMs = 60_000, intervalMs = 50): Promise<MigrationInfo> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.execute('query-migrate');
      if (info.status && ['completed', 'failed', 'cancelled'].includes(info.status)) return info;
      if (Date.now() > end) throw new HarnessError(`QMP: migration still '${info.status ?? 'unknown'}' after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  close(): void {
    this.sock.end();
    this.fail('closed by the harness');
  }
}
