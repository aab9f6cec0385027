// Gives back the V8 heap an idle agent no longer uses.
//
// Why (measured, BENCHMARKS.md "agent-idle"): on Node 22/24 (V8 12/13) an
// idle agent with 200 containers keeps 20–30 MB of old space committed (plus
// up to 12 MB of pooled pages) for 13–19 MB of live objects: V8's memory
// reducer, the mechanism meant to shrink an idle heap, never runs in the
// agent — with `--trace-memory-reducer` it reports "high alloc, foreground"
// every 8 s for the whole run, also after the idle agent's allocation rate was
// cut to 0.48 MB/s (it starts only when allocation is tiny against the measured
// speed of V8's own collections: a mutator utilisation above 99.3 %) —
// and its own major collections come only when old space reaches a limit set
// for throughput. One full collection after the heap has grown brings the
// agent's RSS down by ~20 MB on Node 24 (113 → 91–93 MB); Node 20's V8 keeps
// the heap tight on its own, and the slack check below then skips the work.
//
// A full collection stops the JavaScript thread for its duration (20–30 ms
// with this heap, about what V8's own major collections already pause the
// agent for), so it runs only when the agent has been idle: the event loop
// less than `maxIdleUtilization` busy since the last check, and at most once
// per `intervalMs`. There is no API for it but the `gc` function of
// `--expose-gc`, which V8 lets a process turn on at run time for contexts made
// afterwards: the function is taken from one such context and the flag turned
// off again, so no `gc` global is left in the agent's own context.
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '@bulkhead/shared';

/**
 * Whether V8 gives an idle heap back by itself, so the trim is not needed:
 * node runs with `--optimize-for-size` (added by the operator to the unit's
 * ExecStart, or NODE_OPTIONS; not shipped: it costs 45–70 µs more CPU per
 * authorization decision, docs/cli.md). With it every major collection of V8 12+ is a
 * memory-reducing one — marked incrementally, finished in a 2.5–13 ms
 * pause on Node 24 (measured on a loaded machine) — which also releases the
 * pooled pages the trim's last-resort collection exists for (BENCHMARKS.md
 * agent-idle, 2026-12-07 18:20: "Mark-Compact (reduce)", pooled 0 MB
 * against 13–24 MB without it). The trim's own collection is atomic:
 * 70–105 ms on Node 24.
 */
export function v8ReducesMemoryItself(execArgv: readonly string[] = process.execArgv, nodeOptions: string | undefined = process.env.NODE_OPTIONS): boolean {
  const flags = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  return flags.some((f) => f === '--optimize-for-size' || f === '--optimize_for_size');
}

/** V8's `gc`: with no argument a full, synchronous collection of every space. */
type GcFunction = (options?: { type: 'major'; flavor: 'last-resort' }) => void;

/**
 * How to collect. V8 12+ (Node 22/24) keeps the pages a full collection frees
 * in a pool, still resident (`pooled: 12 MB` in `--trace-gc` of an idle
 * agent), and only a "last resort" collection also releases the pool: plain
 * gc() left an idle agent with 200 containers at 101 MB RSS, last-resort at
 * 91 MB (BENCHMARKS.md). Node 20's V8 has no flavor, and there `{ type:
 * 'major' }` left young objects alone (measured, 20.2 → 19.6 MB of heap in
 * use against 3.2 MB with gc()), so it gets the plain call.
 */
export function collectFully(gc: GcFunction, v8Major = Number(process.versions.v8.split('.')[0])): void {
  if (v8Major >= 12) gc({ type: 'major', flavor: 'last-resort' });
  else gc();
}

/**
 * V8's `gc` function (see the top of this file); undefined if this node does
 * not provide it. With `--expose-gc` (the systemd unit's flags) the global is
 * used (V8 makes it non-configurable: it cannot be deleted); otherwise it comes from a context made for the purpose,
 * which stays alive with the function (~0.3 MB of heap, measured).
 */
export function v8GcFunction(): GcFunction | undefined {
  const holder = globalThis as { gc?: GcFunction };
  const g = holder.gc;
  if (typeof g === 'function') return g;
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as GcFunction) : undefined;
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

