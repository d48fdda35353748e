import t from 'tap';
import { defaultJobs, eachLimit, parseJobs } from '../../runner/pool.js';

t.test('eachLimit runs at most N at once, in order, and reports the first error after all settle', async (t) => {
  let running = 0;
  let peak = 0;
  const started: number[] = [];
  await eachLimit([30, 10, 20, 5, 15], 2, async (ms, i) => {
    started.push(i);
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, ms));
    running--;
  });
  t.equal(peak, 2);
  t.same(started, [0, 1, 2, 3, 4], 'started in order');
  const done: number[] = [];
  await t.rejects(eachLimit([1, 2, 3], 2, async (x) => {
    if (x === 1) throw new Error('first');
    await new Promise((r) => setTimeout(r, 5));
    done.push(x);
  }), /first/);
  t.same(done.sort(), [2, 3], 'the others still ran');
});

t.test('default jobs: cores, unless memory holds fewer guests; never fewer than one', async (t) => {
  t.equal(defaultJobs({ cpus: 2, availableMiB: 20_000, guestMiB: 2048, accel: 'kvm' }).jobs, 2, 'KVM: one guest per core');
  t.equal(defaultJobs({ cpus: 2, availableMiB: 20_000, guestMiB: 2048, accel: 'tcg' }).jobs, 1, 'TCG: one guest per two cores');
  t.match(defaultJobs({ cpus: 2, availableMiB: 20_000, guestMiB: 2048, accel: 'tcg' }).why, /2 cores, two per TCG guest/);
  t.equal(defaultJobs({ cpus: 8, availableMiB: 64_000, guestMiB: 2048, accel: 'tcg' }).jobs, 4);
  t.equal(defaultJobs({ cpus: 8, availableMiB: 8_000, guestMiB: 2048, accel: 'kvm' }).jobs, 2, '(8000-1024)/2560 = 2');
  t.match(defaultJobs({ cpus: 8, availableMiB: 8_000, guestMiB: 2048, accel: 'kvm' }).why, /memory/);
  t.equal(defaultJobs({ cpus: 4, availableMiB: 1_000, guestMiB: 6144, accel: 'kvm' }).jobs, 1);
  t.equal(defaultJobs({ cpus: 1, availableMiB: 20_000, guestMiB: 2048, accel: 'tcg' }).jobs, 1, 'never fewer than one');
  t.throws(() => parseJobs('0'), /--jobs '0': expected a whole number >= 1/);
  t.throws(() => parseJobs('two'), /expected a whole number/);
  t.equal(parseJobs('3'), 3);
});
