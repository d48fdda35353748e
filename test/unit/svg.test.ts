import t from 'tap';
import { dotStrip, niceMax, seriesOf, stackedBars } from '../../reports/svg.js';

t.test('niceMax: 1, 2 or 5 times a power of ten at or above the value', async (t) => {
  const cases: [number, number][] = [[0, 1], [-3, 1], [0.7, 1], [1, 1], [1.01, 2], [3, 5], [5, 5], [7, 10], [160, 200], [2590, 5000], [NaN, 1]];
  for (const [v, want] of cases) t.equal(niceMax(v), want, `${v} -> ${want}`);
});

t.test('stacked bars: segments add up to the row, labels are text', async (t) => {
  const series = seriesOf(['migration', 'kselftest']);
  const svg = stackedBars('time <per> profile', [{ label: 'a<b>&"', values: [30, 10] }, { label: 'none', values: [0, 0] }], series, (v) => `${v} s`, 600);
  t.notMatch(svg, /<b>/, 'a label with markup is escaped');
  t.match(svg, /a&lt;b&gt;&amp;&quot;/);
  t.match(svg, /aria-label="time &lt;per&gt; profile"/);
  const widths = [...svg.matchAll(/<rect x="[\d.]+" y="11" width="([\d.]+)"/g)].map((m) => Number(m[1]));
  t.equal(widths.length, 2, 'two segments on the first row, none for zeros');
  t.ok(Math.abs(widths[0]! / widths[1]! - 3) < 0.01, 'segments in proportion to their values');
  t.match(svg, />40 s<\/text>/, 'the row total after the bar');
  t.match(svg, /<title>a&lt;b&gt;&amp;&quot;, migration: 30 s<\/title>/, 'each segment names its figure');
});

t.test('dot strip: one dot per point, on a shared axis', async (t) => {
  const svg = dotStrip('downtime', [{ label: 'multifd', points: [{ series: 0, value: 50 }, { series: 1, value: 100 }] }], seriesOf(['none', 'amd-iommu']), (v) => `${v} ms`, 600);
  const xs = [...svg.matchAll(/<circle cx="([\d.]+)"/g)].map((m) => Number(m[1]));
  t.equal(xs.length, 2);
  t.ok(xs[1]! > xs[0]!, 'the larger value further right');
  t.match(svg, /<title>multifd, amd-iommu: 100 ms<\/title>/);
  t.match(dotStrip('empty', [], [], String), /^<svg class="chart"/, 'no rows still draws an (empty) chart');
});
