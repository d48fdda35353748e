/**
 * An error the user can act on: one line that says what went wrong and, where there is one,
 * the log to read. The CLI prints `message` (+ `log`) and exits with `exitCode`; the stack is
 * only shown with --verbose, because a stack trace is noise to someone whose kernel did not build.
 */
export class HarnessError extends Error {
  readonly log?: string;
  readonly exitCode: number;
  constructor(message: string, opts: { log?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'HarnessError';
    this.log = opts.log;
    this.exitCode = opts.exitCode ?? 2;
  }

  /** The one line the CLI prints. */
  oneLine(): string {
    return this.log ? `${this.message} (see ${this.log})` : this.message;
  }
}
