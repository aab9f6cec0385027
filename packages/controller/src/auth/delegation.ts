// Owns the one rule of delegation: a credential never grants more than it
// holds. A new API key (POST /v1/keys) or a narrowed token (POST
// /v1/auth/token) may not have a higher role, a wider project scope, or a
// later expiry than the credential asking for it, nor (for a key) actions beyond its own limits. Checked here, in one
// place, whatever role the route itself requires.
import { BulkheadError } from '@bulkhead/shared';
import type { Principal } from './principal';
import { describePrincipal } from './principal';
import { projectsWithin } from './project-scope';
import { roleAtLeast, type DeclaredRoute, type Role } from './roles';

export interface Grant {
  role: Role;
  /** Empty = every project. */
  projects: string[];
  /** null = never expires. */
  expiresAt: Date | null;
  /** Route actions the new credential is limited to; empty or absent = not limited. */
  actions?: string[];
}

/**
 * Throws 403 BK_ERR_FORBIDDEN naming what exceeds the grantor's own rights. `routes` (the
 * declared routes) lets a key limited to a route's umbrella action (containers.actions) grant
 * one of its finer actions (containers.pause): the umbrella holds them all.
 */
export function checkGrant(grantor: Principal, g: Grant, what: string, routes: readonly DeclaredRoute[] = []): void {
  const who = describePrincipal(grantor);
  if (!roleAtLeast(grantor.role, g.role)) {
    throw new BulkheadError('BK_ERR_FORBIDDEN', `${who} has the ${grantor.role} role and cannot grant ${g.role} to ${what}`);
  }
  if (!projectsWithin(g.projects, grantor.projects)) {
    const asked = g.projects.length === 0 ? 'every project' : `projects ${g.projects.join(', ')}`;
    throw new BulkheadError('BK_ERR_FORBIDDEN', `${who} is limited to projects ${grantor.projects.join(', ')} and cannot grant ${asked} to ${what}`);
  }
  const mine = grantor.key.actions ?? [];
  const asked = g.actions ?? [];
  const holds = (a: string): boolean => mine.includes(a) || routes.some((r) => r.action !== undefined && mine.includes(r.action) && (r.subActions ?? []).includes(a));
  if (mine.length > 0 && (asked.length === 0 || asked.some((a) => !holds(a)))) {
    const what2 = asked.length === 0 ? 'every action' : `actions ${asked.join(', ')}`;
    throw new BulkheadError('BK_ERR_FORBIDDEN', `${who} is limited to actions ${mine.join(', ')} and cannot grant ${what2} to ${what}`);
  }
  const limit = grantor.keyExpiresAt;
  if (limit !== null && (g.expiresAt === null || g.expiresAt.getTime() > limit.getTime())) {
    const asked = g.expiresAt === null ? 'no expiry' : `expiry ${g.expiresAt.toISOString()}`;
    throw new BulkheadError('BK_ERR_FORBIDDEN', `${who} expires at ${limit.toISOString()} and cannot grant ${asked} to ${what}; choose an expiry no later than its own`);
  }
}
