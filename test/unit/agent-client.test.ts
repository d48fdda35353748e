import t from 'tap';
import { EventEmitter } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientChannel } from 'ssh2';
import { AgentClient, AgentGone, formatExchange } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import { buildAgent } from '../../images/agent/build.js';

/** A local process behind the channel interface the client uses (what SSH gives it in a guest). */
function processChannel(cmd: string, args: string[]): ClientChannel {
  const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const ch = Object.assign(new EventEmitter(), {
    stderr: new EventEmitter(),
    write: (s: string) => p.stdin.write(s),
    end: () => p.stdin.end(),
  });
  p.stdout.on('data', (b: Buffer) => ch.emit('data', b));
  p.stderr.on('data', (b: Buffer) => ch.stderr.emit('data', b));
  p.on('close', () => ch.emit('close'));
  // as over SSH, writing to a process that has gone is no error of its own: the channel closes
  p.stdin.on('error', () => undefined);
  return ch as unknown as ClientChannel;
}

/** A channel whose stdout and stderr the test writes by hand. */
class ScriptedChannel extends EventEmitter {
  stderr = new EventEmitter();
  sent: { id: number; op: string }[] = [];
  write(s: string): boolean {
    for (const l of s.split('\n').filter(Boolean)) this.sent.push(JSON.parse(l) as { id: number; op: string });
    return true;
  }
  end(): void { /* nothing buffered */ }
  reply(values: Record<string, unknown>): void {
    const req = this.sent.shift()!;
    this.emit('data', Buffer.from(`${JSON.stringify({ id: req.id, ok: true, errno: 0, err: null, ...values })}\n`));
  }
  err(s: string): void {
    this.stderr.emit('data', Buffer.from(s));
  }
}

const targetWith = (ch: ClientChannel): Target => ({ openChannel: async () => ch }) as unknown as Target;
const HELLO = { version: '1', headers: null, ops: ['hello'], uapi: {} };
const tick = () => new Promise((r) => setImmediate(r));

async function scripted(): Promise<{ ch: ScriptedChannel; agent: AgentClient }> {
  const ch = new ScriptedChannel();
  const started = AgentClient.start(targetWith(ch as unknown as ClientChannel));
  await tick();
  ch.reply(HELLO);
  return { ch, agent: await started };
}

const work = mkdtempSync(join(tmpdir(), 'agent-client-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('the real agent through AgentClient: every reply holds to the declaration', async (t) => {
  const built = await buildAgent({ headersDir: '/usr/include', outDir: work });
  const agent = await AgentClient.start(targetWith(processChannel(built.path, [])), built.path);
  t.teardown(() => agent.close());
  t.equal(agent.hello?.version, '1');
  t.ok(agent.hello?.ops.includes('dma_logging'), 'hello lists the ops');

  const o = await agent.request('open', { path: '/dev/null', flags: 'rw' });
  if (!o.ok) throw new Error(`open /dev/null: ${o.err}`);
  const fd = o.fd;
  t.ok(fd > 2, `a plain fd (${fd})`);
  t.same((await agent.request('write', { fd, data: '0102' })), { id: 3, ok: true, errno: 0, err: null, n: 2 });
  const r = await agent.request('read_all', { fd });
  t.equal(r.ok && r.eof && r.n === 0, true, 'read_all of /dev/null: EOF at once');
  const p = await agent.request('poll', { fd, events: 1 });
  t.equal(p.ok && p.ret, 1);

  const m = await agent.request('mem_alloc', { length: 4096 });
  if (!m.ok) throw new Error(`mem_alloc: ${m.err}`);
  await agent.request('mem_write', { addr: m.addr, data: 'a5a5' });
  const back = await agent.request('mem_read', { addr: m.addr, length: 2 });
  t.equal(back.ok && back.data, 'a5a5', 'memory written and read back');
  const outside = await agent.request('mem_read', { addr: 8, length: 2 });
  t.match(outside, { ok: false, err: 'BADREQ' }, 'a refusal comes back as a typed failure');

  const closed = await agent.request('close', { fd });
  t.equal(closed.ok, true);
  const again = await agent.request('close', { fd });
  t.match(again, { ok: false, err: 'EBADF', where: 'close' }, 'a failed syscall names its errno and step');
  const fs = await agent.request('feature', { dev: fd, flags: 0 });
  t.match(fs, { ok: false, err: 'EBADF', ret: -1, payload: '' }, 'feature sends its values with a failure too');
  const log = agent.takeLog();
  t.equal(log.length, 11, 'every exchange since hello is in the step log');
});

t.test('a reply that departs from the declaration rejects, naming the value', async (t) => {
  const { ch, agent } = await scripted();
  const r = agent.request('open_cdev', { path: '/dev/vfio/devices/vfio0' });
  await tick();
  ch.reply({ dev: 5, iommufd: 6, ioas: 2, devid: 1, ptid: 2 });
  await t.rejects(r, /reply to open_cdev departs from harness\/agent\/protocol\.ts: undeclared value ptid/);
  t.equal(agent.alive, true, 'the channel is still usable');
  const raw = agent.send('open_cdev', { path: 'x' });
  await tick();
  ch.reply({ anything: 1 });
  t.match(await raw, { ok: true, anything: 1 }, 'send() (replay) passes replies through unchecked');
});

t.test('the agent\'s stderr goes into the step log with the request it came with', async (t) => {
  const { ch, agent } = await scripted();
  ch.err('before any request\n');
  const a = agent.request('iommufd_open');
  await tick();
  ch.err('while iommufd_open was out, ');
  ch.err('in two writes\n');
  ch.reply({ fd: 7 });
  await a;
  ch.err('after its reply\r\n');
  const b = agent.request('ioas_alloc', { iommufd: 7 });
  await tick();
  ch.reply({ ioas: 3 });
  await b;
  const log = agent.takeLog();
  t.same(log.map((e) => e.stderr), [
    ['before any request', 'while iommufd_open was out, in two writes', 'after its reply'],
    undefined,
  ]);
  t.match(formatExchange(log[0]!),
    /^\{"op":"iommufd_open"\} -> \{"ok":true,.*"fd":7\} \[[\d.]+ ms\]\n  agent stderr: before any request\n/);
  t.equal(formatExchange(log[1]!).includes('\n'), false, 'an exchange without stderr stays one line');
});

t.test('a connection that dies says what the agent last wrote to stderr', async (t) => {
  const { ch, agent } = await scripted();
  const r = agent.request('reset', { dev: 5 });
  await tick();
  ch.err('vfio-agent: out of memory');
  ch.emit('close');
  await t.rejects(r, new AgentGone('channel closed (agent stderr: vfio-agent: out of memory)'));
  t.same(agent.takeLog()[0]?.stderr, ['vfio-agent: out of memory'], 'an unterminated last line is kept too');
});

t.test('an agent that cannot start: the shell\'s complaint is in the error', async (t) => {
  const missing = join(work, 'no-such-agent');
  const err = await AgentClient.start(targetWith(processChannel('sh', ['-c', `exec ${missing}`])), missing)
    .then(() => undefined, (e: unknown) => e as Error);
  t.type(err, AgentGone);
  t.match(err?.message, /agent connection lost: channel closed \(agent stderr: .*no-such-agent.*not found\)/);
});
