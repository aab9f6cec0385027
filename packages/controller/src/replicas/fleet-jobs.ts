// Owns "once per fleet" for periodic jobs (alert retention, the certificate-expiry watch):
// every replica keeps its timer, and each run first claims the job in the store's fleet_jobs
// table with one conditional write (claimJobRun), so of all replicas on one database one runs
// it per period, whichever is alive. A store without the table (a test fake) runs every time,
// as a single controller would.

/** What the gate needs of the store (Store.claimJobRun). */
export interface JobRunStore {
  claimJobRun?(name: string, owner: string, now: Date, everyMs: number): Promise<boolean>;
}

/** Asks whether this replica should run job `name` now, given that it runs every `everyMs`. */
export type JobGate = (name: string, everyMs: number) => Promise<boolean>;

/** Runs always: a single controller, or a store without fleet_jobs. */
export const ALWAYS_RUN: JobGate = () => Promise.resolve(true);

/**
 * A gate claiming runs in `store` as `owner`. `everyMs` is the job's period: a claim succeeds
 * when no replica ran it within 95 % of it (the slack keeps a replica whose timer fires a
 * little early from skipping a whole period).
 */
export function storeJobGate(store: JobRunStore, owner: string, now: () => Date = () => new Date()): JobGate {
  const claim = store.claimJobRun?.bind(store);
  if (!claim) return ALWAYS_RUN;
  return (name, everyMs) => claim(name, owner, now(), Math.floor(everyMs * 0.95));
}

/**
 * How often a gated job's timer should fire: a few times per period, so that when the replica
 * that ran it last stops, another takes over within a fraction of a period rather than a
 * whole one late.
 */
export function gatedTick(everyMs: number): number {
  return Math.max(1000, Math.floor(everyMs / 6));
}
