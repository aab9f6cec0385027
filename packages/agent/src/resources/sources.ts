// Owns which disk and network readers the usage sampler gets: the agent's
// flags (--no-disk-usage, --no-net-usage) and the benchmark
// (bench/cgroup-sampling.js) both come through here, so they measure the
// same thing. A reader that cannot start is logged and left out: cgroup
// usage and the other resource go on.
import type { Logger } from '@bulkhead/shared';
import { DiskUsageReader } from './disk-usage';
import type { DiskUsageReaderOptions } from './disk-usage-options';
import { ProcNetUsageReader, type NetUsageReaderOptions } from './net-usage';
import type { DiskUsageSource, NetUsageSource } from './types';

export interface ResourceSourceChoice {
  disk: boolean;
  net: boolean;
  /** Reader options beyond the defaults (the engine's data root, a host root for an agent in a container). */
  diskOptions?: DiskUsageReaderOptions;
  netOptions?: NetUsageReaderOptions;
}

export interface ResourceSources {
  disk?: DiskUsageSource;
  net?: NetUsageSource;
}

export async function createResourceSources(choice: ResourceSourceChoice, log: Pick<Logger, 'warn'>): Promise<ResourceSources> {
  const out: ResourceSources = {};
  if (choice.disk) {
    try {
      out.disk = new DiskUsageReader({ logger: log, ...choice.diskOptions }); // warns once per layer it cannot count in full
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'usage: the disk reader could not start; writable layers and logs are not measured');
    }
  }
  if (choice.net) {
    try {
      out.net = await ProcNetUsageReader.create(choice.netOptions ?? {});
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'usage: the network reader could not start; network counters and sockets are not measured');
    }
  }
  return out;
}
