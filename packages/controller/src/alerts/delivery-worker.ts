// Owns sending the outbox. N DeliveryWorkers each keep up to `batchSize`
// attempts in flight: they lease due deliveries from the store, POST each one
// (signed per Standard Webhooks) on its own, and record attempts as they end
// (those that end together share one transaction). No attempt waits for
// another: a worker claims more as soon as one slot frees, so a receiver that
// never answers holds its own slots for the timeout and nobody else's.
// All state is in the database: a worker that dies mid-batch leaves leases
// that expire, and the deliveries are sent again (at-least-once, same
// webhook-id, so receivers can de-duplicate).
//
// Outcomes: 2xx delivered · 410 dead-lettered and the endpoint disabled ·
// 408/429/5xx, timeouts and connection errors retried on the schedule (429
// and 503 honour Retry-After) until it runs out, then dead-lettered · any
// other status, and an unsafe target, dead-lettered at once.
//
// Per endpoint (EndpointHealth, shared by the workers): an endpoint with no
// success in the last minute gets one attempt at a time, one that answers
// gets up to `perEndpoint`; a failing endpoint is paused briefly. So N dead
// receivers hold at most N slots, and a healthy endpoint still finds one
// while fewer than workers × batchSize receivers hang at once.
import { VERSION, type Logger } from '@bulkhead/shared';
import type { AlertStore, AttemptResult, ClaimedDelivery, DeliveryStatus } from './alert-store';
import { parseRetryAfter, retryDelayMs, type DeliveryOptions } from './alert-options';
import { HttpSender, type SendRequest, type SendResult } from './http-sender';
import { renderBody } from './payload';
import { secretKey, signatureHeader } from './webhook-secret';
import { gatedTick, type JobGate } from '../replicas/fleet-jobs';
import { WorkSignal } from './work-signal';

export interface DeliveryDispatcherOptions extends Partial<DeliveryOptions> {
  store: AlertStore;
  logger: Logger;
  /** Shared with AlertService/WebhookService so new work wakes idle workers. */
  signal?: WorkSignal;
  now?: () => Date;
  random?: () => number;
  /** Default: a keep-alive HttpSender. Tests may pass a fake. */
  sender?: Pick<HttpSender, 'send' | 'close'>;
  /** Metrics: called once per attempt with its outcome (delivered, retry, failed, gone) and latency. */
  onAttempt?: (outcome: string, latencyMs: number) => void;
  /** Controller replicas: whether this replica runs the hourly purge now (replicas/fleet-jobs.ts); default always. */
  jobGate?: JobGate;
}

type Resolved = Required<Omit<DeliveryDispatcherOptions, 'sender' | 'signal' | 'onAttempt' | 'jobGate'>> & {
  sender: Pick<HttpSender, 'send' | 'close'>;
  signal: WorkSignal;
  onAttempt: DeliveryDispatcherOptions['onAttempt'];
  jobGate: JobGate | undefined;
};

/** How often old alerts and deliveries are purged. */
export const PURGE_EVERY_MS = 3_600_000;

