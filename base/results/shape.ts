/**
 * One declaration of a JSON document's shape gives both its TypeScript type (`Infer`) and its
 * validator (`check`), so the two cannot drift apart. Only what results.json needs: strings,
 * numbers, booleans, string enums, arrays, string-keyed records and objects with optional fields.
 * Problems are phrased "<json path>: expected ..., got ..." and collected, not thrown.
 */

export type Problems = string[];

export interface Shape<T> {
  /** phrase for "expected ..." */
  readonly expected: string;
  check(v: unknown, path: string, p: Problems): void;
  /** carries T for Infer; never set */
  readonly _type?: T;
}

/** A field that may be absent. */
export interface OptionalShape<T> extends Shape<T> {
  readonly optional: true;
}

export type Infer<S> = S extends Shape<infer T> ? T : never;

type Fields = Record<string, Shape<unknown>>;
type Flat<T> = { [K in keyof T]: T[K] } & {};
type ObjectOf<F extends Fields> = Flat<
  { [K in keyof F as F[K] extends OptionalShape<unknown> ? never : K]: Infer<F[K]> }
  & { [K in keyof F as F[K] extends OptionalShape<unknown> ? K : never]?: Infer<F[K]> }
>;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'undefined') return 'nothing (field missing)';
  return `${typeof v} ${show(v)}`;
}

function show(v: unknown): string {
  // JSON has no Infinity or NaN (JSON.stringify says null): name them as they are
  const s = typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** "missing" for an absent value, else "got <what it is>". */
export function got(v: unknown): string {
  return v === undefined ? 'missing' : `got ${typeName(v)}`;
}

/** `path.k`, or `path["odd key"]` when k is not an identifier. */
export function key(path: string, k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
}

function leaf<T>(expected: string, ok: (v: unknown) => boolean, more?: (v: T) => string | undefined): Shape<T> {
  return {
    expected,
    check(v, path, p) {
      if (!ok(v)) return void p.push(`${path}: expected ${expected}, ${got(v)}`);
      const extra = more?.(v as T);
      if (extra) p.push(`${path}: ${extra}`);
    },
  };
}

export function str(o: { nonEmpty?: boolean; expected?: string } = {}): Shape<string> {
  return leaf<string>(o.expected ?? 'a string', (v) => typeof v === 'string',
    (v) => (o.nonEmpty && v === '' ? 'expected a non-empty string, got ""' : undefined));
}

export function num(o: { min?: number } = {}): Shape<number> {
  return leaf<number>('a number', (v) => typeof v === 'number' && Number.isFinite(v),
    (v) => (o.min !== undefined && v < o.min ? `expected a number >= ${o.min}, got ${v}` : undefined));
}

export function bool(): Shape<boolean> {
  return leaf<boolean>('true or false', (v) => typeof v === 'boolean');
}

export function oneOf<const T extends string>(values: readonly T[]): Shape<T> {
  return leaf<T>(`one of ${values.join('|')}`, (v) => typeof v === 'string' && (values as readonly string[]).includes(v));
}

/** Anything JSON (a case's observed values): present is enough. */
export function unknownValue(): Shape<unknown> {
  return { expected: 'a value', check: () => undefined };
}

export function arrayOf<T>(item: Shape<T>): Shape<T[]> {
  const expected = item.expected === 'a string' ? 'an array of strings' : 'an array';
  return {
    expected,
    check(v, path, p) {
      if (!Array.isArray(v)) return void p.push(`${path}: expected ${expected}, ${got(v)}`);
      v.forEach((x, i) => item.check(x, `${path}[${i}]`, p));
    },
  };
}

/** An object with any keys, each value of one shape. */
export function recordOf<T>(value: Shape<T>): Shape<Record<string, T>> {
  return {
    expected: 'an object',
    check(v, path, p) {
      if (!isObject(v)) return void p.push(`${path}: expected an object, ${got(v)}`);
      for (const [k, x] of Object.entries(v)) value.check(x, key(path, k), p);
    },
  };
}

/**
 * An object with these fields. Fields not declared are kept and not checked (additions within a
 * schema version stay readable); `open` also types them, as unknown.
 */
export function object<F extends Fields>(fields: F): Shape<ObjectOf<F>>;
export function object<F extends Fields>(fields: F, o: { open: true }): Shape<ObjectOf<F> & { [extra: string]: unknown }>;
export function object<F extends Fields>(fields: F): Shape<ObjectOf<F>> {
  return {
    expected: 'an object',
    check(v, path, p) {
      if (!isObject(v)) return void p.push(`${path}: expected an object, ${got(v)}`);
      for (const [k, s] of Object.entries(fields)) {
        if (v[k] === undefined && 'optional' in s) continue;
        s.check(v[k], key(path, k), p);
      }
    },
  };
}

export function optional<T>(s: Shape<T>): OptionalShape<T> {
  return { ...s, check: s.check.bind(s), optional: true };
}

/** Check `v` against `s`; the problems found, none when it fits. */
export function problemsOf(s: Shape<unknown>, v: unknown, path: string): Problems {
  const p: Problems = [];
  s.check(v, path, p);
  return p;
}
