// Checks harness/watch/console.ts against the console fixtures in test/fixtures/console/:
// kinds, titles, exact line ranges, step attribution, incremental feeding, CRLF/ANSI, EOF.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoPath } from '../../base/paths.js';
import {
  ConsoleWatcher, STEP_MARKER_PREFIX, cleanLine, scanConsole, stepMarker,
} from '../../harness/watch/console.js';
import type { ConsoleFault } from '../../base/results/schema.js';

const FIXTURES = repoPath('test', 'fixtures', 'console');
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');
// the watcher stores lines cleaned: no CR, no ANSI, no trailing blanks
const fixtureLines = (name: string): string[] =>
  fixture(name).replace(/\n$/, '').split('\n').map((l) => l.trimEnd());

/** Index of the first line at or after `from` containing `needle`; throws if there is none. */
function idx(lines: string[], needle: string, from = 0): number {
  for (let i = from; i < lines.length; i++) if (lines[i]!.includes(needle)) return i;
  throw new Error(`no line contains ${JSON.stringify(needle)}`);
}
const msg = (line: string): string => line.replace(/^\[\s*\d+\.\d+\] ?/, '');

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function feedInChunks(text: string, seed: number, maxChunk: number): ConsoleFault[] {
  const r = rng(seed);
  const w = new ConsoleWatcher();
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(r() * maxChunk);
    w.feed(text.slice(i, i + n));
    i += n;
  }
  w.flush();
  return w.faults();
}

const ALL = [
  'null-oops.txt', 'warning.txt', 'kasan.txt', 'sysrq-panic.txt', 'oops-panic.txt', 'hung-task.txt',
  'rcu-stall.txt', 'dmar.txt', 'benign-boot.txt',
];

t.test('step markers', async (t) => {
  t.equal(STEP_MARKER_PREFIX, 'vfio-conformance: step ');
  t.equal(stepMarker('migration/arc/STOP->RUNNING'), 'vfio-conformance: step migration/arc/STOP->RUNNING');
  t.throws(() => stepMarker('a\nb'));
});

t.test('NULL pointer oops in mtty_set_state: one fault, BUG line to end trace', async (t) => {
  const L = fixtureLines('null-oops.txt');
  const faults = scanConsole(fixture('null-oops.txt'));
  t.equal(faults.length, 1, 'the Oops: 0002 [#1] line does not start a second fault');
  const f = faults[0]!;
  t.equal(f.kind, 'oops');
  t.equal(f.title, 'BUG: kernel NULL pointer dereference, address: 0000000000000000');
  t.equal(f.step, 'migration/arc/STOP->STOP_COPY');
  const h = idx(L, 'BUG: kernel NULL pointer');
  const e = idx(L, '---[ end trace 0000000000000000 ]---');
  t.strictSame(f.lines, L.slice(h - 5, e + 1), '5 lines of context, the whole report, end marker included');
  t.ok(f.lines.some((l) => l.includes('Oops: Oops: 0002 [#1] PREEMPT SMP NOPTI')));
  t.ok(f.lines.some((l) => l.includes('vfio_ioctl_device_feature_mig_device_state+0xbd/0x1a0 [vfio]')));
  t.notOk(f.lines.some((l) => l.includes('note: vfio-agent[312] exited')), 'executive summary after end trace is not in');
});

t.test('WARNING with its trace is one fault, cut here included', async (t) => {
  const L = fixtureLines('warning.txt');
  const faults = scanConsole(fixture('warning.txt'));
  t.equal(faults.length, 1);
  const f = faults[0]!;
  t.equal(f.kind, 'warning');
  t.equal(f.title, 'WARNING: CPU: 0 PID: 298 at drivers/vfio/vfio_main.c:1089 vfio_mig_get_next_state+0x16e/0x1a0 [vfio]');
  t.equal(f.step, 'migration/arc/STOP_COPY->RESUMING');
  const h = idx(L, 'WARNING: CPU:');
  const e = idx(L, '---[ end trace');
  t.strictSame(f.lines, L.slice(Math.max(0, h - 5), e + 1));
  t.match(f.lines[h - 1]!, /------------\[ cut here \]------------/);
  t.match(f.lines.at(-1)!, /---\[ end trace 0000000000000000 \]---$/);
});

