// Owns the PolicyBundle the controller pushes to agents: the policy in force
// as JSON, the scanner summaries its vulnerability rules need, and a sha256
// over both so an agent can tell a corrupted or unchanged bundle.
import { createHash } from 'node:crypto';
import type { PolicyVersionRecord, ScanRecord } from '../store/store';

/**
 * Scan summaries carried per bundle, newest first, until this many bytes of
 * JSON. grpc-js clients refuse messages over 4 MiB by default, and a bundle
 * the agent cannot receive protects nothing; older scans beyond the budget
 * are left out (and logged by the caller).
 */
export const DEFAULT_SCANS_BUDGET_BYTES = 3 * 1024 * 1024;

/** A PolicyBundle (proto) with every field set. */
export interface PolicyBundleMessage {
  version: number;
  policyJson: string;
  scansJson: string;
  sha256: string;
}

export interface BuiltBundle {
  bundle: PolicyBundleMessage;
  /** Scans included / available. */
  scansIncluded: number;
  scansTotal: number;
}

/** The bundle for `policy` and `scans` (newest first, as store.listScans returns them). */
export function buildBundle(policy: PolicyVersionRecord, scans: readonly ScanRecord[], budgetBytes = DEFAULT_SCANS_BUDGET_BYTES): BuiltBundle {
  const parts: string[] = [];
  let size = 2;
  for (const s of scans) {
    const json = JSON.stringify(s.summary);
    const bytes = Buffer.byteLength(json) + 1;
    if (size + bytes > budgetBytes) break;
    parts.push(json);
    size += bytes;
  }
  const scansJson = '[' + parts.join(',') + ']';
  const policyJson = policy.json;
  return {
    bundle: { version: policy.version, policyJson, scansJson, sha256: bundleSha256(policyJson, scansJson) },
    scansIncluded: parts.length,
    scansTotal: scans.length,
  };
}

/** sha256 hex of policy_json followed by scans_json, as the proto documents. */
export function bundleSha256(policyJson: string, scansJson: string): string {
  return createHash('sha256').update(policyJson).update(scansJson).digest('hex');
}
