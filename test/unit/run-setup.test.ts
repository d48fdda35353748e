import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { HarnessError } from '../../base/errors.js';
import { repoPath } from '../../base/paths.js';
import { readResults } from '../../base/results/file.js';
import { ARCHES } from '../../harness/arch.js';
import { DEFAULT_PROFILES } from '../../harness/qemu/profiles.js';
import { shellQuote } from '../../harness/qemu/cmdline.js';
import { newRunInfo, readTool, toolInfo } from '../../runner/run-info.js';
import { chooseProfiles } from '../../runner/guest-setup.js';
import { provideMachine } from '../../runner/suite-machine.js';
import { RunRecord, type RunEvents } from '../../runner/run-record.js';
import type { RootfsMachine } from '../../images/rootfs/build.js';
import { qemuMigrationSuite } from '../../suites/qemu-migration/index.js';
import type { Suite } from '../../suites/types.js';
import type { CaseResult } from '../../base/results/schema.js';
import { guestOptions, parseAccel, parseSeconds } from '../../cli/guest-flags.js';
import { checkLabFlags, runOptions } from '../../cli/run.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'vfioc-setup-'));

t.test('the version is package.json\'s, read from it; a broken package.json is one clear error', async (t) => {
  const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { name: string; version: string };
  t.same(toolInfo(), { name: pkg.name, version: pkg.version });
  const d = tmp();
  writeFileSync(join(d, 'package.json'), JSON.stringify({ name: 'x', version: '9.8.7' }));
  t.same(readTool(join(d, 'package.json')), { name: 'x', version: '9.8.7' }, 'whatever the file says, not a constant');
  writeFileSync(join(d, 'bad.json'), '{"name": "x",');
  t.throws(() => readTool(join(d, 'bad.json')), HarnessError);
  writeFileSync(join(d, 'nover.json'), JSON.stringify({ name: 'x', version: 3 }));
  t.throws(() => readTool(join(d, 'nover.json')), /no name and version strings/);
  t.throws(() => readTool(join(d, 'missing.json')), /cannot read the tool's version/);
});

t.test('newRunInfo makes a RunInfo the results file accepts, with what the caller ran on', async (t) => {
  const started = new Date('2026-11-30T08:00:00.000Z');
  const info = newRunInfo(started, {
    profiles: ['none'], suites: ['migration'], target: { kind: 'qemu' }, accel: 'tcg',
    kernel: { release: '7.2.0', sourceId: 'debian:7.2', configHash: 'abc', arch: 'x86_64' },
  });
  t.match(info, { startedAt: '2026-11-30T08:00:00.000Z', complete: false, errors: [], accel: 'tcg', tool: toolInfo() });
  const ev: RunEvents = { progress: () => undefined, result: () => undefined, error: () => undefined, stopped: () => undefined };
  const d = join(tmp(), 'run');
  const rec = new RunRecord(d, info, ev);
  rec.close();
  t.same(readResults(join(d, 'results.json')).run.tool, toolInfo(), 'validated on read');
});

t.test('RunRecord: results and harness errors reach results.json and the caller', async (t) => {
  const seen: string[] = [];
  const ev: RunEvents = {
    progress: (m) => seen.push(`progress ${m}`),
    result: (p, r) => seen.push(`result ${p} ${r.id} ${r.device.modules?.length ?? 0}`),
    error: (e) => seen.push(`error ${e.profile} ${e.message}`),
    stopped: () => seen.push('stopped'),
  };
  const d = join(tmp(), 'run');
  const rec = new RunRecord(d, newRunInfo(new Date(), { profiles: ['none'], suites: ['s'], target: { kind: 'qemu' } }), ev);
  const h = rec.hooks('none', (r) => { r.device.modules = [{ name: 'm', sha256: 'x' }]; });
  const r: CaseResult = { id: 's/a', suite: 's', profile: 'none', device: { driver: 'mtty', class: 'sample', id: 'mtty-2' }, status: 'fail', durationMs: 1, faults: [], artifacts: {} };
  h.result(r);
  h.error({ profile: 'none', message: 'guest did not boot' });
  h.progress?.('half-way');
  const { writer, outDir } = rec.close();
  t.equal(outDir, d);
  const back = readResults(join(d, 'results.json'));
  t.same(back.results.map((x) => [x.id, x.device.modules?.[0]?.name]), [['s/a', 'm']], 'adjusted before it was written');
  t.same(back.run.errors, [{ profile: 'none', message: 'guest did not boot' }]);
  t.equal(writer.count, 1);
  t.same(seen, ['result none s/a 1', 'error none guest did not boot', 'progress half-way']);
});

t.test('chooseProfiles: defaults per architecture, one architecture per run', async (t) => {
  t.same(chooseProfiles(undefined).map((p) => p.name), DEFAULT_PROFILES);
  const arm = chooseProfiles(undefined, 'arm64');
  t.ok(arm.length > 0 && arm.every((p) => p.arch === 'arm64'), 'every arm64 profile');
  t.same(chooseProfiles(['none']).map((p) => p.name), ['none']);
  t.throws(() => chooseProfiles(['none', arm[0]!.name]), /different architectures/);
  t.throws(() => chooseProfiles(['none'], 'arm64'), /does not match/);
  t.throws(() => chooseProfiles(['nosuch']), /unknown profile 'nosuch'/);
  t.throws(() => chooseProfiles(undefined, 'sparc'), HarnessError);
});

t.test('provideMachine: the run tells suites what it arranged for their client QEMU', async (t) => {
  const plain: Suite<unknown> = { name: 'plain', setup: async () => ({ state: undefined, cases: [] }) };
  let built = 0;
  const fakeRootfs = async (): Promise<RootfsMachine> => {
    built++;
    return { qemuArgs: ['-fsdev', 'x'], memMiB: 6144, smp: 2, rootfs: { key: 'k1', qemuVersion: '11.1.3' } as RootfsMachine['rootfs'] };
  };
  t.same(await provideMachine([plain], ARCHES.x86_64, fakeRootfs), { memMiB: undefined, smp: undefined });
  const arm = await provideMachine([plain, qemuMigrationSuite as Suite<unknown>], ARCHES.arm64, fakeRootfs);
  t.equal(built, 0, 'no x86 rootfs is built for an arm64 guest');
  t.match(arm, { memMiB: 6144, smp: 2, qemuArgs: undefined, clientQemu: { kind: 'none', reason: /x86_64 guests only; on arm64/ } });
  const x86 = await provideMachine([qemuMigrationSuite as Suite<unknown>], ARCHES.x86_64, fakeRootfs);
  t.equal(built, 1);
  t.same(x86, { memMiB: 6144, smp: 2, qemuArgs: ['-fsdev', 'x'], clientQemu: { kind: 'rootfs', key: 'k1', qemuVersion: '11.1.3' } });
});

t.test('--boot-timeout and --timeout take positive seconds; anything else is refused in one line', async (t) => {
  t.equal(parseSeconds('boot-timeout', '90'), 90_000);
  t.equal(parseSeconds('boot-timeout', '1.5'), 1500);
  t.equal(parseSeconds('boot-timeout', '86400'), 86_400_000);
  for (const bad of ['', 'abc', '0', '0.0', '-5', '90s', '1e3', 'Infinity', 'NaN', '86401', '0x10']) {
    t.throws(() => parseSeconds('boot-timeout', bad), new RegExp(`--boot-timeout takes a number of seconds .* not '${bad.replace(/[.]/g, '\\.')}'`), `'${bad}'`);
  }
  t.equal(guestOptions({}, 60).bootTimeoutMs, 60_000, 'the command\'s default');
  t.throws(() => guestOptions({ 'boot-timeout': 'ten' }, 60), HarnessError);
  t.equal(parseAccel(undefined), 'auto');
  t.throws(() => parseAccel('hvf'), /--accel must be auto, kvm or tcg, not 'hvf'/);
});

t.test('run flags: one options value; lab flags only with --target; --qemu picks the guests\' QEMU, or the lab host\'s with --target', async (t) => {
  const o = runOptions({ suite: ['dma'], profile: ['none'], 'boot-timeout': '30', kernel: 'debian:6.12', accel: 'tcg' });
  t.match(o, { kernel: 'debian:6.12', accel: 'tcg', bootTimeoutMs: 30_000, profiles: ['none'], lab: undefined });
  t.same(o.suites.map((s) => s.name), ['dma']);
  t.same(runOptions({ qemu: '/usr/bin' }).qemu, { kind: 'path', path: '/usr/bin' }, 'without --target: a QEMU to boot the guests on');
  t.throws(() => runOptions({ qemu: '/opt/q' }), /--qemu \/opt\/q: no such file or directory/);
  t.same(runOptions({ qemu: 'built' }).qemu, { kind: 'built' });
  t.same(runOptions({}).qemu, { kind: 'system' });
  t.equal(runOptions({}).jobs, undefined, 'default --jobs: auto, decided once KVM or TCG is known');
  t.equal(runOptions({ jobs: 'auto' }).jobs, undefined);
  t.match(runOptions({ jobs: '1' }), { jobs: 1, jobsWhy: '--jobs' }, '--jobs 1: one guest at a time');
  t.throws(() => runOptions({ qemu: 'debian:10.2' }), /goes to 'qemu build --qemu'/);
  t.throws(() => checkLabFlags({ device: ['0000:3b:00.1'] }), /--device only applies/);
  t.throws(() => runOptions({ 'boot-timeout': '-1' }), /--boot-timeout/);
  t.throws(() => runOptions({ suite: ['nosuch'] }), HarnessError);
  const lab = runOptions({ target: 'ssh://root@lab1', qemu: '/opt/qemu/bin/qemu-system-x86_64', device: ['0000:3b:00.1'] });
  t.match(lab.lab, { address: 'ssh://root@lab1', clientQemu: '/opt/qemu/bin/qemu-system-x86_64', devices: ['0000:3b:00.1'], acceptNewHostKey: false });
  t.same(lab.qemu, { kind: 'system' }, "with --target, --qemu is the lab host's and no guest QEMU is chosen");
});

t.test('boot -- CMD ARG...: each argument reaches the shell as one argument, as a local exec', async (t) => {
  const args = ['printf', '[%s]\\n', 'a b', "it's", '', '$HOME', '*', 'x\ny', ';echo hi', 'ls /sys/class/iommu; echo done', '"q"', '\\'];
  const r = await execa('sh', ['-c', shellQuote(args)]);
  t.equal(r.stdout, args.slice(2).map((a) => `[${a}]`).join('\n'));
  const sh = await execa('sh', ['-c', shellQuote(['sh', '-c', 'echo one; echo two'])]);
  t.equal(sh.stdout, 'one\ntwo', 'sh -c \'a; b\' runs both, not `sh -c a`');
});

t.test('the commands refuse bad flags in one line, exit 2, before building anything', async (t) => {
  const cli = (...args: string[]) => execa('node', [repoPath('dist', 'cli', 'main.js'), ...args], { reject: false, env: { VFIO_CONFORMANCE_CACHE: tmp() } });
  for (const [args, msg] of [
    [['boot', '--boot-timeout', 'soon', '--', 'true'], /--boot-timeout takes a number of seconds .* not 'soon'/],
    [['boot', '--timeout=-3', '--', 'true'], /--timeout takes a number of seconds .* not '-3'/],
    [['boot', '--timeout', '-3', '--', 'true'], /Option '--timeout' argument is ambiguous\. \(see --help\)/],
    [['run', '--profile'], /Option '--profile <value>' argument missing \(see --help\)/],
    [['run', '--boot-timeout', '0'], /--boot-timeout takes a number of seconds .* not '0'/],
    [['run', '--qemu', '/opt/q'], /--qemu \/opt\/q: no such file or directory/],
    [['prepare', '--arch', 'sparc'], /unknown architecture 'sparc'/],
  ] as const) {
    const r = await cli(...args);
    t.equal(r.exitCode, 2, args.join(' '));
    t.match(r.stderr, msg);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  const v = await cli('--version');
  t.equal(v.stdout, `vfio-conformance ${toolInfo().version}`);
});
