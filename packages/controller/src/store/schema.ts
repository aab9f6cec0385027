// The controller's relational schema as kysely sees it. Column types are the
// portable subset shared by SQLite and PostgreSQL: times are integer epoch
// milliseconds (bigint), booleans are 0/1 integers, JSON is text. Keep this
// file in step with migrations.ts — the migrations create what is typed here.
import type { Kysely } from 'kysely';

/**
 * PostgreSQL returns bigint and count(*) as strings, SQLite as numbers; row
 * mappers pass every integer column through `toNumber` in kysely-store.ts.
 */
type Int = number;

export interface JoinTokensTable {
  id: string;
  secret_hash: string;
  created_at: Int;
  expires_at: Int;
  used_at: Int | null;
  used_by_agent: string | null;
  revoked_at: Int | null;
  description: string;
}

export interface ApiKeysTable {
  id: string;
  name: string;
  secret_hash: string;
  role: string;
  created_at: Int;
  expires_at: Int | null;
  revoked_at: Int | null;
  /** 0004_auth: JSON string[]; "[]" = every project. */
  projects_json: string;
  /** 0004_auth. */
  last_used_at: Int | null;
  /** 0004_auth: minting key id, or "init". */
  created_by: string;
  /** 0018_api_key_actions: JSON string[] of route actions the key is limited to; "[]" = none (every route its role allows). */
  actions_json: string;
}

export interface AgentsTable {
  id: string;
  hostname: string;
  status: string;
  agent_version: string;
  /** HostFacts__Output as JSON, or null before the first hello. */
  host_json: string | null;
  cert_serial: string;
  cert_not_after: Int;
  /** 0010_cert_grace: the serial the last renewal replaced, until the new certificate is used. */
  prev_cert_serial: string | null;
  /** 0020_agent_state_hash: hash of the stored inventory as the agent reported it; null when unknown. */
  state_hash?: string | null;
  enrolled_at: Int;
  last_seen_at: Int | null;
  connected_at: Int | null;
  revoked_at: Int | null;
  /** 0009_cert_ca: fingerprint of the CA that issued cert_serial; null before. */
  cert_ca: string | null;
  /** 0009_cert_ca: JSON array of CA fingerprints the agent trusts; null until it reports. */
  trusted_cas: string | null;
}

export interface ContainersTable {
  agent_id: string;
  id: string;
  name: string;
  image_ref: string;
  state: string;
  /** ContainerFacts__Output as JSON. */
  facts_json: string;
  updated_at: Int;
  /** 0 or 1. */
  removed: Int;
  /** 0004_auth: the container's project (facts.project, else the bulkhead.project label); "" when none. */
  project: string;
}

/**
 * One row per container label, so label filters are an indexed EXISTS in SQL
 * and LIMIT/OFFSET stay correct (filtering labels in JS after paging would not).
 */
export interface ContainerLabelsTable {
  agent_id: string;
  container_id: string;
  key: string;
  value: string;
}

// ---- 0002_policy (policy engineer) ------------------------------------------

/** One row per applied policy version; rows are never updated. */
export interface PoliciesTable {
  version: Int;
  name: string;
  /** The source text as submitted (YAML or JSON). */
  yaml: string;
  /** The validated Policy document as JSON (what agents receive). */
  json: string;
  /** sha256 hex of `json`. */
  sha256: string;
  created_at: Int;
  /** API key id, or "init" for the default policy. */
  created_by: string;
  comment: string;
}

export interface AgentPolicyStatusTable {
  agent_id: string;
  version: Int;
  /** 0 or 1. */
  applied: Int;
  error: string;
  updated_at: Int;
}

