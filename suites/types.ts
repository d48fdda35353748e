import type { AgentClient } from '../harness/agent/client.js';
import type { Target } from '../harness/target/target.js';
import type { ConsoleFault, DeviceInfo, Status } from '../base/results/schema.js';

/** What a case decided. Observed values are compared across runs, so keep them stable and small. */
export interface CaseOutcome {
  status: Status;
  reason?: string;
  observed?: Record<string, unknown>;
  /** timings, byte counts, generated ids: kept apart from observed so they never count as a change */
  measurements?: Record<string, unknown>;
  expected?: Record<string, unknown>;
  /** status blocked: the id of the case that tests the precondition that did not hold */
  blockedBy?: string;
}

export interface CaseContext {
  /** this case's id: the step its console faults are pinned on */
  id: string;
  target: Target;
  agent: AgentClient;
  /** free-form lines for the step log (agent exchanges are logged automatically) */
  note(line: string): void;
  /**
   * Aborted when the case ran out of time. From then on `agent` and `target` refuse every request
   * (the runner restarts the agent and sets the suite up again before the next case), so a body
   * that is still running cannot act on the next case's devices; a long loop may check it to stop
   * early.
   */
  signal: AbortSignal;
}

export interface CaseDef<S> {
  /** stable id: migration/arc/STOP->STOP_COPY */
  id: string;
  device: DeviceInfo;
  /**
   * Console faults of these kinds are part of what the case provokes (e.g. iommu-fault for a DMA to
   * an unmapped IOVA) and do not fail it by themselves.
   */
  expectedFaults?: string[];
  timeoutMs?: number;
  run(state: S, ctx: CaseContext): Promise<CaseOutcome>;
}

export interface SetupResult<S> {
  state: S;
  cases: CaseDef<S>[];
}

/**
 * What a suite needs of the guest beyond the standard one. The harness honours it when it boots
 * the guest (runner/suite-machine.ts); the suite itself never starts a machine.
 */
export interface SuiteMachine {
  /** a second image served to the guest over virtio-9p (images/rootfs): 'debian-qemu' holds a QEMU >= 8.0 */
  rootfs?: 'debian-qemu';
  memMiB?: number;
  smp?: number;
}

/**
 * One id a suite can name before any target is seen (`vfio-conformance list`, `plan`, `--case`).
 * `static`: the same on every target. `derived`: setup derives it from what it finds (the device's
 * migration flags, the selftest program's own list), so it is listed for the default target and
 * `from` says what it depends on; another device or kernel may have other ids. A `pattern` stands
 * for ids that cannot be listed at all before setup (a glob, e.g. one case per selftest `-l` prints).
 */
export interface CaseListing {
  id: string;
  known: 'static' | 'derived';
  from?: string;
  pattern?: boolean;
}

/**
 * A suite: sets up a fresh target (devices, modules) and lists its cases. The runner may call
 * setup more than once: after a case kills the guest, a new guest is booted and the suite is set
 * up again, and the remaining cases run there; after a case ran out of time, the runner ends the
 * agent (and with it every fd the suite held), calls teardown with that closed agent, starts a new
 * agent and calls setup again. So teardown must release what outlives the agent (mdev instances,
 * driver bindings) also when `agent.alive` is false, and use the agent only while it is alive.
 */
export interface Suite<S = unknown> {
  name: string;
  /** the guest this suite needs, when the standard one is not enough */
  machine?: SuiteMachine;
  setup(target: Target, agent: AgentClient): Promise<SetupResult<S>>;
  teardown?(state: S, target: Target, agent: AgentClient): Promise<void>;
  /** its case ids without a target, in run order (every registered suite has one; a unit test checks) */
  list?(): CaseListing[];
}

/**
 * Fold console faults into an outcome. An Oops, WARN, KASAN report, hang or IOMMU fault during a
 * case fails that case even if every errno matched, unless the case said it provokes that kind.
 */
export function judgeFaults(o: CaseOutcome, faults: ConsoleFault[], expected: string[] = []): CaseOutcome {
  const bad = faults.filter((f) => !expected.includes(f.kind));
  if (!bad.length) return o;
  const titles = bad.map((f) => `${f.kind}: ${f.title}`).join('; ');
  return {
    ...o,
    // The fault is the finding, even when it also cut the case short (an Oops kills the agent's ioctl).
    status: 'fail',
    reason: `kernel reported ${bad.length > 1 ? `${bad.length} faults` : 'a fault'} during this case (${titles})${o.reason ? `; ${o.reason}` : ''}`,
  };
}

/**
 * The same cases, each reporting skip with `reason` instead of running: for a precondition the
 * target lacks (so the ids still appear in every run and compare across kernels and profiles).
 */
export function skipCases<S>(cases: CaseDef<S>[], reason: string): CaseDef<S>[] {
  return cases.map((c) => ({ ...c, run: async () => ({ status: 'skip', reason }) }));
}
