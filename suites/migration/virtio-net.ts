import type { CaseContext } from '../types.js';
import type { Dev } from './steps.js';
import type { Personality } from './personality.js';

/**
 * A virtio-net VF (virtio_vfio_pci, or any virtio 1.x net function behind vfio): the state a driver
 * leaves in the device and reads back through the VF's own registers. The source is taken through
 * the virtio initialisation up to FEATURES_OK with two queues configured (not enabled: enabling
 * makes the device map rings the suite has not mapped); the destination must then read back the
 * same status, features and queue configuration, and the source's MAC in its device configuration
 * (a destination VF has a MAC of its own until the state arrives).
 * Register offsets: virtio 1.x "Common configuration structure layout" (include/uapi/linux/virtio_pci.h).
 */
const CONFIG_REGION = 7; // VFIO_PCI_CONFIG_REGION_INDEX
const CAP_VNDR = 0x09;
const CFG_COMMON = 1;
const CFG_DEVICE = 4;
const C = { DFSELECT: 0, DF: 4, GFSELECT: 8, GF: 12, STATUS: 20, Q_SELECT: 22, Q_SIZE: 24, Q_ENABLE: 28, Q_DESCLO: 32 };
const S = { ACKNOWLEDGE: 1, DRIVER: 2, FEATURES_OK: 8 };
const VIRTIO_NET_F_MAC = 5;
const VIRTIO_F_VERSION_1 = 32;
/** queue 0 and 1: a size and three ring addresses each, recognisable and page aligned */
const QUEUES = [
  { index: 0, size: 64, rings: [0x12345000, 0x12346000, 0x12347000] },
  { index: 1, size: 32, rings: [0x22345000, 0x22346000, 0x22347000] },
];

interface Layout { bar: number; common: number; device: number }

async function rd(d: Dev, ctx: CaseContext, index: number, offset: number, size: number): Promise<number> {
  const r = await ctx.agent.request('region_read', { dev: d.fd, index, offset, size });
  if (!r.ok) throw new Error(`${d.label}: region ${index} read at 0x${offset.toString(16)} failed: ${r.err}`);
  return Number(r.value);
}

async function wr(d: Dev, ctx: CaseContext, index: number, offset: number, size: number, value: number): Promise<void> {
  const r = await ctx.agent.request('region_write', { dev: d.fd, index, offset, size, value });
  if (!r.ok) throw new Error(`${d.label}: region ${index} write at 0x${offset.toString(16)} failed: ${r.err}`);
}

/** The virtio vendor capabilities, as the driver finds them in config space. */
async function layout(d: Dev, ctx: CaseContext): Promise<Layout> {
  let pos = await rd(d, ctx, CONFIG_REGION, 0x34, 1);
  const found: Partial<Layout> = {};
  for (let n = 0; pos && n < 48; n++) {
    const id = await rd(d, ctx, CONFIG_REGION, pos, 1);
    if (id === CAP_VNDR) {
      const type = await rd(d, ctx, CONFIG_REGION, pos + 3, 1);
      const bar = await rd(d, ctx, CONFIG_REGION, pos + 4, 1);
      const off = await rd(d, ctx, CONFIG_REGION, pos + 8, 4);
      if (type === CFG_COMMON) { found.bar = bar; found.common = off; }
      if (type === CFG_DEVICE) found.device = off;
    }
    pos = await rd(d, ctx, CONFIG_REGION, pos + 1, 1);
  }
  if (found.bar === undefined || found.common === undefined || found.device === undefined) {
    throw new Error(`${d.label}: no virtio common/device configuration capability in config space`);
  }
  return found as Layout;
}

async function mac(d: Dev, ctx: CaseContext, l: Layout): Promise<string> {
  const b: string[] = [];
  for (let i = 0; i < 6; i++) b.push((await rd(d, ctx, l.bar, l.device + i, 1)).toString(16).padStart(2, '0'));
  return b.join(':');
}

export function virtioNetPersonality(): Personality {
  let sourceMac = '';
  let features: [number, number] = [0, 0];
  return {
    async program(d, ctx) {
      const l = await layout(d, ctx);
      const c = (off: number, size: number, v: number) => wr(d, ctx, l.bar, l.common + off, size, v);
      sourceMac = await mac(d, ctx, l);
      await c(C.STATUS, 1, 0);
      await c(C.STATUS, 1, S.ACKNOWLEDGE | S.DRIVER);
      await c(C.DFSELECT, 4, 0);
      const offered = await rd(d, ctx, l.bar, l.common + C.DF, 4);
      features = [offered & (1 << VIRTIO_NET_F_MAC), 1 << (VIRTIO_F_VERSION_1 - 32)];
      for (const sel of [0, 1]) {
        await c(C.GFSELECT, 4, sel);
        await c(C.GF, 4, features[sel]!);
      }
      await c(C.STATUS, 1, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
      for (const q of QUEUES) {
        await c(C.Q_SELECT, 2, q.index);
        await c(C.Q_SIZE, 2, q.size);
        for (const [i, a] of q.rings.entries()) await c(C.Q_DESCLO + 8 * i, 4, a);
      }
    },
    async verify(d, ctx) {
      const out: string[] = [];
      const l = await layout(d, ctx);
      const c = (off: number, size: number) => rd(d, ctx, l.bar, l.common + off, size);
      const want = (what: string, got: number, exp: number) => {
        if (got !== exp) out.push(`${what} = 0x${got.toString(16)}, expected 0x${exp.toString(16)}`);
      };
      want('device_status', await c(C.STATUS, 1), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
      for (const sel of [0, 1]) {
        await wr(d, ctx, l.bar, l.common + C.GFSELECT, 4, sel);
        want(`driver_feature[${sel}]`, await c(C.GF, 4), features[sel]!);
      }
      for (const q of QUEUES) {
        await wr(d, ctx, l.bar, l.common + C.Q_SELECT, 2, q.index);
        want(`queue ${q.index} queue_size`, await c(C.Q_SIZE, 2), q.size);
        want(`queue ${q.index} queue_enable`, await c(C.Q_ENABLE, 2), 0);
        for (const [i, a] of q.rings.entries()) want(`queue ${q.index} ring address ${i}`, await c(C.Q_DESCLO + 8 * i, 4), a);
      }
      const m = await mac(d, ctx, l);
      if (m !== sourceMac) out.push(`MAC ${m}, expected the source's ${sourceMac}`);
      return out;
    },
  };
}
