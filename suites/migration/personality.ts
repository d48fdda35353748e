import type { CaseContext } from '../types.js';
import type { Dev } from './steps.js';

/**
 * Device-specific knowledge for proving that state moved: how to put recognisable state into the
 * source and read it back on the destination. Devices without one are checked by the
 * device-independent re-save comparison alone.
 */
export interface Personality {
  program(d: Dev, ctx: CaseContext): Promise<void>;
  /** mismatches, empty when the destination shows what was programmed */
  verify(d: Dev, ctx: CaseContext): Promise<string[]>;
}

// 16550 register offsets (include/uapi/linux/serial_reg.h) in mtty's BAR0, region index 0.
const RX_TX = 0, IER = 1, LCR = 3, MCR = 4, LSR = 5, SCR = 7;

async function w(d: Dev, ctx: CaseContext, off: number, value: number): Promise<void> {
  const r = await ctx.agent.request('region_write', { dev: d.fd, index: 0, offset: off, size: 1, value });
  if (!r.ok) throw new Error(`region write at ${off} failed: ${r.err}`);
}

async function rd(d: Dev, ctx: CaseContext, off: number): Promise<number> {
  const r = await ctx.agent.request('region_read', { dev: d.fd, index: 0, offset: off, size: 1 });
  if (!r.ok) throw new Error(`region read at ${off} failed: ${r.err}`);
  return r.value;
}

/** mtty: UART registers and the loopback FIFO are part of the saved state (vfio-uapi.md §4.5). */
export const mttyPersonality: Personality = {
  async program(d, ctx) {
    // Drain whatever an earlier case left in the FIFO so the check below sees only our bytes.
    for (let i = 0; i < 16 && ((await rd(d, ctx, LSR)) & 1); i++) await rd(d, ctx, RX_TX);
    await w(d, ctx, SCR, 0xa5);
    await w(d, ctx, LCR, 0x03);
    await w(d, ctx, IER, 0x05);
    await w(d, ctx, MCR, 0x0b);
    for (const ch of [0x61, 0x62, 0x63]) await w(d, ctx, RX_TX, ch);
  },
  async verify(d, ctx) {
    const out: string[] = [];
    const want: [string, number, number][] = [['SCR', SCR, 0xa5], ['LCR', LCR, 0x03], ['IER', IER, 0x05], ['MCR', MCR, 0x0b]];
    for (const [name, off, v] of want) {
      const got = await rd(d, ctx, off);
      if (got !== v) out.push(`${name} = 0x${got.toString(16)}, expected 0x${v.toString(16)}`);
    }
    const fifo: number[] = [];
    for (let i = 0; i < 3; i++) fifo.push(await rd(d, ctx, RX_TX));
    if (fifo.join() !== '97,98,99') out.push(`FIFO read back ${JSON.stringify(fifo)}, expected "abc"`);
    return out;
  },
};
