// Owns the persistence contract of browser sessions (0016_sessions_events). A session is
// stored under sha256(session id): a copy of the database gives no one a working cookie.
export interface SessionRecord {
  /** sha256 hex of the session id. */
  idHash: string;
  keyId: string;
  createdAt: Date;
  lastUsedAt: Date;
  /** Absolute end of the session. */
  expiresAt: Date;
  revokedAt: Date | null;
  clientIp: string;
}

export interface SessionStore {
  insertSession(s: SessionRecord): Promise<void>;
  getSession(idHash: string): Promise<SessionRecord | undefined>;
  /** Records use; only ever moves last_used_at forward. */
  touchSession(idHash: string, at: Date): Promise<void>;
  /** Revokes one session; false when it was unknown or already revoked. */
  revokeSession(idHash: string, at: Date): Promise<boolean>;
  /**
   * Revokes the key's live sessions (not revoked, not past their lifetime at `at`) beyond the
   * newest `keep`, oldest first; returns the id hashes revoked.
   */
  capSessions(keyId: string, keep: number, at: Date): Promise<string[]>;
  /** Deletes sessions that ended (revoked, or past `expiredBefore`); returns how many. */
  pruneSessions(expiredBefore: Date): Promise<number>;
}
