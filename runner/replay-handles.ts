import type { AgentReply, Exchange } from '../harness/agent/client.js';

/**
 * A recording names things by the numbers the kernel and the agent gave them that time: fd 10,
 * IOAS 2, memory at 0x7f3a...; a replay gets other numbers for the same things. The agent's
 * protocol (images/agent/PROTOCOL.md) says which reply values create a handle and which request
 * arguments use one; what a reply created in the recording is mapped to what the same reply created
 * in the replay, and requests are rewritten through that map before they are sent.
 *
 * Four name spaces: file descriptors, iommufd object ids, the agent's memory (an address inside an
 * allocation maps to the same offset in the replay's allocation) and kernel-chosen IOVA ranges.
 */
type Kind = 'fd' | 'object' | 'memory' | 'iova';

/** reply values that name something the op created (or found) */
const CREATED: Record<string, Kind> = {
  fd: 'fd', dev: 'fd', iommufd: 'fd', data_fd: 'fd', container: 'fd', group_fd: 'fd',
  ioas: 'object', devid: 'object', pt_id: 'object', hwpt: 'object', stdev_id: 'object', hwpt_id: 'object', idev_id: 'object',
  addr: 'memory', iova: 'iova',
};

/** request arguments that name a handle */
const USED: Record<string, Kind> = {
  fd: 'fd', dev: 'fd', iommufd: 'fd', container: 'fd',
  ioas: 'object', object: 'object', dev_id: 'object', pt_id: 'object', hwpt: 'object', stdev_id: 'object',
  addr: 'memory', iova: 'iova',
};

interface Region { from: number; to: number; length: number }

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** A value that names something: fds 0-2 are the protocol's and negative ones are tests of EBADF. */
function names(kind: Kind, v: number): boolean {
  if (kind === 'fd') return v > 2;
  if (kind === 'object') return v > 0;
  return v >= 0;
}

export class HandleMap {
  private readonly exact: Record<'fd' | 'object', Map<number, number>> = { fd: new Map(), object: new Map() };
  private readonly regions: Record<'memory' | 'iova', Region[]> = { memory: [], iova: [] };

  /** What `recorded` (the reply in the bundle) and `live` (the replay's reply to `request`) created. */
  learn(request: Record<string, unknown>, recorded?: AgentReply, live?: AgentReply): void {
    if (!recorded || !live) return;
    const length = isInt(request.length) ? request.length : isInt(request.size) ? request.size : undefined;
    for (const [k, kind] of Object.entries(CREATED)) {
      const a = recorded[k];
      const b = live[k];
      if (!isInt(a) || !isInt(b) || !names(kind, a) || !names(kind, b)) continue;
      if (kind === 'fd' || kind === 'object') this.exact[kind].set(a, b);
      // an IOVA the request fixed is an echo, not an allocation
      else if (length !== undefined && !(kind === 'iova' && request.iova !== undefined && request.iova !== null)) {
        this.regions[kind].unshift({ from: a, to: b, length });
      }
    }
  }

  /** `request` with every handle it uses renamed to the replay's; `changes` says which ("fd 10->7"). */
  translate(request: Record<string, unknown>): { request: Record<string, unknown>; changes: string[] } {
    const out = { ...request };
    const changes: string[] = [];
    for (const [k, kind] of Object.entries(USED)) {
      const v = request[k];
      if (!isInt(v)) continue;
      const to = this.lookup(kind, v);
      if (to === undefined || to === v) continue;
      out[k] = to;
      changes.push(`${k} ${kind === 'memory' || kind === 'iova' ? `0x${v.toString(16)}->0x${to.toString(16)}` : `${v}->${to}`}`);
    }
    return { request: out, changes };
  }

  /**
   * Learn from the suite's setup, run again before the steps: the i-th recorded exchange pairs with
   * the i-th live one while both sent the same op. Returns why pairing stopped early, if it did.
   */
  learnSetup(recorded: Exchange[], live: Exchange[]): string | undefined {
    const n = Math.min(recorded.length, live.length);
    for (let i = 0; i < n; i++) {
      const r = recorded[i]!;
      const l = live[i]!;
      if (r.request.op !== l.request.op) {
        return `the setup went another way at request ${i + 1} (${String(r.request.op)} recorded, ${String(l.request.op)} now): handles it created later are not mapped`;
      }
      this.learn(l.request, r.reply, l.reply);
    }
    return recorded.length === live.length ? undefined
      : `the setup made ${live.length} requests, the recording ${recorded.length}: handles beyond the first ${n} are not mapped`;
  }

  private lookup(kind: Kind, v: number): number | undefined {
    if (kind === 'fd' || kind === 'object') return names(kind, v) ? this.exact[kind].get(v) : undefined;
    const r = this.regions[kind].find((x) => v >= x.from && v < x.from + x.length);
    return r ? r.to + (v - r.from) : undefined;
  }
}