export interface HeapTrimOptions {
  /** How often to look, ms; 0 = off. */
  intervalMs: number;
  /**
   * Collect only when the heap holds at least this much more than after the
   * last collection (objects since allocated, most of them garbage by now),
   * or committed heap exceeds what objects use by this much; bytes. Default 4 MiB.
   */
  minSlackBytes?: number;
  /**
   * …and the event loop was at most this busy (0–1) over the whole interval
   * and over the last `recentMs` before the collection (a burst of
   * authorization requests just starting is left alone). Default 0.05.
   */
  maxIdleUtilization?: number;
  /** The "just now" window, ms. Default 1000. */
  recentMs?: number;
  /**
   * Above this much heap in use, no forced collection: its pause grows with
   * the heap (~160 ms at 240 MB, measured), and V8's own incremental marking
   * is the better tool there. Default 64 MiB (an idle agent with 200
   * containers uses 13–25 MB).
   */
  maxHeapBytes?: number;
  logger?: Logger;
  /** Tests. */
  gc?: GcFunction;
  heap?: () => { total: number; used: number };
  utilization?: (prev?: EventLoopUtilization) => EventLoopUtilization;
}

export interface HeapTrimResult {
  ran: boolean;
  /** Why not, when it did not run. */
  reason?: 'busy' | 'tight' | 'large' | 'unavailable';
  /** Committed heap before and after, bytes. */
  before: number;
  after: number;
  durationMs: number;
}

export class HeapTrimmer {
  private readonly gc: GcFunction | undefined;
  private readonly minSlack: number;
  private readonly maxUtil: number;
  private readonly maxHeap: number;
  private recentTimer: NodeJS.Timeout | undefined;
  private readonly heap: () => { total: number; used: number };
  private readonly util: (prev?: EventLoopUtilization) => EventLoopUtilization;
  private last: EventLoopUtilization;
  private timer: NodeJS.Timeout | undefined;
  /** Heap in use right after the last collection (0 before the first). */
  private usedAfter = 0;
  /** Collections run, and committed bytes they gave back in total. */
  readonly stats = { runs: 0, releasedBytes: 0 };

  constructor(private readonly o: HeapTrimOptions) {
    this.gc = o.gc ?? v8GcFunction();
    this.minSlack = o.minSlackBytes ?? 4 * 1024 * 1024;
    this.maxUtil = o.maxIdleUtilization ?? 0.05;
    this.maxHeap = o.maxHeapBytes ?? 64 * 1024 * 1024;
    this.heap = o.heap ?? (() => {
      const h = getHeapStatistics();
      return { total: h.total_heap_size, used: h.used_heap_size };
    });
    this.util = o.utilization ?? ((prev) => performance.eventLoopUtilization(prev));
    this.last = this.util();
  }

  start(): this {
    if (this.o.intervalMs > 0 && !this.timer) {
      // Each look: idle over the interval so far, then idle over the last `recentMs` too.
      this.timer = setInterval(() => {
        const intervalBusy = this.util(this.last).utilization;
        const mark = this.util();
        this.recentTimer = setTimeout(() => {
          this.recentTimer = undefined;
          this.check(intervalBusy, mark);
        }, this.o.recentMs ?? 1000);
        this.recentTimer.unref();
      }, this.o.intervalMs);
      this.timer.unref();
    }
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.recentTimer) clearTimeout(this.recentTimer);
    this.timer = undefined;
    this.recentTimer = undefined;
  }

  /**
   * One look: collects when the heap has slack and the loop was idle since
   * the last look (and, from the timer, over the last `recentMs`: `since`).
   * The threshold grows with the heap: ≥ minSlack and ≥ 10 % of the heap in use.
   */
  check(intervalBusy?: number, since?: EventLoopUtilization): HeapTrimResult {
    const busy = Math.max(intervalBusy ?? 0, this.util(since ?? this.last).utilization);
    this.last = this.util();
    const { total, used } = this.heap();
    const none = (reason: HeapTrimResult['reason']): HeapTrimResult => ({ ran: false, reason, before: total, after: total, durationMs: 0 });
    if (!this.gc) return none('unavailable');
    if (busy > this.maxUtil) return none('busy');
    if (used > this.maxHeap) return none('large');
    const slack = Math.max(this.minSlack, used / 10);
    if (used - this.usedAfter < slack && total - used < slack) return none('tight');
    const t0 = performance.now();
    collectFully(this.gc);
    const durationMs = performance.now() - t0;
    const h = this.heap();
    const after = h.total;
    this.usedAfter = h.used;
    this.stats.runs++;
    this.stats.releasedBytes += Math.max(0, total - after);
    this.o.logger?.debug({ beforeMb: mb(total), afterMb: mb(after), usedMb: mb(used), durationMs: Math.round(durationMs * 10) / 10 }, 'idle heap trimmed');
    return { ran: true, before: total, after, durationMs };
  }
}

const mb = (n: number): number => Math.round((n / 1048576) * 10) / 10;
