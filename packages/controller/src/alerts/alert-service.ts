// Owns raising alerts: the hook every other module calls
// (`alerts.raise({ type, message, … })`). It groups repeats of the same
// (type, rule, agent, container) inside a window into one alert with a
// count, picks the webhook endpoints whose filters match, and writes the
// alert and one outbox delivery per endpoint in ONE transaction — so an
// alert is either stored with all its deliveries or not at all.
//
// Calls arriving in the same tick are written together in one transaction
// (group commit): under a burst of findings that is one database commit per
// batch instead of one per alert.
//
// A batch the database could not take just now (a full PostgreSQL pool, a
// dropped connection, a deadlock, a busy SQLite file) is written again with
// back-off until it commits: an alert is never dropped because the database
// was briefly slow. Only stop() ends the retrying (the violations' own
// alert-pending mark raises theirs at the next start).
import { BulkheadError, type Logger } from '@bulkhead/shared';
import { isTransientStoreError, retryDelayMs } from '../store/transient-error';
import type { AlertPlanContext, AlertStore, DeliveryRecord, WebhookEndpointRecord } from './alert-store';
import {
  DEFAULT_SEVERITY, UNGROUPED_TYPES, groupKeyOf, isAlertType, isSeverity, severityRank, type AlertInput, type AlertRecord,
} from './alert-types';
import { newAlertId, newDeliveryId } from './ids';
import type { WorkSignal } from './work-signal';
import type { FleetEventSink } from '../events/fleet-events';

export interface AlertServiceOptions {
  store: AlertStore;
  logger: Logger;
  /** Woken when deliveries were queued. */
  signal?: WorkSignal;
  /** Default 5 min. */
  groupWindowMs?: number;
  now?: () => Date;
  /** Most alerts written per transaction. Default 500. */
  maxBatch?: number;
  /** The fleet event stream (GET /v1/events): every committed alert (violations and actions included) becomes an `alert.<type>` event. */
  events?: FleetEventSink;
  /** Longest wait between retries of a batch the store could not take (transient errors). Default 5 000 ms. */
  maxRetryDelayMs?: number;
}

export interface RaiseResult {
  /** The new alert, or the open one the repeat was folded into; null when skipped. */
  alertId: string | null;
  /** True when folded into an open alert (no new deliveries). */
  grouped: boolean;
  /** Occurrences on that alert now. */
  count: number;
  /** Deliveries queued for this call. */
  deliveries: number;
  /** An agent_online with no preceding agent_offline alert is not raised. */
  skipped: boolean;
}

/** The interface other modules depend on (the agent link, lockdown, cert watch …). */
export interface AlertSink {
  raise(input: AlertInput): Promise<RaiseResult>;
}

interface Pending {
  input: AlertInput;
  resolve: (r: RaiseResult) => void;
  reject: (e: unknown) => void;
}

const MAX_TEXT = 4096;
const MAX_FIELD = 1024;

export class AlertService implements AlertSink {
  private readonly store: AlertStore;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly groupWindowMs: number;
  private readonly maxBatch: number;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  /** Set by stop(): batches still failing are rejected instead of retried. */
  private stopped = false;
  /** Wakes a retry back-off early when stop() is called. */
  private wake: (() => void) | undefined;
  /** Alerts whose batch had to be retried (the database was briefly unable to take them); for tests and logs. */
  retried = 0;

  constructor(private readonly opts: AlertServiceOptions) {
    this.store = opts.store;
    this.logger = opts.logger;
    this.now = opts.now ?? (() => new Date());
    this.groupWindowMs = opts.groupWindowMs ?? 5 * 60_000;
    this.maxBatch = opts.maxBatch ?? 500;
  }

