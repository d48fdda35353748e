import t from 'tap';
import { execa } from 'execa';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepare } from '../../runner/prepare.js';
import { QemuGuest } from '../../harness/target/qemu-guest.js';
import { getProfile } from '../../harness/qemu/profiles.js';
import { runProfile } from '../../runner/run-cases.js';
import { repoPath } from '../../base/paths.js';
import { readResults } from '../../base/results/file.js';
import type { CaseResult } from '../../base/results/schema.js';
import type { Suite } from '../../suites/types.js';
import { rootfsMachine } from '../../images/rootfs/build.js';
import { qemuMigrationSuite, arcCoverage, CASE_IDS, ROUND_TRIPS } from '../../suites/qemu-migration/index.js';

const UNSUPPORTED = 'qemu-migration/unsupported-device';

/**
 * The real client on one profile with the default kernel: a guest booted with the Debian rootfs
 * (QEMU 11 over virtio-9p) runs the qemu-migration suite. The guest is booted here the way the
 * suite's machine requirement asks (cli/run.ts does not honour it yet; see the second test).
 */
const PROFILE = 'none';

type Obs = Record<string, unknown> & {
  status?: string; sourceRunState?: string;
  state?: { wrote: Record<string, number>; read: Record<string, number> };
  vfio?: Record<string, { states: string[]; requested: string[]; arcs: string[] }>;
};

