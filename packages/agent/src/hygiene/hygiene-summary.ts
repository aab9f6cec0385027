// Owns the image hygiene part of the periodic host audit as it travels to the
// controller (AuditReport.hygiene_json): counts, the bytes stale images hold,
// and the stale and dangling images themselves — bounded, because a build
// host can keep thousands of images and the full per-image report
// (image-hygiene.ts) is for the local `prune`, not for the wire.
import type { ImageHygieneEntry, ImageHygieneReport, ImageStatus } from './image-hygiene';

/** Stale or dangling images listed at most (most idle first); the counts stay exact. */
export const HYGIENE_SUMMARY_MAX_IMAGES = 100;

export interface HygieneSummaryImage {
  id: string;
  tags: string[];
  sizeBytes: number;
  status: ImageStatus;
  idleDays: number;
  /** ISO time of last use by a container; null when none is known. */
  lastUsedAt: string | null;
}

export interface HygieneSummary {
  /** ISO time of the report. */
  at: string;
  unusedDays: number;
  counts: { images: number; inUse: number; used: number; neverUsed: number; dangling: number; stale: number };
  /** Bytes of the stale images (as `docker images` counts them). */
  staleBytes: number;
  /** Stale images and dangling ones, most idle first, at most `HYGIENE_SUMMARY_MAX_IMAGES`. */
  images: HygieneSummaryImage[];
  /** True when `images` was cut to the limit. */
  truncated: boolean;
}

export function summarizeHygiene(r: ImageHygieneReport, max = HYGIENE_SUMMARY_MAX_IMAGES): HygieneSummary {
  const count = (s: ImageStatus): number => r.images.filter((i) => i.status === s).length;
  // Report order is most idle first; a dangling image that is not yet stale is still worth listing.
  const listed = r.images.filter((i) => i.stale || i.status === 'dangling');
  return {
    at: new Date(r.at).toISOString(),
    unusedDays: r.unusedDays,
    counts: {
      images: r.images.length,
      inUse: count('in-use'),
      used: count('used'),
      neverUsed: count('never-used'),
      dangling: count('dangling'),
      stale: r.images.filter((i) => i.stale).length,
    },
    staleBytes: r.staleBytes,
    images: listed.slice(0, max).map(toSummaryImage),
    truncated: listed.length > max,
  };
}

function toSummaryImage(i: ImageHygieneEntry): HygieneSummaryImage {
  return {
    id: i.id,
    tags: i.tags,
    sizeBytes: i.sizeBytes,
    status: i.status,
    idleDays: i.idleDays,
    lastUsedAt: i.lastUsedAtMs === null ? null : new Date(i.lastUsedAtMs).toISOString(),
  };
}
