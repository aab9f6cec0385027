// Owns managing webhook endpoints: validation of URL, filters and headers,
// the SSRF check on save, signing secrets (generated, shown once, rotated
// with a grace period during which both sign), test deliveries and
// redelivery of dead-lettered ones. The routes and the CLI go through here.
import { BulkheadError, type Logger } from '@bulkhead/shared';
import type { AlertStore, DeliveryRecord, WebhookEndpointRecord, WebhookFormat } from './alert-store';
import { newDelivery } from './alert-service';
import { groupKeyOf, isAlertType, isSeverity, type AlertRecord, type AlertSeverity, type AlertType } from './alert-types';
import { newAlertId, newEndpointId } from './ids';
import { checkSecret, generateSecret } from './webhook-secret';
import { validateHeaderValue } from 'node:http';
import { checkTargetOnSave, parseWebhookUrl, systemResolver, type Resolver } from './webhook-target';
import type { WorkSignal } from './work-signal';

export interface WebhookInput {
  url: string;
  name?: string;
  format?: WebhookFormat;
  minSeverity?: AlertSeverity;
  types?: AlertType[];
  projects?: string[];
  /** "whsec_…"; generated when absent. */
  secret?: string;
  headers?: Record<string, string>;
  enabled?: boolean;
  allowUnsafeTarget?: boolean;
}

export type WebhookPatch = Partial<Omit<WebhookInput, 'secret'>>;

export interface WebhookServiceOptions {
  store: AlertStore;
  logger: Logger;
  signal?: WorkSignal;
  now?: () => Date;
  /** DNS for the save-time SSRF check. Default: the system resolver. */
  resolve?: Resolver;
}

/** Headers Bulkhead sets itself, or that would break HTTP framing. */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect',
  'webhook-id', 'webhook-timestamp', 'webhook-signature',
]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MAX_HEADERS = 20;
export const DEFAULT_ROTATION_GRACE_MS = 24 * 3_600_000;

export class WebhookService {
  private readonly store: AlertStore;
  private readonly now: () => Date;
  private readonly resolve: Resolver;

  constructor(private readonly opts: WebhookServiceOptions) {
    this.store = opts.store;
    this.now = opts.now ?? (() => new Date());
    this.resolve = opts.resolve ?? systemResolver;
  }

  async list(): Promise<WebhookEndpointRecord[]> {
    return this.store.listEndpoints();
  }

  async get(id: string): Promise<WebhookEndpointRecord> {
    const e = await this.store.getEndpoint(id);
    if (!e) throw new BulkheadError('BK_ERR_NOT_FOUND', `webhook "${id}" not found`);
    return e;
  }

