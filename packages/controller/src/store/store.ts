// The controller's persistence contract. One implementation per database
// (SQLite embedded by default, PostgreSQL later) behind this interface, so
// the gRPC server, REST API and CLI never see SQL.
import { canonicalSerial, type ContainerFacts__Output, type HostFacts__Output, type ScanSummary } from '@bulkhead/shared';
import type { AlertStore } from '../alerts/alert-store';
import type { AuditStore } from '../audit/audit-store';
import type { UsageStore } from './usage-store';
import type { HostAuditStore } from '../host-audit/host-audit-store';
import type { ImageTagStore } from '../images/image-tag-store';
import type { SessionStore } from '../auth/session-store';
import type { FleetEventStore } from '../events/event-store';
import type { SignatureVerdictStore } from '../signatures/signature-verdict-store';
import type { FleetSummaryStore } from '../fleet/fleet-summary-store';

export type AgentStatus = 'online' | 'offline' | 'revoked';

export interface AgentRecord {
  id: string;                 // "agt_<26 chars>"; the certificate CN
  hostname: string;
  status: AgentStatus;
  agentVersion: string;
  host: HostFacts__Output | null;   // last hello's host facts
  certSerial: string;               // lower-case hex
  certNotAfter: Date;
  /**
   * The serial the last renewal replaced, until the agent first connects with the new
   * certificate: an answer lost on the way (stream dropped, agent crashed) must not strand
   * the agent with a certificate the controller no longer accepts. Absent when none.
   */
  prevCertSerial?: string;
  enrolledAt: Date;
  lastSeenAt: Date | null;          // last message of any kind
  connectedAt: Date | null;         // start of the current/last stream
  revokedAt: Date | null;
  /**
   * "sha256:…" of the CA that issued the current certificate; absent for certificates
   * issued before the controller recorded it (they come from the CA in use back then).
   */
  certCa?: string;
  /** Fingerprints of the CAs the agent last said it trusts for the controller's certificate; absent until it says. */
  trustedCas?: string[];
  /**
   * 0020_agent_state_hash: the inventory state hash the agent last reported once everything it
   * sent before was stored, i.e. the hash of the containers stored for it; absent when unknown
   * (cleared before every container write until a heartbeat reports it again).
   */
  stateHash?: string;
  containerCount: number;
  /** The policy bundle the agent last reported on; absent until its first report. */
  policyStatus?: AgentPolicyStatusRecord | null;
}

export interface ContainerRecord {
  agentId: string;
  id: string;                 // full 64-hex docker id
  name: string;
  imageRef: string;
  state: string;
  facts: ContainerFacts__Output;
  updatedAt: Date;            // when the controller last received it
  removed: boolean;           // true once a REMOVE delta arrived (kept briefly for history)
  /**
   * listContainers with a `sort` other than the default: the value the row was ordered by
   * (for cpu/memory the usage read in the same statement; -1 when none), for the page cursor.
   */
  sortValue?: string | number;
}

/**
 * What GET /v1/containers can sort by besides the default (agent id, name, id): the value,
 * then agent id, name and id break ties. cpu/memory are the latest usage (-1 when none).
 */
export const CONTAINER_SORT_FIELDS = ['agent', 'name', 'state', 'image', 'cpu', 'memory'] as const;
export type ContainerSortField = (typeof CONTAINER_SORT_FIELDS)[number];
export interface ContainerSort {
  field: ContainerSortField;
  desc: boolean;
}

export interface ContainerQuery {
  agentId?: string;
  state?: string;
  /** Substring match on image ref ("busybox" matches "bulkhead-test/busybox:1"). */
  image?: string;
  /** "key" (label present) or "key=value". May repeat; all must match. */
  labels?: string[];
  includeRemoved?: boolean;
  /** Project scoping (0004_auth): only containers of these projects; undefined = every container. */
  projects?: string[];
  /** Only containers of this project (a filter the caller chose; `projects` is the scope). */
  project?: string;
  /** "Breaks rule X": only containers with an open (unacknowledged, not exempted) violation of this rule id. */
  rule?: string;
  /** Free text: case-insensitive substring of the name or image ref, or a prefix of the id. */
  search?: string;
  /** Default: agent id, name, id ascending. */
  sort?: ContainerSort;
  limit?: number;
  offset?: number;
  /**
   * Keyset paging (0019_list_paging): only containers after this one in the list order
   * (agent id, name, id). A page then costs what it returns, however deep it is, and rows
   * added or removed before the position move no later row.
   */
  after?: ContainerPosition;
}

