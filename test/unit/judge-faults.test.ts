import t from 'tap';
import { judgeFaults } from '../../suites/types.js';
import type { ConsoleFault } from '../../base/results/schema.js';

const oops: ConsoleFault = { kind: 'oops', title: 'BUG: kernel NULL pointer dereference, address: 0000000000000008', step: 'migration/x', lines: [] };
const dmar: ConsoleFault = { kind: 'iommu-fault', title: 'DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x1000', lines: [] };

t.test('no faults: the outcome stands', async (t) => {
  const o = { status: 'pass' as const, observed: { errno: 'OK' } };
  t.same(judgeFaults(o, []), o);
});

t.test('an Oops fails a passing case and says so first', async (t) => {
  const j = judgeFaults({ status: 'pass' }, [oops]);
  t.equal(j.status, 'fail');
  t.match(j.reason, /^kernel reported a fault during this case \(oops: BUG: kernel NULL pointer dereference/);
});

t.test('a fault that cut the case short is a failure, and keeps the case\'s own reason', async (t) => {
  const j = judgeFaults({ status: 'error', reason: 'agent connection lost' }, [oops]);
  t.equal(j.status, 'fail');
  t.match(j.reason, /oops: .*; agent connection lost$/);
});

t.test('faults a case provokes on purpose do not fail it; others still do', async (t) => {
  t.equal(judgeFaults({ status: 'pass' }, [dmar], ['iommu-fault']).status, 'pass');
  t.equal(judgeFaults({ status: 'pass' }, [dmar]).status, 'fail', 'an IOMMU fault nobody asked for is a finding');
  const j = judgeFaults({ status: 'pass' }, [dmar, oops], ['iommu-fault']);
  t.equal(j.status, 'fail');
  t.notMatch(j.reason, /DMAR/, 'only the unexpected fault is named');
});

t.test('several faults are counted', async (t) => {
  t.match(judgeFaults({ status: 'pass' }, [oops, { ...oops, kind: 'warning', title: 'WARNING: CPU: 0 PID: 1 at x' }]).reason, /^kernel reported 2 faults/);
});
