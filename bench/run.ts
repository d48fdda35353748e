import { parseArgs } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, hostname, cpus } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { prepare } from '../runner/prepare.js';
import { buildKernel } from '../harness/kernel/build.js';
import { QemuGuest } from '../harness/target/qemu-guest.js';
import { AgentClient } from '../harness/agent/client.js';
import { PROFILES, getProfile } from '../harness/qemu/profiles.js';
import { qemuArgs } from '../harness/qemu/cmdline.js';
import { PROBE_MARKER, qemuVersion } from '../harness/qemu/accel.js';
import { openQemu } from '../harness/qemu/binary.js';
import { listQemuBuilds } from '../images/qemu/build.js';
import { ARCHES } from '../harness/arch.js';
import { repoPath } from '../base/paths.js';
import { runProfile } from '../runner/run-cases.js';
import { migrationSuite } from '../suites/migration/index.js';
import type { Suite } from '../suites/types.js';
import { reportFigure } from './report-figure.js';
import { jobsFigure, JOBS_CELLS } from './jobs.js';
import { matrixFigure } from './matrix.js';

/**
 * `npm run bench`: the figures the project promises, measured on this machine and written to
 * bench/results.json. Nothing here asserts; a regression shows up as a number that moved.
 */
const HELP = `npm run bench -- [--runs N] [--profile P ...] [--cold | --cold-arch ARCH ...] [--skip-suite] [--report-only]
                       [--jobs-compare [--jobs-only]] [--matrix [--matrix-only]]
  boot-to-first-SSH-command per profile (median of N, default 5; the x86 profiles and smmuv3)
  beside the raw floor (same kernel and initramfs, an init that powers off at once); no-change
  rebuild; agent round trip; the migration suite on one profile; with --cold, x86_64 and arm64
  kernel builds from an empty cache (--cold-arch: only those); with --cold-qemu, the QEMU under test
  built from an empty cache; the no-change 'qemu build' once our QEMU is built; the HTML report of a
  generated default-sized run (2,590 results): its size and time to interactive in Chromium
  (--report-only: only that, no guest booted); with --jobs-compare, 'run --jobs 1' against
  'run --jobs 2' on ${JOBS_CELLS.profiles.length} profiles x ${JOBS_CELLS.suites.join('+')} (wall time, and whether every case got the
  same status; --jobs-only: only that); with --matrix, the whole default run as 'npm run conformance'
  runs it, its wall time, results per status and per profile (--matrix-only: only that).`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

