import type { CaseDef, CaseOutcome, Suite } from '../types.js';
import type { Target } from '../../harness/target/target.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import { GUEST_DIR, type GuestManifest } from '../../images/kselftest/build.js';
import { parseKtap, parseTestList, type KtapTest, type ListedTest } from './ktap.js';

/**
 * The kernel's own selftests (tools/testing/selftests/iommu, .../vfio), built from the tree under
 * test by the harness (images/kselftest) and installed at /opt/kselftest/<dir>/<program>.
 *
 * One result per subtest: `kselftest/iommu/iommufd/iommufd_dirty_tracking.domain_dirty8k.get_dirty_bitmap`.
 * setup() only lists: it asks each program for its tests (`-l`) and makes one case per test, which
 * runs `<program> -r <fixture.variant.test>` and parses that test's KTAP. So every subtest gets the
 * runner's own step marker (a kernel WARN or Oops is pinned on the subtest that caused it, not on a
 * whole program), its own time limit, and a guest that dies in one test costs only that test.
 * The price is one SSH round trip per test (measured in the report of the change that added this).
 *
 * A directory that did not build is one failed case `kselftest/<dir>/build` carrying the first
 * compiler error and the log's path on the host.
 */

/** kselftest_harness's own per-test limit is 30 s (TEST_TIMEOUT_DEFAULT); the guest kills the program after this. */
const TEST_TIMEOUT_S = 30;
/** margin for the harness's own timeout report, then the guest-side kill, then the SSH round trip */
const GUEST_KILL_S = TEST_TIMEOUT_S + 10;
const CASE_TIMEOUT_MS = (GUEST_KILL_S + 15) * 1000;
/** dirty-tracking *_huge variants mmap(MAP_HUGETLB) up to 128 MiB: 64 x 2 MiB at least */
const HUGEPAGES = 512;
const NO_DEVICE: DeviceInfo = { driver: 'none', class: 'none', id: '-' };

