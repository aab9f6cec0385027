// Owns the host side of disk exhaustion: how full the filesystem holding the
// engine's data root (`docker info` DockerRootDir) is, and the one holding the
// containers' log files when that is another filesystem — and which containers
// grew it most, from the per-container history of DiskUsageReader readings.
//
// It only measures (statfs, like `df`). Turning a filesystem above its threshold
// into a host finding is dataRootFinding(); where that finding goes (the host
// audit, an alert) is the caller's business.
import { stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { BulkheadError } from '@bulkhead/shared';
import type { LockdownFinding } from '../lockdown/lockdown-options';
import type { DiskUsage } from './types';

/** One container's share of a filesystem. */
export interface ContainerDiskShare {
  id: string;
  /** Bytes it holds on this filesystem now (writable layer and/or logs, whichever live there). */
  bytes: number;
  /** How much `bytes` grew over the history's window (negative: it shrank). */
  grownBytes: number;
}

export type FilesystemRole = 'data-root' | 'logs';

/** How full one filesystem is, and who fills it. Finding-like: see dataRootFinding(). */
export interface FilesystemUsage {
  /** The path asked about (the data root, or the log directory). */
  path: string;
  /** What lives there: the data root (writable layers, images), the containers' logs, or both. */
  roles: FilesystemRole[];
  /** Used bytes, as `df` counts them: (blocks − free blocks) × block size. */
  usedBytes: number;
  /** Size of the filesystem. */
  totalBytes: number;
  /** Bytes an unprivileged writer can still use (f_bavail). */
  availableBytes: number;
  /** used / (used + available) × 100, rounded up, as `df`'s Use% (root-reserved blocks count as unavailable). */
  usedPercent: number;
  /** Inodes in use (f_files − f_ffree); null when the filesystem has no fixed inode table (btrfs reports 0 inodes). */
  usedInodes: number | null;
  /** The filesystem's inodes (f_files); null as above. */
  totalInodes: number | null;
  /**
   * usedInodes / totalInodes × 100, rounded up, as `df -i`'s IUse%. A filesystem out of
   * inodes refuses new files (ENOSPC) with bytes to spare: millions of tiny files from one
   * container are a disk exhaustion too. null when not applicable (see usedInodes).
   */
  usedInodesPercent: number | null;
  thresholdPercent: number;
  /** usedPercent OR usedInodesPercent at or above thresholdPercent. */
  aboveThreshold: boolean;
  /** The containers that grew it most over the window, largest growth first (top N, growth > 0 only). */
  topContainers: ContainerDiskShare[];
  /** The containers holding most of it now, largest first (top N). */
  largestContainers: ContainerDiskShare[];
}

export interface DiskUsageHistoryOptions {
  /** The window growth is measured over. Default 10 min. */
  windowMs?: number;
  /** Readings kept per container within the window (older ones thinned out). Default 20. */
  samplesPerWindow?: number;
}

interface Sample {
  at: number;
  writable: number | null;
  log: number | null;
}

/**
 * Recent DiskUsage readings per container, to tell who grew a filesystem. Memory is
 * bounded: at most samplesPerWindow + 1 readings per container (a reading closer than
 * window/samplesPerWindow to the previous one replaces it).
 */
export class DiskUsageHistory {
  readonly windowMs: number;
  private readonly spacingMs: number;
  private readonly samples = new Map<string, Sample[]>();

  constructor(opts: DiskUsageHistoryOptions = {}) {
    this.windowMs = opts.windowMs ?? 600_000;
    const n = opts.samplesPerWindow ?? 20;
    if (!(this.windowMs > 0) || !Number.isInteger(n) || n < 1) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `disk usage history: windowMs must be > 0 and samplesPerWindow an integer ≥ 1, got ${this.windowMs} and ${n}`);
    }
    this.spacingMs = this.windowMs / n;
  }

  /** Adds one read()'s answer. Containers absent from it keep their readings until forget(). */
  record(now: number, usages: ReadonlyMap<string, DiskUsage>): void {
    for (const [id, u] of usages) {
      let list = this.samples.get(id);
      if (!list) this.samples.set(id, (list = []));
      const s: Sample = { at: now, writable: u.writableBytes, log: u.logBytes };
      const last = list[list.length - 1];
      if (last && list.length > 1 && now - list[list.length - 2]!.at < this.spacingMs) list[list.length - 1] = s;
      else list.push(s);
      // Keep one reading at or before the window's start: the baseline growth is measured from.
      while (list.length > 2 && list[1]!.at <= now - this.windowMs) list.shift();
    }
  }

  forget(id: string): void {
    this.samples.delete(id);
  }

  /**
   * Each container's bytes now and growth over the window, counting its writable layer
   * and/or its logs. A part unknown (null) in either reading counts 0 in both, so a
   * layer still being walked for the first time is not mistaken for growth.
   */
  shares(now: number, parts: { writable: boolean; log: boolean }): ContainerDiskShare[] {
    const out: ContainerDiskShare[] = [];
    for (const [id, list] of this.samples) {
      const latest = list[list.length - 1]!;
      let base = list[0]!;
      for (const s of list) if (s.at <= now - this.windowMs) base = s;
      const part = (a: number | null, b: number | null): [number, number] => (a === null || b === null ? [b ?? 0, 0] : [b, b - a]);
      const [w, dw] = parts.writable ? part(base.writable, latest.writable) : [0, 0];
      const [l, dl] = parts.log ? part(base.log, latest.log) : [0, 0];
      out.push({ id, bytes: w + l, grownBytes: dw + dl });
    }
    return out;
  }

  get containers(): number {
    return this.samples.size;
  }
}

