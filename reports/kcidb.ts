/**
 * A run (or one shard of it) as a KCIDB I/O v5 document for KernelCI: one checkout (the kernel
 * source), one build (the kernel as built for the run) and one test per result.
 *
 * Ids are `<origin>:` followed by a hash of what the object is, never of when it was exported, so a
 * second export of the same run gives the same ids and a re-submission updates instead of adding:
 *   checkout  the source: --commit (or the kernel's source id) and --git-url
 *   build     the source id, config hash, arch and image hash
 *   test      the run, the profile, the device and the case id (and its repeat number). The run is
 *             --run-id when given (a CI pipeline id); else a sharded or merged run's plan hash, so a
 *             shard exported alone and the merged run give each result the same id; else the run's
 *             start time.
 * Test paths are dot-separated: `vfio_conformance.<suite>.<...>` for our cases,
 * `kselftest.<dir>.<program>.<fixture>.<variant>.<test>` for the kernel's own selftests. A path
 * segment holds [A-Za-z0-9_-] only: `->` is written `_to_`, `+` `_plus_`, anything else `_`.
 * The profile is in the environment (comment and misc), never in the path.
 *
 * Status mapping (KCIDB: FAIL > ERROR > MISS > PASS > DONE > SKIP):
 *   pass                  PASS
 *   fail                  FAIL
 *   fail/error, known     unchanged (FAIL/ERROR): KCIDB has no expected failure; the known reason
 *                         (expectations file or baseline) travels in misc.known, for triage
 *   warning               PASS, misc.warning: the contract held, something deserves a look
 *   expected-unsupported  PASS, misc.status: the case ran and asserted the documented refusal
 *   skip                  SKIP: not applicable here, the reason in log_excerpt
 *   error                 ERROR: the harness could not complete the case, the code's state unknown
 *   error "not run: ..."  MISS: never ran (a shard that did not report, a guest that died too often)
 *   any other status      MISS, the status kept in misc.status (a newer results file's word)
 */
import { createHash } from 'node:crypto';
import { HarnessError } from '../base/errors.js';
import type { CaseResult, RunResults } from '../base/results/schema.js';
import { gate, type Expectations } from './gate.js';

export const KCIDB_VERSION = { major: 5, minor: 3 } as const;
export type KcidbStatus = 'FAIL' | 'ERROR' | 'MISS' | 'PASS' | 'DONE' | 'SKIP';

export interface KcidbOptions {
  origin: string;
  gitUrl?: string;
  commit?: string;
  /** where the run directory is published: artifact paths are appended to it */
  artifactsUrl?: string;
  runId?: string;
  baseline?: RunResults;
  expectations?: Expectations;
}

const LOG_MAX = 16_384;

export function kcidbStatus(r: Pick<CaseResult, 'status' | 'reason'>): KcidbStatus {
  switch (r.status as string) {
    case 'pass': case 'warning': case 'expected-unsupported': return 'PASS';
    case 'fail': return 'FAIL';
    case 'skip': return 'SKIP';
    case 'error': return /^not run\b/.test(r.reason ?? '') ? 'MISS' : 'ERROR';
    default: return 'MISS';
  }
}

/** One id segment as a KCIDB path segment. */
function segment(s: string): string {
  return s.replace(/->/g, '_to_').replace(/\+/g, '_plus_').replace(/[^A-Za-z0-9_.-]/g, '_').replace(/\.{2,}/g, '.').replace(/^\.+|\.+$/g, '') || '_';
}

export function kcidbPath(id: string): string {
  const parts = id.split('/').map(segment);
  return parts[0] === 'kselftest' ? parts.join('.') : ['vfio_conformance', ...parts].join('.');
}

function h(...parts: (string | number | undefined)[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 20);
}

export function checkKcidbOptions(o: KcidbOptions): void {
  if (!/^[a-z0-9_]+$/.test(o.origin)) throw new HarnessError(`--origin '${o.origin}': KCIDB origins are lower-case letters, digits and '_' (e.g. my_lab)`);
  if (o.commit !== undefined && !/^[0-9a-f]{40}$/.test(o.commit)) throw new HarnessError(`--commit '${o.commit}': expected the full 40-digit lower-case commit hash`);
  if (o.gitUrl !== undefined && !/^https:\/\/\S+$/.test(o.gitUrl)) throw new HarnessError(`--git-url '${o.gitUrl}': KCIDB takes an https:// repository URL`);
  if (o.artifactsUrl !== undefined) {
    try {
      new URL(o.artifactsUrl);
    } catch {
      throw new HarnessError(`--artifacts-url '${o.artifactsUrl}': not a URL`);
    }
  }
}

