import t from 'tap';
import { parseDeb822, parseOneLine, mainMirror, parsePolicy } from '../../harness/kernel/apt.js';
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
