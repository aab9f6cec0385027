// Options of the disk-usage reader (disk-usage.ts), with their defaults and
// start-up validation.
import { BulkheadError, parseDuration } from '@bulkhead/shared';

export interface DiskUsageReaderOptions {
  /**
   * Where the host's filesystem is visible. Default "/" (an agent in a container with the
   * host's / mounted at /host: "/host"). Every path from inspect, and dataRoot, is a host
   * path and is looked up under it.
   */
  hostRoot?: string | undefined;
  /**
   * The engine's data root (`docker info` DockerRootDir, e.g. /var/lib/docker), a host path. Needed to find `local` log-driver files (`<root>/containers/<id>/local-logs/`)
   * when it cannot be derived from an overlay2 upper dir or a json-file LogPath.
   */
  dataRoot?: string | undefined;
  /**
   * Directory entries (files, dirs) the writable-layer walk may visit per read(), spread over
   * the containers whose tree is being (re)scanned, resuming where it stopped. Bounds the cost
   * of one tick whatever the trees hold. Default 2000.
   */
  entryBudget?: number | undefined;
  /**
   * A container's writable layer is walked again at least this often, even when none of its
   * watched directories changed (the staleness bound for changes deep in the tree), ±25 %
   * at random so that layers walked together are not walked again together.
   * Default 5 min. Accepts ms or a duration like "5m".
   */
  rescanInterval?: number | string | undefined;
  /** The largest files of each writable layer, re-stat'ed on every read() to see them grow. Default 8. */
  largestFiles?: number | undefined;
  /** Only files at least this big are tracked as largest files (smaller ones wait for a rescan). Default 1 MiB. */
  largestFileMinBytes?: number | undefined;
  /**
   * Directories of each writable layer whose mtime is checked on every read() (a created,
   * deleted or renamed entry in one of them starts a rescan): the layer's root and the
   * shallowest directories under it, up to this many (see watchRotation). Default 16.
   */
  watchedDirs?: number | undefined;
  /** Directories at most this deep (root = 0) are candidates for watchedDirs. Default 2. */
  watchDepth?: number | undefined;
  /**
   * The layer's root, and every watched directory once seen changing ("hot"), are checked
   * on every read(); of the others, this many per read in turn. Default 2.
   */
  watchRotation?: number | undefined;
  /**
   * Do the per-read checks (log file, watched directories, largest files) with synchronous
   * lstat, 32 targets per event-loop turn, instead of through the thread pool. About 8×
   * less CPU per stat (measured 2 µs against 16–20 µs), at the price of holding the event
   * loop for the stat calls themselves: keep it off (the default) when the data root is on
   * storage that can stall (a network filesystem, an overloaded disk).
   */
  syncChecks?: boolean | undefined;
  /** Targets whose cheap per-read stats (logs, watched dirs, largest files) run at once. Default 16. */
  concurrency?: number | undefined;
  /**
   * Directories deeper than this (root = 0) are not walked: the layer's total then counts
   * what was reached and is marked `writableIncomplete`. The walk holds one open directory
   * handle per level of the directory it is in, so this also bounds its descriptors per
   * layer. Default 256.
   */
  maxDepth?: number | undefined;
  /** Told (at warn, once per container) when a layer could not be fully counted. */
  logger?: { warn(obj: object, msg: string): void } | undefined;
}

export interface ResolvedDiskUsageReaderOptions {
  hostRoot: string;
  dataRoot: string | undefined;
  entryBudget: number;
  rescanIntervalMs: number;
  largestFiles: number;
  largestFileMinBytes: number;
  watchedDirs: number;
  watchDepth: number;
  watchRotation: number;
  concurrency: number;
  syncChecks: boolean;
  maxDepth: number;
  logger: { warn(obj: object, msg: string): void } | undefined;
}

export const DISK_USAGE_DEFAULTS = {
  entryBudget: 2000, rescanIntervalMs: 300_000, largestFiles: 8, largestFileMinBytes: 1048576, watchedDirs: 16, watchDepth: 2, watchRotation: 2,
  concurrency: 16, maxDepth: 256,
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
    hostRoot: o.hostRoot || '/',
    dataRoot: o.dataRoot,
    entryBudget: int(o.entryBudget, DISK_USAGE_DEFAULTS.entryBudget, 100, 'entryBudget'),
    rescanIntervalMs,
    largestFiles: int(o.largestFiles, DISK_USAGE_DEFAULTS.largestFiles, 0, 'largestFiles'),
    largestFileMinBytes: int(o.largestFileMinBytes, DISK_USAGE_DEFAULTS.largestFileMinBytes, 0, 'largestFileMinBytes'),
    watchedDirs: int(o.watchedDirs, DISK_USAGE_DEFAULTS.watchedDirs, 1, 'watchedDirs'),
    watchDepth: int(o.watchDepth, DISK_USAGE_DEFAULTS.watchDepth, 0, 'watchDepth'),
    watchRotation: int(o.watchRotation, DISK_USAGE_DEFAULTS.watchRotation, 0, 'watchRotation'),
    concurrency: int(o.concurrency, DISK_USAGE_DEFAULTS.concurrency, 1, 'concurrency'),
    syncChecks: o.syncChecks ?? false,
    maxDepth: int(o.maxDepth, DISK_USAGE_DEFAULTS.maxDepth, 1, 'maxDepth'),
    logger: o.logger,
  };
}
