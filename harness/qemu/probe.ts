import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { HarnessError } from '../../base/errors.js';
import { cachePath } from '../../base/paths.js';
import { sha256 } from '../../base/hash.js';
import { which } from '../../base/proc.js';

/**
 * What one QEMU binary can express, asked of the binary itself (`-machine help`, `-device help`,
 * `-machine TYPE,help`, `-device TYPE,help`) rather than guessed from its version: QEMU renames
 * properties (11.1: intel-iommu's x-scalable-mode became scalable-mode), and a patched QEMU has
 * properties no release has. Cached per binary (path, size, mtime), so asking costs once.
 */
export interface QemuCaps {
  /** "9.2.0", "10.2.2 (Debian 1:10.2.2+ds-1)" -> 10.2.2 */
  version: string;
  /** `QEMU emulator version ...` line as printed */
  versionLine: string;
  machines: string[];
  devices: string[];
  /** property names per machine or device type asked about ("machine:q35", "device:intel-iommu") */
  props: Record<string, string[]>;
}

const PROBE_FORMAT = '1';

async function ask(binary: string, args: string[]): Promise<string> {
  const r = await execa(binary, ['-nodefaults', '-display', 'none', ...args], { reject: false, timeout: 20_000, stdin: 'ignore', all: true });
  if (r.exitCode === undefined && r.failed) throw new HarnessError(`${binary} ${args.join(' ')}: ${r.shortMessage}`);
  return String(r.all ?? '');
}

/** `-machine help`: "q35   Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)" -> q35 */
export function parseMachineList(text: string): string[] {
  return text.split('\n').slice(1).map((l) => /^(\S+)\s/.exec(l)?.[1]).filter((x): x is string => Boolean(x));
}

/** `-device help`: 'name "intel-iommu", bus System, desc "..."' -> intel-iommu (aliases included) */
export function parseDeviceList(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^name "([^"]+)"(?:.*?alias "([^"]+)")?/gm)) {
    out.push(m[1]!);
    if (m[2]) out.push(m[2]);
  }
  return out;
}

/** `-device T,help` / `-machine T,help`: "  x-scalable-mode=<bool>  - ..." -> x-scalable-mode */
export function parsePropList(text: string): string[] {
  return [...text.matchAll(/^\s+([A-Za-z0-9_.-]+)=</gm)].map((m) => m[1]!);
}

export function parseVersion(text: string): { version: string; versionLine: string } {
  const line = text.split('\n').find((l) => /QEMU emulator version/.test(l)) ?? text.split('\n')[0] ?? '';
  return { version: /version\s+(\d+\.\d+(?:\.\d+)?)/.exec(line)?.[1] ?? 'unknown', versionLine: line.trim() };
}

/** The binary's path: a bare name is looked up on PATH; a missing binary is a one-line error naming it. */
export async function locate(binary: string): Promise<string> {
  const found = binary.includes('/') ? (existsSync(binary) ? binary : undefined) : await which(binary);
  if (!found) throw new HarnessError(`QEMU binary not found: ${binary}`);
  return realpathSync(found);
}

/**
 * Probe a binary for the machine and device types given (those the profiles name). Only the types
 * asked about get their properties listed; asking again with more types extends the cached entry.
 */
export async function probeQemu(binary: string, types: { machines: string[]; devices: string[] }): Promise<QemuCaps> {
  const path = await locate(binary);
  const st = statSync(path);
  const file = cachePath('qemu-probe', `${sha256(`${PROBE_FORMAT}|${path}|${st.size}|${st.mtimeMs}`).slice(0, 24)}.json`);
  let caps: QemuCaps | undefined;
  try { caps = JSON.parse(readFileSync(file, 'utf8')) as QemuCaps; } catch { /* not probed yet */ }
  if (!caps) {
    const v = parseVersion(await ask(path, ['-version']));
    caps = { ...v, machines: parseMachineList(await ask(path, ['-machine', 'help'])), devices: parseDeviceList(await ask(path, ['-device', 'help'])), props: {} };
    if (!caps.machines.length) throw new HarnessError(`${path} lists no machines: is it a qemu-system binary? (${v.versionLine || 'no version printed'})`);
  }
  let changed = false;
  for (const [kind, names, known] of [['machine', types.machines, caps.machines], ['device', types.devices, caps.devices]] as const) {
    for (const t of names) {
      const key = `${kind}:${t}`;
      if (key in caps.props || !known.includes(t)) continue;
      caps.props[key] = parsePropList(await ask(path, [`-${kind}`, `${t},help`]));
      changed = true;
    }
  }
  if (changed || !existsSync(file)) {
    mkdirSync(cachePath('qemu-probe'), { recursive: true });
    writeFileSync(file, JSON.stringify(caps));
  }
  return caps;
}