function noNul(s: string): string {
  return s.replace(/\0/g, '');
}

function excerpt(r: CaseResult): string | undefined {
  const lines = [r.reason ?? '', ...r.faults.flatMap((f) => [`${f.kind}: ${f.title}${f.step ? ` (step ${f.step})` : ''}`, ...f.lines])].filter(Boolean);
  if (!lines.length) return undefined;
  const text = noNul(lines.join('\n'));
  return text.length > LOG_MAX ? `${text.slice(0, LOG_MAX - 20)}\n[... cut]` : text;
}

function url(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

export function toKcidb(res: RunResults, o: KcidbOptions): Record<string, unknown> {
  checkKcidbOptions(o);
  const run = res.run;
  const k = run.kernel ?? { release: 'unknown', sourceId: 'unknown', configHash: 'unknown', arch: run.host.arch };
  const image = (run.image as { hash?: string } | undefined)?.hash ?? '';
  const checkoutId = `${o.origin}:checkout-${h(o.commit ?? k.sourceId, o.gitUrl ?? '')}`;
  const buildId = `${o.origin}:build-${h(k.sourceId, k.configHash, k.arch, image)}`;
  const planHash = run.shard?.planHash ?? run.merged?.planHash;
  const runKey = o.runId ?? (planHash ? `plan:${planHash}` : `run:${run.startedAt}`);
  const g = gate(res, { baseline: o.baseline, expectations: o.expectations });
  const known = new Map(g.knownFailures.map((x) => [JSON.stringify([x.id, x.profile, x.device]), x.known?.reason ?? '']));
  const seen = new Map<string, number>();

  const tests = res.results.map((r) => {
    const key = JSON.stringify([r.id, r.profile, r.device.id]);
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    const status = kcidbStatus(r);
    const log = excerpt(r);
    const files = Object.entries(r.artifacts).filter(() => o.artifactsUrl).map(([name, p]) => ({ name: segment(name), url: url(o.artifactsUrl!, p) }));
    const misc: Record<string, unknown> = {
      case_id: r.id, suite: r.suite, status: r.status, device: { driver: r.device.driver, class: r.device.class, id: r.device.id },
      ...(r.observed ? { observed: r.observed } : {}), ...(r.expected ? { expected: r.expected } : {}),
      ...(r.status === 'warning' ? { warning: r.reason ?? '' } : {}),
      ...(known.has(key) ? { known: known.get(key) } : {}),
      ...(n > 1 ? { repeat: n } : {}),
    };
    return {
      id: `${o.origin}:test-${h(runKey, r.profile, r.device.id, r.id, n)}`,
      build_id: buildId,
      origin: o.origin,
      path: kcidbPath(r.id),
      status,
      start_time: run.startedAt,
      duration: r.durationMs / 1000,
      environment: {
        comment: noNul(`profile ${r.profile}${run.accel ? `, ${run.accel}` : ''}${run.qemu ? `, QEMU ${run.qemu.version}` : ''}`),
        misc: { profile: r.profile, accel: run.accel, qemu: run.qemu?.version, host: run.host.hostname },
      },
      ...(log ? { log_excerpt: log } : {}),
      ...(o.artifactsUrl && r.artifacts.console ? { log_url: url(o.artifactsUrl, r.artifacts.console) } : {}),
      ...(files.length ? { output_files: files } : {}),
      misc,
    };
  });

  return {
    version: { ...KCIDB_VERSION },
    checkouts: [{
      id: checkoutId, origin: o.origin,
      ...(o.gitUrl ? { git_repository_url: o.gitUrl } : {}), ...(o.commit ? { git_commit_hash: o.commit } : {}),
      comment: noNul(`Linux ${k.release} (${k.sourceId})`), valid: true, misc: { source_id: k.sourceId },
    }],
    builds: [{
      id: buildId, checkout_id: checkoutId, origin: o.origin, architecture: k.arch.replace(/[^a-z0-9_]/g, '_'),
      config_name: `vfio-conformance fragments ${k.configHash.slice(0, 12)}`, comment: noNul(`Linux ${k.release} built by vfio-conformance`),
      status: 'PASS', misc: { release: k.release, source_id: k.sourceId, config_hash: k.configHash, image_hash: image || undefined },
    }],
    tests,
  };
}
