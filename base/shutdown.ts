/**
 * Synchronous last words on exit and on SIGINT/SIGTERM/SIGHUP: kill every QEMU we started, write
 * the reports for what a run did. Synchronous because a signal handler that awaits can be cut short.
 */
type Hook = () => void;
const hooks = new Set<Hook>();
let installed = false;

function runAll(): void {
  for (const h of [...hooks].reverse()) {
    try { h(); } catch { /* last words must not throw */ }
  }
  hooks.clear();
}

export function onShutdown(fn: Hook): () => void {
  if (!installed) {
    installed = true;
    process.on('exit', runAll);
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
      process.once(sig, () => {
        process.stderr.write(`\nvfio-conformance: ${sig}: stopping, writing what was done\n`);
        runAll();
        process.exit(code);
      });
    }
  }
  hooks.add(fn);
  return () => hooks.delete(fn);
}
