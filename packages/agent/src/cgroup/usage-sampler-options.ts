// Options of the usage sampler and the runtime rules it watches, with their
// defaults and start-up validation.
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { CgroupReader } from './cgroup-reader';
import type { DiskUsageSource, NetUsageSource } from '../resources/types';

/** What the sampler needs to know about a running container (ContainerFacts fit). */
export interface SampledContainer {
  id: string;
  name?: string;
  /** Init pid (inspect State.Pid): lets the reader find a cgroup in a non-standard place. */
  pid?: number;
  /** Limits from inspect, used when the cgroup does not report them (it normally does). */
  nanoCpus?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  memoryLimitBytes?: number;
  pidsLimit?: number;
  labels?: Record<string, string>;
  state?: string;
  /** Where its disk lives on the host (inspect GraphDriver, LogPath, LogConfig.Type), for the disk source. */
  graphDriver?: string;
  upperDir?: string;
  logPath?: string;
  logDriver?: string;
}

interface RuleBase {
  /** Stable id, e.g. the policy rule id ("runtime.cpu-hog"). Unique among the rules. */
  id: string;
  /**
   * How long the condition must hold before a breach is reported, seconds.
   * Default 0: the first sample above the threshold breaches.
   */
  forSeconds?: number;
  /** Which containers the rule watches; default all. The lead maps policy scopes onto this. */
  appliesTo?: (c: SampledContainer) => boolean;
}

/** "CPU above N % of its quota for T seconds". Containers without a CPU quota are never above it. */
export interface CpuRule extends RuleBase {
  metric: 'cpu';
  /** Percent of the container's CPU quota (--cpus), e.g. 90. */
  abovePercent: number;
}

/** "memory above N % of its limit". Containers without a memory limit are never above it. */
export interface MemoryRule extends RuleBase {
  metric: 'memory';
  /** Percent of the container's memory limit, e.g. 90. */
  abovePercent: number;
}

/** "pids above N" (absolute) and/or above N % of its pids limit. */
export interface PidsRule extends RuleBase {
  metric: 'pids';
  /** Process/thread count. */
  above?: number;
  /** Percent of the pids limit (containers without one are never above it). */
  abovePercent?: number;
}

export type RuntimeRule = CpuRule | MemoryRule | PidsRule;

/**
 * What the sampler needs from a reader (a CgroupReader; a fake in unit tests).
 * `readSync`, when given, is tried first: a read from files already open, or
 * undefined to take the `read` path.
 */
export type UsageReader = Pick<CgroupReader, 'read' | 'forget'> & Partial<Pick<CgroupReader, 'readSync'>>;

export interface UsageSamplerOptions {
  reader: UsageReader;
  /** The containers to sample, asked for on every tick (e.g. the watcher's running inventory). */
  containers: () => Iterable<SampledContainer>;
  /** Sampling interval. Default 5 s. Accepts ms or a duration like "5s". */
  interval?: number | string;
  /** Samples kept per container. Default 12 (one minute at 5 s). */
  windowSize?: number;
  rules?: readonly RuntimeRule[];
  /** Clock (ms). Default Date.now. */
  now?: () => number;
  /** Parallel container reads per tick. Default 32. */
  concurrency?: number;
  /**
   * memory.stat (working set) and pids.current are refreshed every this many
   * ticks, and on every tick for a container a pids rule watches or whose raw
   * memory use is near a memory rule's threshold; in between, their last
   * values are reused. Halves the file reads of a quiet host. Default 6 (30 s
   * at 5 s); 1 refreshes them on every tick.
   */
  detailEveryTicks?: number;
  /** Writable layer and log sizes: read once per tick for every container. Default none (not measured). */
  disk?: DiskUsageSource | undefined;
  /** Network namespace counters and sockets: read per container per tick. Default none. */
  net?: NetUsageSource | undefined;
  /** Block IO bytes and ops from the cgroup, refreshed with the other detail files (detailEveryTicks). Default false. */
  blkio?: boolean;
  /**
   * Disk and network are read for a container every this many ticks (its
   * last values in between; network rates span from one reading to the
   * next). Default 1: every tick.
   */
  resourceEveryTicks?: number;
}

