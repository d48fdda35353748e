/** The FSM arcs each client walked, from what the suites recorded (see arcCoverage). */
import type { RunResults } from '../../base/results/schema.js';
import { esc } from './text.js';

/**
 * Which kernel arcs each client walked, read from what the suites recorded: the direct-ioctl suite
 * puts the path the kernel composed in `expected.arcs` of its passing arc cases, the real-client
 * suite puts the arcs QEMU's walk implies in `observed.vfio.<side>.arcs`. Only arcs named there
 * appear; nothing is derived from the contract here.
 */
export function arcCoverage(res: RunResults): { arc: string; direct: number; realClient: string[] }[] {
  const direct = new Map<string, number>();
  const real = new Map<string, Set<string>>();
  for (const r of res.results) {
    if (r.suite === 'migration' && r.id.startsWith('migration/arc/') && r.status === 'pass') {
      const arcs = typeof r.expected?.arcs === 'string' ? r.expected.arcs : '';
      for (const a of arcs.split(',').map((x) => x.trim()).filter((x) => x && x !== 'none')) direct.set(a, (direct.get(a) ?? 0) + 1);
    }
    const vfio = (r.observed as { vfio?: Record<string, unknown> } | undefined)?.vfio;
    if (r.suite === 'qemu-migration' && vfio && typeof vfio === 'object') {
      for (const side of Object.values(vfio)) {
        for (const w of (Array.isArray(side) ? side : [side]) as { arcs?: unknown }[]) {
          for (const a of Array.isArray(w?.arcs) ? w.arcs : []) if (typeof a === 'string') real.set(a, (real.get(a) ?? new Set()).add(r.id));
        }
      }
    }
  }
  const arcs = [...new Set([...direct.keys(), ...real.keys()])].sort();
  return arcs.map((arc) => ({ arc, direct: direct.get(arc) ?? 0, realClient: [...(real.get(arc) ?? [])].sort() }));
}

export function coverageSection(res: RunResults): string {
  const cov = arcCoverage(res);
  if (!cov.length || !cov.some((c) => c.realClient.length)) return '';
  const rows = cov.map((c) => `<tr><td><code>${esc(c.arc)}</code></td><td>${c.direct ? `${c.direct} case${c.direct > 1 ? 's' : ''}` : '<span class="muted">-</span>'}</td>` +
    `<td>${c.realClient.length ? esc(c.realClient.map((id) => id.split('/').pop()).join(', ')) : '<span class="muted">only the direct suite</span>'}</td></tr>`).join('');
  const onlyDirect = cov.filter((c) => !c.realClient.length).length;
  return `\n<section id="arc-coverage"><h2>FSM arc coverage</h2><p>${cov.length} kernel arcs walked; the real QEMU client walked ${cov.length - onlyDirect}, ${onlyDirect} only by the direct-ioctl suite.</p>` +
    `<table class="cov"><thead><tr><th>arc</th><th>direct-ioctl suite (passing paths through it)</th><th>real QEMU client (cases)</th></tr></thead><tbody>${rows}</tbody></table></section>\n`;
}

