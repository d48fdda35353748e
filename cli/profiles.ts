import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { PROFILES, type Profile } from '../harness/qemu/profiles.js';
import { getArch, hostArchName, isNativeArch } from '../harness/arch.js';
import { readCachedAccel } from '../harness/qemu/accel.js';

const HELP = `vfio-conformance profiles [--json]
  List the machine profiles, and for each whether this host can run it: the QEMU binary exists
  and accepts the profile's machine and IOMMU device, and which accelerator would be used
  (KVM only after a probe boot has shown it works; until then "tcg (kvm unprobed)").`;

interface Row { name: string; arch: string; description: string; runnable: boolean; accel: string; problem?: string }

async function check(p: Profile): Promise<Row> {
  const arch = getArch(p.arch);
  const base = { name: p.name, arch: p.arch, description: p.description };
  // QEMU checks devices against the machine only when it builds it; `-S` with no kernel stops before running anything.
  const args = ['-nodefaults', '-display', 'none', '-machine', p.machine, '-accel', 'tcg', '-S', ...[...p.iommuDevices, ...p.devices].flatMap((d) => ['-device', d]), '-qmp', 'stdio'];
  const r = await execa(arch.qemuBinary, args, { reject: false, timeout: 15_000, input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n' }).catch((e: Error) => ({ exitCode: 127, stderr: e.message }));
  if (r.exitCode === 127 || /ENOENT/.test(String(r.stderr))) return { ...base, runnable: false, accel: '-', problem: `${arch.qemuBinary} not installed` };
  if (r.exitCode !== 0) return { ...base, runnable: false, accel: '-', problem: String(r.stderr).trim().split('\n').pop() };
  const cached = readCachedAccel(arch);
  const accel = !isNativeArch(arch) ? `tcg (${arch.name} on ${hostArchName()})` : cached ?? (existsSync('/dev/kvm') ? 'tcg (kvm unprobed)' : 'tcg');
  return { ...base, runnable: true, accel };
}

export async function profilesCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) { process.stdout.write(`${HELP}\n`); return 0; }
  const rows = await Promise.all(PROFILES.map(check));
  if (values.json) { process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`); return 0; }
  const w = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) {
    const state = r.runnable ? `ok, ${r.accel}` : `NOT RUNNABLE: ${r.problem}`;
    process.stdout.write(`${r.name.padEnd(w)}  ${r.arch.padEnd(7)} ${state.padEnd(26)} ${r.description}\n`);
  }
  return 0;
}
