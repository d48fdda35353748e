/**
 * Every op of vfio-agent: its arguments and its reply values, declared once.
 *
 * The wire (JSON lines, the reply envelope, BADREQ / UNSUPPORTED, handles) is described in
 * images/agent/PROTOCOL.md beside agent.c. This file is the op list: the C side stays the source of
 * truth for what the agent answers, and test/unit/agent-protocol.test.ts reads agent.c's op table,
 * its `arg_*` getters and its `f_*` reply writers and fails when this declaration says otherwise.
 *
 * From the declaration come the types `AgentClient.request` takes and returns, so a misspelt argument
 * or reply field is a compile error, and `checkReply`, which the client runs on every reply so that
 * the types never lie at run time.
 */

/** What a value is on the wire: int, bool, str and hex as agent.c's `arg_*` getters and `f_*` writers handle them; the rest are hello's. */
export type Kind = 'int' | 'bool' | 'str' | 'hex' | 'nullable-str' | 'str-list' | 'bool-map';

/** One argument or reply value. `T` is its TypeScript type; `O` says whether it may be absent. */
export interface Field<T, O extends boolean = boolean> {
  readonly kind: Kind;
  readonly optional: O;
  /** the strings a 'str' accepts, when it is a choice */
  readonly choices?: readonly string[];
  /** never set: carries T for the types below */
  readonly _type?: T;
}

type Fields = Record<string, Field<unknown>>;

const field = <T>(kind: Kind, choices?: readonly string[]): Field<T, false> => ({ kind, optional: false, choices });

/** Integers: fds, object ids, flags, sizes, addresses (u64 past 2^53 loses precision, see PROTOCOL.md). */
const int = field<number>('int');
const bool = field<boolean>('bool');
const str = field<string>('str');
/** bytes as hex, lower-case from the agent */
const hex = field<string>('hex');
const oneOf = <const C extends readonly string[]>(...choices: C): Field<C[number], false> => field<C[number]>('str', choices);
const opt = <T>(f: Field<T, false>): Field<T, true> => ({ ...f, optional: true });

/** hello's `uapi`: the optional uAPI the agent was compiled with (its headers had it). */
export const UAPI_FLAGS = [
  'precopy_info_v2', 'attach_pasid', 'dma_logging', 'mig_data_size', 'iommufd',
  'device_cdev', 'hw_info', 'dirty_tracking', 'precopy_info',
] as const;
export type UapiFlag = typeof UAPI_FLAGS[number];

interface OpSpec<A extends Fields, R extends Fields, F extends keyof R> {
  readonly args: A;
  readonly reply: R;
  /** reply values the agent sends with a failed syscall too (never with BADREQ or UNSUPPORTED) */
  readonly alsoOnFailure: readonly F[];
}

function op<const A extends Fields, const R extends Fields, const F extends keyof R & string = never>(
  args: A, reply: R, alsoOnFailure: readonly F[] = [],
): OpSpec<A, R, F> {
  return { args, reply, alsoOnFailure };
}

