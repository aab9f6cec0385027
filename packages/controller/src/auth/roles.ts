// Owns roles and the route access declarations. Every /v1 route declares
// the least role it needs in its route config (`config: { role: 'operator' }`);
// one onRequest hook (api-security.ts) enforces it, and registering a /v1
// route without a declaration fails at start-up, so no route can slip
// through unguarded.
//   viewer   reads
//   operator + acts on containers, acknowledges violations, manages webhooks, uploads scans
//   admin    + policies, API keys, join tokens, agents, the audit trail

import { ROLES, type Role } from '@bulkhead/client';

export { ROLES, type Role };

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

/** True when `have` is `need` or more. */
export function roleAtLeast(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

/** What a route declares in its fastify config. */
export interface RouteAccess {
  /** The least role that may call the route. */
  role: Role;
  /**
   * The route reads or changes fleet-wide state that no project owns (the
   * policy, agents, join tokens, webhooks, scans, the audit trail, results
   * spanning every project): a credential scoped to projects is refused
   * with 403, whatever its role.
   */
  fleetWide?: boolean;
  /** Name recorded in the audit trail, e.g. "keys.create". Default: derived from method and path. */
  action?: string;
  /**
   * Finer actions the route performs, one per request, chosen by its body (POST
   * /v1/containers/:agent/:id/actions: "containers.pause", "containers.kill", …). A key may be
   * limited to some of them (`keys create --only containers.pause`); the route's own action
   * still grants them all. The route checks the one asked for with authorizeSubAction.
   */
  subActions?: readonly string[];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Least role for a /v1 route (src/auth/roles.ts). Required under /v1. */
    role?: Role;
    /** See RouteAccess.fleetWide. */
    fleetWide?: boolean;
    /** See RouteAccess.action. */
    action?: string;
    /** See RouteAccess.subActions. */
    subActions?: readonly string[];
    /** The request body may be left out: the OpenAPI document says `required: false` (src/openapi/openapi.ts). */
    bodyOptional?: boolean;
  }
}

/** A registered /v1 route and what it declared (for docs and tests). */
export interface DeclaredRoute extends RouteAccess {
  method: string;
  url: string;
}

const VERB: Record<string, string> = { GET: 'read', HEAD: 'read', POST: 'create', PUT: 'replace', PATCH: 'update', DELETE: 'delete' };

/**
 * "POST /v1/keys" → "keys.create"; "POST /v1/webhooks/:id/rotate-secret" →
 * "webhooks.rotate-secret"; "POST /v1/policies:dry-run" → "policies.dry-run".
 */
export function deriveAction(method: string, url: string): string {
  const parts = url.replace(/^\/v1\/?/, '').split('/').filter((p) => p !== '');
  const words = parts.filter((p) => !p.startsWith(':')).flatMap((p) => p.split(/:+/)).filter((p) => p !== '');
  if (words.length === 0) return VERB[method] ?? method.toLowerCase();
  const lastIsParam = parts.length > 0 && parts[parts.length - 1]!.startsWith(':');
  // A trailing literal after a parameter, or a custom method ("x:verb"), is the verb itself.
  const hasVerb = words.length > 1 && (!lastIsParam && (parts.length > 1 || parts[0]!.includes(':')));
  if (hasVerb) return `${words[0]}.${words.slice(1).join('.')}`;
  return `${words[0]}.${VERB[method] ?? method.toLowerCase()}`;
}
