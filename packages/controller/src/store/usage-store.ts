// The contract for live container usage at the controller (migrations
// 0005_usage, 0012_usage_resources, 0022_usage_history): the latest reading of each running
// container, as its agent last reported it, and a bounded recent history of it. Agents send deltas (only containers whose usage moved,
// plus a slow heartbeat) and the containers that stopped being sampled, so
// the store keeps one row per container and forgets it when the agent says
// it is gone, or when the agent's stream restarts (its snapshot).
import type { ResourceUsageFields } from '@bulkhead/shared';
import type { UsageHistoryPoint } from './usage-history';

/** Beyond the cgroup (ResourceUsageFields, migration 0012_usage_resources): null when the agent did not measure it. */
export interface ContainerUsageRecord extends ResourceUsageFields {
  agentId: string;
  containerId: string;
  /** When the agent read the container's cgroup. */
  takenAt: Date;
  receivedAt: Date;
  /** CPU in use, % of one core (200 = two cores busy). */
  cpuPercent: number;
  /** CPU in use, % of the container's CPU quota; null when it has none. */
  cpuPercentOfQuota: number | null;
  /** The CPU quota in CPUs; 0 = unlimited. */
  cpuLimitCores: number;
  /** Memory working set (usage minus inactive page cache), bytes. */
  memoryBytes: number;
  /** 0 = unlimited. */
  memoryLimitBytes: number;
  pids: number;
  /** 0 = unlimited. */
  pidsLimit: number;
}

export interface ApplyUsageOptions {
  /**
   * Spacing of the recent-history points (store/usage-history.ts): a reading becomes a point
   * when it falls in a later interval than the container's newest point. Default 60 s.
   */
  historyIntervalMs?: number;
}

export interface UsageStore {
  /**
   * Stores the latest usage of these containers, appends a history point for each whose
   * newest point is in an earlier interval, and forgets `gone` (usage and history), in one
   * transaction.
   */
  applyUsage(agentId: string, rows: readonly ContainerUsageRecord[], gone: readonly string[], opts?: ApplyUsageOptions): Promise<void>;
  /**
   * Forgets every container's latest usage of an agent (its new stream re-sends all of it),
   * and the history of its containers that are no longer running (the inventory is read, so
   * call it after the snapshot is stored): a reconnect does not erase a running container's chart.
   */
  clearUsage(agentId: string): Promise<void>;
  /** Forgets all of an agent's usage and history (revoked: nothing it reported is shown any more). */
  forgetAgent(agentId: string): Promise<void>;
  /** A container's recent history, oldest first; empty when none is kept. */
  getUsageHistory(agentId: string, containerId: string): Promise<UsageHistoryPoint[]>;
  /** The latest usage of these containers, keyed by usageKey(agentId, containerId); absent when none. */
  getUsage(keys: ReadonlyArray<{ agentId: string; containerId: string }>): Promise<Map<string, ContainerUsageRecord>>;
}

export function usageKey(agentId: string, containerId: string): string {
  return `${agentId}/${containerId}`;
}

/** The usage fields beyond the cgroup, in column order (migration 0012_usage_resources). */
export const RESOURCE_USAGE_FIELDS = [
  'writableBytes',
  'logBytes',
  'blkioReadBytes',
  'blkioWriteBytes',
  'blkioReadOps',
  'blkioWriteOps',
  'netRxBytes',
  'netTxBytes',
  'netRxPackets',
  'netTxPackets',
  'netRxDropped',
  'netTxDropped',
  'netRxBytesPerSec',
  'netTxBytesPerSec',
  'tcpConnections',
  'sockets',
] as const satisfies ReadonlyArray<keyof ContainerUsageRecord>;
export type ResourceUsageField = (typeof RESOURCE_USAGE_FIELDS)[number];
