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

export interface Database {
  join_tokens: JoinTokensTable;
  api_keys: ApiKeysTable;
  agents: AgentsTable;
  containers: ContainersTable;
  container_labels: ContainerLabelsTable;
}

export type Db = Kysely<Database>;
