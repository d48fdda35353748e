import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, relative } from 'node:path';
import { repoRoot } from '../../base/paths.js';

/**
 * The rooms, from the ground floor up (design.md). A module may import its own room and the floors
 * below it, never a floor above: data flows cli -> reports -> runner -> suites -> images -> harness
 * -> base. bench sits with cli, on top.
 */
const FLOORS = ['base', 'harness', 'images', 'suites', 'runner', 'reports', 'cli'] as const;
const floorOf = (room: string): number => (room === 'bench' ? FLOORS.length - 1 : FLOORS.indexOf(room as typeof FLOORS[number]));

/** Rooms a floor may not see even though they are below it: a report reads results, never how they were made. */
const FORBIDDEN: Record<string, string[]> = {
  reports: ['harness', 'images', 'suites', 'runner'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative imports of one file, as repository paths (import type included: a type is a dependency too). */
function importsOf(root: string, file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    out.push(normalize(join(dirname(file), m[1]!)));
  }
  return out;
}

function violations(root: string, rooms: readonly string[]): string[] {
  const bad: string[] = [];
  for (const room of rooms) {
    for (const abs of sources(join(root, room))) {
      const file = relative(root, abs);
      for (const imp of importsOf(root, file)) {
        const to = imp.split('/')[0]!;
        if (to === room) continue;
        const up = floorOf(to) > floorOf(room) || floorOf(to) < 0;
        if (up || FORBIDDEN[room]?.includes(to)) bad.push(`${file} imports ${imp} (${room} -> ${to})`);
      }
    }
  }
  return bad;
}

t.test('no import goes up the floors', async (t) => {
  const root = repoRoot();
  t.same(violations(root, [...FLOORS, 'bench']), [], 'every import points at its own room or a floor below');
});

t.test('the check reports an upward import and a report reaching into the runner', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vfioc-layout-'));
  const put = (f: string, text: string) => { mkdirSync(dirname(join(root, f)), { recursive: true }); writeFileSync(join(root, f), text); };
  put('base/errors.ts', 'export class E {}\n');
  put('harness/x.ts', "import { E } from '../base/errors.js';\nimport type { R } from '../runner/run.js';\n");
  put('runner/run.ts', "import { E } from '../base/errors.js';\nexport type R = 1;\n");
  put('reports/html.ts', "import type { R } from '../runner/run.js';\nimport { E } from '../base/errors.js';\n");
  for (const r of ['images', 'suites', 'cli']) put(`${r}/.keep.ts`, '');
  t.same(violations(root, FLOORS), [
    'harness/x.ts imports runner/run.js (harness -> runner)',
    'reports/html.ts imports runner/run.js (reports -> runner)',
  ]);
});
