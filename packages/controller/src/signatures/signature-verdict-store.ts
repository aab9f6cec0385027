// Owns the persistence contract of the image signature verdicts agents report
// (migration 0021_signature_verdicts): one row per verdict key (sha256 of the rule's
// verification parameters + the repo digest), the most recently decided verdict any
// agent reported winning. In the store, not per replica, so every controller replica's
// policy dry-run sees every agent's verdicts, whichever replica holds its stream.
import type { SignatureVerdict } from '@bulkhead/shared';

export interface ReportedVerdictRow {
  /** Hex sha256 of signatureVerdictKey(params, repoDigest). */
  keySha256: string;
  verdict: SignatureVerdict;
}

export interface StoredVerdict {
  /** The agent whose report is stored (the newest decided verdict for the key). */
  agentId: string;
  verdict: SignatureVerdict;
  /** When a controller last stored a report of it (controller clock). */
  reportedAt: Date;
}

export interface SignatureVerdictStore {
  /**
   * Stores what `agentId` reported. Per key the verdict decided last (checkedAt, the agent's
   * clock) wins; an equal checkedAt (a re-send after a reconnect) refreshes the row. Returns
   * how many rows were written.
   */
  recordSignatureVerdicts(agentId: string, rows: readonly ReportedVerdictRow[], now: Date): Promise<number>;
  /** The stored verdicts of these keys (absent keys are not in the map). */
  getSignatureVerdicts(keys: readonly string[]): Promise<Map<string, StoredVerdict>>;
  /** Deletes every verdict an agent reported (revoked: its word counts for nothing). */
  forgetSignatureVerdicts(agentId: string): Promise<number>;
  /** Deletes verdicts last reported before `before`, and all but the `keep` most recently reported. */
  pruneSignatureVerdicts(before: Date, keep: number): Promise<number>;
}
