/**
 * Serial-console / kmsg watcher: finds kernel fault reports (Oops, BUG, WARNING, KASAN, panic,
 * hung task, RCU stall, soft/hard lockup, IOMMU faults) in console text and pins each on the test
 * step that was running, using the marker lines the harness writes to /dev/kmsg before every step
 * (`vfio-conformance: step <id>`).
 *
 * Input is whatever the console produced: printk timestamps or not, CRLF, ANSI escapes, userspace
 * output interleaved with kernel lines, and (when fed incrementally) chunks that split lines
 * anywhere. Raw /dev/kmsg records (`6,1234,5678901,-;message`) are understood too.
 *
 * Decisions (the tests pin these):
 * - One fault per report. A WARNING and its own stack trace are one fault; the `Oops: 0002 [#1]`
 *   die line that follows a `BUG: kernel NULL pointer dereference` line belongs to that oops; the
 *   die line after `kernel BUG at ...!` belongs to that BUG.
 * - An Oops that ends in a panic (panic_on_oops, "Fatal exception in interrupt") yields TWO faults:
 *   the oops (closed by its `---[ end trace ... ]---`) and the panic (closed by
 *   `---[ end Kernel panic ...`). They are different facts: the first says what broke, the second
 *   that the guest is gone, and a gate may treat them differently. Same for panic_on_warn.
 * - `lines` = up to `contextBefore` (5) lines preceding the report, then the report itself until
 *   its end marker: `---[ end trace` (oops, WARNING, kernel BUG at, UBSAN), the closing `=====` line
 *   (KASAN, KFENCE, KCSAN, UBSAN), `---[ end Kernel panic` (panic). Reports without an end marker
 *   (other BUG:, hung task, RCU stall, lockups, lockdep WARNINGs) end at the `</TASK>` closing their
 *   stack dump. Every report also ends at a new report's first line, at a printk-timestamp gap of
 *   more than `gapSeconds` between consecutive kernel lines, and at `maxLines` (120) lines in all.
 *   Open-ended reports also end at a step marker. IOMMU fault lines that follow each other form
 *   one fault; it ends at the first kernel line that is not one of them.
 * - Once a timestamped line has been seen, lines without a timestamp are userspace output: they
 *   never start a report or set a step, and they are kept in a report only when kernel lines of the
 *   same report follow them (interleaved output), never as its tail.
 * - A report still open at the end of the input is reported as it stands: `faults()` and
 *   `faultsSince()` include it (a snapshot; it may still grow), `flush()` processes the last,
 *   newline-less line and closes it. `scanConsole(text)` is feed + flush + faults.
 * - Lines are stored cleaned: no CR, no ANSI escapes or control characters, no trailing blanks;
 *   raw kmsg records are rewritten in console form (`[   14.231190] message`).
 * - Memory: a rolling window of the last `contextBefore` lines, the open report (<= maxLines) and
 *   at most `maxFaults` finished faults (oldest dropped first; mark numbers stay absolute).
 */
import type { ConsoleFault } from '../../base/results/schema.js';

export const STEP_MARKER_PREFIX = 'vfio-conformance: step ';

/** The line the harness writes to /dev/kmsg before a step (without the trailing newline). */
export function stepMarker(id: string): string {
  if (/[\r\n]/.test(id)) throw new Error(`step id must be one line: ${JSON.stringify(id)}`);
  return `${STEP_MARKER_PREFIX}${id}`;
}

export type FaultKind =
  | 'oops'
  | 'bug'
  | 'warning'
  | 'kasan'
  | 'ubsan'
  | 'panic'
  | 'hung-task'
  | 'rcu-stall'
  | 'soft-lockup'
  | 'hard-lockup'
  | 'iommu-fault';

export interface ConsoleWatcherOptions {
  /** lines kept before a report's first line (default 5) */
  contextBefore?: number;
  /** cap on a fault's lines, context included (default 120) */
  maxLines?: number;
  /** a gap between consecutive kernel timestamps larger than this ends a report (default 2 s) */
  gapSeconds?: number;
  /** finished faults kept; older ones are dropped (default 1000) */
  maxFaults?: number;
  /** called once per fault, when its report is complete */
  onFault?: (fault: ConsoleFault) => void;
}

