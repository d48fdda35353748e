import t from 'tap';
import { listBuilds } from '../../harness/kernel/build.js';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { buildAgent } from '../../images/agent/build.js';
import { HarnessError } from '../../base/errors.js';
import { repoPath } from '../../base/paths.js';

type Reply = Record<string, unknown> & { id: number | null; ok: boolean; errno: number; err: string | null };

/** Minimal JSON-lines client: one reply per line, in order; `raw` keeps the exact text. */
class AgentProc {
  private proc: ChildProcessWithoutNullStreams;
  private pending: string[] = [];
  private waiters: ((line: string) => void)[] = [];
  private nextId = 1000;
  readonly exited: Promise<number | null>;

  constructor(path: string) {
    this.proc = spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr.resume();
    createInterface({ input: this.proc.stdout, crlfDelay: Infinity }).on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.pending.push(l);
    });
    this.exited = new Promise((res) => this.proc.on('exit', (code) => res(code)));
  }

  sendRaw(data: string | Buffer): void {
    this.proc.stdin.write(data);
  }

  nextRaw(timeoutMs = 20000): Promise<string> {
    const l = this.pending.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('agent did not reply in time')), timeoutMs);
      this.waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  async next(): Promise<Reply> {
    return JSON.parse(await this.nextRaw()) as Reply;
  }

  async req(op: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const id = this.nextId++;
    this.sendRaw(JSON.stringify({ id, op, ...args }) + '\n');
    const r = await this.next();
    if (r.id !== id) throw new Error(`reply out of order: wanted id ${id}, got ${JSON.stringify(r)}`);
    return r;
  }

  async close(): Promise<number | null> {
    this.proc.stdin.end();
    return this.exited;
  }

  kill(): void {
    this.proc.kill('SIGKILL');
  }
}