/** A container's place in the list order: agent id, then name, then id (after the sort value, with a sort). */
export interface ContainerPosition {
  agentId: string;
  name: string;
  id: string;
  /** With a `sort`: the row's sortValue. */
  sortValue?: string | number;
}

/** A violation's place in the list order (newest first): at, then id, both descending. */
export interface ViolationPosition {
  at: Date;
  id: string;
}

/** An agent's place in the list order: hostname, then id. */
export interface AgentPosition {
  hostname: string;
  id: string;
}

export interface AgentQuery {
  limit?: number;
  /** Keyset paging: only agents after this one (hostname, then id). */
  after?: AgentPosition;
}

export interface JoinTokenRecord {
  id: string;                 // public part, "jt_..."
  secretHash: string;         // sha256 hex of the secret part
  createdAt: Date;
  expiresAt: Date;
  usedAt: Date | null;
  usedByAgent: string | null;
  revokedAt: Date | null;
  description: string;
}

export interface ApiKeyRecord {
  id: string;                 // public part, "ak_..."
  name: string;
  secretHash: string;         // sha256 hex of the secret part
  role: 'admin' | 'operator' | 'viewer';
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  // ---- 0004_auth (src/auth) ----
  /** Project names the key is limited to; empty = every project. */
  projects: string[];
  /** Last successful authentication (updated at most once a minute). */
  lastUsedAt: Date | null;
  /** Key id of the key that minted it, or "init". */
  createdBy: string;
  /**
   * 0018_api_key_actions: the route actions the key (and every token of it) is limited to,
   * as routes declare them (RouteAccess.action, e.g. "scans.upload" for POST /v1/scans);
   * every other /v1 route answers 403. Absent or empty = every route its role allows.
   */
  actions?: string[];
}

/** Join token listing filter (0004_auth). */
export type JoinTokenStatus = 'active' | 'used' | 'expired' | 'revoked';

// ---- policy (0002_policy) ---------------------------------------------------

export interface PolicyVersionRecord {
  /** 1, 2, 3 … assigned by the store; the highest is the policy in force. */
  version: number;
  name: string;
  /** The source text as submitted (YAML or JSON). */
  yaml: string;
  /** The validated Policy document as JSON. */
  json: string;
  /** sha256 hex of `json`. */
  sha256: string;
  createdAt: Date;
  /** API key id, or "init" for the default policy. */
  createdBy: string;
  comment: string;
}

export type PolicyVersionSummary = Omit<PolicyVersionRecord, 'yaml' | 'json'>;

export interface AgentPolicyStatusRecord {
  agentId: string;
  version: number;
  applied: boolean;
  /** Why the agent refused the bundle; "" when applied. */
  error: string;
  updatedAt: Date;
}

export interface ViolationRecord {
  /** The agent's report id; a report re-sent after a reconnect is stored once. */
  id: string;
  agentId: string;
  containerId: string;
  containerName: string;
  imageRef: string;
  project: string;
  ruleId: string;
  severity: string;
  mode: string;
  /** authz | reaction | reconcile */
  source: string;
  message: string;
  /** JSON array of {location, detail, detector?}, as the agent sent it. */
  evidenceJson: string;
  denied: boolean;
  /** What was done; type "" when nothing was (monitor mode, authz denial). */
  action: { type: string; result: string; error: string; durationMs: number };
  at: Date;
  policyVersion: number;
  /** "who: why" when an exemption covered the finding; "" otherwise. */
  exemptedBy: string;
  /** An operator's acknowledgement (0007_violation_ack); null until acknowledged. Ignored by insertViolation. */
  ack?: ViolationAck | null;
  /**
   * True while the alert this report raises is not committed yet (0011_violation_alert_pending):
   * set by insertViolation, cleared in the transaction that writes the alert.
   */
  alertPending?: boolean;
}

