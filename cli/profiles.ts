import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { PROFILES, resolveProfile, type Profile } from '../harness/qemu/profiles.js';
import { ARCHES, hostArchName, isNativeArch } from '../harness/arch.js';
import { readCachedAccel } from '../harness/qemu/accel.js';
import { describeQemu, type QemuBinary } from '../harness/qemu/binary.js';
import { parseQemuChoice, qemuForProfiles, QEMU_CHOICE_HELP } from '../runner/qemu-choice.js';

const HELP = `vfio-conformance profiles [--qemu system|built|PATH] [--json]
  List the machine profiles and, for each, which QEMU it runs on and whether this host can run it:
  the binary exists, knows the profile's machine, devices and properties (asked of the binary, so
  QEMU's renamed options are followed), and starts with them; and which accelerator would be used
  (KVM only after a probe boot has shown it works; until then "tcg (kvm unprobed)"). A profile that
  needs our patched QEMU says so; listing never builds anything.

Options:
  --qemu CHOICE      ${QEMU_CHOICE_HELP}
  --json             machine-readable output`;

interface Row { name: string; arch: string; description: string; needs: string; suites?: string[]; qemu?: string; runnable: boolean; accel: string; problem?: string }

const suitesOf = (p: Profile) => (p.suites ? { suites: p.suites } : {});

async function check(p: Profile, qemu: QemuBinary): Promise<Row> {
  const arch = ARCHES[p.arch];
  const base = { name: p.name, arch: p.arch, description: p.description, needs: p.qemu ?? 'any', ...suitesOf(p), qemu: describeQemu(qemu) };
  const r = resolveProfile(p, qemu.caps);
  if (!r.ok) return { ...base, runnable: false, accel: '-', problem: r.why };
  // QEMU checks devices against the machine only when it builds it; `-S` with no kernel stops before running anything.
  const args = ['-nodefaults', '-display', 'none', ...qemu.firmwareDirs.flatMap((d) => ['-L', d]), '-machine', r.machine, '-accel', 'tcg', '-S',
    ...[...r.iommuDevices, ...r.devices].flatMap((d) => ['-device', d]), '-qmp', 'stdio'];
  const run = await execa(qemu.path, args, { reject: false, timeout: 15_000, input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n' });
  if (run.exitCode !== 0) return { ...base, runnable: false, accel: '-', problem: String(run.stderr).trim().split('\n').pop() };
  const cached = readCachedAccel(arch);
  const accel = !isNativeArch(arch) ? `tcg (${arch.name} on ${hostArchName()})` : cached ?? (existsSync('/dev/kvm') ? 'tcg (kvm unprobed)' : 'tcg');
  return { ...base, runnable: true, accel };
}

export async function profilesCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { qemu: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  const choice = parseQemuChoice(values.qemu);
  const rows: Row[] = [];
  for (const arch of Object.values(ARCHES)) {
    const profiles = PROFILES.filter((p) => p.arch === arch.name);
    const chosen = await qemuForProfiles(choice, arch, profiles, { build: false }).catch((e: Error) => profiles.map((profile) => ({ profile, skip: e.message })));
    for (const c of chosen) {
      const p = c.profile;
      if ('skip' in c) rows.push({ name: p.name, arch: p.arch, description: p.description, needs: p.qemu ?? 'any', ...suitesOf(p), runnable: false, accel: '-', problem: c.skip });
      else rows.push(await check(p, c.qemu));
    }
  }
  if (values.json) { process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`); return 0; }
  const w = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) {
    const state = r.runnable ? `ok, ${r.accel}, ${r.qemu}` : `NOT RUNNABLE: ${r.problem}`;
    const runs = r.suites ? `\n${' '.repeat(w + 2)}runs ${r.suites.join(', ')} unless --suite names others (the rest would repeat its base profile)` : '';
    process.stdout.write(`${r.name.padEnd(w)}  ${r.arch.padEnd(7)} ${r.needs === 'built' ? 'needs our QEMU  ' : ''}${state}\n${' '.repeat(w + 2)}${r.description}${runs}\n`);
  }
  return 0;
}
