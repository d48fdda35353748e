// Checks suites/migration/model.ts against the kernel-generated oracle in
// test/fixtures/fsm-appendix-a.md (Appendix A of the uAPI reference), row by row, plus properties.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  NUM_STATES, STATES, SAVING_GROUP, State, VALID_FLAG_SETS, arcName, createsDataFd, endsSession,
  flagsName, inSavingGroup, isSupported, nextHop, parseState, path, requiredArcs, sessionKind,
  stateName, supportedStates, validateFlags, type PathResult,
} from '../../suites/migration/model.js';

// ---------------------------------------------------------------------------------------------
// Fixture parser (strict: anything it does not recognise throws, so the test cannot pass vacuously)

/** Expected outcome of one (from, to) row, in a shape the model's result is projected onto. */
type Outcome =
  | { kind: 'noop'; unaffectedFd: 'saving' | 'resuming' | null }
  | { kind: 'einval'; warn: boolean }
  | {
    kind: 'move'; direct: boolean; states: string[]; newFd: boolean;
    endsAt: string | null; keepsStreaming: boolean;
  };

interface Row { from: string; to: string; outcome: Outcome; raw: string }
interface FlagSection {
  flags: number;
  heading: string;
  supported: string[];
  directArcs: { arc: string; newFd: boolean; endsFd: boolean }[];
  directArcCount: number;
  matrix: { cur: string; cells: Record<string, string> }[];
  rows: Row[];
}

const ANY_INVALID = 'any value >= 8';
/** Values standing in for the "any value >= 8" rows. */
const INVALID_VALUES = [8, 9, 15, 255, 256, 0x7fffffff, 0x80000000, 0xffffffff];

function findFixture(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(dir, 'test', 'fixtures', 'fsm-appendix-a.md');
    if (existsSync(p)) return p;
    const up = dirname(dir);
    if (up === dir) throw new Error('test/fixtures/fsm-appendix-a.md not found above ' + import.meta.url);
    dir = up;
  }
}

function cells(line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
}

function parseOutcome(s: string): Outcome {
  let m = /^no-op, returns 0, data_fd=-1(?:; existing (saving|resuming) fd unaffected)?$/.exec(s);
  if (m) return { kind: 'noop', unaffectedFd: (m[1] as 'saving' | 'resuming' | undefined) ?? null };
  if (s === 'EINVAL (state unchanged)') return { kind: 'einval', warn: false };
  if (s === 'EINVAL + kernel WARN splat (state stays ERROR; only VFIO_DEVICE_RESET recovers)') {
    return { kind: 'einval', warn: true };
  }
  m = /^(direct|composed \((\d+) arcs\)): ([A-Z0-9_]+(?: -> [A-Z0-9_]+)+); (new data_fd|data_fd=-1)( \(saving fd opened in the PRE_COPY\* state keeps streaming\))?(?:; ends session at ([A-Z0-9_]+->[A-Z0-9_]+))?$/.exec(s);
  if (m) {
    const states = m[3]!.split(' -> ');
    const direct = m[1] === 'direct';
    const n = direct ? 1 : Number(m[2]);
    if (states.length - 1 !== n) throw new Error(`arc count ${n} does not match path in: ${s}`);
    return {
      kind: 'move', direct, states, newFd: m[4] === 'new data_fd',
      endsAt: m[6] ?? null, keepsStreaming: m[5] !== undefined,
    };
  }
  throw new Error(`unrecognised outcome: ${s}`);
}