/** How a report ends. */
type EndStyle =
  | 'trace' // ---[ end trace ... ]---
  | 'delimiter' // ===== (KASAN & co)
  | 'trace-or-delimiter' // UBSAN: new kernels end with end trace, old ones with =====
  | 'panic' // ---[ end Kernel panic
  | 'open' // </TASK>, gap, cap, marker, next report
  | 'iommu'; // runs of IOMMU fault lines

interface Rule {
  kind: FaultKind;
  re: RegExp;
  end: EndStyle;
  maxLines?: number;
  /** a die line (`...: 0002 [#1] ...`) following this header belongs to the same report */
  takesDie?: boolean;
}

/** The x86/arm die() header: `Oops: 0002 [#1] PREEMPT SMP NOPTI`, `general protection fault, ...: 0000 [#1] SMP`. */
const DIE_RE = /^(?:Oops: .*|.+: [0-9a-f]{4} \[#\d+\].*|Internal error: .*\[#\d+\].*)$/;

const IOMMU_RES: RegExp[] = [
  /\bDMAR: DRHD: handling fault status/,
  /\bDMAR: \[[^\]]*\] Request device \[/,
  /\bDMAR: .*\bfault addr\b/,
  /\bAMD-Vi: Event logged \[/,
  /\barm-smmu(?:-v3)? \S+: event 0x[0-9a-f]+ received/,
  /\barm-smmu(?:-v3)? \S+: .*\b(?:F_[A-Z_]{3,}|C_BAD_[A-Z_]+)\b/,
  /\barm-smmu \S+: Unhandled context fault/,
  /\b(?:page|domain) fault from EP \d+/,
  /\bunknown fault from endpoint \d+/,
  /\b(?:virtio_iommu|viommu)\b.*\bfault\b/i,
];
/** The iommu line the title prefers over a bare status line. */
const IOMMU_DETAIL_RE =
  /Request device \[|Event logged \[|event 0x[0-9a-f]+ received|\bF_[A-Z_]{3,}|fault from EP|fault from endpoint|Unhandled context fault/;

const RULES: Rule[] = [
  { kind: 'panic', re: /^Kernel panic - not syncing\b/, end: 'panic' },
  { kind: 'soft-lockup', re: /^(?:[\w ]+: )?BUG: soft lockup\b/, end: 'open', maxLines: 100 },
  { kind: 'hard-lockup', re: /\bWatchdog detected hard LOCKUP on cpu\b/, end: 'open', maxLines: 100 },
  { kind: 'kasan', re: /^BUG: KASAN: /, end: 'delimiter' },
  { kind: 'bug', re: /^BUG: K(?:FENCE|CSAN|MSAN): /, end: 'delimiter' },
  { kind: 'ubsan', re: /^UBSAN: /, end: 'trace-or-delimiter' },
  {
    kind: 'oops',
    re: /^(?:BUG: kernel NULL pointer dereference|BUG: unable to handle |Unable to handle kernel (?:NULL pointer dereference|paging request))/,
    end: 'trace',
    takesDie: true,
  },
  { kind: 'bug', re: /^kernel BUG at \S+/, end: 'trace', takesDie: true },
  { kind: 'oops', re: DIE_RE, end: 'trace' },
  {
    kind: 'rcu-stall',
    re: /^(?:rcu: )?INFO: rcu_\w+ (?:self-detected stall|detected (?:expedited )?stalls?)/,
    end: 'open',
    maxLines: 100,
  },
  { kind: 'hung-task', re: /^INFO: task .+:\d+ blocked for more than \d+ seconds/, end: 'open', maxLines: 80 },
  { kind: 'warning', re: /^WARNING: (?:CPU: \d+ PID: \d+ at |at )/, end: 'trace' },
  // lockdep and friends: WARNING: possible circular locking dependency detected, suspicious RCU usage ...
  { kind: 'warning', re: /^WARNING: /, end: 'open', maxLines: 100 },
  { kind: 'bug', re: /^BUG: /, end: 'open', maxLines: 80 },
];

/** this many userspace lines in a row end a report that has no end marker */
const USERSPACE_RUN = 20;

const IOMMU_RULE: Rule = { kind: 'iommu-fault', re: /./, end: 'iommu', maxLines: 40 };

function matchHeader(msg: string): Rule | undefined {
  for (const r of RULES) if (r.re.test(msg)) return r;
  if (IOMMU_RES.some((re) => re.test(msg))) return IOMMU_RULE;
  return undefined;
}

const END_TRACE_RE = /^-+\[ end trace\b/;
const END_PANIC_RE = /^-+\[ end Kernel panic\b/;
const DELIM_RE = /^={10,}\s*$/;
const TASK_END_RE = /^\s*<\/TASK>\s*$/;

// --- line cleaning and parsing ---------------------------------------------------------------

// CSI, OSC, two-char escapes, charset selection; then the other C0 controls but tab.
// eslint-disable-next-line no-control-regex
const ANSI_RE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]|\x1b/g;
// eslint-disable-next-line no-control-regex
const CTRL_RE = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** One raw line (no \n) made printable: ANSI escapes and control characters gone, CRs resolved. */
export function cleanLine(raw: string): string {
  let s = raw.replace(ANSI_RE, '');
  s = s.replace(/\r+$/, '');
  // a carriage return in the middle rewinds the terminal: what follows it is what was seen
  const cr = s.lastIndexOf('\r');
  if (cr >= 0) {
    const after = s.slice(cr + 1);
    s = after.trim() === '' ? s.replace(/\r/g, '') : after;
  }
  return s.replace(CTRL_RE, '').trimEnd();
}

interface Parsed {
  /** the line as stored in a fault */
  text: string;
  /** the message, timestamp and caller id removed */
  msg: string;
  ts?: number;
  /** has a printk timestamp (or is a kmsg record) */
  stamped: boolean;
  kmsg?: boolean;
}

const TS_START_RE = /^\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])? ?/;
// a kernel line glued onto a userspace line that had no newline yet: "root@vm:~# [   12.345678] BUG: ..."
const TS_INNER_RE = /\[\s*\d+\.\d{6}\](?:\[\s*[TC]\d+\])? /;
const KMSG_RE = /^<?(\d+)>?,(\d+),(\d+),[^;]*;(.*)$/;
const SYSLOG_PRI_RE = /^<\d+>/;

function parseLine(clean: string): Parsed {
  const km = KMSG_RE.exec(clean);
  if (km) {
    const ts = Number(km[3]) / 1e6;
    const msg = km[4] ?? '';
    return { text: `[${ts.toFixed(6).padStart(12)}] ${msg}`.trimEnd(), msg, ts, stamped: true, kmsg: true };
  }
  let s = clean.replace(SYSLOG_PRI_RE, '');
  let m = TS_START_RE.exec(s);
  if (!m) {
    const inner = TS_INNER_RE.exec(s);
    if (inner && inner.index > 0) {
      s = s.slice(inner.index);
      m = TS_START_RE.exec(s);
    }
  }
  if (m) return { text: s, msg: s.slice(m[0].length), ts: Number(m[1]), stamped: true };
  return { text: clean, msg: clean.trim(), stamped: false };
}

// --- the watcher -------------------------------------------------------------------------------

interface OpenReport {
  index: number;
  rule: Rule;
  kind: FaultKind;
  title: string;
  titleIsDetail: boolean;
  step?: string;
  lines: string[];
  /** userspace lines seen since the last kernel line of this report */
  pending: string[];
  lastTs?: number;
  sawDie: boolean;
  /** iommu: the `driver device:` prefix of the first line, for the dump lines that follow it */
  prefix?: string;
}

export class ConsoleWatcher {
  private readonly contextBefore: number;
  private readonly maxLines: number;
  private readonly gapSeconds: number;
  private readonly maxFaults: number;
  private readonly onFault?: (fault: ConsoleFault) => void;

  private partial = '';
  private window: string[] = [];
  private stampedMode = false;
  private kmsgMode = false;
  private step: string | undefined;
  private done: ConsoleFault[] = [];
  /** faults dropped from the front of `done` (memory bound); mark numbers stay absolute */
  private dropped = 0;
  private started = 0;
  private open: OpenReport | undefined;

  constructor(opts: ConsoleWatcherOptions = {}) {
    this.contextBefore = Math.max(0, opts.contextBefore ?? 5);
    this.maxLines = Math.max(this.contextBefore + 1, opts.maxLines ?? 120);
    this.gapSeconds = opts.gapSeconds ?? 2;
    this.maxFaults = Math.max(1, opts.maxFaults ?? 1000);
    this.onFault = opts.onFault;
  }

  /** Feed console output; chunks may split lines (and CRLF pairs) anywhere. */
  feed(chunk: string): void {
    if (chunk === '') return;
    const data = this.partial + chunk;
    let start = 0;
    for (;;) {
      const nl = data.indexOf('\n', start);
      if (nl < 0) break;
      this.line(data.slice(start, nl));
      start = nl + 1;
    }
    this.partial = data.slice(start);
    // a console that never sends a newline must not grow memory without bound
    if (this.partial.length > 64 * 1024) {
      this.line(this.partial);
      this.partial = '';
    }
  }

  /** End of input: process the last line even without its newline, and close an open report. */
  flush(): void {
    if (this.partial !== '') {
      const last = this.partial;
      this.partial = '';
      this.line(last);
    }
    this.close();
  }

  /** Every fault seen so far (oldest first), including a report still being printed. */
  faults(): ConsoleFault[] {
    return this.faultsSince(this.dropped);
  }

  /** Faults whose report started at or after `mark` (a value from `mark()`). */
  faultsSince(mark: number): ConsoleFault[] {
    const from = Math.max(0, mark - this.dropped);
    const out = this.done.slice(from).map(copyFault);
    if (this.open && this.open.index >= mark) out.push(this.snapshot(this.open));
    return out;
  }

  /** A position in the fault sequence: the number of reports started so far. */
  mark(): number {
    return this.started;
  }

  /** The id of the last step marker seen, if any. */
  currentStep(): string | undefined {
    return this.step;
  }

  // --- internals ---

  private line(raw: string): void {
    const clean = cleanLine(raw);
    const p = parseLine(clean);
    if (this.kmsgMode && !p.stamped && /^ [A-Z_]+=/.test(clean)) return; // kmsg dictionary (SUBSYSTEM=, DEVICE=)
    if (p.stamped) this.stampedMode = true;
    if (p.kmsg) this.kmsgMode = true;

    const kernel = p.stamped || !this.stampedMode;
    if (!kernel) {
      this.userspace(p.text);
      this.remember(p.text);
      return;
    }
    this.kernelLine(p);
    this.remember(p.text);
  }

  private remember(text: string): void {
    if (this.contextBefore === 0) return;
    this.window.push(text);
    if (this.window.length > this.contextBefore) this.window.shift();
  }

  private userspace(text: string): void {
    const o = this.open;
    if (!o) return;
    o.pending.push(text);
    if (o.rule.end === 'open' || o.rule.end === 'iommu') {
      // the kernel has stopped talking and userspace goes on: that report is over
      if (o.pending.length >= USERSPACE_RUN) this.close();
    } else if (o.pending.length > this.maxLines) {
      o.pending.shift();
    }
  }

  private kernelLine(p: Parsed): void {
    const msg = p.msg;
    const marker = msg.startsWith(STEP_MARKER_PREFIX) ? msg.slice(STEP_MARKER_PREFIX.length).trim() : undefined;

    let o = this.open;
    if (o && p.ts !== undefined && o.lastTs !== undefined && p.ts - o.lastTs > this.gapSeconds) {
      this.close();
      o = undefined;
    }

    if (marker !== undefined) {
      if (o && (o.rule.end === 'open' || o.rule.end === 'iommu')) this.close();
      else if (o) {
        this.append(o, p);
        this.checkEnd(o, msg);
      }
      if (marker !== '') this.step = marker;
      return;
    }

    const header = matchHeader(msg);
    if (o) {
      if (header) {
        if (o.rule.takesDie && !o.sawDie && header.re === DIE_RE) {
          o.sawDie = true;
          this.append(o, p);
          this.checkEnd(o, msg);
          return;
        }
        if (o.rule.end === 'iommu' && header === IOMMU_RULE) {
          this.append(o, p);
          if (!o.titleIsDetail && IOMMU_DETAIL_RE.test(msg)) {
            o.title = msg.trim();
            o.titleIsDetail = true;
          }
          this.checkEnd(o, msg);
          return;
        }
        this.close();
        this.start(header, p);
        return;
      }
      if (o.rule.end === 'iommu' && !(o.prefix && msg.startsWith(o.prefix))) {
        this.close();
        return;
      }
      this.append(o, p);
      this.checkEnd(o, msg);
      return;
    }
    if (header) this.start(header, p);
  }

  private start(rule: Rule, p: Parsed): void {
    const o: OpenReport = {
      index: this.started++,
      rule,
      kind: rule.kind,
      title: p.msg.trim(),
      titleIsDetail: rule !== IOMMU_RULE || IOMMU_DETAIL_RE.test(p.msg),
      lines: this.window.slice(-this.contextBefore),
      pending: [],
      sawDie: false,
    };
    if (this.contextBefore === 0) o.lines = [];
    if (this.step !== undefined) o.step = this.step;
    if (rule === IOMMU_RULE) {
      // "DMAR:" / "arm-smmu-v3 arm-smmu-v3.0.auto:" / "virtio-pci 0000:00:03.0:"
      const [a, b] = p.msg.trim().split(/\s+/);
      if (a?.endsWith(':')) o.prefix = a;
      else if (a && b?.endsWith(':')) o.prefix = `${a} ${b}`;
    }
    this.open = o;
    this.append(o, p);
    this.checkEnd(o, p.msg);
  }

  private append(o: OpenReport, p: Parsed): void {
    const room = this.capFor(o) - o.lines.length;
    if (o.pending.length > 0) {
      const keep = o.pending.slice(0, Math.max(0, room - 1));
      o.lines.push(...keep);
      o.pending = [];
    }
    o.lines.push(p.text);
    if (p.ts !== undefined) o.lastTs = p.ts;
  }

  private checkEnd(o: OpenReport, msg: string): void {
    let ended = false;
    switch (o.rule.end) {
      case 'trace':
        ended = END_TRACE_RE.test(msg);
        break;
      case 'delimiter':
        ended = DELIM_RE.test(msg);
        break;
      case 'trace-or-delimiter':
        ended = END_TRACE_RE.test(msg) || DELIM_RE.test(msg);
        break;
      case 'panic':
        ended = END_PANIC_RE.test(msg);
        break;
      case 'open':
        ended = TASK_END_RE.test(msg);
        break;
      case 'iommu':
        ended = false;
        break;
    }
    if (ended || o.lines.length >= this.capFor(o)) this.close();
  }

  private capFor(o: OpenReport): number {
    return Math.min(this.maxLines, o.rule.maxLines !== undefined ? o.rule.maxLines + this.contextBefore : this.maxLines);
  }

  private close(): void {
    const o = this.open;
    if (!o) return;
    this.open = undefined;
    const f = this.snapshot(o);
    this.done.push(f);
    if (this.done.length > this.maxFaults) {
      this.done.shift();
      this.dropped++;
    }
    this.onFault?.(copyFault(f));
  }

  private snapshot(o: OpenReport): ConsoleFault {
    const f: ConsoleFault = { kind: o.kind, title: o.title, lines: [...o.lines] };
    if (o.step !== undefined) f.step = o.step;
    return f;
  }
}

function copyFault(f: ConsoleFault): ConsoleFault {
  const c: ConsoleFault = { kind: f.kind, title: f.title, lines: [...f.lines] };
  if (f.step !== undefined) c.step = f.step;
  return c;
}

/** All faults in a complete console log. */
export function scanConsole(text: string, opts: ConsoleWatcherOptions = {}): ConsoleFault[] {
  const w = new ConsoleWatcher(opts);
  w.feed(text);
  w.flush();
  return w.faults();
}
