// Owns identity and access on the /v1 scope of the API, in one place:
//   onRoute    every /v1 route must declare its least role (else start-up fails)
//   onRequest  authenticate (API key, bearer token, or — without an
//              Authorization header — the browser session cookie; failures
//              throttled), refuse a cookie-authenticated mutating request
//              without its CSRF token, then authorize (role, the key's action
//              limits, fleet-wide vs project-scoped). One path for every
//              credential: a session has exactly its key's rights.
//   + the audit hooks (src/audit/audit-hooks.ts)
// Routes then read `req.auth` (the principal) and scope their queries with
// visibleProjects(req) (project-scope.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parse as parseCookies } from 'cookie';
import { BulkheadError, type Logger } from '@bulkhead/shared';
import type { Store } from '../store/store';
import { AuditLog } from '../audit/audit-log';
import { auditNotes, installAuditHooks } from '../audit/audit-hooks';
import { Authenticator, type AuthAttempt } from './authenticator';
import { resolveAuthOptions, type AuthOptions, type AuthOptionsInput } from './auth-options';
import { describePrincipal, type Principal } from './principal';
import { AuthFailureLimits } from './rate-limiter';
import { deriveAction, isRole, roleAtLeast, type DeclaredRoute, type RouteAccess } from './roles';
import { CSRF_HEADER, SESSION_COOKIE, clearedSessionCookie, csrfMatches } from './sessions';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route is authenticated after its body is parsed and validated (POST /v1/session takes
     * the API key as `key` in its body, or in the Authorization header), by the /v1 preHandler
     * hook through ApiSecurity.authenticateRequest: the same checks, limits, audit and
     * authorization as every other route. No session cookie is accepted there.
     */
    credentialInBody?: boolean;
  }
}

export interface ApiSecurityOptions extends AuthOptionsInput {
  store: Store;
  logger: Logger;
  now: () => Date;
}

export class ApiSecurity {
  /** Every /v1 route with what it declared, in registration order (HEAD twins omitted). */
  readonly routes: DeclaredRoute[] = [];
  readonly options: AuthOptions;
  readonly failureLimits: AuthFailureLimits;
  readonly authenticator: Authenticator;
  /** Undefined when the store has no audit table (test fakes). */
  readonly audit: AuditLog | undefined;

  constructor(private readonly o: ApiSecurityOptions) {
    this.options = resolveAuthOptions(o);
    this.failureLimits = new AuthFailureLimits(this.options.failureLimit);
    this.authenticator = new Authenticator({
      store: o.store, sessions: o.store.sessions, sessionIdleMs: this.options.sessionIdleMs,
      tokenSecret: this.options.tokenSecret, limits: this.failureLimits, logger: o.logger,
    });
    this.audit = o.store.audit ? new AuditLog(o.store.audit, o.logger.child({ component: 'audit' })) : undefined;
  }

  /** Installs the hooks on the /v1 scope; call before registering its routes. */
  install(v1: FastifyInstance): void {
    v1.decorateRequest('auth', null);

    v1.addHook('onRoute', (r) => {
      const cfg = r.config ?? {};
      const methods = [r.method].flat();
      if (!isRole(cfg.role)) {
        throw new BulkheadError(
          'BK_ERR_INTERNAL',
          `route ${methods.join(',')} ${r.url} declares no least role: add config: { role: 'viewer' | 'operator' | 'admin' } (src/auth/roles.ts)`,
        );
      }
      for (const method of methods) {
        if (method === 'HEAD' && this.routes.some((x) => x.method === 'GET' && x.url === r.url)) continue;
        this.routes.push({
          method, url: r.url, role: cfg.role, fleetWide: cfg.fleetWide === true, action: cfg.action ?? deriveAction(method, r.url),
          ...(cfg.subActions ? { subActions: [...cfg.subActions] } : {}),
        });
      }
    });

    v1.addHook('onRequest', async (req, reply) => {
      if (req.routeOptions.config.credentialInBody === true) return;
      await this.authenticateRequest(req, reply, req.headers.authorization, sessionCookieOf(req));
    });
    // A route taking its credential in the body: the same checks once the body is parsed. The
    // Authorization header, when sent, wins; a session cookie is never accepted there (a
    // session cannot mint a session).
    v1.addHook('preHandler', async (req, reply) => {
      if (req.routeOptions.config.credentialInBody !== true) return;
      const inBody = (req.body as { key?: unknown } | undefined)?.key;
      const header = req.headers.authorization ?? (typeof inBody === 'string' && inBody !== '' ? `Bearer ${inBody}` : undefined);
      await this.authenticateRequest(req, reply, header, undefined);
    });

    installAuditHooks(v1, { audit: this.audit, now: this.o.now, rateLimitedEveryMs: this.failureLimits.windowMs });
  }

