/**
 * Where the real client's devices come from. In the harness's guest each case makes fresh mtty
 * instances (mtty keeps migration state across a close, so an instance is never reused); on a lab
 * host the cases share the --device list, which is fixed: a case that needs more than it holds is
 * skipped with what is missing. The cases see only a DeviceSource, so one code path serves both.
 *
 * The planning (which device plays which role) is pure and unit-tested; acquiring is the only I/O.
 */
import type { AgentClient } from '../../harness/agent/client.js';
import type { BoundDevice } from '../../harness/devices/manager.js';
import type { Target } from '../../harness/target/target.js';
import type { DeviceInfo } from '../../base/results/schema.js';
import { createMtty, fingerprint, openCdev, pciKind, removeMtty } from '../migration/devices.js';
import { ALL_FLAGS, flagsName } from '../migration/model.js';
import type { NestedOptions, VfioHost } from './nested.js';
import { UartState, Unverified, VirtioNetState, type StateCheck } from './state.js';

export type Backend = NestedOptions['backend'];
export type MttyType = 'mtty-1' | 'mtty-2';

/**
 * What a case asks of the devices, by role:
 *  - pair: a source and a destination of one kind
 *  - wrong-type: a destination of another kind than the source
 *  - single: a source alone (its migration goes to a listener, not a VM)
 *  - hops: the homes of one VM migrated `hops` times, in order
 *  - unsupported: a device whose driver offers no migration (VFIO_DEVICE_FEATURE_MIGRATION fails)
 */
export type Need = 'pair' | 'wrong-type' | 'single' | 'unsupported' | { hops: number };

export type Slot = { kind: 'mdev'; type: MttyType } | { kind: 'pci'; dev: BoundDevice };
export type Plan = { slots: Slot[] } | { skip: string };

// ---------------------------------------------------------------------------------------------
// planning (pure)

/** vendor:device, the identity a migration stream is only valid between. */
export const kindOf = pciKind;

/** `2 (15b3:101e x2)`, `3 (15b3:101e, 8086:1889 x2)`: what --device gave, for skip reasons. */
export function describeKinds(devs: BoundDevice[]): string {
  const counts = new Map<string, number>();
  for (const d of devs) counts.set(kindOf(d), (counts.get(kindOf(d)) ?? 0) + 1);
  const kinds = [...counts].map(([k, n]) => (n > 1 ? `${k} x${n}` : k));
  return `${devs.length}${kinds.length ? ` (${kinds.join(', ')})` : ''}`;
}

/** The first two devices of the first kind listed twice: a stream saved on one loads on the other. */
export function samePair(devs: BoundDevice[]): [BoundDevice, BoundDevice] | undefined {
  for (const a of devs) {
    const b = devs.find((x) => x !== a && kindOf(x) === kindOf(a));
    if (b) return [a, b];
  }
  return undefined;
}

/** The first device and the first of another kind: a destination that must refuse the stream. */
export function differentPair(devs: BoundDevice[]): [BoundDevice, BoundDevice] | undefined {
  const a = devs[0];
  const b = a && devs.find((x) => kindOf(x) !== kindOf(a));
  return a && b ? [a, b] : undefined;
}

export function planMtty(need: Need): Plan {
  if (need === 'unsupported') return { skip: 'mtty offers migration on every kernel the harness builds: no device without it to assign' };
  if (need === 'pair') return { slots: [mdev('mtty-2'), mdev('mtty-2')] };
  // a 1-port instance cannot load a 2-port stream
  if (need === 'wrong-type') return { slots: [mdev('mtty-2'), mdev('mtty-1')] };
  if (need === 'single') return { slots: [mdev('mtty-2')] };
  return { slots: Array.from({ length: need.hops + 1 }, () => mdev('mtty-2')) };
}

function mdev(type: MttyType): Slot {
  return { kind: 'mdev', type };
}

/** How a real device's own driver answered VFIO_DEVICE_FEATURE_MIGRATION, by BDF: an errno name, or 'OK'. */
export type MigrationAnswers = Map<string, string>;