/* One entry per row of agent.c's `ops[]`, in its order, each with what it does. */
export const OPS = {
  // ---------------------------------------------------------------- migration

  /** `headers` is the "X.Y.Z" of the uapi headers built against (null when they do not say); `ops` lists every op. */
  hello: op({}, {
    version: str,
    headers: field<string | null>('nullable-str'),
    ops: field<string[]>('str-list'),
    // an agent older than a flag does not send it: absent reads as not compiled in
    uapi: field<Partial<Record<UapiFlag, boolean>>>('bool-map'),
  }),
  /** plain open(2) with O_CLOEXEC: sysfs/debugfs files, FIFOs, negative tests */
  open: op({ path: str, flags: oneOf('r', 'w', 'rw'), nonblock: opt(bool) }, { fd: int }),
  /**
   * Opens the cdev (e.g. /dev/vfio/devices/vfio0) and /dev/iommu, VFIO_DEVICE_BIND_IOMMUFD,
   * IOMMU_IOAS_ALLOC, VFIO_DEVICE_ATTACH_IOMMUFD_PT. On a failing step: its errno and `where`,
   * everything opened so far closed.
   */
  open_cdev: op({ path: str }, { dev: int, iommufd: int, ioas: int, devid: int, pt_id: int }),
  /**
   * Container, group, VFIO_SET_IOMMU (`iommu_type`, default 3 = type1v2; 1 = type1 v1),
   * VFIO_GROUP_GET_DEVICE_FD of `device` (a BDF or mdev UUID).
   */
  open_group: op({ group: int, device: str, iommu_type: opt(int) }, { dev: int, container: int, group_fd: int }),
  /** fds 0-2 are refused (BADREQ): they are the protocol */
  close: op({ fd: int }, {}),
  /**
   * VFIO_DEVICE_FEATURE with the full flags word (index and GET/SET/PROBE, unknown bits allowed).
   * `argsz` (0..1 MiB) defaults to 8 + payload length; the buffer is max(8 + payload, argsz) bytes,
   * so a lying argsz cannot make the kernel write outside it. `payload` comes back as the kernel
   * left it, same length as sent.
   */
  feature: op({ dev: int, flags: int, payload: opt(hex), argsz: opt(int) }, { ret: int, payload: hex }, ['ret', 'payload']),
  mig_flags: op({ dev: int }, { flags: int }),
  get_state: op({ dev: int }, { state: int, data_fd: int }),
  /** any u32 state, out of range allowed; `data_fd` -1 or a new fd, `state_echo` as the kernel copied it back */
  set_state: op({ dev: int, state: int }, { data_fd: int, state_echo: int }, ['data_fd', 'state_echo']),
  data_size: op({ dev: int }, { stop_copy_length: int }),
  /** VFIO_MIG_GET_PRECOPY_INFO on a data fd; `flags` is passed in, `argsz` defaults to 24 */
  precopy_info: op(
    { fd: int, flags: opt(int), argsz: opt(int) },
    { flags: int, initial_bytes: int, dirty_bytes: int },
  ),
  /** SET feature 12 (PRECOPY_INFOv2), argsz 8 */
  precopy_info_v2: op({ dev: int }, {}),
  /** `max` at most 1 MiB */
  read: op({ fd: int, max: int }, { n: int, data: hex }),
  /**
   * Reads until EOF, an error or `limit` (default 64 MiB, at most 256 MiB) in `chunk`s (default 4096,
   * at most 1 MiB). `reads` counts the read calls including the last; `eof` is true when read returned
   * 0. On a read error the values are sent too, with what was read before it.
   */
  read_all: op(
    { fd: int, chunk: opt(int), limit: opt(int) },
    { n: int, data: hex, reads: int, eof: bool },
    ['n', 'data', 'reads', 'eof'],
  ),
  write: op({ fd: int, data: hex }, { n: int }),
  /** `offset` is signed, `max` at most 1 MiB */
  pread: op({ fd: int, max: int, offset: int }, { n: int, data: hex }),
  /** `offset` is signed; e.g. a block into a device region at region_info.offset + x */
  pwrite: op({ fd: int, offset: int, data: hex }, { n: int }),
  /** `offset` is signed, `whence` any int */
  lseek: op({ fd: int, offset: int, whence: int }, { pos: int }),
  /** `timeout_ms` default 0, -1 = forever */
  poll: op({ fd: int, events: int, timeout_ms: opt(int) }, { ret: int, revents: int }),
  /** VFIO_DEVICE_RESET */
  reset: op({ dev: int }, {}),
  region_info: op({ dev: int, index: int }, { size: int, offset: int, flags: int }),
  /** `size` 1, 2, 4 or 8; `value` in host byte order; `n` < size is a short read */
  region_read: op({ dev: int, index: int, offset: int, size: int }, { value: int, n: int }),
  /** `value` must fit in `size` */
  region_write: op({ dev: int, index: int, offset: int, size: int, value: int }, { n: int }),
  /**
   * Any ioctl on any fd ("other ioctls on a data fd give ENOTTY"): `payload` hex (the buffer has a
   * 64 KiB zeroed floor) or `arg` passed as the argument itself (default 0), not both. `payload`
   * comes back when one was sent.
   */
  fd_ioctl: op(
    { fd: int, cmd: int, payload: opt(hex), arg: opt(int) },
    { ret: int, payload: opt(hex) },
    ['ret', 'payload'],
  ),

  // ---------------------------------------------------------------- memory, iommufd, dirty tracking, PASID

  /** anonymous mmap (MAP_NORESERVE), kept until mem_free */
  mem_alloc: op({ length: int, hugetlb: opt(bool) }, { addr: int }),
  mem_free: op({ addr: int, length: int }, {}),
  /** the page frame behind `addr` (agent memory, touched first) from /proc/self/pagemap: which IOPTE sizes can map it */
  mem_pfn: op({ addr: int }, { pfn: int }),
  /** only inside memory this agent allocated (else BADREQ, never a fault); `length` at most 1 MiB */
  mem_read: op({ addr: int, length: int }, { data: hex }),
  /** same rule as mem_read: what a device should read by DMA */
  mem_write: op({ addr: int, data: hex }, {}),
  /** opens /dev/iommu */
  iommufd_open: op({}, { fd: int }),
  ioas_alloc: op({ iommufd: int }, { ioas: int }),
  /** IOMMU_OPTION; `option_op` 0 SET, 1 GET (e.g. option 1 HUGE_PAGES = 0) */
  ioas_option: op(
    { iommufd: int, object: opt(int), option: int, option_op: opt(int), val: opt(int) },
    { val: int },
  ),
  /**
   * IOMMU_IOAS_MAP of `addr` (existing memory) or of fresh memory. `iova` sets FIXED_IOVA; `flags`
   * is raw (default READABLE|WRITEABLE[|FIXED_IOVA]). The memory stays, `addr` also on failure.
   */
  ioas_map: op(
    { iommufd: int, ioas: int, length: int, iova: opt(int), flags: opt(int), addr: opt(int), hugetlb: opt(bool) },
    { iova: int, addr: int },
    ['addr'],
  ),
  /** `length`: bytes unmapped */
  ioas_unmap: op({ iommufd: int, ioas: int, iova: int, length: int }, { length: int }),
  /** IOMMU_DESTROY of `object` (not `id`: that is the request's own) */
  destroy: op({ iommufd: int, object: int }, {}),
  /** IOMMU_GET_HW_INFO in the 7.2 layout whatever the headers; `data_len` default 64, at most 4096 */
  get_hw_info: op(
    { iommufd: int, dev_id: int, flags: opt(int), in_data_type: opt(int), data_len: opt(int) },
    { type: int, capabilities: int, max_pasid_log2: int, data_len: int, data: hex },
  ),
  hwpt_alloc: op(
    { iommufd: int, dev_id: int, pt_id: int, flags: opt(int), data_type: opt(int), data: opt(hex) },
    { hwpt: int },
  ),
  /** `flags` overrides the word `enable` makes, for unknown-bit tests */
  set_dirty_tracking: op({ iommufd: int, hwpt: int, enable: bool, flags: opt(int), reserved: opt(int) }, {}),
  /**
   * `flags` 1 = NO_CLEAR; `bitmap_offset` misaligns the user bitmap (at most 65536 bytes);
   * `bitmap_size` defaults to room for length / lowest-set-bit(page_size) + 1 bits. The reply carries
   * at most 1 MiB of the bitmap, and `bits_set` over all of it.
   */
  get_dirty_bitmap: op(
    {
      iommufd: int, hwpt: int, iova: int, length: int, page_size: int,
      flags: opt(int), reserved: opt(int), bitmap_offset: opt(int), bitmap_size: opt(int),
    },
    { bitmap: hex, bits_set: int },
  ),
  /** IOMMU_TEST_OP_MOCK_DOMAIN on an IOAS or HWPT; `dev_flags` uses MOCK_DOMAIN_FLAGS (NO_DIRTY 1, PASID 4) */
  test_mock_domain: op({ iommufd: int, pt_id: int, dev_flags: opt(int) }, { stdev_id: int, hwpt_id: int, idev_id: int }),
  /** RID re-attach (MOCK_DOMAIN_REPLACE) */
  test_mock_replace: op({ iommufd: int, stdev_id: int, pt_id: int }, { pt_id: int }),
  /** IOMMU_TEST_OP_DIRTY: marks the pages of `bitmap` dirty */
  test_dirty: op(
    { iommufd: int, hwpt: int, iova: int, length: int, page_size: int, bitmap: hex },
    { out_nr_dirty: int },
  ),
  /**
   * 7.2 test ops 18-21. `pt_id` for attach/replace; for check the HWPT expected (0 = detached), and
   * check answers EINVAL when the PASID is elsewhere. `pt_id` comes back except for detach.
   */
  test_pasid: op(
    { iommufd: int, stdev_id: int, action: oneOf('attach', 'replace', 'detach', 'check'), pasid: int, pt_id: opt(int) },
    { pt_id: opt(int) },
  ),
  /** `dev` a bound cdev fd; `flags` 1 = VFIO_DEVICE_ATTACH_PASID; `argsz` default 16 (the 7.2 layout) */
  vfio_attach_pt: op({ dev: int, pt_id: int, flags: opt(int), pasid: opt(int), argsz: opt(int) }, { pt_id: int }),
  /** `flags` 1 = VFIO_DEVICE_DETACH_PASID; `argsz` default 12 */
  vfio_detach_pt: op({ dev: int, flags: opt(int), pasid: opt(int), argsz: opt(int) }, {}),
  /** VFIO_IOMMU_GET_INFO; the mig_* values only when the migration capability is there */
  container_info: op({ container: int }, {
    flags: int, iova_pgsizes: int, migration_cap: bool,
    mig_version: opt(int), mig_flags: opt(int), mig_pgsize_bitmap: opt(int), mig_max_dirty_bitmap_size: opt(int),
  }),
  /** VFIO_IOMMU_MAP_DMA of `addr` or fresh memory; `flags` default READ|WRITE; `addr` also on failure */
  container_map: op(
    { container: int, iova: int, size: int, flags: opt(int), addr: opt(int), hugetlb: opt(bool) },
    { addr: int },
    ['addr'],
  ),
  /** `bitmap_pgsize` adds GET_DIRTY_BITMAP and a vfio_bitmap (of `bitmap_size` bytes); `bitmap` only then */
  container_unmap: op(
    { container: int, iova: int, size: int, flags: opt(int), bitmap_pgsize: opt(int), bitmap_size: opt(int) },
    { size: int, bitmap: opt(hex), bits_set: opt(int) },
  ),
  /**
   * VFIO_IOMMU_DIRTY_PAGES: container fds only (the same number as VFIO_DEVICE_FEATURE). get_bitmap
   * takes `iova`, `size`, `pgsize` and `bitmap_size` (default size/pgsize bits in u64 words) and is
   * the only action that answers `bitmap`. `flags` and `argsz` are raw overrides.
   */
  container_dirty: op(
    {
      container: int, action: oneOf('start', 'stop', 'get_bitmap'),
      iova: opt(int), size: opt(int), pgsize: opt(int), bitmap_size: opt(int), flags: opt(int), argsz: opt(int),
    },
    { bitmap: opt(hex), bits_set: opt(int) },
  ),
  /**
   * Device DMA logging. start: `page_size`, `ranges` ("iova:length,...", decimal or 0x-hex),
   * `num_ranges` override (the range buffer is zero-padded to it); answers `page_size` as copied
   * back. report: `iova`, `length`, `page_size`, `bitmap_size`; answers `bitmap`. `flags` (the whole
   * feature flags word) and `argsz` are raw overrides.
   */
  dma_logging: op(
    {
      dev: int, action: oneOf('start', 'stop', 'report'), page_size: opt(int), ranges: opt(str), num_ranges: opt(int),
      iova: opt(int), length: opt(int), bitmap_size: opt(int), flags: opt(int), argsz: opt(int),
    },
    { page_size: opt(int), bitmap: opt(hex), bits_set: opt(int) },
  ),
} as const;