export interface DataRootUsageOptions {
  /** The engine's data root as the agent sees it (`docker info` DockerRootDir), e.g. /var/lib/docker. */
  dataRoot: string;
  /** Where the containers' log files live. Default `<dataRoot>/containers`. */
  logDir?: string;
  /** A filesystem at or above this Use% is aboveThreshold. Default 85. */
  thresholdPercent?: number;
  /** Containers named per list. Default 5. */
  topN?: number;
  /** Readings to name the containers from; without it topContainers/largestContainers are empty. */
  history?: DiskUsageHistory;
  /** Default Date.now(). */
  now?: number;
}

/**
 * statfs of the data root and of the log directory: one FilesystemUsage when both are on
 * the same filesystem (roles ['data-root', 'logs']), two otherwise. Writable layers are
 * attributed to the data root's filesystem, log files to the log directory's. Throws
 * (BK_ERR_NOT_FOUND-like Node errors) when the data root cannot be stat'ed.
 */
export async function readDataRootUsage(opts: DataRootUsageOptions): Promise<FilesystemUsage[]> {
  const threshold = opts.thresholdPercent ?? 85;
  const topN = opts.topN ?? 5;
  if (!(threshold > 0 && threshold <= 100)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `data root usage: thresholdPercent must be in (0, 100], got ${threshold}`);
  if (!Number.isInteger(topN) || topN < 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `data root usage: topN must be an integer ≥ 0, got ${topN}`);
  const now = opts.now ?? Date.now();
  const logDir = opts.logDir ?? join(opts.dataRoot, 'containers');
  const rootDev = (await stat(opts.dataRoot)).dev;
  let logDev: number | null = null;
  try {
    logDev = (await stat(logDir)).dev;
  } catch {
    logDev = null; // no log directory (yet): report the data root alone
  }
  const groups: { path: string; roles: FilesystemRole[] }[] =
    logDev === null || logDev === rootDev
      ? [{ path: opts.dataRoot, roles: logDev === null ? ['data-root'] : ['data-root', 'logs'] }]
      : [{ path: opts.dataRoot, roles: ['data-root'] }, { path: logDir, roles: ['logs'] }];
  return Promise.all(groups.map(async (g) => {
    const fs = await statfs(g.path);
    const usedBytes = (fs.blocks - fs.bfree) * fs.bsize;
    const availableBytes = fs.bavail * fs.bsize;
    const usedPercent = usedBytes + availableBytes > 0 ? Math.ceil((usedBytes * 100) / (usedBytes + availableBytes)) : 0;
    const inodes = fs.files > 0;
    const usedInodes = inodes ? fs.files - fs.ffree : null;
    const usedInodesPercent = usedInodes !== null ? Math.ceil((usedInodes * 100) / fs.files) : null;
    const shares = opts.history?.shares(now, { writable: g.roles.includes('data-root'), log: g.roles.includes('logs') }) ?? [];
    return {
      path: g.path, roles: g.roles, usedBytes, totalBytes: fs.blocks * fs.bsize, availableBytes, usedPercent,
      usedInodes, totalInodes: inodes ? fs.files : null, usedInodesPercent,
      thresholdPercent: threshold, aboveThreshold: usedPercent >= threshold || (usedInodesPercent ?? 0) >= threshold,
      topContainers: shares.filter((s) => s.grownBytes > 0).sort((a, b) => b.grownBytes - a.grownBytes || b.bytes - a.bytes).slice(0, topN),
      largestContainers: shares.filter((s) => s.bytes > 0).sort((a, b) => b.bytes - a.bytes || b.grownBytes - a.grownBytes).slice(0, topN),
    };
  }));
}

