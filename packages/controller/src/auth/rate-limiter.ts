// Owns throttling of failed authentication, in memory: at most `max`
// failures per `windowMs` per bucket (a client address, a key id); a bucket
// over the limit is refused with 429 until its oldest failure leaves the
// window. Written here rather than taking @fastify/rate-limit: we limit
// *failures* (not requests) under two keys, which is ~40 lines, and the
// plugin would add a dependency for a different job. Memory is bounded:
// past `maxBuckets` the least recently failed bucket is forgotten.
// Per-process: several controllers behind one address each keep their own.

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