  /**
   * Authenticates the request with `authorization` (an Authorization header value) or, without
   * one, the session cookie's `sessionId`; checks a session's CSRF token on mutating methods;
   * authorizes by the route's declaration; sets req.auth. Throws 401/403/429 problems.
   */
  async authenticateRequest(req: FastifyRequest, reply: FastifyReply, authorization: string | undefined, sessionId: string | undefined): Promise<void> {
    if ((authorization === undefined || authorization === '') && sessionId !== undefined && sessionId !== '') refuseOtherOrigins(req);
    const seen: AuthAttempt = {};
    let p: Principal;
    try {
      p = await this.authenticator.authenticate(authorization, req.ip, this.o.now(), seen, sessionId);
    } catch (err) {
      const notes = auditNotes(req);
      if (seen.presentedKeyId !== undefined) notes.presentedKeyId = seen.presentedKeyId;
      if (seen.retryAfterS !== undefined) {
        reply.header('retry-after', String(seen.retryAfterS));
        notes.limitedBucket = seen.limitedBucket;
      }
      // A refused cookie is dropped by the browser (same flags, Max-Age=0): a stale tab stops sending it.
      if (seen.sessionCookieRejected === true) reply.header('set-cookie', clearedSessionCookie());
      throw err;
    }
    req.auth = p;
    // Routes written before tokens read the key (policy history records its id).
    req.apiKey = { ...p.key, role: p.role, projects: p.projects };
    // A browser sends the cookie with any request it is made to send (SameSite=Strict is the first
    // wall; a same-site page of another service on this host name is the hole it leaves). The CSRF
    // token is readable only by the console's own script, so a forged request cannot carry it.
    if (p.session && MUTATING.has(req.method) && !csrfMatches(this.options.tokenSecret, p.session.id, req.headers[CSRF_HEADER])) {
      const presented = req.headers[CSRF_HEADER] !== undefined;
      throw new BulkheadError(
        'BK_ERR_CSRF',
        presented
          ? `the ${CSRF_HEADER} header does not match this session's CSRF token`
          : `${req.method} with the session cookie needs the session's CSRF token in the ${CSRF_HEADER} header (from POST or GET /v1/session)`,
      );
    }
    authorize(p, req.routeOptions.config, req.method, req.routeOptions.url ?? req.url);
  }

  /** Waits for queued audit entries and last-used writes (before the store closes). */
  async drain(): Promise<void> {
    await this.audit?.flush();
    await this.authenticator.drain();
  }
}

/**
 * The console calls the API from its own origin only. A browser sends the SameSite=Strict cookie
 * with the requests of any page of the same *site* — another service on this host name or IP on
 * another port — and, for reads and event streams, no CSRF token is asked: such a page cannot read
 * the answers (no CORS), but its requests would still count as use (keeping a forgotten session
 * past its idle timeout) and its EventSources would take the key's stream slots. Browsers say where
 * a request comes from in Sec-Fetch-Site; with the cookie, only `same-origin` and `none` (the
 * person typed the URL or opened a bookmark) are accepted. Refused before the session is looked up,
 * so a refused request is not use. Clients that send no Sec-Fetch-Site (not a browser, or an old
 * one) keep SameSite and the CSRF token.
 */
