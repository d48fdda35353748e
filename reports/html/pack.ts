/**
 * The whole results.json, gzip-compressed and base64-encoded, in one inert script element of the
 * page: the step logs and console lines are read from it when a result is opened (so they need not
 * be written out in the HTML), and a tool can take the results back from a saved page:
 *
 *   gunzip(base64decode(document.getElementById('vfio-results').textContent)) -> results.json
 *
 * Base64 has no `<`, so nothing in the data can end the element early.
 */
import { gzipSync } from 'node:zlib';
import type { RunResults } from '../../base/results/schema.js';

export const PACK_ID = 'vfio-results';

export function packResults(res: RunResults): string {
  const b64 = gzipSync(Buffer.from(JSON.stringify(res), 'utf8'), { level: 9 }).toString('base64');
  return `<script type="application/gzip" id="${PACK_ID}" data-encoding="gzip+base64">${b64}</script>`;
}