type Ops = typeof OPS;
export type OpName = keyof Ops;

type ValueOf<F> = F extends Field<infer T> ? T : never;
type Simplify<T> = { [K in keyof T]: T[K] } & unknown;
type RequiredKeys<S> = { [K in keyof S]: S[K] extends Field<unknown, true> ? never : K }[keyof S];
type OptionalKeys<S> = Exclude<keyof S, RequiredKeys<S>>;
type Values<S> = Simplify<{ [K in RequiredKeys<S>]: ValueOf<S[K]> } & { [K in OptionalKeys<S>]?: ValueOf<S[K]> }>;

/** The arguments of one op (`id` and `op` are the envelope's: the client adds them). */
export type Args<O extends OpName> = Values<Ops[O]['args']>;

/** The ops that need no argument. */
export type ArglessOp = { [O in OpName]: RequiredKeys<Ops[O]['args']> extends never ? O : never }[OpName];

/** The values an op answers with on success. */
export type ReplyValues<O extends OpName> = Values<Ops[O]['reply']>;

type FailureKeys<O extends OpName> = Ops[O]['alsoOnFailure'][number];

/** Every reply echoes the request's id (null when the request had none). */
interface Envelope {
  id: number | null;
}

/** The syscalls went through. */
export type OkReply<O extends OpName> = Envelope & { ok: true; errno: 0; err: null } & ReplyValues<O>;

