// Owns the typed calls of the controller's REST API (docs/api.md), the same in
// the `bulkhead` CLI and the web console: it builds each request (path, query,
// body), hands it to a Transport, and turns the answer into the generated type
// or an ApiError. Nothing here touches the network or Node: the transport does.
import { ApiError, problemError } from './errors';
import { SseParser, type SseEvent } from './sse';
import type { HttpMethod, Transport, TransportRequest, TransportResponse } from './transport';
import type * as T from './types';
import type { ApiPath, MethodOf, PathParamsOf, QueryOf, ResponseOf } from './types';

/** A query parameter's value: arrays repeat the name, undefined is left out. */
export type QueryValue = string | number | boolean | undefined | null | ReadonlyArray<string | number | boolean>;
export type QueryInput = URLSearchParams | Array<[string, string]> | { [name: string]: QueryValue };

export interface RequestOptions {
  query?: QueryInput;
  /** Text body, sent as is. */
  body?: string;
  /** Default application/json when there is a body. */
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ClientOptions {
  transport: Transport;
  /** Per request, connect to last byte. Default 15000 ms. */
  timeoutMs?: number;
}

export interface CallOptions<P extends ApiPath, M extends MethodOf<P>> {
  params?: PathParamsOf<P, M>;
  query?: QueryOf<P, M>;
  /** JSON-encoded unless it is a string (then sent as is, with `contentType`). */
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Paging parameters of the cursor-paged lists. */
export interface PageParams {
  limit?: number;
  /** The previous page's nextCursor. */
  cursor?: string;
}

/**
 * One path segment, percent-encoded. "." and ".." are refused: encodeURIComponent leaves them as
 * they are, and fetch (the WHATWG URL parser) then resolves them as dot segments, so
 * getContainer('x', '..') would GET /v1/containers/ and a POST could land on another route.
 * No agent id, container id or name, key, webhook or violation id is ever "." or "..".
 */
export function enc(v: string): string {
  if (v === '.' || v === '..') throw new TypeError(`"${v}" cannot be a path parameter (it would be read as a dot segment)`);
  return encodeURIComponent(v);
}

/** Entries of `q` in order, repeated names for arrays, undefined/null left out. */
export function queryEntries(q: QueryInput | undefined): Array<[string, string]> {
  if (q === undefined) return [];
  if (q instanceof URLSearchParams) return [...q];
  if (Array.isArray(q)) return q.map(([k, v]) => [k, v] as [string, string]);
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(q as Record<string, QueryValue>)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) for (const x of v) out.push([k, String(x)]);
    else out.push([k, String(v)]);
  }
  return out;
}

/** "/v1/containers/{agent}/{id}" with each {name} replaced by its percent-encoded value. */
export function fillPath(path: string, params: Record<string, string | number> | undefined): string {
  return path.replace(/\{(\w+)\}/g, (_m, name: string) => {
    const v = params?.[name];
    if (v === undefined) throw new TypeError(`path parameter "${name}" of ${path} is missing`);
    return enc(String(v));
  });
}

export class BulkheadClient {
  readonly transport: Transport;
  readonly timeoutMs: number;

  constructor(opts: ClientOptions) {
    this.transport = opts.transport;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
  }

  // ---- generic ---------------------------------------------------------------

  /**
   * Any route, typed from the OpenAPI document:
   * `call('get', '/v1/containers/{agent}/{id}', { params: { agent, id } })`.
   */
  call<P extends ApiPath, M extends MethodOf<P>>(method: M, path: P, o: CallOptions<P, M> = {}): Promise<ResponseOf<P, M>> {
    const body = o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
    return this.requestJson<ResponseOf<P, M>>(method, fillPath(path, o.params as Record<string, string> | undefined), {
      query: o.query as QueryInput | undefined,
      ...(body !== undefined ? { body, contentType: o.contentType ?? 'application/json' } : {}),
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
    });
  }

