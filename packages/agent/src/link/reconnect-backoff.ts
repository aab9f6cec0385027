// The controller link's reconnect delay: how long to wait after a failed attempt.
//
// Two aims pull against each other. One agent should be back soon after a restarted
// controller is: a ceiling that only doubles reaches about twice the outage, so after a 9 s
// restart an agent came back up to 8 s late. A fleet should not all come back at once: a
// ceiling of half the outage brings 2000 agents back within 1 s of a 2 s outage (~4500/s).
//
// So the ceiling doubles per attempt from `minMs`, is at most half the time the link has been
// down (nor below `minMs`), and — once the link has been down `spreadAfterMs` — is at least
// `spreadMs`; never above `maxMs`. The delay is drawn uniformly between `minMs / 2` and the ceiling.
// With the defaults (500 ms, 30 s, a 4 s spread after 1 s), simulated over 2000 agents that
// lose the link together: after a 2–9 s outage one agent is back on average 1.3–1.7 s after
// the controller, all within 3.8–4.3 s, at most ~1100 agents/s in any 100 ms; without the
// spread a 2 s outage brought them all back within 1 s at ~4500/s. Outages under a second
// (a dropped stream, a blip) keep the quick first retries.
//
// `downForMs` must come from a monotonic clock: a wall clock stepped back makes it negative
// and the ceiling collapses to `minMs`.

export interface ReconnectBackoff {
  /** The first ceiling, and the least one; default 500 ms. */
  minMs: number;
  /** The largest ceiling; default 30 s. */
  maxMs: number;
  /** The least ceiling once the link has been down `spreadAfterMs`; default 4 s. */
  spreadMs: number;
  /** How long the link must have been down before `spreadMs` applies; default 1 s. */
  spreadAfterMs: number;
}

export const DEFAULT_RECONNECT_BACKOFF: ReconnectBackoff = { minMs: 500, maxMs: 30_000, spreadMs: 4_000, spreadAfterMs: 1_000 };

/** The ceiling of the delay after failed attempt number `attempt` (0 for the first), the link down for `downForMs`. */
export function reconnectCeilingMs(b: ReconnectBackoff, attempt: number, downForMs: number): number {
  const growth = Math.min(b.minMs * 2 ** attempt, Math.max(b.minMs, downForMs / 2));
  const spread = downForMs >= b.spreadAfterMs ? b.spreadMs : 0;
  return Math.min(b.maxMs, Math.max(growth, spread));
}

/**
 * The delay: uniform in [minMs / 2, ceiling]. (It was uniform in [0, ceiling] raised to
 * minMs / 2, which put half the draws of the first retry exactly on 250 ms: after a replica
 * died, half of its agents handshook with the survivor in the same instant — BENCHMARKS.md,
 * failover at fleet size. Now the first retry after a dropped stream is spread evenly over
 * 250–500 ms.)
 */
export function reconnectDelayMs(b: ReconnectBackoff, ceilingMs: number, random: () => number): number {
  const floor = b.minMs / 2;
  return Math.round(floor + random() * Math.max(0, ceilingMs - floor));
}
