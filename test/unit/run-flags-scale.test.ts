import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from '../../base/paths.js';

/** `run` refuses bad subset, shard, plan and bundle flags in one line, exit 2, before it builds or boots anything. */
const run = (...args: string[]) => spawnSync(process.execPath, [repoPath('dist', 'cli', 'main.js'), 'run', ...args], { encoding: 'utf8', timeout: 60_000 });

t.test('bad --shard, --plan, --case, --jobs and --prepared: one line, exit 2, nothing built', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'vfioc-flags-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  writeFileSync(join(tmp, 'plan.json'), '{"not": "a plan"}');
  const cases: [string[], RegExp][] = [
    [['--shard', '0/4'], /--shard 0\/4: shards count from 1 \(1\.\.4\)/],
    [['--shard', '5/4'], /--shard 5\/4: index 5 is past the total 4/],
    [['--shard', 'x'], /--shard 'x': expected I\/N/],
    [['--plan', 'abc'], /--plan names the plan of a shard: give --shard I\/N too/],
    [['--shard', '1/4', '--plan', join(tmp, 'plan.json')], /not a plan file of version 1/],
    [['--shard', '1/4', '--plan', '0123456789abcdef'], /--plan 0123456789abcdef: this run's plan is [0-9a-f]{16}/],
    [['--case', 'migration/nope/*'], /--case 'migration\/nope\/\*' matches no case id/],
    [['--jobs', '0'], /--jobs '0': expected a whole number >= 1/],
    [['--prepared', join(tmp, 'nothing')], /--prepared .*nothing: no manifest\.json \(not a bundle/],
    [['--target', 'ssh://root@lab1', '--shard', '1/2'], /a lab host run \(--target\) is one machine, not sharded/],
  ];
  for (const [args, re] of cases) {
    const r = run(...args);
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    const lines = r.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${args.join(' ')}: one line (${r.stderr.trim().slice(0, 200)})`);
    t.match(lines[0], re);
    t.notMatch(r.stderr, /kernel:|image:|building/, 'nothing was built');
  }
});
