// Owns the contract for storing the agents' host audit reports (lockdown
// findings, CIS Docker Benchmark report, fixes applied, image hygiene;
// migration 0006_audit; the image prune record, 0008_audit_prune): the
// latest report of each agent plus a short history. Not to be confused with
// src/audit, the API's audit trail.

/** How many reports are kept per agent (the latest included); older ones are deleted on insert. */
export const HOST_AUDIT_HISTORY = 10;

/**
 * Reports whose prune record names images (removed, would be, or failed)
 * are kept longer: the newest this many per agent, beyond HOST_AUDIT_HISTORY
 * — what was deleted from a host must stay on record longer than ten hours.
 */
export const HOST_AUDIT_PRUNE_HISTORY = 50;

export type FindingSeverity = 'info' | 'low' | 'medium' | 'high' | 'critical';

/** Counts computed when a report arrives, so history listings need not parse the reports. */
export interface HostAuditSummary {
  /** CIS: passed scored checks / (passed + warned scored checks), 0–100. */
  score: number;
  cis: { checks: number; score: number; pass: number; warn: number; info: number; note: number; percent: number };
  lockdown: Record<FindingSeverity, number> & { total: number };
  fixes: { applied: number; failed: number };
  /** null when the agent sent no hygiene summary. */
  hygiene: { images: number; stale: number; dangling: number; staleBytes: number } | null;
  /**
   * The image prune record's counts; null when the agent's prune policy is
   * off. `error` when it could not run. (Optional: reports stored before
   * 0008_audit_prune have no such key.)
   */
  prune?: PruneCounts | null;
  /** Lockdown findings ("id|subject") not in the agent's previous report; every finding of its first report. */
  newFindings: string[];
  /** Lockdown findings of the previous report that are gone from this one. */
  resolvedFindings: string[];
}

export interface HostAuditRecord {
  agentId: string;
  /** When the agent ran the audit (its clock); unique per agent. */
  takenAt: Date;
  /** When the controller stored it. */
  receivedAt: Date;
  summary: HostAuditSummary;
  /** docker-bench-security log.json shape, as the agent sent it. */
  cisJson: string;
  /** JSON array of lockdown findings. */
  lockdownJson: string;
  /** JSON array of fix records. */
  fixesJson: string;
  /** JSON hygiene summary; null when the agent sent none. */
  hygieneJson: string | null;
  /** JSON image prune record; null (or absent) when the agent's prune policy is off. */
  pruneJson?: string | null;
}

export interface PruneCounts {
  dryRun: boolean;
  /** Records: images deleted or untagged (would be, in a dry run), failures included. */
  removed: number;
  deleted: number;
  failed: number;
  reclaimedBytes: number;
  error?: string;
}

/** A stored report's prune record (GET /v1/agents/:id/audit?format=prune). */
export interface HostAuditPruneEntry {
  agentId: string;
  takenAt: Date;
  receivedAt: Date;
  /** JSON prune record as the agent sent it. */
  pruneJson: string;
}

/** A stored report without its documents (history listings). */
export type HostAuditHeader = Pick<HostAuditRecord, 'agentId' | 'takenAt' | 'receivedAt' | 'summary'>;

export interface HostAuditStore {
  /**
   * Stores a report and deletes the agent's reports beyond the newest `keep`
   * — except those whose prune record names images, of which the newest
   * `keepPruned` (default HOST_AUDIT_PRUNE_HISTORY) stay.
   * Returns false (and changes nothing) when a report of this agent with the
   * same takenAt is already stored — an agent resends an unacknowledged report.
   */
  insertHostAudit(r: HostAuditRecord, keep?: number, keepPruned?: number): Promise<boolean>;
  /** The agent's newest report (by takenAt), with its documents. */
  latestHostAudit(agentId: string): Promise<HostAuditRecord | undefined>;
  /** The agent's stored reports, newest first, without documents. */
  listHostAudits(agentId: string, limit?: number): Promise<HostAuditHeader[]>;
  /** The agent's stored prune records, newest first (reports without one left out). */
  listHostAuditPrunes(agentId: string, limit?: number): Promise<HostAuditPruneEntry[]>;
}
