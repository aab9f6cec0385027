// Owns /v1/auth: exchanging an API key for a short-lived bearer token
// (POST /v1/auth/token) and telling a caller who it is (GET /v1/auth/whoami).
// A token carries at most its key's rights — optionally fewer (a lower role,
// fewer projects) — and lives at most `tokenMaxTtlMs` and never past its key.
// Only an API key can be exchanged: a token cannot renew itself.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import { mintToken } from '../../auth/bearer-tokens';
import { checkGrant } from '../../auth/delegation';
import { ROLES, type DeclaredRoute } from '../../auth/roles';
import { allowedActions } from '../../auth/api-security';
import type { AuthOptions } from '../../auth/auth-options';
import { auditTarget } from '../../audit/audit-hooks';
import { ProjectListSchema } from './keys';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));

export const TokenRequestSchema = Type.Object(
  {
    /** Requested lifetime ("15m", "1h"); capped by the server's maximum and by the key's expiry. */
    ttl: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    /** A lower role than the key's. */
    role: Type.Optional(RoleSchema),
    /** Fewer projects than the key's. */
    projects: Type.Optional(ProjectListSchema),
  },
  { additionalProperties: false },
);
export type TokenRequestBody = Static<typeof TokenRequestSchema>;

export const TokenSchema = Type.Object({
  token: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresAt: IsoDate,
  keyId: Type.String(),
  keyName: Type.String(),
  role: RoleSchema,
  projects: Type.Array(Type.String()),
});
export type TokenDto = Static<typeof TokenSchema>;

export const WhoAmISchema = Type.Object({
  kind: Type.Union([Type.Literal('key'), Type.Literal('token'), Type.Literal('session')]),
  keyId: Type.String(),
  keyName: Type.String(),
  role: RoleSchema,
  projects: Type.Array(Type.String()),
  /** When this credential stops working (null = never). */
  expiresAt: Nullable(IsoDate),
  /** When the key behind it expires (null = never). */
  keyExpiresAt: Nullable(IsoDate),
  tokenId: Nullable(Type.String()),
  /** Action names the key is limited to (`keys create --only`); empty = every action its role allows. */
  actions: Type.Array(Type.String()),
  /** Every action this credential may perform after its role, action limits and project scope (as GET /v1/session says). */
  allowedActions: Type.Array(Type.String()),
});
export type WhoAmIDto = Static<typeof WhoAmISchema>;

export function registerAuthRoutes(app: FastifyInstance, opts: { auth: AuthOptions; now: () => Date; routes: () => readonly DeclaredRoute[] }): void {
  const { auth, now } = opts;

  app.post<{ Body: TokenRequestBody }>(
    '/auth/token',
    {
      config: { role: 'viewer', action: 'auth.token' },
      preValidation: [emptyBodyIsEmptyObject, strictInput({ body: TokenRequestSchema })],
      schema: { body: TokenRequestSchema, response: { 200: TokenSchema } },
    },
    async (req): Promise<TokenDto> => {
      const p = req.auth!;
      if (p.kind !== 'key') throw new BulkheadError('BK_ERR_FORBIDDEN', 'only an API key can be exchanged for a token; a token cannot renew itself');
      const b = req.body;
      const at = now();
      let ttlMs = auth.tokenDefaultTtlMs;
      if (b.ttl !== undefined) {
        try {
          ttlMs = parseDuration(b.ttl, 'ttl');
        } catch (e) {
          throw new BulkheadError('BK_ERR_BAD_REQUEST', (e as Error).message);
        }
        if (!(ttlMs >= 1000)) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'ttl must be at least 1s');
      }
      ttlMs = Math.min(ttlMs, auth.tokenMaxTtlMs);
      if (p.keyExpiresAt !== null) ttlMs = Math.min(ttlMs, p.keyExpiresAt.getTime() - at.getTime());
      const role = b.role ?? p.role;
      const projects = b.projects !== undefined ? [...new Set(b.projects)] : p.projects;
      // A token carries its key's action limits (authorize reads them from the key), whatever it asks.
      checkGrant(p, { role, projects, expiresAt: new Date(at.getTime() + ttlMs), actions: p.key.actions ?? [] }, 'a token');
      const { token, claims } = mintToken(auth.tokenSecret, { kid: p.keyId, role, projects, now: at, ttlMs });
      auditTarget(req, { issuedTokenId: claims.jti, expiresAt: new Date(claims.exp * 1000).toISOString() });
      return { token, tokenType: 'Bearer', expiresAt: new Date(claims.exp * 1000).toISOString(), keyId: p.keyId, keyName: p.keyName, role, projects };
    },
  );

  app.get('/auth/whoami', { config: { role: 'viewer' }, schema: { response: { 200: WhoAmISchema } } }, async (req): Promise<WhoAmIDto> => {
    const p = req.auth!;
    return {
      kind: p.kind,
      keyId: p.keyId,
      keyName: p.keyName,
      role: p.role,
      projects: p.projects,
      expiresAt: p.expiresAt?.toISOString() ?? null,
      keyExpiresAt: p.keyExpiresAt?.toISOString() ?? null,
      tokenId: p.tokenId,
      actions: [...(p.key.actions ?? [])],
      allowedActions: allowedActions(p, opts.routes()),
    };
  });
}

/** A bare POST (no body) means {}. */
export async function emptyBodyIsEmptyObject(req: FastifyRequest): Promise<void> {
  if (req.body === undefined || req.body === null) req.body = {};
}
