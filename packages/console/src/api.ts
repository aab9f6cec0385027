// Owns ALL of the console's HTTP: the session (login, logout, who am I), the /v1 reads and
// mutations the views need, and the one EventSource on /v1/events. No other module calls
// fetch or EventSource, so the rules below hold everywhere by construction:
//
// - The API key is sent once, in the body of POST /v1/session, and never kept: not in a
//   variable that outlives the call, not in localStorage/sessionStorage, never in a URL.
// - The session id lives only in the HttpOnly cookie the controller sets; script never sees it.
// - The CSRF token (from the login answer or GET /v1/session) is kept in this module's memory
//   and sent as X-Bulkhead-CSRF on every POST, PUT, PATCH and DELETE.
// - Same origin only: relative URLs, `credentials: 'same-origin'`, no redirects followed.
//
// The wire shapes below are those of docs/api.md; the shared @bulkhead/client package
// (generated from the controller's OpenAPI document) replaces them once it lands.

export type Role = 'viewer' | 'operator' | 'admin';

export interface Session {
  sessionId: string;
  keyId: string;
  keyName: string;
  role: Role;
  projects: string[];
  csrfToken: string;
  csrfHeader: string;
  createdAt: string;
  expiresAt: string;
  idleTimeoutSeconds: number;
}

export interface Agent {
  id: string;
  hostname: string;
  status: 'online' | 'offline' | 'revoked';
  agentVersion: string;
  host: Record<string, unknown> | null;
  certSerial: string;
  certNotAfter: string;
  enrolledAt: string;
  lastSeenAt: string | null;
  connectedAt: string | null;
  revokedAt: string | null;
  containerCount: number;
  policy: { version: number; applied: boolean; error: string; updatedAt: string } | null;
}

export interface Usage {
  cpuPercent: number;
  cpuPercentOfQuota: number | null;
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  pidsLimit: number;
  takenAt: string;
  writableBytes: number | null;
  logBytes: number | null;
  netRxBytesPerSec: number | null;
  netTxBytesPerSec: number | null;
  tcpConnections: number | null;
  sockets: number | null;
  [k: string]: unknown;
}

export interface ContainerFacts {
  user: string;
  privileged: boolean;
  mounts: { type: string; source: string; destination: string; readOnly: boolean; propagation: string }[];
  networkMode: string;
  networks: { name: string; networkId: string; ipAddress: string }[];
  pidMode: string;
  ipcMode: string;
  utsMode: string;
  usernsMode: string;
  capAdd: string[];
  capDrop: string[];
  securityOpt: string[];
  readOnlyRootfs: boolean;
  memoryLimitBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  imageId: string;
  imageDigest: string;
  labels: Record<string, string>;
  command: string[];
  envNames: string[];
  restartPolicy: string;
  [k: string]: unknown;
}

export interface Container {
  agentId: string;
  id: string;
  name: string;
  imageRef: string;
  state: string;
  removed?: boolean;
  updatedAt: string;
  facts: ContainerFacts;
  usage: Usage | null;
}

export interface Page<T> {
  items: T[];
  limit: number;
  nextCursor?: string | null;
  nextOffset?: number | null;
}

export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';

export interface Violation {
  id: string;
  agentId: string;
  containerId: string;
  containerName: string;
  imageRef: string;
  project: string;
  ruleId: string;
  severity: Severity;
  mode: 'monitor' | 'enforce';
  source: string;
  message: string;
  evidence: { location: string; detail: string; detector?: string }[];
  denied: boolean;
  action: { type: string; result: string; error: string; durationMs: number } | null;
  at: string;
  policyVersion: number;
  exemptedBy: string;
  acknowledged: boolean;
  acknowledgement: { at: string; byKeyId: string; byName: string; comment: string } | null;
}

export interface Alert {
  id: string;
  type: string;
  severity: Severity;
  time: string;
  lastSeenAt: string;
  count: number;
  agentId: string | null;
  host: string | null;
  containerId: string | null;
  containerName: string | null;
  image: string | null;
  project: string | null;
  ruleId: string | null;
  action: string | null;
  result: string | null;
  message: string;
}

export type ContainerAction = 'pause' | 'unpause' | 'stop' | 'kill' | 'quarantine' | 'release';

export interface ActionResult {
  id: string;
  agentId: string;
  containerId: string;
  containerName: string;
  action: string;
  ok: boolean;
  detail: string;
  durationMs: number;
  state: string;
  requestedBy: string;
  at: string;
}

/** An RFC 9457 problem from the API, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(detail || code || `HTTP ${status}`);
    this.name = 'ApiError';
  }
}

let csrfToken: string | null = null;
let onUnauthenticated: (() => void) | null = null;

/** Called once by the shell: what to do when the session is gone (401 on any call). */
export function setUnauthenticatedHandler(fn: () => void): void {
  onUnauthenticated = fn;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

type Query = Record<string, string | number | boolean | string[] | undefined | null>;

function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) for (const one of v) qs.append(k, one);
    else qs.append(k, String(v));
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

async function request<T>(method: string, path: string, opts: { query?: Query; body?: unknown; quiet401?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (MUTATING.has(method) && csrfToken) headers['x-bulkhead-csrf'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(withQuery(path, opts.query), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
    });
  } catch (err) {
    throw new ApiError(0, 'NETWORK', `the controller did not answer (${(err as Error).message})`);
  }
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const p = (body ?? {}) as { code?: string; detail?: string; title?: string };
    const err = new ApiError(res.status, p.code ?? `HTTP_${res.status}`, p.detail ?? p.title ?? res.statusText);
    if (res.status === 401 && !opts.quiet401) {
      csrfToken = null;
      onUnauthenticated?.();
    }
    throw err;
  }
  return body as T;
}

