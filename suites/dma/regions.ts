import type { AgentClient } from '../../harness/agent/client.js';
import { HarnessError } from '../../base/errors.js';

/**
 * Register access to an opened vfio device (its BARs and config space, by VFIO region index) through
 * the agent: what a DMA engine's driver in these suites is made of. A short or failed access is a
 * harness error naming the device and the register.
 */
export class DeviceRegions {
  constructor(private readonly agent: AgentClient, readonly dev: number, private readonly name: string) {}

  async write(index: number, offset: number, size: 2 | 4 | 8, value: number): Promise<void> {
    const r = await this.agent.request('region_write', { dev: this.dev, index, offset, size, value });
    if (!r.ok || r.n !== size) throw new HarnessError(`${this.name}: region ${index} write 0x${offset.toString(16)} failed: ${r.err ?? `n=${String(r.n)}`}`);
  }

  async read(index: number, offset: number, size: 2 | 4 | 8): Promise<number> {
    const r = await this.agent.request('region_read', { dev: this.dev, index, offset, size });
    if (!r.ok || r.n !== size) throw new HarnessError(`${this.name}: region ${index} read 0x${offset.toString(16)} failed: ${r.err ?? `n=${String(r.n)}`}`);
    return r.value;
  }
}
