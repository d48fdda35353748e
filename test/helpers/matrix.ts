import { SCHEMA_VERSION, type CaseResult, type RunResults, type Status } from '../../base/results/schema.js';
import { DEFAULT_PROFILES } from '../../harness/qemu/profiles.js';
import { SUITES } from '../../suites/registry.js';
import { listSuites } from '../../runner/select.js';
import { shardInfo, type Plan } from '../../runner/plan.js';
import { runInfo } from './results.js';

/** kselftest ids per profile in a default run: about what the iommufd programs list with -l */
const KSELFTEST_PER_PROFILE = 255;
const STATUSES: Status[] = ['pass', 'pass', 'pass', 'pass', 'skip', 'expected-unsupported', 'warning', 'fail', 'error'];

/**
 * A default-sized run without booting anything: every listed id of every suite on the five x86
 * profiles, the selftests' pattern filled with made-up ids, statuses and durations spread by a
 * fixed rule (the same every call). About 2,600 results, as a real default run has.
 */
export function defaultSizedRun(): RunResults {
  const listed = listSuites(SUITES);
  const results: CaseResult[] = [];
  let k = 0;
  for (const profile of DEFAULT_PROFILES) {
    for (const c of listed) {
      const ids = c.pattern
        ? c.id.startsWith('kselftest/iommu/iommufd/') ? Array.from({ length: KSELFTEST_PER_PROFILE }, (_, i) => `kselftest/iommu/iommufd/fixture_${i % 17}.variant_${i % 5}.test_${i}`) : []
        : [c.id];
      for (const id of ids) {
        k++;
        const status = STATUSES[k % STATUSES.length]!;
        results.push({
          id, suite: c.suite, profile, device: { driver: 'mtty', class: 'sample', id: 'mtty-2' }, status,
          ...(status === 'pass' ? {} : { reason: `${status} because of rule ${k % 7}` }),
          durationMs: 20 + ((k * 7919) % 900), faults: [], artifacts: status === 'fail' ? { console: `${profile}/boot-0/console.log` } : {},
          log: ['> {"op":"hello"}', '< {"ok":true}'],
        });
      }
    }
  }
  return { schema: SCHEMA_VERSION, run: runInfo({ profiles: [...DEFAULT_PROFILES], suites: SUITES.map((s) => s.name) }), results };
}

/** The shard runs a sharded CI pipeline would write for `plan`, cut from `full`. */
export function shardsOf(full: RunResults, plan: Plan): RunResults[] {
  const shards = plan.shards!;
  return shards.assignment.map((s) => {
    const cells = new Set(s.cells);
    return {
      schema: full.schema,
      run: {
        ...full.run,
        startedAt: `2025-01-02T03:0${s.index % 10}:00.000Z`,
        shard: shardInfo(plan, s.index),
      },
      results: full.results.filter((r) => cells.has(`${r.profile}/${r.suite}`)),
    };
  });
}
