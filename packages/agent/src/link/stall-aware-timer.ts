// Deadlines judged by what arrives from the network, safe against this
// process's own stalls.
//
// Node runs due timers *before* it reads its sockets in each event-loop turn
// (timers phase, then the poll phase). When the process could not run for a
// while — CPU starvation on a busy host, a long synchronous task, a GC pause —
// a timer that came due during the stall fires first, while the answer it was
// waiting for may already sit unread in the socket: a welcome timeout or a
// silence watchdog would then give up a healthy stream, and the reconnect that
// follows (a TLS handshake, a hello, maybe a snapshot) costs the very CPU whose
// lack caused the stall. So a timer that fires late does not act at once: it
// lets the loop read its pending input first (setImmediate runs after the poll
// phase) and checks again shortly after, a bounded number of times.
//
// Hand-written: a few lines around setTimeout/setImmediate; no library offers
// "fire unless the event loop was stalled".

/** A timer firing this much later than due means the process itself was stalled. */
export const STALL_LATE_MS = 250;
/** After a stall: how long after the pending input was read the condition is checked again. */
export const STALL_RECHECK_MS = 50;
/** At most this many re-checks in a row (a process that never stops stalling still times out). */
export const STALL_MAX_RECHECKS = 5;

export interface StallAwareTimer {
  /** Cancels the timer (and any pending re-check). */
  clear(): void;
  /** How many times the timer fired late and re-checked instead of acting. */
  readonly rechecks: number;
}

export interface StallAwareOptions {
  /** Monotonic clock in ms (default performance.now). */
  now?: () => number;
  /** Keep the process alive for this timer (default false: unref'd). */
  ref?: boolean;
  /** Let the event loop read its pending input before the timer starts (for a verdict made on a late tick). */
  afterInput?: boolean;
}

/**
 * Runs `fn` after `ms`, unless the timer fires more than STALL_LATE_MS late: then
 * it first lets the event loop read what arrived meanwhile and runs `fn`
 * STALL_RECHECK_MS after that (again judged for lateness, at most
 * STALL_MAX_RECHECKS times). `fn` must itself test whether its deadline still
 * matters (e.g. "no welcome yet"): the input read meanwhile may have settled it.
 */
export function stallAwareTimeout(fn: () => void, ms: number, opts: StallAwareOptions = {}): StallAwareTimer {
  const now = opts.now ?? (() => performance.now());
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let rechecks = 0;
  let cleared = false;
  const arm = (delay: number): void => {
    const due = now() + delay;
    timer = setTimeout(() => {
      timer = undefined;
      if (cleared) return;
      if (now() - due > STALL_LATE_MS && rechecks < STALL_MAX_RECHECKS) {
        rechecks += 1;
        immediate = afterPendingInput(() => {
          immediate = undefined;
          if (!cleared) arm(STALL_RECHECK_MS);
        }, opts.ref === true);
        return;
      }
      fn();
    }, delay);
    if (!opts.ref) timer.unref();
  };
  if (opts.afterInput) {
    immediate = afterPendingInput(() => {
      immediate = undefined;
      if (!cleared) arm(ms);
    }, opts.ref === true);
  } else arm(ms);
  return {
    clear() {
      cleared = true;
      if (timer) clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      timer = undefined;
      immediate = undefined;
    },
    get rechecks() {
      return rechecks;
    },
  };
}

/** Runs `fn` after this event-loop turn's poll phase (the sockets' pending input read). */
function afterPendingInput(fn: () => void, ref: boolean): NodeJS.Immediate {
  const i = setImmediate(fn);
  if (!ref) i.unref();
  return i;
}

/**
 * For a check made on a periodic tick (the silence watchdog): when the tick
 * itself came more than STALL_LATE_MS late, the verdict is deferred with
 * stallAwareTimeout(fn, STALL_RECHECK_MS, { afterInput: true }).
 */
export function tickWasLate(expectedAt: number, at: number): boolean {
  return at - expectedAt > STALL_LATE_MS;
}
