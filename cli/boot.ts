import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { getProfile } from '../harness/qemu/profiles.js';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { shellQuote } from '../harness/qemu/cmdline.js';
import { HarnessError } from '../base/errors.js';
import { cachePath } from '../base/paths.js';
import { setUpGuests } from '../runner/guest-setup.js';
import { GUEST_FLAGS, guestOptions, parseSeconds } from './guest-flags.js';
import { QEMU_CHOICE_HELP } from '../runner/qemu-choice.js';
import { describeQemu } from '../harness/qemu/binary.js';

const HELP = `vfio-conformance boot --profile P [options] -- CMD...
  Build or reuse the kernel and image, boot a guest behind profile P's IOMMU, run CMD in it over
  SSH, print its output, and exit with its exit code. The guest is always torn down.
  Console faults (Oops, WARN, KASAN, panic ...) seen during the run are printed on stderr.
  CMD and its arguments reach the guest as they are, each one quoted for its shell, as a local
  exec would pass them: for shell syntax, say so (-- sh -c 'ls /sys/class/iommu; echo done').

Options:
  --profile P        machine profile (see 'vfio-conformance profiles'); default none
  --kernel SPEC      debian:latest (default), debian:X.Y, or PATH to a kernel tree
  --accel MODE       auto (default: KVM only if a probe boot works), kvm, tcg
  --module FILE.ko   put this module in the guest in place of the in-tree one (repeatable)
  --logs DIR         where console.log, qemu.log and the QEMU command line go
  --timeout S        seconds CMD may run (default 600)
  --boot-timeout S   seconds to wait for the guest's SSH (default 60)
  --qemu CHOICE      ${QEMU_CHOICE_HELP}`;

export async function bootCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...GUEST_FLAGS,
      profile: { type: 'string', default: 'none' }, logs: { type: 'string' }, timeout: { type: 'string', default: '600' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  if (!positionals.length) throw new HarnessError('boot: no command given (usage: vfio-conformance boot --profile P -- CMD...)');
  const o = guestOptions(values, 60);
  const timeoutMs = parseSeconds('timeout', values.timeout!);
  const profile = getProfile(values.profile!);
  const { arch, prepared: p, accel, qemus } = await setUpGuests(o, [profile]);
  const logDir = values.logs ?? join(cachePath('boots'), `${new Date().toISOString().replace(/[:.]/g, '-')}-${profile.name}`);
  const chosen = qemus[0]!;
  if ('skip' in chosen) throw new HarnessError(`boot: profile ${profile.name} cannot run: ${chosen.skip}`);
  process.stderr.write(`boot: ${profile.name} on ${describeQemu(chosen.qemu)}, ${accel.accel} (${accel.reason}), logs in ${logDir}\n`);
  const guest = await QemuGuest.boot({
    arch, profile, qemu: chosen.qemu, accel: accel.accel, kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
    logDir, bootTimeoutMs: o.bootTimeoutMs,
  });
  process.stderr.write(`boot: guest up in ${((guest.timing.sshMs ?? 0) / 1000).toFixed(2)} s\n`);
  try {
    // The guest's shell gets each argument quoted: `-- sh -c 'a; b'` runs what a local exec would.
    const r = await guest.exec(shellQuote(positionals), {
      timeoutMs,
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
