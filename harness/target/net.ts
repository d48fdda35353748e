import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago. QEMU binds it after a short race window; a lost race fails the boot with QEMU's hostfwd error in qemu.log (not retried yet). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}
