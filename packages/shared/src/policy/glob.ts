// Glob patterns used by scopes, exemptions and allowlists: `*` matches any run
// of characters (including "/", so "registry.example.com/*" covers nested
// repositories), `?` one character. Compiled once per policy.

export type Matcher = (s: string) => boolean;

const ALWAYS: Matcher = () => true;

/** Compiles one glob; patterns without wildcards become plain equality. */
export function compileGlob(pattern: string): Matcher {
  if (pattern === '*') return ALWAYS;
  if (!/[*?]/.test(pattern)) return (s) => s === pattern;
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  const re = new RegExp(`^${body}$`, 's');
  return (s) => re.test(s);
}

/** Compiles a list of globs into one matcher that accepts when any glob matches. */
export function compileGlobs(patterns: readonly string[]): Matcher {
  const exact = new Set<string>();
  const wild: RegExp[] = [];
  for (const p of patterns) {
    if (p === '*') return ALWAYS;
    if (!/[*?]/.test(p)) exact.add(p);
    else wild.push(new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's'));
  }
  if (wild.length === 0) return (s) => exact.has(s);
  const re = new RegExp(wild.map((r) => `(?:${r.source})`).join('|'), 's');
  return (s) => exact.has(s) || re.test(s);
}