  /** GET `path` (an API path like "/v1/agents") and parse the JSON answer. */
  getJson<R>(path: string, query?: QueryInput): Promise<R> {
    return this.requestJson<R>('GET', path, query ? { query } : {});
  }

  /** `method` `path` with an optional text body; the JSON answer (undefined for 204), or ApiError. */
  async requestJson<R>(method: string, path: string, o: RequestOptions = {}): Promise<R> {
    const res = await this.transport.request(this.build(method, path, o, 'application/json, application/problem+json'));
    if (res.status >= 200 && res.status < 300) {
      // 204 No Content (e.g. DELETE /v1/webhooks/:id) has no body by definition.
      if (res.status === 204) return undefined as R;
      try {
        return JSON.parse(res.body) as R;
      } catch {
        throw new ApiError(res.status, 'BK_ERR_PROTOCOL', `the API answered ${res.status} without a JSON body`);
      }
    }
    throw problemError(res.status, res.body);
  }

  private build(method: string, path: string, o: RequestOptions, accept: string): TransportRequest {
    const m = method.toUpperCase() as HttpMethod;
    return {
      method: m,
      path,
      query: queryEntries(o.query),
      body: o.body,
      headers: { accept, ...(o.body !== undefined ? { 'content-type': o.contentType ?? 'application/json' } : {}) },
      timeoutMs: o.timeoutMs ?? this.timeoutMs,
      signal: o.signal,
    };
  }

  // ---- session (a browser's login; docs/api.md "Browser sessions") -----------

  /** Logs in with an API key: the controller sets the session cookie; the transport keeps the CSRF token. */
  async login(key: string): Promise<T.Session> {
    const s = await this.call('post', '/v1/session', { body: { key } });
    this.transport.setSession?.(s);
    return s;
  }

  /** The session of this request (cookie only), with its CSRF token; 404 without a session. */
  async getSession(): Promise<T.Session> {
    const s = await this.call('get', '/v1/session');
    this.transport.setSession?.(s);
    return s;
  }

  /**
   * Ends the session server-side. The CSRF token is forgotten once the controller confirms it
   * (or answers 401: the session had ended); after any other failure the session is still
   * alive, so the token is kept for a retry (without it the retry would be refused 403).
   */
  async logout(): Promise<T.Logout> {
    try {
      const r = await this.call('delete', '/v1/session');
      this.transport.setSession?.(null);
      return r;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.transport.setSession?.(null);
      throw err;
    }
  }

  whoami(): Promise<T.WhoAmI> {
    return this.call('get', '/v1/auth/whoami');
  }

  // ---- agents ----------------------------------------------------------------

  /** One page of agents (hostname, then id). */
  listAgents(p: PageParams = {}): Promise<T.AgentList> {
    return this.getJson<T.AgentList>('/v1/agents', { limit: p.limit, cursor: p.cursor });
  }

  /** Every agent: follows nextCursor page by page (a controller that does not page answers all at once). */
  async listAllAgents(pageSize = 1000): Promise<{ items: T.Agent[] }> {
    const items: T.Agent[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page: T.AgentList = await this.listAgents({ limit: pageSize, ...(cursor !== undefined ? { cursor } : {}) });
      items.push(...(page.items as T.Agent[]));
      const next = (page as { nextCursor?: unknown }).nextCursor;
      if (typeof next !== 'string' || page.items.length === 0) return { items };
      cursor = next;
    }
  }

  getAgent(id: string): Promise<T.Agent> {
    return this.getJson<T.Agent>(`/v1/agents/${enc(id)}`);
  }

  /** Revokes an agent (admin): its stream closes, its certificate is refused from then on. */
  revokeAgent(id: string): Promise<T.Agent> {
    return this.requestJson<T.Agent>('POST', `/v1/agents/${enc(id)}/revoke`);
  }

