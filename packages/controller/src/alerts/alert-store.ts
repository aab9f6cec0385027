// The persistence contract of alerts, webhook endpoints and the delivery
// outbox. KyselyAlertStore implements it for SQLite and PostgreSQL; the
// service, workers and routes only see this interface. Every piece of
// delivery state lives here — nothing about a pending delivery is held only
// in memory, so a crash loses nothing.
import type { AlertRecord, AlertSeverity, AlertType } from './alert-types';

export type WebhookFormat = 'json' | 'slack';

export interface WebhookEndpointRecord {
  id: string;                         // "wh_<16 hex>"
  name: string;
  url: string;
  format: WebhookFormat;
  minSeverity: AlertSeverity;
  /** Empty = every type (except `test`). */
  types: AlertType[];
  /** Empty = every project, and alerts without one. */
  projects: string[];
  /** "whsec_<base64>". Stored as-is: signing needs the key itself (see docs/alerts.md). */
  secret: string;
  /** The secret before the last rotation, still signed with until previousSecretExpiresAt. */
  previousSecret: string | null;
  previousSecretExpiresAt: Date | null;
  headers: Record<string, string>;
  enabled: boolean;
  allowUnsafeTarget: boolean;
  /** Why the controller disabled it (e.g. the receiver answered 410), null otherwise. */
  disabledReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'dead';

export interface DeliveryRecord {
  /** "msg_<26 chars>"; sent as `webhook-id`, the same on every attempt. */
  id: string;
  alertId: string;
  endpointId: string;
  status: DeliveryStatus;
  /** Attempts made so far, all cycles. */
  attempts: number;
  /** Attempts made before the last redelivery; the retry schedule restarts there. */
  retryBase: number;
  nextAttemptAt: Date;
  createdAt: Date;
  updatedAt: Date;
  deliveredAt: Date | null;
  lastStatusCode: number | null;
  lastError: string | null;
  /** Why it is dead-lettered, null unless status is dead. */
  deadReason: string | null;
}

export type AttemptOutcome = 'delivered' | 'retry' | 'failed' | 'gone';

export interface DeliveryAttemptRecord {
  deliveryId: string;
  /** 1-based across the delivery's life. */
  attempt: number;
  at: Date;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  outcome: AttemptOutcome;
  /** When the next attempt is due (outcome retry), else null. */
  nextAttemptAt: Date | null;
}

/** A delivery leased to a worker, with what it needs to send it. */
export interface ClaimedDelivery {
  delivery: Pick<DeliveryRecord, 'id' | 'alertId' | 'endpointId' | 'attempts' | 'retryBase'>;
  alert: AlertRecord;
  endpoint: WebhookEndpointRecord;
  /** Fences the result: only the holder of the current lease may record it. */
  claimToken: string;
}

/** What a worker decided after one attempt. */
export interface AttemptResult {
  deliveryId: string;
  claimToken: string;
  attempt: DeliveryAttemptRecord;
  /** New status: pending (retry at attempt.nextAttemptAt), delivered or dead. */
  status: DeliveryStatus;
  deadReason?: string;
  /** Set when the receiver answered 410: the endpoint is disabled with this reason. */
  disableEndpoint?: string;
}

export interface AlertQuery {
  types?: AlertType[];
  /** At least this severity. */
  minSeverity?: AlertSeverity;
  /** Alerts whose last occurrence is at or after this time. */
  since?: Date;
  agentId?: string;
  /** Container id prefix or exact name. */
  container?: string;
  project?: string;
  /** Project scoping: only alerts of these projects (none without a project); undefined = all. */
  projects?: string[];
  limit?: number;
  offset?: number;
}

export interface DeliveryQuery {
  endpointId: string;
  status?: DeliveryStatus;
  limit?: number;
  offset?: number;
}

export interface EndpointStats {
  pending: number;
  delivered: number;
  dead: number;
}

/** One alert to write in a batch: either a new alert with its deliveries, or a repeat folded into an open one. */
export interface NewAlertWrite {
  alert: AlertRecord;
  /** One delivery per matching endpoint, written in the same transaction as the alert. */
  deliveries: DeliveryRecord[];
}

/** Decides, inside the write transaction, what to do with one raised alert. */
export type AlertPlanner = (tx: AlertPlanContext) => Promise<void>;

/** The reads and writes the raise path may do inside its one transaction. */
export interface AlertPlanContext {
  /** Loads the open groups of many keys in one query (an optimisation; findOpenGroup works without it). */
  prefetchGroups(groupKeys: string[], since: Date): Promise<void>;
  /** The newest alert with this group key whose first occurrence is at or after `since`. */
  findOpenGroup(groupKey: string, since: Date): Promise<{ id: string; count: number } | undefined>;
  /** The newest agent_offline/agent_online alert of the agent. */
  latestAgentStateAlert(agentId: string): Promise<AlertType | undefined>;
  /**
   * Loads latestAgentStateAlert of many agents in one query (an optimisation: a replica taking
   * over a dead one's agents raises agent_online for each, and each asked on its own).
   */
  prefetchAgentStates?(agentIds: string[]): Promise<void>;
  /** Enabled endpoints, for filter matching. Read once per transaction. */
  enabledEndpoints(): Promise<WebhookEndpointRecord[]>;
  foldRepeat(alertId: string, at: Date): Promise<void>;
  /** Queues the alert and its deliveries; written before the transaction commits. */
  insert(w: NewAlertWrite): Promise<void>;
  /** Clears the alertPending mark of these violations in the same transaction. */
  violationsAlerted(violationIds: string[]): Promise<void>;
}

export interface AlertStore {
  // ---- alerts + outbox ----------------------------------------------------
  /** Runs `plan` in ONE transaction: an alert and its deliveries commit together or not at all. */
  writeAlerts(plan: AlertPlanner): Promise<void>;
  getAlert(id: string): Promise<AlertRecord | undefined>;
  listAlerts(q: AlertQuery): Promise<AlertRecord[]>;

