import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { AGENT_PATH, AgentClient, AgentGone, formatExchange, type Exchange } from '../harness/agent/client.js';
import { slug, writeBundle, type ReproEnv } from './repro.js';
import { stopAgent } from './stop-agent.js';
import type { Target } from '../harness/target/target.js';
import type { Suite, CaseDef, CaseOutcome } from '../suites/types.js';
import { judgeFaults } from '../suites/types.js';
import type { CaseResult, DeviceInfo } from '../base/results/schema.js';
import { HarnessError } from '../base/errors.js';

/** How the runner gets a machine: boots a guest (or reconnects a lab host) for a profile. */
export interface TargetFactory {
  profile: string;
  /** a fresh target; called again after one died */
  start(attempt: number): Promise<Target & { consoleLog?: string }>;
  /** how long a console fault can trail the request that caused it (a serial console: 1.5 s) */
  faultGraceMs?: number;
}

export interface RunnerHooks {
  result(r: CaseResult): void;
  error(e: { profile?: string; message: string; log?: string }): void;
  progress?(msg: string): void;
}

/**
 * Machines a suite may lose in a row without knowing why (no kernel fault pinned on the case: QEMU
 * crashed, SSH dropped, an agent would not die), before it gives up: a case that ran to its end
 * resets the count. A machine lost to a fault the console pinned on its case is progress (that
 * case has its answer) and is not counted, so a driver whose known oops ends six arcs in a row
 * (virtio_vfio_pci's RESUMING arcs) still gets every case run. MAX_REPLACEMENTS bounds a suite's
 * machines whatever the pattern.
 */
export const MAX_REPLACEMENTS_IN_A_ROW = 3;
export const MAX_REPLACEMENTS = 16;
const DEFAULT_TIMEOUT_MS = 60_000;
const FAULT_GRACE_MS = 1500;
const NO_DEVICE: DeviceInfo = { driver: 'none', class: 'none', id: '-' };

/** How a suite's pass over its cases ended. */
type Ending =
  | { kind: 'done' }
  /** the machine or its connection died: a fresh machine for the cases left */
  | { kind: 'died' }
  /** a case ran out of time on a live machine: its agent is closed, the suite's devices are suspect */
  | { kind: 'timed-out'; id: string };

/**
 * Runs suites on one profile. It knows nothing of what a case expects: it marks each step in the
 * kernel log, runs the case with a time limit, attaches the console faults that appeared, and when
 * the machine dies it records that, starts a fresh one and goes on with the next case. A case that
 * runs out of time is stopped before the next one starts: its agent is closed (no request of it
 * can reach the next case), the agent process ended, the suite torn down and set up again on a new
 * agent; when the agent will not die or the teardown fails, a fresh machine is used instead.
 */
