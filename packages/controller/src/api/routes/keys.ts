// Owns /v1/keys: API keys — list, show, mint (the secret is in the answer
// to POST only, once), revoke. Only sha256(secret) is stored: the secret is
// 256 random bits, so a fast hash is as good as bcrypt/argon2 here (their
// slowness protects guessable passwords; nobody can enumerate 2^256
// secrets), and every request can afford to check it. Delegation: a new
// key never exceeds its minter's role, projects or expiry (auth/delegation.ts).
// A project-scoped admin sees and revokes only keys within its projects.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { ApiKeyRecord, Store } from '../../store/store';
import { generateApiKey } from '../api-keys';
import { checkGrant } from '../../auth/delegation';
import { projectsWithin } from '../../auth/project-scope';
import { ROLES, roleAtLeast, type DeclaredRoute } from '../../auth/roles';
import { auditTarget } from '../../audit/audit-hooks';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));
/** Bounded so a token carrying the list stays well under Node's 16 KiB header limit. */
export const ProjectListSchema = Type.Array(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f]+$' }), { maxItems: 50 });

export const ApiKeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  /** Empty = every project. */
  projects: Type.Array(Type.String()),
  status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
  createdAt: IsoDate,
  /** Key id of the minting key, or "init". */
  createdBy: Type.String(),
  /** Route actions the key is limited to (e.g. "scans.upload"); empty = every route its role allows. */
  actions: Type.Array(Type.String()),
  expiresAt: Nullable(IsoDate),
  revokedAt: Nullable(IsoDate),
  lastUsedAt: Nullable(IsoDate),
});
export type ApiKeyDto = Static<typeof ApiKeySchema>;

export const ApiKeyWithSecretSchema = Type.Composite([ApiKeySchema, Type.Object({ key: Type.String() })]);
export type ApiKeyWithSecretDto = Static<typeof ApiKeyWithSecretSchema>;

export const ApiKeyListSchema = Type.Object({ items: Type.Array(ApiKeySchema) });
export type ApiKeyListDto = Static<typeof ApiKeyListSchema>;

export const ApiKeyCreateSchema = Type.Object(
  {
    // Shown in tables and logs: no control characters (CR/LF would forge lines).
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]+$' }),
    role: RoleSchema,
    projects: Type.Optional(ProjectListSchema),
    /** Limit the key to these route actions (e.g. ["scans.upload"] for a CI scan uploader); absent = not limited. */
    actions: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100 })),
    /** A duration from now ("30d", "12h"). */
    expiresIn: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    expiresAt: Type.Optional(IsoDate),
  },
  { additionalProperties: false },
);
export type ApiKeyCreateBody = Static<typeof ApiKeyCreateSchema>;

const KeyParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
type KeyParams = Static<typeof KeyParamsSchema>;

