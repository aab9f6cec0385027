// Owns which tag pins go to agents: the first digest of every tag that an
// `image-tag-pinned` rule of the policy in force could judge. A policy without
// such a rule sends none, so its bundles are byte-for-byte what they were.
import { compileGlob, tagIdentity, type Policy } from '@bulkhead/shared';
import type { TagPinRecord } from './image-tag-store';

export const TAG_PINNED_CHECK = 'image-tag-pinned';

/** Most pins per bundle; the bundle's byte budget (TAG_PINS_BUDGET_BYTES) may carry fewer. */
export const MAX_TAG_PINS = 5_000;

/** Most tags read from the store to choose the pins from (newest first). */
export const MAX_TAG_ROWS_READ = 100_000;

type Matcher = (s: string) => boolean;

/** A predicate for "repository", "tag" that some image-tag-pinned rule covers; undefined when no rule pins anything. */
export function pinFilter(policy: Policy): ((repository: string, tag: string) => boolean) | undefined {
  const rules: Array<{ tags: Matcher[]; repos: Matcher[] | undefined }> = [];
  for (const r of policy.spec.rules) {
    if (r.check.type !== TAG_PINNED_CHECK) continue;
    const tags = Array.isArray(r.check.tags) ? (r.check.tags as unknown[]).filter((t): t is string => typeof t === 'string') : ['v*']; // the check's default
    const repos = Array.isArray(r.check.repositories) ? (r.check.repositories as unknown[]).filter((t): t is string => typeof t === 'string') : [];
    if (tags.length === 0) continue;
    rules.push({ tags: tags.map(compileGlob), repos: repos.length > 0 ? repos.map(compileGlob) : undefined });
  }
  if (rules.length === 0) return undefined;
  return (repository, tag) => rules.some((r) => r.tags.some((m) => m(tag)) && (r.repos === undefined || r.repos.some((m) => m(repository))));
}

/** The pins for the bundle, as [key, digest] pairs, newest tags first (the ones a budget keeps). */
export function selectPins(policy: Policy, pins: readonly TagPinRecord[]): Array<[string, string]> {
  const want = pinFilter(policy);
  if (!want) return [];
  const out: Array<[string, string]> = [];
  for (const p of pins) if (want(p.repository, p.tag)) out.push([`${p.repository}:${p.tag}`, p.digest]);
  return out;
}

/** The key a tag pin has for an image ref (for tests and the CLI): "docker.io/library/nginx:1.27". */
export function pinKeyOf(imageRef: string): string | undefined {
  return tagIdentity({ imageRef, imageDigest: '', imageId: '' })?.key;
}
