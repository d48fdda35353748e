import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSelftests, type GuestManifest } from '../../images/kselftest/build.js';
import type { KernelBuild } from '../../harness/kernel/build.js';

// A fake tree: iommu selftests that do not compile (like 6.12.117's), vfio ones that build one program.
function fakeKernel(): { kernel: KernelBuild; out: string } {
  const root = mkdtempSync(join(tmpdir(), 'vfioc-kst-build-'));
  const st = join(root, 'src', 'tools', 'testing', 'selftests');
  mkdirSync(join(st, 'iommu'), { recursive: true });
  mkdirSync(join(st, 'vfio'), { recursive: true });
  writeFileSync(join(st, 'iommu', 'Makefile'), [
    'all:',
    "\tprintf 'int main(void) { return IOMMU_HW_INFO_TYPE_DEFAULT; }\\n' > $(OUTPUT)/iommufd.c",
    '\tgcc $(KHDR_INCLUDES) -c $(OUTPUT)/iommufd.c -o $(OUTPUT)/iommufd.o',
    '',
  ].join('\n'));
  writeFileSync(join(st, 'vfio', 'Makefile'), ['all:', "\tprintf '#!/bin/sh\\n' > $(OUTPUT)/vfio_x_test", '\tchmod +x $(OUTPUT)/vfio_x_test', ''].join('\n'));
  mkdirSync(join(root, 'headers'));
  const kernel = {
    key: 'k1', arch: 'x86_64', sourceId: 'fake-1', sourceDir: join(root, 'src'), release: '6.12.117', configHash: 'x',
    image: '', modulesDir: '', headersDir: join(root, 'headers'), config: '', log: join(root, 'build.log'), cached: true,
  } as KernelBuild;
  return { kernel, out: join(root, 'cache') };
}

t.test('a tree whose selftests do not compile: an error with the compiler line and the log, not a throw', async (t) => {
  const { kernel, out } = fakeKernel();
  const b = await buildSelftests(kernel, out);
  t.equal(b.cached, false);
  t.same(b.binaries.map((x) => x.name), ['vfio/vfio_x_test'], 'the directory that built is still usable');
  t.equal(b.errors.length, 1);
  t.equal(b.errors[0]!.dir, 'iommu');
  t.match(b.errors[0]!.message, /iommu selftests build failed: .*error: .IOMMU_HW_INFO_TYPE_DEFAULT. undeclared/);
  t.ok(existsSync(b.errors[0]!.log), 'log kept');
  t.match(readFileSync(b.errors[0]!.log, 'utf8'), /IOMMU_HW_INFO_TYPE_DEFAULT/);
  t.same(b.error, { message: b.errors[0]!.message, log: b.errors[0]!.log });
  const m = JSON.parse(readFileSync(b.manifest, 'utf8')) as GuestManifest;
  t.same(m.binaries, ['vfio/vfio_x_test']);
  t.equal(m.errors[0]!.dir, 'iommu');

  const again = await buildSelftests(kernel, out);
  t.equal(again.cached, true, 'cached, failure included');
  t.same(again.errors, b.errors);
  t.same(again.binaries, b.binaries);
  const other = await buildSelftests({ ...kernel, key: 'k2' }, out);
  t.equal(other.cached, false, 'another kernel build is another cache entry');
});