function parseFixture(text: string): FlagSection[] {
  const sections: FlagSection[] = [];
  let sec: FlagSection | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^### Flags = ([A-Z0-9_|]+) \(0x([0-9a-f]+)\)\s*$/.exec(line);
    if (h) {
      sec = {
        flags: parseInt(h[2]!, 16), heading: h[1]!, supported: [], directArcs: [], directArcCount: -1,
        matrix: [], rows: [],
      };
      sections.push(sec);
      continue;
    }
    if (line.startsWith('### Flags')) throw new Error(`unrecognised flags heading: ${line}`);
    if (line.startsWith('#')) { sec = undefined; continue; }
    if (!sec) continue;
    const sup = /^Supported states: (.*)$/.exec(line);
    if (sup) { sec.supported = sup[1]!.split(',').map((x) => x.trim()); continue; }
    const da = /^Direct arcs the driver must implement \((\d+)\): (.*)$/.exec(line);
    if (da) {
      sec.directArcCount = Number(da[1]);
      sec.directArcs = da[2]!.split(',').map((x) => {
        const a = /^([A-Z0-9_]+->[A-Z0-9_]+)( \[new fd\]| \[ends fd\])?$/.exec(x.trim());
        if (!a) throw new Error(`unrecognised direct arc: ${x}`);
        return { arc: a[1]!, newFd: a[2] === ' [new fd]', endsFd: a[2] === ' [ends fd]' };
      });
      continue;
    }
    if (line.startsWith('|')) {
      // A table: header, separator, body rows until the first non-table line.
      const header = cells(line);
      if (!/^\|[-| ]+\|$/.test(lines[i + 1] ?? '')) throw new Error(`table without separator at line ${i + 1}`);
      const body: string[][] = [];
      for (i += 2; i < lines.length && lines[i]!.startsWith('|'); i++) body.push(cells(lines[i]!));
      i--;
      if (header[0] === 'cur \\ target') {
        for (const r of body) {
          if (r.length !== header.length) throw new Error(`matrix row width: ${r.join('|')}`);
          const c: Record<string, string> = {};
          header.slice(1).forEach((col, k) => { c[col] = r[k + 1]!; });
          sec.matrix.push({ cur: r[0]!, cells: c });
        }
      } else if (header.join('|') === 'from|to|outcome') {
        for (const r of body) {
          if (r.length !== 3) throw new Error(`outcome row width: ${r.join('|')}`);
          sec.rows.push({ from: r[0]!, to: r[1]!, outcome: parseOutcome(r[2]!), raw: r[2]! });
        }
      } else {
        throw new Error(`unknown table header: ${header.join('|')}`);
      }
    }
  }
  return sections;
}

function st(name: string): number {
  const v = parseState(name);
  if (v === undefined || v >= NUM_STATES) throw new Error(`not a state name in fixture: ${name}`);
  return v;
}

/** Projects a model result onto the fixture's outcome shape (uses keepsFd for the fd wording). */
function project(p: PathResult): Outcome {
  if (!p.ok) return { kind: 'einval', warn: p.warn };
  if (p.arcs.length === 0) return { kind: 'noop', unaffectedFd: p.keepsFd ? sessionKind(p.from) : null };
  return {
    kind: 'move', direct: p.direct,
    states: [stateName(p.from), ...p.arcs.map((a) => stateName(a[1]))],
    newFd: p.newDataFd, endsAt: p.endsSessionAt ? arcName(p.endsSessionAt) : null,
    keepsStreaming: p.keepsFd,
  };
}

const sections = parseFixture(readFileSync(findFixture(), 'utf8'));

// Sizes of Appendix A: outcome rows = (supported states incl. ERROR) x (8 targets + "any >= 8").
const EXPECTED = {
  1: { rows: 45, matrix: 5, arcs: 6 },
  3: { rows: 54, matrix: 6, arcs: 8 },
  5: { rows: 54, matrix: 6, arcs: 9 },
  7: { rows: 72, matrix: 8, arcs: 15 },
} as Record<number, { rows: number; matrix: number; arcs: number }>;

// ---------------------------------------------------------------------------------------------

t.test('fixture parsed completely', async (t) => {
  t.same(sections.map((s) => s.flags), [1, 3, 5, 7], 'four flag sections, in order');
  for (const s of sections) {
    const e = EXPECTED[s.flags]!;
    t.equal(flagsName(s.flags), s.heading, `heading ${s.heading} matches flagsName`);
    t.equal(s.rows.length, e.rows, `0x${s.flags}: ${e.rows} outcome rows`);
    t.equal(s.matrix.length, e.matrix, `0x${s.flags}: ${e.matrix} matrix rows`);
    t.equal(s.directArcs.length, e.arcs, `0x${s.flags}: ${e.arcs} direct arcs listed`);
    t.equal(s.directArcCount, s.directArcs.length, `0x${s.flags}: stated direct-arc count matches list`);
    t.ok(s.supported.length > 0, `0x${s.flags}: supported-states line found`);
    // every (from, to) pair appears exactly once
    const keys = new Set(s.rows.map((r) => `${r.from}|${r.to}`));
    t.equal(keys.size, s.rows.length, `0x${s.flags}: no duplicate rows`);
  }
});

