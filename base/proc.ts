import { execa, type Options as ExecaOptions } from 'execa';
import { createWriteStream, type WriteStream } from 'node:fs';
import { HarnessError } from './errors.js';

export interface RunLoggedOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** full stdout+stderr goes here (appended) */
  log: string;
  /** called with each output line, for progress */
  onLine?: (line: string) => void;
  /** what failed, for the one-line error: "kernel build" */
  what: string;
  timeoutMs?: number;
  /** text fed to the command's stdin (otherwise stdin is closed) */
  input?: string;
}

/**
 * Run a command whose output matters only when it fails: everything goes to a log file, the
 * caller sees lines for progress, and a failure becomes a HarnessError naming the first line
 * that looks like an error and the log.
 */
export async function runLogged(cmd: string, args: string[], o: RunLoggedOptions): Promise<void> {
  const out: WriteStream = createWriteStream(o.log, { flags: 'a' });
  out.write(`$ ${[cmd, ...args].join(' ')}\n`);
  let firstError: string | undefined;
  let tail: string[] = [];
  const opts: ExecaOptions = {
    cwd: o.cwd,
    env: o.env,
    all: true,
    buffer: false,
    reject: false,
    ...(o.input !== undefined ? { input: o.input } : { stdin: 'ignore' as const }),
    timeout: o.timeoutMs,
  };
  const child = execa(cmd, args, opts);
  let partial = '';
  child.all?.on('data', (b: Buffer) => {
    out.write(b);
    const text = partial + b.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // 'error:' not a bare 'error': ninja's progress names files such as qapi-types-error.c
      if (!firstError && /(\berror:|Error \d|\*\*\*|fatal:|No such file|undefined reference)/i.test(line)) firstError = line.trim();
      tail.push(line);
      if (tail.length > 20) tail = tail.slice(-20);
      o.onLine?.(line);
    }
  });
  const r = await child;
  await new Promise<void>((res) => out.end(res));
  if (r.timedOut) throw new HarnessError(`${o.what} timed out after ${Math.round((o.timeoutMs ?? 0) / 1000)} s`, { log: o.log });
  if (r.exitCode !== 0) {
    const why = firstError ?? tail.filter((l) => l.trim()).pop() ?? `exit code ${r.exitCode}`;
    throw new HarnessError(`${o.what} failed: ${why}`, { log: o.log });
  }
}

/** Run a quick command and return its stdout; a failure is a HarnessError with stderr's last line. */
export async function capture(cmd: string, args: string[], what: string, opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  let r;
  try {
    r = await execa(cmd, args, { cwd: opts.cwd, env: opts.env, reject: false, stdin: 'ignore' });
  } catch (e) {
    throw new HarnessError(`${what}: could not run ${cmd}: ${(e as Error).message}`);
  }
  if (r.failed || r.exitCode !== 0) {
    const err = String(r.stderr ?? '').trim().split('\n').pop() || String(r.shortMessage ?? `exit ${r.exitCode}`);
    throw new HarnessError(`${what} failed: ${err}`);
  }
  return String(r.stdout ?? '');
}

export async function which(cmd: string): Promise<string | undefined> {
  const r = await execa('sh', ['-c', `command -v ${cmd}`], { reject: false });
  return r.exitCode === 0 ? String(r.stdout).trim() : undefined;
}
