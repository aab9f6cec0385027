// Owns /v1/join-tokens: one-time agent join tokens through the API (admin,
// fleet-wide) — mint (the token is in the answer to POST only, once, with
// the CA fingerprint agents pin), list (never a secret), revoke. Minting is
// enrollment/join-tokens.ts, shared with `bulkhead-controller token create`.
import type { FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { JoinTokenRecord, JoinTokenStatus, Store } from '../../store/store';
import { createJoinToken } from '../../enrollment/join-tokens';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageSchema, pageReply } from '../dto';
import { auditTarget } from '../../audit/audit-hooks';
import { emptyBodyIsEmptyObject } from './auth';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const StatusSchema = Type.Union([Type.Literal('active'), Type.Literal('used'), Type.Literal('expired'), Type.Literal('revoked')]);
/** Join tokens are for enrolling a host now, not for stockpiling. */
export const MAX_JOIN_TOKEN_TTL_MS = 30 * 24 * 3_600_000;

export const JoinTokenSchema = Type.Object({
  id: Type.String(),
  description: Type.String(),
  status: StatusSchema,
  createdAt: IsoDate,
  expiresAt: IsoDate,
  usedAt: Nullable(IsoDate),
  usedByAgent: Nullable(Type.String()),
  revokedAt: Nullable(IsoDate),
});
export type JoinTokenDto = Static<typeof JoinTokenSchema>;

export const JoinTokenCreatedSchema = Type.Composite([JoinTokenSchema, Type.Object({ token: Type.String(), caFingerprint: Type.String() })]);
export type JoinTokenCreatedDto = Static<typeof JoinTokenCreatedSchema>;

export const JoinTokenPageSchema = PageSchema(JoinTokenSchema);
export type JoinTokenPageDto = Static<typeof JoinTokenPageSchema>;

export const JoinTokenCreateSchema = Type.Object(
  {
    /** Default "15m"; at most 30 days. */
    ttl: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type JoinTokenCreateBody = Static<typeof JoinTokenCreateSchema>;

export const JoinTokenListQuerySchema = Type.Object(
  {
    status: Type.Optional(StatusSchema),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
  },
  { additionalProperties: false },
);
export type JoinTokenListQuery = Static<typeof JoinTokenListQuerySchema>;

const JoinTokenParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
type JoinTokenParams = Static<typeof JoinTokenParamsSchema>;

export function registerJoinTokenRoutes(app: FastifyInstance, opts: { store: Store; now: () => Date; caFingerprint: string | (() => string) | undefined }): void {
  const { store, now } = opts;

  app.post<{ Body: JoinTokenCreateBody }>(
    '/join-tokens',
    {
      config: { role: 'admin', fleetWide: true, action: 'join-tokens.create' },
      preValidation: [emptyBodyIsEmptyObject, strictInput({ body: JoinTokenCreateSchema })],
      schema: { body: JoinTokenCreateSchema, response: { 201: JoinTokenCreatedSchema } },
    },
    async (req, reply): Promise<JoinTokenCreatedDto> => {
      if (opts.caFingerprint === undefined) throw new BulkheadError('BK_ERR_NOT_READY', 'this API server was started without the CA (no join tokens)');
      let ttlMs: number;
      try {
        ttlMs = parseDuration(req.body.ttl ?? '15m', 'ttl');
      } catch (e) {
        throw new BulkheadError('BK_ERR_BAD_REQUEST', (e as Error).message);
      }
      if (!(ttlMs >= 1000 && ttlMs <= MAX_JOIN_TOKEN_TTL_MS)) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'ttl must be between 1s and 30d');
      const at = now();
      const { token, record } = await createJoinToken(store, ttlMs, at, req.body.description ?? '');
      auditTarget(req, { joinTokenId: record.id });
      reply.code(201).header('location', `/v1/join-tokens/${record.id}`);
      return { ...toJoinTokenDto(record, at), token, caFingerprint: typeof opts.caFingerprint === 'function' ? opts.caFingerprint() : opts.caFingerprint };
    },
  );

  app.get<{ Querystring: JoinTokenListQuery }>(
    '/join-tokens',
    { config: { role: 'admin', fleetWide: true }, preValidation: strictInput({ querystring: JoinTokenListQuerySchema }), schema: { querystring: JoinTokenListQuerySchema, response: { 200: JoinTokenPageSchema } } },
    async (req): Promise<JoinTokenPageDto> => {
      const q = req.query;
      const at = now();
      const rows = await store.listJoinTokens({ status: q.status as JoinTokenStatus | undefined, now: at, limit: q.limit + 1, offset: q.offset });
      return pageReply(rows.slice(0, q.limit).map((r) => toJoinTokenDto(r, at)), rows.length, q);
    },
  );

  app.delete<{ Params: JoinTokenParams }>(
    '/join-tokens/:id',
    { config: { role: 'admin', fleetWide: true, action: 'join-tokens.revoke' }, schema: { params: JoinTokenParamsSchema, response: { 200: JoinTokenSchema } } },
    async (req): Promise<JoinTokenDto> => {
      const at = now();
      const rec = await store.getJoinToken(req.params.id);
      if (!rec) throw new BulkheadError('BK_ERR_NOT_FOUND', `join token "${req.params.id}" not found`);
      if (rec.usedAt !== null) {
        throw new BulkheadError('BK_ERR_CONFLICT', `join token ${rec.id} was already used by ${rec.usedByAgent ?? 'an agent'}; revoke that agent instead (POST /v1/agents/${rec.usedByAgent ?? ':id'}/revoke)`);
      }
      if (rec.revokedAt === null) await store.revokeJoinToken(rec.id, at);
      return toJoinTokenDto((await store.getJoinToken(rec.id)) ?? rec, at);
    },
  );
}

export function joinTokenStatus(t: JoinTokenRecord, now: Date): JoinTokenDto['status'] {
  if (t.revokedAt !== null) return 'revoked';
  if (t.usedAt !== null) return 'used';
  if (t.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'active';
}

export function toJoinTokenDto(t: JoinTokenRecord, now: Date): JoinTokenDto {
  return {
    id: t.id,
    description: t.description,
    status: joinTokenStatus(t, now),
    createdAt: t.createdAt.toISOString(),
    expiresAt: t.expiresAt.toISOString(),
    usedAt: t.usedAt?.toISOString() ?? null,
    usedByAgent: t.usedByAgent,
    revokedAt: t.revokedAt?.toISOString() ?? null,
  };
}
