// Owns the wire shapes of /v1/webhooks, /v1/deliveries and /v1/alerts:
// TypeBox schemas (fastify validates requests and serializes responses
// through them, so a field not listed — the signing secret above all — can
// never leak out of a GET) plus record → JSON mappers. Same conventions as
// api/dto.ts: camelCase, ISO 8601 times.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { DeliveryAttemptRecord, DeliveryRecord, EndpointStats, WebhookEndpointRecord } from './alert-store';
import { ALERT_TYPES, SEVERITIES, type AlertRecord } from './alert-types';
import { alertPayload } from './payload';
import { PageSchema } from '../api/dto';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Severity = Type.Union(SEVERITIES.map((s) => Type.Literal(s)));
const AlertTypeT = Type.Union(ALERT_TYPES.map((s) => Type.Literal(s)));
const FilterType = Type.Union(ALERT_TYPES.filter((t) => t !== 'test').map((s) => Type.Literal(s)));
const Format = Type.Union([Type.Literal('json'), Type.Literal('slack')]);
const DeliveryStatusT = Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('dead')]);

export const MAX_PAGE_SIZE = 1000;
export const DEFAULT_PAGE_SIZE = 100;

// ---- alerts -------------------------------------------------------------------

export const AlertSchema = Type.Object({
  id: Type.String(),
  type: AlertTypeT,
  severity: Severity,
  time: IsoDate,
  lastSeenAt: IsoDate,
  count: Type.Integer(),
  agentId: Nullable(Type.String()),
  host: Nullable(Type.String()),
  containerId: Nullable(Type.String()),
  containerName: Nullable(Type.String()),
  image: Nullable(Type.String()),
  project: Nullable(Type.String()),
  ruleId: Nullable(Type.String()),
  action: Nullable(Type.String()),
  result: Nullable(Type.String()),
  message: Type.String(),
});
export type AlertDto = Static<typeof AlertSchema>;

export const AlertPageSchema = PageSchema(AlertSchema);
export type AlertPageDto = Static<typeof AlertPageSchema>;

export const AlertListQuerySchema = Type.Object(
  {
    /** Repeatable; any of them. */
    type: Type.Optional(Type.Array(AlertTypeT, { maxItems: 16 })),
    /** At least this severity. */
    severity: Type.Optional(Severity),
    /** ISO 8601 time, or a duration back from now ("15m", "24h", "7d"). */
    since: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    agent: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    /** Container id prefix or name. */
    container: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    project: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
  },
  { additionalProperties: false },
);
export type AlertListQuery = Static<typeof AlertListQuerySchema>;

export function toAlertDto(a: AlertRecord): AlertDto {
  return alertPayload(a) as AlertDto;
}

// ---- webhooks -------------------------------------------------------------------

export const WebhookStatsSchema = Type.Object({
  pending: Type.Integer(),
  delivered: Type.Integer(),
  dead: Type.Integer(),
});

export const WebhookSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  /** With credentials, query values and Slack's token path redacted. */
  url: Type.String(),
  format: Format,
  minSeverity: Severity,
  types: Type.Array(AlertTypeT),
  projects: Type.Array(Type.String()),
  /** Names only: values may be credentials. */
  headerNames: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  allowUnsafeTarget: Type.Boolean(),
  disabledReason: Nullable(Type.String()),
  /** While set and in the future, deliveries carry a second signature with the previous secret. */
  previousSecretExpiresAt: Nullable(IsoDate),
  createdAt: IsoDate,
  updatedAt: IsoDate,
  stats: WebhookStatsSchema,
});
export type WebhookDto = Static<typeof WebhookSchema>;

export const WebhookListSchema = Type.Object({ items: Type.Array(WebhookSchema) });
export type WebhookListDto = Static<typeof WebhookListSchema>;

/** POST /v1/webhooks and rotate-secret: the endpoint plus its secret, shown this once. */
export const WebhookWithSecretSchema = Type.Composite([WebhookSchema, Type.Object({ secret: Type.String() })]);
export type WebhookWithSecretDto = Static<typeof WebhookWithSecretSchema>;

const HeadersBody = Type.Record(Type.String({ minLength: 1, maxLength: 100 }), Type.String({ maxLength: 4096 }), { maxProperties: 20 });

export const WebhookCreateSchema = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    format: Type.Optional(Format),
    minSeverity: Type.Optional(Severity),
    types: Type.Optional(Type.Array(FilterType, { maxItems: 16 })),
    projects: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 100 })),
    secret: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    headers: Type.Optional(HeadersBody),
    enabled: Type.Optional(Type.Boolean()),
    allowUnsafeTarget: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type WebhookCreateBody = Static<typeof WebhookCreateSchema>;

export const WebhookPatchSchema = Type.Object(
  {
    url: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    format: Type.Optional(Format),
    minSeverity: Type.Optional(Severity),
    types: Type.Optional(Type.Array(FilterType, { maxItems: 16 })),
    projects: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 100 })),
    headers: Type.Optional(HeadersBody),
    enabled: Type.Optional(Type.Boolean()),
    allowUnsafeTarget: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type WebhookPatchBody = Static<typeof WebhookPatchSchema>;

