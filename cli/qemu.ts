import { parseArgs } from 'node:util';
import { buildQemu, listQemuBuilds, type QemuBuild } from '../images/qemu/build.js';
import { DEFAULT_QEMU } from '../images/qemu/source.js';
import { HarnessError } from '../base/errors.js';

const HELP = `vfio-conformance qemu build [options]
  Build the QEMU under test, the counterpart of 'kernel build': Debian's newest qemu source package
  (through a private apt state with deb-src entries for this machine's own mirror; the host's apt
  state is untouched), unpacked with Debian's patches, then our series (images/qemu/patches/series)
  applied in order, configured for x86_64 and aarch64 with only the devices the profiles use
  (images/qemu/devices), built out of tree with ccache, and cached by (source, patch series,
  configure flags, device lists). A repeat with nothing changed is a cache hit and runs nothing.
  meson comes from the unstable suite, unpacked into the cache (bookworm's is too old for QEMU).

Options:
  --qemu SPEC        debian:latest (default: the newest qemu source in the unstable suite whose files
                     the mirror serves; a listed version it does not serve is skipped, and said),
                     debian:X.Y (e.g. debian:10.2), or PATH to a QEMU tree (built as it is: its own
                     patches and default devices; nothing is written into it)
  --jobs N           ninja -j (default: cores + 1)
  --force            rebuild even when cached
  --json             print the result as JSON on stdout

vfio-conformance qemu list [--json]
  List cached QEMU builds, newest first ('--qemu built' elsewhere picks the newest).`;

function describe(b: QemuBuild): string {
  return [
    `qemu:     ${b.version}${b.cached ? ' (cached)' : ` (built in ${b.buildSeconds} s)`}`,
    `source:   ${b.sourceId} (${b.sourceDir})`,
    `series:   ${b.series.patches.length ? `${b.series.patches.join(', ')} (${b.series.hash})` : 'none (unpatched)'}`,
    ...Object.entries(b.binaries).map(([arch, path]) => `${arch.padEnd(9)} ${path}`),
    `devices:  ${b.trimmed ? 'trimmed to the profiles (images/qemu/devices)' : "the tree's defaults"}`,
    `log:      ${b.log}`,
    '',
  ].join('\n');
}

export async function qemuCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(`${HELP}\n`); return sub ? 0 : 2; }
  const { values } = parseArgs({
    args: rest,
    options: {
      qemu: { type: 'string' }, jobs: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (sub === 'list') {
    const builds = listQemuBuilds();
    if (values.json) process.stdout.write(`${JSON.stringify(builds, null, 2)}\n`);
    else if (!builds.length) process.stdout.write("no QEMU built yet: run 'vfio-conformance qemu build'\n");
    else for (const b of builds) process.stdout.write(`${b.version}\t${b.sourceId}\tseries ${b.series.hash}\t${b.builtAt}\t${b.buildDir}\n`);
    return 0;
  }
  if (sub !== 'build') throw new HarnessError(`qemu: unknown subcommand '${sub}' (build, list; see --help)`);
  const jobs = values.jobs === undefined ? undefined : Number(values.jobs);
  if (jobs !== undefined && !(Number.isInteger(jobs) && jobs > 0)) throw new HarnessError(`qemu build: --jobs takes a positive whole number, not '${values.jobs}'`);
  const b = await buildQemu({ qemu: values.qemu ?? DEFAULT_QEMU, jobs, force: values.force });
  process.stdout.write(values.json ? `${JSON.stringify(b, null, 2)}\n` : describe(b));
  return 0;
}
