/**
 * Pure model of the VFIO migration v2 state machine, derived from a device's migration flags.
 *
 * Everything the migration suites expect about SET_STATE (which arcs exist, which composed paths the
 * core walks, where a data fd appears or is disabled, which requests fail with EINVAL and which of
 * those also WARN) is computed here, so the suites never hard-code an arc list.
 *
 * Facts come from the kernel (identical in 6.12 and 7.2):
 *   - include/uapi/linux/vfio.h: enum vfio_device_mig_state, VFIO_MIGRATION_* flag bits.
 *   - drivers/vfio/vfio_main.c: vfio_mig_get_next_state() (the 8x8 next-hop table, the per-state
 *     flag requirements, and the "skip unsupported hops" loop).
 *   - the driver loop every in-tree driver uses around it:
 *       while (cur != new) { next = vfio_mig_get_next_state(cur, new); step(cur -> next); cur = next; }
 * The oracle for this file is test/fixtures/fsm-appendix-a.md (generated from the kernel table).
 */

/** enum vfio_device_mig_state. Values are uAPI; never renumber. */
export const State = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7,
} as const;
export type State = (typeof State)[keyof typeof State];
export type StateName = keyof typeof State;

/** VFIO_DEVICE_STATE_NR: any value >= this is not a state (the kernel rejects it with EINVAL). */
export const NUM_STATES = 8;

/** All states by number (index == value). */
export const STATES: readonly State[] = [0, 1, 2, 3, 4, 5, 6, 7];

/**
 * The order the reference tables (and debug output) list states in: the natural walk of a migration,
 * ERROR last. Used only for stable, human-friendly ordering of requiredArcs().
 */
export const DISPLAY_ORDER: readonly State[] = [
  State.RUNNING, State.RUNNING_P2P, State.STOP, State.STOP_COPY,
  State.RESUMING, State.PRE_COPY, State.PRE_COPY_P2P, State.ERROR,
];

const NAMES: readonly StateName[] = [
  'ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P',
];

/** VFIO_MIGRATION_* bits of struct vfio_device_feature_migration.flags. */
export const Flag = {
  STOP_COPY: 1 << 0,
  P2P: 1 << 1,
  PRE_COPY: 1 << 2,
} as const;
export const ALL_FLAGS = Flag.STOP_COPY | Flag.P2P | Flag.PRE_COPY;

/**
 * The only flag combinations the uAPI defines (others are "to be defined in the future", and
 * vfio-pci-core refuses to register a migration driver without STOP_COPY).
 */
export const VALID_FLAG_SETS: readonly number[] = [0x1, 0x3, 0x5, 0x7];

/**
 * state_flags_table from vfio_mig_get_next_state(): the flags a device must advertise for a state to
 * exist. ERROR is ~0 there so that it is never "supported": it can neither be requested nor be the
 * current state of a transition (the kernel WARNs in the latter case).
 */
const STATE_FLAGS: readonly number[] = [
  /* ERROR */ 0xffffffff,
  /* STOP */ Flag.STOP_COPY,
  /* RUNNING */ Flag.STOP_COPY,
  /* STOP_COPY */ Flag.STOP_COPY,
  /* RESUMING */ Flag.STOP_COPY,
  /* RUNNING_P2P */ Flag.STOP_COPY | Flag.P2P,
  /* PRE_COPY */ Flag.STOP_COPY | Flag.PRE_COPY,
  /* PRE_COPY_P2P */ Flag.STOP_COPY | Flag.P2P | Flag.PRE_COPY,
];

/**
 * vfio_from_fsm_table[cur][target]: the next hop assuming every optional state exists. It encodes
 * "shortest path, saving-group states only at the start or end of a path". ERROR as a hop means
 * "no path" (STOP_COPY -> PRE_COPY*, any target ERROR, anything from ERROR).
 */
const E = State.ERROR, S = State.STOP, R = State.RUNNING, SC = State.STOP_COPY, RS = State.RESUMING,
  RP = State.RUNNING_P2P, PC = State.PRE_COPY, PP = State.PRE_COPY_P2P;