t.test('KASAN slab-use-after-free: opening ===== in context, closing ===== ends it', async (t) => {
  const L = fixtureLines('kasan.txt');
  const faults = scanConsole(fixture('kasan.txt'));
  t.equal(faults.length, 1);
  const f = faults[0]!;
  t.equal(f.kind, 'kasan');
  t.equal(f.title, 'BUG: KASAN: slab-use-after-free in mtty_save_read+0x2c5/0x330 [mtty]');
  t.equal(f.step, 'migration/stream/read-after-close');
  const h = idx(L, 'BUG: KASAN:');
  const open = h - 1;
  const close = idx(L, '=========', h + 1);
  t.strictSame(f.lines, L.slice(Math.max(0, h - 5), close + 1));
  t.ok(f.lines.indexOf(L[open]!) < f.lines.indexOf(L[h]!), 'opening delimiter is context');
  t.ok(f.lines.some((l) => msg(l) === 'Freed by task 312:'), 'blank lines inside the report do not end it');
  t.notOk(f.lines.some((l) => l.includes('Disabling lock debugging')));
});

t.test('sysrq crash: a panic up to its end Kernel panic line', async (t) => {
  const L = fixtureLines('sysrq-panic.txt');
  const faults = scanConsole(fixture('sysrq-panic.txt'));
  t.equal(faults.length, 1, 'modern kernels panic() directly from sysrq_handle_crash: no Oops');
  const f = faults[0]!;
  t.equal(f.kind, 'panic');
  t.equal(f.title, 'Kernel panic - not syncing: sysrq triggered crash');
  t.equal(f.step, 'harness/crash-dump');
  const h = idx(L, 'Kernel panic - not syncing');
  t.strictSame(f.lines, L.slice(0, L.length), 'both context lines, the trace and the end line');
  t.equal(h, 2);
  t.match(f.lines.at(-1)!, /---\[ end Kernel panic - not syncing: sysrq triggered crash \]---$/);
});

t.test('Oops that ends in a panic: two faults, oops then panic', async (t) => {
  const L = fixtureLines('oops-panic.txt');
  const faults = scanConsole(fixture('oops-panic.txt'));
  t.strictSame(faults.map((f) => f.kind), ['oops', 'panic']);
  const [oops, panic] = faults as [ConsoleFault, ConsoleFault];
  t.equal(oops.title, 'Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] PREEMPT SMP NOPTI');
  const e = idx(L, '---[ end trace');
  t.strictSame(oops.lines, L.slice(0, e + 1));
  t.equal(panic.title, 'Kernel panic - not syncing: Fatal exception');
  const p = idx(L, 'Kernel panic - not syncing');
  t.strictSame(panic.lines, L.slice(p - 5, L.length));
  t.equal(oops.step, 'migration/precopy/ioctl-after-release');
  t.equal(panic.step, 'migration/precopy/ioctl-after-release');
});

t.test('hung task: ends at </TASK>', async (t) => {
  const L = fixtureLines('hung-task.txt');
  const faults = scanConsole(fixture('hung-task.txt'));
  t.equal(faults.length, 1);
  const f = faults[0]!;
  t.equal(f.kind, 'hung-task');
  t.equal(f.title, 'INFO: task vfio-agent:318 blocked for more than 122 seconds.');
  t.equal(f.step, 'migration/reset/reset-during-stop-copy');
  const h = idx(L, 'INFO: task');
  t.strictSame(f.lines, L.slice(0, idx(L, '</TASK>') + 1));
  t.equal(h, 2);
});

t.test('RCU stall: <IRQ> part and the task part, ends at </TASK>', async (t) => {
  const L = fixtureLines('rcu-stall.txt');
  const faults = scanConsole(fixture('rcu-stall.txt'));
  t.equal(faults.length, 1);
  const f = faults[0]!;
  t.equal(f.kind, 'rcu-stall');
  t.equal(f.title, 'rcu: INFO: rcu_preempt self-detected stall on CPU');
  t.equal(f.step, 'dirty/type1/log-sync-storm');
  t.strictSame(f.lines, L.slice(0, idx(L, '</TASK>') + 1));
  t.ok(f.lines.some((l) => l.includes('</IRQ>')));
});

t.test('DMAR faults: one iommu-fault, titled by the first Request device line', async (t) => {
  const L = fixtureLines('dmar.txt');
  const faults = scanConsole(fixture('dmar.txt'));
  t.equal(faults.length, 1);
  const f = faults[0]!;
  t.equal(f.kind, 'iommu-fault');
  t.equal(
    f.title,
    'DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x7ff00000 [fault reason 0x05] PTE Write access is not set',
  );
  t.equal(f.step, 'dirty/device/dma-to-unmapped-iova');
  t.strictSame(f.lines, L.slice(0, idx(L, 'DMA Read NO_PASID') + 1));
});

