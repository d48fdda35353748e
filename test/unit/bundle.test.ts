import t from 'tap';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARCHES } from '../../harness/arch.js';
import { bundleRootfs, readBundle, writeBundle } from '../../runner/bundle.js';
import type { Prepared } from '../../runner/prepare.js';
import type { Rootfs } from '../../images/rootfs/build.js';

/** A Prepared whose files are small stand-ins: the bundle copies and hashes files, whatever they hold. */
function fakePrepared(dir: string): Prepared {
  const f = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };
  return {
    arch: ARCHES.x86_64,
    kernel: {
      key: 'k1', arch: 'x86_64', sourceId: 'debian:linux-source-7.2_7.2.13-1', sourceDir: '/src', release: '7.2.13', configHash: 'cfg123',
      image: f('bzImage', 'kernel bytes'), modulesDir: '/m', headersDir: '/h', config: f('.config', 'CONFIG_VFIO=y\n'), log: '/log', cached: true,
    },
    agent: { path: f('vfio-agent', 'agent bytes'), sha256: 'agentsha' },
    image: { path: f('initramfs.cpio.gz', 'initramfs bytes'), hash: 'imghash', hostKey: 'ssh-ed25519 AAAA host', replaced: [], cached: true },
    selftests: { binaries: [{ name: 'iommu/iommufd', path: '/x' }], errors: [], manifest: '/m.json', cached: true },
  };
}

t.test('a bundle reads back as what was prepared, pointing into the bundle', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'vfioc-bundle-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const src = join(tmp, 'src');
  mkdirSync(src);
  const p = fakePrepared(src);
  const out = join(tmp, 'bundle');
  const m = await writeBundle(p, out, { kernelSpec: 'debian:latest' });
  t.equal(m.arch, 'x86_64');
  t.equal(m.kernelSpec, 'debian:latest');
  const b = await readBundle(out, ARCHES.x86_64);
  t.equal(b.prepared.kernel.image, join(out, 'kernel'));
  t.equal(b.prepared.image.path, join(out, 'initramfs'));
  t.equal(b.prepared.kernel.config, join(out, 'config'));
  t.same({ release: b.prepared.kernel.release, configHash: b.prepared.kernel.configHash, sourceId: b.prepared.kernel.sourceId }, { release: '7.2.13', configHash: 'cfg123', sourceId: p.kernel.sourceId });
  t.same({ hash: b.prepared.image.hash, hostKey: b.prepared.image.hostKey, agent: b.prepared.agent.sha256 }, { hash: 'imghash', hostKey: 'ssh-ed25519 AAAA host', agent: 'agentsha' });
  t.equal(b.rootfs, undefined);
  await t.rejects(bundleRootfs(b)(), /the bundle has no rootfs for the qemu-migration suite \(prepare it with --rootfs, or leave the suite out\)/,
    'a suite that wants the rootfs is refused before anything boots, never built');

  // refusals, each one line naming what is wrong
  await t.rejects(readBundle(out, ARCHES.arm64), /the bundle is for x86_64, this run is arm64/);
  appendFileSync(join(out, 'initramfs'), 'x');
  await t.rejects(readBundle(out), /initramfs was altered: 16 bytes, the manifest says 15/);
  writeFileSync(join(out, 'initramfs'), 'initramfs bytez');
  await t.rejects(readBundle(out), /initramfs was altered: sha256 /);
  writeFileSync(join(out, 'initramfs'), 'initramfs bytes');
  await t.resolves(readBundle(out), 'restored: reads again');
  rmSync(join(out, 'config'));
  await t.rejects(readBundle(out), /config is missing \(the config\)/);
  await t.rejects(readBundle(join(tmp, 'nothing')), /no manifest.json \(not a bundle/);
});

t.test('a bundle with the rootfs checks its tree', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'vfioc-bundle-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const src = join(tmp, 'src');
  mkdirSync(join(src, 'tree', 'usr', 'bin'), { recursive: true });
  writeFileSync(join(src, 'tree', 'usr', 'bin', 'qemu-system-x86_64'), 'qemu');
  const rootfs = { dir: join(src, 'tree'), key: 'rk', qemuVersion: '11.1.3' } as Rootfs;
  const out = join(tmp, 'b');
  await writeBundle(fakePrepared(src), out, { kernelSpec: '/home/me/linux', rootfs });
  const b = await readBundle(out);
  t.equal(b.rootfs?.dir, join(out, 'rootfs'));
  t.equal(b.rootfs?.qemuVersion, '11.1.3');
  const m = await bundleRootfs(b)();
  t.ok(m.qemuArgs.some((a) => a.includes(`path=${join(out, 'rootfs')}`)), 'the guest is given the bundle\'s tree over 9p');
  writeFileSync(join(out, 'rootfs', 'usr', 'bin', 'extra'), 'x');
  await t.rejects(readBundle(out), /rootfs\/ was altered: 2 files of 5 bytes, the manifest says 1 of 4/);
});
