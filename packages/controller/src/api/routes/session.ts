// Owns /v1/session: browser sessions for the web console. POST logs in with an API key
// (as `key` in the body, or the Authorization header) and answers with the
// `__Host-bulkhead_session` cookie and the session's CSRF token; GET tells a
// cookie-authenticated caller about its session (and the CSRF token again, for a reloaded
// page); DELETE logs out, ending the session server-side. Every other /v1 route accepts
// the cookie exactly like the key (src/auth/api-security.ts); the key itself never
// reaches the browser's storage.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import { ROLES, type DeclaredRoute } from '../../auth/roles';
import { allowedActions } from '../../auth/api-security';
import type { AuthOptions } from '../../auth/auth-options';
import type { SessionStore } from '../../auth/session-store';
import type { Principal } from '../../auth/principal';
import { CSRF_HEADER, clearedSessionCookie, csrfToken, hashSessionId, newSessionId, publicSessionId, sessionCookie } from '../../auth/sessions';
import { auditTarget } from '../../audit/audit-hooks';
import { emptyBodyIsEmptyObject } from './auth';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });
const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));

export const SessionLoginSchema = Type.Object(
  {
    /** The API key ("bk_ak_…_…"); leave out to send it as "Authorization: Bearer <key>". */
    key: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  },
  { additionalProperties: false },
);
export type SessionLoginBody = Static<typeof SessionLoginSchema>;

export const SessionSchema = Type.Object({
  sessionId: Type.String(),
  keyId: Type.String(),
  keyName: Type.String(),
  role: RoleSchema,
  projects: Type.Array(Type.String()),
  /** Action names the session's key is limited to (`keys create --only`); empty = every action its role allows. */
  actions: Type.Array(Type.String()),
  /**
   * Every action the session may perform (route actions and manual container actions such as
   * "containers.pause", as in the audit trail), after its role, its key's action limits and its
   * project scope: what the console shows buttons for. The server still checks each request.
   */
  allowedActions: Type.Array(Type.String()),
  /** Send as the X-Bulkhead-CSRF header on every POST, PUT, PATCH and DELETE made with the cookie. */
  csrfToken: Type.String(),
  csrfHeader: Type.Literal(CSRF_HEADER),
  createdAt: IsoDate,
  /** The absolute end of the session. */
  expiresAt: IsoDate,
  /** The session ends after this many seconds without a request. */
  idleTimeoutSeconds: Type.Integer(),
});
export type SessionDto = Static<typeof SessionSchema>;

export const LogoutSchema = Type.Object({ sessionId: Type.String(), loggedOut: Type.Literal(true) });

/** `onLogout`: called with the session's id hash once it is revoked (its open event streams end at once). */
export function registerSessionRoutes(
  app: FastifyInstance,
  opts: { auth: AuthOptions; sessions: SessionStore | undefined; now: () => Date; routes: () => readonly DeclaredRoute[]; onLogout?: (idHash: string) => void },
): void {
  const { auth, now } = opts;
  const store = (): SessionStore => {
    if (!opts.sessions) throw new BulkheadError('BK_ERR_NOT_READY', 'this controller keeps no sessions');
    return opts.sessions;
  };
  const dto = (p: Principal, id: string, createdAt: Date, expiresAt: Date): SessionDto => ({
    sessionId: publicSessionId(hashSessionId(id)),
    keyId: p.keyId,
    keyName: p.keyName,
    role: p.role,
    projects: p.projects,
    actions: [...(p.key.actions ?? [])],
    allowedActions: allowedActions(p, opts.routes()),
    csrfToken: csrfToken(auth.tokenSecret, id),
    csrfHeader: CSRF_HEADER,
    createdAt: createdAt.toISOString(),
    expiresAt: expiresAt.toISOString(),
    idleTimeoutSeconds: Math.round(auth.sessionIdleMs / 1000),
  });

  app.post<{ Body: SessionLoginBody }>(
    '/session',
    {
      config: { role: 'viewer', action: 'session.login', credentialInBody: true, bodyOptional: true },
      preValidation: [emptyBodyIsEmptyObject, strictInput({ body: SessionLoginSchema })],
      schema: { body: SessionLoginSchema, response: { 200: SessionSchema } },
    },
    async (req, reply): Promise<SessionDto> => {
      const p = req.auth!;
      if (p.kind !== 'key') throw new BulkheadError('BK_ERR_FORBIDDEN', 'log in with an API key; a token cannot open a session');
      const at = now();
      // Never past the key's own expiry.
      let lifetime = auth.sessionMaxLifetimeMs;
      if (p.keyExpiresAt !== null) lifetime = Math.min(lifetime, p.keyExpiresAt.getTime() - at.getTime());
      const expiresAt = new Date(at.getTime() + lifetime);
      // Always a new id: a cookie planted before login (session fixation) is never promoted.
      const id = newSessionId();
      const idHash = hashSessionId(id);
      await store().insertSession({ idHash, keyId: p.keyId, createdAt: at, lastUsedAt: at, expiresAt, revokedAt: null, clientIp: req.ip });
      // At most sessionMaxPerKey live sessions per key: the oldest are logged out (their streams end too).
      for (const old of await store().capSessions(p.keyId, auth.sessionMaxPerKey, at)) {
        req.log.info({ sessionId: publicSessionId(old), keyId: p.keyId, max: auth.sessionMaxPerKey }, 'session logged out: its key opened more sessions than allowed');
        opts.onLogout?.(old);
      }
      auditTarget(req, { sessionId: publicSessionId(idHash), expiresAt: expiresAt.toISOString() });
      reply.header('set-cookie', sessionCookie(id, lifetime));
      return dto(p, id, at, expiresAt);
    },
  );

  app.get('/session', { config: { role: 'viewer' }, schema: { response: { 200: SessionSchema } } }, async (req): Promise<SessionDto> => {
    const s = sessionOf(req);
    return dto(req.auth!, s.id, s.createdAt, s.expiresAt);
  });

  app.delete('/session', { config: { role: 'viewer', action: 'session.logout' }, schema: { response: { 200: LogoutSchema } } }, async (req, reply) => {
    const s = sessionOf(req);
    await store().revokeSession(s.idHash, now());
    opts.onLogout?.(s.idHash);
    reply.header('set-cookie', clearedSessionCookie());
    return { sessionId: s.publicId, loggedOut: true as const };
  });
}

function sessionOf(req: FastifyRequest): NonNullable<Principal['session']> {
  const s = req.auth?.session;
  if (!s) throw new BulkheadError('BK_ERR_NOT_FOUND', 'no session: this request was not authenticated by the session cookie (log in with POST /v1/session)');
  return s;
}