t.test('benign boot log: no faults, last step known', async (t) => {
  const w = new ConsoleWatcher();
  w.feed(fixture('benign-boot.txt'));
  w.flush();
  t.strictSame(w.faults(), []);
  t.equal(w.currentStep(), 'boot/ssh-ready');
  t.ok(fixtureLines('benign-boot.txt').length >= 300, 'a few hundred lines');
});

t.test('incremental feeding in random chunks equals one-shot', async (t) => {
  const all = ALL.map(fixture).join('');
  for (const name of [...ALL, '(all)']) {
    const text = name === '(all)' ? all : fixture(name);
    const once = scanConsole(text);
    for (let seed = 1; seed <= 12; seed++) {
      const max = [1, 3, 17, 64, 200, 4096][seed % 6]!;
      const got = feedInChunks(text, seed * 7919 + name.length, max);
      if (JSON.stringify(got) !== JSON.stringify(once)) {
        t.strictSame(got, once, `${name}, seed ${seed}, chunks <= ${max}`);
        return;
      }
    }
    t.pass(`${name}: 12 chunkings agree (${once.length} faults)`);
  }
  t.equal(scanConsole(all).length, 9, 'the concatenation holds all 9 faults');
});

t.test('step attribution across markers', async (t) => {
  const text = [
    '[    5.000000] BUG: scheduling while atomic: swapper/0/1/0x00000002',
    '[    5.000100] CPU: 0 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.9 #1',
    '[    5.000200] Call Trace:',
    '[    5.000300]  <TASK>',
    '[    5.000400]  dump_stack_lvl+0x5d/0x80',
    '[    5.000500]  </TASK>',
    `[   10.000000] ${stepMarker('suite/A')}`,
    '[   10.100000] DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set',
    `[   11.000000] ${stepMarker('suite/B')}`,
    '[   11.500000] ------------[ cut here ]------------',
    '[   11.500100] WARNING: CPU: 1 PID: 300 at drivers/vfio/vfio_main.c:1089 vfio_mig_get_next_state+0x16e/0x1a0 [vfio]',
    '[   11.500200] ---[ end trace 0000000000000000 ]---',
  ].join('\n') + '\n';
  const w = new ConsoleWatcher();
  t.equal(w.currentStep(), undefined);
  w.feed(text);
  const faults = w.faults();
  t.strictSame(faults.map((f) => f.kind), ['bug', 'iommu-fault', 'warning']);
  t.equal(faults[0]!.step, undefined);
  t.notOk('step' in faults[0]!, 'no step key before any marker');
  t.equal(faults[1]!.step, 'suite/A');
  t.equal(faults[2]!.step, 'suite/B');
  t.equal(w.currentStep(), 'suite/B');
  t.equal(faults[1]!.lines.length, 6, 'the marker after the DMAR line ends the iommu fault');
});

t.test('CRLF and ANSI escapes give the same faults as clean text', async (t) => {
  const plain = fixture('null-oops.txt') + fixture('warning.txt');
  const noisy = plain
    .split('\n')
    .map((l, i) => (i % 3 === 0 ? `\x1b[0;33m${l}\x1b[0m` : i % 7 === 0 ? `\x1b]0;title\x07${l}\x1b[K` : l))
    .join('\r\n');
  t.strictSame(scanConsole(noisy), scanConsole(plain));
  t.strictSame(feedInChunks(noisy, 42, 5), scanConsole(plain), 'CRLF split across chunks');
  t.equal(cleanLine('\x1b[1;31m[    1.000000] BUG: x\x1b[0m\r'), '[    1.000000] BUG: x');
  t.equal(cleanLine('progress 10%\rprogress 100%'), 'progress 100%');
});

t.test('two faults back to back', async (t) => {
  const W = fixtureLines('warning.txt');
  const O = fixtureLines('null-oops.txt');
  const warn = W.slice(idx(W, 'cut here'), idx(W, '---[ end trace') + 1);
  const oops = O.slice(idx(O, 'BUG: kernel NULL'), idx(O, '---[ end trace') + 1);
  const faults = scanConsole([...warn, ...oops].join('\n'));
  t.strictSame(faults.map((f) => f.kind), ['warning', 'oops']);
  t.strictSame(faults[0]!.lines, warn);
  t.strictSame(faults[1]!.lines, [...warn.slice(-5), ...oops], 'context of the second is the tail of the first');
  // a WARN that is cut short by the next report: both still reported
  const cut = [...warn.slice(0, 6), ...oops];
  const f2 = scanConsole(cut.join('\n'));
  t.strictSame(f2.map((f) => f.kind), ['warning', 'oops']);
  t.strictSame(f2[0]!.lines, warn.slice(0, 6));
});