  /** The agent's latest host audit (admin-readable, fleet-wide): lockdown findings, fixes applied, CIS summary, image hygiene. */
  getHostAudit(agentId: string): Promise<T.HostAudit> {
    return this.getJson<T.HostAudit>(`/v1/agents/${enc(agentId)}/audit`);
  }

  /** The agent's CIS Docker Benchmark report (docker-bench-security JSON). */
  getCisReport(agentId: string): Promise<T.CisReport> {
    return this.getJson<T.CisReport>(`/v1/agents/${enc(agentId)}/audit`, { format: 'cis' });
  }

  /** The agent's image prune record. */
  getPruneList(agentId: string): Promise<T.HostAuditPruneList> {
    return this.getJson<T.HostAuditPruneList>(`/v1/agents/${enc(agentId)}/audit`, { format: 'prune' });
  }

  // ---- containers ------------------------------------------------------------

  /** One page of containers; every filter must match. `cursor` is the previous page's nextCursor. */
  listContainers(q: T.ContainerQuery = {}): Promise<T.ContainerPage> {
    return this.getJson<T.ContainerPage>('/v1/containers', q as QueryInput);
  }

  /**
   * Follows nextCursor until `max` containers (default: all) are collected: no container
   * lost or listed twice while the fleet changes between pages. nextOffset when the
   * controller predates cursors.
   */
  async listAllContainers(q: Omit<T.ContainerQuery, 'limit' | 'offset' | 'cursor'> = {}, max = Infinity, pageSize = 500): Promise<T.Container[]> {
    const items: T.Container[] = [];
    let at: { cursor?: string; offset?: number } | null = {};
    while (at !== null && items.length < max) {
      const page: T.ContainerPage = await this.listContainers({ ...q, ...at, limit: Math.min(pageSize, max - items.length) });
      items.push(...(page.items as T.Container[]));
      const p = page as { nextCursor?: unknown; nextOffset?: unknown };
      at = typeof p.nextCursor === 'string' ? { cursor: p.nextCursor } : typeof p.nextOffset === 'number' ? { offset: p.nextOffset } : null;
    }
    return items;
  }

  /** `ref`: full id, unique id prefix (≥ 12 hex digits) or container name. */
  getContainer(agentId: string, ref: string): Promise<T.Container> {
    return this.getJson<T.Container>(`/v1/containers/${enc(agentId)}/${enc(ref)}`);
  }

  /** The container's recent usage history the controller keeps (one point per interval, oldest first). */
  getContainerUsage(agentId: string, ref: string): Promise<T.ContainerUsageHistory> {
    return this.getJson<T.ContainerUsageHistory>(`/v1/containers/${enc(agentId)}/${enc(ref)}/usage`);
  }

  /**
   * Asks the container's agent to act on it (operator); resolves with the agent's result.
   * The agent may take up to the stop timeout plus a margin, so this waits longer than the default.
   */
  containerAction(agentId: string, ref: string, body: T.ContainerActionBody): Promise<T.ContainerActionResult> {
    return this.requestJson<T.ContainerActionResult>('POST', `/v1/containers/${enc(agentId)}/${enc(ref)}/actions`, {
      body: JSON.stringify(body),
      timeoutMs: Math.max(this.timeoutMs, 40_000),
    });
  }

  /** The fleet at a glance (the console overview): counts by status, severity and state, busiest containers. */
  getSummary(q: T.SummaryQuery = {}): Promise<T.Summary> {
    return this.getJson<T.Summary>('/v1/summary', q as QueryInput);
  }

  // ---- violations, alerts ----------------------------------------------------

  listViolations(q: T.ViolationQuery = {}): Promise<T.ViolationPage> {
    return this.getJson<T.ViolationPage>('/v1/violations', q as QueryInput);
  }

  /** Records who acknowledged the violation (the credential's key), when, and `comment`. 409 when already acknowledged. */
  acknowledgeViolation(id: string, comment?: string): Promise<T.Violation> {
    return this.requestJson<T.Violation>('POST', `/v1/violations/${enc(id)}/acknowledge`, { body: JSON.stringify(comment !== undefined ? { comment } : {}) });
  }