/**
 * The lab host's devices for a case. Devices whose driver answered the migration feature come first
 * (a pair is made of devices that migrate, when there are two); one that answered with an error is
 * the 'unsupported' device. A VM that hops alternates between the two of a pair (each is free again
 * once the QEMU that left it has quit). With no device of another kind, a wrong-type destination is
 * an mtty instance when `mdevDestination` (the harness's guest, which has mtty). The iommufd
 * backend opens the device's cdev, which a kernel without VFIO_DEVICE_CDEV does not give.
 */
/** The devices in --device order, those whose driver did not refuse migration first. */
export function migratingFirst(devs: BoundDevice[], answers: MigrationAnswers): BoundDevice[] {
  const refuses = (d: BoundDevice) => (answers.get(d.bdf) ?? 'OK') !== 'OK';
  return [...devs.filter((d) => !refuses(d)), ...devs.filter(refuses)];
}

export function planReal(all: BoundDevice[], need: Need, backend: Backend, answers: MigrationAnswers = new Map(), mdevDestination = false): Plan {
  const gave = `--device gave ${describeKinds(all)}`;
  const refuses = (d: BoundDevice) => (answers.get(d.bdf) ?? 'OK') !== 'OK';
  const devs = migratingFirst(all, answers);
  let chosen: BoundDevice[];
  if (need === 'unsupported') {
    const d = all.find(refuses);
    if (!d) return { skip: `needs a device whose driver offers no migration (VFIO_DEVICE_FEATURE_MIGRATION fails); ${gave}, each answered it` };
    return { slots: [{ kind: 'pci', dev: d }] };
  }
  if (need === 'wrong-type' && !differentPair(devs) && mdevDestination && devs[0] && !refuses(devs[0])) {
    // mtty-1 cannot load a PCI device's stream: a destination of another kind
    return { slots: [{ kind: 'pci', dev: devs[0] }, mdev('mtty-1')] };
  }
  if (need === 'single') {
    if (!devs[0]) return { skip: `needs a VF; ${gave}` };
    chosen = [devs[0]];
  } else if (need === 'wrong-type') {
    const p = differentPair(devs);
    if (!p) return { skip: `needs two devices of different vendor:device (a destination of the wrong type); ${gave}` };
    chosen = p;
  } else {
    const p = samePair(devs);
    if (!p) return { skip: `needs two VFs of the same kind (source and destination); ${gave}` };
    chosen = need === 'pair' ? p : Array.from({ length: need.hops + 1 }, (_, i) => p[i % 2]!);
  }
  if (backend === 'iommufd') {
    const none = [...new Set(chosen.filter((d) => !d.cdev).map((d) => d.bdf))];
    if (none.length) return { skip: `the iommufd backend needs the devices' VFIO cdev (/dev/vfio/devices); ${none.join(', ')} has none (kernel without VFIO_DEVICE_CDEV?)` };
  }
  return { slots: chosen.map((dev) => ({ kind: 'pci', dev })) };
}

/**
 * Why a device's flags rule a case out, or undefined (also when the flags are unknown: the case
 * then runs and QEMU's walk shows what the device did).
 */
export function flagGap(flags: number | undefined, required: number): string | undefined {
  if (flags === undefined || (flags & required) === required) return undefined;
  return `the device advertises ${flagsName(flags)}, without ${flagsName(required & ~flags)}`;
}

/** Slots that name the same device cannot hold two VMs at once: the next one waits for the last to quit. */
export function distinctSlots(hosts: VfioHost[]): boolean {
  return new Set(hosts.map((h) => (h.kind === 'mdev' ? h.uuid : h.bdf))).size === hosts.length;
}

// ---------------------------------------------------------------------------------------------
// sources

