// The rule catalogue: every check type a policy rule can name, by group.
import type { CatalogueEntry } from './define';
import { IMAGE_CHECKS } from './images';
import { SIGNATURE_CHECKS } from './signatures';
import { HOST_CHECKS } from './host';
import { ISOLATION_CHECKS } from './isolation';
import { LIMIT_CHECKS } from './limits';
import { USAGE_CHECKS } from './usage';

export type { CatalogueEntry } from './define';

/** All catalogue entries in documentation order: images, host, isolation (static limits, create-time host limits, then live usage). */
export const CHECKS: readonly CatalogueEntry[] = [...IMAGE_CHECKS, ...SIGNATURE_CHECKS, ...HOST_CHECKS, ...ISOLATION_CHECKS, ...LIMIT_CHECKS, ...USAGE_CHECKS] as unknown as readonly CatalogueEntry[];

const BY_TYPE: ReadonlyMap<string, CatalogueEntry> = new Map(CHECKS.map((c) => [c.type, c]));

/** The catalogue entry for a check type, or undefined. */
export function getCheck(type: string): CatalogueEntry | undefined {
  return BY_TYPE.get(type);
}

/** Check type names in catalogue order. */
export const CHECK_TYPES: readonly string[] = CHECKS.map((c) => c.type);

export { USAGE_CHECK_TYPES, MAX_USAGE_FOR_SECONDS, isUsageRule, usageWindowMs, heldAbove } from './usage';
export { signatureVerdictKey, signatureParamsKey, signatureParamsOfRule, signedRepoDigest, signatureRequirement, MAX_SIGNATURE_SIGNERS } from './signatures';
export type { ImageSignatureParamsValue } from './signatures';
