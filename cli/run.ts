import { parseArgs } from 'node:util';
import { hostname, cpus, arch as hostArch } from 'node:os';
import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { DEFAULT_PROFILES, PROFILES, getProfile } from '../harness/qemu/profiles.js';
import { getArch } from '../harness/arch.js';
import { prepare, decideAccel } from '../runner/prepare.js';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { rootfsMachine } from '../images/rootfs/build.js';
import { runProfile } from '../runner/run-cases.js';
import { HarnessError } from '../base/errors.js';
import { onShutdown } from '../base/shutdown.js';
import { DEFAULT_KERNEL } from '../harness/kernel/source.js';
import type { AccelMode } from '../harness/qemu/accel.js';
import { qemuInfo } from '../harness/qemu/binary.js';
import { ResultsWriter } from '../base/results/file.js';
import { writeRunReports } from '../reports/write.js';
import { finishRun } from './finish.js';
import { readExpectations } from '../reports/gate.js';
import { readResults } from '../base/results/file.js';
import { resultsPathOf } from './compare.js';
import { repoPath } from '../base/paths.js';
import type { CaseResult, RunInfo } from '../base/results/schema.js';
import { SUITES, getSuite } from '../suites/registry.js';
import { checkLabFlags, runOnLabHost } from './run-lab.js';

const HELP = `vfio-conformance run [options]
  Build the kernel under test (cached), boot it behind each profile's emulated IOMMU and run the
  suites in it. Writes results.json, junit.xml (and the HTML report) into the run directory, as it
  goes: a run that dies half-way still leaves valid reports for what it did.

Options:
  --suite S          suite to run (repeatable; default: all). Suites: ${SUITES.map((s) => s.name).join(', ')}
  --profile P        profile to run on (repeatable; default: ${DEFAULT_PROFILES.join(', ')})
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --accel MODE       auto (default), kvm, tcg
  --module FILE.ko   replace the in-tree module of the same name in the guest (repeatable)
  --out DIR          run directory (default: runs/<date>-<kernel>)
  --boot-timeout S   seconds to wait for a guest's SSH (default 90)
  --qemu PATH        with --target: the host's QEMU for the real-client suite (>= 8.0; older gives
                     expected-unsupported)
  --baseline RUN     a previous run directory: failures that fail the same way there are not regressions
  --expectations F   known failures with reasons (default: expectations/known.json, the kernel bugs
                     this project knows of); --no-expectations to count every failure

Lab host (instead of booting a guest):
  --target ssh://USER@HOST[:PORT]   run the suites on this machine over SSH (root)
  --device BDF[,driver=D][,vfs=N]   a device to test (repeatable): bind it to D (default vfio-pci,
                     or a variant driver such as mlx5_vfio_pci); with vfs=N create N VFs on this PF
                     and bind those. The original bindings are restored at the end, on error and on
                     Ctrl-C. No other device is touched.
  --identity FILE    SSH private key (default ~/.ssh/id_ed25519 or id_rsa; ssh-agent via SSH_AUTH_SOCK)
  --known-hosts FILE host keys to trust (default ~/.ssh/known_hosts); a changed key is always refused
  --accept-new-host-key  add the key of a host not yet in --known-hosts (explicit opt-in)
  --dry-run          print what would be created, bound and restored, change nothing
  (--kernel names the kernel whose uapi headers the static agent is built against)

Exit code (CI gates on it): 0 nothing regressed (passes, warnings, skips, expected-unsupported, and
failures known from the baseline or the expectations), 1 a regression: a case failed or errored
that is not known, 2 a harness error (a profile could not run, or the run is incomplete).`;


