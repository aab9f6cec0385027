// Options of the disk-usage reader (disk-usage.ts), with their defaults and
// start-up validation.
import { BulkheadError, parseDuration } from '@bulkhead/shared';

export interface DiskUsageReaderOptions {
  /**
   * The engine's data root (`docker info` DockerRootDir, e.g. /var/lib/docker), as the
   * agent sees it. Needed to find `local` log-driver files (`<root>/containers/<id>/local-logs/`)
   * when it cannot be derived from an overlay2 upper dir or a json-file LogPath.
   */
  dataRoot?: string | undefined;
  /**
   * Directory entries (files, dirs) the writable-layer walk may visit per read(), spread over
   * the containers whose tree is being (re)scanned, resuming where it stopped. Bounds the cost
   * of one tick whatever the trees hold. Default 5000.
   */
  entryBudget?: number | undefined;
  /**
   * A container's writable layer is walked again at least this often, even when none of its
   * watched directories changed (the staleness bound for changes deep in the tree).
   * Default 2 min. Accepts ms or a duration like "2m".
   */
  rescanInterval?: number | string | undefined;
  /** The largest files of each writable layer, re-stat'ed on every read() to see them grow. Default 8. */
  largestFiles?: number | undefined;
  /**
   * Directories of each writable layer whose mtime is checked on every read() (a created,
   * deleted or renamed entry in one of them starts a rescan): the layer's root and the
   * shallowest directories under it, up to this many. Default 16.
   */
  watchedDirs?: number | undefined;
  /** Directories at most this deep (root = 0) are candidates for watchedDirs. Default 2. */
  watchDepth?: number | undefined;
  /** Targets whose cheap per-read stats (logs, watched dirs, largest files) run at once. Default 16. */
  concurrency?: number | undefined;
}

export interface ResolvedDiskUsageReaderOptions {
  dataRoot: string | undefined;
  entryBudget: number;
  rescanIntervalMs: number;
  largestFiles: number;
  watchedDirs: number;
  watchDepth: number;
  concurrency: number;
}

export const DISK_USAGE_DEFAULTS = {
  entryBudget: 5000, rescanIntervalMs: 120_000, largestFiles: 8, watchedDirs: 16, watchDepth: 2, concurrency: 16,
} as const;

/** Adds defaults; throws BK_ERR_CONFIG_INVALID for values that cannot work. */
export function resolveDiskUsageReaderOptions(o: DiskUsageReaderOptions = {}): ResolvedDiskUsageReaderOptions {
  const bad = (msg: string): never => {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `disk usage reader: ${msg}`);
  };
  const int = (v: number | undefined, def: number, min: number, name: string): number => {
    const n = v ?? def;
    if (!Number.isInteger(n) || n < min) bad(`${name} must be an integer ≥ ${min}, got ${String(v)}`);
    return n;
  };
  const rescanIntervalMs = parseDuration(o.rescanInterval ?? DISK_USAGE_DEFAULTS.rescanIntervalMs, 'disk usage rescanInterval');
  if (rescanIntervalMs < 1000) bad(`rescanInterval must be at least 1 s, got ${String(o.rescanInterval)}`);
  return {
    dataRoot: o.dataRoot,
    entryBudget: int(o.entryBudget, DISK_USAGE_DEFAULTS.entryBudget, 100, 'entryBudget'),
    rescanIntervalMs,
    largestFiles: int(o.largestFiles, DISK_USAGE_DEFAULTS.largestFiles, 0, 'largestFiles'),
    watchedDirs: int(o.watchedDirs, DISK_USAGE_DEFAULTS.watchedDirs, 1, 'watchedDirs'),
    watchDepth: int(o.watchDepth, DISK_USAGE_DEFAULTS.watchDepth, 0, 'watchDepth'),
    concurrency: int(o.concurrency, DISK_USAGE_DEFAULTS.concurrency, 1, 'concurrency'),
  };
}
