import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Exchange } from '../harness/agent/client.js';
import type { CaseResult } from '../base/results/schema.js';
import { shellQuote } from '../harness/qemu/cmdline.js';
import { HarnessError } from '../base/errors.js';
import type { QemuInfo } from '../harness/qemu/binary.js';

/** What a run knows about the environment a bundle must reproduce. */
export interface ReproEnv {
  kernelSpec: string;
  kernelRelease: string;
  kernelConfig: string;
  imageHash: string;
  accel: string;
  /** the QEMU the case ran on (absent in bundles written before it was recorded) */
  qemu?: QemuInfo;
}

export interface Bundle {
  version: 1;
  id: string;
  suite: string;
  profile: string;
  env: ReproEnv;
  device: CaseResult['device'];
  outcome: { status: string; reason?: string; observed?: unknown; expected?: unknown };
  /** the agent requests of the suite's setup, then of the case, with the replies seen */
  setup: Exchange[];
  steps: Exchange[];
}

export const BUNDLE_FILE = 'bundle.json';

/** A case or device id as one path component. */
export function slug(id: string): string {
  return id.replace(/->/g, '-to-').replace(/[^A-Za-z0-9._-]+/g, '_');
}

/**
 * A folder with everything needed to see a failure again: the exact QEMU command line, the kernel
 * config, the image hash, the device fingerprint, and the agent requests that led to it.
 * `vfio-conformance replay DIR` plays it back.
 */
export function writeBundle(runDir: string, r: CaseResult, env: ReproEnv, setup: Exchange[], steps: Exchange[], argv?: string[]): string {
  // by device too: one case id can run on several devices of a profile (migration: mtty-2, mtty-1)
  const dir = join(runDir, 'repro', r.profile, slug(r.device.id), slug(r.id));
  mkdirSync(dir, { recursive: true });
  const b: Bundle = {
    version: 1, id: r.id, suite: r.suite, profile: r.profile, env, device: r.device,
    outcome: { status: r.status, reason: r.reason, observed: r.observed, expected: r.expected },
    setup, steps,
  };
  writeFileSync(join(dir, BUNDLE_FILE), `${JSON.stringify(b, null, 2)}\n`);
  if (argv) writeFileSync(join(dir, 'qemu-cmdline.txt'), `${shellQuote(argv)}\n`);
  if (existsSync(env.kernelConfig)) copyFileSync(env.kernelConfig, join(dir, 'kernel.config'));
  writeFileSync(join(dir, 'agent-script.jsonl'), [...setup, ...steps].map((e) => JSON.stringify(e.request)).join('\n') + '\n');
  writeFileSync(join(dir, 'device-fingerprint.json'), `${JSON.stringify(r.device, null, 2)}\n`);
  writeFileSync(join(dir, 'README.txt'), [
    `Reproducer for ${r.id} on ${r.profile} (${r.status}): ${r.reason ?? ''}`,
    '',
    `kernel ${env.kernelRelease} (${env.kernelSpec}), image ${env.imageHash.slice(0, 16)}, accel ${env.accel}`,
    ...(env.qemu ? [`QEMU ${env.qemu.version} (${env.qemu.origin}${env.qemu.series ? `, series ${env.qemu.series.hash}` : ''}): ${env.qemu.binary}`] : []),
    '',
    'Replay it:   vfio-conformance replay .',
    'It boots the same kernel and profile, runs the suite setup, sends the requests in',
    'agent-script.jsonl after the setup ones, and shows where the replies differ from the ones recorded.',
    'qemu-cmdline.txt is the exact command line of the guest the case ran in.',
    '',
  ].join('\n'));
  return dir;
}

export function readBundle(path: string): Bundle {
  const file = existsSync(join(path, BUNDLE_FILE)) ? join(path, BUNDLE_FILE) : path;
  if (!existsSync(file)) throw new HarnessError(`no reproducer bundle at ${path} (expected ${BUNDLE_FILE})`);
  let b: Bundle;
  try {
    b = JSON.parse(readFileSync(file, 'utf8')) as Bundle;
  } catch (e) {
    throw new HarnessError(`${file}: not a valid bundle (${(e as Error).message})`);
  }
  if (b.version !== 1 || !Array.isArray(b.steps) || !b.env?.kernelSpec) throw new HarnessError(`${file}: not a reproducer bundle this tool reads`);
  return b;
}

/**
 * The QEMU a replay boots: the one the case ran on, so that a failure of our patched QEMU replays on
 * it and not on the profile's default. The exact binary while it exists; else the same kind (the
 * newest build of ours, the host's), with a note saying the replay is not on the recorded QEMU.
 */
export function replayQemuChoice(recorded: QemuInfo | undefined, exists: (path: string) => boolean):
  { choice: { kind: 'system' } | { kind: 'built' } | { kind: 'path'; path: string }; note?: string } {
  if (!recorded) return { choice: { kind: 'system' }, note: 'the bundle does not record its QEMU (written by an older version): using the profile\'s default' };
  if (recorded.origin === 'system') return { choice: { kind: 'system' } };
  if (exists(recorded.binary)) return { choice: { kind: 'path', path: recorded.binary } };
  if (recorded.origin === 'built') {
    return { choice: { kind: 'built' }, note: `the recorded build ${recorded.binary} (series ${recorded.series?.hash ?? '?'}) is gone: using the newest build of ours` };
  }
  throw new HarnessError(`the case ran on ${recorded.binary}, which is gone: give the QEMU to replay on with --qemu system|built|PATH`);
}