export interface DeviceSource {
  readonly kind: 'mtty' | 'real';
  plan(need: Need, backend: Backend): Plan;
  /** the device a case's result is filed under */
  info(plan: Plan): DeviceInfo;
  /** the planned devices, ready to assign; whatever was made is undone by release() */
  acquire(slots: Slot[]): Promise<VfioHost[]>;
  release(hosts: VfioHost[]): Promise<void>;
  /** migration flags, to turn QEMU's walk into kernel arcs; undefined when unknown */
  flags(h: VfioHost): number | undefined;
  /** the device-content check for one VM (see state.ts) */
  state(): StateCheck;
  /** how the device's driver answered VFIO_DEVICE_FEATURE_MIGRATION (an errno name, or 'OK'); undefined when not asked */
  answer?(bdf: string): string | undefined;
  /** migrate-set-parameters for a source, when its devices need them to converge */
  readonly migrationParams?: Record<string, unknown>;
}

/** mtty advertises STOP_COPY | P2P | PRE_COPY. */
export const MTTY_FLAGS = ALL_FLAGS;

export function mttySource(target: Target): DeviceSource {
  return {
    kind: 'mtty',
    plan: (need) => planMtty(need),
    info: () => ({ driver: 'mtty', class: 'sample', id: 'mtty-2', fingerprint: { migrationFlags: MTTY_FLAGS } }),
    acquire: (slots) => createInstances(target, slots),
    async release(hosts) {
      const uuids = hosts.flatMap((h) => (h.kind === 'mdev' ? [h.uuid] : []));
      // mtty has 24 ports in all: a run cannot keep its instances
      if (uuids.length) await removeMtty(target, uuids);
    },
    flags: () => MTTY_FLAGS,
    state: () => new UartState(),
  };
}

/** One createMtty per type, in slot order; a half-made set is removed before the error goes up. */
async function createInstances(target: Target, slots: Slot[]): Promise<VfioHost[]> {
  const out: VfioHost[] = [];
  const made: string[] = [];
  try {
    for (const type of ['mtty-2', 'mtty-1'] as const) {
      const at = slots.flatMap((s, i) => (s.kind === 'mdev' && s.type === type ? [i] : []));
      if (!at.length) continue;
      const inst = await createMtty(target, type, at.length);
      made.push(...inst.map((x) => x.uuid));
      at.forEach((i, k) => { out[i] = { kind: 'mdev', uuid: inst[k]!.uuid }; });
    }
  } catch (e) {
    if (made.length) await removeMtty(target, made).catch(() => undefined);
    throw e;
  }
  return out;
}

/** What the device says of its migration support (through the agent), or why it could not be asked. */
export type DeviceFacts =
  | { migrationFlags: number; flags: string; stopCopyLength?: number; dmaLogging: string }
  | { unavailable: string; migrationErrno?: string };

/**
 * Ask each device for its flags through its cdev, then close it again before any QEMU opens it.
 * Without a cdev the flags stay unknown: QEMU's walk is still recorded, but no arcs are claimed.
 */
export async function readDeviceFacts(agent: AgentClient, devs: BoundDevice[]): Promise<Map<string, DeviceFacts>> {
  const out = new Map<string, DeviceFacts>();
  for (const d of devs) {
    if (!d.cdev) { out.set(d.bdf, { unavailable: 'no VFIO cdev to ask the migration flags through' }); continue; }
    try {
      const dev = await openCdev(agent, d.cdev, d.bdf);
      try {
        // the driver's own answer, kept apart from a failure to ask
        const f = await agent.request('mig_flags', { dev: dev.fd });
        if (!f.ok) {
          out.set(d.bdf, { unavailable: `${d.bdf} does not support migration: VFIO_DEVICE_FEATURE_MIGRATION gave ${f.err}`, migrationErrno: String(f.err) });
          continue;
        }
        const fp = await fingerprint(agent, dev);
        out.set(d.bdf, { migrationFlags: fp.migrationFlags, flags: flagsName(fp.migrationFlags), stopCopyLength: fp.stopCopyLength, dmaLogging: fp.dmaLogging });
      } finally {
        await agent.request('close', { fd: dev.fd });
      }
    } catch (e) {
      out.set(d.bdf, { unavailable: (e as Error).message });
    }
  }
  return out;
}