export interface ResolvedUsageSamplerOptions {
  reader: UsageReader;
  containers: () => Iterable<SampledContainer>;
  intervalMs: number;
  windowSize: number;
  rules: readonly RuntimeRule[];
  now: () => number;
  concurrency: number;
  detailEveryTicks: number;
  disk: DiskUsageSource | undefined;
  net: NetUsageSource | undefined;
  blkio: boolean;
  resourceEveryTicks: number;
}

export const USAGE_SAMPLER_DEFAULTS = { intervalMs: 5000, windowSize: 12, concurrency: 32, detailEveryTicks: 6 } as const;

/** Adds defaults; throws BK_ERR_CONFIG_INVALID for values that cannot work. */
export function resolveUsageSamplerOptions(o: UsageSamplerOptions): ResolvedUsageSamplerOptions {
  const intervalMs = parseDuration(o.interval ?? USAGE_SAMPLER_DEFAULTS.intervalMs, 'usage sampler interval');
  const bad = (msg: string): never => {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `usage sampler: ${msg}`);
  };
  if (!Number.isFinite(intervalMs) || intervalMs < 100) bad(`interval must be at least 100 ms, got ${String(o.interval)}`);
  const windowSize = o.windowSize ?? USAGE_SAMPLER_DEFAULTS.windowSize;
  if (!Number.isInteger(windowSize) || windowSize < 2) bad(`windowSize must be an integer ≥ 2, got ${windowSize}`);
  const concurrency = o.concurrency ?? USAGE_SAMPLER_DEFAULTS.concurrency;
  if (!Number.isInteger(concurrency) || concurrency < 1) bad(`concurrency must be ≥ 1, got ${concurrency}`);
  const detailEveryTicks = o.detailEveryTicks ?? USAGE_SAMPLER_DEFAULTS.detailEveryTicks;
  if (!Number.isInteger(detailEveryTicks) || detailEveryTicks < 1) bad(`detailEveryTicks must be an integer ≥ 1, got ${detailEveryTicks}`);
  const resourceEveryTicks = o.resourceEveryTicks ?? 1;
  if (!Number.isInteger(resourceEveryTicks) || resourceEveryTicks < 1) bad(`resourceEveryTicks must be an integer ≥ 1, got ${resourceEveryTicks}`);
  const ids = new Set<string>();
  for (const r of o.rules ?? []) {
    if (!r.id) bad('every rule needs an id');
    if (ids.has(r.id)) bad(`duplicate rule id "${r.id}"`);
    ids.add(r.id);
    if (r.forSeconds !== undefined && (!(r.forSeconds >= 0) || !Number.isFinite(r.forSeconds))) bad(`rule ${r.id}: forSeconds must be ≥ 0`);
    if (r.metric === 'cpu' || r.metric === 'memory') {
      if (!(r.abovePercent > 0)) bad(`rule ${r.id}: abovePercent must be > 0`);
    } else if (r.metric === 'pids') {
      if (r.above === undefined && r.abovePercent === undefined) bad(`rule ${r.id}: give above and/or abovePercent`);
      if (r.above !== undefined && !(r.above >= 0)) bad(`rule ${r.id}: above must be ≥ 0`);
      if (r.abovePercent !== undefined && !(r.abovePercent > 0)) bad(`rule ${r.id}: abovePercent must be > 0`);
    } else {
      bad(`rule ${(r as { id: string }).id}: unknown metric "${(r as { metric: string }).metric}"`);
    }
  }
  return { reader: o.reader, containers: o.containers, intervalMs, windowSize, rules: o.rules ?? [], now: o.now ?? Date.now, concurrency, detailEveryTicks,
    disk: o.disk, net: o.net, blkio: o.blkio === true, resourceEveryTicks,
  };
}