  /** Creates an endpoint. `secret` is returned here and by rotateSecret() only. */
  async create(input: WebhookInput): Promise<{ endpoint: WebhookEndpointRecord; secret: string }> {
    const url = parseWebhookUrl(input.url);
    const allowUnsafeTarget = input.allowUnsafeTarget === true;
    await checkTargetOnSave(url, allowUnsafeTarget, this.resolve);
    const secret = input.secret !== undefined ? checkSecret(input.secret) : generateSecret();
    const now = this.now();
    const endpoint: WebhookEndpointRecord = {
      id: newEndpointId(),
      name: checkName(input.name ?? ''),
      url: url.href,
      format: checkFormat(input.format ?? 'json'),
      minSeverity: checkSeverity(input.minSeverity ?? 'info'),
      types: checkTypes(input.types ?? []),
      projects: checkProjects(input.projects ?? []),
      secret,
      previousSecret: null,
      previousSecretExpiresAt: null,
      headers: checkHeaders(input.headers ?? {}),
      enabled: input.enabled ?? true,
      allowUnsafeTarget,
      disabledReason: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.insertEndpoint(endpoint);
    this.opts.logger.info({ webhookId: endpoint.id, target: url.origin, format: endpoint.format }, 'webhook created');
    return { endpoint, secret };
  }

  async update(id: string, patch: WebhookPatch): Promise<WebhookEndpointRecord> {
    const cur = await this.get(id);
    const next: WebhookEndpointRecord = { ...cur, updatedAt: this.now() };
    if (patch.url !== undefined) next.url = parseWebhookUrl(patch.url).href;
    if (patch.allowUnsafeTarget !== undefined) next.allowUnsafeTarget = patch.allowUnsafeTarget;
    if (patch.url !== undefined || patch.allowUnsafeTarget === false) await checkTargetOnSave(new URL(next.url), next.allowUnsafeTarget, this.resolve);
    if (patch.name !== undefined) next.name = checkName(patch.name);
    if (patch.format !== undefined) next.format = checkFormat(patch.format);
    if (patch.minSeverity !== undefined) next.minSeverity = checkSeverity(patch.minSeverity);
    if (patch.types !== undefined) next.types = checkTypes(patch.types);
    if (patch.projects !== undefined) next.projects = checkProjects(patch.projects);
    if (patch.headers !== undefined) next.headers = checkHeaders(patch.headers);
    if (patch.enabled !== undefined) {
      next.enabled = patch.enabled;
      // Re-enabling clears why the controller had disabled it.
      if (patch.enabled) next.disabledReason = null;
    }
    await this.store.updateEndpoint(next);
    this.opts.logger.info({ webhookId: id, enabled: next.enabled }, 'webhook updated');
    // Re-enabled: its queued deliveries are due again.
    if (next.enabled && !cur.enabled) this.opts.signal?.notify();
    return next;
  }

  async remove(id: string): Promise<void> {
    if (!(await this.store.deleteEndpoint(id))) throw new BulkheadError('BK_ERR_NOT_FOUND', `webhook "${id}" not found`);
    this.opts.logger.info({ webhookId: id }, 'webhook removed');
  }

  /**
   * Replaces the signing secret. The old one keeps signing (a second
   * `v1,` signature) for `graceMs` so receivers can switch without losing
   * messages; 0 drops it at once.
   */
  async rotateSecret(id: string, opts: { secret?: string; graceMs?: number } = {}): Promise<{ endpoint: WebhookEndpointRecord; secret: string }> {
    const cur = await this.get(id);
    const graceMs = opts.graceMs ?? DEFAULT_ROTATION_GRACE_MS;
    if (!Number.isSafeInteger(graceMs) || graceMs < 0 || graceMs > 30 * 86_400_000) {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the rotation grace period must be between 0 and 30 days');
    }
    const secret = opts.secret !== undefined ? checkSecret(opts.secret) : generateSecret();
    if (secret === cur.secret) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the new secret equals the current one');
    const now = this.now();
    const next: WebhookEndpointRecord = {
      ...cur,
      secret,
      previousSecret: graceMs > 0 ? cur.secret : null,
      previousSecretExpiresAt: graceMs > 0 ? new Date(now.getTime() + graceMs) : null,
      updatedAt: now,
    };
    await this.store.updateEndpoint(next);
    this.opts.logger.info({ webhookId: id, graceMs }, 'webhook secret rotated');
    return { endpoint: next, secret };
  }

  /** Queues a `test` alert for this endpoint only, through the same durable outbox. */
  async sendTest(id: string, message?: string): Promise<DeliveryRecord> {
    const e = await this.get(id);
    if (!e.enabled) throw new BulkheadError('BK_ERR_CONFLICT', `webhook "${id}" is disabled${e.disabledReason ? ` (${e.disabledReason})` : ''}; enable it first`);
    const now = this.now();
    const alert: AlertRecord = {
      id: newAlertId(now.getTime()),
      type: 'test',
      severity: 'info',
      time: now,
      lastSeenAt: now,
      count: 1,
      groupKey: groupKeyOf({ type: 'test' }),
      agentId: null,
      host: null,
      containerId: null,
      containerName: null,
      image: null,
      project: null,
      ruleId: null,
      action: null,
      result: null,
      message: message ?? `Test alert from Bulkhead for webhook ${e.id}${e.name ? ` (${e.name})` : ''}`,
    };
    const delivery = newDelivery(alert.id, e.id, now);
    await this.store.writeAlerts((ctx) => ctx.insert({ alert, deliveries: [delivery] }));
    this.opts.signal?.notify();
    return delivery;
  }

  async getDelivery(id: string): Promise<DeliveryRecord> {
    const d = await this.store.getDelivery(id);
    if (!d) throw new BulkheadError('BK_ERR_NOT_FOUND', `delivery "${id}" not found`);
    return d;
  }

  /** Puts a dead-lettered delivery back in the outbox, due now, with a fresh retry schedule and the same webhook-id. */
  async redeliver(id: string): Promise<DeliveryRecord> {
    const d = await this.getDelivery(id);
    if (d.status !== 'dead') throw new BulkheadError('BK_ERR_CONFLICT', `delivery "${id}" is ${d.status}; only dead-lettered deliveries can be redelivered`);
    const e = await this.get(d.endpointId);
    if (!e.enabled) throw new BulkheadError('BK_ERR_CONFLICT', `webhook "${e.id}" is disabled${e.disabledReason ? ` (${e.disabledReason})` : ''}; enable it first`);
    if (!(await this.store.redeliver(id, this.now()))) throw new BulkheadError('BK_ERR_CONFLICT', `delivery "${id}" is no longer dead-lettered`);
    this.opts.logger.info({ deliveryId: id, webhookId: e.id }, 'delivery requeued');
    this.opts.signal?.notify();
    return this.getDelivery(id);
  }
}

function checkName(s: string): string {
  if (s.length > 200) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the webhook name is longer than 200 characters');
  return s;
}

function checkFormat(f: string): WebhookFormat {
  if (f !== 'json' && f !== 'slack') throw new BulkheadError('BK_ERR_BAD_REQUEST', `webhook format must be json or slack, got "${f}"`);
  return f;
}

function checkSeverity(s: string): AlertSeverity {
  if (!isSeverity(s)) throw new BulkheadError('BK_ERR_BAD_REQUEST', `minSeverity must be info, low, medium, high or critical, got "${s}"`);
  return s;
}

function checkTypes(ts: string[]): AlertType[] {
  for (const t of ts) {
    if (!isAlertType(t) || t === 'test') throw new BulkheadError('BK_ERR_BAD_REQUEST', `unknown alert type "${t}" in types`);
  }
  return [...new Set(ts)] as AlertType[];
}

function checkProjects(ps: string[]): string[] {
  for (const p of ps) if (p === '' || p.length > 256) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'project names in a webhook filter must be 1–256 characters');
  return [...new Set(ps)];
}

