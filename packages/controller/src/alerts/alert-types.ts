// Owns what an alert is: its types, severities (ordered), the input other
// modules hand to AlertService.raise(), and the stored record. Pure data and
// small pure helpers — no I/O — so the API, the link and the CLI share them.

// The types and severities are defined once in @bulkhead/client (the CLI and the console offer them).
import { ALERT_TYPES, SEVERITIES, type AlertSeverity, type AlertType } from '@bulkhead/client';

export { ALERT_TYPES, SEVERITIES, type AlertSeverity, type AlertType };

export function severityRank(s: AlertSeverity): number {
  return SEVERITIES.indexOf(s);
}

export function isSeverity(s: unknown): s is AlertSeverity {
  return typeof s === 'string' && (SEVERITIES as readonly string[]).includes(s);
}

export function isAlertType(s: unknown): s is AlertType {
  return typeof s === 'string' && (ALERT_TYPES as readonly string[]).includes(s);
}

/** Used when the caller gives no severity. */
export const DEFAULT_SEVERITY: Readonly<Record<AlertType, AlertSeverity>> = {
  violation: 'medium',
  action: 'medium',
  action_failed: 'high',
  authz_denied: 'medium',
  lockdown_finding: 'high',
  agent_offline: 'high',
  agent_online: 'info',
  cert_expiring: 'medium',
  image_tag_moved: 'high',
  test: 'info',
};

/**
 * Agent state changes are transitions, not repeats: grouping "offline" into
 * an earlier "offline" across an "online" would leave a receiver believing
 * the agent is up. They are never grouped.
 */
export const UNGROUPED_TYPES: ReadonlySet<AlertType> = new Set<AlertType>(['agent_offline', 'agent_online', 'test']);

/** What a caller hands to AlertService.raise(). Only `type` and `message` are required. */
export interface AlertInput {
  type: AlertType;
  message: string;
  /** Default: DEFAULT_SEVERITY[type]. */
  severity?: AlertSeverity;
  /** When it happened. Default: the service's clock. */
  time?: Date;
  agentId?: string;
  /** Host name of the agent. */
  host?: string;
  containerId?: string;
  containerName?: string;
  image?: string;
  project?: string;
  ruleId?: string;
  /** Enforcement action: kill | stop | pause | quarantine | limit | deny … */
  action?: string;
  /** Its result: ok | failed | skipped | escalated … */
  result?: string;
  /**
   * The violation report this alert is raised for: its alertPending mark is cleared in the
   * same transaction as the alert is written, so the alert is raised once across crashes.
   */
  violationId?: string;
}

export interface AlertRecord {
  id: string;                 // "alr_<26 chars>"
  type: AlertType;
  severity: AlertSeverity;
  /** First occurrence. */
  time: Date;
  /** Latest occurrence folded into this alert (== time when count is 1). */
  lastSeenAt: Date;
  /** Occurrences grouped into this alert. */
  count: number;
  /** type|rule|agent|container; repeats within the window share it. */
  groupKey: string;
  agentId: string | null;
  host: string | null;
  containerId: string | null;
  containerName: string | null;
  image: string | null;
  project: string | null;
  ruleId: string | null;
  action: string | null;
  result: string | null;
  message: string;
}

export function groupKeyOf(a: Pick<AlertInput, 'type' | 'ruleId' | 'agentId' | 'containerId' | 'containerName'>): string {
  // The container id is per host, so the agent is part of the key; a name
  // stands in when a door knows no id (e.g. an authz denial of a create).
  return [a.type, a.ruleId ?? '', a.agentId ?? '', a.containerId || a.containerName || ''].join('|');
}
