import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { repoPath } from '../../base/paths.js';
import { esc, jsonForScript, renderHtml, writeHtml } from '../../reports/html.js';
import { sampleRun, SAMPLE_EXPECTATIONS } from '../../bench/sample-run.js';
import { factsLine } from '../../reports/html/headline.js';
import { verdictOf } from '../../reports/write.js';
import { gate } from '../../reports/gate.js';
import { validateResults } from '../../base/results/file.js';
import { SCHEMA_VERSION, STATUSES, type CaseResult, type RunResults, type Status } from '../../base/results/schema.js';
import { runInfo } from '../helpers/results.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
const FAIL_ID = 'migration/arc/STOP_COPY->STOP';
const XSS_ID = 'migration/stream/"quoted" <bad> & id';

const mtty = { driver: 'mtty', class: 'sample' as const, id: 'mtty-2', fingerprint: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'] } };
const mock = { driver: 'none', class: 'none' as const, id: 'iommufd-mock' };

function result(id: string, profile: string, over: Partial<CaseResult> = {}): CaseResult {
  return {
    id,
    suite: id.split('/')[0]!,
    profile,
    device: mtty,
    status: 'pass',
    observed: { errno: 'OK', stateAfter: 'STOP' },
    expected: { errno: 'OK', stateAfter: 'STOP' },
    durationMs: 120,
    faults: [],
    artifacts: {},
    log: [`-> {"op":"set_state","case":${JSON.stringify(id)}}`, '<- {"ok":true}'],
    ...over,
  };
}

/** 2 profiles x 20 case ids (+ 2 on a second device), every status, a failure with a console fault. */
function fixture(): RunResults {
  const states = ['RUNNING', 'STOP', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];
  const ids: string[] = [];
  for (const a of states) for (const b of states) if (a !== b && ids.length < 16) ids.push(`migration/arc/${a}->${b}`);
  ids.push('dirty/type1/bitmap-4k', 'pasid/attach', 'migration/precopy/info', XSS_ID);
  if (!ids.includes(FAIL_ID)) ids[5] = FAIL_ID;
  const results: CaseResult[] = [];
  for (const profile of ['q35-vtd', 'virt-smmuv3']) {
    ids.forEach((id, i) => {
      let over: Partial<CaseResult> = {};
      if (id === FAIL_ID && profile === 'q35-vtd') {
        over = {
          status: 'fail',
          reason: 'SET_STATE returned EINVAL, the uAPI says the arc succeeds',
          observed: { errno: 'EINVAL', stateAfter: 'STOP_COPY' },
          expected: { errno: 'OK', stateAfter: 'STOP' },
          faults: [{ kind: 'warning', title: 'WARNING: CPU: 0 PID: 77 at drivers/vfio/vfio_main.c:1234', step: FAIL_ID, lines: ['Call Trace:', ' <TASK>', ' vfio_ioctl_device_feature+0x1a/0x2b', ' </TASK>'] }],
          artifacts: { reproducer: 'repro/arc-STOP_COPY-STOP' },
        };
      } else if (id === XSS_ID) {
        over = { status: 'error', reason: XSS, observed: { note: '</script><script>window.__pwned=3</script>' } };
      } else if (id === 'pasid/attach') {
        over = profile === 'q35-vtd' ? { status: 'expected-unsupported', reason: 'no PASID on 6.12', device: mock } : { status: 'skip', reason: 'smmuv3 profile has no PASID-capable device', device: mock };
      } else if (id === 'migration/precopy/info') {
        over = { status: 'warning', reason: 'read() at the temporary end of PRE_COPY data returns 0' };
      } else if (id === 'migration/arc/RUNNING->STOP_COPY' && profile === 'q35-vtd') {
        // blocked by the failure above: the gate counts that failure once, not this case
        over = { status: 'blocked', reason: 'reaching the state the case starts from failed', blockedBy: FAIL_ID };
      } else if (i % 7 === 3) {
        over = { status: 'skip', reason: 'device has no P2P flag', observed: undefined, expected: undefined };
      }
      results.push(result(id, profile, over));
    });
  }
  results.push(result('dirty/type1/bitmap-4k', 'q35-vtd', { device: { ...mtty, id: 'mtty-1' }, status: 'fail', reason: 'bitmap missed 3 dirty pages' }));
  return validateResults({
    schema: SCHEMA_VERSION,
    run: runInfo({
      startedAt: '2025-05-01T10:00:00.000Z',
      endedAt: '2025-05-01T10:20:00.000Z',
      suites: ['migration', 'dirty', 'pasid'],
      errors: [{ profile: 'virt-smmuv3', message: 'guest did not answer SSH within 300 s <timeout>', log: 'runs/x/virt-smmuv3/console.log' }],
    }),
    results,
  });
}

/** Rows of the grid (one per case id) with the statuses of their cells, as the page should lay them out. */
function rowsOf(res: RunResults): Map<string, { profile: string; status: Status }[]> {
  const m = new Map<string, { profile: string; status: Status }[]>();
  for (const r of res.results) {
    let l = m.get(r.id);
    if (!l) m.set(r.id, (l = []));
    l.push({ profile: r.profile, status: r.status });
  }
  return m;
}


/** results.json as the page carries it (gzip + base64 in #vfio-results). */
function unpack(html: string): unknown {
  const m = /<script type="application\/gzip" id="vfio-results" data-encoding="gzip\+base64">([A-Za-z0-9+/=]*)<\/script>/.exec(html);
  if (!m) throw new Error('no packed results in the page');
  return JSON.parse(gunzipSync(Buffer.from(m[1]!, 'base64')).toString('utf8'));
}

t.test('rendering without a browser: escaping, packed data, CSP, atomic write', async (t) => {
  const res = fixture();
  const html = renderHtml(res);
  t.notMatch(html, /<script>window\.__pwned/, 'the injected script tag is escaped');
  t.notMatch(html, /<img src=x/, 'the injected img tag is escaped');
  t.match(html, esc(XSS), 'the injected text is there, escaped');
  t.equal((html.match(/<script\b/g) ?? []).length, 2, 'only the page\'s own two script elements (packed data + code)');
  t.same(unpack(html), JSON.parse(JSON.stringify(res)), 'the packed results give results.json back');
  t.match(html, /Content-Security-Policy" content="default-src &#39;none&#39;; style-src &#39;unsafe-inline&#39;; img-src data:; script-src &#39;sha256-/, 'CSP admits the inline script by hash only');
  t.notMatch(html, /(src|href)="(https?:)?\/\//, 'no external assets');
  t.notMatch(html, /"op":"set_state"/, 'step logs are not written out (they travel packed)');
  t.equal(jsonForScript({ a: '</script><!--\u2028' }), '{"a":"\\u003c/script\\u003e\\u003c!--\\u2028"}');
  t.equal(esc(`a<b>&"'`), 'a&lt;b&gt;&amp;&quot;&#39;');

  const dir = mkdtempSync(join(tmpdir(), 'vfio-html-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = writeHtml(dir, res);
  t.equal(path, join(dir, 'index.html'));
  t.equal(readFileSync(path, 'utf8'), html);
  t.match(renderHtml({ ...res, results: [] }), /No results recorded/);
});

t.test('the gate verdict is the headline; known failures grouped by their reason', async (t) => {
  const res = fixture();
  const expectations = { schema: 1 as const, known: [{ id: FAIL_ID, reason: 'a kernel bug <with markup> we know of' }] };
  const verdict = verdictOf(gate(res, { expectations }));
  t.equal(verdict.known.size, 1);
  const html = renderHtml(res, verdict);
  t.match(html, /<header class="verdict harness" id="verdict" data-exit="2" data-regressions="3" data-known="1"><h1>Harness error: the run cannot be trusted<\/h1><p>3 regressions · 1 known failure · 1 harness error<\/p>/,
    'the fixture has a harness error; the XSS errors (2 profiles) and the type1 failure are regressions');
  t.match(html, /guest did not answer SSH within 300 s &lt;timeout&gt;/, 'the harness problem is named under the headline');
  t.match(html, /<h3 id="known">Known failures \(1\), by reason<\/h3><details class="group" data-group="known"><summary>a kernel bug &lt;with markup&gt; we know of/, 'grouped under its reason, escaped');
  t.match(html, /<td class="cell c-known"[^>]*><a href="#r-\d+"[^>]*>FAIL \(known\)<\/a>/, 'the known failure is marked in its table');
  const clean = { ...res, run: { ...res.run, errors: [] } };
  const known = [FAIL_ID, XSS_ID, 'dirty/type1/bitmap-4k'].map((id) => ({ id, reason: `known: ${id}` }));
  const all = verdictOf(gate(clean, { expectations: { schema: 1, known } }));
  t.match(renderHtml(clean, all), /<header class="verdict good"[^>]*><h1>OK: nothing regressed<\/h1><p>0 regressions · 4 known failures · 0 harness errors/, 'every failure known');
  t.match(renderHtml(clean), /<h1>4 failures, not gated<\/h1>/, 'no verdict given: failures are said to be ungated');
});

/** Categories per (suite, profile) counted here from results.json and the gate, independently of the page. */
function expectedMatrix(res: RunResults, known: Set<string>): Map<string, Record<string, number>> {
  const m = new Map<string, Record<string, number>>();
  for (const r of res.results) {
    const k = `${r.suite} ${r.profile}`;
    const c = m.get(k) ?? { pass: 0, fail: 0, known: 0, warning: 0, skip: 0, unsupported: 0 };
    const failing = r.status === 'fail' || r.status === 'error';
    const cat = failing ? (known.has(`${r.id} ${r.profile} ${r.device.id}`) ? 'known' : 'fail') : r.status === 'expected-unsupported' ? 'unsupported' : r.status;
    c[cat] = (c[cat] ?? 0) + 1;
    m.set(k, c);
  }
  return m;
}

const haveChromium = existsSync(CHROMIUM);
const noChromium = haveChromium ? false : `${CHROMIUM} is not installed (apt-get install chromium); the browser tests need Debian's Chromium`;
const ARTIFACTS = repoPath('test-artifacts');

async function openPage(browser: Browser, file: string, problems: string[], width = 1280): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith('file:')) problems.push(`request: ${r.url()}`); });
  page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); void d.dismiss(); });
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  await page.waitForSelector('html[data-ready=true]');
  return page;
}

