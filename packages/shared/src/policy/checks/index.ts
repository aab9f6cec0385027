// The rule catalogue: every check type a policy rule can name, by group.
import type { CatalogueEntry } from './define';
import { IMAGE_CHECKS } from './images';
import { HOST_CHECKS } from './host';
import { ISOLATION_CHECKS } from './isolation';

export type { CatalogueEntry } from './define';

/** All catalogue entries in documentation order: images, host, isolation. */
export const CHECKS: readonly CatalogueEntry[] = [...IMAGE_CHECKS, ...HOST_CHECKS, ...ISOLATION_CHECKS] as unknown as readonly CatalogueEntry[];

const BY_TYPE: ReadonlyMap<string, CatalogueEntry> = new Map(CHECKS.map((c) => [c.type, c]));

/** The catalogue entry for a check type, or undefined. */
export function getCheck(type: string): CatalogueEntry | undefined {
  return BY_TYPE.get(type);
}

/** Check type names in catalogue order. */
export const CHECK_TYPES: readonly string[] = CHECKS.map((c) => c.type);