const NEXT: readonly (readonly State[])[] = [
  //            target: ERROR STOP RUNNING STOP_COPY RESUMING RUNNING_P2P PRE_COPY PRE_COPY_P2P
  /* ERROR        */ [E, E, E, E, E, E, E, E],
  /* STOP         */ [E, S, RP, SC, RS, RP, RP, RP],
  /* RUNNING      */ [E, RP, R, RP, RP, RP, PC, RP],
  /* STOP_COPY    */ [E, S, S, SC, S, S, E, E],
  /* RESUMING     */ [E, S, S, S, RS, S, S, S],
  /* RUNNING_P2P  */ [E, S, R, S, S, RP, R, PP],
  /* PRE_COPY     */ [E, R, R, PP, R, R, PC, PP],
  /* PRE_COPY_P2P */ [E, RP, RP, SC, RP, RP, PC, PP],
];

// ---------------------------------------------------------------------------------------------
// Names

/** True for a number that is one of the 8 defined states (any u32 can arrive from the device). */
export function isState(n: number): n is State {
  return Number.isInteger(n) && n >= 0 && n < NUM_STATES;
}

/**
 * Name of a state; values that are not states render as a number so reports stay readable for the
 * deliberately invalid requests: small values in decimal (`8`), large ones in hex (`0xffffffff`).
 */
export function stateName(n: number): string {
  if (isState(n)) return NAMES[n]!;
  if (Number.isInteger(n) && n > 255) return '0x' + n.toString(16);
  return String(n);
}

/**
 * Inverse of stateName(): accepts `RUNNING`, `running`, `VFIO_DEVICE_STATE_RUNNING`, and numbers
 * (`8`, `0xffffffff`) so that invalid values can be written in plans and CLIs. Numbers must fit a u32
 * (device_state is a __u32). Returns undefined for anything else.
 */
export function parseState(name: string): number | undefined {
  const s = name.trim().toUpperCase().replace(/^VFIO_DEVICE_STATE_/, '');
  const i = NAMES.indexOf(s as StateName);
  if (i >= 0) return i;
  if (/^(0X[0-9A-F]+|[0-9]+)$/.test(s)) {
    const v = Number(s.startsWith('0X') ? parseInt(s.slice(2), 16) : parseInt(s, 10));
    if (Number.isSafeInteger(v) && v <= 0xffffffff) return v;
  }
  return undefined;
}

/** e.g. `STOP_COPY|P2P` for 0x3 (unknown bits as hex). */
export function flagsName(flags: number): string {
  const parts: string[] = [];
  for (const [k, bit] of Object.entries(Flag)) if (flags & bit) parts.push(k);
  const rest = flags & ~ALL_FLAGS;
  if (rest) parts.push('0x' + (rest >>> 0).toString(16));
  return parts.length ? parts.join('|') : '0';
}

/** Arc label as used by the reference tables: `STOP->STOP_COPY`. */
export function arcName(arc: Arc): string {
  return `${stateName(arc[0])}->${stateName(arc[1])}`;
}

// ---------------------------------------------------------------------------------------------
// Flags and supported states

/**
 * Checks that flags is one of the four defined combinations and returns it. Throws a RangeError that
 * says what is wrong otherwise: the model (like the kernel table) has no meaning for other sets, so
 * a suite must report such a device as non-conforming instead of computing expectations from it.
 */
export function validateFlags(flags: number): number {
  if (!Number.isInteger(flags) || flags < 0) {
    throw new RangeError(`invalid migration flags ${String(flags)}: not a non-negative integer`);
  }
  const valid = 'valid combinations are 0x1 (STOP_COPY), 0x3 (STOP_COPY|P2P), 0x5 (STOP_COPY|PRE_COPY), 0x7 (STOP_COPY|P2P|PRE_COPY)';
  const unknown = flags & ~ALL_FLAGS || (flags > 0xffffffff ? 1 : 0);
  if (unknown) {
    throw new RangeError(`invalid migration flags 0x${flags.toString(16)}: unknown bits set (only STOP_COPY=0x1, P2P=0x2, PRE_COPY=0x4 are defined); ${valid}`);
  }
  if (!(flags & Flag.STOP_COPY)) {
    throw new RangeError(`invalid migration flags 0x${flags.toString(16)} (${flagsName(flags)}): VFIO_MIGRATION_STOP_COPY (0x1) is mandatory; ${valid}`);
  }
  return flags;
}

