// The host side of disk exhaustion: every minute, how full the engine's data
// root (and the containers' log filesystem, when it is another one) is, in
// bytes and inodes; above the threshold, a host finding naming the containers
// that grew it most (from the usage sampler's disk readings, kept in a
// DiskUsageHistory). The finding goes out with the host audit report, the same
// way as the lockdown findings — so the controller stores it and alerts on it
// as a new finding — and a new one starts an audit right away rather than at
// the next hourly run.
import { join } from 'node:path';
import type { LockdownFinding } from '../lockdown/lockdown-options';
import { dataRootFinding, readDataRootUsage, type DiskUsageHistory } from './data-root-usage';
import type { DiskUsage, DiskUsageSource, ResourceTarget } from './types';

export interface DataRootWatchOptions {
  /** The engine's data root as the engine names it (`docker info` DockerRootDir); undefined when unknown yet. */
  dataRoot: () => Promise<string | undefined>;
  /** Where the host's filesystem is visible (an agent in a container: /host). Default "/". */
  hostRoot?: string;
  history: DiskUsageHistory;
  /** Use% (bytes or inodes) at or above which a filesystem is a finding. */
  thresholdPercent: number;
  /** How often to look, ms. Default 60 s. */
  intervalMs?: number;
  /** Container names for the finding's text. */
  names?: () => ReadonlyMap<string, string>;
  /** A finding appeared that the last look did not have (e.g. start an audit now). */
  onNewFinding?: (f: LockdownFinding) => void;
  logger: { warn(obj: object, msg: string): void };
}

export class DataRootWatch {
  private timer: NodeJS.Timeout | undefined;
  private current: LockdownFinding[] = [];
  private running: Promise<LockdownFinding[]> | undefined;
  private failedOnce = false;

  constructor(private readonly o: DataRootWatchOptions) {}

  start(): this {
    if (!this.timer) {
      void this.check();
      this.timer = setInterval(() => void this.check(), this.o.intervalMs ?? 60_000);
      this.timer.unref();
    }
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The findings of the latest look. */
  get findings(): readonly LockdownFinding[] {
    return this.current;
  }

  /** One look (never two at once); resolves to the findings now in force. */
  check(): Promise<LockdownFinding[]> {
    this.running ??= this.look().finally(() => (this.running = undefined));
    return this.running;
  }

  private async look(): Promise<LockdownFinding[]> {
    let root: string | undefined;
    try {
      root = await this.o.dataRoot();
    } catch {
      root = undefined;
    }
    if (!root) return this.current;
    try {
      const usage = await readDataRootUsage({ dataRoot: join(this.o.hostRoot ?? '/', root), thresholdPercent: this.o.thresholdPercent, history: this.o.history });
      const names = this.o.names?.();
      const next = usage.map((u) => dataRootFinding(u, names ? { names } : {})).filter((f): f is LockdownFinding => f !== null);
      const before = new Set(this.current.map((f) => f.id));
      this.current = next;
      this.failedOnce = false;
      for (const f of next) {
        if (before.has(f.id)) continue;
        this.o.logger.warn({ finding: f.id, severity: f.severity, subject: f.subject }, f.title);
        this.o.onNewFinding?.(f);
      }
      return next;
    } catch (err) {
      // Not fatal: the data root may not exist yet, or the host root is wrong. Said once until it works.
      if (!this.failedOnce) this.o.logger.warn({ err: (err as Error).message, dataRoot: root }, 'data root usage could not be read');
      this.failedOnce = true;
      return this.current;
    }
  }
}

/** A disk source that also records every answer in `history` (and forgets with it). */
export function recordingDiskSource(disk: DiskUsageSource, history: DiskUsageHistory): DiskUsageSource {
  return {
    async read(targets: readonly ResourceTarget[], now: number): Promise<Map<string, DiskUsage>> {
      const m = await disk.read(targets, now);
      history.record(now, m);
      return m;
    },
    forget(id: string): void {
      disk.forget(id);
      history.forget(id);
    },
    close(): void {
      disk.close?.();
    },
  };
}

/** The audit report's lockdown findings with the data-root findings added (replacing older ones of the same id). */
export function withDataRootFindings(lockdownJson: string | undefined, findings: readonly LockdownFinding[]): string {
  if (findings.length === 0) return lockdownJson ?? '';
  let list: LockdownFinding[] = [];
  try {
    const parsed = JSON.parse(lockdownJson || '[]') as unknown;
    if (Array.isArray(parsed)) list = parsed as LockdownFinding[];
  } catch {
    list = [];
  }
  const ids = new Set(findings.map((f) => f.id));
  return JSON.stringify([...list.filter((f) => !ids.has(f.id)), ...findings]);
}
