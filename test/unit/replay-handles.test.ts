import t from 'tap';
import { HandleMap } from '../../runner/replay-handles.js';
import type { AgentReply, Exchange } from '../../harness/agent/client.js';

const ok = (values: Record<string, unknown> = {}): AgentReply => ({ id: 1, ok: true, errno: 0, err: null, ...values });
const ex = (request: Record<string, unknown>, reply: AgentReply): Exchange => ({ request, reply, ms: 0 });

t.test('close-reopen in PRE_COPY: the recorded data fd 10 is the replay\'s 7', async (t) => {
  const h = new HandleMap();
  // the suite's setup opened the device as fd 5 then, 6 now
  t.equal(h.learnSetup(
    [ex({ op: 'hello' }, ok()), ex({ op: 'open_group', group: 0, device: 'x' }, ok({ dev: 5, container: 3, group_fd: 4 }))],
    [ex({ op: 'hello' }, ok()), ex({ op: 'open_group', group: 0, device: 'x' }, ok({ dev: 6, container: 4, group_fd: 5 }))],
  ), undefined);
  const set = h.translate({ op: 'set_state', dev: 5, state: 3 });
  t.same(set, { request: { op: 'set_state', dev: 6, state: 3 }, changes: ['dev 5->6'] });
  h.learn(set.request, ok({ data_fd: 10, state_echo: 3 }), ok({ data_fd: 7, state_echo: 3 }));
  t.same(h.translate({ op: 'close', fd: 10 }), { request: { op: 'close', fd: 7 }, changes: ['fd 10->7'] });
  t.same(h.translate({ op: 'precopy_info', fd: 10 }).request, { op: 'precopy_info', fd: 7 });
  t.same(h.translate({ op: 'read', fd: 11, max: 4 }), { request: { op: 'read', fd: 11, max: 4 }, changes: [] }, 'an fd nothing created is sent as recorded');
});

t.test('fds the protocol owns, negative fds and failed creations are not renamed', async (t) => {
  const h = new HandleMap();
  h.learn({ op: 'set_state', dev: 6 }, ok({ data_fd: -1 }), ok({ data_fd: 7 }));
  t.same(h.translate({ op: 'close', fd: -1 }).request, { op: 'close', fd: -1 }, 'an EBADF test stays one');
  h.learn({ op: 'open', path: '/x' }, ok({ fd: 1 }), ok({ fd: 9 }));
  t.same(h.translate({ op: 'close', fd: 1 }).request, { op: 'close', fd: 1 }, 'fd 1 is the protocol\'s');
  h.learn({ op: 'open', path: '/y' }, ok({ fd: 8 }), undefined);
  t.same(h.translate({ op: 'close', fd: 8 }).request, { op: 'close', fd: 8 }, 'no live reply: nothing learnt');
  h.learn({ op: 'open', path: '/z' }, ok({ fd: 12 }), ok({ fd: '12' }));
  t.same(h.translate({ op: 'close', fd: 12 }).request, { op: 'close', fd: 12 }, 'not a number: nothing learnt');
});

t.test('iommufd objects, agent memory by offset, kernel-chosen IOVAs', async (t) => {
  const h = new HandleMap();
  h.learn({ op: 'open_cdev', path: '/dev/vfio/devices/vfio0' }, ok({ dev: 5, iommufd: 6, ioas: 2, devid: 1, pt_id: 2 }), ok({ dev: 7, iommufd: 8, ioas: 3, devid: 4, pt_id: 3 }));
  h.learn({ op: 'mem_alloc', length: 8192 }, ok({ addr: 0x7f0000000000 }), ok({ addr: 0x7e0000000000 }));
  h.learn({ op: 'ioas_map', iommufd: 8, ioas: 3, length: 4096, addr: 0x7e0000000000 }, ok({ iova: 0x10000, addr: 0x7f0000000000 }), ok({ iova: 0x20000, addr: 0x7e0000000000 }));
  h.learn({ op: 'ioas_map', iommufd: 8, ioas: 3, length: 4096, iova: 0x40000 }, ok({ iova: 0x40000, addr: 0x7f0000100000 }), ok({ iova: 0x40000, addr: 0x7e0000100000 }));
  h.learn({ op: 'hwpt_alloc', iommufd: 8, dev_id: 4, pt_id: 3 }, ok({ hwpt: 9 }), ok({ hwpt: 11 }));
  t.same(h.translate({ op: 'mem_write', addr: 0x7f0000001000, data: '00' }), { request: { op: 'mem_write', addr: 0x7e0000001000, data: '00' }, changes: ['addr 0x7f0000001000->0x7e0000001000'] });
  t.same(h.translate({ op: 'mem_read', addr: 0x7f0000002000, length: 1 }).request.addr, 0x7f0000002000, 'past the allocation: as recorded');
  t.same(h.translate({ op: 'ioas_unmap', iommufd: 6, ioas: 2, iova: 0x10800, length: 4096 }).request, { op: 'ioas_unmap', iommufd: 8, ioas: 3, iova: 0x20800, length: 4096 });
  t.same(h.translate({ op: 'ioas_unmap', iommufd: 6, ioas: 2, iova: 0x40000, length: 4096 }).request.iova, 0x40000, 'a fixed IOVA is not an allocation');
  t.same(h.translate({ op: 'set_dirty_tracking', iommufd: 6, hwpt: 9, enable: true }).request, { op: 'set_dirty_tracking', iommufd: 8, hwpt: 11, enable: true });
  t.same(h.translate({ op: 'destroy', iommufd: 6, object: 9 }).request, { op: 'destroy', iommufd: 8, object: 11 });
  t.same(h.translate({ op: 'vfio_attach_pt', dev: 5, pt_id: 2 }).request, { op: 'vfio_attach_pt', dev: 7, pt_id: 3 });
});

t.test('a setup that went another way is said, and pairing stops there', async (t) => {
  const h = new HandleMap();
  const why = h.learnSetup(
    [ex({ op: 'open', path: '/a' }, ok({ fd: 3 })), ex({ op: 'open_group' }, ok({ dev: 5 }))],
    [ex({ op: 'open', path: '/a' }, ok({ fd: 4 })), ex({ op: 'open_cdev' }, ok({ dev: 6 }))],
  );
  t.match(why, /request 2 \(open_group recorded, open_cdev now\)/);
  t.same(h.translate({ fd: 3, dev: 5 }).request, { fd: 4, dev: 5 });
  t.match(new HandleMap().learnSetup([ex({ op: 'open' }, ok({ fd: 3 }))], []), /the setup made 0 requests, the recording 1/);
});