for (const s of sections) {
  const flags = s.flags;

  t.test(`flags 0x${flags} (${s.heading}): every (from, to) outcome`, async (t) => {
    let n = 0;
    for (const row of s.rows) {
      const from = st(row.from);
      const targets = row.to === ANY_INVALID ? INVALID_VALUES : [st(row.to)];
      for (const to of targets) {
        const p = path(from, to, flags);
        t.same(project(p), row.outcome, `${row.from} -> ${stateName(to)}: ${row.raw}`);
        n++;
        // first arc == kernel next hop; an EINVAL path is exactly nextHop's verdict
        if (p.ok && p.arcs.length > 0) {
          const h = nextHop(from, to, flags);
          t.ok(h.ok && h.next === p.arcs[0]![1], `${row.from} -> ${stateName(to)}: nextHop is the first arc`);
        } else if (!p.ok) {
          const h = nextHop(from, to, flags);
          t.ok(!h.ok && h.warn === p.warn && h.errno === 'EINVAL', `${row.from} -> ${stateName(to)}: nextHop agrees`);
          t.ok(p.reason.length > 0, 'EINVAL carries a reason');
        }
      }
    }
    t.ok(n >= s.rows.length, `checked ${n} requests`);
  });

  t.test(`flags 0x${flags}: next-step matrix`, async (t) => {
    for (const r of s.matrix) {
      const cur = st(r.cur);
      for (const [col, cell] of Object.entries(r.cells)) {
        const target = st(col);
        const h = nextHop(cur, target, flags);
        const p = path(cur, target, flags);
        const where = `[${r.cur}][${col}] = ${cell}`;
        if (cell === '(same)') {
          t.ok(cur === target && p.ok && p.arcs.length === 0, `${where}: no-op`);
        } else if (cell === 'EINVAL' || cell === 'EINVAL(WARN)') {
          const warn = cell === 'EINVAL(WARN)';
          t.ok(!h.ok && h.warn === warn, `${where}: nextHop EINVAL, warn=${warn}`);
          t.ok(!p.ok && p.warn === warn, `${where}: path EINVAL, warn=${warn}`);
        } else {
          t.ok(h.ok && h.next === st(cell), `${where}: nextHop`);
        }
      }
    }
  });

  t.test(`flags 0x${flags}: supported states and required arcs`, async (t) => {
    t.same(
      supportedStates(flags).map(stateName).sort(), [...s.supported].sort(),
      'supportedStates matches "Supported states" line',
    );
    for (const n of s.supported) t.equal(isSupported(st(n), flags), n !== 'ERROR', `isSupported(${n})`);
    const got = requiredArcs(flags).map((a) => ({
      arc: `${stateName(a.from)}->${stateName(a.to)}`, newFd: a.createsDataFd, endsFd: a.endsSession,
    }));
    t.same(
      [...got].sort((a, b) => a.arc.localeCompare(b.arc)),
      [...s.directArcs].sort((a, b) => a.arc.localeCompare(b.arc)),
      'requiredArcs equals the fixture list, with [new fd] / [ends fd] marks',
    );
    t.same(got.map((a) => a.arc), s.directArcs.map((a) => a.arc), 'and in the same order');
  });
}

// ---------------------------------------------------------------------------------------------
// Properties

t.test('properties of every path', async (t) => {
  const targets = [...STATES, 8, 0xffffffff];
  for (const flags of VALID_FLAG_SETS) {
    const req = new Set(requiredArcs(flags).map((a) => `${a.from}>${a.to}`));
    let composed = 0;
    for (const from of supportedStates(flags)) {
      for (const to of targets) {
        const p = path(from, to, flags);
        if (!p.ok) continue;
        const label = `0x${flags} ${stateName(from)}->${stateName(to)}`;
        if (p.arcs.length > 1) composed++;
        const bad = p.arcs.filter((a) => !req.has(`${a[0]}>${a[1]}`));
        t.same(bad.map(arcName), [], `${label}: all arcs are required arcs`);
        const mid = p.arcs.slice(0, -1).filter(createsDataFd);
        t.same(mid.map(arcName), [], `${label}: no fd-creating arc mid-path`);
        t.ok(p.arcs.filter(endsSession).length <= 1, `${label}: at most one session ends`);
        if (p.endsSessionAt) t.equal(p.endsSessionAt, p.arcs[0], `${label}: a session only ends on the first arc`);
        if (p.newDataFd) t.equal(p.newDataFdKind, to === State.RESUMING ? 'resuming' : 'saving', `${label}: fd kind`);
        else t.equal(p.newDataFdKind, null, `${label}: no fd kind`);
        // Every intermediate state is supported; saving-group states only at the ends of a path,
        // unless the whole path stays inside the group (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY).
        const inside = inSavingGroup(from) && inSavingGroup(to);
        for (const [, via] of p.arcs.slice(0, -1)) {
          t.ok(isSupported(via, flags) && inSavingGroup(via) === inside,
            `${label}: via ${stateName(via)} supported, ${inside ? 'inside' : 'outside'} the saving group`);
        }
      }
    }
    t.ok(composed > 0, `0x${flags}: composed paths exist (${composed})`);
    for (const a of requiredArcs(flags)) {
      const p = path(a.from, a.to, flags);
      t.ok(p.ok && p.direct && p.arcs.length === 1, `0x${flags}: required arc ${stateName(a.from)}->${stateName(a.to)} is a direct request`);
    }
  }
});

