// Owns turning an agent's UsageReport (proto/bulkhead/v1/agent_link.proto)
// into stored usage: the latest reading per container and its recent history,
// containers no longer sampled forgotten. Never fatal for the link: usage is perishable, so a
// malformed entry is skipped and logged, and the report is acknowledged.
import type { ContainerUsage__Output, Logger, UsageReport__Output } from '@bulkhead/shared';
import type { Store } from '../store/store';
import { RESOURCE_USAGE_FIELDS, type ContainerUsageRecord, type ResourceUsageField } from '../store/usage-store';

/** Containers per report the controller accepts (an agent with more sends several). */
export const MAX_USAGE_CONTAINERS = 10_000;

const finite = (v: unknown): number => {
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : 0;
};

/** Optional wire fields beyond the cgroup: absent (not measured) or not a usable number → null. */
function resourceFields(c: ContainerUsage__Output): Pick<ContainerUsageRecord, ResourceUsageField> {
  const out = {} as Pick<ContainerUsageRecord, ResourceUsageField>;
  for (const k of RESOURCE_USAGE_FIELDS) {
    const v = (c as unknown as Record<string, unknown>)[k];
    const n = v === undefined || v === null ? NaN : Number(v);
    out[k] = Number.isFinite(n) && n >= 0 ? n : null;
  }
  return out;
}

/** The report's entries as records; entries without a usable container id are dropped. */
export function usageRecords(agentId: string, report: UsageReport__Output, now: Date): { rows: ContainerUsageRecord[]; gone: string[]; dropped: number } {
  const reportAt = Number(report.takenAtMs);
  const rows: ContainerUsageRecord[] = [];
  let dropped = 0;
  for (const c of (report.containers ?? []).slice(0, MAX_USAGE_CONTAINERS)) {
    if (!c || typeof c.containerId !== 'string' || c.containerId === '' || c.containerId.length > 128) {
      dropped++;
      continue;
    }
    const at = Number(c.takenAtMs) > 0 ? Number(c.takenAtMs) : reportAt > 0 ? reportAt : now.getTime();
    const cpuLimitCores = finite(c.cpuLimitCores);
    rows.push({
      agentId,
      containerId: c.containerId,
      takenAt: new Date(at),
      receivedAt: now,
      cpuPercent: finite(c.cpuPercent),
      // On the wire 0 means "no quota" too; the limit tells them apart.
      cpuPercentOfQuota: cpuLimitCores > 0 ? finite(c.cpuPercentOfQuota) : null,
      cpuLimitCores,
      memoryBytes: finite(c.memoryBytes),
      memoryLimitBytes: finite(c.memoryLimitBytes),
      pids: finite(c.pids),
      pidsLimit: finite(c.pidsLimit),
      ...resourceFields(c),
    });
  }
  dropped += Math.max(0, (report.containers?.length ?? 0) - MAX_USAGE_CONTAINERS);
  const gone = (report.gone ?? []).filter((id) => typeof id === 'string' && id !== '' && id.length <= 128).slice(0, MAX_USAGE_CONTAINERS);
  return { rows, gone, dropped };
}

/** Stores a usage report; a store without usage support (a test fake) ignores it. */
export async function recordUsage(deps: { store: Store; logger: Logger; historyIntervalMs?: number }, agentId: string, report: UsageReport__Output | null | undefined, now: Date): Promise<void> {
  if (!report || !deps.store.usage) return;
  const { rows, gone, dropped } = usageRecords(agentId, report, now);
  if (dropped > 0) deps.logger.warn({ agentId, dropped }, 'usage report: entries without a usable container id dropped');
  await deps.store.usage.applyUsage(agentId, rows, gone, deps.historyIntervalMs !== undefined ? { historyIntervalMs: deps.historyIntervalMs } : {});
}

/** A new stream starts with a snapshot; the agent then re-sends all usage, so what was held goes. */
export async function clearUsage(store: Store, agentId: string): Promise<void> {
  await store.usage?.clearUsage(agentId);
}
