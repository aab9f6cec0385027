// Host paths of bind mounts, compared path-segment-wise: "/etc/ssl" is under
// "/etc", "/etcetera" is not. "/var/run" is a symlink to "/run" on every
// systemd distribution, so both spellings are folded into "/run" for matching.
import { posix } from 'node:path';

/** Absolute, no "..", no "//", no trailing "/". */
export function normalizeHostPath(p: string): string {
  let n = posix.normalize(p.startsWith('/') ? p : `/${p}`);
  if (n.length > 1 && n.endsWith('/')) n = n.slice(0, -1);
  return n;
}

// Mount sources repeat across evaluations; memoise (bounded, cleared when full).
const canonical = new Map<string, string>();

/** normalizeHostPath plus the /var/run → /run fold; use for matching only, report the original. */
export function canonicalHostPath(p: string): string {
  let c = canonical.get(p);
  if (c === undefined) {
    c = canonicalUncached(p);
    if (canonical.size >= 10_000) canonical.clear();
    canonical.set(p, c);
  }
  return c;
}

function canonicalUncached(p: string): string {
  const n = normalizeHostPath(p);
  if (n === '/var/run') return '/run';
  if (n.startsWith('/var/run/')) return n.slice(4);
  return n;
}

/** True when `p` equals `base` or lies beneath it. "/" as base matches only "/" itself. Both canonical. */
export function isSameOrUnder(p: string, base: string): boolean {
  if (p === base) return true;
  if (base === '/') return false;
  return p.length > base.length && p.charCodeAt(base.length) === 47 /* / */ && p.startsWith(base);
}

/** True when `p` is a strict ancestor directory of `child` ("/" is an ancestor of everything). Both canonical. */
export function isAncestorOf(p: string, child: string): boolean {
  if (p === child) return false;
  if (p === '/') return true;
  return child.length > p.length && child.charCodeAt(p.length) === 47 && child.startsWith(p);
}
