import t from 'tap';
import { buildQemu } from '../../images/qemu/build.js';
import { readQtests, runQtest } from '../../images/qemu/qtests.js';

// Our QEMU patch series' own qtests (images/qemu/patches/qtests), built by `qemu build` and run against
// the built qemu-system-*: the emulation checked against its specification before any guest uses it.
// The first run builds QEMU (minutes); later runs hit the cache.
t.test('the series qtests pass against the built QEMU', async (t) => {
  const specs = readQtests();
  t.ok(specs.length > 0, 'the series lists its qtests');
  const build = await buildQemu();
  for (const spec of specs) {
    await t.test(spec.name, async (t) => {
      const r = await runQtest(spec, build);
      t.same(r.problems, [], `${spec.name}: ${r.run.tests.length} tests in ${r.ms} ms${r.problems.length ? `\n${r.output.slice(-4000)}` : ''}`);
      t.ok(r.run.tests.some((x) => x.ok && !x.skip), 'at least one test ran and passed');
    });
  }
});
