// Owns talking to the controller's REST API from the ops CLI: HTTPS with an
// explicit CA (node:https, since Node 20's fetch cannot take one), the API
// key, and turning failures into two kinds the CLI can tell apart — the API
// answered with a problem (ApiError) or it could not be reached (ConnectionError).
import { request } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { VERSION } from '@bulkhead/shared';
import type { AgentDto, AgentListDto, ContainerDto, ContainerPageDto, ProblemDto } from '../api/dto';
import type { DryRunResultDto, PolicyDto, PolicyErrorDto, PolicyVersionListDto } from '../api/routes/policies';
import type { ViolationDto, ViolationPageDto } from '../api/routes/violations';
import type { ScanDto } from '../api/routes/scans';
import type { ImageTagDto } from '../api/routes/images';
import type { ContainerActionBody, ContainerActionResultDto } from '../api/routes/actions';
import { SseParser, type SseEvent } from '@bulkhead/client';

export interface ApiClientOptions {
  /** e.g. https://controller.example:8443 (a path prefix is kept). HTTPS only. */
  baseUrl: string;
  /** "bk_<key id>_<secret>". */
  apiKey: string;
  /** PEM CA certificate(s) to trust instead of Node's built-in list (main.ts passes `--ca`, or the system trust store from trust.ts). */
  caPem?: string | Buffer | Array<string | Buffer>;
  /** Per request, connect to last byte. Default 15000 ms. */
  timeoutMs?: number;
}

export interface ViolationListParams {
  agent?: string;
  container?: string;
  rule?: string;
  severity?: string;
  mode?: string;
  source?: string;
  project?: string;
  /** ISO 8601. */
  since?: string;
  until?: string;
  denied?: boolean;
  /** true: only acknowledged; false: only unacknowledged. */
  acknowledged?: boolean;
  limit?: number;
  offset?: number;
  /** The previous page's nextCursor (not with offset). */
  cursor?: string;
}

export interface ContainerListParams {
  agent?: string;
  state?: string;
  image?: string;
  labels?: string[];
  includeRemoved?: boolean;
  limit?: number;
  offset?: number;
  /** The previous page's nextCursor (not with offset). */
  cursor?: string;
}

