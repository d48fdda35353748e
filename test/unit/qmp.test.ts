import t from 'tap';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient, QmpError } from '../../harness/qemu/qmp.js';
import { repoPath } from '../../base/paths.js';

// A session recorded from a real QEMU 7.2 (QMP socket of a booted guest): the server side is
// replayed line by line, and every line the client sends must be the one recorded.
const transcript = readFileSync(repoPath('test', 'fixtures', 'qmp', 'qemu-7.2-session.jsonl'), 'utf8')
  .trim().split('\n').map((l) => JSON.parse(l) as { dir: 'server' | 'client'; line: string });

function socketPath(): string {
  return join(mkdtempSync(join(tmpdir(), 'vfioc-qmp-')), 'qmp.sock');
}

/** Replays the recording; `onClient` sees each client line and whether it matched. */
function replayServer(path: string, mismatches: string[], script = transcript): Promise<Server> {
  return new Promise((resolve) => {
    const srv = createServer((sock: Socket) => {
      let i = 0;
      const flush = () => { while (i < script.length && script[i]!.dir === 'server') sock.write(`${script[i++]!.line}\n`); };
      flush();
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const want = script[i];
          if (!want || want.dir !== 'client' || JSON.stringify(JSON.parse(line)) !== JSON.stringify(JSON.parse(want.line))) mismatches.push(line);
          i++;
          flush();
        }
      });
    });
    srv.listen(path, () => resolve(srv));
  });
}

t.test('a recorded session: greeting, typed replies, events, errors', async (t) => {
  const path = socketPath();
  const mismatches: string[] = [];
  const srv = await replayServer(path, mismatches);
  const q = await QmpClient.connect(path, 2000);
  t.match(q.greeting, { QMP: { version: { qemu: { major: 7 } } } });
  const v = await q.execute('query-version');
  t.equal(v.qemu.major, 7);
  t.equal((await q.execute('query-status')).status, 'running');
  await q.execute('stop');
  t.equal((await q.waitEvent('STOP', () => true, 1000)).event, 'STOP', 'an event that arrived before its reply is kept');
  t.equal((await q.execute('query-status')).running, false);
  const resume = q.waitEvent('RESUME', () => true, 1000, q.events.length);
  await q.execute('cont');
  t.ok((await resume).timestamp, 'events carry QEMU\'s timestamp');
  const err = await (q.execute as (c: string) => Promise<unknown>)('no-such-command').catch((e: unknown) => e);
  t.ok(err instanceof QmpError);
  t.equal((err as QmpError).errorClass, 'CommandNotFound');
  t.match((err as QmpError).message, /QMP no-such-command failed: CommandNotFound/);
  t.same(await q.execute('query-migrate'), {}, 'no migration yet: an empty object');
  t.same(q.events.map((e) => e.event), ['STOP', 'RESUME']);
  t.same(mismatches, [], 'the client sent exactly what was recorded');
  q.close();
  srv.close();
});

t.test('a QEMU that does not answer: the command times out, the harness does not hang', async (t) => {
  const path = socketPath();
  const script = transcript.slice(0, 3); // greeting, qmp_capabilities and its reply; nothing after
  const srv = await replayServer(path, [], script);
  const q = await QmpClient.connect(path, 2000);
  const t0 = Date.now();
  await t.rejects(q.execute('query-status', {}, 300), /no reply within 300 ms/);
  t.ok(Date.now() - t0 < 2000);
  await t.rejects(q.waitEvent('SHUTDOWN', () => true, 200), /no SHUTDOWN event within 200 ms/);
  q.close();
  srv.close();
});

t.test('the socket closing under a command rejects it with the reason', async (t) => {
  const path = socketPath();
  const srv = createServer((sock) => {
    sock.write(`${transcript[0]!.line}\n`);
    sock.once('data', () => {
      sock.write('{"return": {}, "id": "vfioc-1"}\n');
      sock.once('data', () => sock.destroy());
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  const q = await QmpClient.connect(path, 2000);
  await t.rejects(q.execute('query-status', {}, 2000), /QMP query-status: QMP socket closed/);
  t.equal(q.closed, true);
  await t.rejects(q.execute('query-status'), /socket closed/, 'later commands fail at once');
  srv.close();
});

t.test('no socket: one clear error', async (t) => {
  await t.rejects(QmpClient.connect('/nonexistent/qmp.sock', 500), /QMP: cannot connect to \/nonexistent\/qmp.sock/);
});