  /** Clears an acknowledgement. 409 when there is none. */
  unacknowledgeViolation(id: string): Promise<T.Violation> {
    return this.requestJson<T.Violation>('POST', `/v1/violations/${enc(id)}/unacknowledge`);
  }

  listAlerts(q: T.AlertQuery = {}): Promise<T.AlertPage> {
    return this.getJson<T.AlertPage>('/v1/alerts', q as QueryInput);
  }

  // ---- webhooks and their deliveries -----------------------------------------

  listWebhooks(): Promise<T.WebhookList> {
    return this.getJson<T.WebhookList>('/v1/webhooks');
  }

  getWebhook(id: string): Promise<T.Webhook> {
    return this.getJson<T.Webhook>(`/v1/webhooks/${enc(id)}`);
  }

  /** The signing secret is in this answer only. */
  createWebhook(body: T.WebhookCreateBody): Promise<T.WebhookWithSecret> {
    return this.requestJson<T.WebhookWithSecret>('POST', '/v1/webhooks', { body: JSON.stringify(body) });
  }

  updateWebhook(id: string, body: T.WebhookUpdateBody): Promise<T.Webhook> {
    return this.requestJson<T.Webhook>('PATCH', `/v1/webhooks/${enc(id)}`, { body: JSON.stringify(body) });
  }

  deleteWebhook(id: string): Promise<void> {
    return this.requestJson<void>('DELETE', `/v1/webhooks/${enc(id)}`);
  }

  rotateWebhookSecret(id: string): Promise<T.WebhookWithSecret> {
    return this.requestJson<T.WebhookWithSecret>('POST', `/v1/webhooks/${enc(id)}/rotate-secret`);
  }

  /** Sends a test alert to the endpoint now and answers with the attempt's outcome. */
  testWebhook(id: string): Promise<T.WebhookTest> {
    return this.requestJson<T.WebhookTest>('POST', `/v1/webhooks/${enc(id)}/test`);
  }

  listDeliveries(webhookId: string, q: T.DeliveryQuery = {}): Promise<T.DeliveryPage> {
    return this.getJson<T.DeliveryPage>(`/v1/webhooks/${enc(webhookId)}/deliveries`, q as QueryInput);
  }

  /** Queues a dead-lettered (or any) delivery again. */
  redeliver(deliveryId: string): Promise<T.Redelivery> {
    return this.requestJson<T.Redelivery>('POST', `/v1/deliveries/${enc(deliveryId)}/redeliver`);
  }

  // ---- policy ----------------------------------------------------------------

  /** The policy in force, or an older version. */
  getPolicy(version?: number): Promise<T.Policy> {
    return this.getJson<T.Policy>('/v1/policies', { version });
  }

  listPolicyVersions(): Promise<T.PolicyVersionList> {
    return this.getJson<T.PolicyVersionList>('/v1/policies/versions');
  }

  /** Applies a policy document (YAML or JSON text; admin). Invalid: ApiError with `policyErrors`. */
  applyPolicy(text: string, o: { filename?: string; comment?: string } = {}): Promise<T.Policy> {
    return this.requestJson<T.Policy>('PUT', '/v1/policies', { query: { filename: o.filename, comment: o.comment }, body: text, contentType: 'application/yaml' });
  }

  /** Evaluates a candidate policy against the live fleet; changes nothing. */
  dryRunPolicy(text: string, o: { filename?: string } = {}): Promise<T.DryRunResult> {
    return this.requestJson<T.DryRunResult>('POST', '/v1/policies:dry-run', { query: { filename: o.filename }, body: text, contentType: 'application/yaml' });
  }

  // ---- audit trail -----------------------------------------------------------

