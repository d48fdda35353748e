import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readResults } from '../../base/results/file.js';
import { repoPath } from '../../base/paths.js';
import type { RunResults } from '../../base/results/schema.js';

/**
 * The GitLab template's own commands, run here as its jobs would run them: the bundle job once, the
 * test job three times as separate processes (CI_NODE_INDEX 1..3, one guest at a time), the merge
 * job; then an unsharded run of the same plan from the same bundle. The merged run must hold the
 * same ids with the same statuses. A cheap subset keeps it to a few minutes under TCG.
 */
const SELECT = '--profile none --profile intel-iommu --suite pasid --suite dma';
const main = repoPath('dist', 'cli', 'main.js');

/** `node dist/cli/main.js ...` lines of each job's script, in order. */
function jobCommands(yaml: string): Map<string, string[]> {
  const jobs = new Map<string, string[]>();
  let job = '';
  for (const line of yaml.split('\n')) {
    const top = /^([a-z][\w-]*):\s*$/.exec(line);
    if (top) { job = top[1]!; continue; }
    const cmd = /^\s+- (node dist\/cli\/main\.js .*)$/.exec(line);
    if (cmd && job) jobs.set(job, [...(jobs.get(job) ?? []), cmd[1]!]);
  }
  return jobs;
}

const view = (r: RunResults) => r.results.map((x) => `${x.profile} ${x.id} ${x.status}`).sort();

t.test('the GitLab template: one bundle, 3 shards, merge = an unsharded run of the same plan', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'vfioc-ci-'));
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }));
  const jobs = jobCommands(readFileSync(repoPath('ci', 'gitlab-ci.yml'), 'utf8'));
  t.same([...jobs.keys()], ['bundle', 'test', 'merge'], 'the template has its three jobs');
  const env = { KERNEL: 'debian:latest', SHARDS: '3', SELECT, PREPARE_ARGS: '', GATE_ARGS: '--no-expectations', KCIDB_ORIGIN: 'ci_test', CI_PIPELINE_ID: '42' };
  const sh = async (cmd: string, extra: Record<string, string> = {}) => {
    const r = await execa('bash', ['-c', cmd.replace(/^node dist\/cli\/main\.js/, `node ${main}`)], { cwd, env: { ...env, ...extra }, reject: false, all: true });
    return r;
  };
  for (const cmd of jobs.get('bundle')!) {
    const r = await sh(cmd);
    t.equal(r.exitCode, 0, `bundle: ${cmd}: ${r.all?.split('\n').slice(-3).join(' | ')}`);
  }
  const plan = JSON.parse(readFileSync(join(cwd, 'bundle', 'plan.json'), 'utf8')) as { shards: { total: number; hash: string } };
  t.equal(plan.shards.total, 3);
  for (const i of [1, 2, 3]) {
    for (const cmd of jobs.get('test')!) {
      const t0 = Date.now();
      const r = await sh(cmd, { CI_NODE_INDEX: String(i), CI_NODE_TOTAL: '3' });
      t.equal(r.exitCode, 0, `shard ${i}/3 (${((Date.now() - t0) / 1000).toFixed(0)} s): ${r.all?.split('\n').slice(-3).join(' | ')}`);
      t.notMatch(r.all ?? '', /kernel: building|apt-get|image: .*built/, `shard ${i}: nothing built`);
    }
    const res = readResults(join(cwd, 'runs', `shard-${i}`, 'results.json'));
    t.match(res.run.shard, { index: i, total: 3, planHash: plan.shards.hash });
  }
  for (const cmd of jobs.get('merge')!) {
    const r = await sh(cmd);
    t.equal(r.exitCode, 0, `merge: ${cmd}: ${r.all?.split('\n').slice(-3).join(' | ')}`);
  }
  const merged = readResults(join(cwd, 'runs', 'merged', 'results.json'));
  t.same(merged.run.merged?.missing, []);
  const kcidb = JSON.parse(readFileSync(join(cwd, 'runs', 'merged', 'kcidb.json'), 'utf8')) as { tests: unknown[] };
  t.equal(kcidb.tests.length, merged.results.length, 'the KCIDB export has one test per result');

  const whole = await execa('bash', ['-c', `node ${main} run --prepared bundle ${SELECT} --out runs/unsharded`], { cwd, reject: false, all: true });
  t.equal(whole.exitCode, 0, `the unsharded run: ${whole.all?.split('\n').slice(-3).join(' | ')}`);
  const unsharded = readResults(join(cwd, 'runs', 'unsharded', 'results.json'));
  t.ok(unsharded.results.length > 30, `${unsharded.results.length} results`);
  t.same(view(merged), view(unsharded), 'the merged shards hold the same ids with the same statuses as the unsharded run');
});
