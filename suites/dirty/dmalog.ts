import type { AgentClient } from '../../harness/agent/client.js';
import type { Args, Reply } from '../../harness/agent/protocol.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import type { CaseDef } from '../types.js';
import { Checks, FEATURE } from '../migration/steps.js';
import { errOf, outcome } from './api.js';

/**
 * Device DMA logging, VFIO_DEVICE_FEATURE_DMA_LOGGING_{START,STOP,REPORT} (vfio-uapi.md §2.2), on
 * mtty. mtty's log_ops are stubs returning 0, so what is tested is the core's validation in
 * drivers/vfio/vfio_main.c, which runs before any driver code, plus mtty's documented stub answers.
 */
export interface DmaLogState {
  agent: AgentClient;
  /** mtty device fd (cdev, bound to iommufd), or why there is none */
  dev?: number;
  setupError?: string;
}

type Case = CaseDef<DmaLogState>;
/** the state once setup found the device: what every case but the skipped one runs on */
type Ready = DmaLogState & { dev: number };

/** LOG_MAX_RANGES = PAGE_SIZE / sizeof(struct vfio_device_feature_dma_logging_range) = 4096 / 16 */
export const LOG_MAX_RANGES = 256;
const PG = 4096;

/** n non-overlapping page-aligned ranges, 2 pages apart, as the agent's "iova:len,..." string. */
export function rangeList(n: number, base = 0x100000, len = PG): string {
  return Array.from({ length: n }, (_, i) => `0x${(base + i * 2 * len).toString(16)}:0x${len.toString(16)}`).join(',');
}

type LogArgs = Omit<Args<'dma_logging'>, 'dev' | 'action'>;

function log(s: Ready, action: Args<'dma_logging'>['action'], args: LogArgs = {}): Promise<Reply<'dma_logging'>> {
  return s.agent.request('dma_logging', { dev: s.dev, action, ...args });
}

