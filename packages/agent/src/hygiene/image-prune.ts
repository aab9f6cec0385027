// Owns the scoped image prune: remove stale images (see image-hygiene.ts)
// that match the caller's scope, and record exactly what was untagged and
// deleted. Conservative by construction:
// - never an image a container (running OR stopped) was made from, and
//   never with force: dockerd's own "image is being used" refusal stays;
// - a tagged image loses only the tags that match `include` and not
//   `exclude`; it is deleted only when its last tag goes;
// - untagged (dangling) images are pruned only when `dangling` is true —
//   by default only when no `include` scope was given;
// - `dryRun` reports the same records without removing anything.
import type { HygieneDocker, ImageHygieneEntry } from './image-hygiene';
import { imageHygieneReport } from './image-hygiene';

export interface PruneOptions {
  docker: HygieneDocker;
  /** Only images idle at least this many days. Required: there is no default age for deleting things. */
  olderThanDays: number;
  /** Report what would be removed without removing it. Default false. */
  dryRun?: boolean;
  /** Tag globs ("registry.example.com/team/*", "*:pr-*"); a tag must match one. Default: every tag. */
  include?: readonly string[];
  /** Tag globs never removed ("*:stable", "bulkhead/*"). */
  exclude?: readonly string[];
  /** Also remove dangling (untagged) images. Default: true when `include` is not given, else false. */
  dangling?: boolean;
  /** Image labels that must all match (value "*" = present). */
  labels?: Record<string, string>;
  /** Remembered last use per image id, as for the report. */
  lastUsed?: ReadonlyMap<string, number>;
  now?: () => number;
}

export interface PrunedImage {
  id: string;
  /** Tags it had before. */
  tags: string[];
  sizeBytes: number;
  /** Why it qualified: "never used, idle 41.2 days", "dangling", … */
  reason: string;
  /** Tags removed (or that would be). */
  untagged: string[];
  /** True when the image itself is (or would be) deleted: no tag left. */
  deleted: boolean;
  /** Layer/image ids dockerd reported deleted (empty in a dry run). */
  deletedIds: string[];
  error?: string;
}

export interface PruneResult {
  at: number;
  dryRun: boolean;
  olderThanDays: number;
  removed: PrunedImage[];
  skipped: Array<{ id: string; tags: string[]; why: string }>;
  /** Sum of sizeBytes of deleted images. */
  reclaimedBytes: number;
}

/** `*` any run of characters, `?` one character; everything else literal. */
export function globToRegExp(glob: string): RegExp {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`);
}

function labelsMatch(have: Record<string, string>, want: Record<string, string> | undefined): boolean {
  if (!want) return true;
  return Object.entries(want).every(([k, v]) => (v === '*' ? k in have : have[k] === v));
}

function reasonOf(e: ImageHygieneEntry): string {
  const idle = `idle ${e.idleDays.toFixed(1)} days`;
  if (e.status === 'dangling') return `dangling, ${idle}`;
  if (e.status === 'never-used') return `never used by a container, ${idle}`;
  return `not used by a container for ${e.idleDays.toFixed(1)} days`;
}

export async function pruneImages(o: PruneOptions): Promise<PruneResult> {
  if (!(o.olderThanDays >= 0)) throw new TypeError('pruneImages: olderThanDays must be a number ≥ 0');
  const dryRun = o.dryRun === true;
  const include = o.include?.map(globToRegExp);
  const exclude = (o.exclude ?? []).map(globToRegExp);
  const pruneDangling = o.dangling ?? o.include === undefined;
  const report = await imageHygieneReport({
    docker: o.docker, unusedDays: o.olderThanDays,
    ...(o.lastUsed ? { lastUsed: o.lastUsed } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  const result: PruneResult = { at: report.at, dryRun, olderThanDays: o.olderThanDays, removed: [], skipped: [], reclaimedBytes: 0 };
  for (const e of report.images) {
    if (!e.stale) continue;
    if (!labelsMatch(e.labels, o.labels)) continue;
    if (e.containers.total > 0) {
      result.skipped.push({ id: e.id, tags: e.tags, why: `used by stopped container(s) ${e.containers.names.join(', ')}` });
      continue;
    }
    let untag: string[];
    if (e.tags.length === 0) {
      if (!pruneDangling) continue;
      untag = [];
    } else {
      untag = e.tags.filter((t) => (!include || include.some((r) => r.test(t))) && !exclude.some((r) => r.test(t)));
      if (untag.length === 0) continue;
    }
    const deleted = untag.length === e.tags.length;
    const rec: PrunedImage = { id: e.id, tags: e.tags, sizeBytes: e.sizeBytes, reason: reasonOf(e), untagged: untag, deleted, deletedIds: [] };
    if (!dryRun) {
      try {
        // Tag by tag: removing an id with several tags needs force, which we never use.
        const responses = e.tags.length === 0 ? [await o.docker.getImage(e.id).remove()] : [];
        for (const t of untag) responses.push(await o.docker.getImage(t).remove());
        for (const r of responses.flat() as Array<{ Deleted?: string }>) if (r && typeof r.Deleted === 'string') rec.deletedIds.push(r.Deleted);
      } catch (err) {
        rec.error = (err as Error).message;
        rec.deleted = false;
      }
    }
    if (rec.deleted) result.reclaimedBytes += e.sizeBytes;
    result.removed.push(rec);
  }
  return result;
}
