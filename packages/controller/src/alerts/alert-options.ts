// Options of alerting and webhook delivery, with their defaults in one place.
// `resolveAlertOptions` turns "30s"-style strings into milliseconds and
// rejects nonsense at start-up. The controller reads overrides from the
// environment (BULKHEAD_WEBHOOK_*, BULKHEAD_ALERT_*; see docs/alerts.md) —
// tests use them for short retry schedules.
import { BulkheadError, parseDuration } from '@bulkhead/shared';

export interface AlertOptions {
  /** Repeats of the same (type, rule, container) within this window are grouped. Default 5 min. */
  groupWindowMs: number;
}

export interface DeliveryOptions {
  /** Concurrent delivery workers. Default 4. */
  workers: number;
  /**
   * Attempts one worker keeps in flight; it claims more as each one ends.
   * workers × batchSize bounds the receivers that can hang at once without
   * delaying anybody else. Default 64.
   */
  batchSize: number;
  /**
   * Attempts in flight to one endpoint once it has answered 2xx in the last
   * minute; before that (or after a failure), one at a time. Default 8.
   */
  perEndpoint: number;
  /** Per attempt: connect to the end of the response. Default 10 s. */
  timeoutMs: number;
  /**
   * Wait after the n-th failed attempt (1-based) of a cycle; one more failure
   * than entries dead-letters the delivery. Each wait gets ±jitter.
   * Default 5s, 5m, 30m, 2h, 5h, 10h, 10h (8 attempts over ~28 h).
   */
  retryScheduleMs: number[];
  /** Fraction of random spread applied to each retry wait (0.2 = ±20 %). Default 0.2. */
  jitter: number;
  /** How long a claim holds a delivery before another worker may take it. Default timeout + 20 s. */
  leaseMs: number;
  /** Wake-up interval when nothing signals new work. Default 1 s. */
  pollIntervalMs: number;
  /** Longest Retry-After honoured; longer ones are capped. Default 24 h. */
  maxRetryAfterMs: number;
  /** Delivered/dead deliveries and their alerts are deleted after this long. Default 30 d. */
  retentionMs: number;
}

export interface AlertOptionsInput {
  groupWindow?: string | number;
  workers?: number | string;
  batchSize?: number | string;
  perEndpoint?: number | string;
  timeout?: string | number;
  retrySchedule?: string | Array<string | number>;
  jitter?: number | string;
  lease?: string | number;
  pollInterval?: string | number;
  maxRetryAfter?: string | number;
  retention?: string | number;
}

export const DEFAULT_RETRY_SCHEDULE = ['5s', '5m', '30m', '2h', '5h', '10h', '10h'];

export function resolveAlertOptions(input: AlertOptionsInput = {}): AlertOptions & DeliveryOptions {
  const groupWindowMs = parseDuration(input.groupWindow ?? '5m', 'alert group window');
  const workers = positiveInt(input.workers ?? 4, 'webhook workers', 64);
  const batchSize = positiveInt(input.batchSize ?? 64, 'webhook batch size', 500);
  const perEndpoint = positiveInt(input.perEndpoint ?? 8, 'webhook attempts per endpoint', 64);
  const timeoutMs = parseDuration(input.timeout ?? '10s', 'webhook timeout');
  if (timeoutMs < 100) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'webhook timeout must be at least 100ms');
  const schedule = typeof input.retrySchedule === 'string' ? input.retrySchedule.split(',').map((s) => s.trim()).filter((s) => s !== '') : (input.retrySchedule ?? DEFAULT_RETRY_SCHEDULE);
  const retryScheduleMs = schedule.map((s) => parseDuration(s, 'webhook retry schedule'));
  if (retryScheduleMs.length > 100) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'webhook retry schedule has more than 100 entries');
  const jitter = Number(input.jitter ?? 0.2);
  if (!Number.isFinite(jitter) || jitter < 0 || jitter >= 1) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `webhook jitter must be in [0, 1), got ${String(input.jitter)}`);
  const leaseMs = input.lease !== undefined ? parseDuration(input.lease, 'webhook lease') : timeoutMs + 20_000;
  if (leaseMs <= timeoutMs) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `webhook lease (${leaseMs}ms) must be longer than the webhook timeout (${timeoutMs}ms), or a slow attempt would be sent twice`);
  }
  const pollIntervalMs = parseDuration(input.pollInterval ?? '1s', 'webhook poll interval');
  if (pollIntervalMs < 10) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'webhook poll interval must be at least 10ms');
  return {
    groupWindowMs,
    workers,
    batchSize,
    perEndpoint,
    timeoutMs,
    retryScheduleMs,
    jitter,
    leaseMs,
    pollIntervalMs,
    maxRetryAfterMs: parseDuration(input.maxRetryAfter ?? '24h', 'webhook max Retry-After'),
    retentionMs: parseDuration(input.retention ?? '30d', 'alert retention'),
  };
}

/** The overrides the controller takes from its environment. */
export function alertOptionsFromEnv(env: Record<string, string | undefined>): AlertOptionsInput {
  const pick = (k: string): string | undefined => (env[k] === undefined || env[k] === '' ? undefined : env[k]);
  return {
    groupWindow: pick('BULKHEAD_ALERT_GROUP_WINDOW'),
    retention: pick('BULKHEAD_ALERT_RETENTION'),
    workers: pick('BULKHEAD_WEBHOOK_WORKERS'),
    batchSize: pick('BULKHEAD_WEBHOOK_BATCH'),
    perEndpoint: pick('BULKHEAD_WEBHOOK_PER_ENDPOINT'),
    timeout: pick('BULKHEAD_WEBHOOK_TIMEOUT'),
    retrySchedule: pick('BULKHEAD_WEBHOOK_RETRY_SCHEDULE'),
    jitter: pick('BULKHEAD_WEBHOOK_JITTER'),
    lease: pick('BULKHEAD_WEBHOOK_LEASE'),
    pollInterval: pick('BULKHEAD_WEBHOOK_POLL_INTERVAL'),
    maxRetryAfter: pick('BULKHEAD_WEBHOOK_MAX_RETRY_AFTER'),
  };
}

function positiveInt(v: number | string, field: string, max: number): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${field} must be an integer 1–${max}, got ${String(v)}`);
  return n;
}

/**
 * The wait before the next attempt after `failedInCycle` failures (1-based),
 * or undefined when the schedule is exhausted.
 */
export function retryDelayMs(schedule: number[], failedInCycle: number, jitter: number, random: () => number = Math.random): number | undefined {
  const base = schedule[failedInCycle - 1];
  if (base === undefined) return undefined;
  return Math.max(0, Math.round(base * (1 - jitter + 2 * jitter * random())));
}

/**
 * Retry-After as milliseconds from `now`: delta-seconds or an HTTP-date
 * (RFC 9110 §10.2.3). Undefined when absent or unparseable; never negative.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: Date): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  if (Number.isNaN(t) || !/[a-z]/i.test(s)) return undefined;
  return Math.max(0, t - now.getTime());
}
