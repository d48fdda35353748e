/**
 * Progress for long steps. On a terminal one status line is rewritten in place; elsewhere (CI logs)
 * a line is printed at most every `quietMs`, so a 10-minute build neither floods the log nor looks
 * hung. Everything goes to stderr: stdout stays for results (--json).
 */
export class Progress {
  private last = 0;
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly started = Date.now();
  private shown = false;
  constructor(private readonly label: string, private readonly quietMs = 20_000) {}

  update(detail: string): void {
    const now = Date.now();
    const line = `${this.label}: ${detail} [${Math.round((now - this.started) / 1000)} s]`;
    if (this.tty) {
      if (now - this.last < 100) return;
      process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 100) - 1)}`);
      this.shown = true;
    } else {
      if (now - this.last < this.quietMs) return;
      process.stderr.write(`${line}\n`);
    }
    this.last = now;
  }

  done(detail: string): void {
    if (this.tty && this.shown) process.stderr.write('\r\x1b[K');
    process.stderr.write(`${this.label}: ${detail} (${((Date.now() - this.started) / 1000).toFixed(1)} s)\n`);
  }
}

export function info(msg: string): void {
  process.stderr.write(`${msg}\n`);
}
