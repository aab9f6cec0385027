// Owns sending the outbox. N DeliveryWorkers each loop: lease a batch of due
// deliveries from the store, POST them concurrently (signed per Standard
// Webhooks), and record every attempt and the new state in one transaction.
// All state is in the database: a worker that dies mid-batch leaves leases
// that expire, and the deliveries are sent again (at-least-once, same
// webhook-id, so receivers can de-duplicate).
//
// Outcomes: 2xx delivered · 410 dead-lettered and the endpoint disabled ·
// 408/429/5xx, timeouts and connection errors retried on the schedule (429
// and 503 honour Retry-After) until it runs out, then dead-lettered · any
// other status, and an unsafe target, dead-lettered at once.
//
// A failing endpoint is also paused briefly (in memory) so one dead
// receiver cannot occupy every worker with timeouts while others wait.
import { VERSION, type Logger } from '@bulkhead/shared';
import type { AlertStore, AttemptResult, ClaimedDelivery, DeliveryStatus } from './alert-store';
import { parseRetryAfter, retryDelayMs, type DeliveryOptions } from './alert-options';
import { HttpSender, type SendRequest, type SendResult } from './http-sender';
import { renderBody } from './payload';
import { secretKey, signatureHeader } from './webhook-secret';
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
  /** Metrics (issue 5): called once per attempt with its outcome (delivered, retry, failed, gone) and latency. */
  onAttempt?: (outcome: string, latencyMs: number) => void;
}

type Resolved = Required<Omit<DeliveryDispatcherOptions, 'sender' | 'signal' | 'onAttempt'>> & {
  sender: Pick<HttpSender, 'send' | 'close'>;
  signal: WorkSignal;
  onAttempt: DeliveryDispatcherOptions['onAttempt'];
};

const DEFAULTS: DeliveryOptions = {
  workers: 4,
  batchSize: 16,
  timeoutMs: 10_000,
  retryScheduleMs: [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
  jitter: 0.2,
  leaseMs: 30_000,
  pollIntervalMs: 1_000,
  maxRetryAfterMs: 86_400_000,
  retentionMs: 30 * 86_400_000,
};

/** Pauses endpoints that just failed, so their queue waits instead of timing out one by one. */
export class EndpointHealth {
  private readonly state = new Map<string, { failures: number; pausedUntil: number }>();

  failed(endpointId: string, now: number, pauseCapMs: number, retryAfterMs?: number): void {
    const s = this.state.get(endpointId) ?? { failures: 0, pausedUntil: 0 };
    s.failures++;
    const backoff = Math.min(1000 * 2 ** Math.min(s.failures - 1, 10), 60_000, pauseCapMs);
    s.pausedUntil = Math.max(s.pausedUntil, now + (retryAfterMs ?? backoff));
    this.state.set(endpointId, s);
  }

  succeeded(endpointId: string): void {
    this.state.delete(endpointId);
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

  constructor(
    readonly index: number,
    private readonly o: Resolved,
    private readonly health: EndpointHealth,
  ) {
    this.done = this.loop();
  }

  stop(): void {
    this.stopped = true;
  }

  private async loop(): Promise<void> {
    const { store, signal, logger } = this.o;
    while (!this.stopped) {
      const gen = signal.generation;
      const now = this.o.now();
      let claimed: ClaimedDelivery[];
      try {
        claimed = await store.claimDue(now, this.o.batchSize, this.o.leaseMs, this.health.paused(now.getTime()));
      } catch (err) {
        if (this.stopped) break;
        logger.error({ err, worker: this.index }, 'claiming webhook deliveries failed');
        await signal.wait(this.o.pollIntervalMs, gen);
        continue;
      }
      if (claimed.length === 0) {
        await signal.wait(await this.idleWait(now), gen);
        continue;
      }
      const results = await Promise.all(claimed.map((c) => this.attempt(c)));
      for (const r of results) this.o.onAttempt?.(r.attempt.outcome, r.attempt.latencyMs); // metrics (issue 5)
      try {
        await store.recordAttempts(results, this.o.now());
      } catch (err) {
        // The leases lapse and the deliveries go out again: at-least-once.
        logger.error({ err, worker: this.index, deliveries: results.length }, 'recording webhook attempts failed');
      }
    }
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
    const health = new EndpointHealth();
    this.workers = Array.from({ length: o.workers }, (_, i) => new DeliveryWorker(i, o, health));
    this.purgeTimer = setInterval(() => void this.purge(), 3_600_000);
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
    };
    o.logger.info({ workers: o.workers, timeoutMs: o.timeoutMs, retryScheduleMs: o.retryScheduleMs }, 'webhook delivery started');
    return new DeliveryDispatcher(o);
  }

  /** Wakes idle workers (new deliveries were queued). */
  notify(): void {
    this.signal.notify();
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
