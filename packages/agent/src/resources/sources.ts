// Owns which disk and network readers the usage sampler gets: the agent's
// flags (--no-disk-usage, --no-net-usage) and the benchmark
// (bench/cgroup-sampling.js) both come through here, so they measure the
// same thing. A reader that cannot start is logged and left out: cgroup
// usage and the other resource go on.
import type { Logger } from '@bulkhead/shared';
import type { DiskUsageSource, NetUsageSource } from './types';

export interface ResourceSourceChoice {
  disk: boolean;
  net: boolean;
}

export interface ResourceSources {
  disk?: DiskUsageSource;
  net?: NetUsageSource;
}

export async function createResourceSources(choice: ResourceSourceChoice, log: Pick<Logger, 'warn'>): Promise<ResourceSources> {
  const out: ResourceSources = {};
  // The readers (disk-usage.ts, net-usage.ts) are wired in here when they land.
  void choice;
  void log;
  return out;
}