export interface ViolationsTable {
  /** The agent's report id: re-sent reports are ignored. */
  id: string;
  agent_id: string;
  container_id: string;
  container_name: string;
  image_ref: string;
  project: string;
  rule_id: string;
  severity: string;
  mode: string;
  source: string;
  message: string;
  evidence_json: string;
  /** 0 or 1. */
  denied: Int;
  action_type: string;
  action_result: string;
  action_error: string;
  action_duration_ms: number;
  at: Int;
  policy_version: Int;
  exempted_by: string;
  // ---- 0007_violation_ack: an operator's acknowledgement; all null until acknowledged ----
  ack_at: Int | null;
  /** API key id of the credential that acknowledged (a token's key). */
  ack_by_key_id: string | null;
  /** That key's name at the time. */
  ack_by_name: string | null;
  ack_comment: string | null;
  // ---- 0011_violation_alert_pending ----
  /** 1 while the violation's alert is not committed yet; null once it is (or none is due). */
  alert_pending: Int | null;
}

export interface ScansTable {
  digest: string;
  scanner: string;
  scanned_at: Int;
  /** ScanSummary as JSON. */
  summary_json: string;
  uploaded_at: Int;
}

// ---- alerts + webhook outbox (migration 0003_alerts; owned by src/alerts) ----

export interface AlertsTable {
  id: string;
  type: string;
  severity: string;
  /** Index into SEVERITIES, so "at least high" is a range query. */
  severity_rank: Int;
  /** First occurrence. */
  time_at: Int;
  last_seen_at: Int;
  count: Int;
  group_key: string;
  agent_id: string | null;
  host: string | null;
  container_id: string | null;
  container_name: string | null;
  image: string | null;
  project: string | null;
  rule_id: string | null;
  action: string | null;
  result: string | null;
  message: string;
}

export interface WebhookEndpointsTable {
  id: string;
  name: string;
  url: string;
  format: string;
  min_severity: string;
  /** JSON string[]. */
  types_json: string;
  /** JSON string[]. */
  projects_json: string;
  /** "whsec_…", as-is (HMAC signing needs the key; the file is 0600). */
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Int | null;
  /** JSON Record<string, string>. */
  headers_json: string;
  /** 0 or 1. */
  enabled: Int;
  /** 0 or 1. */
  allow_unsafe_target: Int;
  disabled_reason: string | null;
  created_at: Int;
  updated_at: Int;
}

/** The outbox: one row per (alert, endpoint); the id is the `webhook-id`. */
export interface WebhookDeliveriesTable {
  id: string;
  alert_id: string;
  endpoint_id: string;
  /** pending | delivered | dead */
  status: string;
  attempts: Int;
  retry_base: Int;
  next_attempt_at: Int;
  /** A worker's lease; claimable again once it is in the past. */
  lease_until: Int | null;
  claim_token: string | null;
  created_at: Int;
  updated_at: Int;
  delivered_at: Int | null;
  last_status_code: Int | null;
  last_error: string | null;
  dead_reason: string | null;
}

export interface WebhookDeliveryAttemptsTable {
  delivery_id: string;
  attempt: Int;
  at: Int;
  status_code: Int | null;
  latency_ms: Int;
  error: string | null;
  outcome: string;
  next_attempt_at: Int | null;
}

// ---- 0004_auth (src/auth, src/audit) -------------------------------------------

/**
 * The hash-chained audit trail. `hash` = sha256(prev_hash || canonical JSON of
 * the other columns); see src/audit/audit-chain.ts. Rows are never updated.
 */
export interface AuditLogTable {
  seq: Int;
  at: Int;
  /** key | token | anonymous */
  actor_kind: string;
  actor_id: string;
  actor_name: string;
  method: string;
  /** The route pattern, e.g. /v1/keys/:id. */
  route: string;
  /** The request path without the query string. */
  path: string;
  action: string;
  /** Canonical JSON object of target ids. */
  target_json: string;
  client_ip: string;
  status: Int;
  /** BK_ERR_… of a refused request; "" on success. */
  code: string;
  prev_hash: string;
  hash: string;
}

// ---- 0005_usage (src/store/kysely-usage-store.ts) -----------------------------------

/** The latest live usage of each running container, as its agent last reported it. */
/** 0024_summary_counts: how many live (removed = 0) containers an agent has per project and state; kept by triggers on containers. */
export interface ContainerCountsTable {
  agent_id: string;
  project: string;
  state: string;
  n: Int;
}