// ---- session ---------------------------------------------------------------------------------

/** Logs in: the key goes to the controller once and is forgotten; only the CSRF token is kept. */
export async function login(key: string): Promise<Session> {
  const s = await request<Session>('POST', '/v1/session', { body: { key }, quiet401: true });
  csrfToken = s.csrfToken;
  return s;
}

/** The session this browser holds, or null when there is none (no cookie, expired, logged out). */
export async function currentSession(): Promise<Session | null> {
  try {
    const s = await request<Session>('GET', '/v1/session', { quiet401: true });
    csrfToken = s.csrfToken;
    return s;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) return null;
    throw err;
  }
}

/** Ends the session server-side (the cookie's id is worthless afterwards, wherever a copy is). */
export async function logout(): Promise<void> {
  closeEvents();
  try {
    await request('DELETE', '/v1/session', { quiet401: true });
  } finally {
    csrfToken = null;
  }
}

// ---- reads -----------------------------------------------------------------------------------

export const listAgents = (cursor?: string, limit = 1000) => request<Page<Agent>>('GET', '/v1/agents', { query: { cursor, limit } });

/** Every agent (follows nextCursor; at most `max`). */
export async function allAgents(max = 10_000): Promise<Agent[]> {
  const out: Agent[] = [];
  let cursor: string | undefined;
  do {
    const p = await listAgents(cursor);
    out.push(...p.items);
    cursor = p.nextCursor ?? undefined;
  } while (cursor && out.length < max);
  return out;
}

export interface ContainerQuery {
  agent?: string;
  state?: string;
  image?: string;
  label?: string[];
  limit?: number;
  cursor?: string;
  include_removed?: boolean;
}
export const listContainers = (q: ContainerQuery) => request<Page<Container>>('GET', '/v1/containers', { query: { ...q } });
export const getContainer = (agent: string, id: string) => request<Container>('GET', `/v1/containers/${encodeURIComponent(agent)}/${encodeURIComponent(id)}`);

export interface ViolationQuery {
  agent?: string;
  container?: string;
  rule?: string;
  severity?: string;
  mode?: string;
  project?: string;
  since?: string;
  acknowledged?: boolean;
  limit?: number;
  cursor?: string;
}
export const listViolations = (q: ViolationQuery) => request<Page<Violation>>('GET', '/v1/violations', { query: { ...q } });

export interface AlertQuery {
  type?: string[];
  severity?: string;
  since?: string;
  agent?: string;
  container?: string;
  limit?: number;
  offset?: number;
}
export const listAlerts = (q: AlertQuery) => request<Page<Alert>>('GET', '/v1/alerts', { query: { ...q } });

// ---- mutations (CSRF header added by request()) ------------------------------------------------

export const containerAction = (agent: string, id: string, action: ContainerAction) =>
  request<ActionResult>('POST', `/v1/containers/${encodeURIComponent(agent)}/${encodeURIComponent(id)}/actions`, { body: { action } });

export const acknowledgeViolation = (id: string, comment: string) =>
  request<Violation>('POST', `/v1/violations/${encodeURIComponent(id)}/acknowledge`, { body: comment ? { comment } : {} });

export const unacknowledgeViolation = (id: string) => request<Violation>('POST', `/v1/violations/${encodeURIComponent(id)}/unacknowledge`);

// ---- the live event stream -------------------------------------------------------------------

export interface FleetEvent {
  seq?: number;
  type: string;
  at?: string;
  project?: string;
  agentId?: string;
  containerId?: string;
  name?: string;
  image?: string;
  state?: string;
  severity?: string;
  message?: string;
  reason?: string;
  [k: string]: unknown;
}

export type StreamState = 'connecting' | 'open' | 'closed';

const EVENT_TYPES = [
  'container.updated',
  'container.removed',
  'container.snapshot',
  'agent.online',
  'agent.offline',
  'alert.violation',
  'alert.action',
  'alert.action_failed',
  'alert.authz_denied',
  'alert.lockdown_finding',
  'alert.agent_offline',
  'alert.agent_online',
  'alert.cert_expiring',
  'alert.image_tag_moved',
  'alert.test',
  'stream.gap',
  'stream.end',
];

let source: EventSource | null = null;

/**
 * Opens THE event stream (one per page; the browser resumes with Last-Event-ID by itself).
 * The session cookie authenticates it; nothing goes in the URL.
 */
export function openEvents(onEvent: (e: FleetEvent) => void, onState: (s: StreamState) => void): void {
  closeEvents();
  const es = new EventSource('/v1/events', { withCredentials: false });
  source = es;
  onState('connecting');
  es.onopen = () => onState('open');
  es.onerror = () => onState(es.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
  const handle = (m: MessageEvent<string>) => {
    let data: FleetEvent;
    try {
      data = JSON.parse(m.data) as FleetEvent;
    } catch {
      return;
    }
    if (!data.type) data.type = m.type;
    if (data.type === 'stream.end') {
      // The controller ended it: a dead credential (log in again) or a shutdown (reconnect).
      es.close();
      onState('closed');
    }
    onEvent(data);
  };
  for (const t of EVENT_TYPES) es.addEventListener(t, handle as EventListener);
  es.onmessage = handle;
}

export function closeEvents(): void {
  source?.close();
  source = null;
}