t.test('unterminated block at EOF', async (t) => {
  const O = fixtureLines('null-oops.txt');
  const cutAt = idx(O, '__x64_sys_ioctl');
  const text = O.slice(0, cutAt + 1).join('\n'); // no trailing newline
  const w = new ConsoleWatcher();
  w.feed(text);
  const before = w.faults();
  t.equal(before.length, 1, 'an open report is visible while it is being printed');
  t.equal(before[0]!.kind, 'oops');
  t.strictSame(before[0]!.lines, O.slice(idx(O, 'BUG:') - 5, cutAt), 'the newline-less last line waits for flush');
  w.flush();
  const after = w.faults();
  t.strictSame(after[0]!.lines, O.slice(idx(O, 'BUG:') - 5, cutAt + 1));
  t.strictSame(scanConsole(text), after);
  // more input after flush starts afresh
  w.feed('\n[  100.000000] Kernel panic - not syncing: Fatal exception\n');
  t.strictSame(w.faults().map((f) => f.kind), ['oops', 'panic']);
});

t.test('mark() and faultsSince()', async (t) => {
  const w = new ConsoleWatcher();
  w.feed(fixture('warning.txt'));
  const m = w.mark();
  t.equal(m, 1);
  t.strictSame(w.faultsSince(m), []);
  w.feed(fixture('null-oops.txt'));
  t.strictSame(w.faultsSince(m).map((f) => f.kind), ['oops']);
  t.equal(w.faultsSince(0).length, 2);
  // faults handed out are copies
  w.faults()[0]!.lines.length = 0;
  t.ok(w.faults()[0]!.lines.length > 0);
});

t.test('memory bound: old faults dropped, marks stay absolute', async (t) => {
  const w = new ConsoleWatcher({ maxFaults: 10 });
  let onFault = 0;
  const w2 = new ConsoleWatcher({ onFault: () => onFault++ });
  for (let i = 0; i < 50; i++) {
    const line = `[ ${String(100 + i).padStart(4)}.000000] BUG: KFENCE: use-after-free read in f${i}\n[ ${String(100 + i).padStart(4)}.000001] ${'='.repeat(66)}\n`;
    w.feed(line);
    w2.feed(line);
  }
  t.equal(w.mark(), 50);
  t.equal(w.faults().length, 10);
  t.equal(w.faults()[0]!.title, 'BUG: KFENCE: use-after-free read in f40');
  t.strictSame(w.faultsSince(45).map((f) => f.title.slice(-3)), ['f45', 'f46', 'f47', 'f48', 'f49']);
  t.equal(onFault, 50);
  // a huge report is capped
  const big = ['[    1.000000] ------------[ cut here ]------------', '[    1.000001] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x1'];
  for (let i = 0; i < 500; i++) big.push(`[    1.0${String(i).padStart(5, '0')}]  frame${i}+0x0/0x10`);
  const f = scanConsole(big.join('\n'));
  t.equal(f.length, 1);
  t.equal(f[0]!.lines.length, 120);
});

