import type { ClientChannel } from 'ssh2';
import type { Target } from '../target/target.js';
import { HarnessError } from '../../base/errors.js';

/** A reply as the agent sends it: ok/errno/err plus op-specific values. */
export interface AgentReply {
  id: number | null;
  ok: boolean;
  errno: number;
  err: string | null;
  where?: string;
  msg?: string;
  [value: string]: unknown;
}

/** One request/reply pair as it happened: the step log of a case, and the replay script of a reproducer. */
export interface Exchange {
  request: Record<string, unknown>;
  reply?: AgentReply;
  ms: number;
}

/** The connection died under a request: the case that was running is an error, the guest is suspect. */
export class AgentGone extends HarnessError {
  constructor(why: string) {
    super(`agent connection lost: ${why}`);
    this.name = 'AgentGone';
  }
}

export const AGENT_PATH = '/usr/bin/vfio-agent';

/**
 * Talks to vfio-agent over one SSH channel, JSON lines in order. It only transports: whether a
 * reply is right is for the suite to decide.
 */
export class AgentClient {
  private nextId = 1;
  private buf = '';
  private pending = new Map<number, { resolve: (r: AgentReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedWhy?: string;
  /** every exchange since the last takeLog() */
  private log: Exchange[] = [];

  private constructor(private readonly ch: ClientChannel) {
    ch.on('data', (b: Buffer) => this.onData(b.toString('utf8')));
    ch.stderr.on('data', () => { /* agent diagnostics; the console log has the kernel's view */ });
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

  hello?: AgentReply;

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (!line.trim()) continue;
      let reply: AgentReply;
      try {
        reply = JSON.parse(line) as AgentReply;
      } catch {
        this.fail(`agent sent a line that is not JSON: ${line.slice(0, 200)}`);
        return;
      }
      const p = reply.id === null ? undefined : this.pending.get(reply.id);
      if (p) {
        clearTimeout(p.timer);
        this.pending.delete(reply.id!);
        p.resolve(reply);
      }
    }
  }

  private fail(why: string): void {
    if (this.closedWhy) return;
    this.closedWhy = why;
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new AgentGone(why)); }
    this.pending.clear();
  }

  get alive(): boolean {
    return this.closedWhy === undefined;
  }

  request(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<AgentReply> {
    if (this.closedWhy) return Promise.reject(new AgentGone(this.closedWhy));
    // An argument named id or op would overwrite the envelope: the reply would never match and the
    // call would look like a hang 30 s later. Fail now, naming the mistake.
    if ('id' in args || 'op' in args) return Promise.reject(new HarnessError(`agent request ${op}: arguments may not be named 'id' or 'op'`));
    const id = this.nextId++;
    const request = { ...args, id, op };
    const ex: Exchange = { request, ms: 0 };
    this.log.push(ex);
    const t0 = performance.now();
    return new Promise<AgentReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        // A request the kernel never answers (a hung ioctl) leaves the agent stuck: the channel is useless now.
        this.fail(`no reply to ${op} within ${timeoutMs} ms`);
        reject(new AgentGone(`no reply to ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (r) => { ex.reply = r; ex.ms = Math.round((performance.now() - t0) * 100) / 100; resolve(r); },
        reject,
        timer,
      });
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

/** One line per exchange, for step logs and JUnit system-out. */
export function formatExchange(e: Exchange): string {
  const { id: _id, ...req } = e.request;
  void _id;
  const reply = e.reply ? JSON.stringify(Object.fromEntries(Object.entries(e.reply).filter(([k]) => k !== 'id'))) : '(no reply)';
  return `${JSON.stringify(req)} -> ${reply} [${e.ms} ms]`;
}