export interface KselftestState {
  manifest: GuestManifest;
  hugepages: number;
  debugfs: boolean;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function sh(target: Target, cmd: string, timeoutMs = 20_000): Promise<{ code: number | null; out: string }> {
  const r = await target.exec(cmd, { timeoutMs });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** Turn one test's parsed KTAP into the case's outcome. */
export function outcomeOf(full: string, t: KtapTest | undefined, run: { code: number | null; out: string; killed: boolean }): CaseOutcome {
  if (!t) {
    if (run.code === 4) {
      const why = run.out.trim().split('\n').filter((l) => l.trim()).pop() ?? 'program exited with KSFT_SKIP';
      return { status: 'skip', reason: `program skipped: ${why.replace(/^#\s*/, '')}` };
    }
    if (run.killed) return { status: 'error', reason: `killed after ${GUEST_KILL_S} s before printing a result` };
    return { status: 'error', reason: `no result for ${full} in the program's output (exit ${run.code ?? 'none'})` };
  }
  let reason = t.reason;
  if (t.status === 'error' && run.killed) reason = `killed after ${GUEST_KILL_S} s (${reason ?? 'no result'})`;
  const o: CaseOutcome = { status: t.status, reason };
  if (t.status !== 'pass') o.observed = { exit: run.code };
  return o;
}

function caseFor(dir: string, program: string, test: ListedTest): CaseDef<KselftestState> {
  const id = `kselftest/${dir}/${program}/${test.full}`;
  return {
    id,
    device: NO_DEVICE,
    timeoutMs: CASE_TIMEOUT_MS,
    async run(state, ctx) {
      const cmd = `cd ${q(`${GUEST_DIR}/${dir}`)} && timeout -s KILL ${GUEST_KILL_S} ./${program} -r ${q(test.full)} 2>&1; echo "exit=$?"`;
      ctx.note(`$ ${cmd}`);
      const r = await ctx.target.exec(cmd, { timeoutMs: (GUEST_KILL_S + 10) * 1000 });
      const text = r.stdout + r.stderr;
      const m = /(?:^|\n)exit=(\d+)\s*$/.exec(text);
      const body = m ? text.slice(0, m.index) : text;
      const code = m ? Number(m[1]) : null;
      const killed = code === 137 || r.timedOut;
      const rep = parseKtap(body);
      for (const l of body.split('\n')) if (l.length) ctx.note(l);
      const t = rep.tests.find((x) => x.name === test.full);
      const o = outcomeOf(test.full, t, { code, out: body, killed });
      if (o.status === 'fail' && /huge/i.test(test.full) && state.hugepages < HUGEPAGES / 8) {
        o.reason = `${o.reason ?? ''}; only ${state.hugepages} hugetlb pages could be reserved (asked for ${HUGEPAGES}): the guest may need more memory`;
      }
      if (o.status === 'fail' && program === 'iommufd_fail_nth' && !state.debugfs) o.reason = `${o.reason ?? ''}; debugfs/failslab missing in the guest`;
      return o;
    },
  };
}

function buildFailure(e: GuestManifest['errors'][number]): CaseDef<KselftestState> {
  return {
    id: `kselftest/${e.dir}/build`,
    device: NO_DEVICE,
    async run() {
      return { status: 'fail', reason: `${e.message} (build log on the host: ${e.log})` };
    },
  };
}

/** A program that cannot list its tests still runs, as one case. */
function wholeProgram(dir: string, program: string, why: string): CaseDef<KselftestState> {
  return {
    id: `kselftest/${dir}/${program}`,
    device: NO_DEVICE,
    timeoutMs: 10 * 60_000,
    async run(_state, ctx) {
      const cmd = `cd ${q(`${GUEST_DIR}/${dir}`)} && timeout -s KILL 540 ./${program} 2>&1; echo "exit=$?"`;
      ctx.note(`(${why}) $ ${cmd}`);
      const r = await ctx.target.exec(cmd, { timeoutMs: 560_000 });
      const text = r.stdout + r.stderr;
      const m = /(?:^|\n)exit=(\d+)\s*$/.exec(text);
      const code = m ? Number(m[1]) : null;
      for (const l of text.split('\n')) if (l.length) ctx.note(l);
      const rep = parseKtap(m ? text.slice(0, m.index) : text);
      if (code === 4 && !rep.tests.length) return outcomeOf(program, undefined, { code, out: text, killed: false });
      const bad = rep.tests.filter((t) => t.status === 'fail' || t.status === 'error');
      const observed = { exit: code, tests: rep.tests.length, fail: bad.length, skip: rep.tests.filter((t) => t.status === 'skip').length };
      if (bad.length || (code !== 0 && code !== 4)) {
        return { status: 'fail', observed, reason: bad.length ? `${bad.length} failed: ${bad.slice(0, 5).map((t) => `${t.name} (${t.reason})`).join('; ')}` : `exit ${code}` };
      }
      return { status: 'pass', observed };
    },
  };
}

export const kselftestSuite: Suite<KselftestState> = {
  name: 'kselftest',
  // One case per test a program prints with -l: known only once the programs are built for the kernel.
  list: () => ['iommu/iommufd/*', 'iommu/iommufd_fail_nth/*', 'vfio/*'].map((p) => ({
    id: `kselftest/${p}`, known: 'derived' as const, pattern: true,
    from: `the tests the selftest program lists with -l (built from the kernel under test); a program that does not build is one case kselftest/<dir>/build`,
  })),
  async setup(target) {
    const man = await sh(target, `cat ${GUEST_DIR}/manifest.json`);
    if (man.code !== 0) throw new Error(`${GUEST_DIR}/manifest.json not in the guest: the image was not built with the selftests (${man.out.trim()})`);
    const manifest = JSON.parse(man.out) as GuestManifest;
    const cases: CaseDef<KselftestState>[] = manifest.errors.map(buildFailure);

    // Environment the selftests assume: hugetlb pages (dirty-tracking *_huge variants), debugfs
    // (iommufd_fail_nth's failslab/fail_page_alloc knobs).
    const hp = await sh(target, `echo ${HUGEPAGES} > /proc/sys/vm/nr_hugepages; cat /proc/sys/vm/nr_hugepages`);
    const dbg = await sh(target, `grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug; test -d /sys/kernel/debug/failslab`);
    const state: KselftestState = { manifest, hugepages: Number(hp.out.trim().split('\n').pop()) || 0, debugfs: dbg.code === 0 };

    for (const name of manifest.binaries) {
      const [dir, program] = name.split('/') as [string, string];
      // -l prints the table on stderr and exits KSFT_SKIP (4)
      const l = await sh(target, `cd ${q(`${GUEST_DIR}/${dir}`)} && ./${program} -l 2>&1`);
      const tests = parseTestList(l.out);
      if (!tests.length) { cases.push(wholeProgram(dir, program, `'-l' listed no tests: ${l.out.trim().split('\n')[0] ?? ''}`)); continue; }
      for (const t of tests) cases.push(caseFor(dir, program, t));
    }
    return { state, cases };
  },
};
