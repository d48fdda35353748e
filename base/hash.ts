import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A stable hash of a list of named parts, so cache keys do not depend on property order. */
export function hashParts(parts: Record<string, string>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(parts).sort()) h.update(`${k}\0${parts[k]}\0`);
  return h.digest('hex');
}
