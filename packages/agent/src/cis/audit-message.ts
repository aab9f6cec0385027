// Owns turning one audit run (CIS report, lockdown findings, fixes applied)
// into the wire's AuditReport (proto/bulkhead/v1/agent_link.proto). The
// reports travel as JSON text so the controller can store and serve them as
// they are (GET /v1/agents/{id}/audit) without a proto message per check.
import type { AuditReport as AuditReportMessage } from '@bulkhead/shared';
import type { FixRecord } from '../lockdown/fixes';
import type { LockdownFinding } from '../lockdown/lockdown-options';
import type { HygieneSummary } from '../hygiene/hygiene-summary';
import type { PruneSummary } from '../hygiene/prune-summary';
import type { CisReport } from './cis-types';

/**
 * `score` is the CIS report's percentage of scored checks that pass (0–100,
 * comparable across hosts with different numbers of containers); the
 * docker-bench-style integer score stays inside cis_json.
 */
export function toAuditReportMessage(run: {
  cis: CisReport;
  lockdown: readonly LockdownFinding[];
  fixes?: readonly FixRecord[];
  /** The image hygiene summary, or why it could not be made; absent = not run ("" on the wire). */
  hygiene?: HygieneSummary | { error: string } | undefined;
  /** The prune policy's record, or why it could not run; absent = policy off ("" on the wire). */
  prune?: PruneSummary | { error: string } | undefined;
  takenAtMs: number;
}): AuditReportMessage {
  return {
    takenAtMs: run.takenAtMs,
    cisJson: JSON.stringify(run.cis),
    lockdownJson: JSON.stringify(run.lockdown),
    score: run.cis.summary.percent,
    fixesJson: JSON.stringify(run.fixes ?? []),
    hygieneJson: run.hygiene === undefined ? '' : JSON.stringify(run.hygiene),
    pruneJson: run.prune === undefined ? '' : JSON.stringify(run.prune),
  };
}