export async function runProfile(f: TargetFactory, suites: Suite<unknown>[], runDir: string, hooks: RunnerHooks, repro?: ReproEnv): Promise<void> {
  let attempt = 0;
  let target: (Target & { consoleLog?: string }) | undefined;
  let agent: AgentClient | undefined;

  const fresh = async (): Promise<boolean> => {
    agent?.close();
    await target?.close().catch(() => undefined);
    target = undefined;
    agent = undefined;
    try {
      target = await f.start(attempt++);
      agent = await AgentClient.start(target, target.agentPath);
      return true;
    } catch (e) {
      hooks.error({ profile: f.profile, message: (e as Error).message, log: e instanceof HarnessError ? e.log : undefined });
      await target?.close().catch(() => undefined);
      target = undefined;
      return false;
    }
  };

  // A machine is started lazily: after one dies, the next is booted only if a case is left to run.
  let needFresh = true;
  try {
    for (const suite of suites) {
      // A suite may run one case id on several devices (migration: mtty-2 and mtty-1): the device tells them apart.
      const key = (c: CaseDef<unknown>): string => `${c.id}\0${c.device.id}`;
      const done = new Set<string>();
      let replacements = 0;
      /** machines lost with no fault pinned on their case, since a case last ran to its end */
      let inARow = 0;
      /** the last machine was lost to a fault the console pinned on its case */
      let lostToFault = false;
      let pendingNote: string | undefined;
      const retried = new Set<string>();
      /** the cases of the last setup that worked: what is left when a later setup fails */
      let known: CaseDef<unknown>[] = [];
      const notRun = (why: string): void => {
        for (const c of known.filter((x) => !done.has(key(x)))) {
          done.add(key(c));
          hooks.result({ ...errorResult(c.id, suite.name, f.profile, `not run: ${why}`), device: c.device });
        }
      };
      for (;;) {
        if (needFresh) {
          if (!(await fresh())) return;
          needFresh = false;
        }
        let cases: CaseDef<unknown>[];
        let state: unknown;
        let setupLog: Exchange[];
        try {
          agent!.takeLog();
          const s = await suite.setup(target!, agent!);
          cases = s.cases;
          state = s.state;
          setupLog = agent!.takeLog();
        } catch (e) {
          const why = `suite setup failed: ${(e as Error).message}`;
          hooks.result(errorResult(`${suite.name}/setup`, suite.name, f.profile, why));
          notRun(why);
          needFresh = !target!.isAlive() || !agent!.alive;
          break;
        }
        known = cases;
        hooks.progress?.(`${f.profile}: ${suite.name}: ${cases.filter((c) => !done.has(key(c))).length} cases`);
        let ending: Ending = { kind: 'done' };
        for (const c of cases) {
          if (done.has(key(c))) continue;
          done.add(key(c));
          const { result: r, exchanges, timedOut, agentWasAlive } = await runCase(c, state, suite.name, f, target!, agent!, runDir);
          const note = pendingNote;
          pendingNote = undefined;
          if (note) r.log = [note, ...(r.log ?? [])];
          const dead = !target!.isAlive() || !agentWasAlive;
          // The SSH session dropped while the machine and its kernel are fine (dropbear 2022.83 can
          // abort a connection on an internal assertion): the harness failed, not the case. Run the
          // case once more on a fresh machine, and say so in its log.
          if (dead && target!.isAlive() && r.status === 'error' && !r.faults.length && !timedOut && !retried.has(key(c))) {
            retried.add(key(c));
            done.delete(key(c));
            pendingNote = `note: run again on a fresh machine: the first attempt lost its SSH connection while the machine was alive and its kernel reported nothing (${r.reason ?? 'no reason'})` +
              (r.artifacts.hangState ? `; its vCPUs then: ${r.artifacts.hangState}` : '');
            ending = { kind: 'died' };
            break;
          }
          if (dead) {
            r.reason = `${r.reason ? `${r.reason}; ` : ''}the machine died or stopped answering during this case (${target!.deathReason() ?? 'agent connection lost'}); a fresh one is used for what follows`;
          }
          if (repro && (r.status === 'fail' || r.status === 'error')) {
            try {
              r.artifacts.reproducer = relative(runDir, writeBundle(runDir, r, repro, setupLog, exchanges, target!.argv));
            } catch (e) {
              r.log = [...(r.log ?? []), `note: could not write the reproducer bundle: ${(e as Error).message}`];
            }
          }
          hooks.result(r);
          lostToFault = dead && r.faults.length > 0;
          if (dead) { ending = { kind: 'died' }; break; }
          if (timedOut) { ending = { kind: 'timed-out', id: c.id }; break; }
          inARow = 0;
        }
        if (ending.kind === 'done') {
          // A teardown that could not put things back (a device binding, an mdev) is reported, never hidden.
          await suite.teardown?.(state, target!, agent!).catch((e: Error) => {
            hooks.result(errorResult(`${suite.name}/teardown`, suite.name, f.profile, `suite teardown failed: ${e.message}`));
          });
          break;
        }
        const left = cases.filter((x) => !done.has(key(x)));
        if (ending.kind === 'timed-out') {
          const r = await recoverFromTimeout(target!, suite, state, agent!, hooks, f.profile);
          if ('agent' in r) {
            agent = r.agent;
            if (!left.length) break;
            pendingNote = `note: run after the agent was restarted and the suite set up again (${ending.id} ran out of time)`;
            continue;
          }
          pendingNote = `note: ${ending.id} ran out of time and ${r.why}`;
        }
        needFresh = true;
        if (!left.length) break;
        replacements++;
        if (!lostToFault && ++inARow > MAX_REPLACEMENTS_IN_A_ROW) {
          notRun(`the machine was lost ${inARow - 1} times in a row in this suite with no fault to say why, no case completing on the replacements`);
          break;
        }
        if (replacements > MAX_REPLACEMENTS) {
          notRun(`the machine was replaced ${replacements - 1} times in this suite`);
          break;
        }
        pendingNote = [pendingNote, `note: running on replacement machine #${replacements}`].filter(Boolean).join('; ');
      }
    }
  } finally {
    agent?.close();
    await target?.close().catch(() => undefined);
  }
}

/**
 * After a case ran out of time (its agent already closed): end the agent process, which closes
 * every fd the suite held, tear the suite down, and start a new agent for the suite's next setup.
 * When any of it fails, why: the machine is then replaced. A failed teardown is reported.
 */
async function recoverFromTimeout(
  target: Target, suite: Suite<unknown>, state: unknown, closed: AgentClient, hooks: RunnerHooks, profile: string,
): Promise<{ agent: AgentClient } | { why: string }> {
  const stuck = await stopAgent(target, target.agentPath ?? AGENT_PATH);
  if (stuck) return { why: stuck };
  try {
    await suite.teardown?.(state, target, closed);
  } catch (e) {
    hooks.result(errorResult(`${suite.name}/teardown`, suite.name, profile, `suite teardown after a timed-out case failed: ${(e as Error).message}`));
    return { why: 'the suite\'s teardown failed' };
  }
  try {
    return { agent: await AgentClient.start(target, target.agentPath) };
  } catch (e) {
    return { why: `the agent did not start again (${(e as Error).message})` };
  }
}

