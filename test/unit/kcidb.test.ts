import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { repoPath } from '../../base/paths.js';
import { SUITES } from '../../suites/registry.js';
import { DEFAULT_PROFILES } from '../../harness/qemu/profiles.js';
import { buildPlan } from '../../runner/plan.js';
import { mergeShards } from '../../reports/merge.js';
import { kcidbPath, kcidbStatus, toKcidb } from '../../reports/kcidb.js';
import { validateExpectations } from '../../reports/gate.js';
import type { CaseResult, RunResults } from '../../base/results/schema.js';
import { defaultSizedRun, shardsOf } from '../helpers/matrix.js';

/**
 * The official KCIDB I/O schema (kernelci/kcidb-io, v5.3, GPL-2.0-or-later), exported as JSON with
 * that project's documented recipe. It is not in this repository: it sits in the steering repo's
 * shared/ (beside every clone, in CI too), or where VFIO_CONFORMANCE_KCIDB_SCHEMA points.
 */
const SCHEMA = process.env.VFIO_CONFORMANCE_KCIDB_SCHEMA ?? repoPath('..', 'shared', 'kcidb', 'kcidb-io.schema.v5.3.json');

type Doc = { version: unknown; checkouts: Record<string, unknown>[]; builds: Record<string, unknown>[]; tests: Record<string, unknown>[] };
const addFormats = addFormatsModule as unknown as (a: Ajv) => Ajv;

const full = defaultSizedRun();
const known = validateExpectations({ schema: 1, known: [{ id: 'migration/arc/*', status: 'fail', reason: 'a known kernel bug' }] });
const opts = { origin: 'vfio_lab', gitUrl: 'https://example.org/linux.git', commit: 'a'.repeat(40), artifactsUrl: 'https://ci.example.org/jobs/7/artifacts/', expectations: known };

const missing = `the KCIDB schema is not at ${SCHEMA} (put kcidb-io.schema.v5.3.json in shared/kcidb/, or set VFIO_CONFORMANCE_KCIDB_SCHEMA)`;

t.test('every export validates against the official KCIDB schema', { skip: existsSync(SCHEMA) ? false : missing }, async (t) => {
  const schema = JSON.parse(readFileSync(SCHEMA, 'utf8')) as Record<string, unknown>;
  // kcidb-io validates with Draft-07 and format checking (uri, date-time, email): so do we.
  const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
  const validate = ajv.compile(schema);
  const check = (doc: unknown, what: string) => {
    const ok = validate(doc);
    t.ok(ok, `${what}: valid${ok ? '' : `: ${ajv.errorsText(validate.errors?.slice(0, 3))}`}`);
  };
  check(toKcidb(full, opts), 'a default-sized run with every option');
  check(toKcidb(full, { origin: 'x' }), 'only --origin');
  const p = buildPlan({ arch: 'x86_64', profiles: [...DEFAULT_PROFILES], suites: SUITES, shards: 3 });
  const shards = shardsOf(full, p);
  check(toKcidb(shards[1]!, opts), 'a shard alone');
  const merged = mergeShards([shards[0]!, shards[2]!].map((res) => ({ source: 's', dir: '/r', res })), '/out');
  check(toKcidb(merged, opts), 'a merge with a missing shard');
  // and the validator does reject what the schema forbids: a test whose path has a '/'
  const bad = toKcidb(full, opts) as unknown as Doc;
  bad.tests[0]!.path = 'vfio_conformance/migration';
  t.notOk(validate(bad), 'a slash in a path is refused by the schema');
});

t.test('status mapping', async (t) => {
  const r = (status: string, reason?: string) => kcidbStatus({ status, reason } as CaseResult);
  t.equal(r('pass'), 'PASS');
  t.equal(r('fail'), 'FAIL');
  t.equal(r('warning'), 'PASS', 'warning: the contract held');
  t.equal(r('expected-unsupported'), 'PASS', 'expected-unsupported: asserted the documented refusal');
  t.equal(r('skip'), 'SKIP');
  t.equal(r('error', 'case threw: EIO'), 'ERROR', 'harness error');
  t.equal(r('error', 'not run: shard 3/4 did not report'), 'MISS', 'a cell that never ran');
  t.equal(r('error', 'not run: the machine died 3 times in this suite'), 'MISS');
  t.equal(r('blocked'), 'MISS', 'a status this exporter does not know never passes');
  const doc = toKcidb(full, opts) as unknown as Doc;
  const knownFail = full.results.findIndex((x) => x.status === 'fail' && x.id.startsWith('migration/arc/'));
  t.equal(doc.tests[knownFail]!.status, 'FAIL', 'a known failure stays FAIL');
  t.equal((doc.tests[knownFail]!.misc as Record<string, unknown>).known, 'a known kernel bug', 'with its reason in misc.known');
  const warn = full.results.findIndex((x) => x.status === 'warning');
  t.equal((doc.tests[warn]!.misc as Record<string, unknown>).warning, full.results[warn]!.reason);
  const eu = full.results.findIndex((x) => x.status === 'expected-unsupported');
  t.equal((doc.tests[eu]!.misc as Record<string, unknown>).status, 'expected-unsupported');
});