const DEFAULTS: DeliveryOptions = {
  workers: 4,
  batchSize: 64,
  perEndpoint: 8,
  timeoutMs: 10_000,
  retryScheduleMs: [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
  jitter: 0.2,
  leaseMs: 30_000,
  pollIntervalMs: 1_000,
  maxRetryAfterMs: 86_400_000,
  retentionMs: 30 * 86_400_000,
};

/** How long a success keeps an endpoint trusted with more than one attempt at a time. */
const PROVEN_FOR_MS = 60_000;

/**
 * Pauses endpoints that just failed, so their queue waits instead of timing
 * out one by one, and limits the attempts in flight to each endpoint.
 */
export class EndpointHealth {
  private readonly state = new Map<string, { failures: number; pausedUntil: number }>();
  private readonly lastOk = new Map<string, number>();
  private readonly busy = new Map<string, number>();
  private readonly waiters = new Map<string, Array<() => void>>();

  constructor(private readonly perEndpoint = 8) {}

  failed(endpointId: string, now: number, pauseCapMs: number, retryAfterMs?: number): void {
    const s = this.state.get(endpointId) ?? { failures: 0, pausedUntil: 0 };
    s.failures++;
    const backoff = Math.min(1000 * 2 ** Math.min(s.failures - 1, 10), 60_000, pauseCapMs);
    s.pausedUntil = Math.max(s.pausedUntil, now + (retryAfterMs ?? backoff));
    this.state.set(endpointId, s);
    this.lastOk.delete(endpointId);
  }

  /** True when the endpoint failed since its last success (this process's view). */
  failing(endpointId: string): boolean {
    return this.state.has(endpointId);
  }

  succeeded(endpointId: string, now = Date.now()): void {
    this.state.delete(endpointId);
    this.lastOk.set(endpointId, now);
  }

  /** Attempts allowed in flight to this endpoint now: 1 until it has answered recently. */
  limit(endpointId: string, now: number): number {
    const ok = this.lastOk.get(endpointId);
    if (ok === undefined) return 1;
    if (now - ok > PROVEN_FOR_MS) {
      this.lastOk.delete(endpointId);
      return 1;
    }
    return this.perEndpoint;
  }

  /** Endpoints at their limit: claiming more for them would only queue. */
  full(now: number): string[] {
    const out: string[] = [];
    for (const [id, n] of this.busy) if (n >= this.limit(id, now)) out.push(id);
    return out;
  }

  /**
   * Takes a slot for one attempt to `endpointId`; waits while the endpoint is
   * at its limit, up to `maxWaitMs`. False when the wait ran out (the caller
   * leaves the delivery to its lease).
   */
  async acquire(endpointId: string, maxWaitMs: number): Promise<boolean> {
    const deadline = Date.now() + maxWaitMs;
    while ((this.busy.get(endpointId) ?? 0) >= this.limit(endpointId, Date.now())) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const list = this.waiters.get(endpointId) ?? [];
        const wake = (): void => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          const l = this.waiters.get(endpointId);
          const i = l?.indexOf(wake) ?? -1;
          if (l && i >= 0) l.splice(i, 1);
          resolve();
        }, left);
        list.push(wake);
        this.waiters.set(endpointId, list);
      });
    }
    this.busy.set(endpointId, (this.busy.get(endpointId) ?? 0) + 1);
    return true;
  }

  release(endpointId: string): void {
    const n = (this.busy.get(endpointId) ?? 1) - 1;
    if (n <= 0) this.busy.delete(endpointId);
    else this.busy.set(endpointId, n);
    const list = this.waiters.get(endpointId);
    const next = list?.shift();
    if (list && list.length === 0) this.waiters.delete(endpointId);
    next?.();
  }

  paused(now: number): string[] {
    const out: string[] = [];
    for (const [id, s] of this.state) if (s.pausedUntil > now) out.push(id);
    return out;
  }

  /** The earliest end of a current pause, if any. */
  nextResume(now: number): number | undefined {
    let min: number | undefined;
    for (const s of this.state.values()) if (s.pausedUntil > now && (min === undefined || s.pausedUntil < min)) min = s.pausedUntil;
    return min;
  }
}

export class DeliveryWorker {
  private stopped = false;
  readonly done: Promise<void>;
  /** This worker's claimed deliveries not yet finished (sending or waiting for their endpoint). */
  private inFlight = 0;
  private readonly running = new Set<Promise<void>>();
  private slotFreed: (() => void) | undefined;
  private finished: AttemptResult[] = [];
  private flushing: Promise<void> | undefined;

  constructor(
    readonly index: number,
    private readonly o: Resolved,
    private readonly health: EndpointHealth,
  ) {
    this.done = this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.slotFreed?.();
  }