/** The API answered with an error (problem+json, or something else non-2xx). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly problem: ProblemDto | undefined;
  /** BK_ERR_POLICY_INVALID: every error, each with file, line, column and path. */
  readonly policyErrors: PolicyErrorDto[];

  constructor(status: number, code: string, detail: string, problem?: ProblemDto) {
    super(`${code}: ${detail}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.problem = problem;
    const errors = (problem as { errors?: unknown } | undefined)?.errors;
    this.policyErrors = Array.isArray(errors) ? (errors as PolicyErrorDto[]) : [];
  }
}

/** No HTTP answer: DNS, TCP, TLS (untrusted certificate, wrong name), timeout. */
export class ConnectionError extends Error {
  readonly url: string;
  /** Node's error code, e.g. ECONNREFUSED, SELF_SIGNED_CERT_IN_CHAIN. */
  readonly errorCode: string | undefined;
  readonly tls: boolean;

  constructor(message: string, url: string, errorCode: string | undefined, tls: boolean, cause?: unknown) {
    super(message, cause !== undefined ? { cause } : undefined);
    this.name = 'ConnectionError';
    this.url = url;
    this.errorCode = errorCode;
    this.tls = tls;
  }
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;

export class ApiClient {
  readonly baseUrl: URL;
  private readonly apiKey: string;
  private readonly caPem: string | Buffer | Array<string | Buffer> | undefined;
  /** Built once from caPem: the system trust store is ~300 certificates, ~60 ms to parse per connection otherwise. */
  private secureContext: SecureContext | undefined;
  private readonly timeoutMs: number;

  constructor(opts: ApiClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new TypeError(`"${opts.baseUrl}" is not a URL (expected https://HOST:PORT)`);
    }
    if (url.protocol !== 'https:') throw new TypeError(`the API is HTTPS-only; "${opts.baseUrl}" is not an https:// URL`);
    this.baseUrl = url;
    this.apiKey = opts.apiKey;
    this.caPem = opts.caPem;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
  }

  /** One page of agents (hostname, then id); `cursor` is the previous page's nextCursor. */
  listAgents(p: { limit?: number; cursor?: string } = {}): Promise<AgentListDto> {
    const q = new URLSearchParams();
    if (p.limit !== undefined) q.set('limit', String(p.limit));
    if (p.cursor !== undefined) q.set('cursor', p.cursor);
    return this.getJson<AgentListDto>('/v1/agents', q);
  }

  /** Every agent: follows nextCursor page by page (a controller that does not page answers all at once). */
  async listAllAgents(pageSize = 1000): Promise<{ items: AgentDto[] }> {
    const items: AgentDto[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page: AgentListDto = await this.listAgents({ limit: pageSize, cursor });
      items.push(...page.items);
      if (typeof page.nextCursor !== 'string' || page.items.length === 0) return { items };
      cursor = page.nextCursor;
    }
  }

  getAgent(id: string): Promise<AgentDto> {
    return this.getJson<AgentDto>(`/v1/agents/${encodeURIComponent(id)}`);
  }

  listContainers(p: ContainerListParams = {}): Promise<ContainerPageDto> {
    const q = new URLSearchParams();
    if (p.agent !== undefined) q.set('agent', p.agent);
    if (p.state !== undefined) q.set('state', p.state);
    if (p.image !== undefined) q.set('image', p.image);
    for (const l of p.labels ?? []) q.append('label', l);
    if (p.includeRemoved) q.set('include_removed', 'true');
    if (p.limit !== undefined) q.set('limit', String(p.limit));
    if (p.offset !== undefined) q.set('offset', String(p.offset));
    if (p.cursor !== undefined) q.set('cursor', p.cursor);
    return this.getJson<ContainerPageDto>('/v1/containers', q);
  }

  /**
   * Follows nextCursor until `max` containers (default: all) are collected: no container
   * lost or listed twice while the fleet changes between pages. nextOffset when the
   * controller predates cursors.
   */
  async listAllContainers(p: Omit<ContainerListParams, 'limit' | 'offset' | 'cursor'> = {}, max = Infinity, pageSize = 500): Promise<ContainerDto[]> {
    const items: ContainerDto[] = [];
    let at: { cursor?: string; offset?: number } | null = {};
    while (at !== null && items.length < max) {
      const page: ContainerPageDto = await this.listContainers({ ...p, ...at, limit: Math.min(pageSize, max - items.length) });
      items.push(...page.items);
      at = typeof page.nextCursor === 'string' ? { cursor: page.nextCursor } : page.nextOffset !== null && page.nextOffset !== undefined ? { offset: page.nextOffset } : null;
    }
    return items;
  }

  /** `ref`: full id, unique id prefix (≥ 12 hex digits) or container name. */
  getContainer(agentId: string, ref: string): Promise<ContainerDto> {
    return this.getJson<ContainerDto>(`/v1/containers/${encodeURIComponent(agentId)}/${encodeURIComponent(ref)}`);
  }

  // ---- policy -------------------------------------------------------

  /** The policy in force, or an older version. */
  getPolicy(version?: number): Promise<PolicyDto> {
    const q = new URLSearchParams();
    if (version !== undefined) q.set('version', String(version));
    return this.getJson<PolicyDto>('/v1/policies', q);
  }

  listPolicyVersions(): Promise<PolicyVersionListDto> {
    return this.getJson<PolicyVersionListDto>('/v1/policies/versions');
  }

  /** Applies a policy document (YAML or JSON text). Invalid: ApiError with `policyErrors`. */
  applyPolicy(text: string, o: { filename?: string; comment?: string } = {}): Promise<PolicyDto> {
    const q = new URLSearchParams();
    if (o.filename !== undefined) q.set('filename', o.filename);
    if (o.comment !== undefined) q.set('comment', o.comment);
    return this.requestJson<PolicyDto>('PUT', '/v1/policies', { query: q, body: text, contentType: 'application/yaml' });
  }

  /** Evaluates a candidate policy against the live fleet; changes nothing. */
  dryRunPolicy(text: string, o: { filename?: string } = {}): Promise<DryRunResultDto> {
    const q = new URLSearchParams();
    if (o.filename !== undefined) q.set('filename', o.filename);
    return this.requestJson<DryRunResultDto>('POST', '/v1/policies:dry-run', { query: q, body: text, contentType: 'application/yaml' });
  }

  listViolations(p: ViolationListParams = {}): Promise<ViolationPageDto> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(p)) if (v !== undefined) q.set(k, String(v));
    return this.getJson<ViolationPageDto>('/v1/violations', q);
  }

  /** Records who acknowledged the violation (the credential's key), when, and `comment`. 409 when already acknowledged. */
  acknowledgeViolation(id: string, comment?: string): Promise<ViolationDto> {
    return this.requestJson<ViolationDto>('POST', `/v1/violations/${encodeURIComponent(id)}/acknowledge`, {
      body: JSON.stringify(comment !== undefined ? { comment } : {}),
      contentType: 'application/json',
    });
  }

  /** Clears an acknowledgement. 409 when there is none. */
  unacknowledgeViolation(id: string): Promise<ViolationDto> {
    return this.requestJson<ViolationDto>('POST', `/v1/violations/${encodeURIComponent(id)}/unacknowledge`, {});
  }

  /** Uploads a Trivy JSON report (the file's text, sent as is). */
  uploadScan(json: string): Promise<ScanDto> {
    return this.requestJson<ScanDto>('POST', '/v1/scans', { body: json, contentType: 'application/json' });
  }

  getScan(digest: string): Promise<ScanDto> {
    return this.getJson<ScanDto>(`/v1/scans/${encodeURIComponent(digest)}`);
  }

  // ---- image tags ----------------------------------------------------

  listImages(p: { moved?: boolean; search?: string; limit?: number; offset?: number } = {}): Promise<{ items: ImageTagDto[]; nextOffset: number | null }> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(p)) if (v !== undefined) q.set(k, String(v));
    return this.getJson('/v1/images', q);
  }

  getImage(ref: string): Promise<ImageTagDto> {
    return this.getJson<ImageTagDto>(`/v1/images/${encodeURIComponent(ref)}`);
  }

  // ---- manual actions ------------------------------------------------

  /**
   * Asks the container's agent to act on it; resolves with the agent's
   * result. The agent may take up to the stop timeout plus a margin, so this
   * request waits longer than the default.
   */
  containerAction(agentId: string, ref: string, body: ContainerActionBody): Promise<ContainerActionResultDto> {
    return this.requestJson<ContainerActionResultDto>('POST', `/v1/containers/${encodeURIComponent(agentId)}/${encodeURIComponent(ref)}/actions`, {
      body: JSON.stringify(body),
      contentType: 'application/json',
      timeoutMs: Math.max(this.timeoutMs, 40_000),
    });
  }

  // ---- live events ---------------------------------------------------

  /**
   * Opens GET /v1/events and calls `onEvent` for each event until the stream ends (resolves)
   * or fails (rejects: ApiError for a refusal, ConnectionError otherwise). `lastEventId`
   * resumes after that event. `signal` aborts (resolves).
   */
  streamEvents(o: { lastEventId?: string; onEvent: (e: SseEvent) => void; signal?: AbortSignal }): Promise<void> {
    const url = new URL(this.baseUrl.href);
    url.pathname = url.pathname.replace(/\/+$/, '') + '/v1/events';
    const origin = url.origin;
    return new Promise<void>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'GET',
          ...(this.caPem !== undefined ? { secureContext: (this.secureContext ??= createSecureContext({ ca: this.caPem, minVersion: 'TLSv1.2' })) } : { minVersion: 'TLSv1.2' as const }),
          agent: false,
          headers: {
            authorization: `Bearer ${this.apiKey}`,
            accept: 'text/event-stream',
            'user-agent': `bulkhead-cli/${VERSION}`,
            ...(o.lastEventId !== undefined ? { 'last-event-id': o.lastEventId } : {}),
          },
          ...(o.signal ? { signal: o.signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let body: unknown;
              try {
                body = JSON.parse(text);
              } catch {
                body = undefined;
              }
              reject(problemError(status, body, text));
            });
            return;
          }
          const parser = new SseParser();
          res.setEncoding('utf8');
          res.on('data', (text: string) => {
            for (const e of parser.push(text)) o.onEvent(e);
          });
          res.on('end', () => resolve());
          res.on('error', (e) => (o.signal?.aborted ? resolve() : reject(connectionError(e, origin))));
        },
      );
      // Quiet streams carry a heartbeat every 15 s; three missed ones mean the connection is gone.
      req.setTimeout(Math.max(this.timeoutMs, 50_000), () => {
        const e = new Error('no heartbeat from the event stream') as NodeJS.ErrnoException;
        e.code = 'ETIMEDOUT';
        req.destroy(e);
      });
      req.on('error', (e) => (o.signal?.aborted ? resolve() : reject(connectionError(e, origin))));
      req.end();
    });
  }

  /** GET `path` (relative to the base URL) and parse the JSON answer. */
  getJson<T>(path: string, query?: URLSearchParams): Promise<T> {
    return this.requestJson<T>('GET', path, query ? { query } : {});
  }

  /** `method` `path` with an optional text body, and parse the JSON answer. */
  requestJson<T>(method: string, path: string, o: { query?: URLSearchParams; body?: string; contentType?: string; timeoutMs?: number }): Promise<T> {
    const timeoutMs = o.timeoutMs ?? this.timeoutMs;
    const query = o.query;
    const body = o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
    const url = new URL(this.baseUrl.href);
    url.pathname = url.pathname.replace(/\/+$/, '') + path;
    url.search = query && [...query].length > 0 ? '?' + query.toString() : '';
    const origin = url.origin;

    return new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          ...(this.caPem !== undefined ? { secureContext: (this.secureContext ??= createSecureContext({ ca: this.caPem, minVersion: 'TLSv1.2' })) } : { minVersion: 'TLSv1.2' as const }),
          agent: false,
          headers: {
            authorization: `Bearer ${this.apiKey}`,
            accept: 'application/json, application/problem+json',
            'user-agent': `bulkhead-cli/${VERSION}`,
            ...(body !== undefined ? { 'content-type': o.contentType ?? 'application/json', 'content-length': String(body.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY_BYTES) req.destroy(new Error(`response from ${origin} exceeds ${MAX_BODY_BYTES} bytes`));
            else chunks.push(c);
          });
          res.on('error', (e) => reject(connectionError(e, origin)));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown;
            try {
              body = text === '' ? undefined : JSON.parse(text);
            } catch {
              body = undefined;
            }
            if (status >= 200 && status < 300) {
              // 204 No Content (e.g. DELETE /v1/webhooks/:id) has no body by definition.
              if (status === 204) resolve(undefined as T);
              else if (body === undefined) reject(new ApiError(status, 'BK_ERR_PROTOCOL', `${origin} answered ${status} without a JSON body`));
              else resolve(body as T);
              return;
            }
            reject(problemError(status, body, text));
          });
        },
      );
      req.setTimeout(timeoutMs, () => {
        const e = new Error(`no answer within ${timeoutMs} ms`) as NodeJS.ErrnoException;
        e.code = 'ETIMEDOUT';
        req.destroy(e);
      });
      req.on('error', (e) => reject(connectionError(e, origin)));
      req.end(body);
    });
  }
}