t.test('data fd arcs', async (t) => {
  t.same(SAVING_GROUP.map(stateName).sort(), ['PRE_COPY', 'PRE_COPY_P2P', 'STOP_COPY']);
  t.ok(createsDataFd([State.STOP, State.STOP_COPY]));
  t.ok(createsDataFd([State.STOP, State.RESUMING]));
  t.ok(createsDataFd([State.RUNNING, State.PRE_COPY]));
  t.ok(createsDataFd([State.RUNNING_P2P, State.PRE_COPY_P2P]));
  t.notOk(createsDataFd([State.PRE_COPY, State.STOP_COPY]), 'move inside saving group keeps fd');
  t.notOk(endsSession([State.PRE_COPY_P2P, State.PRE_COPY]), 'move inside saving group does not end it');
  t.ok(endsSession([State.PRE_COPY_P2P, State.RUNNING_P2P]));
  t.notOk(endsSession([State.RUNNING, State.STOP]));
});

t.test('impossible current states', async (t) => {
  // RUNNING_P2P cannot exist without P2P: the kernel would WARN.
  const p = path(State.RUNNING_P2P, State.RUNNING, 0x1);
  t.ok(!p.ok && p.warn, 'unsupported current state: EINVAL + WARN');
  const q = path(8, State.RUNNING, 0x7);
  t.ok(!q.ok && q.warn, 'current state >= 8: EINVAL + WARN');
  const r = path(State.ERROR, 0xffffffff, 0x7);
  t.ok(!r.ok && r.warn, 'ERROR checked before the target');
});

t.test('validateFlags', async (t) => {
  for (const f of VALID_FLAG_SETS) t.equal(validateFlags(f), f, `0x${f} accepted`);
  for (const f of [0, 2, 4, 6]) {
    t.throws(() => validateFlags(f), { message: /STOP_COPY \(0x1\) is mandatory.*valid combinations are 0x1/ }, `0x${f} rejected`);
  }
  for (const f of [8, 9, 0xf, 0x100, 0xffffffff, 2 ** 32]) {
    t.throws(() => validateFlags(f), { message: /unknown bits set/ }, `0x${f.toString(16)} rejected`);
  }
  for (const f of [-1, 1.5, NaN]) t.throws(() => validateFlags(f), RangeError, `${f} rejected`);
  t.throws(() => path(State.RUNNING, State.STOP, 0x2), RangeError, 'path() validates flags');
  t.throws(() => requiredArcs(0), RangeError, 'requiredArcs() validates flags');
  t.throws(() => supportedStates(8), RangeError, 'supportedStates() validates flags');
});

t.test('names', async (t) => {
  for (const s of STATES) t.equal(parseState(stateName(s)), s, `round trip ${stateName(s)}`);
  t.equal(stateName(8), '8');
  t.equal(stateName(0xffffffff), '0xffffffff');
  t.equal(parseState('vfio_device_state_pre_copy_p2p'), State.PRE_COPY_P2P);
  t.equal(parseState(' running '), State.RUNNING);
  t.equal(parseState('8'), 8);
  t.equal(parseState('0xffffffff'), 0xffffffff);
  t.equal(parseState('0x100000000'), undefined, 'larger than u32');
  t.equal(parseState('SAVING'), undefined);
  t.equal(flagsName(0x7), 'STOP_COPY|P2P|PRE_COPY');
});
