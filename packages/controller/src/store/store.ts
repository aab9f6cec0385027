// The controller's persistence contract. One implementation per database
// (SQLite embedded by default, PostgreSQL later) behind this interface, so
// the gRPC server, REST API and CLI never see SQL.
import type { ContainerFacts__Output, HostFacts__Output } from '@bulkhead/shared';

export type AgentStatus = 'online' | 'offline' | 'revoked';

export interface AgentRecord {
  id: string;                 // "agt_<26 chars>"; the certificate CN
  hostname: string;
  status: AgentStatus;
  agentVersion: string;
  host: HostFacts__Output | null;   // last hello's host facts
  certSerial: string;               // lower-case hex
  certNotAfter: Date;
  enrolledAt: Date;
  lastSeenAt: Date | null;          // last message of any kind
  connectedAt: Date | null;         // start of the current/last stream
  revokedAt: Date | null;
  containerCount: number;
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
}

export interface ContainerQuery {
  agentId?: string;
  state?: string;
  /** Substring match on image ref ("busybox" matches "bulkhead-test/busybox:1"). */
  image?: string;
  /** "key" (label present) or "key=value". May repeat; all must match. */
  labels?: string[];
  includeRemoved?: boolean;
  limit?: number;
  offset?: number;
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

  // agents
  insertAgent(a: AgentRecord): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | undefined>;
  listAgents(): Promise<AgentRecord[]>;
  /** Records a hello: version, host facts, status online, connectedAt/lastSeenAt = now. */
  markAgentConnected(id: string, agentVersion: string, host: HostFacts__Output, now: Date): Promise<void>;
  touchAgent(id: string, now: Date): Promise<void>;
  setAgentStatus(id: string, status: AgentStatus, now: Date): Promise<void>;
  /** Agents whose status is online but lastSeenAt < cutoff. */
  listStaleOnlineAgents(cutoff: Date): Promise<AgentRecord[]>;

  // containers
  /** Replaces the agent's whole inventory in one transaction. */
  replaceContainers(agentId: string, containers: ContainerFacts__Output[], now: Date): Promise<void>;
  upsertContainer(agentId: string, c: ContainerFacts__Output, now: Date): Promise<void>;
  removeContainer(agentId: string, containerId: string, now: Date): Promise<void>;
  getContainer(agentId: string, containerId: string): Promise<ContainerRecord | undefined>;
  listContainers(q: ContainerQuery): Promise<ContainerRecord[]>;

  // Optional extensions: implemented by the SQL stores; callers fall back
  // (or skip) when a Store lacks them, so test fakes need not implement them.
  /**
   * The agent's containers, removed ones included, whose id starts with
   * `idPrefix` (lower-case hex) or whose name is one of `names`.
   */
  findContainers?(agentId: string, ref: { idPrefix?: string; names?: string[] }): Promise<ContainerRecord[]>;
  /** Deletes containers marked removed before `before`; returns how many went. */
  purgeRemovedContainers?(before: Date): Promise<number>;
}