function problemError(status: number, body: unknown, text: string): ApiError {
  const p = body as Partial<ProblemDto> | undefined;
  if (p && typeof p === 'object' && typeof p.code === 'string') {
    return new ApiError(status, p.code, typeof p.detail === 'string' ? p.detail : (p.title ?? ''), p as ProblemDto);
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(status, `HTTP_${status}`, snippet === '' ? 'no error details in the response' : snippet);
}

/** OpenSSL verification codes (UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, …) and Node's ERR_TLS_CERT_ALTNAME_INVALID. */
const CERT_CODE = /CERT|SELF_SIGNED|LEAF_SIGNATURE|CRL|INVALID_CA|PATH_LENGTH|INVALID_PURPOSE|HOSTNAME_MISMATCH|ALTNAME/;
/** Handshake/protocol failures, e.g. ERR_SSL_WRONG_VERSION_NUMBER when the port speaks plain HTTP. */
const TLS_CODE = /^ERR_SSL_|^ERR_TLS_|^EPROTO$/;

function connectionError(e: unknown, origin: string): ConnectionError {
  if (e instanceof ConnectionError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err.code;
  if (code !== undefined && (CERT_CODE.test(code) || TLS_CODE.test(code))) {
    const hint = CERT_CODE.test(code)
      ? "; pass the CA certificate that issued the API's certificate with --ca or BULKHEAD_CA (the controller's DATA_DIR/ca.crt, or your CA when the controller serves --api-tls-cert; without --ca the system trust store is used), and use a host name the server certificate lists"
      : '; is this the controller API port, and does it speak HTTPS?';
    return new ConnectionError(`TLS handshake with ${origin} failed: ${tlsReason(err.message)} (${code})${hint}`, origin, code, true, e);
  }
  return new ConnectionError(`cannot reach ${origin}: ${code ?? err.message}${code !== undefined && err.message && !err.message.includes(code) ? ` (${err.message})` : ''}`, origin, code, false, e);
}

/** OpenSSL's "…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:file:line:" → "wrong version number". */
function tlsReason(message: string): string {
  const m = /SSL routines:[^:]*:([^:]+)/.exec(message);
  return (m ? m[1]! : message).replace(/\s+/g, ' ').trim();
}
