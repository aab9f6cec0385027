// Owns the one bounded-concurrency gate the daemons share (the agent's inspects and actions,
// the controller's stores of agent messages and hellos).
//
// Hand-written, a dozen lines: a library (p-limit) would be one more dependency in the agent's
// memory-budgeted module graph for the same.

/** At most `max` tasks at once; the others wait, first come first served, holding nothing; a released slot passes straight to the next waiter. */
export class Semaphore {
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}