/** True if `state` exists on a device with these flags. ERROR is never "supported" (kernel: ~0). */
export function isSupported(state: number, flags: number): boolean {
  validateFlags(flags);
  if (!isState(state)) return false;
  const need = STATE_FLAGS[state]!;
  return (need & flags) === need;
}

/**
 * States a device with these flags can be in, in numeric order. Includes ERROR because a device can
 * land there after a failed arc (even though ERROR is not isSupported(): it cannot be requested).
 */
export function supportedStates(flags: number): State[] {
  validateFlags(flags);
  return STATES.filter((s) => s === State.ERROR || isSupported(s, flags));
}

// ---------------------------------------------------------------------------------------------
// Data fd sessions

/**
 * The saving group {PRE_COPY, PRE_COPY_P2P, STOP_COPY}: the saving fd returned on entering it stays
 * valid while the device moves inside the group (uAPI: it carries one continuous stream).
 */
export const SAVING_GROUP: readonly State[] = [State.STOP_COPY, State.PRE_COPY, State.PRE_COPY_P2P];

export function inSavingGroup(s: number): boolean {
  return (SAVING_GROUP as readonly number[]).includes(s);
}

/** Which data fd is live while the device is in `s`: saving, resuming, or none. */
export function sessionKind(s: number): 'saving' | 'resuming' | null {
  if (inSavingGroup(s)) return 'saving';
  if (s === State.RESUMING) return 'resuming';
  return null;
}

export type Arc = readonly [from: State, to: State];

/**
 * An arc returns a new data fd when it enters a session state from outside that session
 * (RUNNING->PRE_COPY, RUNNING_P2P->PRE_COPY_P2P, STOP->STOP_COPY, STOP->RESUMING). Moves inside the
 * saving group reuse the fd, so they create nothing.
 */
export function createsDataFd(arc: Arc): boolean {
  const [from, to] = arc;
  return sessionKind(to) !== null && !(inSavingGroup(from) && inSavingGroup(to));
}

/**
 * An arc ends the current session (driver disables the fd: further I/O gives ENODEV) when it leaves a
 * session state other than by moving inside the saving group (STOP_COPY->STOP, RESUMING->STOP,
 * PRE_COPY->RUNNING, PRE_COPY_P2P->RUNNING_P2P).
 */
export function endsSession(arc: Arc): boolean {
  const [from, to] = arc;
  return sessionKind(from) !== null && !(inSavingGroup(from) && inSavingGroup(to));
}

// ---------------------------------------------------------------------------------------------
// Next hop and paths

export interface Einval {
  ok: false;
  errno: 'EINVAL';
  /** The kernel also fires WARN_ON (a splat; a panic with panic_on_warn): request made while in ERROR. */
  warn: boolean;
  reason: string;
}

export type Hop = { ok: true; next: State } | Einval;

function einval(warn: boolean, reason: string): Einval {
  return { ok: false, errno: 'EINVAL', warn, reason };
}

/**
 * Exactly vfio_mig_get_next_state(cur, target): the first arc the core asks the driver to execute.
 * Check order matters and mirrors the kernel: an impossible *current* state (ERROR, >= 8, or not
 * advertised) is a WARN_ON + EINVAL before the target is even looked at; an invalid target is a plain
 * EINVAL. Then the table is walked, skipping hops through unsupported states; reaching ERROR means
 * there is no path (EINVAL, no WARN).
 * Note: drivers never call this with cur == target (their loop stops first), see path().
 */
export function nextHop(cur: number, target: number, flags: number): Hop {
  validateFlags(flags);
  if (!isSupported(cur, flags)) {
    return einval(true, cur === State.ERROR
      ? 'device is in ERROR: the kernel WARNs and refuses every transition; only VFIO_DEVICE_RESET recovers'
      : `current state ${stateName(cur)} cannot exist with flags ${flagsName(flags)}: the kernel WARNs`);
  }
  if (!isState(target)) return einval(false, `target ${stateName(target)} is not a state (values >= ${NUM_STATES} are invalid)`);
  if (target === State.ERROR) return einval(false, 'ERROR cannot be requested');
  if (!isSupported(target, flags)) {
    return einval(false, `target ${stateName(target)} is not supported with flags ${flagsName(flags)}`);
  }
  let next = NEXT[cur]![target]!;
  while (next !== State.ERROR && !isSupported(next, flags)) next = NEXT[next]![target]!;
  if (next === State.ERROR) return einval(false, `no path from ${stateName(cur)} to ${stateName(target)} (blocked by the kernel table)`);
  return { ok: true, next };
}

