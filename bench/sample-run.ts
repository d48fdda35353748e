/**
 * A generated results set of the default run's size and shape, for the report's size test and the
 * bench's report figure, where booting 5 profiles for 7.5 minutes would measure the guests instead
 * of the page: 2,590 results over the five x86 profiles and the six suites, with regressions,
 * known failures (and the expectations that make them known), warnings, skips, expected-unsupported
 * cases, long step logs, KTAP output and console faults with call traces.
 *
 * The ids, devices and reasons follow what the suites write (suites/*); the numbers are drawn from a
 * seeded generator, so the same seed gives the same file byte for byte.
 */
import { SCHEMA_VERSION, type CaseResult, type ConsoleFault, type DeviceInfo, type RunResults, type Status } from '../base/results/schema.js';
import type { Expectations } from '../reports/gate.js';

export const SAMPLE_PROFILES = ['none', 'intel-iommu', 'intel-iommu-sm', 'amd-iommu', 'virtio-iommu'] as const;
export const SAMPLE_SUITES = ['migration', 'kselftest', 'dirty', 'pasid', 'dma', 'qemu-migration'] as const;
/** results per profile: 5 x 518 = 2,590 */
const PER_PROFILE = 518;

/** mulberry32: small, seeded, good enough to vary figures and pick failures. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STATES = ['RUNNING', 'STOP', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P', 'ERROR'];
const MTTY2: DeviceInfo = { driver: 'mtty', class: 'sample', id: 'mtty-2', fingerprint: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dataSize: 96 } };
const MTTY1: DeviceInfo = { driver: 'mtty', class: 'sample', id: 'mtty-1' };
const MOCK: DeviceInfo = { driver: 'iommufd_mock', class: 'none', id: 'IOMMUFD_TEST' };
const PASID_MOCK: DeviceInfo = { driver: 'iommufd_mock', class: 'none', id: 'IOMMUFD_TEST (MOCK_FLAGS_DEVICE_PASID)' };
const NONE: DeviceInfo = { driver: 'none', class: 'none', id: '-' };
const EDU: DeviceInfo = { driver: 'vfio-pci', class: 'emulated', id: '0000:00:04.0', fingerprint: { vendor: '1234:11e8' } };
const KSELF: DeviceInfo = { driver: 'none', class: 'none', id: 'iommufd-selftest' };

interface Spec { id: string; suite: string; device: DeviceInfo }

function migrationIds(): string[] {
  const ids: string[] = [];
  for (const a of STATES.slice(0, 7)) for (const b of STATES) if (a !== b) ids.push(`migration/arc/${a}->${b}`);
  for (const s of STATES.slice(0, 7)) ids.push(`migration/reset/in-${s}`, `migration/close-reopen/in-${s}`);
  for (const f of ['no-flags', 'unknown-flag', 'probe-only', 'get-and-set', 'argsz-short', 'argsz-long', 'mig-state-size', 'precopy-v2-opt-in']) ids.push(`migration/feature/${f}`);
  for (const f of ['EBADF-after-close', 'ESPIPE-lseek', 'ENOTTY-ioctl', 'ENODEV-session-ended', 'read-in-RUNNING', 'write-in-STOP_COPY', 'two-readers']) ids.push(`migration/data-fd/${f}`);
  for (const f of ['round-trip-byte-identical', 'uart-registers-carried', 'zero-length', 'chunked-4k', 'chunked-odd']) ids.push(`migration/stream/${f}`);
  for (const f of ['info', 'initial-bytes', 'dirty-bytes', 'read-at-temporary-end', 'v2-flags-opt-in']) ids.push(`migration/precopy/${f}`);
  for (const f of ['truncated', 'bad-magic', 'wrong-version', 'oversized', 'garbage-tail']) ids.push(`migration/bad-stream/${f}`);
  return ids;
}

function kselftestIds(n: number): string[] {
  const fixtures: [string, string[], string[]][] = [
    ['iommufd_ioas',
      [
        'no_domain', 'mock_domain', 'two_mock_domain', 'mock_domain_limit'
      ], [
        'ioas_auto_destroy', 'ioas_destroy', 'alloc_hwpt_nested', 'hwpt_attach', 'ioas_area_destroy',
        'ioas_area_auto_destroy', 'get_hw_info', 'area', 'unmap_fully_contained_areas', 'area_auto_iova',
        'area_allowed', 'copy_area', 'iova_ranges', 'access_domain_destory', 'access_pin',
        'access_pin_unmap', 'access_rw', 'access_rw_slice', 'fork_gone', 'fork_present',
        'ioas_option_huge_pages', 'ioas_iova_alloc', 'ioas_align_change', 'copy_sweep'
      ]],
    ['iommufd_dirty_tracking',
      [
        'domain_dirty8k', 'domain_dirty128k', 'domain_dirty256k', 'domain_dirty640k', 'domain_dirty128M',
        'domain_dirty128M_huge', 'domain_dirty256M', 'domain_dirty256M_huge'
      ], [
        'enforce_dirty', 'set_dirty_tracking', 'device_dirty_capability', 'get_dirty_bitmap',
        'get_dirty_bitmap_no_clear'
      ]],
    ['iommufd_mock_domain',
      [
        'one_domain', 'two_domains', 'one_domain_min_align', 'two_domains_min_align',
        'one_domain_min_align_huge', 'two_domains_min_align_huge'
      ], [
        'basic', 'ro_unshare', 'all_aligns', 'all_aligns_copy', 'user_copy', 'replace', 'alloc_hwpt',
        'access_domain_destory'
      ]],
    ['vfio_compat_mock_domain', ['Ver1v2', 'Ver1v1'], ['simple_close', 'option_huge_pages', 'map_unmap', 'map_unmap_range', 'huge_map']],
  ];
  const ids = ['kselftest/iommu/build', 'kselftest/vfio/build'];
  for (const [fx, variants, tests] of fixtures) for (const v of variants) for (const t of tests) ids.push(`kselftest/iommu/iommufd/${fx}.${v}.${t}`);
  for (let i = 0; ids.length < n; i++) ids.push(`kselftest/iommu/iommufd_fail_nth/basic_fail_nth.fail_nth_${i}`);
  return ids.slice(0, n);
}

function dirtySpecs(): Spec[] {
  const out: Spec[] = [];
  for (const size of ['8k', '128k', '640k', '2M', '128M']) {
    for (const p of ['all', 'sparse', 'edges', 'every-other']) out.push({ id: `dirty/iommufd/bitmap/${size}/${p}`, suite: 'dirty', device: MOCK });
  }
  for (const size of ['8k', '2M']) out.push({ id: `dirty/iommufd/no-clear/${size}`, suite: 'dirty', device: MOCK });
  for (const x of ['sub-range', 'user-bitmap-offset', 'coarser-page-size']) out.push({ id: `dirty/iommufd/unaligned/${x}`, suite: 'dirty', device: MOCK });
  for (const x of ['enable-disable', 'mark-requires-enabled', 'enable-clears', 'read-while-disabled', 'hwpt-without-dirty-ops']) {
    out.push({ id: `dirty/iommufd/tracking/${x}`, suite: 'dirty', device: MOCK });
  }
  out.push({ id: 'dirty/iommufd/capability/mock', suite: 'dirty', device: MOCK }, { id: 'dirty/iommufd/capability/real-device', suite: 'dirty', device: NONE });
  out.push({ id: 'dirty/iommufd/capability/mtty-is-an-access', suite: 'dirty', device: MTTY1 });
  for (const x of ['first-half', 'second-half']) out.push({ id: `dirty/iommufd/contiguous-iopte/${x}`, suite: 'dirty', device: MOCK });
  for (const p of ['every-other', 'sparse', 'edges']) out.push({ id: `dirty/oracle/mock-hwpt-pair/${p}`, suite: 'dirty', device: MOCK });
  out.push({ id: 'dirty/type1/errno/v1-container', suite: 'dirty', device: MTTY1 }, { id: 'dirty/dma-logging/real-report', suite: 'dirty', device: NONE });
  return out;
}

const PASID_IDS = ['attach', 'replace', 'detach', 'attach-twice', 'replace-unattached', 'detach-unattached', 'out-of-range', 'pasid-zero', 'iopf-capable', 'nested-parent'];
const DMA_IDS = [
  'round-trip/iommufd', 'round-trip/type1', 'blocked/never-mapped', 'blocked/unmapped-after-use', 'blocked/read-only',
  'hw-info', 'hwpt-dirty-capability', 'type1-dirty-pages', 'pasid/no-capability', 'binding-restored',
];
const QM_IDS = ['legacy-container', 'iommufd', 'return-path+switchover-ack', 'multifd', 'wrong-type-destination', 'cancel-stop-copy', 'cancel-precopy', 'round-trips-3'];

function specs(): Spec[] {
  const mig = migrationIds().map((id): Spec => ({ id, suite: 'migration', device: MTTY2 }));
  const dirty = dirtySpecs();
  const pasid = PASID_IDS.map((x): Spec => ({ id: `pasid/${x}`, suite: 'pasid', device: x === 'iopf-capable' ? MTTY1 : PASID_MOCK }));
  pasid.push({ id: 'pasid/vfio/emulated-pci-device', suite: 'pasid', device: NONE });
  const dma = DMA_IDS.map((x): Spec => ({ id: `dma/${x}`, suite: 'dma', device: EDU }));
  const qm = QM_IDS.map((x): Spec => ({ id: `qemu-migration/${x}`, suite: 'qemu-migration', device: MTTY2 }));
  const rest = mig.length + dirty.length + pasid.length + dma.length + qm.length;
  const ks = kselftestIds(PER_PROFILE - rest).map((id): Spec => ({ id, suite: 'kselftest', device: KSELF }));
  return [...mig, ...ks, ...dirty, ...pasid, ...dma, ...qm];
}

const CALL_TRACE = [
  'Call Trace:', ' <TASK>', ' dump_stack_lvl+0x5d/0x80', ' mtty_set_state+0x1c4/0x3a0 [mtty]', ' vfio_mig_get_next_state+0x2a/0x60',
  ' vfio_ioctl_device_feature_mig_device_state+0xd2/0x190', ' vfio_ioctl_device_feature+0x17e/0x1f0', ' vfio_device_fops_unl_ioctl+0x7b/0x7a0',
  ' __x64_sys_ioctl+0x94/0xd0', ' do_syscall_64+0x82/0x170', ' entry_SYSCALL_64_after_hwframe+0x76/0x7e', ' </TASK>',
];

function stepLog(r: () => number, id: string, n: number): string[] {
  const log: string[] = [];
  for (let i = 0; i < n; i++) {
    const op = ['set_state', 'get_state', 'read_data', 'write_data', 'precopy_info', 'feature_probe'][Math.floor(r() * 6)]!;
    log.push(`-> {"op":"${op}","device":"mtty-2","case":${JSON.stringify(id)},"seq":${i},"arg":${Math.floor(r() * 65536)}}`);
    log.push(`<- {"ok":true,"errno":"OK","state":"${STATES[Math.floor(r() * 7)]}","bytes":${Math.floor(r() * 4096)},"ms":${(r() * 3).toFixed(2)}}`);
  }
  return log;
}

function ktap(r: () => number, id: string, fail: boolean): string[] {
  const name = id.split('/').pop()!;
  const out = [`# Starting ${name}`, `#  RUN           ${name} ...`];
  for (let i = 0; i < 6 + Math.floor(r() * 10); i++) out.push(`# iommufd.c:${100 + Math.floor(r() * 2800)}:${name.split('.').pop()}:Expected 0 (0) == ${'ioctl(self->fd, IOMMU_IOAS_MAP, &cmd)'} (0)`);
  out.push(fail ? `#      FAIL  ${name}` : `#            OK  ${name}`, `${fail ? 'not ok' : 'ok'} 1 ${name}`);
  return out;
}

/** A generated mdev UUID, as the suite makes one per case. */
function uuid(r: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(r() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** The oops mtty prints after a close in RESUMING: a call trace and registers, as the console watcher keeps it. */
function oops(r: () => number, step: string): ConsoleFault {
  const regs = Array.from({ length: 24 }, (_, i) => {
    const value = Math.floor(r() * 2 ** 32).toString(16).padStart(16, '0');
    return `RIP: 0010:mtty_set_state+0x${(0x1c4 + i).toString(16)}/0x3a0 [mtty] R${8 + (i % 8)}: ${value}`;
  });
  const title = 'BUG: kernel NULL pointer dereference, address: 0000000000000010';
  return { kind: 'oops', title, step, lines: ['#PF: supervisor read access in kernel mode', ...CALL_TRACE, ...regs] };
}

interface Draw { status: Status; reason?: string; observed?: Record<string, unknown>; expected?: Record<string, unknown>; measurements?: Record<string, unknown>; oops?: boolean }

/** What each case gives on each profile: the shape of the run the project sees today. */
function outcome(s: Spec, profile: string, r: () => number): Draw {
  const noIommu = profile === 'none';
  if (s.id.startsWith('migration/close-reopen/in-') && !s.id.endsWith('RUNNING')) {
    const inResuming = s.id.endsWith('RESUMING');
    return {
      status: 'fail', oops: inResuming,
      reason: inResuming ? 'after close in RESUMING the next SET_STATE oopsed: BUG: kernel NULL pointer dereference' : 'the device reopened in its old state, not RUNNING',
      observed: { stateAfterReopen: s.id.split('in-')[1], errno: 'OK' }, expected: { stateAfterReopen: 'RUNNING', errno: 'OK' },
    };
  }
  if (s.id === 'kselftest/vfio/build') return { status: 'fail', reason: 'the vfio selftests do not build: vfio_pci_device.c:212: undefined reference to `calloc_assert\'' };
  if (/^dirty\/iommufd\/bitmap\/.*\/(all|sparse|edges)$/.test(s.id) || s.id === 'dirty/iommufd/contiguous-iopte/second-half') {
    const lost = 1 + Math.floor(r() * 64);
    return { status: 'fail', reason: `GET_DIRTY_BITMAP lost ${lost} marked pages (false negatives)`, observed: { falseNegatives: lost, falsePositives: 0 }, expected: { falseNegatives: 0 } };
  }
  if (s.id.startsWith('dirty/oracle/')) {
    const fpA = Math.floor(r() * 40);
    const fpB = Math.floor(r() * 40);
    const lost = s.id.endsWith('every-other') ? 0 : 1 + Math.floor(r() * 8);
    return {
      status: lost ? 'fail' : 'pass', ...(lost ? { reason: `observer A lost ${lost} pages` } : {}),
      observed: { pages: 2048, marked: 1024, falseNegativesA: lost, falseNegativesB: lost, falsePositivesA: fpA, falsePositivesB: fpB, identical: fpA === fpB },
      expected: { falseNegativesA: 0, falseNegativesB: 0, identical: true },
    };
  }
  if (s.suite === 'dma' && noIommu) return { status: 'skip', reason: 'profile none has no vIOMMU: DMA through an IOMMU cannot be checked' };
  if (s.suite === 'pasid' && profile !== 'intel-iommu-sm' && s.device.driver !== 'iommufd_mock') {
    return { status: 'skip', reason: `profile ${profile} has no PASID-capable IOMMU (intel-iommu-sm has)` };
  }
  if (s.id === 'pasid/iopf-capable') {
    return { status: 'expected-unsupported', reason: 'this kernel has no VFIO_DEVICE_ATTACH_PASID for an mdev: ENOTTY', observed: { errno: 'ENOTTY' } };
  }
  if (s.id === 'dma/hwpt-dirty-capability' && profile === 'virtio-iommu') {
    const reason = 'virtio-iommu has no dirty tracking: IOMMU_HWPT_ALLOC_DIRTY_TRACKING gives EOPNOTSUPP';
    return { status: 'expected-unsupported', reason, observed: { errno: 'EOPNOTSUPP' } };
  }
  if (s.id === 'dirty/iommufd/capability/real-device' || s.id === 'dirty/dma-logging/real-report') {
    return { status: 'skip', reason: 'no real device with DMA logging on this target (pass --device BDF on a lab host)' };
  }
  if (s.id === 'migration/precopy/read-at-temporary-end') return { status: 'warning', reason: 'read() at the temporary end of PRE_COPY data returns 0 instead of ENOMSG' };
  if (s.suite === 'qemu-migration') {
    const total = 180 + Math.floor(r() * 400);
    const measurements = {
      totalTimeMs: total, downtimeMs: 8 + Math.floor(r() * 60), setupTimeMs: 2 + Math.floor(r() * 10),
      deviceBytes: s.id.endsWith('multifd') ? 96 + Math.floor(r() * 64) : 96, ramBytes: 500_000 + Math.floor(r() * 4_000_000),
      devices: { source: uuid(r), destination: uuid(r) },
    };
    if (s.id.endsWith('cancel-precopy') && profile === 'amd-iommu') {
      return { status: 'error', reason: 'case timed out after 45000 ms (the nested QEMU did not answer QMP)', measurements };
    }
    const ended = s.id.includes('cancel') ? 'cancelled' : s.id.includes('wrong') ? 'failed' : 'completed';
    return { status: 'pass', observed: { qemu: '11.1.3', status: ended }, measurements };
  }
  if (s.suite === 'kselftest' && r() < 0.012) return { status: 'fail', reason: 'KTAP: not ok (see the output)' };
  if (s.suite === 'kselftest' && r() < 0.02) return { status: 'skip', reason: 'KTAP: SKIP mock domain does not support this page size' };
  if (s.suite === 'migration' && profile === 'amd-iommu' && s.id.startsWith('migration/arc/PRE_COPY_P2P->') && r() < 0.4) {
    return {
      status: 'fail', reason: 'SET_STATE returned EINVAL, the uAPI says the arc succeeds',
      observed: { errno: 'EINVAL', stateAfter: 'PRE_COPY_P2P' }, expected: { errno: 'OK', stateAfter: s.id.split('->')[1] },
    };
  }
  if (s.suite === 'migration' && s.id.includes('->ERROR')) return { status: 'expected-unsupported', reason: 'ERROR is not a state a user may request: EINVAL', observed: { errno: 'EINVAL' } };
  return { status: 'pass', ...(s.suite === 'migration' ? { observed: { errno: 'OK', stateAfter: s.id.split('->')[1] ?? 'RUNNING' } } : {}) };
}

function run(profiles: readonly string[], release: string): RunInfo {
  return {
    tool: { name: 'vfio-conformance', version: '0.1.0' },
    startedAt: '2026-11-30T09:00:00.000Z',
    endedAt: '2026-11-30T09:07:31.000Z',
    complete: true,
    host: { hostname: 'bench-host', arch: 'x86_64', cpus: 2 },
    qemu: { version: '9.2.0', binary: '/usr/bin/qemu-system-x86_64' },
    accel: 'tcg',
    kernel: { release, sourceId: `debian:linux-source-${release.split('.').slice(0, 2).join('.')}`, configHash: '5e1f0c2a9b7d', arch: 'x86_64' },
    profiles: [...profiles],
    suites: [...SAMPLE_SUITES],
    target: { kind: 'qemu' },
    errors: [],
    boots: profiles.map((p, i) => ({ profile: p, ms: 1900 + i * 150 })),
  };
}
type RunInfo = RunResults['run'];

/** The expectations that make the generated known failures known (as expectations/known.json does). */
export const SAMPLE_EXPECTATIONS: Expectations = {
  schema: 1,
  known: [
    { id: 'migration/close-reopen/in-RESUMING', device: 'mtty-*', status: 'fail', reason: 'mtty keeps RESUMING across close/open and the next STOP dereferences the freed resume file (kernel bug)' },
    {
      id: 'migration/close-reopen/in-*', device: 'mtty-*', status: 'fail',
      reason: 'mtty keeps its migration state across close/open; the uAPI expects a fresh RUNNING device (kernel bug in samples/vfio-mdev/mtty.c)',
    },
    { id: 'kselftest/vfio/build', status: 'fail', reason: 'the vfio selftests call calloc_assert(), which nothing in the tree defines' },
    { id: 'dirty/iommufd/bitmap/*', kernel: '7.2*', status: 'fail', reason: 'generic_pt record_dirty() reports a contiguous entry one item short (kernel bug, 7.2)' },
    { id: 'dirty/iommufd/contiguous-iopte/second-half', kernel: '7.2*', status: 'fail', reason: 'generic_pt record_dirty() reports a contiguous entry one item short (kernel bug, 7.2)' },
    { id: 'dirty/oracle/mock-hwpt-pair/*', kernel: '7.2*', status: 'fail', reason: 'generic_pt record_dirty() reports a contiguous entry one item short (kernel bug, 7.2)' },
  ],
};

/**
 * The same result on a 6.x kernel: no generic_pt dirty bug, no PASID attach uAPI, and precopy's
 * v2 opt-in answered with another errno: the changes a release grid has to show.
 */
function olderKernel(r: CaseResult): CaseResult {
  if (r.suite === 'dirty' && r.status === 'fail' && !r.id.startsWith('dirty/oracle/')) {
    return { ...r, status: 'pass', reason: undefined, observed: { falseNegatives: 0, falsePositives: 0 } };
  }
  if (r.suite === 'pasid' && r.device.driver === 'iommufd_mock') {
    return { ...r, status: 'expected-unsupported', reason: 'no VFIO_DEVICE_ATTACH_PASID on this kernel: ENOTTY', observed: { errno: 'ENOTTY' } };
  }
  if (r.id === 'migration/feature/precopy-v2-opt-in') return { ...r, observed: { errno: 'EINVAL', stateAfter: 'RUNNING' } };
  return r;
}

export interface SampleOptions { seed?: number; release?: string; profiles?: readonly string[] }

/** The generated run: 518 results per profile (2,590 for the five default profiles). */
export function sampleRun(opts: SampleOptions = {}): RunResults {
  const r = rng(opts.seed ?? 1);
  const profiles = opts.profiles ?? SAMPLE_PROFILES;
  const list = specs();
  const results: CaseResult[] = [];
  for (const profile of profiles) {
    for (const s of list) {
      const d = outcome(s, profile, r);
      const failing = d.status === 'fail' || d.status === 'error';
      const log = s.suite === 'kselftest' ? ktap(r, s.id, d.status === 'fail') : stepLog(r, s.id, failing ? 40 + Math.floor(r() * 80) : 3 + Math.floor(r() * 14));
      const res: CaseResult = {
        id: s.id, suite: s.suite, profile, device: s.device, status: d.status,
        ...(d.reason ? { reason: d.reason } : {}),
        ...(d.observed ? { observed: d.observed } : {}),
        ...(d.measurements ? { measurements: d.measurements } : {}),
        ...(d.expected ? { expected: d.expected } : {}),
        durationMs: Math.round((s.suite === 'qemu-migration' ? 3000 : s.suite === 'kselftest' ? 120 : 400) * (0.5 + r() * 1.5)),
        faults: d.oops ? [oops(r, s.id)] : [],
        artifacts: { console: `${profile}/console.log`, ...(failing ? { reproducer: `repro/${profile}/${s.id.replace(/[^A-Za-z0-9_.-]+/g, '_')}` } : {}) },
        log,
      };
      results.push(res);
    }
  }
  const release = opts.release ?? '7.2.13';
  return { schema: SCHEMA_VERSION, run: run(profiles, release), results: release.startsWith('6.') ? results.map(olderKernel) : results };
}
