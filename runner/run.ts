import { runOnGuests } from './run-guests.js';
import { runOnLabHost } from './run-lab.js';
import type { RunEvents, RunOutcome } from './run-record.js';
import type { RunOptions } from './run-options.js';

export type { RunOptions } from './run-options.js';
export type { RunEvents, RunOutcome } from './run-record.js';

/** Events of a run, and the device plan a lab host run prints before it binds anything. */
export type RunListener = RunEvents & { plan(text: string): void };

/** One run: on booted guests, or on the lab host of `o.lab`. The caller finishes it (reports, gate). */
export async function runSuites(o: RunOptions, ev: RunListener): Promise<RunOutcome> {
  return o.lab ? runOnLabHost({ ...o, lab: o.lab }, ev) : runOnGuests(o, ev);
}