  // ---- endpoints -----------------------------------------------------------
  insertEndpoint(e: WebhookEndpointRecord): Promise<void>;
  getEndpoint(id: string): Promise<WebhookEndpointRecord | undefined>;
  listEndpoints(): Promise<WebhookEndpointRecord[]>;
  updateEndpoint(e: WebhookEndpointRecord): Promise<void>;
  /** Deletes the endpoint and (cascading) its deliveries and their attempt logs. */
  deleteEndpoint(id: string): Promise<boolean>;
  endpointStats(ids: string[]): Promise<Map<string, EndpointStats>>;

  // ---- delivery workers ------------------------------------------------------
  /**
   * Leases up to `limit` due, unleased, pending deliveries of enabled
   * endpoints (oldest due first) until `now + leaseMs`. A lease that expires
   * (crashed or stuck worker) makes the delivery claimable again.
   */
  claimDue(now: Date, limit: number, leaseMs: number, excludeEndpoints: string[]): Promise<ClaimedDelivery[]>;
  /**
   * Records attempts and new states in one transaction. A result whose
   * lease was lost (another worker re-claimed it) is skipped; returns how
   * many were recorded.
   */
  recordAttempts(results: AttemptResult[], now: Date): Promise<number>;
  /** The earliest next_attempt_at after `now` of a pending delivery of an enabled endpoint, for the workers' timer. */
  nextDueAfter(now: Date): Promise<Date | undefined>;
  /**
   * Makes the pending deliveries of one endpoint that wait for a later retry due at `now`
   * (the endpoint answered again after failing). Returns how many.
   */
  expediteEndpoint(endpointId: string, now: Date): Promise<number>;

  // ---- delivery log ------------------------------------------------------------
  getDelivery(id: string): Promise<DeliveryRecord | undefined>;
  listDeliveries(q: DeliveryQuery): Promise<DeliveryRecord[]>;
  listAttempts(deliveryIds: string[]): Promise<DeliveryAttemptRecord[]>;
  /** dead → pending, due now, schedule restarted. False when it is not dead. */
  redeliver(id: string, now: Date): Promise<boolean>;

  /** Deletes finished deliveries, their attempts, and alerts without deliveries, older than `before`. */
  purge(before: Date): Promise<{ alerts: number; deliveries: number }>;
}