t.test('other report kinds and console shapes', async (t) => {
  const one = (lines: string[], kind: string, title?: string) => {
    const f = scanConsole(lines.join('\n') + '\n');
    t.equal(f.length, 1, `${kind}: one fault`);
    t.equal(f[0]?.kind, kind);
    if (title !== undefined) t.equal(f[0]?.title, title);
    return f[0]!;
  };
  one(
    [
      '[   40.000000] arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:',
      '[   40.000001] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000080000000010',
      '[   40.000002] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000020800000000',
      '[   40.000003] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x00000000fee00000',
      '[   40.000004] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000000000000',
      '[   40.000100] vfio-pci 0000:00:03.0: enabling device (0000 -> 0002)',
    ],
    'iommu-fault',
    'arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:',
  );
  one(
    ['[   40.000000] vfio-pci 0000:00:03.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0002 address=0xfffd0000 flags=0x0020]'],
    'iommu-fault',
  );
  one(['[   40.000000] virtio_iommu virtio0: page fault from EP 24 at 0x7ff00000 [R]'], 'iommu-fault');
  one(['[   40.000000] virtio-pci 0000:00:04.0: page fault from EP 24 at 0x7ff00000 [RW]'], 'iommu-fault');
  const sl = one(
    [
      '[   80.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [vfio-agent:312]',
      '[   80.000001] Modules linked in: mtty vfio',
      '[   80.000002] Call Trace:',
      '[   80.000003]  <IRQ>',
      '[   80.000004]  </IRQ>',
      '[   80.000005]  <TASK>',
      '[   80.000006]  mtty_set_state+0x9c/0x2f0 [mtty]',
      '[   80.000007]  </TASK>',
      '[   80.000008] systemd[1]: unrelated',
    ],
    'soft-lockup',
    'watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [vfio-agent:312]',
  );
  t.equal(sl.lines.length, 8);
  one(
    [
      '[    9.000000] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:283',
      '[    9.000001] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 312, name: vfio-agent',
      '[    9.000002] Call Trace:',
      '[    9.000003]  <TASK>',
      '[    9.000004]  </TASK>',
    ],
    'bug',
    'BUG: sleeping function called from invalid context at kernel/locking/mutex.c:283',
  );
  const kb = one(
    [
      '[    9.000000] ------------[ cut here ]------------',
      '[    9.000001] kernel BUG at drivers/vfio/vfio_main.c:512!',
      '[    9.000002] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI',
      '[    9.000003] CPU: 0 UID: 0 PID: 312 Comm: vfio-agent Not tainted 6.12.9 #1',
      '[    9.000004] ---[ end trace 0000000000000000 ]---',
    ],
    'bug',
    'kernel BUG at drivers/vfio/vfio_main.c:512!',
  );
  t.equal(kb.lines.length, 5);
  one(
    [
      '[    9.000000] ======================================================',
      '[    9.000001] WARNING: possible circular locking dependency detected',
      '[    9.000002] 6.12.9 #1 Not tainted',
      '[    9.000003] ------------------------------------------------------',
      '[    9.000004] ',
      '[    9.000005] stack backtrace:',
      '[    9.000006] Call Trace:',
      '[    9.000007]  <TASK>',
      '[    9.000008]  </TASK>',
    ],
    'warning',
    'WARNING: possible circular locking dependency detected',
  );
  one(['[    9.000000] UBSAN: array-index-out-of-bounds in drivers/vfio/pci/vfio_pci_core.c:77:3', '[    9.000001] ---[ end trace ]---'], 'ubsan');
  one(['[    9.000000] Watchdog detected hard LOCKUP on cpu 1'], 'hard-lockup');
  // no timestamps at all (printk.time=0): every line is a kernel line
  const nots = one(
    ['vfio-conformance: step s/1', 'hello', 'BUG: kernel NULL pointer dereference, address: 0000000000000008', 'Oops: 0000 [#1] SMP', '---[ end trace 0000000000000000 ]---', 'after'],
    'oops',
  );
  t.equal(nots.step, 's/1');
  t.equal(nots.lines.length, 5);
  // raw /dev/kmsg records, dictionary lines ignored
  const km = one(
    [
      '12,900,14000000,-;vfio-conformance: step kmsg/1',
      '4,901,14231190,-;BUG: kernel NULL pointer dereference, address: 0000000000000000',
      ' SUBSYSTEM=pci',
      '4,902,14233385,-;Oops: 0002 [#1] SMP NOPTI',
      '4,903,14255315,-;---[ end trace 0000000000000000 ]---',
    ],
    'oops',
  );
  t.equal(km.step, 'kmsg/1');
  t.equal(km.lines[1], '[   14.231190] BUG: kernel NULL pointer dereference, address: 0000000000000000');
  // a kernel line glued onto a prompt, userspace lines interleaved and trailing
  const glued = one(
    [
      '[    1.000000] boot',
      'root@vm:~# [   20.000000] BUG: unable to handle page fault for address: ffffc90000a3b000',
      'agent: {"op":"set_state"}',
      '[   20.000001] Oops: 0000 [#1] SMP NOPTI',
      '[   20.000002] ---[ end trace 0000000000000000 ]---',
    ],
    'oops',
    'BUG: unable to handle page fault for address: ffffc90000a3b000',
  );
  t.strictSame(glued.lines.slice(1), [
    '[   20.000000] BUG: unable to handle page fault for address: ffffc90000a3b000',
    'agent: {"op":"set_state"}',
    '[   20.000001] Oops: 0000 [#1] SMP NOPTI',
    '[   20.000002] ---[ end trace 0000000000000000 ]---',
  ]);
  // open-ended report: trailing userspace output is not part of it, a timestamp gap ends it
  const gap = one(
    ['[   30.000000] BUG: Bad rss-counter state mm:00000000abcd type:MM_ANONPAGES val:1', 'userspace 1', '[   45.000000] later line', '[   45.000001] more'],
    'bug',
  );
  t.strictSame(gap.lines, ['[   30.000000] BUG: Bad rss-counter state mm:00000000abcd type:MM_ANONPAGES val:1']);
  // untimestamped BUG:/WARNING: from userspace once the console has timestamps: not faults
  t.strictSame(scanConsole('[    1.000000] x\nBUG: agent debug\nWARNING: CPU: 0 PID: 1 at x\n'), []);
});