/**
 * A syscall failed (`errno` and its name in `err`, the step in `where`), or the agent refused the
 * request (`err` BADREQ or UNSUPPORTED, `errno` 0, `msg`). Only the values listed as `alsoOnFailure`
 * can come with it, and only with a failed syscall.
 */
export type FailReply<O extends OpName> = Envelope & { ok: false; errno: number; err: string; where?: string; msg?: string }
  & { [K in keyof ReplyValues<O>]?: K extends FailureKeys<O> ? ReplyValues<O>[K] : undefined };

/** One op's reply (for a reply of one of several ops, write the union: Reply<'a'> | Reply<'b'>). */
export type Reply<O extends OpName> = OkReply<O> | FailReply<O>;

/** What every reply has, whatever its op: for code that only asks whether a step went through. */
export interface AnyReply {
  id: number | null;
  ok: boolean;
  errno: number;
  err: string | null;
  where?: string;
  msg?: string;
}

/** A reply whose op is not known at compile time (replaying a recording, the wire itself). */
export interface WireReply extends AnyReply {
  [value: string]: unknown;
}

export function isOpName(name: string): name is OpName {
  return Object.prototype.hasOwnProperty.call(OPS, name);
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'non-integer number';
  return typeof v;
}

/** Why `v` is not a value of `f`, or undefined when it is. */
function misfit(f: Field<unknown>, v: unknown): string | undefined {
  const is = kindOf(v);
  const want = (ok: boolean, what: string) => (ok ? undefined : `${what} expected, got ${is}`);
  switch (f.kind) {
    case 'int': return want(is === 'integer', 'an integer');
    case 'bool': return want(is === 'boolean', 'a boolean');
    case 'hex': return want(typeof v === 'string' && v.length % 2 === 0 && !/[^0-9a-fA-F]/.test(v), 'a hex string');
    case 'str':
      if (typeof v !== 'string') return `a string expected, got ${is}`;
      return f.choices && !f.choices.includes(v) ? `one of ${f.choices.join(', ')} expected, got "${v}"` : undefined;
    case 'nullable-str': return want(is === 'null' || is === 'string', 'a string or null');
    case 'str-list': return want(Array.isArray(v) && v.every((x) => typeof x === 'string'), 'an array of strings');
    case 'bool-map':
      return want(is === 'object' && Object.values(v as object).every((x) => typeof x === 'boolean'), 'an object of booleans');
  }
}