t.test(`qemu-migration on ${PROFILE}: one boot, every case, <= 60 s`, async (t) => {
  const p = await prepare({});
  const m = await rootfsMachine();
  t.match(m.rootfs.qemuVersion, /^(\d+)\./);
  t.ok(Number(m.rootfs.qemuVersion.split('.')[0]) >= 8, `the rootfs QEMU (${m.rootfs.qemuVersion}) is new enough for VFIO migration v2`);
  const runDir = mkdtempSync(join(tmpdir(), 'vfioc-qm-'));
  const profile = getProfile(PROFILE);
  const results: CaseResult[] = [];
  const errors: string[] = [];
  let boots = 0;
  const t0 = Date.now();
  await runProfile({
    profile: PROFILE,
    start: async (attempt) => {
      boots++;
      return QemuGuest.boot({
        arch: p.arch, profile, accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey,
        logDir: join(runDir, `boot-${attempt}`), memMiB: m.memMiB, smp: m.smp, qemuArgs: m.qemuArgs,
      });
    },
  }, [qemuMigrationSuite as Suite<unknown>], runDir, { result: (r) => results.push(r), error: (e) => errors.push(e.message) });
  const seconds = (Date.now() - t0) / 1000;
  t.same(errors, [], 'no harness errors');
  t.equal(boots, 1, 'one guest boot');
  t.same(results.map((r) => r.id), CASE_IDS, 'every case has a result');
  // mtty always migrates: the unsupported-device case (a real device whose driver offers no migration) skips, saying so
  const unsupported = results.find((r) => r.id === UNSUPPORTED);
  t.match(unsupported, { status: 'skip', reason: /^mtty offers migration on every kernel/ }, 'no device without migration to assign');
  t.same(results.filter((r) => r.status !== 'pass' && r.id !== UNSUPPORTED).map((r) => `${r.id}: ${r.status}: ${r.reason}`), [], 'every other case passes');
  t.ok(seconds <= 60, `one boot plus every case in ${seconds.toFixed(1)} s (target <= 60 s)`);
  t.comment(`boot + ${results.length} cases: ${seconds.toFixed(1)} s; ${results.map((r) => `${r.id.split('/')[1]} ${(r.durationMs / 1000).toFixed(1)} s`).join(', ')}`);
  const by = (id: string) => results.find((r) => r.id === `qemu-migration/${id}`)?.observed as Obs | undefined;
  const measured = (id: string) => results.find((r) => r.id === `qemu-migration/${id}`)?.measurements as Obs | undefined;

  // Migrations that complete: QEMU's figures, the destination runs, the state arrived.
  for (const id of ['legacy-container', 'iommufd', 'return-path+switchover-ack', 'multifd']) {
    const o = by(id)!;
    t.equal(o.status, 'completed', `${id}: completed`);
    for (const k of ['totalTimeMs', 'downtimeMs', 'setupTimeMs', 'deviceBytes']) t.type(measured(id)?.[k], 'number', `${id}: QEMU reported ${k}`);
    t.equal(o.destinationRunState, 'running', `${id}: destination runs`);
    t.same(o.state?.read, o.state?.wrote, `${id}: the UART registers written on the source read back on the destination`);
    t.same(o.vfio?.source?.requested, ['RUNNING->PRE_COPY', 'PRE_COPY->PRE_COPY_P2P', 'PRE_COPY_P2P->STOP_COPY', 'STOP_COPY->STOP'], `${id}: source path`);
    t.same(o.vfio?.destination?.requested, ['RUNNING->RESUMING', 'RESUMING->RUNNING_P2P', 'RUNNING_P2P->RUNNING'], `${id}: destination path`);
  }
  t.equal(measured('legacy-container')!.deviceBytes, 96, 'a 2-port mtty saves 96 bytes');
  t.equal(by('iommufd')!.backend, 'iommufd');
  t.same(by('return-path+switchover-ack')!.capabilities, ['return-path', 'switchover-ack']);
  t.ok((measured('multifd')!.deviceBytes as number) > 96, 'multifd: device bytes include its framing');

  // Failure and cancels: the migration does not complete and the source rolls back with its state.
  const wrong = by('wrong-type-destination')!;
  t.equal(wrong.status, 'failed', 'a 1-port destination refuses a 2-port stream: migration failed');
  t.equal(wrong.destinationExited, true, 'the destination QEMU gave up');
  for (const id of ['wrong-type-destination', 'cancel-stop-copy', 'cancel-precopy']) {
    const o = by(id)!;
    t.equal(o.sourceRunState, 'running', `${id}: the source runs again`);
    t.equal(o.vfio?.source?.states.at(-1), 'RUNNING', `${id}: QEMU put the source device back in RUNNING`);
    t.same(o.state?.read, o.state?.wrote, `${id}: the source kept its device state`);
  }
  const sc = by('cancel-stop-copy')!;
  t.equal(sc.statusAtCancel, 'pre-switchover');
  t.equal((sc.sourceStatesAtCancel as string[]).at(-1), 'STOP_COPY', 'cancelled from STOP_COPY');
  t.equal(sc.status, 'cancelled');
  t.ok(sc.vfio?.source?.requested.includes('STOP_COPY->RUNNING'), 'QEMU asked STOP_COPY -> RUNNING');
  const pc = by('cancel-precopy')!;
  t.equal(pc.statusAtCancel, 'active');
  t.equal((pc.sourceStatesAtCancel as string[]).at(-1), 'PRE_COPY', 'cancelled in precopy');
  t.equal(pc.status, 'cancelled');
  t.ok(pc.vfio?.source?.requested.includes('PRE_COPY->RUNNING'), 'QEMU asked PRE_COPY -> RUNNING');

  const rt = by(`round-trips-${ROUND_TRIPS}`)!;
  t.equal(rt.migrations, 2 * ROUND_TRIPS);
  t.ok((rt.hops as { status: string }[]).every((h) => h.status === 'completed'), 'every hop completed');

  // Arc coverage: what the real client walked, what only the direct-ioctl suite covers.
  const cov = arcCoverage(results);
  t.comment(`arcs QEMU walked: ${cov.exercised.join(', ')}; only the direct-ioctl suite: ${cov.directOnly.join(', ')}`);
  for (const a of ['RUNNING->PRE_COPY', 'PRE_COPY->PRE_COPY_P2P', 'PRE_COPY_P2P->STOP_COPY', 'STOP_COPY->STOP', 'STOP->RESUMING', 'RESUMING->STOP', 'PRE_COPY->RUNNING']) {
    t.ok(cov.exercised.includes(a), `QEMU exercised ${a}`);
  }
  t.ok(cov.directOnly.includes('STOP->STOP_COPY'), 'QEMU never asks STOP -> STOP_COPY (a stopped VM is not migrated here)');
  t.equal(cov.exercised.length + cov.directOnly.length, cov.arcs.length);
});

t.test('through the CLI: the suite is registered and says why it cannot run without the rootfs', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vfioc-qm-cli-'));
  const r = await execa('node', [repoPath('dist', 'cli', 'main.js'), 'run', '--suite', 'qemu-migration', '--profile', PROFILE, '--accel', 'tcg', '--out', out], { reject: false });
  t.ok(existsSync(join(out, 'results.json')), 'results.json written');
  const res = readResults(join(out, 'results.json'));
  t.same(res.run.errors, [], 'no harness errors');
  t.same(res.results.map((x) => x.id), CASE_IDS);
  if (res.results.every((x) => x.status === 'skip')) {
    // cli/run.ts boots the standard guest until it honours the suite's machine requirement
    for (const x of res.results) t.match(x.reason, /no QEMU on the target.*rootfs/, `${x.id}: skip says why`);
    t.comment('cli/run.ts does not give this suite its machine yet (Suite.machine: rootfs + 6 GiB): skipped with the reason');
  } else {
    t.same(res.results.filter((x) => x.status !== 'pass' && x.id !== UNSUPPORTED).map((x) => `${x.id}: ${x.reason}`), [], 'with the machine requirement honoured, every case passes');
  }
  t.equal(r.exitCode, 0, r.stderr.slice(-500));
});