  private async loop(): Promise<void> {
    const { store, signal, logger } = this.o;
    while (!this.stopped) {
      const gen = signal.generation;
      const free = this.o.batchSize - this.inFlight;
      if (free <= 0) {
        await this.nextSlot(undefined);
        continue;
      }
      const now = this.o.now();
      const nowMs = now.getTime();
      let claimed: ClaimedDelivery[];
      try {
        claimed = await store.claimDue(now, free, this.o.leaseMs, [...new Set([...this.health.paused(nowMs), ...this.health.full(Date.now())])]);
      } catch (err) {
        if (this.stopped) break;
        logger.error({ err, worker: this.index }, 'claiming webhook deliveries failed');
        await this.nextSlot(signal.wait(this.o.pollIntervalMs, gen));
        continue;
      }
      if (claimed.length === 0) {
        await this.nextSlot(signal.wait(await this.idleWait(now), gen));
        continue;
      }
      for (const c of claimed) this.launch(c, nowMs);
    }
    await Promise.all([...this.running]);
    await this.flush();
  }

  /** Resolves when a slot frees (or `also` resolves). */
  private nextSlot(also: Promise<void> | undefined): Promise<void> {
    const slot = new Promise<void>((resolve) => (this.slotFreed = resolve));
    return also ? Promise.race([slot, also]) : slot;
  }

  private launch(c: ClaimedDelivery, claimedAtMs: number): void {
    this.inFlight++;
    const p = this.run(c, claimedAtMs).finally(() => {
      this.inFlight--;
      this.running.delete(p);
      const wake = this.slotFreed;
      this.slotFreed = undefined;
      wake?.();
    });
    this.running.add(p);
  }

  private async run(c: ClaimedDelivery, claimedAtMs: number): Promise<void> {
    const endpointId = c.endpoint.id;
    // A delivery claimed together with others for the same endpoint waits for
    // a slot, but only while its lease can still cover a whole attempt;
    // otherwise it is left to lapse and is claimed again later.
    const maxWait = claimedAtMs + this.o.leaseMs - this.o.timeoutMs - 1000 - Date.now();
    if (!(await this.health.acquire(endpointId, Math.max(0, maxWait)))) return;
    let r: AttemptResult;
    try {
      if (this.health.paused(this.o.now().getTime()).includes(endpointId)) return; // it failed while this one waited
      r = await this.attempt(c);
    } finally {
      this.health.release(endpointId);
    }
    this.o.onAttempt?.(r.attempt.outcome, r.attempt.latencyMs); // delivery metrics
    this.finished.push(r);
    await this.flush();
  }

