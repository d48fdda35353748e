import t from 'tap';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkHostKey, hostFieldMatches, keyTypeOf, knownHostsLine, KnownHostsVerifier, lookupName, parseKnownHosts,
} from '../../harness/ssh/known-hosts.js';

/** An SSH public key blob: string type, then whatever (the parser only reads the type). */
function blob(type: string, body: string): Buffer {
  const t = Buffer.from(type);
  const b = Buffer.from(body);
  const len = (n: number) => { const x = Buffer.alloc(4); x.writeUInt32BE(n); return x; };
  return Buffer.concat([len(t.length), t, len(b.length), b]);
}
const ED_A = blob('ssh-ed25519', 'A'.repeat(32));
const ED_B = blob('ssh-ed25519', 'B'.repeat(32));
const ECDSA = blob('ecdsa-sha2-nistp256', 'C'.repeat(40));
const line = (hosts: string, k: Buffer) => `${hosts} ${keyTypeOf(k)} ${k.toString('base64')}`;
function hashed(name: string, salt = Buffer.from('0123456789abcdefghij')): string {
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

t.test('lookup names and key types', async (t) => {
  t.equal(lookupName('lab1', 22), 'lab1');
  t.equal(lookupName('127.0.0.1', 2222), '[127.0.0.1]:2222');
  t.equal(keyTypeOf(ED_A), 'ssh-ed25519');
  t.equal(keyTypeOf(Buffer.from([0, 0])), 'unknown');
  t.equal(knownHostsLine('h', 2200, ED_A), `[h]:2200 ssh-ed25519 ${ED_A.toString('base64')}`);
  void generateKeyPairSync;
});

t.test('host fields: plain, port form, lists, wildcards, negation, hashed', async (t) => {
  t.ok(hostFieldMatches('lab1', 'lab1', 22));
  t.notOk(hostFieldMatches('lab1', 'lab1', 2222), 'a plain name does not cover another port');
  t.ok(hostFieldMatches('[lab1]:2222', 'lab1', 2222));
  t.notOk(hostFieldMatches('[lab1]:2222', 'lab1', 22));
  t.ok(hostFieldMatches('lab0,LAB1,10.0.0.1', 'lab1', 22), 'comma list, case-insensitive');
  t.ok(hostFieldMatches('lab*', 'lab7', 22));
  t.ok(hostFieldMatches('lab?', 'lab7', 22));
  t.notOk(hostFieldMatches('lab?', 'lab77', 22));
  t.notOk(hostFieldMatches('lab*,!lab7', 'lab7', 22), 'negation wins');
  t.ok(hostFieldMatches('lab*,!lab7', 'lab8', 22));
  t.ok(hostFieldMatches(hashed('lab1'), 'lab1', 22));
  t.ok(hostFieldMatches(hashed('[127.0.0.1]:2222'), '127.0.0.1', 2222));
  t.notOk(hostFieldMatches(hashed('lab1'), 'lab2', 22));
  t.notOk(hostFieldMatches('|1|garbage', 'lab1', 22));
  t.notOk(hostFieldMatches('lab.1', 'labx1', 22), 'a dot is literal');
});

t.test('parse: comments, blanks, markers, bad lines; line numbers are the file lines', async (t) => {
  const text = ['# comment', '', line('lab1', ED_A), 'garbage', `@revoked ${line('lab2', ED_B)}`, `@cert-authority ${line('*.lab', ECDSA)}`, `@bogus ${line('x', ED_A)}`, `  ${line('lab3', ECDSA)}\r`].join('\n');
  const e = parseKnownHosts(text);
  t.same(e.map((x) => [x.line, x.hosts, x.marker ?? '-', x.keyType]), [
    [3, 'lab1', '-', 'ssh-ed25519'], [5, 'lab2', 'revoked', 'ssh-ed25519'], [6, '*.lab', 'cert-authority', 'ecdsa-sha2-nistp256'], [8, 'lab3', '-', 'ecdsa-sha2-nistp256'],
  ]);
  t.ok(e[0]!.key.equals(ED_A));
});

t.test('verdicts', async (t) => {
  const e = parseKnownHosts([line('other', ED_B), line('lab1', ED_A), line('[lab1]:2222', ECDSA), `@revoked ${line('lab9', ED_B)}`, line('lab9', ED_B), `@cert-authority ${line('*', ED_B)}`].join('\n'));
  t.same(checkHostKey(e, 'lab1', 22, ED_A), { kind: 'match', line: 2 });
  t.same(checkHostKey(e, 'lab1', 22, ED_B), { kind: 'mismatch', line: 2, knownType: 'ssh-ed25519' });
  t.same(checkHostKey(e, 'lab1', 2222, ED_A), { kind: 'other-type', line: 3, knownType: 'ecdsa-sha2-nistp256' });
  t.same(checkHostKey(e, 'lab2', 22, ED_A), { kind: 'unknown' }, 'a cert-authority line does not make a host known');
  t.same(checkHostKey(e, 'lab9', 22, ED_B), { kind: 'revoked', line: 4 }, 'revoked beats a plain listing');
  t.same(checkHostKey(parseKnownHosts(`${hashed('[10.1.1.1]:22022')} ssh-ed25519 ${ED_A.toString('base64')}`), '10.1.1.1', 22022, ED_A), { kind: 'match', line: 1 });
});

t.test('verifier: mismatch names file and line, unknown is refused, --accept-new-host-key appends', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-kh-'));
  const f = join(dir, 'known_hosts');
  writeFileSync(f, `# lab\n${line('[127.0.0.1]:2222', ED_A)}`); // no trailing newline
  const v = new KnownHostsVerifier(f, '127.0.0.1', 2222, true);
  t.ok(v.verify(ED_A));
  t.notOk(v.verify(ED_B), 'a changed key is refused even with acceptNew');
  t.match(v.problem, new RegExp(`^SSH host key of \\[127\\.0\\.0\\.1\\]:2222 has CHANGED: .*${f.replace(/[.]/g, '\\.')}:2 `));
  t.notMatch(v.problem, /\n/, 'one line');
  t.equal(readFileSync(f, 'utf8').split('\n').length, 2, 'file untouched');

  const strict = new KnownHostsVerifier(f, '127.0.0.1', 2223, false);
  t.notOk(strict.verify(ED_B));
  t.match(strict.problem, /is not in .*known_hosts .*--accept-new-host-key/);
  t.equal(strict.added, undefined);

  const accept = new KnownHostsVerifier(f, '127.0.0.1', 2223, true);
  t.ok(accept.verify(ED_B));
  t.same(accept.added, { line: 3, text: `[127.0.0.1]:2223 ssh-ed25519 ${ED_B.toString('base64')}` });
  t.equal(readFileSync(f, 'utf8'), `# lab\n${line('[127.0.0.1]:2222', ED_A)}\n${accept.added!.text}\n`, 'appended on a line of its own');
  t.ok(strict.verify(ED_B), 'known now');

  const fresh = new KnownHostsVerifier(join(dir, 'sub', 'kh'), 'h', 22, true);
  t.ok(fresh.verify(ED_A), 'a missing file is created');
  t.equal(readFileSync(join(dir, 'sub', 'kh'), 'utf8'), `h ssh-ed25519 ${ED_A.toString('base64')}\n`);
});