function refuseOtherOrigins(req: FastifyRequest): void {
  const site = req.headers['sec-fetch-site'];
  if (site === undefined || site === 'same-origin' || site === 'none') return;
  throw new BulkheadError(
    'BK_ERR_CSRF',
    `a request from another origin (Sec-Fetch-Site: ${String(site).slice(0, 40)}) cannot use the session cookie; the console calls the API from its own origin`,
  );
}

/** The session cookie's value, if the request carries one. */
export function sessionCookieOf(req: FastifyRequest): string | undefined {
  const raw = req.headers.cookie;
  if (raw === undefined || raw === '') return undefined;
  return parseCookies(raw)[SESSION_COOKIE];
}

/** Throws 403 BK_ERR_FORBIDDEN naming the role (or unscoped credential) the route needs. */
export function authorize(p: Principal, access: Partial<RouteAccess>, method: string, url: string): void {
  const why = denial(p, access, method, url);
  if (why !== undefined) throw new BulkheadError('BK_ERR_FORBIDDEN', why);
}

/** Why `p` may not call the route, or undefined when it may (authorize's rules, without throwing). */
function denial(p: Principal, access: Partial<RouteAccess>, method: string, url: string): string | undefined {
  const need = access.role;
  // onRoute guarantees a role; refuse rather than guess if that ever breaks.
  if (!isRole(need)) return `${method} ${url} declares no role; refusing`;
  // A key limited to some actions (a CI scan uploader) is told that first: it is why, whatever the role.
  const only = p.key.actions;
  if (only !== undefined && only.length > 0) {
    const action = access.action ?? deriveAction(method, url);
    // A key limited to some of the route's finer actions passes here; the route checks which (authorizeSubAction).
    if (!only.includes(action) && !(access.subActions ?? []).some((a) => only.includes(a))) {
      return `${method} ${url} (${action}) is not among the actions ${describePrincipal(p)} is limited to: ${only.join(', ')}`;
    }
  }
  if (!roleAtLeast(p.role, need)) return `${method} ${url} needs the ${need} role or higher; ${describePrincipal(p)} has ${p.role}`;
  if (access.fleetWide === true && p.projects.length > 0) {
    return `${method} ${url} acts on fleet-wide state and needs a credential not limited to projects; ${describePrincipal(p)} is limited to ${p.projects.join(', ')}`;
  }
  return undefined;
}

/**
 * For a route declaring subActions, once its body says which one: throws 403 when the key is
 * limited to actions that include neither this one nor the route's own (which grants them all).
 */
export function authorizeSubAction(p: Principal, routeAction: string, sub: string): void {
  const only = p.key.actions;
  if (only === undefined || only.length === 0 || only.includes(routeAction) || only.includes(sub)) return;
  throw new BulkheadError('BK_ERR_FORBIDDEN', `${sub} is not among the actions ${describePrincipal(p)} is limited to: ${only.join(', ')}`);
}

/**
 * Every action name (routes' actions and their subActions, as in the audit trail and
 * `keys create --only`) that `p` may perform, after its role, its key's action limits and
 * its project scope: what the console shows buttons for. Sorted, each once. A route's
 * umbrella action (e.g. containers.actions) is listed only when all of it is allowed.
 */
export function allowedActions(p: Principal, routes: readonly DeclaredRoute[]): string[] {
  const out = new Set<string>();
  const only = p.key.actions ?? [];
  for (const r of routes) {
    if (denial(p, r, r.method, r.url) !== undefined) continue;
    const umbrella = only.length === 0 || only.includes(r.action!);
    if (umbrella) out.add(r.action!);
    for (const sub of r.subActions ?? []) if (umbrella || only.includes(sub)) out.add(sub);
  }
  return [...out].sort();
}
