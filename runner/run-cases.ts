import { join, relative } from 'node:path';
import { AgentClient, AgentGone, formatExchange, type Exchange } from '../harness/agent/client.js';
import { writeBundle, type ReproEnv } from './repro.js';
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
}

export interface RunnerHooks {
  result(r: CaseResult): void;
  error(e: { profile?: string; message: string; log?: string }): void;
  progress?(msg: string): void;
}

const MAX_REPLACEMENTS = 3;
const NO_DEVICE: DeviceInfo = { driver: 'none', class: 'none', id: '-' };

/**
 * Runs suites on one profile. It knows nothing of what a case expects: it marks each step in the
 * kernel log, runs the case with a time limit, attaches the console faults that appeared, and when
 * the machine dies it records that, starts a fresh one and goes on with the next case.
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
      const done = new Set<string>();
      let replacements = 0;
      let pendingNote: string | undefined;
      const retried = new Set<string>();
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
          hooks.result(errorResult(`${suite.name}/setup`, suite.name, f.profile, `suite setup failed: ${(e as Error).message}`));
          needFresh = !target!.isAlive() || !agent!.alive;
          break;
        }
        hooks.progress?.(`${f.profile}: ${suite.name}: ${cases.filter((c) => !done.has(c.id)).length} cases`);
        let died = false;
        for (const c of cases) {
          if (done.has(c.id)) continue;
          done.add(c.id);
          const { result: r, exchanges } = await runCase(c, state, suite.name, f.profile, target!, agent!, runDir);
          const note = pendingNote;
          pendingNote = undefined;
          if (note) r.log = [note, ...(r.log ?? [])];
          const dead = !target!.isAlive() || !agent!.alive;
          // The SSH session dropped while the machine and its kernel are fine (dropbear 2022.83 can
          // abort a connection on an internal assertion): the harness failed, not the case. Run the
          // case once more on a fresh machine, and say so in its log.
          if (dead && target!.isAlive() && r.status === 'error' && !r.faults.length && !retried.has(c.id)) {
            retried.add(c.id);
            done.delete(c.id);
            pendingNote = `note: run again on a fresh machine: the first attempt lost its SSH connection while the machine was alive and its kernel reported nothing (${r.reason ?? 'no reason'})`;
            died = true;
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
          if (dead) { died = true; break; }
        }
        if (!died) {
          // A teardown that could not put things back (a device binding, an mdev) is reported, never hidden.
          await suite.teardown?.(state, target!, agent!).catch((e: Error) => {
            hooks.result(errorResult(`${suite.name}/teardown`, suite.name, f.profile, `suite teardown failed: ${e.message}`));
          });
          break;
        }
        needFresh = true;
        const left = cases.filter((x) => !done.has(x.id));
        if (!left.length) break;
        if (++replacements > MAX_REPLACEMENTS) {
          for (const c of left) {
            hooks.result({ ...errorResult(c.id, suite.name, f.profile, `not run: the machine died ${replacements - 1} times in this suite`), device: c.device });
          }
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

function errorResult(id: string, suite: string, profile: string, reason: string): CaseResult {
  return { id, suite, profile, device: NO_DEVICE, status: 'error', reason, durationMs: 0, faults: [], artifacts: {} };
}

async function runCase(c: CaseDef<unknown>, state: unknown, suite: string, profile: string, target: Target & { consoleLog?: string }, agent: AgentClient, runDir: string): Promise<{ result: CaseResult; exchanges: Exchange[] }> {
  const notes: string[] = [];
  const started = Date.now();
  let outcome: CaseOutcome;
  const fmark = target.faultMark();
  try {
    await target.mark(c.id);
    agent.takeLog();
    outcome = await withTimeout(c.run(state, { id: c.id, target, agent, note: (l) => notes.push(l) }), c.timeoutMs ?? 60_000, c.id);
  } catch (e) {
    outcome = e instanceof AgentGone || !target.isAlive()
      ? { status: 'error', reason: (e as Error).message }
      : { status: 'error', reason: `case threw: ${(e as Error).message}` };
  }
  // A panic or Oops reaches the serial console a little after the request that caused it.
  if (!target.isAlive() || !agent.alive) await new Promise((r) => setTimeout(r, 1500));
  const faults = target.faultsSince(fmark);
  outcome = judgeFaults(outcome, faults, c.expectedFaults);
  const exchanges = agent.takeLog();
  const log = [...exchanges.map(formatExchange), ...notes];
  const artifacts: Record<string, string> = {};
  if (target.consoleLog) artifacts.console = relative(runDir, target.consoleLog) || join('.', target.consoleLog);
  return {
    result: {
      id: c.id, suite, profile, device: c.device, status: outcome.status, reason: outcome.reason,
      observed: outcome.observed, expected: outcome.expected, durationMs: Date.now() - started,
      faults, artifacts, log,
    },
    exchanges,
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new HarnessError(`${what} did not finish within ${ms / 1000} s`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
  });
}