  /** Records finished attempts; those that end while a write runs go in the next one together. */
  private async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.finished.length === 0) return;
    const batch = this.finished;
    this.finished = [];
    this.flushing = this.o.store.recordAttempts(batch, this.o.now()).then(
      () => undefined,
      (err: unknown) => {
        // The leases lapse and the deliveries go out again: at-least-once.
        this.o.logger.error({ err, worker: this.index, deliveries: batch.length }, 'recording webhook attempts failed');
      },
    ).finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  /** Sleep until the next due retry, the end of an endpoint pause, or the poll interval. */
  private async idleWait(now: Date): Promise<number> {
    let wait = this.o.pollIntervalMs;
    const resume = this.health.nextResume(now.getTime());
    if (resume !== undefined) wait = Math.min(wait, resume - now.getTime());
    try {
      const due = await this.o.store.nextDueAfter(now);
      if (due !== undefined) wait = Math.min(wait, due.getTime() - now.getTime());
    } catch {
      /* the poll interval covers it */
    }
    return Math.max(1, wait);
  }

  private async attempt(c: ClaimedDelivery): Promise<AttemptResult> {
    const { delivery: d, endpoint: e, alert } = c;
    const o = this.o;
    const at = o.now();
    const attemptNo = d.attempts + 1;
    let res: SendResult;
    try {
      const body = renderBody(e.format, alert, at);
      const timestamp = Math.floor(at.getTime() / 1000);
      const keys = [secretKey(e.secret)];
      if (e.previousSecret !== null && e.previousSecretExpiresAt !== null && e.previousSecretExpiresAt.getTime() > at.getTime()) keys.push(secretKey(e.previousSecret));
      const req: SendRequest = {
        url: new URL(e.url),
        body,
        timeoutMs: o.timeoutMs,
        allowUnsafeTarget: e.allowUnsafeTarget,
        headers: {
          ...e.headers,
          'content-type': 'application/json',
          'user-agent': `Bulkhead-Webhooks/${VERSION}`,
          'webhook-id': d.id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signatureHeader(keys, d.id, timestamp, body),
        },
      };
      res = await o.sender.send(req);
    } catch (err) {
      res = { status: null, headers: {}, latencyMs: 0, error: `internal: ${(err as Error).message}`, unsafeTarget: false, bodySnippet: '' };
    }
    const end = o.now();
    const ms = end.getTime();
    const base = { deliveryId: d.id, attempt: attemptNo, at, statusCode: res.status, latencyMs: res.latencyMs };
    // A child logger per attempt is measurable at thousands per second: built only when used.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= o.logger.child({ deliveryId: d.id, webhookId: e.id, alertId: alert.id, attempt: attemptNo }));
    const result = (status: DeliveryStatus, outcome: AttemptResult['attempt']['outcome'], error: string | null, next: Date | null, extra: Partial<AttemptResult> = {}): AttemptResult => ({
      deliveryId: d.id,
      claimToken: c.claimToken,
      status,
      attempt: { ...base, error, outcome, nextAttemptAt: next },
      ...extra,
    });

    if (res.status !== null && res.status >= 200 && res.status < 300) {
      if (this.health.failing(e.id)) this.expedite(e.id, end);
      this.health.succeeded(e.id);
      if (o.logger.isLevelEnabled('debug')) log().debug({ status: res.status, latencyMs: Math.round(res.latencyMs) }, 'webhook delivered');
      return result('delivered', 'delivered', null, null);
    }
    if (res.status === 410) {
      const why = `the receiver answered 410 Gone at ${end.toISOString()}`;
      log().warn({ status: 410 }, 'webhook endpoint disabled: receiver answered 410 Gone');
      return result('dead', 'gone', httpError(res), null, { deadReason: `${why}; webhook disabled`, disableEndpoint: why });
    }
    const error = res.status === null ? (res.error ?? 'no response') : httpError(res);
    if (res.unsafeTarget) {
      log().warn({ error }, 'webhook delivery refused: unsafe target');
      return result('dead', 'failed', error, null, { deadReason: error });
    }
    const retryable = res.status === null || res.status === 408 || res.status === 429 || res.status >= 500;
    if (!retryable) {
      log().warn({ status: res.status }, 'webhook delivery failed permanently; dead-lettered');
      return result('dead', 'failed', error, null, { deadReason: `permanent failure: ${error}` });
    }
    const failedInCycle = attemptNo - d.retryBase;
    let delay = retryDelayMs(o.retryScheduleMs, failedInCycle, o.jitter, o.random);
    const retryAfter = res.status === 429 || res.status === 503 ? parseRetryAfter(res.headers['retry-after'], end) : undefined;
    const honoured = retryAfter === undefined ? undefined : Math.min(retryAfter, o.maxRetryAfterMs);
    if (delay === undefined) {
      this.health.failed(e.id, ms, o.pollIntervalMs, honoured);
      log().warn({ status: res.status, error, attempts: failedInCycle }, 'webhook delivery exhausted its retries; dead-lettered');
      return result('dead', 'failed', error, null, { deadReason: `gave up after ${failedInCycle} attempts; last: ${error}` });
    }
    if (honoured !== undefined) delay = honoured;
    this.health.failed(e.id, ms, delay, honoured);
    const next = new Date(ms + delay);
    log().info({ status: res.status, error, nextAttemptAt: next.toISOString() }, 'webhook delivery failed; will retry');
    return result('pending', 'retry', error, next);
  }

  /**
   * The endpoint answers again after failing: its deliveries waiting for a later retry (30 min,
   * 2 h … after an outage) are due now, instead of each waiting out its own schedule.
   */
  private expedite(endpointId: string, now: Date): void {
    this.o.store.expediteEndpoint(endpointId, now).then(
      (n) => {
        if (n === 0) return;
        this.o.logger.info({ webhookId: endpointId, deliveries: n }, 'webhook endpoint answers again: its waiting deliveries are due now');
        this.o.signal.notify();
      },
      (err: unknown) => this.o.logger.error({ err, webhookId: endpointId }, 'making the waiting deliveries of a recovered endpoint due failed; they keep their schedule'),
    );
  }
}