function errorResult(id: string, suite: string, profile: string, reason: string): CaseResult {
  return { id, suite, profile, device: NO_DEVICE, status: 'error', reason, durationMs: 0, faults: [], artifacts: {} };
}

const GUARDED = new Set(['exec', 'upload', 'openChannel', 'mark']);

/** The target as a case sees it: once `signal` is aborted, everything that reaches the machine refuses. */
function guardTarget<T extends Target>(t: T, signal: AbortSignal): T {
  return new Proxy(t, {
    get(obj, key) {
      const v = Reflect.get(obj, key, obj) as unknown;
      if (typeof v !== 'function') return v;
      if (!GUARDED.has(String(key))) return (v as (...a: unknown[]) => unknown).bind(obj);
      return (...args: unknown[]) => (signal.aborted
        ? Promise.reject(new HarnessError(`refused after the case ran out of time: ${String(key)}`))
        : (v as (...a: unknown[]) => unknown).apply(obj, args));
    },
  });
}

interface CaseRun {
  result: CaseResult;
  exchanges: Exchange[];
  /** the case ran out of time: its agent was closed at that moment */
  timedOut: boolean;
  /** the agent's connection was alive when the case ended (before the runner closed it) */
  agentWasAlive: boolean;
}

async function runCase(
  c: CaseDef<unknown>, state: unknown, suite: string, f: TargetFactory, target: Target & { consoleLog?: string }, agent: AgentClient, runDir: string,
): Promise<CaseRun> {
  const notes: string[] = [];
  const started = Date.now();
  let outcome: CaseOutcome;
  const fmark = target.faultMark();
  const ctl = new AbortController();
  const ms = c.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let agentWasAlive = true;
  let timedOut = false;
  try {
    await target.mark(c.id);
    agent.takeLog();
    const ctx = { id: c.id, target: guardTarget(target, ctl.signal), agent, note: (l: string) => { if (!ctl.signal.aborted) notes.push(l); }, signal: ctl.signal };
    outcome = await withTimeout(c.run(state, ctx), ms, () => {
      // Synchronously, before the body can send another request: from here on it reaches nothing.
      timedOut = true;
      agentWasAlive = agent.alive;
      ctl.abort(new HarnessError(`${c.id} did not finish within ${ms / 1000} s`));
      agent.close();
    });
  } catch (e) {
    outcome = timedOut
      ? { status: 'error', reason: `did not finish within ${ms / 1000} s; stopped (its agent was closed) before the next case` }
      : e instanceof AgentGone || !target.isAlive()
        ? { status: 'error', reason: (e as Error).message }
        : { status: 'error', reason: `case threw: ${(e as Error).message}` };
  }
  if (!timedOut) agentWasAlive = agent.alive;
  // A panic or Oops reaches the serial console a little after the request that caused it.
  if (!target.isAlive() || !agentWasAlive) await new Promise((r) => setTimeout(r, f.faultGraceMs ?? FAULT_GRACE_MS));
  const faults = target.faultsSince(fmark);
  outcome = judgeFaults(outcome, faults, c.expectedFaults);
  const exchanges = agent.takeLog();
  const log = [...exchanges.map(formatExchange), ...notes];
  const artifacts: Record<string, string> = {};
  if (target.consoleLog) artifacts.console = relative(runDir, target.consoleLog) || join('.', target.consoleLog);
  // A case that ran out of time, or whose agent stopped answering on a live machine with no fault to
  // say why (a request the kernel never completed): read the vCPUs while the machine still hangs,
  // before any recovery clears what caused it.
  if ((timedOut || (!agentWasAlive && faults.length === 0)) && target.isAlive() && target.hangState) {
    const state = await target.hangState();
    if (state) {
      const file = join(runDir, 'hang', f.profile, slug(c.device.id), `${slug(c.id)}.txt`);
      try {
        mkdirSync(join(file, '..'), { recursive: true });
        writeFileSync(file, state);
        artifacts.hangState = relative(runDir, file);
        log.push(`note: the machine's vCPUs when the case stopped answering (QEMU's monitor) are in ${artifacts.hangState}`);
      } catch (e) {
        log.push(`note: could not write the vCPUs' state: ${(e as Error).message}`);
      }
    }
  }
  const result: CaseResult = {
    id: c.id, suite, profile: f.profile, device: c.device, status: outcome.status, reason: outcome.reason,
    observed: outcome.observed, measurements: outcome.measurements, expected: outcome.expected, durationMs: Date.now() - started,
    faults, artifacts, log,
  };
  if (outcome.blockedBy !== undefined && result.status === 'blocked') result.blockedBy = outcome.blockedBy;
  return { result, exchanges, timedOut, agentWasAlive };
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { onTimeout(); reject(new Error('timed out')); }, ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
  });
}