export function dmaLoggingCases(device: DeviceInfo): Case[] {
  const withDev = (id: string, fn: (s: Ready, c: Checks, obs: Record<string, unknown>) => Promise<Record<string, unknown>>): Case => ({
    id,
    device,
    async run(s) {
      const dev = s.dev;
      if (dev === undefined) return { status: 'error', reason: `mtty not available: ${s.setupError ?? 'unknown'}` };
      const ready = { ...s, dev };
      const c = new Checks();
      const obs: Record<string, unknown> = {};
      const exp = await fn(ready, c, obs);
      await log(ready, 'stop');
      return outcome(c, obs, exp);
    },
  });
  const start = (name: string, want: string, why: string, args: LogArgs): Case =>
    withDev(`dirty/dma-logging/start/${name}`, async (s, c, obs) => {
      obs.errno = errOf(await log(s, 'start', { page_size: PG, ...args }));
      c.eq(why, obs.errno, want);
      return { errno: want };
    });
  const report = (name: string, want: string, why: string, args: LogArgs): Case =>
    withDev(`dirty/dma-logging/report/${name}`, async (s, c, obs) => {
      await log(s, 'start', { page_size: PG, ranges: rangeList(1) });
      obs.errno = errOf(await log(s, 'report', { iova: 0x100000, length: PG, page_size: PG, ...args }));
      c.eq(why, obs.errno, want);
      return { errno: want };
    });
  return [
    withDev('dirty/dma-logging/probe', async (s, c, obs) => {
      const r = await s.agent.request('feature', { dev: s.dev, flags: FEATURE.PROBE | FEATURE.SET | FEATURE.DMA_LOGGING_START });
      obs.probe = errOf(r);
      c.eq('PROBE|SET DMA_LOGGING_START (mtty has log_ops)', obs.probe, 'OK');
      return { probe: 'OK' };
    }),
    withDev('dirty/dma-logging/start-stop', async (s, c, obs) => {
      const r = await log(s, 'start', { page_size: PG, ranges: rangeList(4) });
      obs.start = errOf(r);
      obs.pageSizeBack = r.page_size;
      obs.stop = errOf(await log(s, 'stop'));
      c.eq('START with 4 ranges', obs.start, 'OK');
      c.eq('page_size copied back (mtty keeps it)', obs.pageSizeBack, PG);
      c.eq('STOP', obs.stop, 'OK');
      return { start: 'OK', pageSizeBack: PG, stop: 'OK' };
    }),
    withDev('dirty/dma-logging/report-nothing-dirty', async (s, c, obs) => {
      await log(s, 'start', { page_size: PG, ranges: rangeList(1, 0x100000, 0x100000) });
      const r = await log(s, 'report', { iova: 0x100000, length: 0x100000, page_size: PG });
      obs.errno = errOf(r);
      obs.bitsSet = r.bits_set;
      c.eq('REPORT', obs.errno, 'OK');
      c.eq('pages reported (mtty does no DMA; its stub reports nothing)', obs.bitsSet, 0);
      return { errno: 'OK', bitsSet: 0 };
    }),
    withDev('dirty/dma-logging/mtty-stub-semantics', async (s, c, obs) => {
      // Driver choices of mtty's stubs (vfio-uapi.md §2.2): START twice and REPORT without START succeed.
      await log(s, 'stop');
      obs.reportWithoutStart = errOf(await log(s, 'report', { iova: 0x100000, length: PG, page_size: PG }));
      obs.start = errOf(await log(s, 'start', { page_size: PG, ranges: rangeList(1) }));
      obs.startAgain = errOf(await log(s, 'start', { page_size: PG, ranges: rangeList(1) }));
      c.eq('REPORT without START', obs.reportWithoutStart, 'OK');
      c.eq('START', obs.start, 'OK');
      c.eq('START again without STOP', obs.startAgain, 'OK');
      return { reportWithoutStart: 'OK', start: 'OK', startAgain: 'OK', note: 'mlx5/pds answer EINVAL to both; mtty is a stub' };
    }),
    start('zero-ranges', 'EINVAL', 'num_ranges 0', { ranges: '' }),
    start('max-ranges', 'OK', `num_ranges ${LOG_MAX_RANGES} (LOG_MAX_RANGES)`, { ranges: rangeList(LOG_MAX_RANGES) }),
    start('too-many-ranges', 'E2BIG', `num_ranges ${LOG_MAX_RANGES + 1}`, { ranges: rangeList(LOG_MAX_RANGES + 1) }),
    start('overlapping-ranges', 'EINVAL', 'two ranges sharing a page', { ranges: '0x100000:0x2000,0x101000:0x2000' }),
    start('iova-misaligned', 'EINVAL', 'range iova not a multiple of page_size', { ranges: '0x100800:0x1000' }),
    start('length-misaligned', 'EINVAL', 'range length not a multiple of page_size', { ranges: '0x100000:0x1800' }),
    start('page-size-zero', 'EINVAL', 'page_size 0 (no non-empty range is aligned to it)', { page_size: 0, ranges: rangeList(1) }),
    // The core aligns with the mask page_size - 1 and never checks for a power of two (§2.2): 0x3000
    // passes for ranges whose bits avoid the mask, and the driver sees the odd page size.
    start('page-size-not-power-of-two', 'OK', 'page_size 0x3000 with mask-aligned ranges (core does not check)', { page_size: 0x3000, ranges: '0x10000:0x10000' }),
    start('range-overflows', 'EOVERFLOW', 'iova + length wraps', { ranges: '0xfffffffffffff000:0x2000' }),
    start('payload-short', 'EINVAL', 'argsz covers 16 of the 24 payload bytes', { ranges: rangeList(1), argsz: 8 + 16 }),
    start('with-get', 'EINVAL', 'START requested with GET', { ranges: rangeList(1), flags: FEATURE.GET | FEATURE.DMA_LOGGING_START }),
    withDev('dirty/dma-logging/stop/with-get', async (s, c, obs) => {
      obs.errno = errOf(await log(s, 'stop', { flags: FEATURE.GET | FEATURE.DMA_LOGGING_STOP }));
      c.eq('STOP requested with GET', obs.errno, 'EINVAL');
      return { errno: 'EINVAL' };
    }),
    report('page-size-below-4k', 'EINVAL', 'REPORT page_size 2048', { page_size: 2048, length: 2048 }),
    report('page-size-not-power-of-two', 'EINVAL', 'REPORT page_size 0x3000', { page_size: 0x3000, length: 0x3000 }),
    report('range-overflows', 'EOVERFLOW', 'REPORT iova + length wraps', { iova: 18446744073709000000, length: 2 ** 32, bitmap_size: 8 }),
    report('payload-short', 'EINVAL', 'argsz covers 24 of the 32 payload bytes', { argsz: 8 + 24 }),
    report('with-set', 'EINVAL', 'REPORT requested with SET', { flags: FEATURE.SET | FEATURE.DMA_LOGGING_REPORT }),
    {
      id: 'dirty/dma-logging/real-report',
      device,
      async run() {
        return { status: 'skip', reason: "mtty's log_ops are stubs; real DMA logging needs a device that implements it (lab host)" };
      },
    },
  ];
}