export function checkHeaders(h: Record<string, string>): Record<string, string> {
  const entries = Object.entries(h);
  if (entries.length > MAX_HEADERS) throw new BulkheadError('BK_ERR_BAD_REQUEST', `at most ${MAX_HEADERS} custom headers`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    const name = k.toLowerCase();
    if (!TOKEN.test(k) || k.length > 100) throw new BulkheadError('BK_ERR_BAD_REQUEST', `"${k}" is not a valid header name`);
    if (RESERVED_HEADERS.has(name) || name.startsWith('proxy-')) throw new BulkheadError('BK_ERR_BAD_REQUEST', `header "${k}" is set by Bulkhead and cannot be customised`);
    if (typeof v !== 'string' || v.length > 4096) throw new BulkheadError('BK_ERR_BAD_REQUEST', `headers.${k}: the value must be a string of at most 4096 characters`);
    // Judged by the HTTP client that will send it, so a value saved here is
    // one every delivery can carry: Node refuses control characters (other
    // than tab), DEL and anything outside Latin-1.
    try {
      validateHeaderValue(k, v);
    } catch {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', `headers.${k}: the value contains a character an HTTP header cannot carry (control characters other than tab, DEL, or characters outside Latin-1)`);
    }
    if (name in out) throw new BulkheadError('BK_ERR_BAD_REQUEST', `header "${k}" is given twice`);
    out[name] = v;
  }
  return out;
}
