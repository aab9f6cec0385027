// Owns the PolicyBundle the controller pushes to agents: the policy in force
// as JSON, the scanner summaries its vulnerability rules need, and a sha256
// over both so an agent can tell a corrupted or unchanged bundle.
import { createHash } from 'node:crypto';
import type { PolicyVersionRecord, ScanRecord } from '../store/store';

/**
 * The largest bundle the controller sends. Agents set their gRPC receive limit
 * to exactly this (packages/agent/src/link/controller-link.ts), because a bundle
 * an agent cannot receive protects nothing: the agent keeps its old policy and
 * the link fails with RESOURCE_EXHAUSTED. docs/limits.md.
 */
export const MAX_POLICY_BUNDLE_BYTES = 8 * 1024 * 1024;

/**
 * Room for the protobuf framing around the two JSON strings (field tags, lengths,
 * version, the sha256 hex): about 100 bytes, counted generously.
 */
export const BUNDLE_OVERHEAD_BYTES = 1024;

/**
 * Scan summaries carried per bundle, newest first, until this many bytes of
 * JSON; older scans beyond the budget are left out (and logged by the caller).
 * A policy must leave this much room under MAX_POLICY_BUNDLE_BYTES (checked
 * when it is applied), so scans are never pushed out by a policy.
 */
export const DEFAULT_SCANS_BUDGET_BYTES = 3 * 1024 * 1024;

/**
 * Tag pins (image-tag-pinned rules) carried per bundle: at most this many bytes of JSON,
 * taken before the scans' budget. About 100 bytes a pin: some 5 000 pinned tags.
 */
export const TAG_PINS_BUDGET_BYTES = 512 * 1024;

/** A PolicyBundle (proto) with every field set. */
export interface PolicyBundleMessage {
  version: number;
  policyJson: string;
  scansJson: string;
  /** "" when the policy pins no tags. */
  tagPinsJson: string;
  sha256: string;
}

export interface BuiltBundle {
  bundle: PolicyBundleMessage;
  /** Bytes on the wire, framing counted generously (BUNDLE_OVERHEAD_BYTES). */
  bytes: number;
  /** Scans included / available. */
  scansIncluded: number;
  scansTotal: number;
  /** Tag pins included / available. */
  pinsIncluded: number;
  pinsTotal: number;
}

/**
 * The bundle for `policy` and `scans` (newest first, as store.listScans returns them). Scans
 * fill `budgetBytes`, or what `maxBytes` leaves after the policy if that is less, so the bundle
 * never exceeds `maxBytes` unless the policy alone does.
 */
export function buildBundle(
  policy: Pick<PolicyVersionRecord, 'version' | 'json'>,
  scans: readonly ScanRecord[],
  budgetBytes = DEFAULT_SCANS_BUDGET_BYTES,
  maxBytes = MAX_POLICY_BUNDLE_BYTES,
  tagPins: ReadonlyArray<readonly [key: string, digest: string]> = [],
): BuiltBundle {
  const policyBytes = Buffer.byteLength(policy.json);
  const pins = pinsJson(tagPins, Math.min(TAG_PINS_BUDGET_BYTES, maxBytes - policyBytes - BUNDLE_OVERHEAD_BYTES));
  const tagPinsJson = pins.json;
  budgetBytes = Math.min(budgetBytes, maxBytes - policyBytes - Buffer.byteLength(tagPinsJson) - BUNDLE_OVERHEAD_BYTES);
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
    bundle: { version: policy.version, policyJson, scansJson, tagPinsJson, sha256: bundleSha256(policyJson, scansJson, tagPinsJson) },
    bytes: policyBytes + Buffer.byteLength(scansJson) + Buffer.byteLength(tagPinsJson) + BUNDLE_OVERHEAD_BYTES,
    scansIncluded: parts.length,
    scansTotal: scans.length,
    pinsIncluded: pins.included,
    pinsTotal: tagPins.length,
  };
}

/** The pins as a JSON object within `budget` bytes, in the order given (the caller puts the most important first); "" for none. */
function pinsJson(pins: ReadonlyArray<readonly [string, string]>, budget: number): { json: string; included: number } {
  if (pins.length === 0 || budget < 2) return { json: '', included: 0 };
  const parts: string[] = [];
  let size = 2;
  for (const [k, v] of pins) {
    const part = `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    const bytes = Buffer.byteLength(part) + 1;
    if (size + bytes > budget) break;
    parts.push(part);
    size += bytes;
  }
  return { json: parts.length === 0 ? '' : '{' + parts.join(',') + '}', included: parts.length };
}

/**
 * sha256 hex of policy_json, scans_json and tag_pins_json, as the proto documents. An empty
 * tag_pins_json adds nothing, so a bundle without pins hashes as it did before pins existed.
 */
export function bundleSha256(policyJson: string, scansJson: string, tagPinsJson = ''): string {
  return createHash('sha256').update(policyJson).update(scansJson).update(tagPinsJson).digest('hex');
}
