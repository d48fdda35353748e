import { parseArgs } from 'node:util';
import { DEFAULT_PROFILES } from '../harness/qemu/profiles.js';
import { HarnessError } from '../base/errors.js';
import { writeRunReports } from '../reports/write.js';
import { finishRun } from './finish.js';
import { readExpectations, type Expectations } from '../reports/gate.js';
import { readResults } from '../base/results/file.js';
import { resultsPathOf } from './compare.js';
import { repoPath } from '../base/paths.js';
import type { RunResults } from '../base/results/schema.js';
import { SUITES, getSuite } from '../suites/registry.js';
import { runSuites, type RunListener, type RunOptions } from '../runner/run.js';
import { labDryRun } from '../runner/run-lab.js';
import { GUEST_FLAGS, guestOptions } from './guest-flags.js';
import { QEMU_CHOICE_HELP } from '../runner/qemu-choice.js';
import { SCALE_HELP, SCALE_OPTIONS, scopeOptions } from './plan.js';
import { parseJobs } from '../runner/pool.js';

/** --jobs N, or 'auto' (the default): decided by the runner once it knows KVM or TCG (runner/pool.ts). */
function jobsOption(v: string | undefined): { jobs?: number; why?: string } {
  return v !== undefined && v !== 'auto' ? { jobs: parseJobs(v), why: '--jobs' } : {};
}

const HELP = `vfio-conformance run [options]
  Build the kernel under test (cached), boot it behind each profile's emulated IOMMU and run the
  suites in it. Writes results.json, junit.xml (and the HTML report) into the run directory, as it
  goes: a run that dies half-way still leaves valid reports for what it did.

Options:
  --suite S          suite to run (repeatable; default: all). Suites: ${SUITES.map((s) => s.name).join(', ')}.
                     By default a profile that adds one emulated device to another runs only the
                     suites that use it (see 'profiles'); a suite named here runs on every profile
  --profile P        profile to run on (repeatable; default: ${DEFAULT_PROFILES.join(', ')})
  --arch ARCH        every profile of this architecture (x86_64 or arm64) instead of x86_64's
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --accel MODE       auto (default), kvm, tcg
  --module FILE.ko   replace the in-tree module of the same name in the guest (repeatable)
  --out DIR          run directory (default: runs/<date>-<kernel>)
  --boot-timeout S   seconds to wait for a guest's SSH (default 90)
  --qemu CHOICE      the QEMU the guests boot on: ${QEMU_CHOICE_HELP}.
                     A profile that needs our patched QEMU runs on it whatever this says.
                     With --target: PATH of the host's QEMU for the real-client suite (>= 8.0;
                     older gives expected-unsupported)
  --baseline RUN     a previous run directory: failures that fail the same way there are not regressions
  --expectations F   known failures with reasons (default: expectations/known.json, the kernel bugs
                     this project knows of); --no-expectations to count every failure

${SCALE_HELP}

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

const RUN_FLAGS = {
  ...GUEST_FLAGS,
  suite: { type: 'string', multiple: true }, profile: { type: 'string', multiple: true }, arch: { type: 'string' },
  out: { type: 'string' }, baseline: { type: 'string' }, expectations: { type: 'string' }, 'no-expectations': { type: 'boolean' },
  target: { type: 'string' }, device: { type: 'string', multiple: true }, identity: { type: 'string' },
  'known-hosts': { type: 'string' }, 'accept-new-host-key': { type: 'boolean' }, 'dry-run': { type: 'boolean' },
  ...SCALE_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const;

type RunFlagValues = ReturnType<typeof parseArgs<{ args: string[]; options: typeof RUN_FLAGS }>>['values'];

const LAB_ONLY = ['device', 'dry-run', 'identity', 'known-hosts', 'accept-new-host-key'] as const;

/** The lab host's flags without --target are a mistake, not something to ignore. */
export function checkLabFlags(v: Partial<Record<typeof LAB_ONLY[number] | 'target', unknown>>): void {
  if (v.target) return;
  for (const f of LAB_ONLY) {
    if (v[f] !== undefined) throw new HarnessError(`--${f} only applies with --target ssh://USER@HOST`);
  }
}

/** The run's flags checked and turned into the runner's one options type. */
export function runOptions(v: Partial<RunFlagValues>): RunOptions {
  checkLabFlags(v);
  return {
    // With --target, --qemu names the lab host's QEMU (a path there), not one to boot guests on here.
    ...guestOptions({ ...v, qemu: v.target ? undefined : v.qemu }, 90),
    suites: (v.suite ?? SUITES.map((s) => s.name)).map(getSuite),
    suitesNamed: !!v.suite?.length,
    out: v.out,
    profiles: v.profile,
    arch: v.arch,
    scope: scopeOptions(v),
    ...(v.prepared ? { prepared: v.prepared } : {}),
    ...((j) => (j.jobs ? { jobs: j.jobs, jobsWhy: j.why } : {}))(jobsOption(v.jobs)),
    lab: v.target ? {
      address: v.target, devices: v.device ?? [], identity: v.identity, knownHosts: v['known-hosts'],
      acceptNewHostKey: v['accept-new-host-key'] ?? false, clientQemu: v.qemu,
    } : undefined,
  };
}

type Gating = { baseline?: RunResults; expectations?: Expectations };

/** What a run says, on stderr as it goes; reports of what was recorded when it is stopped. */
function printer(gating: Gating): RunListener {
  const say = (s: string) => process.stderr.write(s);
  return {
    progress: (m) => say(`run: ${m}\n`),
    result: (profile, r) => {
      if (r.status !== 'pass') say(`  ${r.status.toUpperCase().padEnd(8)} ${profile} ${r.id}${r.reason ? `: ${r.reason.slice(0, 300)}` : ''}\n`);
    },
    error: (e) => say(`  HARNESS ERROR ${e.profile ? `${e.profile}: ` : ''}${e.message}${e.log ? ` (see ${e.log})` : ''}\n`),
    stopped: (outDir, res) => writeRunReports(outDir, res, gating),
    plan: (text) => say(`${text}\n`),
  };
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: RUN_FLAGS });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  const o = runOptions(values);
  if (o.lab && values['dry-run']) {
    const plan = await labDryRun(o.lab, printer({}));
    process.stdout.write(`${plan}\ndry run: nothing was changed\n`);
    return 0;
  }
  // Read gating inputs first: a typo in --baseline should fail in a second, not after the run.
  const gating: Gating = {
    baseline: values.baseline ? readResults(resultsPathOf(values.baseline)) : undefined,
    expectations: values['no-expectations'] ? undefined : readExpectations(values.expectations ?? repoPath('expectations', 'known.json')),
  };
  const { writer, outDir } = await runSuites(o, printer(gating));
  return finishRun(writer, outDir, gating);
}
