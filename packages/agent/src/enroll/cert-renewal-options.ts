// Options for the agent's certificate renewal and the timing arithmetic behind
// them, kept pure (dates in, milliseconds out) so they are tested without
// waiting: when to renew, how long to back off after a failure, and when a
// certificate is past saving.
import { BulkheadError } from '@bulkhead/shared';

export interface CertRenewalOptions {
  /** Renew once this fraction of the certificate's lifetime has passed. Default 0.5 (day 45 of 90). */
  renewAtFraction?: number;
  /**
   * Renew when less than this many milliseconds of validity are left. When
   * set, it replaces renewAtFraction (tests, or operators who want a fixed margin).
   */
  renewBeforeMs?: number;
  /** First retry after a failed renewal; doubled per failure, full jitter. Default 30 s. */
  minRetryMs?: number;
  /** Cap of the retry delay. Default 15 min. */
  maxRetryMs?: number;
  /**
   * With an expired certificate the controller cannot be reached at all; the
   * agent logs BK_ERR_CERT_EXPIRED and tries again this rarely. Default 1 h.
   */
  expiredRetryMs?: number;
  /** How long to wait for the controller's answer to a renewal request. Default 30 s. */
  answerTimeoutMs?: number;
}

export type ResolvedCertRenewalOptions = Required<Omit<CertRenewalOptions, 'renewBeforeMs'>> & { renewBeforeMs: number | undefined };

export const CERT_RENEWAL_DEFAULTS: ResolvedCertRenewalOptions = {
  renewAtFraction: 0.5,
  renewBeforeMs: undefined,
  minRetryMs: 30_000,
  maxRetryMs: 15 * 60_000,
  expiredRetryMs: 60 * 60_000,
  answerTimeoutMs: 30_000,
};

/** Adds defaults; an impossible combination is a start-up error. */
export function resolveCertRenewalOptions(o: CertRenewalOptions = {}): ResolvedCertRenewalOptions {
  const r: ResolvedCertRenewalOptions = {
    renewAtFraction: o.renewAtFraction ?? CERT_RENEWAL_DEFAULTS.renewAtFraction,
    renewBeforeMs: o.renewBeforeMs,
    minRetryMs: o.minRetryMs ?? CERT_RENEWAL_DEFAULTS.minRetryMs,
    maxRetryMs: o.maxRetryMs ?? CERT_RENEWAL_DEFAULTS.maxRetryMs,
    expiredRetryMs: o.expiredRetryMs ?? CERT_RENEWAL_DEFAULTS.expiredRetryMs,
    answerTimeoutMs: o.answerTimeoutMs ?? CERT_RENEWAL_DEFAULTS.answerTimeoutMs,
  };
  const bad = (why: string) => new BulkheadError('BK_ERR_CONFIG_INVALID', `certificate renewal: ${why}`);
  if (!(r.renewAtFraction > 0 && r.renewAtFraction < 1)) throw bad(`renewAtFraction must be between 0 and 1 (exclusive), got ${r.renewAtFraction}`);
  if (r.renewBeforeMs !== undefined && !(r.renewBeforeMs > 0)) throw bad(`renewBeforeMs must be positive, got ${r.renewBeforeMs}`);
  for (const k of ['minRetryMs', 'maxRetryMs', 'expiredRetryMs', 'answerTimeoutMs'] as const) {
    if (!(Number.isFinite(r[k]) && r[k] > 0)) throw bad(`${k} must be a positive number of milliseconds, got ${r[k]}`);
  }
  if (r.minRetryMs > r.maxRetryMs) throw bad(`minRetryMs (${r.minRetryMs}) exceeds maxRetryMs (${r.maxRetryMs})`);
  return r;
}

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/** The moment renewal is due: lifetime × fraction after notBefore, or renewBeforeMs before notAfter. */
export function renewalDueAt(v: Validity, o: ResolvedCertRenewalOptions): Date {
  const from = v.notBefore.getTime();
  const to = v.notAfter.getTime();
  if (o.renewBeforeMs !== undefined) return new Date(Math.max(from, to - o.renewBeforeMs));
  return new Date(from + Math.round((to - from) * o.renewAtFraction));
}

export type RenewalPlan = { kind: 'expired' } | { kind: 'renew-in'; ms: number };

/**
 * What to do at `now`: renew in `ms` (0 = at once, e.g. an agent started
 * with less than half its lifetime left), or nothing can be done (expired).
 */
export function planRenewal(v: Validity, now: Date, o: ResolvedCertRenewalOptions): RenewalPlan {
  if (now.getTime() >= v.notAfter.getTime()) return { kind: 'expired' };
  return { kind: 'renew-in', ms: Math.max(0, renewalDueAt(v, o).getTime() - now.getTime()) };
}

/**
 * Delay before retry number `attempt` (0-based) after a failure: full jitter
 * under min × 2^attempt, capped at maxRetryMs, never below half of min (a
 * fleet retrying after a controller outage spreads out instead of spinning).
 */
export function renewalRetryDelayMs(attempt: number, o: ResolvedCertRenewalOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(o.maxRetryMs, o.minRetryMs * 2 ** Math.min(attempt, 30));
  return Math.max(Math.round(o.minRetryMs / 2), Math.round(random() * ceiling));
}

/** setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); longer waits are taken in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
