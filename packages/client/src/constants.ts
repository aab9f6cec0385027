// Owns the API's small vocabularies that both sides of the wire need: the
// controller validates and stores them, the CLI and the console offer them as
// choices. Pure data and pure helpers (no I/O, nothing from Node), defined
// once here; the controller imports them from @bulkhead/client.

/** Roles, least first (src/auth/roles.ts in the controller ranks them). */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What POST /v1/containers/:agent/:id/actions can do to a container. */
export const MANUAL_ACTIONS = ['pause', 'unpause', 'kill', 'stop', 'quarantine', 'release'] as const;
export type ManualAction = (typeof MANUAL_ACTIONS)[number];

/**
 * Longest stop timeout accepted. The API's connections idle out after 30 s
 * (server.ts connectionTimeout), and the controller waits for a stop a few
 * seconds beyond its timeout, so a longer one could never be answered.
 */
export const MAX_STOP_TIMEOUT_SECONDS = 20;

export const ALERT_TYPES = [
  'violation',
  'action',
  'action_failed',
  'authz_denied',
  'lockdown_finding',
  'agent_offline',
  'agent_online',
  'cert_expiring',
  /** A repository:tag ran as another image than before (src/images/tag-tracker.ts). */
  'image_tag_moved',
  /** Only from `POST /v1/webhooks/:id/test`; never matched by endpoint filters. */
  'test',
] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

/** Lowest first. `info` sits below the policy severities (low … critical). */
export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type AlertSeverity = (typeof SEVERITIES)[number];

/** The result of verifying the audit trail's hash chain (GET /v1/audit-log/verify, `bulkhead-controller audit verify`). */
export interface AuditVerifyResult {
  ok: boolean;
  /** Rows examined (all of them when ok). */
  checked: number;
  /** The first row that does not verify; null when ok. */
  firstBadSeq: number | null;
  /** Why that row does not verify. */
  reason: string | null;
  /** The last row's seq and hash (null when the log is empty): keep a copy elsewhere to detect truncation. */
  head: { seq: number; hash: string } | null;
}

/** The human summary both CLIs print. */
export function describeVerifyResult(r: AuditVerifyResult): string {
  const n = (k: number) => `${k} entr${k === 1 ? 'y' : 'ies'}`;
  if (r.ok) {
    if (!r.head) return 'audit chain OK: the log is empty\n';
    return `audit chain OK: ${n(r.checked)} verified; head seq ${r.head.seq} hash ${r.head.hash}\n` +
      'Keep the head hash somewhere else: a chain alone cannot show its newest entries being cut off.\n';
  }
  return `audit chain BROKEN at seq ${r.firstBadSeq}: ${r.reason} (${n(r.checked)} examined)\n`;
}
