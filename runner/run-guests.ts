import { join, resolve } from 'node:path';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { qemuInfo } from '../harness/qemu/binary.js';
import { cpus, freemem } from 'node:os';
import { unexpressibleResults } from './qemu-choice.js';
import { runProfile } from './run-cases.js';
import { chooseProfiles, setUpGuests, type GuestSetup } from './guest-setup.js';
import { provideMachine } from './suite-machine.js';
import { defaultRunDir, newRunInfo } from './run-info.js';
import { RunRecord, type RunEvents, type RunOutcome } from './run-record.js';
import type { RunOptions } from './run-options.js';
import { getArch } from '../harness/arch.js';
import { runScope } from './scope.js';
import { bundleRootfs } from './bundle.js';
import { defaultJobs, eachLimit } from './pool.js';
import { bindGuestDevices } from './guest-devices.js';

/**
 * Build the kernel under test (cached) or take it from a bundle, boot it behind each profile's
 * emulated IOMMU (up to `jobs` profiles at once), and run the suites in it: all of them, a
 * --case subset, or the cells of one shard.
 */
export async function runOnGuests(o: RunOptions, ev: RunEvents): Promise<RunOutcome> {
  const all = chooseProfiles(o.profiles, o.arch);
  const scope = runScope({ arch: getArch(all[0]!.arch), profiles: all, suites: o.suites, suitesNamed: o.suitesNamed }, o.scope);
  // A shard with no cells still records what it would have run on, so merge can check it.
  const profiles = scope.cells.length ? scope.cells.map((c) => c.profile) : all;
  const suites = [...new Set(scope.cells.flatMap((c) => c.suites))];
  const started = new Date();
  const g = await setUpGuests(o, profiles);
  const { arch, prepared: p, accel } = g;
  const machine = await provideMachine(suites, arch, g.bundle ? bundleRootfs(g.bundle) : undefined);
  const outDir = resolve(o.out ?? defaultRunDir(started, p.kernel.release));
  const rec = new RunRecord(outDir, newRunInfo(started, {
    qemu: qemuInfo(accel.qemu),
    ...profileQemus(g.qemus, accel.qemu.path),
    ...profileEmulation(g.qemus),
    accel: accel.accel,
    accelReason: accel.reason,
    kernel: { release: p.kernel.release, sourceId: p.kernel.sourceId, configHash: p.kernel.configHash, arch: arch.name },
    image: { hash: p.image.hash, agent: p.agent.sha256, modules: p.image.replaced },
    profiles: scope.cells.map((c) => c.profile.name),
    suites: suites.map((s) => s.name),
    target: { kind: 'qemu' },
    ...(scope.selection ? { selection: scope.selection } : {}),
    ...(scope.shard ? { shard: scope.shard } : {}),
    ...(g.bundle ? { prepared: g.bundle.dir } : {}),
  }), ev);
  if (scope.shard) ev.progress(`shard ${scope.shard.index}/${scope.shard.total} of plan ${scope.shard.planHash}: ${scope.shard.cells.join(' ') || 'no cells'}`);
  const auto = o.jobs ? undefined : defaultJobs({ cpus: cpus().length, availableMiB: Math.floor(freemem() / 2 ** 20), guestMiB: machine.memMiB ?? 2048, accel: accel.accel });
  const jobs = Math.min(o.jobs ?? auto!.jobs, scope.cells.length || 1);
  const why = o.jobs ? o.jobsWhy : auto!.why;
  ev.progress(`${p.kernel.release} on ${profiles.map((x) => x.name).join(', ')} (${accel.accel}); ` +
    `${jobs === 1 ? 'one guest at a time' : `up to ${jobs} guests at once`}${why ? ` (${why})` : ''}; writing ${outDir}`);
  const facts: Record<string, string> = { kernel: p.kernel.release };
  if (machine.clientQemu?.kind === 'rootfs') Object.assign(facts, { rootfs: machine.clientQemu.key, nestedQemu: machine.clientQemu.qemuVersion });
  // A driver developer's module is part of what was tested: every result names it.
  const withModules = (r: { device: { class: string; modules?: unknown } }) => {
    if (p.image.replaced.length && r.device.class !== 'none') r.device.modules = p.image.replaced;
  };
  const repro = { kernelSpec: g.kernelSpec, kernelRelease: p.kernel.release, kernelConfig: p.kernel.config, imageHash: p.image.hash, accel: accel.accel };

  await eachLimit(scope.cells, jobs, async ({ profile, suites: cellSuites }) => {
    const t0 = Date.now();
    const chosen = g.qemus.find((q) => q.profile.name === profile.name)!;
    if ('skip' in chosen) {
      const hooks = rec.hooks(profile.name, withModules);
      for (const r of unexpressibleResults(profile.name, cellSuites, chosen.skip)) hooks.result(r);
      ev.progress(`${profile.name}: skipped: ${chosen.skip}`);
      return;
    }
    const qemu = chosen.qemu;
    await runProfile({
      profile: profile.name,
      start: async (attempt) => {
        const guest = await QemuGuest.boot({
          arch, profile, qemu, accel: accel.accel, kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
          logDir: join(outDir, profile.name, `boot-${attempt}`), bootTimeoutMs: o.bootTimeoutMs,
          memMiB: machine.memMiB, smp: machine.smp, qemuArgs: machine.qemuArgs, facts, clientQemu: machine.clientQemu,
        });
        if (profile.guestDevices) {
          try {
            await bindGuestDevices(guest, profile.guestDevices, (l) => ev.progress(`${profile.name}: ${l}`));
          } catch (e) {
            await guest.close();
            throw e;
          }
        }
        // The report plots boot time per profile from these.
        if (guest.timing.sshMs !== undefined) rec.writer.updateRun({ boots: [...(rec.writer.run.boots ?? []), { profile: profile.name, ms: guest.timing.sshMs }] });
        return guest;
      },
    }, cellSuites, outDir, rec.hooks(profile.name, withModules), { ...repro, qemu: qemuInfo(qemu) });
    const n = rec.writer.results.filter((r) => r.profile === profile.name).length;
    ev.progress(`${profile.name}: ${n} results in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  return rec.close();
}

/** Profiles whose QEMU is not the run's (a profile that needs our patched QEMU), for the run info. */
function profileQemus(qemus: GuestSetup['qemus'], runQemu: string): { profileQemu?: Record<string, ReturnType<typeof qemuInfo>> } {
  const other = qemus.filter((q) => 'qemu' in q && q.qemu.path !== runQemu) as { profile: { name: string }; qemu: Parameters<typeof qemuInfo>[0] }[];
  return other.length ? { profileQemu: Object.fromEntries(other.map((q) => [q.profile.name, qemuInfo(q.qemu)])) } : {};
}

/** The patches behind each profile's emulated hardware, for profiles that ran on our QEMU. */
function profileEmulation(qemus: GuestSetup['qemus']): { profileEmulation?: Record<string, string[]> } {
  const used = qemus.filter((q) => 'qemu' in q && q.qemu.origin === 'built' && q.profile.emulatedBy?.length);
  return used.length ? { profileEmulation: Object.fromEntries(used.map((q) => [q.profile.name, q.profile.emulatedBy!])) } : {};
}
