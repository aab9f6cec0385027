// JSON documents as written, not as parsed: an object is an ordered list of
// (key, value) pairs, so a body can repeat a key, spell it in another case
// or with a Unicode simple-fold letter, and be serialised exactly so.
// (A JavaScript object would merge duplicates and keep one spelling.)

export type JNode =
  | { kind: 'obj'; entries: [string, JNode][] }
  | { kind: 'arr'; items: JNode[] }
  | { kind: 'lit'; value: string | number | boolean | null };

export function obj(entries: [string, JNode][]): JNode {
  return { kind: 'obj', entries };
}

export function lit(value: string | number | boolean | null): JNode {
  return { kind: 'lit', value };
}

/** A plain value as a document (objects keep their key order). */
export function j(v: unknown): JNode {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return lit(v);
  if (Array.isArray(v)) return { kind: 'arr', items: v.map(j) };
  if (typeof v === 'object') return obj(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, j(x)]));
  throw new Error(`not JSON: ${String(v)}`);
}

export function serialize(n: JNode): string {
  switch (n.kind) {
    case 'lit':
      return JSON.stringify(n.value);
    case 'arr':
      return `[${n.items.map(serialize).join(',')}]`;
    case 'obj':
      return `{${n.entries.map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(',')}}`;
  }
}

/** A small seeded PRNG (mulberry32) for the fine-grained choices inside one variant. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)]!;
}

/**
 * Another ASCII-case spelling of `key` (never `key` itself when it has a
 * letter): Go's encoding/json matches it to the same struct field.
 */
export function caseVariant(key: string, rnd: () => number): string {
  const letters = [...key].map((c, i) => (/[a-z]/i.test(c) ? i : -1)).filter((i) => i >= 0);
  if (letters.length === 0) return key;
  const style = Math.floor(rnd() * 4);
  if (style === 0 && key.toLowerCase() !== key) return key.toLowerCase();
  if (style === 1 && key.toUpperCase() !== key) return key.toUpperCase();
  const chars = [...key];
  let changed = false;
  for (const i of letters) {
    if (rnd() < 0.5) {
      chars[i] = flip(chars[i]!);
      changed = true;
    }
  }
  if (!changed) chars[letters[0]!] = flip(chars[letters[0]!]!);
  return chars.join('');
}

function flip(c: string): string {
  return c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
}

/** U+017F LATIN SMALL LETTER LONG S folds to s/S; U+212A KELVIN SIGN folds to k/K (Unicode simple folding). */
export const LONG_S = '\u017f';
export const KELVIN = '\u212a';

/** Whether `key` has a letter with a non-ASCII simple fold (s, S, k, K). */
export function foldable(key: string): boolean {
  return /[sSkK]/.test(key);
}

/**
 * `key` with one or more of its s/S replaced by ſ and k/K by K: Go's
 * encoding/json (Unicode simple folding) still matches the field; an
 * exact-case or ASCII-case-insensitive reader does not.
 */
export function foldVariant(key: string, rnd: () => number): string {
  const idx = [...key].map((c, i) => (/[sSkK]/.test(c) ? i : -1)).filter((i) => i >= 0);
  if (idx.length === 0) return key;
  const chars = [...key];
  const all = rnd() < 0.3;
  const one = pick(rnd, idx);
  for (const i of idx) {
    if (all || i === one) chars[i] = /[sS]/.test(chars[i]!) ? LONG_S : KELVIN;
  }
  // Sometimes an ASCII case change on top.
  const out = chars.join('');
  return rnd() < 0.3 ? [...out].map((c) => (c === LONG_S || c === KELVIN ? c : rnd() < 0.3 ? flip(c) : c)).join('') : out;
}
