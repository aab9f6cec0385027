// Owns "what usage is worth sending to the controller": the sampler reads
// every container every 5 s, but the controller only needs a container's
// usage when it changed noticeably, plus a slow heartbeat so stale numbers
// age out. This filter turns ticks into those deltas (and removals), so 200
// idle containers cost one small message a minute instead of 40 a second.
import type { ContainerUsage, UsageReport as UsageReportMessage } from '@bulkhead/shared';
import type { UsageSample } from './usage-sampler';

export interface UsageReportOptions {
  /** Send when CPU use moved by at least this many percentage points of one CPU. Default 5. */
  cpuPointsDelta?: number;
  /** Send when memory moved by at least this fraction of the last sent value. Default 0.05 (5 %). */
  memoryRelativeDelta?: number;
  /** …and by at least this many bytes (tiny containers jitter by whole pages). Default 1 MiB. */
  memoryMinBytesDelta?: number;
  /** Send when the pids count changed by at least this much. Default 5. */
  pidsDelta?: number;
  /** Send when the writable layer or the logs moved by this fraction of the last sent value… Default 0.05. */
  diskRelativeDelta?: number;
  /** …and by at least this many bytes. Default 1 MiB. */
  diskMinBytesDelta?: number;
  /** Send when rx + tx bytes/s moved by this fraction of the last sent rate… Default 0.2. */
  netRelativeDelta?: number;
  /** …and by at least this many bytes/s. Default 64 KiB/s. */
  netMinBytesPerSecDelta?: number;
  /** Send when TCP connections or sockets changed by at least this much. Default 10. */
  connectionsDelta?: number;
  /** Send every container at least this often, changed or not. Default 60 s. */
  heartbeatMs?: number;
}

/** What goes on the wire for one container (see the proposed proto ContainerUsage). */
export interface UsageReport {
  containerId: string;
  at: number;
  cpuCores: number | null;
  cpuPercentOfQuota: number | null;
  cpuLimitCores: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  memoryPercentOfLimit: number | null;
  pids: number;
  pidsLimit: number;
  /** Beyond the cgroup; null = not measured. Counters are cumulative. */
  writableBytes: number | null;
  logBytes: number | null;
  blkioReadBytes: number | null;
  blkioWriteBytes: number | null;
  blkioReadOps: number | null;
  blkioWriteOps: number | null;
  netRxBytes: number | null;
  netTxBytes: number | null;
  netRxPackets: number | null;
  netTxPackets: number | null;
  netRxDropped: number | null;
  netTxDropped: number | null;
  netRxBytesPerSec: number | null;
  netTxBytesPerSec: number | null;
  tcpConnections: number | null;
  sockets: number | null;
}

export interface UsageDelta {
  /** Containers whose usage changed noticeably (or whose heartbeat is due). */
  updates: UsageReport[];
  /** Containers reported before that were not in this tick (stopped or removed). */
  removed: string[];
}

export class UsageReportFilter {
  private readonly sent = new Map<string, UsageReport>();
  private readonly o: Required<UsageReportOptions>;

  constructor(o: UsageReportOptions = {}) {
    this.o = {
      cpuPointsDelta: o.cpuPointsDelta ?? 5,
      memoryRelativeDelta: o.memoryRelativeDelta ?? 0.05,
      memoryMinBytesDelta: o.memoryMinBytesDelta ?? 1024 * 1024,
      pidsDelta: o.pidsDelta ?? 5,
      heartbeatMs: o.heartbeatMs ?? 60_000,
      diskRelativeDelta: o.diskRelativeDelta ?? 0.05,
      diskMinBytesDelta: o.diskMinBytesDelta ?? 1024 * 1024,
      netRelativeDelta: o.netRelativeDelta ?? 0.2,
      netMinBytesPerSecDelta: o.netMinBytesPerSecDelta ?? 64 * 1024,
      connectionsDelta: o.connectionsDelta ?? 10,
    };
  }

  /** Feed one tick's samples (the sampler's `tick` event); returns what to send. */
  next(samples: readonly UsageSample[]): UsageDelta {
    const updates: UsageReport[] = [];
    const seen = new Set<string>();
    for (const s of samples) {
      seen.add(s.containerId);
      const r = toReport(s);
      const last = this.sent.get(s.containerId);
      if (!last || this.differs(last, r)) {
        updates.push(r);
        this.sent.set(s.containerId, r);
      }
    }
    const removed: string[] = [];
    for (const id of this.sent.keys()) {
      if (!seen.has(id)) {
        removed.push(id);
        this.sent.delete(id);
      }
    }
    return { updates, removed };
  }

  /** Forget everything sent (after a reconnect the controller needs the full picture again). */
  reset(): void {
    this.sent.clear();
  }

