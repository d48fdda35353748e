import type { RunInfo } from '../../base/results/schema.js';

/** A plausible, complete run header for report tests; each test overrides what it asserts on. */
export function runInfo(over: Partial<RunInfo> = {}): RunInfo {
  return {
    tool: { name: 'vfio-conformance', version: '0.1.0' },
    startedAt: '2025-01-02T03:04:05.678Z',
    endedAt: '2025-01-02T03:14:05.678Z',
    complete: true,
    host: { hostname: 'ci-1', arch: 'x86_64', cpus: 2 },
    qemu: { version: '9.2.0', binary: '/usr/bin/qemu-system-x86_64' },
    accel: 'tcg',
    kernel: { release: '6.12.9', sourceId: 'debian:linux-source-6.12', configHash: 'c0ffee', arch: 'x86_64' },
    profiles: ['q35-vtd', 'virt-smmuv3'],
    suites: ['migration', 'pasid'],
    target: { kind: 'qemu' },
    errors: [],
    ...over,
  };
}
