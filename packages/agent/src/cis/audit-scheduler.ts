// Owns WHEN the running agent audits its host: once at start, then every
// `intervalMs` (default 1 h; see host-audit-options.ts), never two runs at
// once, a failed run retried sooner than the next regular one — and how: in a
// child process (host-audit-child.ts). Each result
// is logged (every fix and every image the prune policy removed on its own
// line: a change the agent made to the host must be in its log, not only in
// the report) and handed to `onReport`, which sends it to the controller.
import type { Logger } from '@bulkhead/shared';
import { parseDockerHost, resolveDockerHost } from '../docker/client';
import { LOCKDOWN_SEVERITY_RANK, type LockdownSeverity } from '../lockdown/lockdown-options';
import type { HostAuditResult } from './host-audit';
import { runHostAuditInChild, type ChildRun } from './host-audit-child';
import type { HostAuditScheduleOptions } from './host-audit-options';

export interface HostAuditSchedulerOptions {
  /** One audit (runHostAudit with the agent's engine and options bound). */
  run: () => Promise<HostAuditResult>;
  /** Between the end of one run and the start of the next. > 0. */
  intervalMs: number;
  onReport: (result: HostAuditResult) => void;
  logger: Logger;
  /** After a failed run (engine down …). Default min(intervalMs, 60 s). */
  retryMs?: number;
  /** Before the first run. Default 0 (at start). */
  initialDelayMs?: number;
  /** Clock for durations. Default Date.now. */
  now?: () => number;
  /** Ends a run in progress at stop() (e.g. kills the audit's child process). Default: stop() waits for it. */
  abort?: () => void;
}

export class HostAuditScheduler {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<HostAuditResult | undefined> | undefined;
  private stopped = false;
  private runs = 0;
  private failures = 0;

  constructor(private readonly opts: HostAuditSchedulerOptions) {
    if (!(opts.intervalMs > 0)) throw new RangeError('HostAuditScheduler: intervalMs must be > 0');
  }

  /** Audits completed and failed so far. */
  get stats(): { runs: number; failures: number; running: boolean } {
    return { runs: this.runs, failures: this.failures, running: this.current !== undefined };
  }

  start(): void {
    this.stopped = false;
    this.schedule(this.opts.initialDelayMs ?? 0);
  }