export const RotateSecretSchema = Type.Object(
  {
    /** "whsec_…"; generated when absent. */
    secret: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    /** How long the previous secret keeps signing: a duration ("24h", "0s"). Default 24h. */
    grace: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  },
  { additionalProperties: false },
);
export type RotateSecretBody = Static<typeof RotateSecretSchema>;

export const WebhookTestSchema = Type.Object(
  {
    /** Wait for the first attempt's outcome (up to the delivery timeout + 5 s). Default false. */
    wait: Type.Optional(Type.Boolean()),
    message: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
  },
  { additionalProperties: false },
);
export type WebhookTestBody = Static<typeof WebhookTestSchema>;

export const IdParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) });
export type IdParams = Static<typeof IdParamsSchema>;

/** Password, query values and (for Slack) the secret token path are credentials: never echoed. */
export function redactUrl(raw: string, format: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return '[invalid]';
  }
  if (u.password !== '') u.password = 'redacted';
  for (const k of [...new Set(u.searchParams.keys())]) u.searchParams.set(k, 'redacted');
  const segments = u.pathname.split('/');
  // hooks.slack.com/services/T…/B…/<token>: the last segment is the secret.
  if (format === 'slack' || /(^|\.)slack\.com$/i.test(u.hostname)) {
    if (segments.length > 2) segments[segments.length - 1] = 'redacted';
    u.pathname = segments.join('/');
  }
  return u.href;
}

export function toWebhookDto(e: WebhookEndpointRecord, stats?: EndpointStats): WebhookDto {
  return {
    id: e.id,
    name: e.name,
    url: redactUrl(e.url, e.format),
    format: e.format,
    minSeverity: e.minSeverity,
    types: e.types,
    projects: e.projects,
    headerNames: Object.keys(e.headers),
    enabled: e.enabled,
    allowUnsafeTarget: e.allowUnsafeTarget,
    disabledReason: e.disabledReason,
    previousSecretExpiresAt: e.previousSecret !== null && e.previousSecretExpiresAt !== null ? e.previousSecretExpiresAt.toISOString() : null,
    createdAt: e.createdAt.toISOString(),
    updatedAt: e.updatedAt.toISOString(),
    stats: stats ?? { pending: 0, delivered: 0, dead: 0 },
  };
}

// ---- deliveries -------------------------------------------------------------------

export const DeliveryAttemptSchema = Type.Object({
  attempt: Type.Integer(),
  at: IsoDate,
  statusCode: Nullable(Type.Integer()),
  latencyMs: Type.Integer(),
  error: Nullable(Type.String()),
  outcome: Type.Union([Type.Literal('delivered'), Type.Literal('retry'), Type.Literal('failed'), Type.Literal('gone')]),
  nextAttemptAt: Nullable(IsoDate),
});
export type DeliveryAttemptDto = Static<typeof DeliveryAttemptSchema>;

export const DeliverySchema = Type.Object({
  id: Type.String(),
  webhookId: Type.String(),
  alertId: Type.String(),
  alertType: Nullable(Type.String()),
  status: DeliveryStatusT,
  attempts: Type.Integer(),
  nextAttemptAt: Nullable(IsoDate),
  createdAt: IsoDate,
  deliveredAt: Nullable(IsoDate),
  lastStatusCode: Nullable(Type.Integer()),
  lastError: Nullable(Type.String()),
  deadReason: Nullable(Type.String()),
  attemptLog: Type.Array(DeliveryAttemptSchema),
});
export type DeliveryDto = Static<typeof DeliverySchema>;

export const DeliveryPageSchema = PageSchema(DeliverySchema);
export type DeliveryPageDto = Static<typeof DeliveryPageSchema>;

export const DeliveryListQuerySchema = Type.Object(
  {
    status: Type.Optional(DeliveryStatusT),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: 50 }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
  },
  { additionalProperties: false },
);
export type DeliveryListQuery = Static<typeof DeliveryListQuerySchema>;

export function toDeliveryDto(d: DeliveryRecord, attempts: DeliveryAttemptRecord[], alertType: string | null): DeliveryDto {
  return {
    id: d.id,
    webhookId: d.endpointId,
    alertId: d.alertId,
    alertType,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: d.status === 'pending' ? d.nextAttemptAt.toISOString() : null,
    createdAt: d.createdAt.toISOString(),
    deliveredAt: d.deliveredAt === null ? null : d.deliveredAt.toISOString(),
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    deadReason: d.deadReason,
    attemptLog: attempts.map((a) => ({
      attempt: a.attempt,
      at: a.at.toISOString(),
      statusCode: a.statusCode,
      latencyMs: Math.round(a.latencyMs),
      error: a.error,
      outcome: a.outcome,
      nextAttemptAt: a.nextAttemptAt === null ? null : a.nextAttemptAt.toISOString(),
    })),
  };
}
