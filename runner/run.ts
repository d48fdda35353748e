import { runOnGuests } from './run-guests.js';
import { runOnLabHost } from './run-lab.js';
import type { RunEvents, RunOutcome } from './run-record.js';
import type { RunOptions } from './run-options.js';
import { HarnessError } from '../base/errors.js';
import { checkSelection, listSuites, selectSuites } from './select.js';

export type { RunOptions } from './run-options.js';
export type { RunEvents, RunOutcome } from './run-record.js';

/** Events of a run, and the device plan a lab host run prints before it binds anything. */
export type RunListener = RunEvents & { plan(text: string): void };

/** One run: on booted guests, or on the lab host of `o.lab`. The caller finishes it (reports, gate). */
export async function runSuites(o: RunOptions, ev: RunListener): Promise<RunOutcome> {
  if (!o.lab) return runOnGuests(o, ev);
  if (o.scope?.shard) throw new HarnessError('--shard splits the guest profiles of a plan; a lab host run (--target) is one machine, not sharded');
  if (o.prepared) throw new HarnessError('--prepared boots guests from a bundle; a lab host run (--target) boots none');
  const sel = o.scope?.selection;
  checkSelection(listSuites(o.suites), sel);
  const out = await runOnLabHost({ ...o, lab: o.lab, suites: selectSuites(o.suites, sel) }, ev);
  if (sel) out.writer.updateRun({ selection: sel });
  return out;
}
