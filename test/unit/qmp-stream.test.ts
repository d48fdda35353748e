import t from 'tap';
import { Duplex, PassThrough } from 'node:stream';
import { QmpClient, QmpError } from '../../harness/qemu/qmp.js';

/**
 * QmpClient.fromStream: QMP over any duplex stream (the real-client suite runs each nested QEMU with
 * `-qmp stdio` behind an SSH exec channel). The far end here is a scripted QEMU 11.1.3 whose lines
 * are those a nested QEMU sent in a measured run.
 */
function fakeQemu(onLine: (msg: Record<string, unknown>, send: (o: unknown) => void) => void, greet = true): { stream: Duplex; toClient: PassThrough; sent: Record<string, unknown>[] } {
  const toClient = new PassThrough();
  const fromClient = new PassThrough();
  const stream = Duplex.from({ readable: toClient, writable: fromClient });
  const sent: Record<string, unknown>[] = [];
  const send = (o: unknown) => toClient.write(`${JSON.stringify(o)}\r\n`);
  if (greet) send({ QMP: { version: { qemu: { micro: 3, minor: 1, major: 11 }, package: 'Debian 1:11.1.3+ds-1' }, capabilities: ['oob'] } });
  let buf = '';
  fromClient.setEncoding('utf8');
  fromClient.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      sent.push(msg);
      onLine(msg, send);
    }
  });
  return { stream, toClient, sent };
}

t.test('greeting, capabilities, HMP, events and errors over a stream', async (t) => {
  const { stream, sent } = fakeQemu((m, send) => {
    if (m.execute === 'qmp_capabilities') send({ return: {}, id: m.id });
    else if (m.execute === 'human-monitor-command') {
      send({ timestamp: { seconds: 1795322993, microseconds: 643227 }, event: 'VFIO_MIGRATION', data: { 'device-state': 'pre-copy', 'device-id': 'dev0', 'qom-path': '/machine/peripheral/dev0' } });
      send({ return: 'portb[0xc067] = 0x5a\r\n', id: m.id });
    } else send({ error: { class: 'GenericError', desc: 'There\'s a migration process in progress' }, id: m.id });
  });
  const q = await QmpClient.fromStream(stream, 2000);
  t.match(q.greeting, { QMP: { version: { qemu: { major: 11 } } } });
  t.same(sent[0], { execute: 'qmp_capabilities', id: 'vfioc-1' }, 'leaves negotiation mode first');
  const r = await q.execute('human-monitor-command', { 'command-line': 'i /b 0xc067' });
  t.equal(r, 'portb[0xc067] = 0x5a\r\n');
  t.same(sent[1], { execute: 'human-monitor-command', id: 'vfioc-2', arguments: { 'command-line': 'i /b 0xc067' } });
  t.equal((await q.waitEvent('VFIO_MIGRATION', (e) => e.data?.['device-state'] === 'pre-copy', 100)).data?.['device-id'], 'dev0');
  const err = await q.execute('migrate', { uri: 'unix:/tmp/x' }).catch((e: unknown) => e);
  t.ok(err instanceof QmpError && err.desc.includes('migration process'));
  q.close();
  t.ok(q.closed);
});

t.test('a stream that ends before the greeting fails at once, not at the timeout', async (t) => {
  const { stream, toClient } = fakeQemu(() => undefined, false);
  const started = Date.now();
  setTimeout(() => { toClient.end(); stream.destroy(); }, 20);
  const e = await QmpClient.fromStream(stream, 5000).catch((x: unknown) => x as Error);
  t.match((e as Error).message, /QMP: no greeting: /);
  t.ok(Date.now() - started < 2000, 'did not wait for the 5 s timeout');
});

t.test('a greeting that never comes times out', async (t) => {
  const { stream } = fakeQemu(() => undefined, false);
  const e = await QmpClient.fromStream(stream, 100).catch((x: unknown) => x as Error);
  t.match((e as Error).message, /no greeting within 100 ms/);
});
