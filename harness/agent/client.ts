import type { ClientChannel } from 'ssh2';
import type { Target } from '../target/target.js';
import { HarnessError } from '../../base/errors.js';
import { checkReply, type Args, type ArglessOp, type OpName, type OkReply, type Reply, type WireReply } from './protocol.js';

/** A reply of no particular op, as on the wire: suites use the typed `Reply<O>` of ./protocol.ts. */
export type AgentReply = WireReply;

/** One request/reply pair as it happened: the step log of a case, and the replay script of a reproducer. */
export interface Exchange {
  request: Record<string, unknown>;
  reply?: WireReply;
  ms: number;
  /** what the agent wrote to stderr while this request was out (or, after it, before the next one) */
  stderr?: string[];
}

/** The connection died under a request: the case that was running is an error, the guest is suspect. */
export class AgentGone extends HarnessError {
  constructor(why: string) {
    super(`agent connection lost: ${why}`);
    this.name = 'AgentGone';
  }
}

export const AGENT_PATH = '/usr/bin/vfio-agent';

/** stderr lines kept to explain a connection that died (a missing binary, an out-of-memory exit) */
const STDERR_TAIL = 5;

interface Pending {
  op: string;
  /** typed requests have their reply checked against the declaration */
  typed: boolean;
  ex: Exchange;
  resolve: (r: WireReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Talks to vfio-agent over one SSH channel, JSON lines in order. It only transports: whether a
 * reply is right is for the suite to decide. Requests and replies are typed by ./protocol.ts.
 */
export class AgentClient {
  private nextId = 1;
  private buf = '';
  private errBuf = '';
  private pending = new Map<number, Pending>();
  private closedWhy?: string;
  /** every exchange since the last takeLog() */
  private log: Exchange[] = [];
  /** stderr that arrived with no exchange to belong to: it goes with the next one */
  private unclaimed: string[] = [];
  private stderrTail: string[] = [];

  private constructor(private readonly ch: ClientChannel) {
    ch.on('data', (b: Buffer) => this.onData(b.toString('utf8')));
    ch.stderr.on('data', (b: Buffer) => this.onStderr(b.toString('utf8')));
    ch.on('close', () => this.fail('channel closed'));
    ch.on('error', (e: Error) => this.fail(e.message));
  }

  static async start(target: Target, path = AGENT_PATH): Promise<AgentClient> {
    const ch = await target.openChannel(path);
    const c = new AgentClient(ch);
    const hello = await c.request('hello', {}, 10_000);
    if (!hello.ok) throw new HarnessError(`agent at ${path} did not answer hello: ${hello.msg ?? hello.err}`);
    c.hello = hello;
    c.takeLog();
    return c;
  }

  hello?: OkReply<'hello'>;

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (!line.trim()) continue;
      let reply: WireReply;
      try {
        reply = JSON.parse(line) as WireReply;
      } catch {
        this.fail(`agent sent a line that is not JSON: ${line.slice(0, 200)}`);
        return;
      }
      const p = reply.id === null ? undefined : this.pending.get(reply.id);
      if (!p) continue;
      clearTimeout(p.timer);
      this.pending.delete(reply.id!);
      p.resolve(reply);
    }
  }

  /**
   * The agent writes diagnostics to stderr while it works on a request; they go with that request
   * in the step log. stdout and stderr reach us independently, so a line that arrives after its
   * reply goes with the latest exchange.
   */
  private onStderr(s: string): void {
    this.errBuf += s;
    let nl: number;
    while ((nl = this.errBuf.indexOf('\n')) >= 0) {
      this.stderrLine(this.errBuf.slice(0, nl));
      this.errBuf = this.errBuf.slice(nl + 1);
    }
  }