export interface ContainerUsageTable {
  agent_id: string;
  container_id: string;
  /** When the agent read the container's cgroup (epoch ms). */
  taken_at: Int;
  received_at: Int;
  /** Of one core. */
  cpu_percent: number;
  /** Of the CPU quota; null when the container has none. */
  cpu_percent_of_quota: number | null;
  /** 0 = unlimited. */
  cpu_limit_cores: number;
  memory_bytes: Int;
  /** 0 = unlimited. */
  memory_limit_bytes: Int;
  pids: Int;
  /** 0 = unlimited. */
  pids_limit: Int;
  // 0012_usage_resources: beyond the cgroup, null = not measured.
  writable_bytes: Int | null;
  log_bytes: Int | null;
  blkio_read_bytes: Int | null;
  blkio_write_bytes: Int | null;
  blkio_read_ops: Int | null;
  blkio_write_ops: Int | null;
  net_rx_bytes: Int | null;
  net_tx_bytes: Int | null;
  net_rx_packets: Int | null;
  net_tx_packets: Int | null;
  net_rx_dropped: Int | null;
  net_tx_dropped: Int | null;
  net_rx_bytes_per_sec: number | null;
  net_tx_bytes_per_sec: number | null;
  tcp_connections: Int | null;
  sockets: Int | null;
}

// ---- 0022_usage_history (src/store/kysely-usage-store.ts) ---------------------------

/** A container's recent usage: a ring of fixed-width encoded points (store/usage-history.ts). */
export interface ContainerUsageHistoryTable {
  agent_id: string;
  container_id: string;
  /** Time of the newest point (epoch ms of the agent's reading). */
  last_at: Int;
  /** Oldest first; USAGE_POINT_CHARS per point, at most USAGE_HISTORY_POINTS. */
  points: string;
}

// ---- 0006_audit (src/host-audit) ----------------------------------------------------

/** One host audit report of an agent; the newest HOST_AUDIT_HISTORY per agent are kept. */
export interface HostAuditsTable {
  agent_id: string;
  /** When the agent ran the audit (epoch ms); unique per agent. */
  taken_at: Int;
  received_at: Int;
  /** CIS percent of scored checks passing, 0–100. */
  score: number;
  /** HostAuditSummary (src/host-audit/host-audit-store.ts). */
  summary_json: string;
  cis_json: string;
  lockdown_json: string;
  fixes_json: string;
  hygiene_json: string | null;
  // ---- 0008_audit_prune: the image prune record; null / 0 when the agent's prune policy is off ----
  prune_json: string | null;
  /** Records in prune_json (images removed, would be in a dry run, or failed). */
  pruned: Int;
}

/** A digest a repository:tag ran as (migration 0013_image_tags, src/images). */
export interface ImageTagsTable {
  /** "registry/path", e.g. "docker.io/library/nginx". */
  repository: string;
  tag: string;
  /** The manifest digest ("sha256:…"), or the image id when the image has no repo digest. */
  digest: string;
  /** The image id (config digest) first seen with it; "" when unknown. */
  image_id: string;
  first_seen_at: Int;
  last_seen_at: Int;
  first_agent_id: string;
  /** 1 while the image_tag_moved alert of this digest is not committed; 0 once it is; null when it is no move. */
  alert_pending: Int | null;
}

/** One container seen running a repository:tag at a digest (0013_image_tags). */
export interface ImageTagSightingsTable {
  agent_id: string;
  container_id: string;
  container_name: string;
  repository: string;
  tag: string;
  digest: string;
  first_seen_at: Int;
  last_seen_at: Int;
}

/**
 * The pin of a tag for a scoped image-tag-pinned rule: the first digest seen running on a
 * container in the rule's scope (0017_image_tag_scope_pins, src/images/tag-pins.ts).
 */