const work = mkdtempSync(join(tmpdir(), 'agent-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const hostHeaders = '/usr/include';
const hostVfioH = readFileSync(join(hostHeaders, 'linux', 'vfio.h'), 'utf8');
const hostHas = (sym: string) => new RegExp(`#define\\s+${sym}\\b`).test(hostVfioH);

const UAPI_KEYS = [
  'precopy_info_v2', 'attach_pasid', 'dma_logging', 'mig_data_size', 'iommufd',
  'device_cdev', 'hw_info', 'dirty_tracking', 'precopy_info',
];

t.test('buildAgent caches by content and reports compile errors with a log', async (t) => {
  const outDir = join(work, 'cache');
  const a = await buildAgent({ headersDir: hostHeaders, outDir });
  t.equal(a.cached, false);
  t.match(a.path, /vfio-agent-[0-9a-f]{16}$/);
  t.match(a.sha256, /^[0-9a-f]{64}$/);
  const b = await buildAgent({ headersDir: hostHeaders, outDir });
  t.same(b, { ...a, cached: true });
  const c = await buildAgent({ headersDir: hostHeaders, outDir, extraCflags: ['-DUNUSED_FLAG=1'] });
  t.not(c.path, a.path, 'flags are part of the key');

  const err = await buildAgent({ headersDir: hostHeaders, outDir, extraCflags: ['-include', '/nonexistent/x.h'] }).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(err, HarnessError);
  const he = err as HarnessError;
  t.match(he.message, /agent build failed: .*x\.h/);
  t.ok(he.log && existsSync(he.log), 'full compiler output written next to the output');
  t.match(readFileSync(he.log!, 'utf8'), /nonexistent/);

  await t.rejects(buildAgent({ headersDir: work, outDir }), /linux\/vfio\.h not found/);
});

t.test('host-header agent (uapi of the host libc headers)', async (t) => {
  const built = await buildAgent({ headersDir: hostHeaders, outDir: join(work, 'host') });
  const agent = new AgentProc(built.path);
  t.teardown(() => agent.kill());

  t.test('compiles without warnings', async (t) => {
    const r = await execa('gcc', ['-O2', '-Wall', '-Wextra', '-isystem', hostHeaders, '-c', '-o', '/dev/null',
      repoPath('images', 'agent', 'agent.c')], { reject: false, all: true });
    t.equal(r.exitCode, 0);
    t.equal(r.all, '', 'no compiler output at all');
  });

  t.test('hello', async (t) => {
    const r = await agent.req('hello');
    t.equal(r.ok, true);
    t.equal(r.errno, 0);
    t.equal(r.err, null);
    t.type(r.version, 'string');
    t.match(r.headers, /^\d+\.\d+\.\d+$/);
    const uapi = r.uapi as Record<string, unknown>;
    t.same(Object.keys(uapi).sort(), [...UAPI_KEYS].sort());
    for (const k of UAPI_KEYS) t.type(uapi[k], 'boolean', k);
    t.equal(uapi.device_cdev, hostHas('VFIO_DEVICE_BIND_IOMMUFD'));
    t.equal(uapi.precopy_info_v2, hostHas('VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2'));
    t.equal(uapi.mig_data_size, hostHas('VFIO_DEVICE_FEATURE_MIG_DATA_SIZE'));
    t.equal(uapi.precopy_info, hostHas('VFIO_MIG_GET_PRECOPY_INFO'));
    t.equal(uapi.dma_logging, hostHas('VFIO_DEVICE_FEATURE_DMA_LOGGING_START'));
    t.ok((r.ops as string[]).includes('open') && (r.ops as string[]).includes('fd_ioctl'));
    if ((r.headers as string).startsWith('6.1.')) {
      t.equal(uapi.device_cdev, false, '6.1 headers have no cdev');
      t.equal(uapi.iommufd, false, '6.1 headers have no iommufd.h');
    }
  });

  t.test('ops the headers lack answer UNSUPPORTED', async (t) => {
    const cases: [string, Record<string, unknown>, string, string][] = [
      ['open_cdev', { path: '/nonexistent' }, 'VFIO_DEVICE_BIND_IOMMUFD', 'device_cdev'],
      ['data_size', { dev: -1 }, 'VFIO_DEVICE_FEATURE_MIG_DATA_SIZE', 'mig_data_size'],
      ['precopy_info', { fd: -1 }, 'VFIO_MIG_GET_PRECOPY_INFO', 'precopy_info'],
      ['precopy_info_v2', { dev: -1 }, 'VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2', 'precopy_info_v2'],
    ];
    for (const [op, args, sym] of cases) {
      const r = await agent.req(op, args);
      if (hostHas(sym)) {
        t.not(r.err, 'UNSUPPORTED', `${op} compiled in`);
      } else {
        t.match(r, { ok: false, errno: 0, err: 'UNSUPPORTED' }, op);
        t.match(r.msg, sym);
      }
    }
  });

  t.test('malformed requests: one BADREQ each, agent keeps answering', async (t) => {
    const noNewline = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37 + 11) % 256).filter((b) => b !== 10));
    const cases: [string, string | Buffer, number | null, RegExp?][] = [
      ['not JSON', 'hello world', null],
      ['truncated JSON keeps the id it read', '{"id":11,"op":"hello"', 11, /truncated/],
      ['truncated inside a string', '{"id":12,"op":"hel', 12],
      ['nested object', '{"id":13,"op":"hello","x":{"a":1}}', 13, /nested/],
      ['nested array', '{"id":14,"op":"read","fd":[1],"max":1}', 14, /nested/],
      ['top-level array', '[1,2,3]', null],
      ['unknown op', '{"id":15,"op":"frobnicate"}', 15, /unknown op/],
      ['missing op', '{"id":16}', 16, /missing 'op'/],
      ['missing argument', '{"id":17,"op":"read","fd":5}', 17, /missing argument 'max'/],
      ['wrong type', '{"id":18,"op":"read","fd":"5","max":1}', 18, /'fd' must be an integer/],
      ['unknown argument', '{"id":19,"op":"read","fd":5,"max":1,"mxa":2}', 19, /unknown argument/],
      ['float', '{"id":20,"op":"lseek","fd":1,"offset":1.5,"whence":0}', 20, /integer/],
      ['number beyond u64', '{"id":21,"op":"close","fd":18446744073709551616}', 21, /range/],
      ['fd beyond int', '{"id":22,"op":"close","fd":4294967296}', 22, /range/],
      ['trailing garbage', '{"id":23,"op":"hello"} {}', 23, /trailing/],
      ['trailing comma', '{"id":24,"op":"hello",}', 24],
      ['duplicate key', '{"id":25,"op":"hello","op":"hello"}', 25, /duplicate/],
      ['string id', '{"id":"x","op":"hello"}', null, /'id'/],
      ['NUL escape in a path', '{"id":26,"op":"open","path":"/dev/null\\u0000x","flags":"r"}', 26],
      ['raw control byte in a string', '{"id":27,"op":"open","path":"/dev/\u0001","flags":"r"}', 27],
      ['bad flags word', '{"id":28,"op":"open","path":"/dev/null","flags":"rx"}', 28],
      ['odd-length hex', '{"id":29,"op":"write","fd":3,"data":"abc"}', 29, /hex/],
      ['non-hex data', '{"id":30,"op":"write","fd":3,"data":"zz"}', 30, /hex/],
      ['read max beyond 1 MiB', '{"id":31,"op":"read","fd":3,"max":1048577}', 31],
      ['feature argsz beyond the agent buffer', '{"id":32,"op":"feature","dev":3,"flags":65537,"argsz":4294967295}', 32, /buffer/],
      ['closing the protocol fd', '{"id":33,"op":"close","fd":1}', 33, /stdio/],
      ['region size not a width', '{"id":34,"op":"region_read","dev":3,"index":0,"offset":0,"size":3}', 34],
      ['empty line', '', null, /empty/],
      ['whitespace only', '  \t ', null],
      ['5 MiB line', `{"id":35,"op":"write","fd":1,"data":"${'a'.repeat(5 << 20)}"}`, null, /longer than/],
      ['binary garbage', noNewline, null],
    ];
    let probe = 1;
    for (const [name, line, id, msg] of cases) {
      agent.sendRaw(Buffer.concat([Buffer.isBuffer(line) ? line : Buffer.from(line), Buffer.from('\n')]));
      agent.sendRaw(JSON.stringify({ id: probe, op: 'hello' }) + '\n');
      const r = await agent.next();
      t.match(r, { id, ok: false, errno: 0, err: 'BADREQ' }, name);
      t.type(r.msg, 'string');
      if (msg) t.match(r.msg, msg, `${name}: msg`);
      const after = await agent.next();
      t.match(after, { id: probe, ok: true }, `${name}: exactly one reply, then the agent answers again`);
      probe++;
    }
  });

  t.test('ids: full u64 and negative ids are echoed verbatim', async (t) => {
    agent.sendRaw('{"id":18446744073709551615,"op":"hello"}\n');
    t.match(await agent.nextRaw(), /^\{"id":18446744073709551615,"ok":true,/);
    agent.sendRaw('{"id":-9223372036854775808,"op":"close","fd":-1}\n');
    t.match(await agent.nextRaw(), /^\{"id":-9223372036854775808,"ok":false,"errno":9,"err":"EBADF"/);
    agent.sendRaw('{"op":"hello"}\n');
    t.match(await agent.next(), { id: null, ok: true });
    agent.sendRaw('{"id":null,"op":"hello"}\n');
    t.match(await agent.next(), { id: null, ok: true });
  });

  t.test('open / open_group failures name the failing step', async (t) => {
    t.match(await agent.req('open', { path: '/nonexistent/x', flags: 'r' }), {
      ok: false, errno: 2, err: 'ENOENT', where: 'open /nonexistent/x',
    });
    const g = await agent.req('open_group', { group: 2147483647, device: '0000:00:00.0' });
    t.match(g, { ok: false, errno: 2, err: 'ENOENT', where: /^open \/dev\/vfio\// });
  });

  t.test('/dev/null: read, write, lseek, pread, poll, read_all, close, EBADF', async (t) => {
    const o = await agent.req('open', { path: '/dev/null', flags: 'rw' });
    t.match(o, { ok: true, errno: 0, err: null });
    const fd = o.fd as number;
    t.ok(Number.isInteger(fd) && fd > 2);
    t.match(await agent.req('write', { fd, data: '00ff10' }), { ok: true, n: 3 });
    t.match(await agent.req('write', { fd, data: '' }), { ok: true, n: 0 });
    t.match(await agent.req('read', { fd, max: 16 }), { ok: true, n: 0, data: '' });
    t.match(await agent.req('lseek', { fd, offset: 0, whence: 0 }), { ok: true, pos: 0 });
    t.match(await agent.req('pread', { fd, max: 4, offset: 0 }), { ok: true, n: 0, data: '' });
    t.match(await agent.req('poll', { fd, events: 5, timeout_ms: 0 }), { ok: true, ret: 1, revents: 5 });
    t.match(await agent.req('read_all', { fd }), { ok: true, n: 0, data: '', reads: 1, eof: true });
    t.match(await agent.req('feature', { dev: fd, flags: 0x10001, payload: 'aabb' }), {
      ok: false, err: 'ENOTTY', where: 'ioctl VFIO_DEVICE_FEATURE', ret: -1, payload: 'aabb',
    });
    t.match(await agent.req('close', { fd }), { ok: true, errno: 0 });
    t.match(await agent.req('close', { fd }), { ok: false, errno: 9, err: 'EBADF', where: 'close' });
    t.match(await agent.req('read', { fd, max: 1 }), { ok: false, err: 'EBADF', where: 'read' });
    t.match(await agent.req('write', { fd, data: '00' }), { ok: false, err: 'EBADF', where: 'write' });
    t.match(await agent.req('poll', { fd, events: 1 }), { ok: true, ret: 1, revents: 0x20 }, 'POLLNVAL');
    t.match(await agent.req('reset', { dev: fd }), { ok: false, err: 'EBADF', where: 'ioctl VFIO_DEVICE_RESET' });
    t.match(await agent.req('get_state', { dev: fd }), { ok: false, err: 'EBADF' });
    t.match(await agent.req('set_state', { dev: fd, state: 0xffffffff }), {
      ok: false, err: 'EBADF', data_fd: -1, state_echo: 0xffffffff,
    });
    t.match(await agent.req('mig_flags', { dev: fd }), { ok: false, err: 'EBADF' });
    t.match(await agent.req('region_info', { dev: fd, index: 0 }), {
      ok: false, err: 'EBADF', where: 'ioctl VFIO_DEVICE_GET_REGION_INFO',
    });

    const w = await agent.req('open', { path: '/dev/null', flags: 'w' });
    t.match(await agent.req('read', { fd: w.fd, max: 1 }), { ok: false, err: 'EBADF' }, 'read on a write-only fd');
    t.match(await agent.req('close', { fd: w.fd }), { ok: true });
  });

  t.test('FIFO: data round trip, ESPIPE, a real ioctl through fd_ioctl', async (t) => {
    const fifo = join(work, 'fifo');
    await execa('mkfifo', [fifo]);
    const o = await agent.req('open', { path: fifo, flags: 'rw' });
    t.match(o, { ok: true });
    const fd = o.fd as number;
    t.match(await agent.req('poll', { fd, events: 1, timeout_ms: 0 }), { ok: true, ret: 0, revents: 0 });
    t.match(await agent.req('write', { fd, data: '68656c6c6f' }), { ok: true, n: 5 });
    t.match(await agent.req('poll', { fd, events: 1, timeout_ms: 1000 }), { ok: true, ret: 1, revents: 1 });
    // FIONREAD: the kernel fills an int through the payload buffer
    t.match(await agent.req('fd_ioctl', { fd, cmd: 0x541b, payload: '00000000' }), { ok: true, ret: 0, payload: '05000000' });
    t.match(await agent.req('fd_ioctl', { fd, cmd: 0x3b79 }), { ok: false, err: 'ENOTTY', where: 'ioctl 0x3b79', ret: -1 });
    t.match(await agent.req('lseek', { fd, offset: 0, whence: 0 }), { ok: false, errno: 29, err: 'ESPIPE', where: 'lseek' });
    t.match(await agent.req('pread', { fd, max: 1, offset: 0 }), { ok: false, err: 'ESPIPE', where: 'pread' });
    t.match(await agent.req('read', { fd, max: 2 }), { ok: true, n: 2, data: '6865' });
    t.match(await agent.req('read', { fd, max: 100 }), { ok: true, n: 3, data: '6c6c6f' });
    t.match(await agent.req('close', { fd }), { ok: true });

    const nb = await agent.req('open', { path: fifo, flags: 'r', nonblock: true });
    t.match(await agent.req('read', { fd: nb.fd, max: 1 }), { ok: true, n: 0 }, 'no writer: EOF');
    t.match(await agent.req('close', { fd: nb.fd }), { ok: true });
  });

  t.test('regular file: pread/lseek offsets, EINVAL, read_all chunking and limit', async (t) => {
    const file = join(work, 'data.bin');
    writeFileSync(file, Buffer.from('0123456789'));
    const o = await agent.req('open', { path: file, flags: 'r' });
    const fd = o.fd as number;
    t.match(await agent.req('pread', { fd, max: 3, offset: 2 }), { ok: true, n: 3, data: '323334' });
    t.match(await agent.req('pread', { fd, max: 3, offset: -1 }), { ok: false, err: 'EINVAL', where: 'pread' });
    t.match(await agent.req('lseek', { fd, offset: 0, whence: 99 }), { ok: false, err: 'EINVAL' });
    t.match(await agent.req('lseek', { fd, offset: -2, whence: 2 }), { ok: true, pos: 8 });
    t.match(await agent.req('lseek', { fd, offset: 0, whence: 0 }), { ok: true, pos: 0 });
    t.match(await agent.req('read_all', { fd, chunk: 3, limit: 7 }), { ok: true, n: 7, data: '30313233343536', reads: 3, eof: false });
    t.match(await agent.req('read_all', { fd, chunk: 2 }), { ok: true, n: 3, data: '373839', reads: 3, eof: true });
    t.match(await agent.req('close', { fd }), { ok: true });
  });

  t.test('pwrite: a block at an offset, negative offset EINVAL', async (t) => {
    const file = join(work, 'pw.bin');
    writeFileSync(file, Buffer.from('..........'));
    const fd = (await agent.req('open', { path: file, flags: 'rw' })).fd as number;
    t.match(await agent.req('pwrite', { fd, offset: 3, data: '414243' }), { ok: true, n: 3 });
    t.equal(readFileSync(file, 'utf8'), '...ABC....');
    t.match(await agent.req('pwrite', { fd, offset: -1, data: '00' }), { ok: false, err: 'EINVAL', where: 'pwrite' });
    t.match(await agent.req('close', { fd }), { ok: true });
  });

  t.test('mem_read / mem_write: inside the agent\'s own allocations only, never a crash', async (t) => {
    const addr = (await agent.req('mem_alloc', { length: 8192 })).addr as number;
    t.match(await agent.req('mem_read', { addr: addr + 4094, length: 4 }), { ok: true, data: '00000000' }, 'fresh memory is zero');
    t.match(await agent.req('mem_write', { addr: addr + 4094, data: 'deadbeef' }), { ok: true }, 'across a page boundary');
    t.match(await agent.req('mem_read', { addr: addr + 4093, length: 6 }), { ok: true, data: '00deadbeef00' });
    t.match(await agent.req('mem_read', { addr: addr + 8190, length: 4 }), { ok: false, err: 'BADREQ' }, 'past the end');
    t.match(await agent.req('mem_write', { addr: addr - 1, data: '00' }), { ok: false, err: 'BADREQ' }, 'before the start');
    t.match(await agent.req('mem_read', { addr: 4096, length: 1 }), { ok: false, err: 'BADREQ' }, 'an address it never allocated');
    // memory an ioas_map allocated for itself is the agent's too (the map fails without /dev/iommu, the memory stays)
    t.match(await agent.req('mem_free', { addr, length: 8192 }), { ok: true });
    t.match(await agent.req('mem_read', { addr, length: 1 }), { ok: false, err: 'BADREQ' }, 'freed memory is refused');
    t.match(await agent.req('hello'), { ok: true }, 'still answering');
  });

  t.test('EOF on stdin ends the agent with status 0', async (t) => {
    t.equal(await agent.close(), 0);
  });
});

/** Headers with the 7.2 uAPI from a cached harness kernel build, or VFIO_AGENT_TEST_HEADERS for a manual run. */
function newHeaders(): string | undefined {
  const env = process.env.VFIO_AGENT_TEST_HEADERS;
  if (env) return env;
  for (const b of listBuilds()) {
    const h = join(b.headersDir, 'linux', 'vfio.h');
    if (existsSync(h) && readFileSync(h, 'utf8').includes('VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2')) return b.headersDir;
  }
  return undefined;
}

const newInc = newHeaders();
if (!newInc) {
  t.test('agent built against 7.2 uapi headers', {
    skip: 'no cached kernel build with 7.2 uapi headers yet (the integration tests build one; or set VFIO_AGENT_TEST_HEADERS)',
  }, async () => {});
} else {
  t.test(`agent built against ${newInc}`, async (t) => {
    const r0 = await execa('gcc', ['-O2', '-Wall', '-Wextra', '-isystem', newInc, '-c', '-o', '/dev/null',
      repoPath('images', 'agent', 'agent.c')], { reject: false, all: true });
    t.equal(r0.all, '', 'no warnings');
    const built = await buildAgent({ headersDir: newInc, outDir: join(work, 'new') });
    const agent = new AgentProc(built.path);
    t.teardown(() => agent.kill());
    const h = await agent.req('hello');
    t.match(h, { ok: true, uapi: { device_cdev: true, precopy_info_v2: true, attach_pasid: true, iommufd: true, mig_data_size: true } });
    t.match(await agent.req('open_cdev', { path: '/nonexistent/vfio0' }), {
      ok: false, errno: 2, err: 'ENOENT', where: 'open /nonexistent/vfio0',
    });
    t.match(await agent.req('data_size', { dev: -1 }), { ok: false, err: 'EBADF', where: 'ioctl VFIO_DEVICE_FEATURE' });
    t.match(await agent.req('precopy_info', { fd: -1 }), { ok: false, err: 'EBADF', where: 'ioctl VFIO_MIG_GET_PRECOPY_INFO' });
    t.match(await agent.req('precopy_info_v2', { dev: -1 }), { ok: false, err: 'EBADF' });
    t.equal(await agent.close(), 0);
  });
}