export interface PathOk {
  ok: true;
  from: State;
  to: State;
  /** Arcs the driver executes, in order; [] for a no-op (from == to). */
  arcs: Arc[];
  /** One arc: the driver sees exactly what the user asked for. */
  direct: boolean;
  /** The SET returns a fresh data fd (only ever the last arc can create one). */
  newDataFd: boolean;
  /** Kind of that fresh fd. */
  newDataFdKind: 'saving' | 'resuming' | null;
  /** The fd that was live before the SET is disabled by this path. */
  endsSession: boolean;
  /** The arc that disables it. */
  endsSessionAt: Arc | null;
  /** A data fd was live before the SET and still is afterwards (no-op or move inside the saving group). */
  keepsFd: boolean;
}

export type PathResult = PathOk | Einval;

/**
 * Outcome of SET device_state = `to` while in `from`, as the common driver loop produces it when every
 * arc succeeds: from == to is a no-op (returns 0, data_fd = -1, no kernel call, hence no WARN even for
 * ERROR -> ERROR); otherwise the loop asks nextHop() until it reaches `to`, and the first failure is
 * the result with the state unchanged (a later failure cannot happen with the kernel table).
 */
export function path(from: number, to: number, flags: number): PathResult {
  validateFlags(flags);
  const possible = from === State.ERROR || isSupported(from, flags);
  if (!possible) {
    // A device can never report such a state; a model query for it is a harness bug or a driver
    // reporting garbage. The kernel would WARN on the first next-hop call.
    return einval(true, `current state ${stateName(from)} cannot exist with flags ${flagsName(flags)}`);
  }
  const start = from as State;
  if (from === to) {
    return {
      ok: true, from: start, to: start, arcs: [], direct: false, newDataFd: false, newDataFdKind: null,
      endsSession: false, endsSessionAt: null, keepsFd: sessionKind(start) !== null,
    };
  }
  const arcs: Arc[] = [];
  let cur: State = start;
  while (cur !== to) {
    const hop = nextHop(cur, to, flags);
    if (!hop.ok) {
      if (arcs.length === 0) return hop;
      throw new Error(`model bug: ${stateName(from)}->${stateName(to)} failed mid-path at ${stateName(cur)}: ${hop.reason}`);
    }
    arcs.push([cur, hop.next]);
    cur = hop.next;
    if (arcs.length > NUM_STATES) throw new Error(`model bug: ${stateName(from)}->${stateName(to)} does not terminate`);
  }
  const last = arcs[arcs.length - 1]!;
  const newDataFd = createsDataFd(last);
  const endsAt = arcs.find(endsSession) ?? null;
  return {
    ok: true, from: start, to: cur, arcs, direct: arcs.length === 1, newDataFd,
    newDataFdKind: newDataFd ? sessionKind(last[1]) : null,
    endsSession: endsAt !== null, endsSessionAt: endsAt,
    keepsFd: sessionKind(start) !== null && endsAt === null,
  };
}

export interface RequiredArc {
  from: State;
  to: State;
  createsDataFd: boolean;
  endsSession: boolean;
}

/**
 * The direct arcs a driver must implement for these flags: exactly the set of single steps the core
 * can ever ask for, i.e. the union of the arcs of every successful path between supported states.
 * Sorted by DISPLAY_ORDER of (from, to), like the reference lists.
 */
export function requiredArcs(flags: number): RequiredArc[] {
  validateFlags(flags);
  const seen = new Map<string, RequiredArc>();
  for (const from of STATES) {
    for (const to of STATES) {
      const p = path(from, to, flags);
      if (!p.ok) continue;
      for (const a of p.arcs) {
        seen.set(arcName(a), { from: a[0], to: a[1], createsDataFd: createsDataFd(a), endsSession: endsSession(a) });
      }
    }
  }
  const rank = (s: State) => DISPLAY_ORDER.indexOf(s);
  return [...seen.values()].sort((x, y) => rank(x.from) - rank(y.from) || rank(x.to) - rank(y.to));
}
