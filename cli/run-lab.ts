/**
 * `run --target ssh://USER@HOST[:PORT]`: the suites on an existing machine (a lab host with real
 * VFs) instead of a booted guest. The device manager binds the listed devices and restores them
 * afterwards; `--dry-run` prints that plan and stops before anything is changed.
 */
import { hostname, cpus, arch as hostArch } from 'node:os';
import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { buildKernel } from '../harness/kernel/build.js';
import { buildAgent } from '../images/agent/build.js';
import { getArch } from '../harness/arch.js';
import { cachePath } from '../base/paths.js';
import { LabHost, opensshArgv, parseSshUrl, type LabHostOptions } from '../harness/target/lab-host.js';
import { DeviceManager, type BoundDevice } from '../harness/devices/manager.js';
import { formatPlan, parseDeviceArg } from '../harness/devices/plan.js';
import { runProfile } from '../runner/run-cases.js';
import { HarnessError } from '../base/errors.js';
import { onShutdown } from '../base/shutdown.js';
import { ResultsWriter } from '../base/results/file.js';
import { writeRunReports } from '../reports/write.js';
import { finishRun } from './finish.js';
import { type Expectations } from '../reports/gate.js';
import type { CaseResult, RunInfo, RunResults } from '../base/results/schema.js';
import type { Suite } from '../suites/types.js';

export interface LabRunOptions {
  target: string;
  devices: string[];
  identity?: string;
  knownHosts?: string;
  acceptNewHostKey: boolean;
  dryRun: boolean;
  /** the kernel whose uapi headers the agent is built against (the host's own tree, or the default) */
  kernel: string;
  out?: string;
  suites: Suite<unknown>[];
  baseline?: RunResults;
  expectations?: Expectations;
  /** the host's QEMU for the real-client suite (default: qemu-system-x86_64 on its PATH) */
  qemu?: string;
}


export async function runOnLabHost(o: LabRunOptions): Promise<number> {
  const addr = parseSshUrl(o.target);
  const requests = o.devices.map((d) => parseDeviceArg(d));
  const hostOpts: LabHostOptions = {
    ...addr, identity: o.identity, knownHosts: o.knownHosts, acceptNewHostKey: o.acceptNewHostKey,
  };

  if (o.dryRun) {
    // Read-only: connect (host key checked as always), read sysfs, print the plan. No agent upload.
    const h = await LabHost.connect({ ...hostOpts, followKernelLog: false });
    try {
      if (h.hostKeyNote) process.stderr.write(`run: ${h.hostKeyNote}\n`);
      const m = new DeviceManager(h, requests, { dryRun: true });
      const plan = await m.makePlan();
      process.stdout.write(`${formatPlan(plan, `${h.name} (${h.facts.hostname}, ${h.facts.kernel})`, m.snapshot!)}\ndry run: nothing was changed\n`);
    } finally {
      await h.close();
    }
    return 0;
  }

  const first = await LabHost.connect(hostOpts);
  if (first.hostKeyNote) process.stderr.write(`run: ${first.hostKeyNote}\n`);
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
  const outDir = resolve(o.out ?? join('runs', `${started.toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${addr.host}-${first.facts.kernel}`));
  mkdirSync(outDir, { recursive: true });

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
  const mgr = new DeviceManager(shell, requests, { log: (l) => process.stderr.write(`run: ${l}\n`) });
  mgr.setLastWords(opensshArgv(hostOpts));
  let bound: BoundDevice[] = [];
  let plan: Awaited<ReturnType<DeviceManager['makePlan']>>;
  try {
    plan = await mgr.makePlan();
  } catch (e) {
    await closeAll();
    throw e;
  }
  process.stderr.write(`${formatPlan(plan, first.name, mgr.snapshot!)}\n`);

  const profile = first.name;
  const info: RunInfo = {
    tool: { name: 'vfio-conformance', version: '0.1.0' },
    startedAt: started.toISOString(),
    complete: false,
    host: { hostname: hostname(), arch: hostArch(), cpus: cpus().length },
    kernel: { release: first.facts.kernel ?? '', sourceId: 'lab-host', configHash: '-', arch: first.facts.arch ?? '' },
    image: { agent: agent.sha256, agentHeaders: k.release },
    profiles: [profile],
    suites: o.suites.map((s) => s.name),
    target: { kind: 'ssh', address: first.name },
    labHost: { facts: first.facts, devices: [] as BoundDevice[] },
    errors: [],
  };
  const writer = new ResultsWriter(outDir, info);
  const writeReports = () => writeRunReports(outDir, writer.snapshot(), { baseline: o.baseline, expectations: o.expectations });
  const unhook = onShutdown(writeReports);
  let firstUsed = false;
  try {
    bound = await mgr.apply();
    writer.updateRun({ labHost: { facts: first.facts, devices: bound } });
    process.stderr.write(`run: ${first.name} (${first.facts.kernel}); ${bound.length} device(s) ready; writing ${outDir}\n`);
    // Suites read the host's QEMU from the target's facts (the real-client suite runs it there).
    const withQemu = (h: LabHost): LabHost => { if (o.qemu) h.facts.qemu = o.qemu; return h; };
    await runProfile({
      profile,
      start: async () => {
        // the first connection is already up; after a drop the runner asks again: reconnect
        if (!firstUsed && first.isAlive()) { firstUsed = true; first.setDevices(bound); return withQemu(first); }
        return withQemu(await LabHost.connect({ ...hostOpts, devices: bound }, true));
      },
    }, o.suites, outDir, {
      result: (r: CaseResult) => {
        writer.add(r);
        if (r.status !== 'pass') process.stderr.write(`  ${r.status.toUpperCase().padEnd(8)} ${r.id}${r.reason ? `: ${r.reason.slice(0, 300)}` : ''}\n`);
      },
      error: (e) => {
        writer.updateRun({ errors: [...writer.run.errors, e] });
        process.stderr.write(`  HARNESS ERROR ${first.name}: ${e.message}\n`);
      },
      progress: (m) => process.stderr.write(`run: ${m}\n`),
    });
  } finally {
    const r = await mgr.restore().catch((e: Error) => ({ ok: false, problems: [e.message] }));
    if (!r.ok) {
      const msg = `device bindings not fully restored on ${first.name}: ${r.problems.join('; ')}`;
      writer.updateRun({ errors: [...writer.run.errors, { profile, message: msg }] });
      process.stderr.write(`  HARNESS ERROR ${msg}\n`);
    }
    await closeAll();
  }
  unhook();
  return finishRun(writer, outDir, { baseline: o.baseline, expectations: o.expectations });
}

export function checkLabFlags(v: { target?: string; device?: string[]; 'dry-run'?: boolean; identity?: string; 'known-hosts'?: string; 'accept-new-host-key'?: boolean; qemu?: string }): void {
  if (v.target) return;
  for (const f of ['device', 'dry-run', 'identity', 'known-hosts', 'accept-new-host-key', 'qemu'] as const) {
    if (v[f] !== undefined) throw new HarnessError(`--${f} only applies with --target ssh://USER@HOST`);
  }
}
