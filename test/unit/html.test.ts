import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { repoPath } from '../../base/paths.js';
import { esc, jsonForScript, renderHtml, writeHtml } from '../../reports/html.js';
import { verdictOf } from '../../reports/write.js';
import { gate } from '../../reports/gate.js';
import { validateResults } from '../../base/results/file.js';
import { SCHEMA_VERSION, STATUSES, type CaseResult, type RunResults, type Status } from '../../base/results/schema.js';

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
    run: {
      tool: { name: 'vfio-conformance', version: '0.1.0' },
      startedAt: '2025-05-01T10:00:00.000Z',
      endedAt: '2025-05-01T10:20:00.000Z',
      complete: true,
      host: { hostname: 'ci-1', arch: 'x86_64', cpus: 2 },
      qemu: { version: '9.2.0', binary: '/usr/bin/qemu-system-x86_64' },
      accel: 'tcg',
      kernel: { release: '6.12.9', sourceId: 'debian:linux-source-6.12', configHash: 'c0ffee', arch: 'x86_64' },
      profiles: ['q35-vtd', 'virt-smmuv3'],
      suites: ['migration', 'dirty', 'pasid'],
      target: { kind: 'qemu' },
      errors: [{ profile: 'virt-smmuv3', message: 'guest did not answer SSH within 300 s <timeout>', log: 'runs/x/virt-smmuv3/console.log' }],
    },
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