/** `onRevoked`: called with the key's id once it is revoked (its open event streams end at once). */
export function registerKeyRoutes(app: FastifyInstance, opts: { store: Store; now: () => Date; routes: () => readonly DeclaredRoute[]; onRevoked?: (keyId: string) => void }): void {
  const { store, now } = opts;

  app.get('/keys', { config: { role: 'admin' }, schema: { response: { 200: ApiKeyListSchema } } }, async (req): Promise<ApiKeyListDto> => {
    const keys = await store.listApiKeys();
    const at = now();
    return { items: keys.filter((k) => visible(req, k)).map((k) => toApiKeyDto(k, at)) };
  });

  app.get<{ Params: KeyParams }>(
    '/keys/:id',
    { config: { role: 'admin' }, schema: { params: KeyParamsSchema, response: { 200: ApiKeySchema } } },
    async (req): Promise<ApiKeyDto> => toApiKeyDto(await visibleKey(store, req, req.params.id), now()),
  );

  app.post<{ Body: ApiKeyCreateBody }>(
    '/keys',
    { config: { role: 'admin', action: 'keys.create' }, preValidation: strictInput({ body: ApiKeyCreateSchema }), schema: { body: ApiKeyCreateSchema, response: { 201: ApiKeyWithSecretSchema } } },
    async (req, reply): Promise<ApiKeyWithSecretDto> => {
      const b = req.body;
      const at = now();
      const expiresAt = expiryOf(b, at);
      const projects = [...new Set(b.projects ?? [])];
      const actions = [...new Set(b.actions ?? [])];
      checkActions(actions, b.role, opts.routes());
      checkGrant(req.auth!, { role: b.role, projects, expiresAt, actions }, 'a new key', opts.routes());
      const { record, plaintext } = generateApiKey(b.name, b.role, { now: at, expiresAt, projects, createdBy: req.auth!.keyId, actions });
      await store.insertApiKey(record);
      auditTarget(req, { keyId: record.id });
      reply.code(201).header('location', `/v1/keys/${record.id}`);
      return { ...toApiKeyDto(record, at), key: plaintext };
    },
  );

  app.delete<{ Params: KeyParams }>(
    '/keys/:id',
    { config: { role: 'admin', action: 'keys.revoke' }, schema: { params: KeyParamsSchema, response: { 200: ApiKeySchema } } },
    async (req): Promise<ApiKeyDto> => {
      const at = now();
      const key = await visibleKey(store, req, req.params.id);
      // Already revoked: nothing changes, the answer is the same (idempotent).
      if (key.revokedAt === null) await store.revokeApiKey(key.id, at);
      req.log.info({ keyId: key.id, by: req.auth?.keyId }, 'API key revoked');
      opts.onRevoked?.(key.id);
      return toApiKeyDto((await store.getApiKey(key.id)) ?? key, at);
    },
  );
}

/** A scoped admin sees keys within its own projects only; unscoped keys (every project) stay hidden from it. */
function visible(req: FastifyRequest, k: ApiKeyRecord): boolean {
  return projectsWithin(k.projects, req.auth?.projects ?? []);
}

async function visibleKey(store: Store, req: FastifyRequest, id: string): Promise<ApiKeyRecord> {
  const k = await store.getApiKey(id);
  if (!k || !visible(req, k)) throw new BulkheadError('BK_ERR_NOT_FOUND', `API key "${id}" not found`);
  return k;
}

/** Each action must be one a /v1 route declares, and one the key's role may call: a limit that grants nothing is a mistake. */
function checkActions(actions: readonly string[], role: ApiKeyDto['role'], routes: readonly DeclaredRoute[]): void {
  for (const a of actions) {
    const r = routes.filter((x) => x.action === a || (x.subActions ?? []).includes(a));
    if (r.length === 0) {
      const known = [...new Set(routes.flatMap((x) => [x.action, ...(x.subActions ?? [])]))].sort();
      throw new BulkheadError('BK_ERR_BAD_REQUEST', `unknown action "${a}"; actions are: ${known.join(', ')}`);
    }
    if (!r.some((x) => roleAtLeast(role, x.role))) {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', `action "${a}" needs the ${r[0]!.role} role or higher; the key's role is ${role}`);
    }
  }
}

function expiryOf(b: ApiKeyCreateBody, now: Date): Date | null {
  if (b.expiresIn !== undefined && b.expiresAt !== undefined) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'give expiresIn or expiresAt, not both');
  let at: Date | null = null;
  if (b.expiresIn !== undefined) {
    try {
      at = new Date(now.getTime() + parseDuration(b.expiresIn, 'expiresIn'));
    } catch (e) {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', (e as Error).message);
    }
  } else if (b.expiresAt !== undefined) {
    at = new Date(b.expiresAt);
  }
  if (at !== null && at.getTime() <= now.getTime()) throw new BulkheadError('BK_ERR_BAD_REQUEST', `the key would expire in the past (${at.toISOString()})`);
  return at;
}

export function keyStatus(k: ApiKeyRecord, now: Date): ApiKeyDto['status'] {
  if (k.revokedAt !== null) return 'revoked';
  if (k.expiresAt !== null && k.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'active';
}

export function toApiKeyDto(k: ApiKeyRecord, now: Date): ApiKeyDto {
  return {
    id: k.id,
    name: k.name,
    role: k.role,
    projects: [...k.projects],
    status: keyStatus(k, now),
    createdAt: k.createdAt.toISOString(),
    createdBy: k.createdBy,
    actions: [...(k.actions ?? [])],
    expiresAt: k.expiresAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
  };
}