function httpError(res: SendResult): string {
  const snippet = res.bodySnippet.replace(/\s+/g, ' ').trim().slice(0, 200);
  return `HTTP ${res.status}${snippet ? `: ${snippet}` : ''}`;
}

/** Runs the workers and the periodic clean-up of old deliveries. */
export class DeliveryDispatcher {
  private readonly workers: DeliveryWorker[];
  private readonly purgeTimer: NodeJS.Timeout;
  readonly signal: WorkSignal;

  private constructor(private readonly o: Resolved) {
    this.signal = o.signal;
    const health = new EndpointHealth(o.perEndpoint);
    this.workers = Array.from({ length: o.workers }, (_, i) => new DeliveryWorker(i, o, health));
    // Gated (several replicas): the timer fires a few times per period and the gate lets one replica run per period.
    this.purgeTimer = setInterval(() => void this.purgeOncePerFleet(), o.jobGate ? gatedTick(PURGE_EVERY_MS) : PURGE_EVERY_MS);
    this.purgeTimer.unref();
  }

  static start(opts: DeliveryDispatcherOptions): DeliveryDispatcher {
    const o: Resolved = {
      ...DEFAULTS,
      ...stripUndefined(opts),
      store: opts.store,
      logger: opts.logger,
      signal: opts.signal ?? new WorkSignal(),
      now: opts.now ?? (() => new Date()),
      random: opts.random ?? Math.random,
      sender: opts.sender ?? new HttpSender(),
      onAttempt: opts.onAttempt,
      jobGate: opts.jobGate,
    };
    o.logger.info({ workers: o.workers, timeoutMs: o.timeoutMs, retryScheduleMs: o.retryScheduleMs }, 'webhook delivery started');
    return new DeliveryDispatcher(o);
  }

  /** Wakes idle workers (new deliveries were queued). */
  notify(): void {
    this.signal.notify();
  }

  /** The hourly purge, on one replica per period. */
  async purgeOncePerFleet(): Promise<boolean> {
    try {
      if (this.o.jobGate && !(await this.o.jobGate('alert-purge', PURGE_EVERY_MS))) return false;
    } catch (err) {
      this.o.logger.error({ err }, 'claiming the alert purge failed; it is tried again at the next tick');
      return false;
    }
    await this.purge();
    return true;
  }

  async purge(): Promise<void> {
    try {
      const r = await this.o.store.purge(new Date(this.o.now().getTime() - this.o.retentionMs));
      if (r.alerts + r.deliveries > 0) this.o.logger.info(r, 'purged old alerts and deliveries');
    } catch (err) {
      this.o.logger.error({ err }, 'purging old alerts failed');
    }
  }

  /** Stops claiming; in-flight attempts finish (bounded by the timeout) and are recorded. */
  async stop(): Promise<void> {
    clearInterval(this.purgeTimer);
    for (const w of this.workers) w.stop();
    this.signal.notify();
    await Promise.all(this.workers.map((w) => w.done));
    this.o.sender.close();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
