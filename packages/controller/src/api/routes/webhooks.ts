// Owns /v1/webhooks and /v1/deliveries: webhook endpoints (create, read,
// update, delete, rotate the signing secret, send a test), their delivery
// log, and redelivery of dead-lettered deliveries. Secrets appear only in
// the answers to create and rotate-secret; every GET goes through
// WebhookSchema, which has no secret field. Changing anything needs the
// operator role (route config, enforced by src/auth) and a credential not
// limited to projects: a webhook can send every project's alerts anywhere.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { Alerting } from '../../alerts/alerting';
import {
  DeliveryListQuerySchema, DeliveryPageSchema, DeliverySchema, IdParamsSchema, RotateSecretSchema, WebhookCreateSchema, WebhookListSchema,
  WebhookPatchSchema, WebhookSchema, WebhookTestSchema, WebhookWithSecretSchema, toDeliveryDto, toWebhookDto,
  type DeliveryDto, type DeliveryListQuery, type DeliveryPageDto, type IdParams, type RotateSecretBody, type WebhookCreateBody,
  type WebhookDto, type WebhookListDto, type WebhookPatchBody, type WebhookTestBody, type WebhookWithSecretDto,
} from '../../alerts/alert-dto';
import type { DeliveryRecord } from '../../alerts/alert-store';
import { pageReply } from '../dto';
import { strictInput } from './strict-input';

export interface AlertRoutesOptions {
  /** Undefined when the controller runs without alerting: the routes answer 503. */
  alerting: Alerting | undefined;
}

export function alertingOf(opts: AlertRoutesOptions): Alerting {
  if (!opts.alerting) throw new BulkheadError('BK_ERR_NOT_READY', 'alerting is not configured on this controller');
  return opts.alerting;
}

/**
 * Mutations need an admin or operator key. Superseded by route roles
 * (`config: { role: 'operator' }`, enforced before any handler runs); kept
 * as a second check for handlers that still call it.
 */
export function requireWriter(req: FastifyRequest): void {
  const role = req.apiKey?.role;
  if (role !== 'admin' && role !== 'operator') {
    throw new BulkheadError('BK_ERR_FORBIDDEN', `this request needs an admin or operator API key (this key's role is ${role ?? 'unknown'})`);
  }
}

