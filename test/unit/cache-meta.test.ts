import t from 'tap';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCacheMeta, missingString } from '../../harness/kernel/cache-meta.js';
import { loadMeta } from '../../harness/kernel/build.js';
import { buildSelftests } from '../../images/kselftest/build.js';
import type { KernelBuild } from '../../harness/kernel/build.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'vfioc-meta-'));

t.test('readCacheMeta: no file is a quiet miss; a broken one is said with what happens next', async (t) => {
  const d = tmp();
  const said: string[] = [];
  const say = (l: string) => said.push(l);
  const ok = () => undefined;
  t.equal(readCacheMeta(join(d, 'none.json'), 'kernel', ok, 'rebuilding', say), undefined);
  t.same(said, [], 'nothing said for an entry never built');

  writeFileSync(join(d, 'cut.json'), '{"key": "a", "ima');
  t.equal(readCacheMeta(join(d, 'cut.json'), 'kernel', ok, 'rebuilding it (10-20 minutes)', say), undefined);
  t.match(said.pop(), new RegExp(`^kernel: cache entry ${join(d, 'cut.json')} cannot be used \\(unreadable: .*JSON.*\\); rebuilding it \\(10-20 minutes\\)$`));

  for (const text of ['null', '[1]', '"x"', '3']) {
    writeFileSync(join(d, 'odd.json'), text);
    t.equal(readCacheMeta(join(d, 'odd.json'), 'kernel', () => 'checked', 'rebuilding', say), undefined, text);
    t.match(said.pop(), text === '[1]' ? /\(checked\)/ : /\(not a JSON object\)/, text);
  }

  writeFileSync(join(d, 'good.json'), '{"key": "a", "image": ""}');
  t.equal(readCacheMeta<{ key: string }>(join(d, 'good.json'), 'kernel', (m) => missingString(m, ['key', 'image']), 'rebuilding', say), undefined);
  t.match(said.pop(), /\(no image\); rebuilding$/, 'an empty string is missing too');
  t.same(readCacheMeta<{ key: string }>(join(d, 'good.json'), 'kernel', (m) => missingString(m, ['key']), 'rebuilding', say), { key: 'a', image: '' });
  t.same(said, []);
});

t.test('a kernel build entry is used only when its image and headers are there', async (t) => {
  const d = tmp();
  mkdirSync(join(d, 'headers', 'linux'), { recursive: true });
  writeFileSync(join(d, 'headers', 'linux', 'vfio.h'), '');
  writeFileSync(join(d, 'bzImage'), '');
  const meta = { key: 'k', release: '7.2.13', image: join(d, 'bzImage'), headersDir: join(d, 'headers'), config: join(d, 'config'), cached: false };
  writeFileSync(join(d, 'build.json'), JSON.stringify(meta));
  const said: string[] = [];
  t.match(loadMeta(d, 'rebuilding', (l) => said.push(l)), { ...meta, cached: true });
  writeFileSync(join(d, 'build.json'), JSON.stringify({ ...meta, image: join(d, 'gone') }));
  t.equal(loadMeta(d, 'rebuilding', (l) => said.push(l)), undefined);
  writeFileSync(join(d, 'build.json'), JSON.stringify({ ...meta, headersDir: join(d, 'nowhere') }));
  t.equal(loadMeta(d, 'rebuilding', (l) => said.push(l)), undefined);
  writeFileSync(join(d, 'build.json'), JSON.stringify({ ...meta, image: 3 }));
  t.equal(loadMeta(d, 'rebuilding', (l) => said.push(l)), undefined);
  writeFileSync(join(d, 'build.json'), '');
  t.equal(loadMeta(d, 'rebuilding', (l) => said.push(l)), undefined);
  t.match(said, [/its image .*gone is gone/, /its headers .*nowhere are gone/, /\(no image\)/, /\(unreadable: /]);
});

t.test('a corrupt selftest cache entry is said and rebuilt, not silently', async (t) => {
  const root = tmp();
  const st = join(root, 'src', 'tools', 'testing', 'selftests', 'iommu');
  mkdirSync(st, { recursive: true });
  writeFileSync(join(st, 'Makefile'), ['all:', "\tprintf '#!/bin/sh\\n' > $(OUTPUT)/iommufd", '\tchmod +x $(OUTPUT)/iommufd', ''].join('\n'));
  const kernel = {
    key: 'k1', arch: 'x86_64', sourceId: 'fake-1', sourceDir: join(root, 'src'), release: '7.2', configHash: 'x',
    image: '', modulesDir: '', headersDir: root, config: '', log: join(root, 'build.log'), cached: true,
  } as KernelBuild;
  const out = join(root, 'cache');
  const first = await buildSelftests(kernel, out);
  t.equal(first.cached, false);
  t.equal((await buildSelftests(kernel, out)).cached, true, 'a whole entry is used');
  const dir = join(out, (await import('node:fs')).readdirSync(out)[0]!);
  writeFileSync(join(dir, 'build.json'), '{"binaries": [');
  const said: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => { said.push(String(s)); return true; }) as typeof process.stderr.write;
  let again;
  try {
    again = await buildSelftests(kernel, out);
  } finally {
    process.stderr.write = write;
  }
  t.equal(again.cached, false, 'rebuilt');
  t.same(again.binaries.map((b) => b.name), ['iommu/iommufd']);
  t.match(said.join(''), /kselftest: cache entry .*build\.json cannot be used \(unreadable: .*\); building the selftests again/);
});
