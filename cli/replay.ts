import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { getProfile } from '../harness/qemu/profiles.js';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { AgentClient, formatExchange, type AgentReply } from '../harness/agent/client.js';
import { readBundle, replayQemuChoice } from '../runner/repro.js';
import { parseQemuChoice } from '../runner/qemu-choice.js';
import { HandleMap } from '../runner/replay-handles.js';
import { HarnessError } from '../base/errors.js';
import { setUpGuests } from '../runner/guest-setup.js';
import { getSuite } from '../suites/registry.js';
import { cachePath } from '../base/paths.js';
import { parseAccel } from './guest-flags.js';

const HELP = `vfio-conformance replay BUNDLE [--accel MODE] [--qemu CHOICE] [--logs DIR]
  Play back a failed case from its reproducer bundle (runs/<run>/repro/<profile>/<device>/<case>/):
  boot the same kernel and profile, run the suite's setup, send the recorded agent requests in
  order and print each reply beside the recorded one. Console faults are printed at the end.
  What the recording's replies created (fds, device and iommufd object ids, memory, IOVAs) is
  renamed to what the replay's replies created, before a request that uses it is sent.
  The guest boots on the QEMU the case ran on (recorded in the bundle): the same binary while it
  exists, else the newest build of ours or the host's, said; --qemu system|built|PATH overrides.
  Exit 0 when every reply matched the recording (the failure reproduced as recorded), 1 when a
  reply differed, 2 on a harness error.`;

/** Replies are compared on what the kernel said, not on timing or the numbers handles got. */
function sameReply(a: AgentReply | undefined, b: AgentReply | undefined): boolean {
  if (!a || !b) return a === b;
  return a.ok === b.ok && a.err === b.err;
}

export async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      accel: { type: 'string', default: 'auto' }, qemu: { type: 'string' }, logs: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !positionals[0]) { process.stdout.write(`${HELP}\n`); return values.help ? 0 : 2; }
  const b = readBundle(positionals[0]);
  const profile = getProfile(b.profile);
  const q = values.qemu !== undefined ? { choice: parseQemuChoice(values.qemu) } : replayQemuChoice(b.env.qemu, existsSync);
  if (q.note) process.stderr.write(`replay: note: ${q.note}\n`);
  const { arch, prepared: p, accel, qemus } = await setUpGuests({ kernel: b.env.kernelSpec, accel: parseAccel(values.accel), bootTimeoutMs: 60_000, qemu: q.choice }, [profile]);
  if (p.kernel.release !== b.env.kernelRelease) process.stderr.write(`replay: note: kernel is ${p.kernel.release}, the bundle was recorded on ${b.env.kernelRelease}\n`);
  if (p.image.hash !== b.env.imageHash) process.stderr.write('replay: note: the image differs from the recorded one (agent or modules changed)\n');
  const logDir = values.logs ?? join(cachePath('replays'), `${new Date().toISOString().replace(/[:.]/g, '-')}-${profile.name}`);
  process.stderr.write(`replay: ${b.id} on ${profile.name} (${accel.accel}), logs in ${logDir}\n`);
  const chosen = qemus[0]!;
  if ('skip' in chosen) throw new HarnessError(`replay: profile ${profile.name} cannot run: ${chosen.skip}`);
  const recordedQemu = b.env.qemu?.version;
  if (recordedQemu && chosen.qemu.caps.version !== recordedQemu) {
    process.stderr.write(`replay: note: QEMU is ${chosen.qemu.caps.version}, the bundle was recorded on ${recordedQemu}\n`);
  }
  const g = await QemuGuest.boot({ arch, profile, qemu: chosen.qemu, accel: accel.accel, kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey, logDir });
  let differ = 0;
  try {
    const agent = await AgentClient.start(g);
    agent.takeLog();
    await getSuite(b.suite).setup(g, agent);
    const handles = new HandleMap();
    const diverged = handles.learnSetup(b.setup, agent.takeLog());
    if (diverged) process.stderr.write(`replay: note: ${diverged}\n`);
    await g.mark(`replay ${b.id}`);
    for (const step of b.steps) {
      const { id: _id, ...recorded } = step.request as { id: number; op: string };
      void _id;
      const { request, changes } = handles.translate(recorded);
      const { op, ...args } = request as { op: string };
      let reply: AgentReply | undefined;
      try {
        reply = await agent.send(op, args);
      } catch (e) {
        process.stdout.write(`  ${op}: no reply: ${(e as Error).message}\n`);
        differ++;
        break;
      }
      handles.learn(request, step.reply, reply);
      const same = sameReply(reply, step.reply);
      if (!same) differ++;
      const line = formatExchange({ request, reply, ms: 0 }).replace(/ \[0 ms\]$/, '');
      const renamed = changes.length ? ` (recorded as ${changes.join(', ')})` : '';
      process.stdout.write(`${same ? '  same  ' : '  DIFFERS'} ${line}${renamed}${same ? '' : `\n          recorded: ${JSON.stringify(step.reply)}`}\n`);
    }
    await g.waitExit(1000);
    for (const f of g.allFaults()) {
      process.stdout.write(`console fault (${f.kind}) ${f.title}${f.step ? ` [step ${f.step}]` : ''}\n`);
      for (const l of f.lines) process.stdout.write(`  | ${l}\n`);
    }
    agent.close();
  } finally {
    await g.close();
  }
  process.stdout.write(`${b.steps.length} steps replayed, ${differ} differed from the recording (recorded outcome: ${b.outcome.status}: ${b.outcome.reason ?? ''})\n`);
  return differ ? 1 : 0;
}