/** Who acknowledged a violation, when, and why (0007_violation_ack). */
export interface ViolationAck {
  at: Date;
  /** API key id of the credential (for a bearer token, the key it was exchanged from). */
  byKeyId: string;
  /** That key's name when it acknowledged. */
  byName: string;
  comment: string;
}

export interface ViolationQuery {
  agentId?: string;
  /** Full id, id prefix, or container name (with or without the leading "/"). */
  container?: string;
  ruleId?: string;
  severity?: string;
  mode?: string;
  source?: string;
  project?: string;
  /** at >= since */
  since?: Date;
  /** at < until */
  until?: Date;
  denied?: boolean;
  /** true: only acknowledged; false: only unacknowledged (0007_violation_ack). */
  acknowledged?: boolean;
  /** Project scoping (0004_auth): only violations of these projects; undefined = all. */
  projects?: string[];
  limit?: number;
  offset?: number;
  /** Keyset paging (0019_list_paging): only violations older than this one in the list order. */
  after?: ViolationPosition;
}

export interface ScanRecord {
  /** Image digest ("sha256:…") the report is keyed by. */
  digest: string;
  scanner: string;
  scannedAt: Date;
  /** The parsed report (ScanSummary from @bulkhead/shared). */
  summary: ScanSummary;
  uploadedAt: Date;
}

export interface Store {
  /** Creates tables if needed; idempotent. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  /** Cheap liveness query for /readyz. */
  ping(): Promise<void>;

  // join tokens
  insertJoinToken(t: JoinTokenRecord): Promise<void>;
  getJoinToken(id: string): Promise<JoinTokenRecord | undefined>;
  /**
   * Atomically marks the token used by `agentId` iff it is unused, unrevoked
   * and unexpired at `now`. Returns false when another enrollment won.
   */
  consumeJoinToken(id: string, agentId: string, now: Date): Promise<boolean>;

  // api keys
  insertApiKey(k: ApiKeyRecord): Promise<void>;
  getApiKey(id: string): Promise<ApiKeyRecord | undefined>;

  // identity and access (0004_auth; src/auth)
  /** Every key, newest first. */
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Sets revokedAt iff not yet revoked; false when unknown or already revoked. */
  revokeApiKey(id: string, now: Date): Promise<boolean>;
  /** Records a successful authentication. */
  touchApiKey(id: string, now: Date): Promise<void>;
  /** Newest first; `status` is judged at `now`. */
  listJoinTokens(q: { status?: JoinTokenStatus; now: Date; limit?: number; offset?: number }): Promise<JoinTokenRecord[]>;
  /** Sets revokedAt iff the token is neither used nor revoked; false otherwise. */
  revokeJoinToken(id: string, now: Date): Promise<boolean>;

  // agents
  insertAgent(a: AgentRecord): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | undefined>;
  /** Sorted by hostname, then id; every agent unless `q` limits it. */
  listAgents(q?: AgentQuery): Promise<AgentRecord[]>;
  /** Records a hello: version, host facts, status online, connectedAt/lastSeenAt = now. */
  markAgentConnected(id: string, agentVersion: string, host: HostFacts__Output, now: Date): Promise<void>;
  touchAgent(id: string, now: Date): Promise<void>;
  /**
   * Many agents' lastSeenAt at once, in one transaction (the agent link's batched heartbeats),
   * and in the same transaction their inventory state hashes (null clears one).
   */
  touchAgents?(seen: ReadonlyMap<string, Date>, stateHashes?: ReadonlyMap<string, string | null>): Promise<void>;
  setAgentStatus(id: string, status: AgentStatus, now: Date): Promise<void>;
  /** Agents whose status is online but lastSeenAt < cutoff. */
  listStaleOnlineAgents(cutoff: Date): Promise<AgentRecord[]>;

