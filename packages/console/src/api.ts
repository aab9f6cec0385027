// Owns ALL of the console's HTTP: the session (login, logout, who am I), the /v1 reads and
// mutations the views need, and the one EventSource on /v1/events. No other module calls
// fetch or EventSource, so the rules below hold everywhere by construction:
//
// - The API key is sent once, in the body of POST /v1/session, and never kept: not in a
//   variable that outlives the call, not in localStorage/sessionStorage, never in a URL.
// - The session id lives only in the HttpOnly cookie the controller sets; script never sees it.
// - The CSRF token (from the login answer or GET /v1/session) is kept in memory by the shared
//   client's FetchTransport and sent as X-Bulkhead-CSRF on every POST, PUT, PATCH and DELETE.
// - Same origin only: relative URLs, `credentials: 'same-origin'`, no redirects followed.
//
// Requests and wire types come from @bulkhead/client (generated from the controller's OpenAPI
// document, shared with the `bulkhead` CLI), so the console cannot drift from the API. This
// module adds only what a browser page needs: "the session is gone" handling on any 401, and
// the native EventSource (which resumes with Last-Event-ID by itself).
import { ApiError, BulkheadClient, ConnectionError } from '@bulkhead/client';
import type * as T from '@bulkhead/client';
import { FetchTransport } from '@bulkhead/client/fetch';

export { ApiError, ConnectionError };
export type Role = T.Role;
export type Session = T.Session;
export type Agent = T.Agent;
export type Violation = T.Violation;
export type Alert = T.Alert;
export type Severity = T.AlertSeverity;
export type ContainerAction = T.ManualAction;
export type ActionResult = T.ContainerActionResult;
export type Usage = NonNullable<T.Container['usage']>;
export interface Page<I> {
  items: I[];
  limit: number;
  nextCursor?: string | null;
  nextOffset?: number | null;
}

/**
 * The container facts the views show: the ContainerFacts message of docs/api.md ("Container").
 * The OpenAPI document leaves `facts` open (an object of any fields), so the console names the
 * ones it reads here.
 */
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
export type Container = Omit<T.Container, 'facts'> & { facts: ContainerFacts };

const transport = new FetchTransport();
const client = new BulkheadClient({ transport, timeoutMs: 30_000 });
let onUnauthenticated: (() => void) | null = null;

/** Called once by the shell: what to do when the session is gone (401 on any call). */
export function setUnauthenticatedHandler(fn: () => void): void {
  onUnauthenticated = fn;
}

/** Every call but the session ones: a 401 means the session ended (logout elsewhere, idle, key revoked). */
async function guard<R>(p: Promise<R>): Promise<R> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      transport.setSession(null);
      onUnauthenticated?.();
    }
    throw err;
  }
}

// ---- session ---------------------------------------------------------------------------------

/** Logs in: the key goes to the controller once and is forgotten; only the CSRF token is kept. */
export function login(key: string): Promise<Session> {
  return client.login(key);
}

/** The session this browser holds, or null when there is none (no cookie, expired, logged out). */
export async function currentSession(): Promise<Session | null> {
  try {
    return await client.getSession();
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) return null;
    throw err;
  }
}

/**
 * Ends the session server-side (the cookie's id is worthless afterwards, wherever a copy is).
 * Rejects when the controller did not confirm it (the session, its stream and CSRF token live on: retry).
 */
export async function logout(): Promise<void> {
  await client.logout();
  closeEvents();
}

// ---- reads -----------------------------------------------------------------------------------

/** Every agent (follows nextCursor). */
export async function allAgents(): Promise<Agent[]> {
  return (await guard(client.listAllAgents())).items;
}

export type ContainerQuery = T.ContainerQuery;
// `facts` is typed by ContainerFacts above (the API documents it; the OpenAPI schema leaves it open).
export const listContainers = (q: ContainerQuery) => guard(client.listContainers(q)) as unknown as Promise<Page<Container>>;
export const getContainer = (agent: string, id: string) => guard(client.getContainer(agent, id)) as unknown as Promise<Container>;
/** The container's recent usage as the controller keeps it (seeds the detail view's charts). */
export const getContainerUsage = (agent: string, id: string) => guard(client.getContainerUsage(agent, id));

export type ViolationQuery = T.ViolationQuery;
export const listViolations = (q: ViolationQuery) => guard(client.listViolations(q));

export type Summary = T.Summary;
/** The fleet at a glance, counted by the controller's database (GET /v1/summary). */
export const getSummary = (top = 5, hosts = 10) => guard(client.getSummary({ top, hosts }));

export type Scan = T.Scan;
/** The uploaded vulnerability report of an image digest, or null when there is none (404). */
export async function getScan(digest: string): Promise<Scan | null> {
  try {
    return await guard(client.getScan(digest));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

export type AlertQuery = T.AlertQuery;
export const listAlerts = (q: AlertQuery) => guard(client.listAlerts(q));

// ---- mutations (the transport adds the CSRF header) ------------------------------------------

export const containerAction = (agent: string, id: string, action: ContainerAction) => guard(client.containerAction(agent, id, { action }));

export const acknowledgeViolation = (id: string, comment: string) => guard(client.acknowledgeViolation(id, comment || undefined));

export const unacknowledgeViolation = (id: string) => guard(client.unacknowledgeViolation(id));

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

// ---- policy, host audit, audit trail, keys and tokens, webhooks ------------------------------

export type Policy = T.Policy;
export type PolicyVersion = T.PolicyVersion;
export type DryRunResult = T.DryRunResult;
export type HostAudit = T.HostAudit;
export type AuditEntry = T.AuditEntry;
export type AuditVerify = T.AuditVerify;
export type AuditQuery = T.AuditQuery;
export type ApiKey = T.ApiKey;
export type ApiKeyCreateBody = T.ApiKeyCreateBody;
export type JoinToken = T.JoinToken;
export type Webhook = T.Webhook;
export type Delivery = T.Delivery;

export const getPolicy = (version?: number) => guard(client.getPolicy(version));
export const listPolicyVersions = () => guard(client.listPolicyVersions());
/** The candidate is sent as text (YAML or JSON, as pasted or uploaded); nothing is applied. */
export const dryRunPolicy = (text: string) => guard(client.dryRunPolicy(text));
export const applyPolicy = (text: string, comment: string) => guard(client.applyPolicy(text, comment ? { comment } : {}));

export const getHostAudit = (agentId: string) => guard(client.getHostAudit(agentId));

export const listAuditLog = (q: AuditQuery) => guard(client.listAuditLog(q));
export const verifyAuditLog = () => guard(client.verifyAuditLog());

export const listKeys = () => guard(client.listKeys());
/** The answer carries the new key's secret (`key`) once: the view shows it and forgets it. */
export const createKey = (body: ApiKeyCreateBody) => guard(client.createKey(body));
export const revokeKey = (id: string) => guard(client.revokeKey(id));
export const listJoinTokens = () => guard(client.listJoinTokens({ limit: 100 }));
export const createJoinToken = (body: T.JoinTokenCreateBody) => guard(client.createJoinToken(body));
export const revokeJoinToken = (id: string) => guard(client.revokeJoinToken(id));

export const listWebhooks = () => guard(client.listWebhooks());
export const listDeliveries = (webhookId: string, q: T.DeliveryQuery) => guard(client.listDeliveries(webhookId, q));
export const redeliver = (deliveryId: string) => guard(client.redeliver(deliveryId));
export const testWebhook = (webhookId: string) => guard(client.testWebhook(webhookId));