  private stderrLine(raw: string): void {
    const line = raw.replace(/\r$/, '');
    if (!line.trim()) return;
    this.stderrTail = [...this.stderrTail.slice(1 - STDERR_TAIL), line];
    const inFlight = this.pending.values().next().value as Pending | undefined;
    const ex = inFlight?.ex ?? this.log[this.log.length - 1];
    if (ex) (ex.stderr ??= []).push(line);
    else this.unclaimed.push(line);
  }

  private fail(why: string): void {
    if (this.closedWhy) return;
    if (this.errBuf) { this.stderrLine(this.errBuf); this.errBuf = ''; }
    this.closedWhy = this.stderrTail.length ? `${why} (agent stderr: ${this.stderrTail.join(' | ')})` : why;
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new AgentGone(this.closedWhy)); }
    this.pending.clear();
  }

  get alive(): boolean {
    return this.closedWhy === undefined;
  }

  /** One op, typed by ./protocol.ts: a reply that departs from the declaration rejects. */
  request<O extends ArglessOp>(op: O): Promise<Reply<O>>;
  request<O extends OpName>(op: O, args: Args<O>, timeoutMs?: number): Promise<Reply<O>>;
  async request<O extends OpName>(op: O, args?: Args<O>, timeoutMs = 30_000): Promise<Reply<O>> {
    // checkReply has held the reply to the declaration of O: this is the one place that says so
    return (await this.exchange(op, args ?? {}, timeoutMs, true)) as Reply<O>;
  }

  /** An untyped request, sent as given: for replaying a recording, never for a suite. */
  send(op: string, args: Record<string, unknown>, timeoutMs = 30_000): Promise<WireReply> {
    return this.exchange(op, args, timeoutMs, false);
  }

  private exchange(op: string, args: object, timeoutMs: number, typed: boolean): Promise<WireReply> {
    if (this.closedWhy) return Promise.reject(new AgentGone(this.closedWhy));
    // An argument named id or op would overwrite the envelope: the reply would never match and the
    // call would look like a hang 30 s later. Fail now, naming the mistake.
    if ('id' in args || 'op' in args) return Promise.reject(new HarnessError(`agent request ${op}: arguments may not be named 'id' or 'op'`));
    const id = this.nextId++;
    const request = { ...args, id, op };
    const ex: Exchange = { request, ms: 0 };
    if (this.unclaimed.length) { ex.stderr = this.unclaimed; this.unclaimed = []; }
    this.log.push(ex);
    const t0 = performance.now();
    return new Promise<WireReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        // A request the kernel never answers (a hung ioctl) leaves the agent stuck: the channel is useless now.
        this.fail(`no reply to ${op} within ${timeoutMs} ms`);
        reject(new AgentGone(`no reply to ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (r: WireReply): void => {
        ex.reply = r;
        ex.ms = Math.round((performance.now() - t0) * 100) / 100;
        const wrong = typed ? checkReply(op as OpName, r) : undefined;
        if (wrong) reject(new HarnessError(`agent reply to ${op} departs from harness/agent/protocol.ts: ${wrong}`));
        else resolve(r);
      };
      this.pending.set(id, { op, typed, ex, resolve: done, reject, timer });
      this.ch.write(`${JSON.stringify(request)}\n`);
    });
  }

  /** The exchanges since the last call, for a case's step log. */
  takeLog(): Exchange[] {
    const l = this.log;
    this.log = [];
    return l;
  }

  close(): void {
    try { this.ch.end(); } catch { /* gone */ }
    this.fail('closed by the harness');
  }
}

/** One entry per exchange, for step logs and JUnit system-out: the exchange, then the agent's stderr lines. */
export function formatExchange(e: Exchange): string {
  const { id: _id, ...req } = e.request;
  void _id;
  const reply = e.reply ? JSON.stringify(Object.fromEntries(Object.entries(e.reply).filter(([k]) => k !== 'id'))) : '(no reply)';
  const stderr = (e.stderr ?? []).map((l) => `\n  agent stderr: ${l}`).join('');
  return `${JSON.stringify(req)} -> ${reply} [${e.ms} ms]${stderr}`;
}
