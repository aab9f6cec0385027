// Owns the in-process wake-up between the raise path and the delivery
// workers: a new alert wakes idle workers at once instead of at their next
// poll. It is only a latency optimisation — the outbox in the database is
// the truth, and workers poll it anyway.

export class WorkSignal {
  private gen = 0;
  private readonly waiters = new Set<() => void>();

  /** Changes on every notify(); pass it to wait() to catch a notify that raced ahead. */
  get generation(): number {
    return this.gen;
  }

  notify(): void {
    this.gen++;
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  /** Resolves after `ms`, or on notify(), or at once if notified since `since`. */
  wait(ms: number, since: number = this.gen): Promise<void> {
    if (this.gen !== since) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.add(done);
    });
  }
}
