// Owns which tag pins go to agents and what "seen in a rule's scope" means.
//
// An `image-tag-pinned` rule WITHOUT a scope pins each matching tag to the first digest
// the whole fleet ran it as (the image_tags table: history from before the rule existed
// counts). A rule WITH a scope pins each matching tag to the first digest seen running on
// a container in that scope — the same scope matching the evaluator does (host labels of
// the container's host, container labels, images, projects; exemptions do not narrow what
// is seen) — recorded per rule in image_tag_scope_pins under the rule's id and a key of its
// scope, tags and repositories: editing any of them starts the rule's pins afresh, from the
// containers running in the new scope at that moment and each container that runs after.
// A policy without such a rule sends no pins, so its bundles are byte-for-byte what they were.
import { createHash } from 'node:crypto';
import { compileGlob, hasRuleScope, tagIdentity, tagPinKey, type Policy, type Rule } from '@bulkhead/shared';
import type { ScopedPinRecord, TagPinRecord } from './image-tag-store';

export const TAG_PINNED_CHECK = 'image-tag-pinned';

/** Most pins per bundle; the bundle's byte budget (TAG_PINS_BUDGET_BYTES) may carry fewer. */
export const MAX_TAG_PINS = 5_000;

/** Most tags read from the store to choose the pins from (newest first). */
export const MAX_TAG_ROWS_READ = 100_000;

type Matcher = (s: string) => boolean;

/** An image-tag-pinned rule, compiled: which tags and repositories it pins. */
export interface PinRule {
  rule: Rule;
  /** The rule has a scope: its pins are its own (image_tag_scope_pins). */
  scoped: boolean;
  /** For scoped rules: sha256 (hex, 32 chars) of the scope, tags and repositories as written. */
  scopeKey: string;
  covers: (repository: string, tag: string) => boolean;
}

const compiled = new WeakMap<Policy, PinRule[]>();

/** The policy's image-tag-pinned rules, compiled once per policy object. */
export function pinRules(policy: Policy): PinRule[] {
  let out = compiled.get(policy);
  if (out) return out;
  out = [];
  for (const r of policy.spec.rules) {
    if (r.check.type !== TAG_PINNED_CHECK) continue;
    const tagList = Array.isArray(r.check.tags) ? (r.check.tags as unknown[]).filter((t): t is string => typeof t === 'string') : ['v*']; // the check's default
    const repoList = Array.isArray(r.check.repositories) ? (r.check.repositories as unknown[]).filter((t): t is string => typeof t === 'string') : [];
    if (tagList.length === 0) continue;
    const tags: Matcher[] = tagList.map(compileGlob);
    const repos: Matcher[] | undefined = repoList.length > 0 ? repoList.map(compileGlob) : undefined;
    const scoped = hasRuleScope(r.scope);
    out.push({
      rule: r,
      scoped,
      scopeKey: scoped ? scopeKeyOf(r, tagList, repoList) : '',
      covers: (repository, tag) => tags.some((m) => m(tag)) && (repos === undefined || repos.some((m) => m(repository))),
    });
  }
  compiled.set(policy, out);
  return out;
}

/** Whether the policy has any image-tag-pinned rule (a new sighting may then change the bundle). */
export function pinsTags(policy: Policy): boolean {
  return pinRules(policy).length > 0;
}

/** A predicate for "repository", "tag" that some image-tag-pinned rule WITHOUT a scope covers (fleet-wide pins); undefined when none. */
export function pinFilter(policy: Policy): ((repository: string, tag: string) => boolean) | undefined {
  const rules = pinRules(policy).filter((r) => !r.scoped);
  if (rules.length === 0) return undefined;
  return (repository, tag) => rules.some((r) => r.covers(repository, tag));
}

/** The scoped rules of the policy, with their scope keys. */
export function scopedPinRules(policy: Policy): PinRule[] {
  return pinRules(policy).filter((r) => r.scoped);
}

/**
 * The pins for the bundle, as [key, digest] pairs (keys from tagPinKey()): the fleet-wide
 * pins of rules without a scope, newest tags first, then each scoped rule's own pins, newest first.
 */
export function selectPins(policy: Policy, pins: readonly TagPinRecord[], scoped: readonly ScopedPinRecord[] = []): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const want = pinFilter(policy);
  if (want) for (const p of pins) if (want(p.repository, p.tag)) out.push([`${p.repository}:${p.tag}`, p.digest]);
  const rules = scopedPinRules(policy);
  for (const p of scoped) {
    const r = rules.find((x) => x.rule.id === p.ruleId && x.scopeKey === p.scopeKey);
    if (r && r.covers(p.repository, p.tag)) out.push([tagPinKey(`${p.repository}:${p.tag}`, r.rule), p.digest]);
  }
  return out;
}

/** The key a tag pin has for an image ref (for tests and the CLI): "docker.io/library/nginx:1.27". */
export function pinKeyOf(imageRef: string): string | undefined {
  return tagIdentity({ imageRef, imageDigest: '', imageId: '' })?.key;
}

function scopeKeyOf(rule: Rule, tags: string[], repositories: string[]): string {
  return createHash('sha256').update(canonicalJson({ scope: rule.scope ?? {}, tags, repositories })).digest('hex').slice(0, 32);
}

/** JSON with object keys sorted at every level: the same scope written in another key order has the same key. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
