import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { getProfile } from '../harness/qemu/profiles.js';
import { getArch } from '../harness/arch.js';
import { prepare, decideAccel } from '../runner/prepare.js';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { HarnessError } from '../base/errors.js';
import { cachePath } from '../base/paths.js';
import { DEFAULT_KERNEL } from '../harness/kernel/source.js';
import type { AccelMode } from '../harness/qemu/accel.js';

const HELP = `vfio-conformance boot --profile P [options] -- CMD...
  Build or reuse the kernel and image, boot a guest behind profile P's IOMMU, run CMD in it over
  SSH, print its output, and exit with its exit code. The guest is always torn down.
  Console faults (Oops, WARN, KASAN, panic ...) seen during the run are printed on stderr.

Options:
  --profile P        machine profile (see 'vfio-conformance profiles'); default none
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --accel MODE       auto (default: KVM only if a probe boot works), kvm, tcg
  --module FILE.ko   put this module in the guest in place of the in-tree one (repeatable)
  --logs DIR         where console.log, qemu.log and the QEMU command line go
  --timeout S        seconds CMD may run (default 600)
  --boot-timeout S   seconds to wait for the guest's SSH (default 60)`;

export async function bootCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      profile: { type: 'string', default: 'none' }, kernel: { type: 'string', default: DEFAULT_KERNEL },
      accel: { type: 'string', default: 'auto' }, module: { type: 'string', multiple: true },
      logs: { type: 'string' }, timeout: { type: 'string', default: '600' }, 'boot-timeout': { type: 'string', default: '60' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (!positionals.length) throw new HarnessError('boot: no command given (usage: vfio-conformance boot --profile P -- CMD...)');
  if (!['auto', 'kvm', 'tcg'].includes(values.accel!)) throw new HarnessError(`--accel must be auto, kvm or tcg, not '${values.accel}'`);
  const profile = getProfile(values.profile!);
  const arch = getArch(profile.arch);
  const p = await prepare({ kernel: values.kernel, arch, modules: values.module });
  const accel = await decideAccel(values.accel as AccelMode, p, profile);
  const logDir = values.logs ?? join(cachePath('boots'), `${new Date().toISOString().replace(/[:.]/g, '-')}-${profile.name}`);
  process.stderr.write(`boot: ${profile.name}, ${accel.accel} (${accel.reason}), logs in ${logDir}\n`);
  const guest = await QemuGuest.boot({
    arch, profile, accel: accel.accel, kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
    logDir, bootTimeoutMs: Number(values['boot-timeout']) * 1000,
  });
  process.stderr.write(`boot: guest up in ${((guest.timing.sshMs ?? 0) / 1000).toFixed(2)} s\n`);
  try {
    const r = await guest.exec(positionals.join(' '), {
      timeoutMs: Number(values.timeout) * 1000,
      onStdout: (s) => process.stdout.write(s),
      onStderr: (s) => process.stderr.write(s),
    });
    // Give the console a moment: a panic triggered by CMD reaches the serial log after the channel closes.
    await guest.waitExit(r.code === null ? 3000 : 200);
    for (const f of guest.allFaults()) {
      process.stderr.write(`boot: console fault (${f.kind}) ${f.title}${f.step ? ` [step ${f.step}]` : ''}\n`);
      for (const l of f.lines) process.stderr.write(`  | ${l}\n`);
    }
    if (!guest.isAlive()) {
      process.stderr.write(`boot: guest died: ${guest.deathReason()} (see ${guest.consoleLog})\n`);
      return 2;
    }
    if (r.timedOut) throw new HarnessError(`boot: command timed out after ${values.timeout} s`, { log: guest.consoleLog });
    return r.code ?? 2;
  } finally {
    await guest.close();
  }
}
