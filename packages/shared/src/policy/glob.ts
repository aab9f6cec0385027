// Glob patterns used by scopes, exemptions and allowlists: `*` matches any run
// of characters (including "/", so "registry.example.com/*" covers nested
// repositories), `?` one character. Compiled once per policy.
//
// "Character" means one UTF-16 code unit, and `?` matches any of them,
// newlines included: exactly what the regex `.` (flag 's', no flag 'u') did
// when globs were compiled to regexes. There is no escape: a glob cannot
// match a literal `*` or `?` other than through the wildcard itself.
//
// Matching never backtracks. A regex `.*a.*a.*b` tries every split of the
// input and took seconds on a few kilobytes — on the authorization plugin's
// path, where a stalled plugin stalls dockerd. Here the pattern is cut at its
// `*`s into literal segments: the first must be a prefix, the last a suffix,
// and each one between is taken at its leftmost place after the previous
// one. Leftmost is always safe: if any placement of a segment works, the
// leftmost one does too (the `*` after it absorbs the difference), so there
// is nothing to undo. At worst O(input × pattern) per match, typically one
// indexOf per segment, and no allocation.

export type Matcher = (s: string) => boolean;

/**
 * Bounds on globs in a policy, enforced by validation (validate.ts) so a
 * policy cannot make each match arbitrarily expensive. docs/policy.md#limits.
 */
export const GLOB_LIMITS = {
  /** Characters (UTF-16 code units) per glob. */
  maxLength: 256,
  /** `*` per glob. */
  maxStars: 64,
  /** Globs per list (or entries per label map). */
  maxPerList: 1000,
} as const;

const ALWAYS: Matcher = () => true;
const QUESTION = 0x3f; // '?'

function hasWildcard(p: string): boolean {
  return p.includes('*') || p.includes('?');
}

/** Does `seg` (literal but for `?`) match `s` at `at`? The caller ensures it fits. */
function matchAt(s: string, at: number, seg: string): boolean {
  for (let i = 0; i < seg.length; i++) {
    const c = seg.charCodeAt(i);
    if (c !== QUESTION && c !== s.charCodeAt(at + i)) return false;
  }
  return true;
}

/** Leftmost index ≥ from where `seg` matches and ends at or before `end`; -1 if none. */
function findFrom(s: string, seg: string, withQuestion: boolean, from: number, end: number): number {
  if (!withQuestion) {
    const i = s.indexOf(seg, from);
    // indexOf is leftmost: if this one overruns `end`, every later one does too.
    return i >= 0 && i + seg.length <= end ? i : -1;
  }
  for (let i = from; i + seg.length <= end; i++) if (matchAt(s, i, seg)) return i;
  return -1;
}

/** A pattern that contains `*` or `?`, other than '*' itself. */
function compileWildcard(pattern: string): Matcher {
  const parts = pattern.split('*');
  if (parts.length === 1) {
    // Only `?`: a fixed length.
    return (s) => s.length === pattern.length && matchAt(s, 0, pattern);
  }
  const head = parts[0]!;
  const tail = parts[parts.length - 1]!;
  const fixed = head.length + tail.length;
  const headQuestion = head.includes('?');
  const tailQuestion = tail.includes('?');
  // Consecutive stars leave empty segments; they constrain nothing.
  const mids = parts.slice(1, -1).filter((m) => m !== '');
  if (mids.length === 0 && !headQuestion && !tailQuestion) {
    // The common shapes ("registry.example.com/*", "*:latest", "eu-*-prod") in native calls.
    if (tail === '') return (s) => s.startsWith(head);
    if (head === '') return (s) => s.endsWith(tail);
    return (s) => s.length >= fixed && s.startsWith(head) && s.endsWith(tail);
  }
  const headAt: Matcher = headQuestion ? (s) => matchAt(s, 0, head) : (s) => s.startsWith(head);
  const tailAt: Matcher = tailQuestion ? (s) => matchAt(s, s.length - tail.length, tail) : (s) => s.endsWith(tail);
  if (mids.length === 0) return (s) => s.length >= fixed && headAt(s) && tailAt(s);
  const midQuestion = mids.map((m) => m.includes('?'));
  const minLength = mids.reduce((n, m) => n + m.length, fixed);
  return (s) => {
    if (s.length < minLength || !headAt(s) || !tailAt(s)) return false;
    const end = s.length - tail.length;
    let pos = head.length;
    for (let k = 0; k < mids.length; k++) {
      const seg = mids[k]!;
      const i = findFrom(s, seg, midQuestion[k]!, pos, end);
      if (i < 0) return false;
      pos = i + seg.length;
    }
    return true;
  };
}

/** Compiles one glob; patterns without wildcards become plain equality. */
export function compileGlob(pattern: string): Matcher {
  if (pattern === '*') return ALWAYS;
  if (!hasWildcard(pattern)) return (s) => s === pattern;
  return compileWildcard(pattern);
}

/** Compiles a list of globs into one matcher that accepts when any glob matches. */
export function compileGlobs(patterns: readonly string[]): Matcher {
  const exact = new Set<string>();
  const wild: Matcher[] = [];
  const seen = new Set<string>();
  for (const p of patterns) {
    if (p === '*') return ALWAYS;
    if (!hasWildcard(p)) exact.add(p);
    else if (!seen.has(p)) {
      seen.add(p);
      wild.push(compileWildcard(p));
    }
  }
  if (wild.length === 0) return (s) => exact.has(s);
  if (wild.length === 1 && exact.size === 0) return wild[0]!;
  return (s) => {
    if (exact.has(s)) return true;
    for (let i = 0; i < wild.length; i++) if (wild[i]!(s)) return true;
    return false;
  };
}
