// The persistence contract of the audit trail (table audit_log, migration
// 0004_auth). Rows are appended, never updated: each carries the hash of its
// predecessor and its own hash over both (see audit-chain.ts), so an edited,
// removed or reordered row breaks the chain from that row on.
// KyselyAuditStore implements it for SQLite and PostgreSQL.

/** 'agent': an agent acting over its AgentLink stream (certificate renewal); actorId is the agent id. */
export type AuditActorKind = 'key' | 'token' | 'session' | 'anonymous' | 'agent';

/** What happened, as the API's onSend hook saw it (before the answer left). */
export interface AuditEntry {
  at: Date;
  actorKind: AuditActorKind;
  /** Key id ("ak_…"); "" for anonymous. */
  actorId: string;
  /** The key's name; "" for anonymous. */
  actorName: string;
  method: string;
  /** Route pattern, e.g. "/v1/keys/:id". */
  route: string;
  /** Request path without the query string. */
  path: string;
  /** e.g. "keys.create", "auth.failed". */
  action: string;
  /** Ids the call was about (path parameters, created ids, …). */
  target: Record<string, string>;
  clientIp: string;
  /** HTTP status of the answer. */
  status: number;
  /** The error code of a refused call; "" on success. */
  code: string;
}

/** The columns the chain hashes, exactly as stored. */
export interface AuditChainFields {
  seq: number;
  /** Epoch milliseconds. */
  at: number;
  actorKind: string;
  actorId: string;
  actorName: string;
  method: string;
  route: string;
  path: string;
  action: string;
  /** Canonical JSON object. */
  targetJson: string;
  clientIp: string;
  status: number;
  code: string;
}

export interface AuditRecord extends AuditChainFields {
  prevHash: string;
  hash: string;
}

export interface AuditQuery {
  actorId?: string;
  action?: string;
  method?: string;
  status?: number;
  /** at >= since */
  since?: Date;
  /** at < until */
  until?: Date;
  limit?: number;
  offset?: number;
}

export interface AuditStore {
  /**
   * Appends one entry after the current last row, computing seq and hash in
   * one transaction. Callers serialize appends (AuditLog's queue); a lost
   * race between two controllers on one database is retried.
   */
  append(e: AuditEntry): Promise<AuditRecord>;
  /** Newest first. */
  list(q: AuditQuery): Promise<AuditRecord[]>;
  /** Rows with seq > afterSeq in ascending order, at most `limit` (the verifier's cursor). */
  scan(afterSeq: number, limit: number): Promise<AuditRecord[]>;
  /** The last row's seq and hash; undefined when the log is empty. */
  head(): Promise<{ seq: number; hash: string } | undefined>;
}