export interface ImageTagScopePinsTable {
  rule_id: string;
  /** The rule's scope key: sha256 prefix of its scope, tags and repositories as written. */
  scope_key: string;
  repository: string;
  tag: string;
  digest: string;
  image_id: string;
  first_seen_at: Int;
  agent_id: string;
  container_id: string;
}

/** Which replica holds an agent's stream, until when (0014_replica_leases, src/replicas). */
export interface AgentLeasesTable {
  agent_id: string;
  /** The holding replica's id (random per process). */
  owner: string;
  /** ms since the epoch, the holder's clock; renewed while the stream lives. */
  expires_at: Int;
}

/** When a fleet-wide periodic job last ran, and on which replica (0014_replica_leases). */
export interface FleetJobsTable {
  name: string;
  owner: string;
  last_run_at: Int;
}

export interface RemoteCommandsTable {
  id: string;
  /** 'sent', then 'accepted' or 'abandoned' (once). */
  state: string;
  created_at: Int;
}

export interface Database {
  join_tokens: JoinTokensTable;
  api_keys: ApiKeysTable;
  agents: AgentsTable;
  containers: ContainersTable;
  container_labels: ContainerLabelsTable;
  policies: PoliciesTable;
  agent_policy_status: AgentPolicyStatusTable;
  violations: ViolationsTable;
  scans: ScansTable;
  // alerts + webhook outbox (migration 0003_alerts, src/alerts)
  alerts: AlertsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_delivery_attempts: WebhookDeliveryAttemptsTable;
  // audit trail (migration 0004_auth, src/audit)
  audit_log: AuditLogTable;
  // live usage (migration 0005_usage, src/store/kysely-usage-store.ts)
  container_usage: ContainerUsageTable;
  // 0024_summary_counts: live containers per agent, project and state, kept by triggers
  container_counts: ContainerCountsTable;
  container_usage_history: ContainerUsageHistoryTable;
  // host audit reports (migration 0006_audit, src/host-audit)
  host_audits: HostAuditsTable;
  // tags that move (migration 0013_image_tags, src/images)
  image_tags: ImageTagsTable;
  image_tag_sightings: ImageTagSightingsTable;
  // controller replicas (migration 0014_replica_leases, src/replicas)
  agent_leases: AgentLeasesTable;
  fleet_jobs: FleetJobsTable;
  remote_commands: RemoteCommandsTable;
  // browser sessions and the event stream (migration 0016_sessions_events, src/auth, src/events)
  sessions: SessionsTable;
  fleet_events: FleetEventsTable;
  // tag pins per rule scope (migration 0017_image_tag_scope_pins, src/images)
  image_tag_scope_pins: ImageTagScopePinsTable;
  // image signature verdicts agents reported (migration 0021_signature_verdicts, src/signatures)
  signature_verdicts: SignatureVerdictsTable;
}

export interface SignatureVerdictsTable {
  /** Hex sha256 of signatureVerdictKey(rule params, repo digest). */
  key_sha256: string;
  /** The agent that reported the stored (newest decided) verdict. */
  agent_id: string;
  /** The SignatureVerdict as JSON (validated before it is stored). */
  verdict_json: string;
  /** The verdict's checkedAt (agent clock, ms): the newest wins. */
  checked_at: Int;
  /** When a controller last stored a report of it (controller clock, ms): pruned by it. */
  reported_at: Int;
}

export interface SessionsTable {
  /** sha256 hex of the session id the browser holds; the id itself is never stored. */
  id_hash: string;
  key_id: string;
  created_at: Int;
  last_used_at: Int;
  /** The absolute end of the session (created + the maximum lifetime, never past the key's expiry). */
  expires_at: Int;
  revoked_at: Int | null;
  client_ip: string;
}

export interface FleetEventsTable {
  seq: Int;
  at: Int;
  type: string;
  /** '' = none; a project name is only ever that project (never "every scope"). */
  project: string;
  /** 1 = seen by every credential whatever its scope (project is then ''). */
  every_scope: Int;
  agent_id: string | null;
  data_json: string;
}

export type Db = Kysely<Database>;