export function registerWebhookRoutes(app: FastifyInstance, opts: AlertRoutesOptions): void {
  const withStats = async (a: Alerting, ids: string[]) => a.store.endpointStats(ids);

  const writer = { role: 'operator', fleetWide: true } as const;

  app.get('/webhooks', { config: { role: 'viewer' }, schema: { response: { 200: WebhookListSchema } } }, async (): Promise<WebhookListDto> => {
    const a = alertingOf(opts);
    const list = await a.webhooks.list();
    const stats = await withStats(a, list.map((e) => e.id));
    return { items: list.map((e) => toWebhookDto(e, stats.get(e.id))) };
  });

  app.post<{ Body: WebhookCreateBody }>(
    '/webhooks',
    { config: { ...writer, action: 'webhooks.create' }, preValidation: strictInput({ body: WebhookCreateSchema }), schema: { body: WebhookCreateSchema, response: { 201: WebhookWithSecretSchema } } },
    async (req, reply): Promise<WebhookWithSecretDto> => {
      const a = alertingOf(opts);
      const { endpoint, secret } = await a.webhooks.create(req.body);
      reply.code(201).header('location', `/v1/webhooks/${endpoint.id}`);
      return { ...toWebhookDto(endpoint), secret };
    },
  );

  app.get<{ Params: IdParams }>(
    '/webhooks/:id',
    { config: { role: 'viewer' }, schema: { params: IdParamsSchema, response: { 200: WebhookSchema } } },
    async (req): Promise<WebhookDto> => {
      const a = alertingOf(opts);
      const e = await a.webhooks.get(req.params.id);
      return toWebhookDto(e, (await withStats(a, [e.id])).get(e.id));
    },
  );

  app.patch<{ Params: IdParams; Body: WebhookPatchBody }>(
    '/webhooks/:id',
    { config: { ...writer, action: 'webhooks.update' }, preValidation: strictInput({ body: WebhookPatchSchema }), schema: { params: IdParamsSchema, body: WebhookPatchSchema, response: { 200: WebhookSchema } } },
    async (req): Promise<WebhookDto> => {
      const a = alertingOf(opts);
      const e = await a.webhooks.update(req.params.id, req.body);
      return toWebhookDto(e, (await withStats(a, [e.id])).get(e.id));
    },
  );

  app.delete<{ Params: IdParams }>('/webhooks/:id', { config: { ...writer, action: 'webhooks.delete' }, schema: { params: IdParamsSchema } }, async (req, reply) => {
    await alertingOf(opts).webhooks.remove(req.params.id);
    return reply.code(204).send();
  });

  app.post<{ Params: IdParams; Body: RotateSecretBody }>(
    '/webhooks/:id/rotate-secret',
    {
      config: { ...writer, action: 'webhooks.rotate-secret' },
      preValidation: [emptyBodyIsEmptyObject, strictInput({ body: RotateSecretSchema })],
      schema: { params: IdParamsSchema, body: RotateSecretSchema, response: { 200: WebhookWithSecretSchema } },
    },
    async (req): Promise<WebhookWithSecretDto> => {
      const a = alertingOf(opts);
      const body = req.body;
      const graceMs = body.grace !== undefined ? parseGrace(body.grace) : undefined;
      const { endpoint, secret } = await a.webhooks.rotateSecret(req.params.id, { secret: body.secret, graceMs });
      return { ...toWebhookDto(endpoint, (await withStats(a, [endpoint.id])).get(endpoint.id)), secret };
    },
  );

  app.post<{ Params: IdParams; Body: WebhookTestBody }>(
    '/webhooks/:id/test',
    {
      config: { ...writer, action: 'webhooks.test' },
      preValidation: [emptyBodyIsEmptyObject, strictInput({ body: WebhookTestSchema })],
      schema: { params: IdParamsSchema, body: WebhookTestSchema, response: { 200: DeliverySchema, 202: DeliverySchema } },
    },
    async (req, reply): Promise<DeliveryDto> => {
      const a = alertingOf(opts);
      const body = req.body;
      let d = await a.webhooks.sendTest(req.params.id, body.message);
      if (body.wait === true) {
        // Bounded: the first attempt ends within the delivery timeout.
        const deadline = Date.now() + a.options.timeoutMs + 5000;
        while (d.attempts === 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          d = (await a.store.getDelivery(d.id)) ?? d;
        }
      }
      reply.code(d.attempts > 0 ? 200 : 202);
      return deliveryDto(a, d);
    },
  );

  app.get<{ Params: IdParams; Querystring: DeliveryListQuery }>(
    '/webhooks/:id/deliveries',
    { config: { role: 'viewer' }, preValidation: strictInput({ querystring: DeliveryListQuerySchema }), schema: { params: IdParamsSchema, querystring: DeliveryListQuerySchema, response: { 200: DeliveryPageSchema } } },
    async (req): Promise<DeliveryPageDto> => {
      const a = alertingOf(opts);
      const e = await a.webhooks.get(req.params.id);
      const q = req.query;
      const rows = await a.store.listDeliveries({ endpointId: e.id, status: q.status, limit: q.limit + 1, offset: q.offset });
      return pageReply(await deliveryDtos(a, rows.slice(0, q.limit)), rows.length, q);
    },
  );

  app.post<{ Params: IdParams }>(
    '/deliveries/:id/redeliver',
    { config: { ...writer, action: 'deliveries.redeliver' }, schema: { params: IdParamsSchema, response: { 202: DeliverySchema } } },
    async (req, reply): Promise<DeliveryDto> => {
      const a = alertingOf(opts);
      const d = await a.webhooks.redeliver(req.params.id);
      reply.code(202);
      return deliveryDto(a, d);
    },
  );
}

/** rotate-secret and test take an optional body: a bare POST means {}. */
async function emptyBodyIsEmptyObject(req: FastifyRequest): Promise<void> {
  if (req.body === undefined || req.body === null) req.body = {};
}

function parseGrace(s: string): number {
  try {
    return parseDuration(s, 'grace');
  } catch (e) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', (e as Error).message);
  }
}

async function deliveryDto(a: Alerting, d: DeliveryRecord): Promise<DeliveryDto> {
  return (await deliveryDtos(a, [d]))[0]!;
}

async function deliveryDtos(a: Alerting, ds: DeliveryRecord[]): Promise<DeliveryDto[]> {
  const attempts = await a.store.listAttempts(ds.map((d) => d.id));
  const byDelivery = new Map<string, typeof attempts>();
  for (const at of attempts) {
    const list = byDelivery.get(at.deliveryId) ?? [];
    list.push(at);
    byDelivery.set(at.deliveryId, list);
  }
  const types = new Map<string, string | null>();
  for (const id of new Set(ds.map((d) => d.alertId))) types.set(id, (await a.store.getAlert(id))?.type ?? null);
  return ds.map((d) => toDeliveryDto(d, byDelivery.get(d.id) ?? [], types.get(d.alertId) ?? null));
}
