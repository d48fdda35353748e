import t from 'tap';
import { mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseDeb822, parseOneLine, mainMirror, parsePolicy, PrivateApt } from '../../harness/kernel/apt.js';
import { HarnessError } from '../../base/errors.js';

const deb822 = `Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`;

t.test('deb822 sources: deb stanzas only, all fields', async (t) => {
  const s = parseDeb822(deb822);
  t.equal(s.length, 2);
  t.same(s[0], { uri: 'http://mirror.example/debian', suites: ['bookworm', 'bookworm-updates'], components: ['main', 'contrib'], signedBy: '/usr/share/keyrings/debian-archive-keyring.gpg' });
});

t.test('one-line sources, options in brackets skipped', async (t) => {
  const s = parseOneLine('# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb-src http://m.example/debian bookworm main\n');
  t.same(s, [{ uri: 'http://m.example/debian', suites: ['bookworm'], components: ['main'] }]);
});

t.test('the main mirror is the first with a plain release suite, never the security archive', async (t) => {
  const s = parseDeb822(deb822).reverse();
  t.equal(mainMirror(s).uri, 'http://mirror.example/debian');
  t.throws(() => mainMirror(parseDeb822(deb822).slice(1)), HarnessError);
});

t.test('apt-cache policy for several packages: candidates by name, arch suffix dropped, (none) left out', async (t) => {
  const out = [
    'busybox-static:arm64:', '  Installed: (none)', '  Candidate: 1:1.35.0-4+deb12u1+b1', '  Version table:', '     1:1.35.0-4+deb12u1+b1 500',
    'libc6:', '  Installed: 2.36-9', '  Candidate: 2.36-9+deb12u14', '  Version table:',
    'nosuch:', '  Installed: (none)', '  Candidate: (none)', '',
  ].join('\n');
  t.same([...parsePolicy(out)], [['busybox-static', '1:1.35.0-4+deb12u1+b1'], ['libc6', '2.36-9+deb12u14']]);
});

/**
 * A private apt state whose lists are written here, not fetched: apt-cache reads them as it reads
 * downloaded ones. `stamp` is when update() last fetched them.
 */
async function listsOnDisk(versions: Record<string, string>, stampAt: Date): Promise<PrivateApt> {
  const apt = new PrivateApt('unstable', [{ uri: 'http://mirror.example/debian', suites: ['bookworm'], components: ['main'] }]);
  const debArch = (await execa('dpkg', ['--print-architecture'])).stdout.trim();
  const lists = join(apt.dir, 'lists');
  mkdirSync(lists, { recursive: true });
  writeFileSync(join(lists, 'mirror.example_debian_dists_unstable_InRelease'), 'Origin: Debian\nSuite: unstable\nComponents: main\n');
  writeFileSync(join(lists, `mirror.example_debian_dists_unstable_main_binary-${debArch}_Packages`), Object.entries(versions).map(([p, v]) => [
    `Package: ${p}`, `Version: ${v}`, 'Architecture: all', 'Description: kernel source', `Filename: pool/main/l/linux/${p}_${v}_all.deb`, 'Size: 1', '',
  ].join('\n')).join('\n'));
  writeFileSync(join(apt.dir, 'updated'), stampAt.toISOString());
  utimesSync(join(apt.dir, 'updated'), stampAt, stampAt);
  return apt;
}

t.test('apt-cache answers are kept until the lists change: a repeat asks nothing, a new upload is seen after the next update', async (t) => {
  process.env.VFIO_CONFORMANCE_CACHE = mkdtempSync(join(tmpdir(), 'vfioc-apt-'));
  t.teardown(() => { delete process.env.VFIO_CONFORMANCE_CACHE; });
  const fetched = new Date(Date.now() - 3600_000);
  const re = '^linux-source-[0-9]+\\.[0-9]+$';
  let apt = await listsOnDisk({ 'linux-source-7.1': '7.1.3-1', 'linux-source-7.2': '7.2.13-1' }, fetched);
  await apt.update();
  t.same((await apt.names(re)).sort(), ['linux-source-7.1', 'linux-source-7.2']);
  t.equal(await apt.candidate('linux-source-7.2'), '7.2.13-1');
  t.equal(await apt.candidate('linux-source-9.9'), undefined, 'a package the suite lacks');

  // New lists on disk, but update() has not fetched them (the stamp is the same): the answers stand,
  // so no apt-cache ran for them (it would have seen 7.3).
  apt = await listsOnDisk({ 'linux-source-7.2': '7.2.14-1', 'linux-source-7.3': '7.3.1-1' }, fetched);
  const t0 = performance.now();
  t.same((await apt.names(re)).sort(), ['linux-source-7.1', 'linux-source-7.2'], 'remembered search');
  t.equal(await apt.candidate('linux-source-7.2'), '7.2.13-1', 'remembered candidate');
  t.ok(performance.now() - t0 < 200, 'answered without loading the package cache');

  // The next update (the stamp moves): the upload is noticed.
  apt = await listsOnDisk({ 'linux-source-7.2': '7.2.14-1', 'linux-source-7.3': '7.3.1-1' }, new Date());
  t.same((await apt.names(re)).sort(), ['linux-source-7.2', 'linux-source-7.3']);
  t.equal(await apt.candidate('linux-source-7.2'), '7.2.14-1');

  // A memo that is not JSON (a crash mid-write on an old version, a hand edit) is asked again.
  writeFileSync(join(apt.dir, 'candidates.json'), '{"listsAt": 1, "versi');
  t.equal(await apt.candidate('linux-source-7.3'), '7.3.1-1');
});