t.test('a default-sized run in Chromium at 1280 px: what a maintainer sees', { skip: noChromium }, async (t) => {
  const res = sampleRun();
  const g = gate(res, { expectations: SAMPLE_EXPECTATIONS });
  const dir = mkdtempSync(join(tmpdir(), 'vfio-html-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = writeHtml(dir, res, verdictOf(g));
  const size = statSync(file).size;
  t.ok(size <= 3 * 1024 * 1024, `index.html of ${res.results.length} results is ${(size / 1048576).toFixed(2)} MiB (target <= 3 MiB)`);
  mkdirSync(ARTIFACTS, { recursive: true });

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60_000 });
  t.teardown(() => browser.close());
  const problems: string[] = [];
  const page = await openPage(browser, file, problems);

  await t.test('first screen: the verdict headline, the facts line and the matrix, without horizontal scroll', async (t) => {
    const h1 = await page.locator('#verdict h1').textContent();
    t.equal(h1, `Regression: ${g.regressions.length} cases failed that nothing explains`, 'the gate\'s verdict is the headline');
    t.ok(g.regressions.length > 0 && g.knownFailures.length > 0, 'the sample has regressions and known failures');
    t.equal(await page.locator('#verdict p').first().textContent(), `${g.regressions.length} regressions · ${g.knownFailures.length} known failures · 0 harness errors`);
    const facts = (await page.locator('#facts').textContent()) ?? '';
    for (const want of ['kernel 7.2.13', 'QEMU 9.2.0', 'TCG', '2,590 results', '7 min 31 s']) t.ok(facts.includes(want), `facts line shows ${want}`);
    const box = (await page.locator('#matrix').boundingBox())!;
    t.ok(box.y + box.height <= 900, `the whole matrix is on the first screen (bottom at ${Math.round(box.y + box.height)} px)`);
    t.ok(box.x + box.width <= 1280, `the matrix fits 1280 px (right edge ${Math.round(box.x + box.width)})`);
    t.equal(await page.evaluate(() => document.documentElement.scrollWidth), 1280, 'the page does not scroll sideways');
    await page.screenshot({ path: join(ARTIFACTS, 'report-first-screen.png') });
  });

  await t.test('the matrix counts match results.json and the gate', async (t) => {
    const known = new Set(g.knownFailures.map((k) => `${k.id} ${k.profile} ${k.device}`));
    const want = expectedMatrix(res, known);
    for (const [k, c] of want) {
      const [suite, profile] = k.split(' ');
      const cell = page.locator(`#matrix tr[data-suite="${suite}"] a.mx[data-profile="${profile}"]`);
      const got: Record<string, number> = {};
      for (const cat of Object.keys(c)) {
        const el = cell.locator(`[data-count="${cat}"]`);
        got[cat] = (await el.count()) ? Number.parseInt((await el.textContent()) ?? '', 10) : 0;
      }
      t.same(got, c, `${suite} on ${profile}`);
    }
    const bg = (sel: string) => page.locator(sel).first().evaluate((el) => getComputedStyle(el).backgroundColor);
    t.not(await bg('#matrix tr[data-suite="qemu-migration"] td.c-fail'), await bg('#matrix tr[data-suite="pasid"] td.c-pass'), 'a cell with a regression is coloured apart from a passing one');
  });

  await t.test('case tables: ids in full, the case column wider than the longest id\'s first 40 characters', async (t) => {
    const longest = res.results.map((r) => r.id).reduce((a, b) => (b.length > a.length ? b : a));
    const th = page.locator(`section.suite tr.case[data-id="${longest}"] th.case`).first();
    t.equal(await th.locator('code').textContent(), longest, 'the id is shown whole');
    const widths = await th.evaluate((el, id) => {
      const code = el.querySelector('code')!;
      const probe = document.createElement('code');
      probe.style.cssText = 'position:absolute;visibility:hidden;white-space:pre';
      probe.textContent = id.slice(0, 40);
      code.parentElement!.appendChild(probe);
      const w = { column: el.getBoundingClientRect().width, first40: probe.getBoundingClientRect().width, lines: Math.round(code.getBoundingClientRect().height / parseFloat(getComputedStyle(code).lineHeight || '16')) };
      probe.remove();
      return w;
    }, longest);
    t.ok(widths.column > widths.first40, `case column ${Math.round(widths.column)} px > ${Math.round(widths.first40)} px for the first 40 characters`);
    t.ok(await th.evaluate((el) => el.getBoundingClientRect().height < 30), 'the id sits on one line');
    t.equal(await page.locator('section#suite-dirty thead th', { hasText: 'device' }).count(), 1, 'a device column where a suite ran on several devices');
    t.equal(await page.locator('section#suite-migration thead th', { hasText: 'device' }).count(), 0, 'none where it ran on one');
    t.equal(await page.locator('section#suite-migration thead th[data-profile]').count(), 5, 'one column per profile');
  });

  const visible = async () => Number(await page.locator('#shown').getAttribute('data-visible'));
  const rowsIn = (pred: (r: CaseResult) => boolean) => new Set(res.results.filter(pred).map((r) => JSON.stringify([r.id, r.device.id]))).size;
  const allRows = rowsIn(() => true);

  await t.test('filters narrow the rows, from the keyboard', async (t) => {
    t.equal(await visible(), allRows, 'every case shown at first');
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('/');
    t.equal(await page.evaluate(() => document.activeElement?.id), 'f-text', '/ focuses the text filter');
    await page.keyboard.type('close-reopen');
    const byText = rowsIn((r) => r.id.includes('close-reopen'));
    t.equal(await visible(), byText, `typing narrows to ${byText} rows`);
    t.equal(await page.locator('section.suite:visible').count(), 1, 'suites without a match are hidden');
    await page.keyboard.press('Escape');
    t.equal(await visible(), allRows, 'Escape clears the text filter');
    // Tab from the text filter back to the checkboxes, and uncheck "pass" with the space bar
    await page.locator('input[name=cat][value=pass]').focus();
    await page.keyboard.press('Space');
    t.notOk(await page.locator('input[name=cat][value=pass]').isChecked(), 'space unchecks pass');
    const nonPass = rowsIn((r) => r.status !== 'pass');
    t.equal(await visible(), nonPass, `only rows with something other than a pass: ${nonPass}`);
    await page.locator('#f-profile').focus();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    t.equal(await page.locator('#f-profile').inputValue(), 'amd-iommu', 'the profile select follows the arrow keys');
    const amd = rowsIn((r) => r.profile === 'amd-iommu' && r.status !== 'pass');
    t.equal(await visible(), amd, `rows with a non-pass on amd-iommu: ${amd}`);
    t.equal(await page.locator('section.suite td.cell[data-profile="none"]:visible').count(), 0, 'other profiles\' columns hidden');
    await page.screenshot({ path: join(ARTIFACTS, 'report-filtered.png') });
    await page.locator('input[name=cat][value=pass]').check();
    await page.locator('#f-profile').selectOption('');
    t.equal(await visible(), allRows);
  });

  await t.test('a matrix cell leads to its cases; a failure opens with its log unpacked', async (t) => {
    await page.locator('#matrix tr[data-suite="qemu-migration"] a.mx[data-profile="amd-iommu"]').click();
    t.equal(await page.locator('#f-profile').inputValue(), 'amd-iommu', 'the cell sets the profile filter');
    t.ok(await page.locator('#suite-qemu-migration').isVisible(), 'its suite is shown');
    const failed = res.results.findIndex((r) => r.suite === 'qemu-migration' && r.status === 'error');
    await page.locator(`#suite-qemu-migration a[href="#r-${failed}"]`).click();
    const det = page.locator(`details#r-${failed}`);
    t.equal(await det.getAttribute('open'), '', 'the result\'s details are open');
    await page.waitForSelector(`details#r-${failed}[data-filled=yes]`);
    t.equal(await det.locator('pre.step-log').textContent(), res.results[failed]!.log!.join('\n'), 'the whole step log, unpacked from the page');
    t.ok(((await det.textContent()) ?? '').includes(res.results[failed]!.reason!), 'the reason');
    t.ok(await det.locator('table.measurements').isVisible(), 'its measurements, apart from observed values');
    await page.screenshot({ path: join(ARTIFACTS, 'report-failure-open.png') });
    const oops = res.results.findIndex((r) => r.faults.length > 0);
    await page.goto(`${pathToFileURL(file).href}#r-${oops}`);
    await page.waitForSelector(`details#r-${oops}[data-filled=yes]`);
    t.equal(await page.locator(`details#r-${oops} pre.fault-lines`).textContent(), res.results[oops]!.faults[0]!.lines.join('\n'), 'the console excerpt in full, opened from the address');
  });

  await t.test('pictures are inline SVG with their figures', async (t) => {
    t.equal(await page.locator('#pictures svg[role=img]').count(), 5, 'time, boot, downtime, bytes, dirty oracle');
    t.equal(await page.locator('#pic-time svg g, #pic-time svg rect').count(), 5 * 6, 'one segment per profile and suite');
    const titles = await page.locator('#pic-downtime circle title').allTextContents();
    const r = res.results.find((x) => x.id === 'qemu-migration/multifd' && x.profile === 'none')!;
    t.ok(titles.includes(`multifd, none: ${r.measurements!.downtimeMs} ms`), 'a dot names its case, profile and figure');
    await page.locator('#pictures').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(ARTIFACTS, 'report-pictures.png') });
  });

  t.same(problems, [], 'no console errors, page errors, dialogs or network requests');
});

