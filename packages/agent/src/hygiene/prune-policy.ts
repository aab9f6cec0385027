// Owns the scope of an image prune as an operator gives it — the
// `--image-prune-*` flags of `bulkhead-agent run` and the flags of
// `bulkhead-agent prune-images` — checked once, at start, into the options
// pruneImages() takes (image-prune.ts). Nothing here removes anything.
import { InvalidArgumentError } from 'commander';
import { BulkheadError } from '@bulkhead/shared';
import type { PruneOptions } from './image-prune';

/** A checked prune scope. */
export interface ImagePrunePolicy {
  /** Only images no container used (and that did not arrive) for this many days. */
  olderThanDays: number;
  /** Tag globs; a tag must match one. undefined = every tag. */
  include: string[] | undefined;
  /** Tag globs never removed. */
  exclude: string[];
  /** Dangling (untagged) images too; undefined = pruneImages' default (yes unless `include` is given). */
  dangling: boolean | undefined;
  /** Image labels that must all match (value "*" = present); undefined = any. */
  labels: Record<string, string> | undefined;
  /** Record what would be removed, remove nothing. */
  dryRun: boolean;
}

/** The flags as commander hands them over (strings, repeated values collected). */
export interface ImagePruneInput {
  /** Days, a non-negative number ("30", "0.5"). */
  olderThan?: string | number | undefined;
  /** Globs; comma-separated entries are split. */
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  dangling?: boolean | undefined;
  /** `key=value`, `key=*` or `key` (= present); comma-separated entries are split. */
  label?: readonly string[] | undefined;
  dryRun?: boolean | undefined;
}

/** Tag characters (reference grammar) plus the glob's `*` and `?`. */
const GLOB = /^[A-Za-z0-9._\-/:@*?]+$/;
const LABEL_KEY = /^[A-Za-z0-9._\-/]+$/;

/**
 * Checks the flags. `flag` names them in errors the way the caller spells
 * them ("image-prune-include" on `run`, "include" on `prune-images`).
 */
export function resolvePrunePolicy(input: ImagePruneInput, o: { defaultOlderThanDays: number; flag: (name: keyof ImagePruneInput) => string }): ImagePrunePolicy {
  const bad = (msg: string): BulkheadError => new BulkheadError('BK_ERR_CONFIG_INVALID', msg);
  let olderThanDays = o.defaultOlderThanDays;
  if (input.olderThan !== undefined && input.olderThan !== '') {
    const raw = String(input.olderThan).trim();
    olderThanDays = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isFinite(olderThanDays)) throw bad(`${o.flag('olderThan')} must be a number of days ≥ 0, got "${String(input.olderThan)}"`);
  }
  const globs = (name: 'include' | 'exclude'): string[] => {
    const list = splitList(input[name]);
    for (const g of list) if (!GLOB.test(g)) throw bad(`${o.flag(name)} "${g}" is not a tag glob (image name characters, * and ?)`);
    return list;
  };
  const include = input.include === undefined ? undefined : globs('include');
  if (include !== undefined && include.length === 0) throw bad(`${o.flag('include')} is empty; leave it out to prune every tag`);
  let labels: Record<string, string> | undefined;
  for (const l of splitList(input.label)) {
    const i = l.indexOf('=');
    const key = i < 0 ? l : l.slice(0, i);
    const value = i < 0 ? '*' : l.slice(i + 1);
    if (!LABEL_KEY.test(key)) throw bad(`${o.flag('label')} "${l}" is not key=value (or key, for "present")`);
    labels = { ...labels, [key]: value };
  }
  return { olderThanDays, include, exclude: globs('exclude'), dangling: input.dangling, labels, dryRun: input.dryRun === true };
}

/** The options of pruneImages() for a policy (the engine and remembered uses are added by the caller). */
export function pruneOptionsOf(p: ImagePrunePolicy): Omit<PruneOptions, 'docker' | 'lastUsed' | 'now'> {
  return {
    olderThanDays: p.olderThanDays,
    dryRun: p.dryRun,
    ...(p.include !== undefined ? { include: p.include } : {}),
    ...(p.exclude.length > 0 ? { exclude: p.exclude } : {}),
    ...(p.dangling !== undefined ? { dangling: p.dangling } : {}),
    ...(p.labels !== undefined ? { labels: p.labels } : {}),
  };
}

/** One line for logs and the one-shot's text: "tags bk/*, not *:stable, dangling too, idle ≥ 30 days". */
export function describePrunePolicy(p: ImagePrunePolicy): string {
  const parts = [p.include ? `tags ${p.include.join(', ')}` : 'every tag'];
  if (p.exclude.length > 0) parts.push(`not ${p.exclude.join(', ')}`);
  const dangling = p.dangling ?? p.include === undefined;
  parts.push(dangling ? 'dangling images too' : 'no dangling images');
  if (p.labels) parts.push(`labels ${Object.entries(p.labels).map(([k, v]) => (v === '*' ? k : `${k}=${v}`)).join(', ')}`);
  parts.push(`idle ≥ ${p.olderThanDays} day(s)`);
  if (p.dryRun) parts.push('dry run');
  return parts.join('; ');
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/**
 * For on/off flags that also come from the environment: commander turns a
 * plain boolean flag on whenever its variable is set — even to "0" — which
 * is the wrong way to fail for a flag that deletes things. These flags take
 * an optional value instead (`--image-prune`, `--image-prune off`,
 * BULKHEAD_IMAGE_PRUNE=off), parsed strictly here.
 */
export function parseOnOff(v: string): boolean {
  const s = v.trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  throw new InvalidArgumentError(`expected on/off (true/false, yes/no, 1/0), got "${v}"`);
}

export function splitList(v: readonly string[] | undefined): string[] {
  return (v ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}

/** commander argParser for repeatable flags. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