  /** Stops the timer; a run in progress is aborted (with `abort`) or waited for (its report still handed over). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.opts.abort?.();
    await this.current;
  }

  /** Runs an audit now, or joins the one in progress. Resolves undefined when it failed. */
  runNow(): Promise<HostAuditResult | undefined> {
    this.current ??= this.runOnce().finally(() => {
      this.current = undefined;
    });
    return this.current;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runNow().then((r) => this.schedule(r ? this.opts.intervalMs : (this.opts.retryMs ?? Math.min(this.opts.intervalMs, 60_000))));
    }, delayMs);
    this.timer.unref();
  }

  private async runOnce(): Promise<HostAuditResult | undefined> {
    const now = this.opts.now ?? Date.now;
    const started = now();
    const log = this.opts.logger;
    let result: HostAuditResult;
    try {
      result = await this.opts.run();
    } catch (err) {
      if (this.stopped) {
        log.info({ err: (err as Error).message }, 'host audit stopped with the agent');
        return undefined;
      }
      this.failures += 1;
      log.error({ err: (err as Error).message }, 'host audit failed');
      return undefined;
    }
    this.runs += 1;
    for (const f of result.fixes) {
      const fields = { fix: f.fix, path: f.path, changed: f.changed, before: f.before, after: f.after, persist: f.persist };
      if (f.error !== undefined) log.error({ ...fields, error: f.error }, `lockdown fix failed: ${f.message}`);
      else if (f.changed) log.warn(fields, `lockdown fix applied: ${f.message}`);
      else log.info(fields, `lockdown fix not needed: ${f.message}`);
    }
    const prune = result.prune;
    if (prune && 'removed' in prune) {
      for (const r of prune.removed) {
        const fields = { image: r.id, tags: r.tags, untagged: r.untagged, deleted: r.deleted, sizeBytes: r.sizeBytes, reason: r.reason, dryRun: prune.dryRun };
        if (r.error !== undefined) log.error({ ...fields, error: r.error }, 'image prune failed');
        else log.info(fields, prune.dryRun ? 'image prune dry run: would remove' : 'image pruned');
      }
    } else if (prune) log.error({ err: prune.error }, 'image prune did not run');
    const bySeverity: Partial<Record<LockdownSeverity, number>> = {};
    for (const f of result.lockdown) bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1;
    const serious = result.lockdown.filter((f) => LOCKDOWN_SEVERITY_RANK[f.severity] >= LOCKDOWN_SEVERITY_RANK.high).map((f) => f.id);
    log.info(
      {
        durationMs: now() - started,
        score: result.cis.summary.percent,
        cis: { pass: result.cis.summary.pass, warn: result.cis.summary.warn, info: result.cis.summary.info, note: result.cis.summary.note },
        lockdown: bySeverity,
        ...(serious.length > 0 ? { serious: [...new Set(serious)] } : {}),
        fixes: result.fixes.filter((f) => f.changed).length,
        ...(result.hygiene && 'counts' in result.hygiene ? { staleImages: result.hygiene.counts.stale, danglingImages: result.hygiene.counts.dangling } : {}),
        ...(result.hygiene && 'error' in result.hygiene ? { hygieneError: result.hygiene.error } : {}),
        ...(prune && 'removed' in prune
          ? { prune: { removed: prune.removed.filter((r) => r.error === undefined).length, failed: prune.removed.filter((r) => r.error !== undefined).length, reclaimedBytes: prune.reclaimedBytes, dryRun: prune.dryRun } }
          : {}),
      },
      'host audit done',
    );
    try {
      this.opts.onReport(result);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'host audit report could not be queued');
    }
    return result;
  }
}

/**
 * The agent's audit as the scheduler runs it: in a child process
 * (host-audit-child.ts: the agent's memory and event loop stay as they are),
 * with its own Docker client (60 s timeout per call), the socket the agent
 * talks through as the Docker socket audited (over TCP: the default path),
 * and the `run` flags. `abort` ends a run in progress (agent shutdown).
 * `lastUsed` is the agent's image last-use memory: flushed to its file
 * before each run, whose child reads it (the hygiene summary and the prune
 * policy respect it).
 */
export function agentHostAudit(
  audit: HostAuditScheduleOptions,
  dockerHost: string | undefined,
  o: { timeoutMs?: number; lastUsed?: { path: string; flush(): void }; entry?: string } = {},
): { run: () => Promise<HostAuditResult>; abort: () => void; intervalMs: number } {
  const url = resolveDockerHost(dockerHost);
  const endpoint = parseDockerHost(url);
  const running = new Set<ChildRun>();
  return {
    intervalMs: audit.intervalMs,
    abort: () => running.forEach((c) => c.kill()),
    run: () => {
      o.lastUsed?.flush();
      const child = runHostAuditInChild(
        {
          dockerHost: url,
          options: {
            hostRoot: audit.hostRoot,
            procRoot: audit.procRoot,
            dockerSocketPath: endpoint.kind === 'unix' ? endpoint.socketPath : undefined,
            containerdSocketPath: audit.containerdSocketPath,
            daemonJsonPath: audit.daemonJsonPath,
            trustedUsers: audit.trustedUsers,
            fixes: audit.fixes,
            dockerGroup: audit.dockerGroup,
            hygiene: { unusedDays: audit.imageUnusedDays, ...(o.lastUsed ? { lastUsedPath: o.lastUsed.path } : {}) },
            ...(audit.imagePrune ? { prune: audit.imagePrune } : {}),
          },
        },
        { ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}), ...(o.entry !== undefined ? { entry: o.entry } : {}) },
      );
      running.add(child);
      return child.result.finally(() => running.delete(child));
    },
  };
}