/**
 * The host finding for a filesystem above its threshold (null below it), shaped like the
 * lockdown audit's findings so the host audit can list it as is:
 * id `disk.data-root-full` / `disk.log-filesystem-full`, severity high (critical from 95 %, bytes or inodes),
 * subject the path, evidence the figures and the containers that grew it most.
 */
export function dataRootFinding(u: FilesystemUsage, opts: { names?: ReadonlyMap<string, string> } = {}): LockdownFinding | null {
  if (!u.aboveThreshold) return null;
  const isRoot = u.roles.includes('data-root');
  const what = isRoot ? (u.roles.includes('logs') ? 'Docker data root (and container logs)' : 'Docker data root') : 'container log filesystem';
  const name = (id: string): string => opts.names?.get(id) ?? id.slice(0, 12);
  const grew = u.topContainers.map((c) => `${name(c.id)} +${mb(c.grownBytes)}`).join(', ');
  const big = u.largestContainers.map((c) => `${name(c.id)} ${mb(c.bytes)}`).join(', ');
  const bytesFull = u.usedPercent >= u.thresholdPercent;
  const inodesFull = (u.usedInodesPercent ?? 0) >= u.thresholdPercent;
  const worst = Math.max(u.usedPercent, u.usedInodesPercent ?? 0);
  return {
    id: isRoot ? 'disk.data-root-full' : 'disk.log-filesystem-full',
    severity: worst >= 95 ? 'critical' : 'high',
    title: inodesFull && !bytesFull
      ? `${what} ${u.path} is out of inodes: ${u.usedInodesPercent} % used`
      : `${what} ${u.path} is ${u.usedPercent} % full` + (inodesFull ? ` (inodes ${u.usedInodesPercent} % used)` : ''),
    detail: `${u.path}: ${mb(u.usedBytes)} used of ${mb(u.totalBytes)} (${mb(u.availableBytes)} available, ${u.usedPercent} %)`
      + (u.usedInodes !== null ? `; inodes ${u.usedInodes} used of ${u.totalInodes} (${u.usedInodesPercent} %)` : '')
      + `, above the ${u.thresholdPercent} % threshold.`
      + (inodesFull ? ' A filesystem out of inodes refuses new files even with bytes free: look for containers creating many small files.' : '')
      + (grew ? ` Grew it most: ${grew}.` : '') + (big ? ` Largest: ${big}.` : ''),
    remediation: 'Find what the named containers write (docker diff, their logs); configure log rotation (--log-opt max-size/max-file), limit writable layers (--storage-opt size=), move data to volumes, remove stopped containers and unused images (docker system prune).',
    fixable: false,
    subject: u.path,
    evidence: { ...u },
  };
}

function mb(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}
