// Owns what a fleet event is and the persistence contract of the event stream
// (0016_sessions_events). Events are rows with a durable, ordered `seq`: GET /v1/events
// reads them by seq on every replica, and a client resumes with Last-Event-ID = seq.

/** What happened. `alert.<type>` mirrors the alert types of src/alerts/alert-types.ts. */
export type FleetEventType =
  | 'agent.online'
  | 'agent.offline'
  | 'container.updated'
  | 'container.removed'
  | 'container.snapshot'
  | `alert.${string}`;

export interface FleetEventInput {
  type: FleetEventType;
  at: Date;
  /** The project the event belongs to; '' (or absent) = none: only credentials not limited to projects see it. */
  project?: string;
  /**
   * Seen by every credential, scoped or not: what is readable whatever the scope (agents come
   * and go: GET /v1/agents is readable by project-scoped keys). Stored as its own column
   * (every_scope), never as a project value: a project name (even '*', which a workload
   * label may carry) only ever admits credentials scoped to that very project.
   */
  everyScope?: boolean;
  agentId?: string;
  /** The event's body as sent to clients (JSON object). */
  data: Record<string, unknown>;
}

export interface FleetEventRecord {
  seq: number;
  type: string;
  at: Date;
  /** '' = none (unscoped credentials only); otherwise credentials scoped to this project (and unscoped ones). */
  project: string;
  /** Seen by every credential, whatever its project (the project is then ''). */
  everyScope: boolean;
  agentId: string | null;
  data: Record<string, unknown>;
}

export interface FleetEventQuery {
  /** Events with seq > after. */
  after: number;
  /** And seq <= upTo, when given. */
  upTo?: number;
  /** Only these projects' events and those every scope sees (undefined = every event, projectless ones included). */
  projects?: string[];
  limit: number;
}

/**
 * On PostgreSQL every transaction that appends events also NOTIFYs this channel (payload: the
 * newest seq), so each replica's GET /v1/events wakes at once instead of at its next poll. A
 * wake-up only says "read the store": a NOTIFY from anyone else costs one read, nothing more.
 */
export const FLEET_EVENTS_CHANNEL = 'bulkhead_events';

/** Wake-ups for the event stream: whenever any replica committed new events (a hint, never the events). */
export interface FleetEventWakeups {
  /** Calls `listener` on every wake-up; returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** True while wake-ups are being received; while false, readers poll. */
  readonly listening: boolean;
}

export interface FleetEventStore {
  /** Appends events in this order; returns their seqs. */
  appendEvents(events: readonly FleetEventInput[]): Promise<number[]>;
  listEvents(q: FleetEventQuery): Promise<FleetEventRecord[]>;
  /** The highest seq stored (0 when none). */
  lastEventSeq(): Promise<number>;
  /** The lowest seq still stored (undefined when none). */
  firstEventSeq(): Promise<number | undefined>;
  /** Deletes events older than `before`, and beyond the newest `keep`; returns how many. */
  pruneEvents(before: Date, keep: number): Promise<number>;
}
