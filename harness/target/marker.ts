import type { ExecOptions, ExecResult } from '../ssh/client.js';
import { stepMarker } from '../watch/console.js';
import { HarnessError } from '../../base/errors.js';

/**
 * Write a step marker into the machine's kernel log through a shell, for any SSH target.
 * Under load dropbear now and then closes a channel without sending the exit status (code null,
 * no output); a marker written twice is harmless, so that is asked again. A real failure has a code.
 */
export async function writeStepMarker(
  exec: (cmd: string, o?: ExecOptions) => Promise<ExecResult>,
  step: string,
  alive: () => boolean,
): Promise<void> {
  const cmd = `echo '${stepMarker(step).replace(/'/g, `'\\''`)}' > /dev/kmsg`;
  for (let i = 0; ; i++) {
    const r = await exec(cmd, { timeoutMs: 10_000 });
    if (r.code === 0) return;
    if (r.code !== null || r.timedOut || i >= 2 || !alive()) {
      throw new HarnessError(`could not write the step marker for ${step}: ${r.stderr.trim() || (r.code === null ? 'no exit status' : `exit ${r.code}`)}`);
    }
  }
}
