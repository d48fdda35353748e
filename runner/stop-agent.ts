import type { Target } from '../harness/target/target.js';

/** How long an agent process gets to exit after SIGKILL before the machine is given up on. */
export const AGENT_EXIT_S = 5;

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * A shell script that ends every process running the agent binary at `path` and waits for it to
 * go, printing `gone` or `stuck: PIDS`. The runner runs one agent at a time, and the one it closed
 * is the only one at that path (a lab host's copy lives in a private directory, no spaces). The
 * binary is matched through /proc/PID/exe, resolved, so a symlinked path still matches; a zombie
 * has no exe and counts as gone: its fds are already released.
 */
export function stopAgentScript(path: string, waitS = AGENT_EXIT_S): string {
  return [
    `a=$(readlink -f ${quote(path)})`,
    // one ls, not a readlink per process: a guest under TCG forks slowly
    'pids() { ls -l /proc/[0-9]*/exe 2>/dev/null | awk -v a="$a" \'$NF == a { split($(NF-2), p, "/"); print p[3] }\'; }',
    'p=$(pids)',
    '[ -n "$p" ] && kill -9 $p 2>/dev/null',
    'i=0',
    'while [ -n "$(pids)" ]; do',
    // fractional sleep: Debian's busybox and coreutils both take it
    `  i=$((i+1)); [ $i -gt ${waitS * 5} ] && { echo stuck: $(pids); exit 0; }`,
    '  sleep 0.2',
    'done',
    'echo gone',
  ].join('\n');
}

/**
 * Stop the agent at `path` on the target. Undefined when it is gone (every fd it held is closed),
 * otherwise why not: a process stuck in an ioctl the kernel never finishes cannot die (SIGKILL
 * waits for the ioctl), keeps its devices, and only a fresh machine helps.
 */
export async function stopAgent(target: Target, path: string): Promise<string | undefined> {
  try {
    const r = await target.exec(stopAgentScript(path), { timeoutMs: (AGENT_EXIT_S + 10) * 1000 });
    const out = r.stdout.trim();
    if (r.code === 0 && out === 'gone') return undefined;
    if (out.startsWith('stuck')) return `the agent (pid ${out.slice(6).trim() || '?'}) did not exit within ${AGENT_EXIT_S} s of SIGKILL`;
    return `stopping the agent failed: ${r.stderr.trim() || out || `exit ${r.code}`}`;
  } catch (e) {
    return `stopping the agent failed: ${(e as Error).message}`;
  }
}
