import type { AgentClient } from '../../harness/agent/client.js';
import type { AnyReply, Reply } from '../../harness/agent/protocol.js';
import { HarnessError } from '../../base/errors.js';
import { stateName } from './model.js';

/** uAPI constants the suite needs to build raw requests (include/uapi/linux/vfio.h). */
export const FEATURE = {
  GET: 1 << 16,
  SET: 1 << 17,
  PROBE: 1 << 18,
  MIGRATION: 1,
  MIG_DEVICE_STATE: 2,
  DMA_LOGGING_START: 6,
  DMA_LOGGING_STOP: 7,
  DMA_LOGGING_REPORT: 8,
  MIG_DATA_SIZE: 9,
  MIG_PRECOPY_INFOv2: 12,
} as const;

/** The errno name of a reply, 'OK' on success: what results record and runs are compared on. */
export function errName(r: AnyReply): string {
  if (r.ok) return 'OK';
  if (r.err === 'BADREQ' || r.err === 'UNSUPPORTED') throw new HarnessError(`agent refused a request: ${r.err}: ${r.msg ?? ''}`);
  return r.err ?? `E${r.errno}`;
}

export class Dev {
  constructor(readonly agent: AgentClient, public fd: number, readonly label: string) {}

  async getState(): Promise<number> {
    const r = await this.agent.request('get_state', { dev: this.fd });
    if (!r.ok) throw new HarnessError(`GET device state on ${this.label} failed: ${r.err}`);
    return r.state;
  }

  setState(state: number): Promise<Reply<'set_state'>> {
    return this.agent.request('set_state', { dev: this.fd, state });
  }

  /** SET that must succeed (moving to the start of a case); its fd, -1 if none. */
  async reach(state: number): Promise<number> {
    const r = await this.setState(state);
    if (!r.ok) throw new HarnessError(`could not bring ${this.label} to ${stateName(state)}: ${r.err}`);
    return r.data_fd;
  }

  async reset(): Promise<void> {
    const r = await this.agent.request('reset', { dev: this.fd });
    if (!r.ok) throw new HarnessError(`VFIO_DEVICE_RESET on ${this.label} failed: ${r.err}`);
  }

  feature(flags: number, payloadHex = '', argsz?: number): Promise<Reply<'feature'>> {
    return this.agent.request('feature', { dev: this.fd, flags, payload: payloadHex, ...(argsz === undefined ? {} : { argsz }) });
  }

  async dataSize(): Promise<Reply<'data_size'>> {
    return this.agent.request('data_size', { dev: this.fd });
  }
}

export async function closeFd(agent: AgentClient, fd: number | undefined): Promise<void> {
  if (fd !== undefined && fd >= 0) await agent.request('close', { fd });
}

/** Read a saving fd to end of stream (read() == 0). */
export async function readAll(agent: AgentClient, fd: number): Promise<{ reply: Reply<'read_all'>; data: Buffer }> {
  const r = await agent.request('read_all', { fd, chunk: 4096 });
  return { reply: r, data: Buffer.from(r.data ?? '', 'hex') };
}

export async function writeAll(agent: AgentClient, fd: number, data: Buffer, segment = 0): Promise<Reply<'write'>[]> {
  const out: Reply<'write'>[] = [];
  const step = segment > 0 ? segment : Math.max(1, data.length);
  for (let off = 0; off < data.length; off += step) {
    const r = await agent.request('write', { fd, data: data.subarray(off, off + step).toString('hex') });
    out.push(r);
    if (!r.ok) break;
  }
  if (data.length === 0) return out;
  return out;
}

/** One I/O on an old data fd, to see whether its session is still live (ENODEV when it ended). */
export async function probeFd(agent: AgentClient, fd: number, kind: 'saving' | 'resuming'): Promise<string> {
  const r = kind === 'saving'
    ? await agent.request('read', { fd, max: 1 })
    : await agent.request('write', { fd, data: '00' });
  return errName(r);
}

/** Check collector: each failed check adds a line; the outcome is pass only when there are none. */
export class Checks {
  readonly failures: string[] = [];
  eq(what: string, got: unknown, want: unknown): void {
    if (got !== want) this.failures.push(`${what}: got ${String(got)}, expected ${String(want)}`);
  }
  ok(what: string, cond: boolean, detail = ''): void {
    if (!cond) this.failures.push(`${what}${detail ? `: ${detail}` : ''}`);
  }
  get passed(): boolean {
    return this.failures.length === 0;
  }
  reason(): string | undefined {
    return this.failures.length ? this.failures.join('; ') : undefined;
  }
}