  listAuditLog(q: T.AuditQuery = {}): Promise<T.AuditPage> {
    return this.getJson<T.AuditPage>('/v1/audit-log', q as QueryInput);
  }

  /** Verifies the hash chain (admin); see describeVerifyResult. */
  verifyAuditLog(): Promise<T.AuditVerify> {
    return this.getJson<T.AuditVerify>('/v1/audit-log/verify');
  }

  // ---- API keys, join tokens ---------------------------------------------------

  listKeys(): Promise<T.ApiKeyList> {
    return this.getJson<T.ApiKeyList>('/v1/keys');
  }

  getKey(id: string): Promise<T.ApiKey> {
    return this.getJson<T.ApiKey>(`/v1/keys/${enc(id)}`);
  }

  /** The secret is in this answer only. */
  createKey(body: T.ApiKeyCreateBody): Promise<T.ApiKeyWithSecret> {
    return this.requestJson<T.ApiKeyWithSecret>('POST', '/v1/keys', { body: JSON.stringify(body) });
  }

  revokeKey(id: string): Promise<T.ApiKey> {
    return this.requestJson<T.ApiKey>('DELETE', `/v1/keys/${enc(id)}`);
  }

  listJoinTokens(q: T.JoinTokenQuery = {}): Promise<T.JoinTokenPage> {
    return this.getJson<T.JoinTokenPage>('/v1/join-tokens', q as QueryInput);
  }

  /** The token (and the enroll command) are in this answer only. */
  createJoinToken(body: T.JoinTokenCreateBody): Promise<T.JoinTokenCreated> {
    return this.requestJson<T.JoinTokenCreated>('POST', '/v1/join-tokens', { body: JSON.stringify(body) });
  }

  revokeJoinToken(id: string): Promise<T.JoinToken> {
    return this.requestJson<T.JoinToken>('DELETE', `/v1/join-tokens/${enc(id)}`);
  }

  // ---- scans, images -----------------------------------------------------------

  /** Uploads a Trivy JSON report (the file's text, sent as is). */
  uploadScan(json: string): Promise<T.Scan> {
    return this.requestJson<T.Scan>('POST', '/v1/scans', { body: json, contentType: 'application/json' });
  }

  getScan(digest: string): Promise<T.Scan> {
    return this.getJson<T.Scan>(`/v1/scans/${enc(digest)}`);
  }

  listImages(q: T.ImageQuery = {}): Promise<T.ImagePage> {
    return this.getJson<T.ImagePage>('/v1/images', q as QueryInput);
  }

  getImage(ref: string): Promise<T.ImageTag> {
    return this.getJson<T.ImageTag>(`/v1/images/${enc(ref)}`);
  }

  // ---- live events -------------------------------------------------------------

  /**
   * Opens GET /v1/events and calls `onEvent` for each event until the stream ends (resolves)
   * or fails (rejects: ApiError for a refusal, ConnectionError otherwise). `lastEventId`
   * resumes after that event. `signal` aborts (resolves). Quiet streams carry a heartbeat
   * every 15 s; the transport gives up after `idleTimeoutMs` (default 50 s) without a byte.
   */
  async streamEvents(o: { lastEventId?: string; onEvent: (e: SseEvent) => void; signal?: AbortSignal; idleTimeoutMs?: number; query?: QueryInput }): Promise<void> {
    const req = this.build('GET', '/v1/events', { ...(o.query !== undefined ? { query: o.query } : {}), timeoutMs: o.idleTimeoutMs ?? Math.max(this.timeoutMs, 50_000), ...(o.signal ? { signal: o.signal } : {}) }, 'text/event-stream');
    if (o.lastEventId !== undefined) req.headers['last-event-id'] = o.lastEventId;
    const parser = new SseParser();
    const res: TransportResponse = await this.transport.stream(req, (text) => {
      for (const e of parser.push(text)) o.onEvent(e);
    });
    if (res.status !== 200) throw problemError(res.status, res.body);
  }
}