t.test('a small run in Chromium: injected markup is text and never runs', { skip: noChromium }, async (t) => {
  const res = fixture();
  const dir = mkdtempSync(join(tmpdir(), 'vfio-html-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = writeHtml(dir, res);
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60_000 });
  t.teardown(() => browser.close());
  const problems: string[] = [];
  const page = await openPage(browser, file, problems);
  const row = page.locator('section.suite tr.case').filter({ hasText: 'quoted' });
  t.equal(await row.locator('th code').textContent(), XSS_ID, 'quotes, < and & in an id are shown as text');
  await row.locator('td.cell a').first().click();
  const det = page.locator('details.result[open]').filter({ hasText: 'quoted' }).first();
  t.ok(((await det.locator('.reason').textContent()) ?? '').includes(XSS), 'the reason shows the markup as text');
  t.ok(((await det.locator('table.observed-expected').textContent()) ?? '').includes('</script><script>window.__pwned=3</script>'), 'observed value as text');
  await page.waitForSelector('details.result[open][data-filled=yes]');
  t.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'nothing executed');
  t.equal(await page.locator('img').count(), 0, 'no element was created from the data');
  const counts = rowsOf(res);
  t.equal(Number(await page.locator('#shown').getAttribute('data-visible')), new Set(res.results.map((r) => JSON.stringify([r.id, r.device.id]))).size, 'one row per case and device');
  t.ok(counts.size > 0);
  await page.screenshot({ path: join(ARTIFACTS, 'report-small.png'), fullPage: true });
  t.same(problems, [], 'no console errors, page errors, dialogs or network requests');
});

