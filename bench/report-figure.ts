/**
 * The report's figure for `npm run bench`: the HTML page of a generated results set of the default
 * run's size and shape (bench/sample-run.ts; no guest is booted), its size, and its time to
 * interactive in Debian's Chromium from file:// (navigation start to the moment the page script
 * has wired the filters, which it records in data-ready-ms), median of several loads.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { writeHtml } from '../reports/html.js';
import { gate } from '../reports/gate.js';
import { verdictOf } from '../reports/write.js';
import { SAMPLE_EXPECTATIONS, sampleRun } from './sample-run.js';

const CHROMIUM = '/usr/bin/chromium';

export interface ReportFigure {
  results: number;
  bytes: number;
  megabytes: number;
  /** null when Debian's Chromium is not installed */
  interactiveMs: number | null;
  loads: number;
  renderMs: number;
}

export async function reportFigure(loads = 5): Promise<ReportFigure> {
  const res = sampleRun();
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-report-'));
  try {
    const t0 = performance.now();
    const file = writeHtml(dir, res, verdictOf(gate(res, { expectations: SAMPLE_EXPECTATIONS })));
    const renderMs = Math.round(performance.now() - t0);
    const bytes = statSync(file).size;
    const megabytes = Math.round((bytes / 1e6) * 100) / 100;
    if (!existsSync(CHROMIUM)) return { results: res.results.length, bytes, megabytes, interactiveMs: null, loads: 0, renderMs };
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless=new', '--no-sandbox', '--disable-gpu'] });
    const times: number[] = [];
    try {
      for (let i = 0; i < loads; i++) {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        await page.goto(pathToFileURL(file).href);
        await page.waitForSelector('html[data-ready=true]');
        times.push(Number(await page.locator('html').getAttribute('data-ready-ms')));
        await page.close();
      }
    } finally {
      await browser.close();
    }
    times.sort((a, b) => a - b);
    return { results: res.results.length, bytes, megabytes, interactiveMs: times[times.length >> 1]!, loads, renderMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
