import t from 'tap';
import { readFileSync } from 'node:fs';
import { OPS, UAPI_FLAGS, checkReply, type Kind, type OpName, type WireReply } from '../../harness/agent/protocol.js';
import { repoPath } from '../../base/paths.js';

/**
 * agent.c is the source of truth for what the agent answers; harness/agent/protocol.ts declares it
 * for TypeScript. This reads the C (its op table, the `arg_*` getters and `f_*` writers each handler
 * reaches) and holds the declaration to it.
 */

interface CValue { kind: Kind | 'custom'; required: boolean }
interface COp { tableArgs: string[]; args: Map<string, CValue>; reply: Map<string, CValue> }

const GETTER_KIND: Record<string, Kind> = { int: 'int', u64: 'int', u32: 'int', fd: 'int', str: 'str', bool: 'bool', hex: 'hex' };
const WRITER_KIND: Record<string, Kind | 'custom'> = { u64: 'int', i64: 'int', bool: 'bool', hex: 'hex', key: 'custom' };

/** name -> body of every function defined at file level (`static ... name(...)` then `{` ... `}` in column 0). */
function functionBodies(src: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /^static [^;{]*?\b(\w+)\([^;{]*\)\s*\n\{\n([\s\S]*?)\n\}\n/gm;
  for (const m of src.matchAll(re)) out.set(m[1]!, m[2]!);
  return out;
}

/** What one function reads and writes, following calls into the file's own functions (region_access_args, f_bitmap). */
type Reached = { args: Map<string, CValue>; reply: Map<string, CValue> };

function reach(name: string, bodies: Map<string, string>, seen = new Set<string>()): Reached {
  const args = new Map<string, CValue>();
  const reply = new Map<string, CValue>();
  const body = bodies.get(name);
  if (!body || seen.has(name)) return { args, reply };
  seen.add(name);
  for (const m of body.matchAll(/\barg_(\w+)\(c, "(\w+)"(?:, (true|false))?/g)) {
    const kind = GETTER_KIND[m[1]!];
    if (!kind) continue;
    const required = m[1] === 'fd' || m[3] === 'true';
    const had = args.get(m[2]!);
    args.set(m[2]!, { kind, required: required || (had?.required ?? false) });
  }
  for (const m of body.matchAll(/\bf_(\w+)\(c, "(\w+)"/g)) {
    const kind = WRITER_KIND[m[1]!];
    if (kind) reply.set(m[2]!, { kind, required: true });
  }
  for (const m of body.matchAll(/\b(\w+)\(/g)) {
    const callee = m[1]!;
    if (callee === name || !bodies.has(callee)) continue;
    const sub = reach(callee, bodies, seen);
    for (const [k, v] of sub.args) args.set(k, { ...v, required: v.required || (args.get(k)?.required ?? false) });
    for (const [k, v] of sub.reply) reply.set(k, v);
  }
  return { args, reply };
}

/** Every row of `ops[]` ({ "name", op_fn, "arg names" }), with what its handler reads and writes. */
function parseAgent(src: string): Map<string, COp> {
  const table = /static const struct op ops\[\] = \{([\s\S]*?)\n\};/.exec(src);
  if (!table) throw new Error('agent.c: no ops[] table found');
  const bodies = functionBodies(src);
  const ops = new Map<string, COp>();
  for (const m of table[1]!.matchAll(/\{\s*"(\w+)",\s*(\w+),\s*"([^"]*)"\s*\}/g)) {
    const { args, reply } = reach(m[2]!, bodies);
    ops.set(m[1]!, { tableArgs: m[3]!.split(' ').filter(Boolean), args, reply });
  }
  return ops;
}

const src = readFileSync(repoPath('images', 'agent', 'agent.c'), 'utf8');
const agent = parseAgent(src);
const declared = Object.keys(OPS) as OpName[];

t.test('the parser sees agent.c as it is', async (t) => {
  t.ok(agent.size >= 40, `${agent.size} ops in ops[]`);
  t.same([...agent.get('region_read')!.args.keys()].sort(), ['dev', 'index', 'offset', 'size'],
    'arguments read by a helper the handler calls (region_access_args) count');
  t.same([...agent.get('get_dirty_bitmap')!.reply.keys()].sort(), ['bitmap', 'bits_set'], 'values written by f_bitmap count');
  t.same(agent.get('open')!.args.get('nonblock'), { kind: 'bool', required: false });
});

t.test('agent.c and protocol.ts list the same ops', async (t) => {
  t.same([...agent.keys()].sort(), [...declared].sort());
  t.same(declared, [...agent.keys()], 'in the same order, so the two read side by side');
});

t.test('each op\'s table row names exactly the arguments its handler reads', async (t) => {
  for (const [name, op] of agent) t.same([...op.args.keys()].sort(), [...op.tableArgs].sort(), name);
});

t.test('each op takes the same arguments, of the same kinds, optional where agent.c lets them be', async (t) => {
  for (const name of declared) {
    const c = agent.get(name);
    if (!c) continue;
    const ts = Object.fromEntries(Object.entries(OPS[name].args).map(([k, f]) => [k, { kind: f.kind, required: !f.optional }]));
    t.same(ts, Object.fromEntries(c.args), name);
  }
});

t.test('each op answers the same values, of the same kinds', async (t) => {
  for (const name of declared) {
    const c = agent.get(name);
    if (!c) continue;
    const ts = Object.fromEntries(Object.entries(OPS[name].reply).map(([k, f]) => [k, f.kind]));
    const cs = Object.fromEntries([...c.reply].map(([k, v]) => [k, v.kind === 'custom' ? ts[k] : v.kind]));
    t.same(ts, cs, name);
    for (const k of OPS[name].alsoOnFailure) t.ok(k in OPS[name].reply, `${name}: ${k} (also on failure) is a reply value`);
  }
});

t.test('hello\'s uapi flags are the ones agent.c reports', async (t) => {
  const hello = functionBodies(src).get('op_hello') ?? '';
  const flags = new Set([...hello.matchAll(/\{ "(\w+)", (?:true|false) \}/g)].map((m) => m[1]!));
  t.same([...flags].sort(), [...UAPI_FLAGS].sort());
});

const ok = (values: Record<string, unknown>): WireReply => ({ id: 1, ok: true, errno: 0, err: null, ...values });
const failed = (err: string, values: Record<string, unknown> = {}): WireReply =>
  ({ id: 1, ok: false, errno: err.startsWith('E') ? 22 : 0, err, ...values });

t.test('checkReply holds a reply to its op\'s declaration', async (t) => {
  t.equal(checkReply('open_cdev', ok({ dev: 5, iommufd: 6, ioas: 2, devid: 1, pt_id: 2 })), undefined);
  t.match(checkReply('open_cdev', ok({ dev: 5, iommufd: 6, ioas: 2, devid: 1 })), /'pt_id' missing/);
  t.match(checkReply('open_cdev', ok({ dev: 5, iommufd: 6, ioas: 2, devid: 1, pt_id: 2, ptid: 2 })), /undeclared value ptid/);
  t.match(checkReply('read', ok({ n: 1, data: 'zz' })), /'data': a hex string expected/);
  t.match(checkReply('read', ok({ n: 1.5, data: '00' })), /'n': an integer expected, got non-integer number/);
  t.match(checkReply('hello', ok({ version: '1', headers: 7, ops: [], uapi: {} })), /'headers': a string or null/);
  t.equal(checkReply('hello', ok({ version: '1', headers: null, ops: ['hello'], uapi: { iommufd: true } })), undefined);
  t.match(checkReply('hello', ok({ version: '1', headers: null, ops: ['hello'], uapi: { iommufd: 1 } })), /'uapi'/);
  t.equal(checkReply('container_unmap', ok({ size: 4096 })), undefined, 'an optional value may be absent');
  t.equal(checkReply('container_unmap', ok({ size: 4096, bitmap: '00', bits_set: 0 })), undefined);
});

t.test('checkReply: a failure carries only what the op sends with a failed syscall', async (t) => {
  t.equal(checkReply('set_state', failed('EINVAL', { where: 'ioctl', data_fd: -1, state_echo: 9 })), undefined);
  t.equal(checkReply('ioas_map', failed('ENOMEM', { addr: 4096 })), undefined);
  t.match(checkReply('ioas_map', failed('ENOMEM', { addr: 4096, iova: 0 })), /unexpected value iova/);
  t.match(checkReply('set_state', failed('BADREQ', { msg: 'x', data_fd: -1 })), /unexpected value data_fd/,
    'a refused request carries no values');
  t.equal(checkReply('open_cdev', failed('UNSUPPORTED', { msg: 'agent built without X' })), undefined);
  t.match(checkReply('close', { id: 1, ok: true, errno: 0, err: 'EBADF' }), /'err'/);
  t.match(checkReply('close', { id: 1, ok: false, errno: 9, err: null }), /'err'/);
});
