import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capture } from '../../base/proc.js';

export interface ClientKey {
  privateKey: Buffer;
  /** the base64 key blob of the public key (what goes on the guest's kernel command line) */
  publicBlob: string;
  publicLine: string;
}

let cached: ClientKey | undefined;

/**
 * A fresh ed25519 key pair for this harness process: nothing long-lived can log into a guest, and
 * the public half travels on the kernel command line so the cached image needs no per-run rebuild.
 */
export async function clientKey(): Promise<ClientKey> {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'vfioc-key-'));
  try {
    const f = join(dir, 'id');
    await capture('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vfio-conformance', '-f', f], 'ssh-keygen');
    const publicLine = readFileSync(`${f}.pub`, 'utf8').trim();
    cached = { privateKey: readFileSync(f), publicBlob: publicLine.split(' ')[1]!, publicLine };
    return cached;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
