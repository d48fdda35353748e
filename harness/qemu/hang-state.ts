/**
 * What QEMU can tell about a guest that stopped answering, read from its monitor while it still
 * runs: which vCPUs are halted and, on x86, each local APIC (the in-service and request registers
 * show an interrupt that was delivered and never acknowledged, or one that waits behind it). A hang
 * in a driver that waits for a completion interrupt looks the same from the guest whether the
 * device never sent it or the CPU never took it; this tells the two apart.
 */
import { QmpClient } from './qmp.js';

/** The monitor commands that describe the vCPUs of a guest of `arch` with `vcpus` CPUs. */
export function hangStateCommands(arch: string, vcpus: number): string[] {
  const perCpu = arch === 'x86_64'
    ? Array.from({ length: vcpus }, (_, i) => `info lapic ${i}`)
    : ['info registers -a'];
  return ['info status', 'info cpus', ...perCpu];
}

/** The commands' answers, each under its command; a command QEMU refuses says so in its place. */
export async function readHangState(qmpSocket: string, arch: string, vcpus: number, timeoutMs = 10_000): Promise<string> {
  const qmp = await QmpClient.connect(qmpSocket, timeoutMs);
  try {
    const out: string[] = [];
    for (const cmd of hangStateCommands(arch, vcpus)) {
      const text = await qmp.execute('human-monitor-command', { 'command-line': cmd }, timeoutMs)
        .catch((e: Error) => `(not answered: ${e.message})`);
      out.push(`(qemu) ${cmd}\n${text.trimEnd()}`);
    }
    return `${out.join('\n\n')}\n`;
  } finally {
    qmp.close();
  }
}