  // containers
  /** Replaces the agent's whole inventory in one transaction. */
  replaceContainers(agentId: string, containers: ContainerFacts__Output[], now: Date, o?: ContainerWriteOptions): Promise<void>;
  upsertContainer(agentId: string, c: ContainerFacts__Output, now: Date, o?: ContainerWriteOptions): Promise<void>;
  /** Marks it removed; returns its stored name and project (for the fleet event), undefined when it was never stored. */
  removeContainer(agentId: string, containerId: string, now: Date, o?: ContainerWriteOptions): Promise<{ name: string; project: string } | undefined>;
  getContainer(agentId: string, containerId: string): Promise<ContainerRecord | undefined>;
  listContainers(q: ContainerQuery): Promise<ContainerRecord[]>;

  // Optional extensions: implemented by the SQL stores; callers fall back
  // (or skip) when a Store lacks them, so test fakes need not implement them.
  /**
   * The agent's containers, removed ones included, whose id starts with
   * `idPrefix` (lower-case hex) or whose name is one of `names`.
   */
  findContainers?(agentId: string, ref: { idPrefix?: string; names?: string[] }): Promise<ContainerRecord[]>;
  /**
   * Certificate renewal (grpc/cert-renewal.ts): records the agent's new certificate iff its
   * stored serial is still `fromSerial` (exactly as stored) and it is not revoked; false
   * otherwise, so a renewal racing a revocation or another renewal changes nothing.
   * `previous` becomes prevCertSerial: the certificate still accepted until the new one is used.
   */
  replaceAgentCert?(id: string, fromSerial: string, to: { serial: string; notAfter: Date; ca?: string }, previous: string | null): Promise<boolean>;
  /** The agent connected with its current certificate `serial`: the previous one is no longer accepted. */
  retirePreviousCert?(id: string, serial: string): Promise<void>;
  /**
   * Which of `ids` are revoked (by any controller on this database): each controller asks a
   * few times a second about the agents whose streams it holds, to close the streams of agents
   * another replica revoked (grpc/agent-link-service.ts). By id, not by time, so replicas'
   * clocks do not matter.
   */
  listRevokedAgents?(ids: readonly string[]): Promise<string[]>;