/** The errno names the devices' drivers answered VFIO_DEVICE_FEATURE_MIGRATION with ('OK' when they migrate). */
export function migrationAnswers(facts: Map<string, DeviceFacts>): MigrationAnswers {
  const out: MigrationAnswers = new Map();
  for (const [bdf, f] of facts) {
    if ('migrationFlags' in f) out.set(bdf, 'OK');
    else if (f.migrationErrno) out.set(bdf, f.migrationErrno);
  }
  return out;
}

/**
 * A real device's VM must converge. With the legacy container, type1 reports every page the VM has
 * mapped as dirty at each sync unless the device is an mdev (only mdevs scope dirtying to the pages
 * they pin): QEMU sends the nested VM's 128 MiB again on every pass, and its estimate of what it can
 * send in the downtime limit (the bandwidth it measured, mostly zero-page markers, times 300 ms)
 * never covers it, so the migration stays active (seen on the virtio-vf VFs: iommufd completed in
 * 276 ms, the container never did). Telling QEMU the bandwidth the switchover has lets it stop the
 * VM and send the rest; the device's part of the migration is unchanged.
 */
export const REAL_MIGRATION_PARAMS = { 'avail-switchover-bandwidth': 1024 * 1024 * 1024 };

export interface RealOptions {
  /** the class results are filed under: 'variant' in the harness's guest (our emulated devices), 'real' on a lab host */
  cls: 'real' | 'variant';
  /** the target has mtty: an mtty instance can be a wrong-type destination */
  mtty?: Target;
}

/** A virtio-net VF's state is read back through its registers (state.ts); other devices' is not verified. */
function stateCheckFor(driver: string | undefined): StateCheck {
  return driver === 'virtio_vfio_pci' ? new VirtioNetState() : new Unverified();
}

export function realSource(devs: BoundDevice[], facts: Map<string, DeviceFacts>, o: RealOptions = { cls: 'real' }): DeviceSource {
  const byBdf = new Map(devs.map((d) => [d.bdf, d]));
  const answers = migrationAnswers(facts);
  const plan = (need: Need, backend: Backend) => planReal(devs, need, backend, answers, !!o.mtty);
  return {
    kind: 'real',
    plan,
    info(p) {
      const pci = 'slots' in p ? p.slots.flatMap((s) => (s.kind === 'pci' ? [s.dev] : [])) : [];
      // a skipped case is filed under the device its pair would have started from
      const src = pci[0] ?? migratingFirst(devs, answers)[0]!;
      const mdevDst = 'slots' in p ? p.slots.find((s): s is Extract<Slot, { kind: 'mdev' }> => s.kind === 'mdev') : undefined;
      const dst = pci[1];
      return {
        driver: src.driver, class: o.cls, id: kindOf(src),
        fingerprint: {
          bdf: src.bdf,
          ...(dst && dst.bdf !== src.bdf ? { destination: dst.bdf } : {}),
          ...(mdevDst ? { destination: mdevDst.type } : {}),
          ...facts.get(src.bdf),
        },
      };
    },
    async acquire(slots) {
      const out = o.mtty && slots.some((s) => s.kind === 'mdev') ? await createInstances(o.mtty, slots) : [];
      slots.forEach((s, i) => {
        if (s.kind === 'pci') out[i] = { kind: 'pci', bdf: s.dev.bdf };
        else if (!out[i]) unreachable(s);
      });
      return out;
    },
    // the PCI devices belong to the run (the device manager restores them at its end); mtty instances do not
    async release(hosts) {
      const uuids = hosts.flatMap((h) => (h.kind === 'mdev' ? [h.uuid] : []));
      if (uuids.length && o.mtty) await removeMtty(o.mtty, uuids);
    },
    flags(h) {
      if (h.kind === 'mdev') return MTTY_FLAGS;
      const f = byBdf.has(h.bdf) ? facts.get(h.bdf) : undefined;
      return f && 'migrationFlags' in f ? f.migrationFlags : undefined;
    },
    state: () => stateCheckFor(devs[0]?.driver),
    answer: (bdf) => answers.get(bdf),
    migrationParams: REAL_MIGRATION_PARAMS,
  };
}

function unreachable(s: Slot): never {
  throw new Error(`this target has no mtty for ${JSON.stringify(s)}: a lab host's plan holds only PCI devices`);
}