/** x86_64's five profiles by default; --arch arm64 picks the arm64 ones (smmuv3, arm64-none). */
function defaultProfiles(arch?: string): string[] {
  if (!arch) return DEFAULT_PROFILES;
  const name = getArch(arch).name;
  return PROFILES.filter((p) => p.arch === name).map((p) => p.name);
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      suite: { type: 'string', multiple: true }, profile: { type: 'string', multiple: true },
      kernel: { type: 'string', default: DEFAULT_KERNEL }, accel: { type: 'string', default: 'auto' },
      module: { type: 'string', multiple: true }, out: { type: 'string' }, 'boot-timeout': { type: 'string', default: '90' },
      baseline: { type: 'string' }, expectations: { type: 'string' }, 'no-expectations': { type: 'boolean' },
      target: { type: 'string' }, device: { type: 'string', multiple: true }, identity: { type: 'string' },
      'known-hosts': { type: 'string' }, 'accept-new-host-key': { type: 'boolean' }, 'dry-run': { type: 'boolean' },
      qemu: { type: 'string' }, arch: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  checkLabFlags(values);
  if (!['auto', 'kvm', 'tcg'].includes(values.accel!)) throw new HarnessError(`--accel must be auto, kvm or tcg, not '${values.accel}'`);
  // Read gating inputs first: a typo in --baseline should fail in a second, not after the run.
  const baseline = values.baseline ? readResults(resultsPathOf(values.baseline)) : undefined;
  const expectations = values['no-expectations'] ? undefined : readExpectations(values.expectations ?? repoPath('expectations', 'known.json'));
  const suites = (values.suite ?? SUITES.map((s) => s.name)).map(getSuite);
  if (values.target) {
    return runOnLabHost({
      target: values.target, devices: values.device ?? [], identity: values.identity, knownHosts: values['known-hosts'],
      acceptNewHostKey: values['accept-new-host-key'] ?? false, dryRun: values['dry-run'] ?? false,
      kernel: values.kernel!, out: values.out, suites, baseline, expectations, qemu: values.qemu,
    });
  }
  const profiles = (values.profile ?? defaultProfiles(values.arch)).map(getProfile);
  const arches = new Set(profiles.map((p) => p.arch));
  if (arches.size > 1) throw new HarnessError(`profiles of different architectures in one run: ${[...arches].join(', ')} (one kernel is built per run: run each architecture separately)`);
  if (values.arch && !arches.has(getArch(values.arch).name)) throw new HarnessError(`--arch ${values.arch} does not match the profiles' architecture (${[...arches].join(', ')})`);
  const arch = getArch(profiles[0]!.arch);

  const started = new Date();
  const p = await prepare({ kernel: values.kernel, arch, modules: values.module });
  // A suite that needs more than the standard guest (the real-client suite: a Debian rootfs with a
  // QEMU >= 8.0 over virtio-9p, and memory for nested QEMUs) gets it for the whole run: the share and
  // the memory are harmless to the other suites.
  const wants = suites.map((s) => s.machine).filter((m) => m !== undefined);
  const wantsRootfs = wants.some((m) => m.rootfs === 'debian-qemu');
  // The nested client (x86 QEMU, HLT firmware, port I/O) exists for x86_64 guests only; the suite says so.
  const rootfs = wantsRootfs && arch.nestedClient ? await rootfsMachine() : undefined;
  const noRootfs: Record<string, string> = wantsRootfs && !arch.nestedClient ? { clientMissing: `the real-client suite's nested QEMU (the Debian rootfs image) is built for x86_64 guests only; on ${arch.name} it runs on a lab host with --target and --qemu` } : {};
  const memMiB = Math.max(0, ...wants.map((m) => m.memMiB ?? 0)) || undefined;
  const smp = Math.max(0, ...wants.map((m) => m.smp ?? 0)) || undefined;
  const accel = await decideAccel(values.accel as AccelMode, p, profiles[0]!);
  const outDir = resolve(values.out ?? join('runs', `${started.toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${p.kernel.release}`));
  mkdirSync(outDir, { recursive: true });
  const info: RunInfo = {
    tool: { name: 'vfio-conformance', version: '0.1.0' },
    startedAt: started.toISOString(),
    complete: false,
    host: { hostname: hostname(), arch: hostArch(), cpus: cpus().length },
    qemu: qemuInfo(accel.qemu),
    accel: accel.accel,
    accelReason: accel.reason,
    kernel: { release: p.kernel.release, sourceId: p.kernel.sourceId, configHash: p.kernel.configHash, arch: arch.name },
    image: { hash: p.image.hash, agent: p.agent.sha256, modules: p.image.replaced },
    profiles: profiles.map((x) => x.name),
    suites: suites.map((s) => s.name),
    target: { kind: 'qemu' },
    errors: [],
  };
  const writer = new ResultsWriter(outDir, info);
  const writeJunit = () => writeRunReports(outDir, writer.snapshot(), { baseline, expectations });
  const unhook = onShutdown(writeJunit);
  process.stderr.write(`run: ${p.kernel.release} on ${profiles.map((x) => x.name).join(', ')} (${accel.accel}); writing ${outDir}\n`);

  for (const profile of profiles) {
    const t0 = Date.now();
    await runProfile({
      profile: profile.name,
      start: async (attempt) => QemuGuest.boot({
        arch, profile, accel: accel.accel, kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
        logDir: join(outDir, profile.name, `boot-${attempt}`), bootTimeoutMs: Number(values['boot-timeout']) * 1000,
        memMiB, smp, qemuArgs: rootfs?.qemuArgs,
        facts: { kernel: p.kernel.release, ...noRootfs, ...(rootfs ? { rootfs: rootfs.rootfs.key, nestedQemu: rootfs.rootfs.qemuVersion } : {}) },
      }),
    }, suites, outDir, {
      result: (r: CaseResult) => {
        // A driver developer's module is part of what was tested: every result names it.
        if (p.image.replaced.length && r.device.class !== 'none') r.device.modules = p.image.replaced;
        writer.add(r);
        if (r.status !== 'pass') process.stderr.write(`  ${r.status.toUpperCase().padEnd(8)} ${profile.name} ${r.id}${r.reason ? `: ${r.reason.slice(0, 300)}` : ''}\n`);
      },
      error: (e) => {
        writer.updateRun({ errors: [...writer.run.errors, e] });
        process.stderr.write(`  HARNESS ERROR ${profile.name}: ${e.message}${e.log ? ` (see ${e.log})` : ''}\n`);
      },
      progress: (m) => process.stderr.write(`run: ${m}\n`),
    }, { kernelSpec: values.kernel!.startsWith('debian:') ? values.kernel! : resolve(values.kernel!), kernelRelease: p.kernel.release, kernelConfig: p.kernel.config, imageHash: p.image.hash, accel: accel.accel });
    const n = writer.results.filter((r) => r.profile === profile.name).length;
    process.stderr.write(`run: ${profile.name}: ${n} results in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  unhook();
  return finishRun(writer, outDir, { baseline, expectations });
}