  // controller replicas (0014_replica_leases, src/replicas)
  /** Records `owner` as the holder of the agent's stream until `expiresAt`, taking it from any other holder (the newest stream wins). */
  claimAgentLease?(agentId: string, owner: string, expiresAt: Date): Promise<void>;
  /**
   * A hello's read and writes at once. Reads the agent as stored; when the hello may be taken —
   * the agent is enrolled, neither revoked (status) nor with a revokedAt, and `certSerial` is
   * its current or previous certificate's serial (compared as canonicalSerial does: case and
   * leading zeros ignored) — it claimAgentLease(agentId, owner, leaseExpiresAt)s,
   * markAgentConnected(agentId, agentVersion, host, now)s and, when `trustedCas` is given,
   * stores them; otherwise it writes nothing. All in one transaction, so the checks, the lease
   * and the online status are seen together; on PostgreSQL one statement (one round trip and
   * one commit instead of four): a replica taking over a dead one's ~500 agents at once spent
   * its CPU issuing the hellos' statements (BENCHMARKS.md, failover at fleet size).
   * Returns whether it was taken and the agent as it was just before (undefined: not enrolled),
   * from which the caller explains a refusal.
   */
  acceptAgentHello?(h: AgentHelloWrite): Promise<AgentHelloResult>;
  /**
   * Extends `owner`'s leases on `agentIds` to `expiresAt` (taking again those nobody holds);
   * returns the ids another replica holds now: their streams moved there.
   */
  renewAgentLeases?(owner: string, agentIds: readonly string[], expiresAt: Date): Promise<string[]>;
  /** Drops the agent's lease if `owner` holds it. */
  releaseAgentLease?(agentId: string, owner: string): Promise<void>;
  /** Who holds the agent's stream, and until when; undefined when nobody ever did or the holder released it. */
  getAgentLease?(agentId: string): Promise<{ owner: string; expiresAt: Date } | undefined>;
  /**
   * Marks the agent offline unless another replica holds an unexpired lease on it (its stream
   * moved there) or it is revoked or already offline. True when this call made it offline: the
   * one replica that gets true raises the agent_offline alert.
   */
  markAgentOfflineUnlessHeld?(agentId: string, owner: string, now: Date): Promise<boolean>;
  /**
   * Sets back online those of `agentIds` that are offline (not revoked), seen at `seenSince` or
   * later (heartbeats flow again: never one the stale-heartbeat sweep would mark offline now),
   * while `owner` holds a live lease on them: a replica marked them offline while their holder
   * stalled, and the holder still serves their streams. Returns the ids it changed (their
   * agent_online is raised).
   */
  markHeldAgentsOnline?(owner: string, agentIds: readonly string[], now: Date, seenSince: Date): Promise<string[]>;
  /**
   * Remote commands between replicas (src/replicas/remote-commands.ts): records command `id` as
   * sent (rows older than an hour are dropped); false when the id is already recorded.
   */
  recordRemoteCommand?(id: string, now: Date): Promise<boolean>;
  /**
   * Moves a sent command to `to` ('accepted' by the holder, 'abandoned' by the caller) when it
   * is still 'sent'; true for the one caller that moved it. Exactly one of the two wins.
   */
  decideRemoteCommand?(id: string, to: 'accepted' | 'abandoned'): Promise<boolean>;
  /**
   * Claims one run of the fleet-wide job `name`: true (and the run recorded as `owner`'s at `now`)
   * when no replica ran it within the last `everyMs`; false otherwise. One conditional write, so
   * of several replicas asking at once exactly one gets true.
   */
  claimJobRun?(name: string, owner: string, now: Date, everyMs: number): Promise<boolean>;
  /** Records the CAs an agent trusts for the controller's certificate (its hello, or a TrustAck). */
  setAgentTrustedCas?(id: string, fingerprints: string[]): Promise<void>;
  /** Deletes containers marked removed before `before`; returns how many went. */
  purgeRemovedContainers?(before: Date): Promise<number>;
  /** Live (not removed) containers per state, for the metrics. */
  countContainersByState?(): Promise<Record<string, number>>;

  // policy (0002_policy)
  /** Stores a new policy version numbered one above the highest; returns it. */
  insertPolicyVersion(p: Omit<PolicyVersionRecord, 'version'>, o?: { onlyIfNone?: boolean }): Promise<PolicyVersionRecord>;
  /** The given version, or the latest when omitted; undefined when none. */
  getPolicy(version?: number): Promise<PolicyVersionRecord | undefined>;
  /** Every version, newest first, without the documents. */
  listPolicyVersions(): Promise<PolicyVersionSummary[]>;
  setAgentPolicyStatus(s: AgentPolicyStatusRecord): Promise<void>;
  getAgentPolicyStatus(agentId: string): Promise<AgentPolicyStatusRecord | undefined>;
  /** Returns false (and changes nothing) when a violation with this id is already stored. */
  insertViolation(v: ViolationRecord): Promise<boolean>;
  /** Newest first (at, then id, descending). */
  listViolations(q: ViolationQuery): Promise<ViolationRecord[]>;
  /** Violations whose alert is not committed yet (alertPending), oldest first, at most `limit`. */
  listAlertPendingViolations(limit: number): Promise<ViolationRecord[]>;
  // acknowledgements (0007_violation_ack)
  getViolation(id: string): Promise<ViolationRecord | undefined>;
  /** Records `ack` iff the violation exists and is not acknowledged yet (one conditional UPDATE); false otherwise. */
  acknowledgeViolation(id: string, ack: ViolationAck): Promise<boolean>;
  /** Clears the acknowledgement iff there is one; false otherwise. */
  unacknowledgeViolation(id: string): Promise<boolean>;
  /** Replaces any earlier report for the same digest. */
  upsertScan(s: ScanRecord): Promise<void>;
  getScan(digest: string): Promise<ScanRecord | undefined>;
  /** Newest scan first. */
  listScans(q?: { limit?: number; offset?: number }): Promise<ScanRecord[]>;

