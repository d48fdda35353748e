/**
 * A run on an existing machine (a lab host with real VFs) instead of booted guests. The device
 * manager binds the listed devices and restores them afterwards, on error and on Ctrl-C too.
 */
import { resolve } from 'node:path';
import { buildKernel } from '../harness/kernel/build.js';
import { buildAgent } from '../images/agent/build.js';
import { getArch } from '../harness/arch.js';
import { cachePath } from '../base/paths.js';
import { LabHost, opensshArgv, parseSshUrl, type LabHostOptions } from '../harness/target/lab-host.js';
import { DeviceManager, type BoundDevice } from '../harness/devices/manager.js';
import { formatPlan, parseDeviceArg } from '../harness/devices/plan.js';
import { runProfile } from './run-cases.js';
import { defaultRunDir, newRunInfo } from './run-info.js';
import { RunRecord, type RunEvents, type RunOutcome } from './run-record.js';
import type { LabTargetOptions, RunOptions } from './run-options.js';

function hostOptions(lab: LabTargetOptions): LabHostOptions {
  return {
    ...parseSshUrl(lab.address), identity: lab.identity, knownHosts: lab.knownHosts, acceptNewHostKey: lab.acceptNewHostKey,
  };
}

/** Read-only: connect (the host key checked as always), read sysfs, and say what a run would bind. */
export async function labDryRun(lab: LabTargetOptions, ev: Pick<RunEvents, 'progress'>): Promise<string> {
  const requests = lab.devices.map((d) => parseDeviceArg(d));
  const h = await LabHost.connect({ ...hostOptions(lab), followKernelLog: false });
  try {
    if (h.hostKeyNote) ev.progress(h.hostKeyNote);
    const m = new DeviceManager(h, requests, { dryRun: true });
    const plan = await m.makePlan();
    return formatPlan(plan, `${h.name} (${h.facts.hostname}, ${h.facts.kernel})`, m.snapshot!);
  } finally {
    await h.close();
  }
}

export async function runOnLabHost(o: RunOptions & { lab: LabTargetOptions }, ev: RunEvents & { plan(text: string): void }): Promise<RunOutcome> {
  const lab = o.lab;
  const requests = lab.devices.map((d) => parseDeviceArg(d));
  const hostOpts = hostOptions(lab);
  const first = await LabHost.connect(hostOpts);
  if (first.hostKeyNote) ev.progress(first.hostKeyNote);
  // the key is in known_hosts now: reconnects check it like any other
  hostOpts.acceptNewHostKey = false;
  // The agent is static: built for the host's architecture against the given kernel's uapi headers
  // (default: the harness's default kernel, cached), and checked on the host by its hello before
  // anything is bound. Reconnects upload it again (a host may have rebooted and lost /tmp).
  let k: Awaited<ReturnType<typeof buildKernel>>;
  let agent: Awaited<ReturnType<typeof buildAgent>>;
  try {
    const arch = getArch(first.facts.arch === 'aarch64' ? 'arm64' : (first.facts.arch ?? ''));
    k = await buildKernel({ kernel: o.kernel, arch });
    agent = await buildAgent({ headersDir: k.headersDir, outDir: cachePath('agents'), cc: arch.cc });
    await first.installAgent(agent.path);
  } catch (e) {
    await first.close();
    throw e;
  }
  hostOpts.agentBinary = agent.path;
  const started = new Date();
  const outDir = resolve(o.out ?? defaultRunDir(started, `${hostOpts.host}-${first.facts.kernel}`));

  // Device bindings go through their own connection, so a drop of the suites' connection (or the
  // runner closing it) does not stop the restore; it reconnects when needed.
  const devOpts: LabHostOptions = { ...hostOpts, agentBinary: undefined, acceptNewHostKey: false, followKernelLog: false };
  let devShell: LabHost | undefined;
  const shell = {
    exec: async (cmd: string, x?: Parameters<LabHost['exec']>[1]) => {
      if (!devShell?.isAlive()) devShell = await LabHost.connect(devOpts, devShell !== undefined);
      return devShell.exec(cmd, x);
    },
  };
  const closeAll = async () => {
    await devShell?.close().catch(() => undefined);
    await first.close().catch(() => undefined);
  };
  const mgr = new DeviceManager(shell, requests, { log: (l) => ev.progress(l) });
  mgr.setLastWords(opensshArgv(hostOpts));
  let plan: Awaited<ReturnType<DeviceManager['makePlan']>>;
  try {
    plan = await mgr.makePlan();
  } catch (e) {
    await closeAll();
    throw e;
  }
  ev.plan(formatPlan(plan, first.name, mgr.snapshot!));

  const profile = first.name;
  // The real-client suite runs the host's QEMU: the one named, or its PATH's (the suite's default).
  const clientQemu = lab.clientQemu ? { kind: 'binary' as const, path: lab.clientQemu } : undefined;
  const labInfo = (devices: BoundDevice[]) => ({ facts: first.facts, devices, ...(lab.clientQemu ? { clientQemu: lab.clientQemu } : {}) });
  const rec = new RunRecord(outDir, newRunInfo(started, {
    kernel: { release: first.facts.kernel ?? '', sourceId: 'lab-host', configHash: '-', arch: first.facts.arch ?? '' },
    image: { agent: agent.sha256, agentHeaders: k.release },
    profiles: [profile],
    suites: o.suites.map((s) => s.name),
    target: { kind: 'ssh', address: first.name },
    labHost: labInfo([]),
  }), ev);
  let firstUsed = false;
  try {
    const bound = await mgr.apply();
    rec.writer.updateRun({ labHost: labInfo(bound) });
    ev.progress(`${first.name} (${first.facts.kernel}); ${bound.length} device(s) ready; writing ${outDir}`);
    const told = (h: LabHost): LabHost => { h.clientQemu = clientQemu; return h; };
    await runProfile({
      profile,
      start: async () => {
        // the first connection is already up; after a drop the runner asks again: reconnect
        if (!firstUsed && first.isAlive()) { firstUsed = true; first.setDevices(bound); return told(first); }
        return told(await LabHost.connect({ ...hostOpts, devices: bound }, true));
      },
    }, o.suites, outDir, rec.hooks(profile));
  } finally {
    const r = await mgr.restore().catch((e: Error) => ({ ok: false, problems: [e.message] }));
    if (!r.ok) rec.error({ profile, message: `device bindings not fully restored on ${first.name}: ${r.problems.join('; ')}` });
    await closeAll();
  }
  return rec.close();
}