async function rawFloor(kernel: string, initrd: string, profile = getProfile('none')): Promise<number> {
  const arch = ARCHES[profile.arch];
  const qemu = await openQemu({ origin: 'system', binary: arch.qemuBinary, arch, profiles: [profile] });
  const args = qemuArgs({ arch, profile, qemu, accel: 'tcg', kernel, initrd, append: ['vfioc_probe=1'] });
  const t0 = performance.now();
  const r = await execa(qemu.path, args, { reject: false, timeout: 60_000, stdin: 'ignore' });
  if (!String(r.stdout).includes(PROBE_MARKER)) throw new Error('raw floor boot did not reach the probe line');
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      runs: { type: 'string', default: '5' }, profile: { type: 'string', multiple: true }, cold: { type: 'boolean' },
      'cold-arch': { type: 'string', multiple: true }, 'cold-qemu': { type: 'boolean' }, 'skip-suite': { type: 'boolean' },
      'report-only': { type: 'boolean' }, 'jobs-compare': { type: 'boolean' }, 'jobs-only': { type: 'boolean' },
      matrix: { type: 'boolean' }, 'matrix-only': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) { process.stdout.write(`${HELP}\n`); return; }
  const runs = Number(values.runs);
  const out: Record<string, unknown> = { at: new Date().toISOString(), host: hostname(), cpus: cpus().length, accel: 'tcg', qemu: await qemuVersion(ARCHES.x86_64) };
  const rows: [string, string, string][] = [];

  const report = await reportFigure();
  out.report = report;
  rows.push([`HTML report of a generated default-sized run (${report.results} results): size`, `${report.megabytes} MB`, 'target <= 3 MB']);
  rows.push(['HTML report: time to interactive in Chromium (file://)', report.interactiveMs === null ? '-' : `${report.interactiveMs} ms`,
    report.interactiveMs === null ? '/usr/bin/chromium is not installed' : `median of ${report.loads} loads, target <= 2000 ms`]);
  if (values['report-only']) return finish(out, rows);

  if (values['jobs-compare'] || values['jobs-only']) {
    const j = await jobsFigure(2);
    out.jobs = j;
    rows.push([`run --jobs 1, ${j.results} results (${JOBS_CELLS.profiles.length} profiles)`, `${j.serialSeconds} s`, `load before: ${j.loadBefore.serial.toFixed(1)}`]);
    rows.push([`run --jobs ${j.jobs}, the same cells`, `${j.parallelSeconds} s`,
      `${j.ratio}x of serial (target <= 0.6x; load before: ${j.loadBefore.parallel.toFixed(1)}); ${j.differences.length ? `${j.differences.length} statuses differ: ${j.differences.slice(0, 3).join('; ')}` : 'every status the same'}`]);
    if (values['jobs-only']) return finish(out, rows);
  }

  if (values.matrix || values['matrix-only']) {
    const m = await matrixFigure();
    out.matrix = m;
    const counts = Object.entries(m.statuses).map(([k, v]) => `${v} ${k}`).join(', ');
    rows.push([`default run (${Object.keys(m.profiles).length} profiles), ${m.results} results`, `${m.seconds} s`,
      `exit ${m.exitCode}; ${counts}; load before: ${m.loadBefore.toFixed(1)}`]);
    if (values['matrix-only']) return finish(out, rows);
  }

  if (values.cold || values['cold-arch']) {
    // x86_64 native and arm64 cross, each from an empty cache: download + unpack + configure + build
    const cold: Record<string, number> = {};
    for (const arch of values['cold-arch'] ?? ['x86_64', 'arm64']) {
      const cache = mkdtempSync(join(tmpdir(), 'vfioc-cold-'));
      const t0 = performance.now();
      await execa('node', [repoPath('dist', 'cli', 'main.js'), 'kernel', 'build', '--arch', arch], { env: { VFIO_CONFORMANCE_CACHE: cache, CCACHE_DISABLE: '1' }, stdio: 'inherit' });
      cold[arch] = r2((performance.now() - t0) / 1000);
      rows.push([`cold kernel build, ${arch} (empty cache, no ccache; download + unpack + build)`, `${cold[arch]} s`, 'target <= 480 s']);
      rmSync(cache, { recursive: true, force: true });
    }
    out.coldBuildSeconds = cold;
  }

  if (values['cold-qemu']) {
    // the QEMU under test from an empty cache: source download + unpack + meson + configure + ninja, no ccache
    const cache = mkdtempSync(join(tmpdir(), 'vfioc-cold-qemu-'));
    const t0 = performance.now();
    await execa('node', [repoPath('dist', 'cli', 'main.js'), 'qemu', 'build'], { env: { VFIO_CONFORMANCE_CACHE: cache, CCACHE_DISABLE: '1' }, stdio: 'inherit' });
    out.coldQemuBuildSeconds = r2((performance.now() - t0) / 1000);
    rows.push(['cold QEMU build, x86_64 + aarch64 (empty cache, no ccache)', `${out.coldQemuBuildSeconds} s`, 'measured; CI cold path <= 75 min in all']);
    rmSync(cache, { recursive: true, force: true });
  }
  // The whole process as a user runs it (node start-up, apt freshness, the cache check), when built.
  if (listQemuBuilds().length) {
    const t0 = performance.now();
    await execa('node', [repoPath('dist', 'cli', 'main.js'), 'qemu', 'build'], { stdio: 'ignore' });
    out.noChangeQemuBuildSeconds = r2((performance.now() - t0) / 1000);
    rows.push(['no-change qemu build (cache hit, whole process)', `${out.noChangeQemuBuildSeconds} s`, 'target <= 5 s']);
  }

  const p = await prepare({});
  out.kernel = p.kernel.release;
  const t0 = performance.now();
  const again = await buildKernel({});
  const rebuild = (performance.now() - t0) / 1000;
  out.noChangeRebuildSeconds = r2(rebuild);
  rows.push(['no-change rebuild (cache hit)', `${r2(rebuild)} s`, again.cached ? 'cache hit, target <= 5 s' : 'NOT a cache hit']);
  const t1 = performance.now();
  await prepare({});
  rows.push(['no-change prepare (kernel + agent + image)', `${r2((performance.now() - t1) / 1000)} s`, '']);

  // The floor is per profile: an IOMMU's own initialisation is part of the kernel's boot, not
  // harness overhead, so each profile is compared with the same machine powering off at once.
  const logs = mkdtempSync(join(tmpdir(), 'vfioc-bench-'));
  const boot: Record<string, number> = {};
  const floorsBy: Record<string, number> = {};
  // every x86 profile and the SMMUv3 one (arm64, cross-built; its floor and boot use its own kernel)
  const profiles = (values.profile ?? [...PROFILES.filter((x) => x.arch === 'x86_64').map((x) => x.name), 'smmuv3']).map(getProfile);
  const preparedBy = new Map<string, Awaited<ReturnType<typeof prepare>>>([['x86_64', p]]);
  for (const profile of profiles) {
    const arch = ARCHES[profile.arch];
    if (!preparedBy.has(arch.name)) preparedBy.set(arch.name, await prepare({ arch }));
    const pa = preparedBy.get(arch.name)!;
    const floors: number[] = [];
    for (let i = 0; i < runs; i++) floors.push(await rawFloor(pa.kernel.image, pa.image.path, profile));
    const floor = median(floors);
    floorsBy[profile.name] = r2(floor);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      const g = await QemuGuest.boot({ arch, profile, accel: 'tcg', kernel: pa.kernel.image, initrd: pa.image.path, hostKey: pa.image.hostKey, logDir: join(logs, `${profile.name}-${i}`) });
      const r = await g.exec('true');
      times.push((performance.now() - start) / 1000);
      if (r.code !== 0) throw new Error(`first command failed on ${profile.name}`);
      await g.close();
    }
    boot[profile.name] = r2(median(times));
    const target = arch.name === 'arm64' ? '<= 2 s' : '<= 4 s';
    rows.push([`boot to first SSH command: ${profile.name} (${arch.name})`, `${boot[profile.name]} s`, `floor ${r2(floor)} s, ${r2(median(times) / floor)}x (target <= 1.3x and ${target})`]);
  }
  out.rawFloorSeconds = floorsBy;
  out.bootToFirstCommandSeconds = boot;

  const g = await QemuGuest.boot({ arch: ARCHES.x86_64, profile: getProfile('none'), accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey, logDir: join(logs, 'agent') });
  try {
    const agent = await AgentClient.start(g);
    const rt: number[] = [];
    for (let i = 0; i < 200; i++) {
      const s = performance.now();
      await agent.request('hello');
      rt.push(performance.now() - s);
    }
    out.agentRoundTripMedianMs = r2(median(rt));
    rows.push(['agent round trip (hello, over SSH)', `${r2(median(rt))} ms`, 'median of 200, target <= 5 ms']);
    agent.close();
  } finally {
    await g.close();
  }

  if (!values['skip-suite']) {
    const profile = getProfile('intel-iommu');
    let bootedAt = 0;
    let n = 0;
    const runDir = join(logs, 'suite');
    mkdirSync(runDir, { recursive: true });
    await runProfile({
      profile: profile.name,
      start: async (attempt) => {
        const guest = await QemuGuest.boot({ arch: ARCHES.x86_64, profile, accel: 'tcg', kernel: p.kernel.image, initrd: p.image.path, hostKey: p.image.hostKey, logDir: join(runDir, `boot-${attempt}`) });
        if (!bootedAt) bootedAt = performance.now();
        return guest;
      },
    }, [migrationSuite as Suite<unknown>], runDir, { result: () => { n++; }, error: (e) => { throw new Error(e.message); } });
    const s = (performance.now() - bootedAt) / 1000;
    out.migrationSuite = { profile: profile.name, cases: n, secondsAfterBoot: r2(s) };
    rows.push([`migration suite on ${profile.name} (${n} cases, incl. guest replacements)`, `${r2(s)} s`, 'after first boot, target <= 60 s']);
  }
  rmSync(logs, { recursive: true, force: true });

  finish(out, rows);
}

function finish(out: Record<string, unknown>, rows: [string, string, string][]): void {
  mkdirSync(repoPath('bench'), { recursive: true });
  // A partial bench (--report-only, --jobs-only) updates its own figures and keeps the others.
  const file = repoPath('bench', 'results.json');
  let previous: Record<string, unknown> = {};
  try { previous = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>; } catch { /* first bench */ }
  writeFileSync(file, `${JSON.stringify({ ...previous, ...out }, null, 2)}\n`);
  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\n${rows.map(([a, b, c]) => `${a.padEnd(w)}  ${b.padStart(10)}  ${c}`).join('\n')}\n\nwritten: bench/results.json\n`);
}

main().then(() => process.exit(0), (e: Error) => { process.stderr.write(`bench: ${e.message}\n`); process.exit(2); });
