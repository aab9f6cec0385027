// Owns throttling of failed authentication, in memory: at most `max`
// failures per `windowMs` per bucket; a bucket over the limit is refused with
// 429 until its oldest failure leaves the window. Written here rather than
// taking @fastify/rate-limit: we limit *failures* (not requests) under two
// keys, which is ~40 lines, and the plugin would add a dependency for a
// different job. Memory is bounded: past `maxBuckets` the least recently
// failed bucket is forgotten. Per-process: several controllers behind one
// address each keep their own.
//
// The buckets (AuthFailureLimits) are the client address and the pair
// (key id, client address) — never a key id alone. Key ids are not secret,
// so a per-key bucket let anyone lock a key's holder out from anywhere; and
// it bought nothing, since a key's secret is 256 random bits that no number
// of addresses can guess. What is left to stop is one address hammering:
// the pair is limited tighter than the address, so a client stuck on a wrong
// key throttles itself on that key without using up the allowance of its
// neighbours behind the same address.

export interface FailureLimiterOptions {
  /** Failures allowed per window. Default 10. */
  max?: number;
  /** Default 60 000 ms. */
  windowMs?: number;
  /** Default 10 000. */
  maxBuckets?: number;
}

export class FailureLimiter {
  readonly max: number;
  readonly windowMs: number;
  private readonly maxBuckets: number;
  /** bucket → failure times (ms), oldest first, at most `max`. Map order = least recently failed first. */
  private readonly buckets = new Map<string, number[]>();

  constructor(opts: FailureLimiterOptions = {}) {
    this.max = opts.max ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
    this.maxBuckets = opts.maxBuckets ?? 10_000;
    if (!Number.isSafeInteger(this.max) || this.max < 1) throw new RangeError('FailureLimiter max must be a positive integer');
    if (!(this.windowMs > 0)) throw new RangeError('FailureLimiter windowMs must be positive');
  }

  /** Milliseconds until `bucket` may try again; 0 when it may now. */
  retryAfterMs(bucket: string, nowMs: number): number {
    const times = this.live(bucket, nowMs);
    return times.length >= this.max ? times[0]! + this.windowMs - nowMs : 0;
  }

  /** Records one failure against each bucket. */
  fail(buckets: readonly string[], nowMs: number): void {
    for (const b of buckets) {
      const times = this.live(b, nowMs);
      times.push(nowMs);
      if (times.length > this.max) times.shift();
      this.buckets.delete(b); // re-insert: most recent last
      this.buckets.set(b, times);
    }
    while (this.buckets.size > this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value!);
  }

  private live(bucket: string, nowMs: number): number[] {
    const times = this.buckets.get(bucket) ?? [];
    while (times.length > 0 && times[0]! <= nowMs - this.windowMs) times.shift();
    if (times.length === 0) this.buckets.delete(bucket);
    return times;
  }
}

export interface AuthFailureLimitOptions {
  /** Failures allowed per client address, whatever credential was presented. Default 30. */
  perAddress?: number;
  /** Failures allowed per API key id from one client address. Default 10. */
  perKeyPerAddress?: number;
  /** Default 60 000 ms. */
  windowMs?: number;
  /** Buckets remembered of each kind. Default 10 000. */
  maxBuckets?: number;
}

export const DEFAULT_AUTH_FAILURE_LIMITS: Required<AuthFailureLimitOptions> = {
  perAddress: 30,
  perKeyPerAddress: 10,
  windowMs: 60_000,
  maxBuckets: 10_000,
};

/** A limit an attempt is over: which bucket, for how long, and how to say so. */
export interface LimitHit {
  bucket: string;
  retryAfterMs: number;
  /** "from this address (30 per 60s)", "for key ak_… from this address (10 per 60s)". */
  scope: string;
}

/** Failed authentication, counted per client address and per (key id, client address). */
export class AuthFailureLimits {
  readonly windowMs: number;
  private readonly byAddress: FailureLimiter;
  private readonly byKeyAtAddress: FailureLimiter;

  constructor(opts: AuthFailureLimitOptions = {}) {
    const o = { ...DEFAULT_AUTH_FAILURE_LIMITS, ...opts };
    this.windowMs = o.windowMs;
    this.byAddress = new FailureLimiter({ max: o.perAddress, windowMs: o.windowMs, maxBuckets: o.maxBuckets });
    this.byKeyAtAddress = new FailureLimiter({ max: o.perKeyPerAddress, windowMs: o.windowMs, maxBuckets: o.maxBuckets });
  }

  /** The limit the client address is over, if any. */
  checkAddress(clientIp: string, nowMs: number): LimitHit | undefined {
    return hit(this.byAddress, addressBucket(clientIp), nowMs, 'from this address');
  }

  /** The limit this key id from this address is over, if any. */
  checkKey(keyId: string, clientIp: string, nowMs: number): LimitHit | undefined {
    return hit(this.byKeyAtAddress, keyBucket(keyId, clientIp), nowMs, `for key ${keyId} from this address`);
  }

  /** Records one failure from `clientIp`, and against the key id it presented, if any. */
  fail(clientIp: string, keyId: string | undefined, nowMs: number): void {
    this.byAddress.fail([addressBucket(clientIp)], nowMs);
    if (keyId !== undefined) this.byKeyAtAddress.fail([keyBucket(keyId, clientIp)], nowMs);
  }
}

function addressBucket(clientIp: string): string {
  return `ip:${clientIp}`;
}

function keyBucket(keyId: string, clientIp: string): string {
  return `key:${keyId}@ip:${clientIp}`;
}

function hit(limiter: FailureLimiter, bucket: string, nowMs: number, who: string): LimitHit | undefined {
  const retryAfterMs = limiter.retryAfterMs(bucket, nowMs);
  if (retryAfterMs <= 0) return undefined;
  return { bucket, retryAfterMs, scope: `${who} (${limiter.max} per ${Math.round(limiter.windowMs / 1000)}s)` };
}