t.test('paths: dot-separated, kselftest under its own root, the profile not in them', async (t) => {
  t.equal(kcidbPath('migration/arc/STOP->RUNNING'), 'vfio_conformance.migration.arc.STOP_to_RUNNING');
  t.equal(kcidbPath('qemu-migration/return-path+switchover-ack'), 'vfio_conformance.qemu-migration.return-path_plus_switchover-ack');
  t.equal(kcidbPath('kselftest/iommu/iommufd/iommufd_dirty_tracking.domain_dirty8k.get_dirty_bitmap'), 'kselftest.iommu.iommufd.iommufd_dirty_tracking.domain_dirty8k.get_dirty_bitmap');
  t.equal(kcidbPath('migration/arc/STOP->0xffffffff'), 'vfio_conformance.migration.arc.STOP_to_0xffffffff');
  const doc = toKcidb(full, opts) as unknown as Doc;
  t.ok(doc.tests.every((x) => /^([a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*)?$/.test(x.path as string)), 'every path is made of [A-Za-z0-9_-] segments');
  t.ok(doc.tests.every((x) => !DEFAULT_PROFILES.some((p) => (x.path as string).includes(`.${p}.`))), 'no profile in a path');
  t.equal((doc.tests[0]!.environment as { misc: { profile: string } }).misc.profile, full.results[0]!.profile, 'the profile is in the environment');
});

t.test('ids: <origin>:..., stable across exports, unique, the same for a shard alone and the merged run', async (t) => {
  const a = toKcidb(full, opts) as unknown as Doc;
  const b = toKcidb(JSON.parse(JSON.stringify(full)) as RunResults, opts) as unknown as Doc;
  t.same(a, b, 'a second export of the same run is the same document');
  const ids = a.tests.map((x) => x.id as string);
  t.equal(new Set(ids).size, ids.length, 'no two tests share an id');
  t.ok([...ids, a.builds[0]!.id, a.checkouts[0]!.id].every((id) => String(id).startsWith('vfio_lab:')));
  t.equal(a.tests[0]!.build_id, a.builds[0]!.id);
  t.equal(a.builds[0]!.checkout_id, a.checkouts[0]!.id);
  const later = toKcidb({ ...full, run: { ...full.run, startedAt: '2030-01-01T00:00:00.000Z' } }, opts) as unknown as Doc;
  t.not(later.tests[0]!.id, a.tests[0]!.id, 'another run of the same kernel: other test ids');
  t.equal(later.builds[0]!.id, a.builds[0]!.id, 'but the same build');
  const p = buildPlan({ arch: 'x86_64', profiles: [...DEFAULT_PROFILES], suites: SUITES, shards: 4 });
  const shards = shardsOf(full, p);
  const merged = toKcidb(mergeShards(shards.map((res) => ({ source: 's', dir: '/r', res })), '/r'), opts) as unknown as Doc;
  const alone = shards.flatMap((s) => (toKcidb(s, opts) as unknown as Doc).tests.map((x) => x.id as string));
  t.same([...alone].sort(), merged.tests.map((x) => x.id as string).sort(), 'shards exported alone give the merged run\'s ids');
  t.not((toKcidb(full, { ...opts, runId: 'pipeline-9' }) as unknown as Doc).tests[0]!.id, a.tests[0]!.id, '--run-id separates runs of one plan');
});

t.test('bad options: one line each', async (t) => {
  t.throws(() => toKcidb(full, { origin: 'My Lab' }), /--origin 'My Lab': KCIDB origins are lower-case letters/);
  t.throws(() => toKcidb(full, { origin: 'lab', commit: 'abc' }), /--commit 'abc': expected the full 40-digit/);
  t.throws(() => toKcidb(full, { origin: 'lab', gitUrl: 'git://x/y' }), /--git-url 'git:\/\/x\/y': KCIDB takes an https:\/\//);
  t.throws(() => toKcidb(full, { origin: 'lab', artifactsUrl: 'not a url' }), /--artifacts-url 'not a url': not a URL/);
});
