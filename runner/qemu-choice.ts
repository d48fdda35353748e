import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Arch } from '../harness/arch.js';
import { openQemu, type QemuBinary } from '../harness/qemu/binary.js';
import { resolveProfile, type Profile } from '../harness/qemu/profiles.js';
import { buildQemu, listQemuBuilds, QEMU_TARGETS } from '../images/qemu/build.js';
import { HarnessError } from '../base/errors.js';
import type { CaseResult } from '../base/results/schema.js';

/** `--qemu system|built|PATH`: the host's QEMU, ours (built on demand, cached), or a binary or build dir. */
export type QemuChoice = { kind: 'system' } | { kind: 'built' } | { kind: 'path'; path: string };

export const QEMU_CHOICE_HELP = [
  "system (default: the host's qemu-system-*), built (ours: Debian's",
  '                     newest qemu source with images/qemu/patches, built on first use and',
  "                     cached; see 'qemu build'), or PATH to a qemu-system-* binary or a",
  '                     directory holding them',
].join('\n');

export function parseQemuChoice(s: string | undefined): QemuChoice {
  if (s === undefined || s === 'system') return { kind: 'system' };
  if (s === 'built') return { kind: 'built' };
  if (/^[a-z]+:/.test(s)) throw new HarnessError(`--qemu takes system, built or a path, not '${s}' (a QEMU source such as debian:10.2 goes to 'qemu build --qemu')`);
  // Checked here, with the other flags, so a typo fails in a second instead of after a kernel build.
  if (!existsSync(resolve(s))) throw new HarnessError(`--qemu ${s}: no such file or directory (a qemu-system-* binary or a directory holding them)`);
  return { kind: 'path', path: resolve(s) };
}

/** A profile's QEMU, or why it cannot run on any QEMU this run may use. */
export type ProfileQemu = { profile: Profile; qemu: QemuBinary } | { profile: Profile; skip: string };

async function open(choice: QemuChoice, arch: Arch, profiles: Profile[], build: boolean): Promise<QemuBinary> {
  if (choice.kind === 'system') return openQemu({ origin: 'system', binary: arch.qemuBinary, arch, profiles });
  if (choice.kind === 'built') {
    const b = build ? await buildQemu() : listQemuBuilds()[0];
    if (!b) throw new HarnessError("our QEMU is not built yet: run 'vfio-conformance qemu build' (or a run with --qemu built builds it)");
    return openQemu({ origin: 'built', binary: b.binaries[arch.name], arch, profiles, build: { sourceId: b.sourceId, series: { hash: b.series.hash, patches: b.series.patches } } });
  }
  let binary = choice.path;
  if (existsSync(binary) && statSync(binary).isDirectory()) binary = join(binary, `qemu-system-${QEMU_TARGETS[arch.name]}`);
  if (!existsSync(binary)) throw new HarnessError(`--qemu ${choice.path}: no ${binary}`);
  return openQemu({ origin: 'path', binary, arch, profiles });
}

/**
 * The QEMU each profile runs on: the run's choice, except that a profile whose hardware only our
 * patched QEMU emulates (`qemu: 'built'`) gets the built one when the run left the choice at system.
 * A profile the chosen binary cannot express (an option it does not know) is skipped with the
 * reason, never a crash half-way through the run.
 */
export async function qemuForProfiles(choice: QemuChoice, arch: Arch, profiles: Profile[], o: { build?: boolean } = {}): Promise<ProfileQemu[]> {
  const wanted = (p: Profile): QemuChoice => (choice.kind === 'system' && p.qemu === 'built' ? { kind: 'built' } : choice);
  const opened = new Map<string, QemuBinary>();
  const out: ProfileQemu[] = [];
  for (const p of profiles) {
    const c = wanted(p);
    const key = c.kind === 'path' ? c.path : c.kind;
    let qemu = opened.get(key);
    if (!qemu) {
      try {
        qemu = await open(c, arch, profiles.filter((x) => wanted(x).kind === c.kind), o.build ?? true);
      } catch (e) {
        // Listing profiles must not build QEMU; a run lets the error stop it (nothing could run).
        if (o.build !== false || !(e instanceof HarnessError)) throw e;
        out.push({ profile: p, skip: e.message });
        continue;
      }
      opened.set(key, qemu);
    }
    const r = resolveProfile(p, qemu.caps);
    out.push(r.ok ? { profile: p, qemu } : { profile: p, skip: `${r.why} (${qemu.path}${p.qemu === 'built' ? '; this profile needs our patched QEMU: --qemu built' : ''})` });
  }
  return out;
}

/**
 * The results of a profile no QEMU of this run can express: one skip per suite, at the id a suite
 * whose setup cannot start reports on, with the reason, so the report shows the cell and why it is
 * empty instead of leaving it out.
 */
export function unexpressibleResults(profile: string, suites: { name: string }[], why: string): CaseResult[] {
  return suites.map((s) => ({
    id: `${s.name}/setup`, suite: s.name, profile, device: { driver: 'none', class: 'none', id: '-' },
    status: 'skip', reason: `profile ${profile} cannot run on this QEMU: ${why}`, durationMs: 0, faults: [], artifacts: {},
  }));
}
