// Owns recording the fleet's events: the hook the agent link and the alert service call
// (`events.record({ type, … })`). Recording never throws into the caller and never waits
// for the database: events queue in memory (bounded; a database that stays down costs
// dropped events, counted and logged, not the controller's memory) and are appended in
// batches, in the order recorded. Old events are pruned on a timer (bounded retention).
import type { Logger } from '@bulkhead/shared';
import type { FleetEventInput, FleetEventStore } from './event-store';

export interface FleetEventSink {
  record(e: Omit<FleetEventInput, 'at'> & { at?: Date }): void;
}

export interface FleetEventsOptions {
  store: FleetEventStore;
  logger: Logger;
  now?: () => Date;
  /** Events kept at most this long. Default 24 h. */
  retentionMs?: number;
  /** And at most this many. Default 100 000. */
  retentionCount?: number;
  /** How often old events are pruned. Default 10 min. */
  pruneEveryMs?: number;
  /** Events waiting for the database beyond this are dropped (oldest first). Default 10 000. */
  maxQueue?: number;
}

export class FleetEvents implements FleetEventSink {
  private queue: FleetEventInput[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  private pruneTimer: NodeJS.Timeout | undefined;
  private readonly now: () => Date;
  /** Events dropped since start (queue full, or a failed append). */
  dropped = 0;

  constructor(private readonly o: FleetEventsOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /** Starts the pruning timer (unref'd). */
  start(): this {
    const every = this.o.pruneEveryMs ?? 10 * 60_000;
    this.pruneTimer = setInterval(() => void this.prune(), every);
    this.pruneTimer.unref();
    return this;
  }

  record(e: Omit<FleetEventInput, 'at'> & { at?: Date }): void {
    const max = this.o.maxQueue ?? 10_000;
    if (this.queue.length >= max) {
      this.queue.shift();
      if (this.dropped++ % 1000 === 0) this.o.logger.warn({ dropped: this.dropped }, 'fleet event queue full (is the store down?); oldest events dropped from GET /v1/events');
    }
    this.queue.push({ ...e, at: e.at ?? this.now() });
    if (!this.scheduled && !this.flushing) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.runFlush();
      });
    }
  }

  /** Resolves once everything recorded so far is appended (or dropped). */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.flushing) {
      if (this.flushing) await this.flushing;
      else await this.runFlush();
    }
  }

  async prune(): Promise<number> {
    try {
      const before = new Date(this.now().getTime() - (this.o.retentionMs ?? 24 * 3_600_000));
      return await this.o.store.pruneEvents(before, this.o.retentionCount ?? 100_000);
    } catch (err) {
      this.o.logger.warn({ err }, 'pruning old fleet events failed');
      return 0;
    }
  }

  async stop(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.flush();
  }

  private runFlush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, 500);
        try {
          await this.o.store.appendEvents(batch);
        } catch (err) {
          this.dropped += batch.length;
          this.o.logger.error({ err, events: batch.length }, 'storing fleet events failed; they are missing from GET /v1/events');
        }
      }
    })().finally(() => {
      this.flushing = undefined;
      if (this.queue.length > 0) void this.runFlush();
    });
    return this.flushing;
  }
}