t.test('FSM arc coverage: which arcs the real client walked, read from the recorded results', async (t) => {
  const { arcCoverage } = await import('../../reports/html.js');
  const mk = (id: string, suite: string, extra: Partial<CaseResult>): CaseResult => ({ id, suite, profile: 'none', device: { driver: 'mtty', class: 'sample', id: 'mtty-2' }, status: 'pass', durationMs: 1, faults: [], artifacts: {}, ...extra });
  const res = validateResults({
    schema: SCHEMA_VERSION,
    run: { tool: { name: 'vfio-conformance', version: '0' }, startedAt: '2026-01-01T00:00:00Z', complete: true, host: { hostname: 'h', arch: 'x64', cpus: 2 }, profiles: ['none'], suites: ['migration', 'qemu-migration'], target: { kind: 'qemu' }, errors: [] },
    results: [
      mk('migration/arc/RUNNING->STOP_COPY', 'migration', { expected: { arcs: 'RUNNING->RUNNING_P2P, RUNNING_P2P->STOP, STOP->STOP_COPY' } }),
      mk('migration/arc/STOP->STOP_COPY', 'migration', { expected: { arcs: 'STOP->STOP_COPY' } }),
      mk('migration/arc/STOP->ERROR', 'migration', { expected: { arcs: 'none' } }),
      mk('migration/arc/STOP->RESUMING', 'migration', { status: 'fail', expected: { arcs: 'STOP->RESUMING' } }),
      mk('qemu-migration/legacy-container', 'qemu-migration', { observed: { vfio: { source: { arcs: ['RUNNING->RUNNING_P2P', 'RUNNING_P2P->STOP'] }, destination: { arcs: ['STOP->RESUMING'] } } } }),
    ],
  });
  const cov = arcCoverage(res);
  t.same(cov.map((c) => c.arc), ['RUNNING->RUNNING_P2P', 'RUNNING_P2P->STOP', 'STOP->RESUMING', 'STOP->STOP_COPY']);
  t.equal(cov.find((c) => c.arc === 'STOP->STOP_COPY')!.direct, 2, 'counted once per passing direct case');
  t.same(cov.find((c) => c.arc === 'STOP->STOP_COPY')!.realClient, [], 'only the direct suite walked it');
  t.equal(cov.find((c) => c.arc === 'STOP->RESUMING')!.direct, 0, 'a failing direct case does not count');
  t.same(cov.find((c) => c.arc === 'STOP->RESUMING')!.realClient, ['qemu-migration/legacy-container']);
  const html = renderHtml(res);
  t.match(html, /<section id="arc-coverage">/);
  t.match(html, /the real QEMU client walked 3, 1 only by the direct-ioctl suite/);
});

t.test('the facts line names the QEMU of a profile on ours, and only the patches behind its hardware', async (t) => {
  const res = sampleRun();
  const built = { origin: 'built' as const, version: '10.2.2', binary: '/c/q/qemu-system-x86_64', series: { hash: 'abc', patches: ['0001-vtd.patch', '0002-amd.patch'] } };
  const line = (run: Partial<RunResults['run']>) => factsLine({ ...res, run: { ...res.run, ...run } });
  t.match(line({ profileQemu: { 'intel-iommu-dirty': built } }), /intel-iommu-dirty on our QEMU 10\.2\.2 \+ 0001-vtd\.patch, 0002-amd\.patch/, 'without a record: the whole series');
  const named = line({ profileQemu: { 'intel-iommu-dirty': built }, profileEmulation: { 'intel-iommu-dirty': ['0001-vtd.patch'] } });
  t.match(named, /intel-iommu-dirty on our QEMU 10\.2\.2 \+ 0001-vtd\.patch\)/);
  t.notMatch(named, /0002-amd/, 'a patch the profile did not use is not named');
});