t.test('rendering without a browser: escaping, embedded data, CSP, atomic write', async (t) => {
  const res = fixture();
  const html = renderHtml(res);
  t.notMatch(html, /<script>window\.__pwned/, 'the injected script tag is escaped');
  t.notMatch(html, /<img src=x/, 'the injected img tag is escaped');
  t.match(html, esc(XSS), 'the injected text is there, escaped');
  const scripts = html.match(/<script\b/g) ?? [];
  t.equal(scripts.length, 2, 'only the page\'s own two script elements (data + code)');
  const m = /<script type="application\/json" id="vfio-results">([\s\S]*?)<\/script>/.exec(html);
  t.ok(m, 'embedded data block');
  t.notMatch(m![1]!, /<\//, 'no </ inside the data block');
  t.same(JSON.parse(m![1]!), JSON.parse(JSON.stringify(res)), 'embedded data round-trips');
  t.match(html, /Content-Security-Policy" content="default-src &#39;none&#39;; style-src &#39;unsafe-inline&#39;; img-src data:; script-src &#39;sha256-/, 'CSP admits the inline script by hash only');
  t.notMatch(html, /(src|href)="(https?:)?\/\//, 'no external assets');
  t.equal(jsonForScript({ a: '</script><!--\u2028' }), '{"a":"\\u003c/script\\u003e\\u003c!--\\u2028"}');
  t.equal(esc(`a<b>&"'`), 'a&lt;b&gt;&amp;&quot;&#39;');

  const dir = mkdtempSync(join(tmpdir(), 'vfio-html-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = writeHtml(dir, res);
  t.equal(path, join(dir, 'index.html'));
  t.equal(readFileSync(path, 'utf8'), html);

  const empty = renderHtml({ ...res, results: [] });
  t.match(empty, /No results recorded/);
});

t.test('the gate verdict: a banner, known failures marked with their reason, regressions left plain', async (t) => {
  const res = fixture();
  const expectations = { schema: 1 as const, known: [{ id: FAIL_ID, reason: 'a kernel bug <with markup> we know of' }] };
  const verdict = verdictOf(gate(res, { expectations }));
  t.equal(verdict.known.size, 1);
  const html = renderHtml(res, verdict);
  t.match(html, /id="gate" data-exit="2">Gate: HARNESS ERROR — 3 regressions, 1 known failure/, 'the fixture has a harness error; the XSS errors (2 profiles) and the type1 failure are regressions');
  t.match(html, /class="cell st-fail known"[^>]*data-known="true"/, 'the known failure is marked in the grid');
  t.match(html, /FAIL \(known\)<\/button>/);
  t.match(html, /Known failure:<\/strong> a kernel bug &lt;with markup&gt; we know of/, 'its reason, escaped, in the details');
  t.equal((html.match(/data-known="true"/g) ?? []).length, 1, 'only that cell');
  const clean = { ...res, run: { ...res.run, errors: [] } };
  const known = [FAIL_ID, XSS_ID, 'dirty/type1/bitmap-4k'].map((id) => ({ id, reason: `known: ${id}` }));
  const all = verdictOf(gate(clean, { expectations: { schema: 1, known } }));
  t.match(renderHtml(clean, all), /data-exit="0">Gate: OK — 0 regressions, 4 known failures/, 'every failure known (the XSS case on both profiles)');
  t.notMatch(renderHtml(res), /id="gate"/, 'no verdict given: no banner');
});

t.test('~1000 results render quickly into one file', async (t) => {
  const base = fixture();
  const many: CaseResult[] = [];
  for (let i = 0; many.length < 1000; i++) for (const r of base.results) if (many.length < 1000) many.push({ ...r, id: `${r.id}/${i}` });
  const t0 = Date.now();
  const html = renderHtml({ ...base, results: many });
  t.ok(Date.now() - t0 < 3000, `rendered 1000 results in ${Date.now() - t0} ms`);
  t.ok(html.length < 5_000_000, `${html.length} bytes`);
});

const haveChromium = existsSync(CHROMIUM);

t.test('in Chromium: loads, filters, shows a failure, never runs injected script', { skip: haveChromium ? false : `${CHROMIUM} is not installed (apt-get install chromium); the browser test needs Debian's Chromium` }, async (t) => {
  const res = fixture();
  const dir = mkdtempSync(join(tmpdir(), 'vfio-html-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = writeHtml(dir, res);

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60_000 });
  t.teardown(() => browser.close());
  const page: Page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith('file:')) problems.push(`request: ${r.url()}`); });
  page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); void d.dismiss(); });
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

  const rows = rowsOf(res);
  const visibleRows = () => page.locator('#grid tr.case:visible').count();
  const shown = async () => Number(await page.locator('#shown').getAttribute('data-visible'));

  await t.test('summary', async (t) => {
    t.equal(await page.locator('#run-state').getAttribute('data-complete'), 'true');
    t.equal(await page.locator('[data-count=total]').textContent(), String(res.results.length));
    for (const s of STATUSES) {
      const n = res.results.filter((r) => r.status === s).length;
      t.ok(n > 0, `fixture has ${s}`);
      t.equal(await page.locator(`[data-count="${s}"]`).textContent(), String(n), `${s} count`);
    }
    const summary = (await page.locator('#summary').textContent()) ?? '';
    for (const want of ['6.12.9', 'tcg', '9.2.0', 'q35-vtd, virt-smmuv3', 'guest did not answer SSH within 300 s <timeout>']) t.ok(summary.includes(want), `summary shows ${want}`);
  });

  await t.test('grid', async (t) => {
    t.equal(await visibleRows(), rows.size, 'one row per case id');
    t.equal(await shown(), rows.size);
    const pairs = new Set(res.results.map((r) => `${r.profile} ${r.device.id}`));
    t.equal(await page.locator('#grid thead tr').nth(1).locator('th').count(), pairs.size, 'one column per (profile, device)');
    t.equal(await page.locator('#grid thead tr').first().locator('th[data-profile]').count(), 2, 'grouped under the 2 profiles');
    const row = page.locator(`#grid tr.case[data-id="${FAIL_ID}"]`);
    t.equal(await row.locator('th').textContent(), FAIL_ID, 'ids with -> are shown as they are');
    t.equal((await row.locator('td.cell').first().textContent())?.trim(), 'FAIL', 'status as text in the cell');
    t.match(await row.locator('td.cell').first().getAttribute('class'), /st-fail/);
    const bg = await row.locator('td.cell').first().evaluate((el) => getComputedStyle(el).backgroundColor);
    const passBg = await row.locator('td.cell.st-pass').first().evaluate((el) => getComputedStyle(el).backgroundColor);
    t.not(bg, passBg, 'fail and pass cells have different colours');
    const xssRow = page.locator('#grid tr.case').filter({ hasText: 'quoted' });
    t.equal(await xssRow.locator('th').textContent(), XSS_ID, 'quotes, < and & in an id are shown as text');
  });

  await t.test('status filter: unchecking pass hides all-pass rows', async (t) => {
    await page.locator('input[name=status][value=pass]').uncheck();
    const expected = [...rows.values()].filter((cells) => cells.some((c) => c.status !== 'pass')).length;
    t.ok(expected < rows.size && expected > 0, `${expected} of ${rows.size} rows have a non-pass result`);
    t.equal(await visibleRows(), expected, 'visible rows');
    t.equal(await shown(), expected, 'the count shown matches');
    t.equal(await page.locator('#shown').textContent(), `showing ${expected} of ${rows.size} cases`);
    for (const id of await page.locator('#grid tr.case:visible').evaluateAll((els) => els.map((e) => e.getAttribute('data-id')))) {
      t.ok(rows.get(id!)!.some((c) => c.status !== 'pass'), `${id} has a non-pass result`);
    }
    await page.locator('input[name=status][value=pass]').check();
    t.equal(await visibleRows(), rows.size, 'checking it again shows them all');
  });

  await t.test('text filter narrows rows', async (t) => {
    await page.locator('#f-text').fill('stop_copy->');
    const expected = [...rows.keys()].filter((id) => id.toLowerCase().includes('stop_copy->')).length;
    t.ok(expected > 0 && expected < rows.size);
    t.equal(await visibleRows(), expected);
    t.equal(await shown(), expected);
    await page.locator('#f-text').fill('<bad>');
    t.equal(await visibleRows(), 1, 'filtering on characters that need escaping');
    await page.locator('#f-text').fill('');
    t.equal(await visibleRows(), rows.size);
  });

  await t.test('profile select hides the other profile\'s columns and rows without results there', async (t) => {
    await page.locator('#f-profile').selectOption('virt-smmuv3');
    t.equal(await page.locator('#grid td.cell[data-profile="q35-vtd"]:visible').count(), 0);
    t.ok((await page.locator('#grid td.cell[data-profile="virt-smmuv3"]:visible').count()) > 0);
    await page.locator('input[name=status][value=pass]').uncheck();
    const expected = [...rows.values()].filter((cells) => cells.some((c) => c.profile === 'virt-smmuv3' && c.status !== 'pass')).length;
    t.equal(await visibleRows(), expected, 'rows with a non-pass result on virt-smmuv3');
    await page.locator('input[name=status][value=pass]').check();
    await page.locator('#f-profile').selectOption('');
    t.equal(await visibleRows(), rows.size);
  });

  await t.test('clicking a failure shows its details', async (t) => {
    const row = page.locator(`#grid tr.case[data-id="${FAIL_ID}"]`);
    const details = page.locator(`#${await row.getAttribute('data-details')}`);
    t.notOk(await details.isVisible(), 'details hidden at first');
    await row.locator('td.cell button').first().click();
    t.ok(await details.isVisible(), 'details row shown');
    const block = details.locator('details.result[data-status=fail]');
    t.equal(await block.getAttribute('open'), '', 'the failure\'s <details> is open');
    const text = (await block.textContent()) ?? '';
    t.ok(text.includes('SET_STATE returned EINVAL, the uAPI says the arc succeeds'), 'reason');
    const table = block.locator('table.observed-expected');
    t.ok(await table.isVisible(), 'observed/expected table visible');
    const cells = await table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.children).map((c) => c.textContent)));
    t.same(cells, [['errno', 'EINVAL', 'OK'], ['stateAfter', 'STOP_COPY', 'STOP']], 'key | observed | expected');
    const fault = block.locator('pre.fault-lines');
    t.ok(await fault.isVisible(), 'fault lines visible');
    t.equal(await fault.textContent(), 'Call Trace:\n <TASK>\n vfio_ioctl_device_feature+0x1a/0x2b\n </TASK>', 'fault lines, <TASK> as text');
    t.ok(text.includes('WARNING: CPU: 0 PID: 77 at drivers/vfio/vfio_main.c:1234'), 'fault title');
    t.ok(text.includes('repro/arc-STOP_COPY-STOP'), 'artifact path');
    t.match(await block.locator('pre.step-log').textContent(), /"op":"set_state"/, 'step log');
  });

  await t.test('injected markup is text and never runs', async (t) => {
    const row = page.locator('#grid tr.case').filter({ hasText: 'quoted' });
    await row.locator('td.cell button').first().click();
    const block = page.locator(`#${await row.getAttribute('data-details')} details.result`).first();
    t.ok(await block.isVisible());
    t.ok(((await block.locator('.reason').textContent()) ?? '').includes(XSS), 'the reason shows the markup as text');
    t.ok(((await block.locator('table.observed-expected').textContent()) ?? '').includes('</script><script>window.__pwned=3</script>'), 'observed value as text');
    t.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'nothing executed');
    t.equal(await page.locator('img').count(), 0, 'no element was created from the data');
    const data = await page.evaluate(() => JSON.parse(document.getElementById('vfio-results')!.textContent!) as unknown);
    t.same(data, JSON.parse(JSON.stringify(res)), 'the embedded JSON parses back to the results');
  });

  await t.test('screenshot and no console errors', async (t) => {
    // Show the failure's details in the screenshot.
    await page.evaluate(() => window.scrollTo(0, 0));
    const out = repoPath('test-artifacts');
    mkdirSync(out, { recursive: true });
    const png = join(out, 'report.png');
    await page.screenshot({ path: png, fullPage: true });
    t.ok(statSync(png).size > 10_000, `screenshot at ${png}`);
    t.same(problems, [], 'no console errors, page errors, dialogs or network requests');
  });

  await t.test('stays usable with 1000 results', async (t) => {
    const many: CaseResult[] = [];
    for (let i = 0; many.length < 1000; i++) for (const r of res.results) if (many.length < 1000) many.push({ ...r, id: `${r.id}/${i}` });
    const big = writeHtml(mkdtempSync(join(dir, 'big-')), { ...res, results: many });
    const p2 = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errs: string[] = [];
    p2.on('pageerror', (e) => errs.push(e.message));
    let t0 = Date.now();
    await p2.goto(pathToFileURL(big).href, { waitUntil: 'load' });
    const loadMs = Date.now() - t0;
    const total = new Set(many.map((r) => r.id)).size;
    t.equal(Number(await p2.locator('#shown').getAttribute('data-visible')), total);
    t0 = Date.now();
    await p2.locator('input[name=status][value=pass]').uncheck();
    await p2.locator('#f-text').fill('/7');
    const filterMs = Date.now() - t0;
    t.ok(Number(await p2.locator('#shown').getAttribute('data-visible')) < total);
    t.ok(loadMs < 10_000 && filterMs < 5_000, `load ${loadMs} ms, two filter changes ${filterMs} ms`);
    t.same(errs, []);
    await p2.close();
  });
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
