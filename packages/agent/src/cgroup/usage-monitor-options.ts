// Options of the usage monitor (usage-monitor.ts), their defaults, and the
// one function that fills them in and rejects bad values at start-up.
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { HostFacts__Output, Logger, UsagePoint, UsageReport as UsageReportMessage } from '@bulkhead/shared';
import type { Facts } from '../docker/container-facts';
import type { PolicyState } from '../policy/policy-holder';
import type { UsageReader } from './usage-sampler-options';
import type { UsageReportOptions } from './usage-report';
import type { DiskUsageSource, NetUsageSource, ResourceTarget } from '../resources/types';

/** The running inventory and its changes (ContainerWatcher satisfies it). */
export interface UsageMonitorContainers {
  inventory(): Facts[];
  get(id: string): Facts | undefined;
  on(event: 'upsert', l: (facts: Facts, action: string) => void): unknown;
  on(event: 'remove', l: (id: string) => void): unknown;
  off(event: 'upsert', l: (facts: Facts, action: string) => void): unknown;
  off(event: 'remove', l: (id: string) => void): unknown;
  /** Where a container's disk lives on the host (ContainerWatcher.resourceTarget); without it disk is not measured. */
  resourceTarget?(id: string): ResourceTarget | undefined;
}

/** A CgroupReader, or a fake in unit tests. */
export type UsageMonitorReader = UsageReader & { invalidateLimits?(containerId: string): void; close?(): void };

export interface UsageMonitorOptions {
  reader: UsageMonitorReader;
  containers: UsageMonitorContainers;
  /** The policy in force, read on every tick (PolicyHolder: `() => holder.state`). */
  policy: () => PolicyState;
  hostFacts?: () => HostFacts__Output | undefined;
  /**
   * A usage rule of the policy holds for a running container (any mode): the
   * agent hands it to the Enforcer, which evaluates the whole policy with
   * this usage and acts or records like for any other finding.
   */
  onBreach: (facts: Facts, usage: { points: readonly UsagePoint[] }, ruleIds: string[]) => void;
  /**
   * Sends a usage report to the controller; returns false when it could not
   * be sent (link down): usage is perishable and is not spooled — the next
   * report then carries every container again.
   */
  sendReport?: (report: UsageReportMessage) => boolean;
  logger: Logger;
  /** How often every running container's cgroup is read. Default 5 s. */
  interval?: number | string;
  /** How often usage deltas go to the controller. Default 30 s. */
  reportInterval?: number | string;
  /**
   * While a container stays in breach, it is handed over again this often
   * (so a failed action is retried and the enforcer's cap and escalation
   * apply); a newly breached rule is handed over at once. Default 30 s.
   */
  rebreachInterval?: number | string;
  /** Thresholds of the report deltas (see UsageReportFilter). */
  report?: UsageReportOptions;
  /** Wall clock (ms). Default Date.now. */
  now?: () => number;
  /** Writable layer and log sizes (agent --no-disk-usage: none). Closed with the monitor. */
  disk?: DiskUsageSource | undefined;
  /** Network namespace counters and sockets (agent --no-net-usage: none). */
  net?: NetUsageSource | undefined;
  /** Block IO from the cgroup (agent --no-blkio-usage: false). Default false. */
  blkio?: boolean;
  /**
   * How often each container's disk and network are read (agent
   * --usage-resource-interval), rounded to a whole number of sampling
   * intervals; at least one. Default 20 s.
   */
  resourceInterval?: number | string;
}

export interface ResolvedUsageMonitorOptions {
  reader: UsageMonitorReader;
  containers: UsageMonitorContainers;
  policy: () => PolicyState;
  hostFacts: (() => HostFacts__Output | undefined) | undefined;
  onBreach: (facts: Facts, usage: { points: readonly UsagePoint[] }, ruleIds: string[]) => void;
  sendReport: ((report: UsageReportMessage) => boolean) | undefined;
  logger: Logger;
  intervalMs: number;
  reportIntervalMs: number;
  rebreachMs: number;
  report: UsageReportOptions;
  now: () => number;
  disk: DiskUsageSource | undefined;
  net: NetUsageSource | undefined;
  blkio: boolean;
  /** Disk and network every this many sampling ticks. */
  resourceEveryTicks: number;
}

export const USAGE_MONITOR_DEFAULTS = { intervalMs: 5000, reportIntervalMs: 30_000, rebreachMs: 30_000, resourceIntervalMs: 20_000 } as const;

/** Smallest and largest window kept per container (points). */
export const MIN_WINDOW_POINTS = 12;
export const MAX_WINDOW_POINTS = 1000;

export function resolveUsageMonitorOptions(o: UsageMonitorOptions): ResolvedUsageMonitorOptions {
  const intervalMs = parseDuration(o.interval ?? USAGE_MONITOR_DEFAULTS.intervalMs, 'usage-interval');
  const reportIntervalMs = parseDuration(o.reportInterval ?? USAGE_MONITOR_DEFAULTS.reportIntervalMs, 'usage-report-interval');
  const rebreachMs = parseDuration(o.rebreachInterval ?? USAGE_MONITOR_DEFAULTS.rebreachMs, 'rebreach interval');
  if (intervalMs < 500) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `usage-interval must be at least 500ms (got ${intervalMs} ms)`);
  const resourceIntervalMs = parseDuration(o.resourceInterval ?? USAGE_MONITOR_DEFAULTS.resourceIntervalMs, 'usage-resource-interval');
  if (!(resourceIntervalMs > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `usage-resource-interval must be a positive duration (got ${String(o.resourceInterval)})`);
  if (reportIntervalMs < intervalMs) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `usage-report-interval (${reportIntervalMs} ms) must not be shorter than usage-interval (${intervalMs} ms)`);
  }
  return {
    reader: o.reader,
    containers: o.containers,
    policy: o.policy,
    hostFacts: o.hostFacts,
    onBreach: o.onBreach,
    sendReport: o.sendReport,
    logger: o.logger,
    intervalMs,
    reportIntervalMs,
    rebreachMs,
    report: o.report ?? {},
    now: o.now ?? Date.now,
    disk: o.disk,
    net: o.net,
    blkio: o.blkio === true,
    resourceEveryTicks: Math.max(1, Math.round(resourceIntervalMs / intervalMs)),
  };
}

/** Points per container that cover `windowMs` at `intervalMs` (plus the reading before, and one of slack). */
export function windowPoints(windowMs: number, intervalMs: number): number {
  return Math.min(MAX_WINDOW_POINTS, Math.max(MIN_WINDOW_POINTS, Math.ceil(windowMs / intervalMs) + 2));
}
