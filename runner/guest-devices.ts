/**
 * A profile's guestDevices: bound inside a guest the runner just booted, through the same device
 * manager a lab host's --device list goes through (plan, journal, restore), and handed to the
 * suites as the guest's devices. The bindings are put back when the guest is closed.
 */
import { DeviceManager, type Shell } from '../harness/devices/manager.js';
import { parseDeviceArg } from '../harness/devices/plan.js';
import type { QemuGuest } from '../harness/target/qemu-guest.js';
import { HarnessError } from '../base/errors.js';

/** How long closing a guest waits for its bindings to be put back. */
export const RESTORE_LIMIT_MS = 30_000;

export async function bindGuestDevices(
  guest: Pick<QemuGuest, 'name' | 'onClose' | 'devices' | 'facts'> & Shell, specs: string[], log: (line: string) => void, restoreLimitMs = RESTORE_LIMIT_MS,
): Promise<void> {
  if (!specs.length) return;
  const mgr = new DeviceManager(guest, specs.map((s) => parseDeviceArg(s)), { log, throwaway: true });
  await mgr.makePlan();
  guest.onClose(async () => {
    // The guest is discarded next: a restore stuck in the kernel (sriov_numvfs 0 waiting on a device
    // lock a hung driver holds) must not keep the run from ending.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((res) => { timer = setTimeout(() => res('late'), restoreLimitMs); });
    const r = await Promise.race([mgr.restore().catch((e: Error) => ({ ok: false, problems: [e.message] })), late]);
    clearTimeout(timer);
    if (r === 'late') log(`${guest.name}: device bindings not restored within ${restoreLimitMs / 1000} s (a driver may hold the device); the guest is discarded anyway`);
    else if (!r.ok) log(`${guest.name}: device bindings not fully restored: ${r.problems.join('; ')}`);
  });
  let bound;
  try {
    bound = await mgr.apply();
  } catch (e) {
    throw new HarnessError(`${guest.name}: binding the profile's devices in the guest failed: ${(e as Error).message}`);
  }
  guest.devices = bound;
  guest.facts.devices = bound.map((d) => `${d.bdf}=${d.driver}`).join(',');
}
