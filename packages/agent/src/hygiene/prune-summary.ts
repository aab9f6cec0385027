// Owns the image prune record as it travels to the controller
// (AuditReport.prune_json) and as `bulkhead-agent prune-images` prints it:
// what the policy removed (or, in a dry run, would have), with sizes,
// reasons and errors, exact counts and the bytes reclaimed — the list
// bounded, because one prune on a build host can remove thousands of images
// (the agent's log keeps one line per image either way).
import type { PruneResult, PrunedImage } from './image-prune';
import type { ImagePrunePolicy } from './prune-policy';

/** Records listed at most; the counts stay exact. Failures are listed first. */
export const PRUNE_SUMMARY_MAX_IMAGES = 100;

export interface PruneSummaryImage {
  id: string;
  /** Tags it had before. */
  tags: string[];
  /** Tags removed (or that would be). */
  untagged: string[];
  /** The image itself is (or would be) gone: it had no other tag. */
  deleted: boolean;
  sizeBytes: number;
  reason: string;
  error?: string;
}

export interface PruneSummary {
  /** ISO time the prune looked at the engine. */
  at: string;
  dryRun: boolean;
  olderThanDays: number;
  /** The scope it ran with. */
  scope: { include: string[] | null; exclude: string[]; dangling: boolean; labels: Record<string, string> | null };
  counts: {
    /** Records: images deleted or untagged (would be, in a dry run), failures included. */
    removed: number;
    /** Images deleted (would be). */
    deleted: number;
    /** Images that only lost some tags. */
    untagged: number;
    /** Removals dockerd refused or that failed. */
    failed: number;
    /** Stale images in scope kept because a stopped container was made from them. */
    skipped: number;
  };
  /** Bytes of the images deleted (0 in a dry run; `wouldReclaimBytes` says what it would be). */
  reclaimedBytes: number;
  /** Dry run: bytes of the images that would be deleted. */
  wouldReclaimBytes: number;
  images: PruneSummaryImage[];
  /** True when `images` was cut to the limit. */
  truncated: boolean;
}

export function summarizePrune(r: PruneResult, policy: ImagePrunePolicy, max = PRUNE_SUMMARY_MAX_IMAGES): PruneSummary {
  const failed = r.removed.filter((i) => i.error !== undefined);
  // Failures first (they need a look), then by size: the list shows what mattered when cut.
  const listed = [...failed, ...r.removed.filter((i) => i.error === undefined).sort((a, b) => b.sizeBytes - a.sizeBytes)];
  return {
    at: new Date(r.at).toISOString(),
    dryRun: r.dryRun,
    olderThanDays: r.olderThanDays,
    scope: {
      include: policy.include ?? null,
      exclude: policy.exclude,
      dangling: policy.dangling ?? policy.include === undefined,
      labels: policy.labels ?? null,
    },
    counts: {
      removed: r.removed.length,
      deleted: r.removed.filter((i) => i.deleted).length,
      untagged: r.removed.filter((i) => !i.deleted && i.error === undefined).length,
      failed: failed.length,
      skipped: r.skipped.length,
    },
    reclaimedBytes: r.reclaimedBytes,
    wouldReclaimBytes: r.dryRun ? r.removed.filter((i) => i.deleted).reduce((n, i) => n + i.sizeBytes, 0) : 0,
    images: listed.slice(0, max).map(toSummaryImage),
    truncated: listed.length > max,
  };
}

function toSummaryImage(i: PrunedImage): PruneSummaryImage {
  return {
    id: i.id, tags: i.tags, untagged: i.untagged, deleted: i.deleted, sizeBytes: i.sizeBytes, reason: i.reason,
    ...(i.error !== undefined ? { error: i.error } : {}),
  };
}

