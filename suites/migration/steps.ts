import type { AgentClient } from '../../harness/agent/client.js';
import type { AnyReply, Reply } from '../../harness/agent/protocol.js';
import { HarnessError } from '../../base/errors.js';
import { State, stateName } from './model.js';

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

/**
 * A case's precondition did not hold, so its own check cannot run: it reports blocked, naming
 * `blockedBy`, the case that tests that precondition (which carries the failure).
 */
export class PreconditionFailed extends Error {
  constructor(readonly blockedBy: string, message: string) {
    super(message);
    this.name = 'PreconditionFailed';
  }
}

/** The case that tests reaching `to` from `from` with one SET: the arc case of that pair. */
export const arcCaseId = (from: number, to: number): string => `migration/arc/${stateName(from)}->${stateName(to)}`;
/** The case that tests VFIO_DEVICE_RESET from `state`. */
export const resetCaseId = (state: number): string => `migration/reset/from-${stateName(state)}`;

export class Dev {
  /** the state the last checked step left the device in; unknown after a raw SET or reset */
  private known?: number;

  constructor(readonly agent: AgentClient, public fd: number, readonly label: string) {}

  async getState(): Promise<number> {
    const r = await this.agent.request('get_state', { dev: this.fd });
    if (!r.ok) throw new HarnessError(`GET device state on ${this.label} failed: ${r.err}`);
    return r.state;
  }

  /** The raw SET a case tests: whatever it answers is the case's observation. */
  setState(state: number): Promise<Reply<'set_state'>> {
    this.known = undefined;
    return this.agent.request('set_state', { dev: this.fd, state });
  }

  /**
   * SET that a case rests on (moving to where its check starts); its fd, -1 if none. A refused SET,
   * or a device that then reports another state, is a precondition failure naming the arc case
   * of that pair.
   */
  async reach(state: number): Promise<number> {
    const from = this.known ?? await this.getState();
    this.known = undefined;
    const r = await this.agent.request('set_state', { dev: this.fd, state });
    if (!r.ok) throw new PreconditionFailed(arcCaseId(from, state), `could not bring ${this.label} from ${stateName(from)} to ${stateName(state)}: ${r.err}`);
    const now = await this.getState();
    if (now !== state) {
      throw new PreconditionFailed(arcCaseId(from, state), `SET ${stateName(state)} on ${this.label} (in ${stateName(from)}) returned OK but the device reports ${stateName(now)}`);
    }
    this.known = state;
    return r.data_fd;
  }

  /** VFIO_DEVICE_RESET that must succeed (tidying up after a case); not checked further. */
  async reset(): Promise<void> {
    this.known = undefined;
    const r = await this.agent.request('reset', { dev: this.fd });
    if (!r.ok) throw new HarnessError(`VFIO_DEVICE_RESET on ${this.label} failed: ${r.err}`);
  }

  /** The device's cdev was closed and opened again: what it reports now is for the case to see. */
  reopened(fd: number): void {
    this.fd = fd;
    this.known = undefined;
  }

  /**
   * The start of a case: VFIO_DEVICE_RESET, after which the uAPI has the device RUNNING with no
   * session (no data fd can be live in RUNNING). When it is not, the case cannot test what it is
   * about: a precondition failure naming the reset case of the state the device was in. With
   * `recover` (the cases the others' preconditions rest on, which must report on their own), a
   * failed reset is worked around with SET RUNNING, noted in `note`, before giving up.
   */
  async start(o: { recover?: boolean; note?: (line: string) => void } = {}): Promise<void> {
    const before = await this.getState();
    this.known = undefined;
    const r = await this.agent.request('reset', { dev: this.fd });
    const after = r.ok ? await this.getState() : before;
    if (r.ok && after === State.RUNNING) {
      this.known = State.RUNNING;
      return;
    }
    const what = r.ok
      ? `after VFIO_DEVICE_RESET ${this.label} is in ${stateName(after)}, not RUNNING (it was in ${stateName(before)})`
      : `VFIO_DEVICE_RESET on ${this.label} (in ${stateName(before)}) failed: ${r.err}`;
    if (o.recover) {
      const back = await this.agent.request('set_state', { dev: this.fd, state: State.RUNNING });
      if (back.ok && (await this.getState()) === State.RUNNING) {
        o.note?.(`note: ${what}; brought back with SET RUNNING instead (${resetCaseId(before)} reports the reset)`);
        this.known = State.RUNNING;
        return;
      }
    }
    throw new PreconditionFailed(resetCaseId(before), what);
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