  /** Stores the alert (or folds it into an open one) with its deliveries; resolves once committed. */
  raise(input: AlertInput): Promise<RaiseResult> {
    let clean: AlertInput;
    try {
      clean = normalize(input);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<RaiseResult>((resolve, reject) => {
      this.queue.push({ input: clean, resolve, reject });
      this.schedule();
    });
  }

  /** raise() for callers that must not wait or fail (the agent link): errors are logged. */
  raiseInBackground(input: AlertInput): void {
    this.raise(input).catch((err: unknown) => this.logger.error({ err, alertType: input.type }, 'raising an alert failed'));
  }

  /**
   * Ends retrying: a batch still failing is rejected (and logged by its caller)
   * instead of retried again. Then waits for what is in flight.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.flush().catch(() => undefined);
  }

  /** Waits until everything raised so far is committed. */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.flushing) {
      if (this.flushing) await this.flushing;
      else await this.runFlush();
    }
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.runFlush();
    });
  }

  private runFlush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        await this.write(batch);
      }
    })().finally(() => {
      this.flushing = undefined;
      if (this.queue.length > 0) this.schedule();
    });
    return this.flushing;
  }

  private async write(batch: Pending[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.writeOnce(batch);
        if (attempt > 0) this.logger.info({ alerts: batch.length, attempts: attempt + 1 }, 'alerts stored after the store caught up');
        return;
      } catch (err) {
        if (this.stopped || !isTransientStoreError(err)) {
          for (const p of batch) p.reject(err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', 'storing an alert failed', { cause: err }));
          return;
        }
        if (attempt === 0) this.retried += batch.length;
        const delay = retryDelayMs(attempt, this.opts.maxRetryDelayMs ?? 5000);
        // One warning when a batch first fails, then one every 10 attempts: a database down for minutes must not flood the log.
        if (attempt % 10 === 0) this.logger.warn({ err: (err as Error).message, alerts: batch.length, attempt: attempt + 1, retryInMs: delay }, 'storing alerts failed for now: retrying (not dropped)');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /** One transaction for the batch: resolves every caller once it committed; throws (resolving none) when it did not. */
  private async writeOnce(batch: Pending[]): Promise<void> {
    const results: RaiseResult[] = [];
    let queued = 0;
    {
      await this.store.writeAlerts(async (ctx) => {
        results.length = 0;
        queued = 0;
        const grouped = batch.filter((p) => !UNGROUPED_TYPES.has(p.input.type));
        if (grouped.length > 0) {
          const earliest = Math.min(...grouped.map((p) => (p.input.time ?? this.now()).getTime()));
          await ctx.prefetchGroups(grouped.map((p) => groupKeyOf(p.input)), new Date(earliest - this.groupWindowMs));
        }
        const online = batch.filter((p) => p.input.type === 'agent_online' && p.input.agentId !== undefined).map((p) => p.input.agentId!);
        if (online.length > 1) await ctx.prefetchAgentStates?.(online);
        for (const p of batch) {
          const r = await this.plan(ctx, p.input);
          queued += r.deliveries;
          results.push(r);
        }
        const violationIds = batch.map((p) => p.input.violationId).filter((id): id is string => id !== undefined);
        if (violationIds.length > 0) await ctx.violationsAlerted(violationIds);
      });
    }
    batch.forEach((p, i) => p.resolve(results[i]!));
    if (queued > 0) this.opts.signal?.notify();
    const events = this.opts.events;
    if (events) {
      batch.forEach((p, i) => {
        const r = results[i]!;
        if (r.skipped || r.alertId === null || p.input.type === 'test') return;
        const a = p.input;
        events.record({
          type: `alert.${a.type}`, at: a.time ?? this.now(), project: a.project ?? '', ...(a.agentId !== undefined ? { agentId: a.agentId } : {}),
          data: {
            alertId: r.alertId, alertType: a.type, severity: a.severity ?? DEFAULT_SEVERITY[a.type], message: a.message, grouped: r.grouped, count: r.count,
            host: a.host ?? null, containerId: a.containerId ?? null, containerName: a.containerName ?? null, image: a.image ?? null,
            ruleId: a.ruleId ?? null, action: a.action ?? null, result: a.result ?? null,
          },
        });
      });
    }
  }

  private async plan(ctx: AlertPlanContext, input: AlertInput): Promise<RaiseResult> {
    const time = input.time ?? this.now();
    if (input.type === 'agent_online') {
      // "Back online" only makes sense after an "offline" alert; a routine
      // reconnect (controller restart, agent upgrade) must not page anyone.
      const last = input.agentId !== undefined ? await ctx.latestAgentStateAlert(input.agentId) : undefined;
      if (last !== 'agent_offline') return { alertId: null, grouped: false, count: 0, deliveries: 0, skipped: true };
    }
    const groupKey = groupKeyOf(input);
    if (!UNGROUPED_TYPES.has(input.type)) {
      const open = await ctx.findOpenGroup(groupKey, new Date(time.getTime() - this.groupWindowMs));
      if (open) {
        await ctx.foldRepeat(open.id, time);
        return { alertId: open.id, grouped: true, count: open.count + 1, deliveries: 0, skipped: false };
      }
    }
    const alert: AlertRecord = {
      id: newAlertId(time.getTime()),
      type: input.type,
      severity: input.severity ?? DEFAULT_SEVERITY[input.type],
      time,
      lastSeenAt: time,
      count: 1,
      groupKey,
      agentId: input.agentId ?? null,
      host: input.host ?? null,
      containerId: input.containerId ?? null,
      containerName: input.containerName ?? null,
      image: input.image ?? null,
      project: input.project ?? null,
      ruleId: input.ruleId ?? null,
      action: input.action ?? null,
      result: input.result ?? null,
      message: input.message,
    };
    const now = this.now();
    const deliveries = (await ctx.enabledEndpoints()).filter((e) => endpointMatches(e, alert)).map((e) => newDelivery(alert.id, e.id, now));
    await ctx.insert({ alert, deliveries });
    return { alertId: alert.id, grouped: false, count: 1, deliveries: deliveries.length, skipped: false };
  }
}

/** Whether an endpoint's filters take this alert. `test` alerts are never matched (they target one endpoint). */
export function endpointMatches(e: WebhookEndpointRecord, a: Pick<AlertRecord, 'type' | 'severity' | 'project'>): boolean {
  if (!e.enabled || a.type === 'test') return false;
  if (severityRank(a.severity) < severityRank(e.minSeverity)) return false;
  if (e.types.length > 0 && !e.types.includes(a.type)) return false;
  if (e.projects.length > 0 && (a.project === null || !e.projects.includes(a.project))) return false;
  return true;
}

export function newDelivery(alertId: string, endpointId: string, now: Date): DeliveryRecord {
  return {
    id: newDeliveryId(now.getTime()),
    alertId,
    endpointId,
    status: 'pending',
    attempts: 0,
    retryBase: 0,
    nextAttemptAt: now,
    createdAt: now,
    updatedAt: now,
    deliveredAt: null,
    lastStatusCode: null,
    lastError: null,
    deadReason: null,
  };
}

function normalize(input: AlertInput): AlertInput {
  if (!isAlertType(input.type)) throw new BulkheadError('BK_ERR_BAD_REQUEST', `unknown alert type "${String(input.type)}"`);
  if (input.severity !== undefined && !isSeverity(input.severity)) throw new BulkheadError('BK_ERR_BAD_REQUEST', `unknown alert severity "${String(input.severity)}"`);
  if (input.time !== undefined && Number.isNaN(input.time.getTime())) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'alert time is not a valid date');
  const out: AlertInput = { type: input.type, message: clip(String(input.message ?? ''), MAX_TEXT) || input.type.replace(/_/g, ' ') };
  if (input.severity !== undefined) out.severity = input.severity;
  if (input.time !== undefined) out.time = input.time;
  if (input.violationId !== undefined && input.violationId !== '') out.violationId = input.violationId;
  for (const k of ['agentId', 'host', 'containerId', 'containerName', 'image', 'project', 'ruleId', 'action', 'result'] as const) {
    const v = input[k];
    // Empty strings (proto defaults) mean "not known".
    if (typeof v === 'string' && v !== '') out[k] = clip(v, MAX_FIELD);
  }
  return out;
}

function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}