const ENVELOPE = new Set(['id', 'ok', 'errno', 'err', 'where', 'msg']);

/**
 * Where a reply to `op` departs from the declaration, or undefined when it does not: the envelope's
 * types, on success every value present and of its kind, on failure only the values the op sends
 * with a failed syscall, and nothing undeclared.
 */
export function checkReply(op: OpName, r: WireReply): string | undefined {
  if (typeof r.ok !== 'boolean') return `'ok' is ${kindOf(r.ok)}, not a boolean`;
  if (kindOf(r.errno) !== 'integer') return `'errno' is ${kindOf(r.errno)}, not an integer`;
  if (r.ok ? r.err !== null : typeof r.err !== 'string') return `'err' is ${kindOf(r.err)} in a reply with ok ${r.ok}`;
  const spec: OpSpec<Fields, Fields, string> = OPS[op];
  const sent = Object.keys(r).filter((k) => !ENVELOPE.has(k));
  const allowed = r.ok ? Object.keys(spec.reply) : r.err === 'BADREQ' || r.err === 'UNSUPPORTED' ? [] : spec.alsoOnFailure;
  const extra = sent.filter((k) => !allowed.includes(k));
  if (extra.length) return `${r.ok ? 'undeclared' : 'unexpected'} value${extra.length > 1 ? 's' : ''} ${extra.join(', ')}`;
  for (const [k, f] of Object.entries(spec.reply)) {
    if (!(k in r)) {
      if (r.ok && !f.optional) return `value '${k}' missing`;
      continue;
    }
    const why = misfit(f, r[k]);
    if (why) return `value '${k}': ${why}`;
  }
  return undefined;
}
