import { join, resolve } from 'node:path';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { qemuInfo } from '../harness/qemu/binary.js';
import { runProfile } from './run-cases.js';
import { chooseProfiles, setUpGuests } from './guest-setup.js';
import { provideMachine } from './suite-machine.js';
import { defaultRunDir, newRunInfo } from './run-info.js';
import { RunRecord, type RunEvents, type RunOutcome } from './run-record.js';
import type { RunOptions } from './run-options.js';

/**
 * Build the kernel under test (cached), boot it behind each profile's emulated IOMMU, one profile
 * after the other, and run the suites in it.
 */
export async function runOnGuests(o: RunOptions, ev: RunEvents): Promise<RunOutcome> {
  const profiles = chooseProfiles(o.profiles, o.arch);
  const started = new Date();
  const g = await setUpGuests(o, profiles);
  const { arch, prepared: p, accel } = g;
  const machine = await provideMachine(o.suites, arch);
  const outDir = resolve(o.out ?? defaultRunDir(started, p.kernel.release));
  const rec = new RunRecord(outDir, newRunInfo(started, {
    qemu: qemuInfo(accel.qemu),
    accel: accel.accel,
    accelReason: accel.reason,
    kernel: { release: p.kernel.release, sourceId: p.kernel.sourceId, configHash: p.kernel.configHash, arch: arch.name },
    image: { hash: p.image.hash, agent: p.agent.sha256, modules: p.image.replaced },
    profiles: profiles.map((x) => x.name),
    suites: o.suites.map((s) => s.name),
    target: { kind: 'qemu' },
  }), ev);
  ev.progress(`${p.kernel.release} on ${profiles.map((x) => x.name).join(', ')} (${accel.accel}); writing ${outDir}`);
  const facts: Record<string, string> = { kernel: p.kernel.release };
  if (machine.clientQemu?.kind === 'rootfs') Object.assign(facts, { rootfs: machine.clientQemu.key, nestedQemu: machine.clientQemu.qemuVersion });
  // A driver developer's module is part of what was tested: every result names it.
  const withModules = (r: { device: { class: string; modules?: unknown } }) => {
    if (p.image.replaced.length && r.device.class !== 'none') r.device.modules = p.image.replaced;
  };
  const repro = { kernelSpec: g.kernelSpec, kernelRelease: p.kernel.release, kernelConfig: p.kernel.config, imageHash: p.image.hash, accel: accel.accel };

  for (const profile of profiles) {
    const t0 = Date.now();
    await runProfile({
      profile: profile.name,
      start: async (attempt) => QemuGuest.boot({
        arch, profile, accel: accel.accel, kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
        logDir: join(outDir, profile.name, `boot-${attempt}`), bootTimeoutMs: o.bootTimeoutMs,
        memMiB: machine.memMiB, smp: machine.smp, qemuArgs: machine.qemuArgs, facts, clientQemu: machine.clientQemu,
      }),
    }, o.suites, outDir, rec.hooks(profile.name, withModules), repro);
    const n = rec.writer.results.filter((r) => r.profile === profile.name).length;
    ev.progress(`${profile.name}: ${n} results in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  return rec.close();
}
