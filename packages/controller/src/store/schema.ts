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
  enrolled_at: Int;
  last_seen_at: Int | null;
  connected_at: Int | null;
  revoked_at: Int | null;
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
}

export interface ScansTable {
  digest: string;
  scanner: string;
  scanned_at: Int;
  /** ScanSummary as JSON. */
  summary_json: string;
  uploaded_at: Int;
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
}

export type Db = Kysely<Database>;