  // alerts + webhook outbox (0003_alerts): its own contract in src/alerts/alert-store.ts.
  // Optional so test fakes need not implement it; the SQL stores always do.
  readonly alerts?: AlertStore;

  // hash-chained audit trail (0004_auth): its own contract in src/audit/audit-store.ts. Optional as alerts.
  readonly audit?: AuditStore;

  // live container usage (0005_usage): its own contract in src/store/usage-store.ts. Optional as alerts.
  readonly usage?: UsageStore;

  // host audit reports (0006_audit): their own contract in src/host-audit/host-audit-store.ts. Optional as alerts.
  readonly hostAudits?: HostAuditStore;

  // tags that move (0013_image_tags): their own contract in src/images/image-tag-store.ts. Optional as alerts.
  readonly imageTags?: ImageTagStore;

  // browser sessions and the fleet event stream (0016_sessions_events): src/auth/session-store.ts,
  // src/events/event-store.ts. Optional as alerts: without them POST /v1/session and GET /v1/events answer 503.
  readonly sessions?: SessionStore;
  readonly events?: FleetEventStore;

  // image signature verdicts agents reported (0021_signature_verdicts): src/signatures/signature-verdict-store.ts.
  // Optional as alerts: without it the dry-run knows no verdict (every signed digest undecided).
  readonly signatureVerdicts?: SignatureVerdictStore;
  // the console overview's counts (src/fleet): GET /v1/summary answers 503 without it.
  readonly fleetSummary?: FleetSummaryStore;
}

/** The writes of an accepted hello (Store.acceptAgentHello). */
export interface AgentHelloWrite {
  agentId: string;
  /** The replica taking the stream lease, until `leaseExpiresAt`. */
  owner: string;
  leaseExpiresAt: Date;
  agentVersion: string;
  host: HostFacts__Output;
  now: Date;
  /** The CAs the agent trusts for the controller's certificate; undefined leaves them as stored. */
  trustedCas?: string[];
  /** The serial of the certificate the agent connected with, canonical (canonicalSerial). */
  certSerial: string;
}

/** What acceptAgentHello read and did. */
export interface AgentHelloResult {
  /** True when the hello was taken (lease, online status and any trusted CAs written). */
  accepted: boolean;
  /** The agent as stored just before the hello; undefined when it is not enrolled. */
  before?: AgentHelloState;
}

/** How a container write (snapshot or delta) treats the agent's row. */
export interface ContainerWriteOptions {
  /**
   * Clears the agent's stored inventory state hash atomically with the write (same
   * transaction, or the same statement): a hash in the store must never describe containers
   * other than those stored, and a write that changes them makes it stale.
   */
  clearStateHash?: boolean;
}

/** The columns of an agent a hello decides on. */
export interface AgentHelloState {
  /** Its hostname as enrolled (never changes): named in the alerts of its stream's reports. Absent from stores that do not read it. */
  hostname?: string;
  status: AgentStatus;
  revokedAt: Date | null;
  certSerial: string;
  prevCertSerial?: string;
  trustedCas?: string[];
  stateHash?: string;
  /** The policy status stored for it (version, applied, error), absent before its first report. */
  policyStatus?: Pick<AgentPolicyStatusRecord, 'version' | 'applied' | 'error'>;
}

/**
 * Whether a hello with the certificate `serial` (canonical) may be taken for an agent stored
 * as `a`: not revoked, and the certificate is its current or previous one. The SQL of
 * PostgresStore.acceptAgentHello says the same; the store tests hold both to it.
 */
export function helloAcceptable(a: AgentHelloState, serial: string): boolean {
  if (a.status === 'revoked' || a.revokedAt !== null) return false;
  return canonicalSerial(a.certSerial) === serial || (a.prevCertSerial !== undefined && canonicalSerial(a.prevCertSerial) === serial);
}