  private differs(a: UsageReport, b: UsageReport): boolean {
    if (b.at - a.at >= this.o.heartbeatMs) return true;
    if (a.cpuLimitCores !== b.cpuLimitCores || a.memoryLimitBytes !== b.memoryLimitBytes || a.pidsLimit !== b.pidsLimit) return true;
    if ((a.cpuCores === null) !== (b.cpuCores === null)) return true;
    if (a.cpuCores !== null && b.cpuCores !== null && Math.abs(a.cpuCores - b.cpuCores) * 100 >= this.o.cpuPointsDelta) return true;
    const dm = Math.abs(a.memoryBytes - b.memoryBytes);
    if (dm >= this.o.memoryMinBytesDelta && dm >= a.memoryBytes * this.o.memoryRelativeDelta) return true;
    if (Math.abs(a.pids - b.pids) >= this.o.pidsDelta) return true;
    if (this.movedBy(a.writableBytes, b.writableBytes, this.o.diskRelativeDelta, this.o.diskMinBytesDelta)) return true;
    if (this.movedBy(a.logBytes, b.logBytes, this.o.diskRelativeDelta, this.o.diskMinBytesDelta)) return true;
    if (this.movedBy(netRate(a), netRate(b), this.o.netRelativeDelta, this.o.netMinBytesPerSecDelta)) return true;
    if (this.movedBy(a.tcpConnections, b.tcpConnections, 0, this.o.connectionsDelta)) return true;
    return this.movedBy(a.sockets, b.sockets, 0, this.o.connectionsDelta);
  }

  /** Measured now and not before (or the reverse), or moved by both the relative and the absolute step. */
  private movedBy(a: number | null, b: number | null, relative: number, min: number): boolean {
    if (a === null || b === null) return a !== b;
    const d = Math.abs(a - b);
    return d >= min && d >= Math.abs(a) * relative;
  }
}

function toReport(s: UsageSample): UsageReport {
  return {
    containerId: s.containerId,
    at: s.at,
    cpuCores: s.cpuCores === null ? null : Math.round(s.cpuCores * 1000) / 1000,
    cpuPercentOfQuota: s.cpuPercentOfQuota,
    cpuLimitCores: s.cpuLimitCores,
    memoryBytes: s.memoryBytes,
    memoryLimitBytes: s.memoryLimitBytes,
    memoryPercentOfLimit: s.memoryPercentOfLimit,
    pids: s.pids,
    pidsLimit: s.pidsLimit,
    writableBytes: s.writableBytes ?? null,
    logBytes: s.logBytes ?? null,
    blkioReadBytes: s.blkioReadBytes ?? null,
    blkioWriteBytes: s.blkioWriteBytes ?? null,
    blkioReadOps: s.blkioReadOps ?? null,
    blkioWriteOps: s.blkioWriteOps ?? null,
    netRxBytes: s.netRxBytes ?? null,
    netTxBytes: s.netTxBytes ?? null,
    netRxPackets: s.netRxPackets ?? null,
    netTxPackets: s.netTxPackets ?? null,
    netRxDropped: s.netRxDropped ?? null,
    netTxDropped: s.netTxDropped ?? null,
    netRxBytesPerSec: s.netRxBytesPerSec ?? null,
    netTxBytesPerSec: s.netTxBytesPerSec ?? null,
    tcpConnections: s.tcpConnections ?? null,
    sockets: s.sockets ?? null,
  };
}

function netRate(r: UsageReport): number | null {
  return r.netRxBytesPerSec === null || r.netTxBytesPerSec === null ? null : r.netRxBytesPerSec + r.netTxBytesPerSec;
}

/** The fields beyond the cgroup that are measured, as the wire's optional fields (unmeasured ones stay absent). */
function resourceFields(u: UsageReport): Partial<ContainerUsage> {
  const out: Partial<ContainerUsage> = {};
  const keys = [
    'writableBytes', 'logBytes', 'blkioReadBytes', 'blkioWriteBytes', 'blkioReadOps', 'blkioWriteOps', 'netRxBytes', 'netTxBytes',
    'netRxPackets', 'netTxPackets', 'netRxDropped', 'netTxDropped', 'netRxBytesPerSec', 'netTxBytesPerSec', 'tcpConnections', 'sockets',
  ] as const;
  for (const k of keys) {
    const v = u[k];
    if (v !== null) out[k] = v;
  }
  return out;
}

/** A delta as the wire's UsageReport (proto/bulkhead/v1/agent_link.proto); null rates travel as 0. */
export function toUsageReportMessage(delta: UsageDelta, takenAtMs: number): UsageReportMessage {
  return {
    takenAtMs,
    containers: delta.updates.map((u) => ({
      containerId: u.containerId,
      cpuPercent: u.cpuCores === null ? 0 : Math.round(u.cpuCores * 1000) / 10,
      cpuPercentOfQuota: u.cpuPercentOfQuota ?? 0,
      memoryBytes: u.memoryBytes,
      memoryLimitBytes: u.memoryLimitBytes,
      pids: u.pids,
      pidsLimit: u.pidsLimit,
      cpuLimitCores: u.cpuLimitCores,
      takenAtMs: u.at,
      ...resourceFields(u),
    })),
    gone: delta.removed,
  };
}
