/**
 * A profile's guestDevices: bound inside a guest the runner just booted, through the same device
 * manager a lab host's --device list goes through (plan, journal, restore), and handed to the
 * suites as the guest's devices. The bindings are put back when the guest is closed.
 */
import { DeviceManager } from '../harness/devices/manager.js';
import { parseDeviceArg } from '../harness/devices/plan.js';
import type { QemuGuest } from '../harness/target/qemu-guest.js';
import { HarnessError } from '../base/errors.js';

export async function bindGuestDevices(guest: QemuGuest, specs: string[], log: (line: string) => void): Promise<void> {
  if (!specs.length) return;
  const mgr = new DeviceManager(guest, specs.map((s) => parseDeviceArg(s)), { log, throwaway: true });
  await mgr.makePlan();
  guest.onClose(async () => {
    const r = await mgr.restore();
    if (!r.ok) log(`${guest.name}: device bindings not fully restored: ${r.problems.join('; ')}`);
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
