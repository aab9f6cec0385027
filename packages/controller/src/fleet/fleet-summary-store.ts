// Owns the contract of the fleet summary: the few numbers the console's first screen
// ("is my fleet OK?") shows, each one GROUP BY or top-N in SQL, so the overview costs
// one request and a handful of index reads however large the fleet is, instead of the
// browser paging every list and counting.
export interface FleetSummaryQuery {
  now: Date;
  /** Project scope of the caller; undefined = every project. */
  projects?: string[];
  /** Busiest containers per measure (cpu, memory). */
  top: number;
  /** Certificates expiring within this many ms count as "expiring soon". */
  certWarnMs: number;
  /** "Recent" window for alerts and deliveries, ms back from `now`. */
  windowMs: number;
}

export interface CountBy {
  key: string;
  count: number;
}

export interface BusyContainer {
  agentId: string;
  id: string;
  name: string;
  imageRef: string;
  project: string;
  state: string;
  cpuPercent: number;
  cpuLimitCores: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  takenAt: Date;
}

export interface FleetSummary {
  agents: { total: number; online: number; offline: number; revoked: number; certExpiringSoon: number; versions: CountBy[] };
  containers: { total: number; byState: CountBy[] };
  violations: { open: number; openBySeverity: CountBy[]; recent: number };
  alerts: { groups: number; occurrences: number; bySeverity: CountBy[] };
  webhooks: { endpoints: number; enabled: number; pending: number; dead: number; deliveredRecent: number; failedAttemptsRecent: number };
  busiest: { cpu: BusyContainer[]; memory: BusyContainer[] };
}

export interface FleetSummaryStore {
  summary(q: FleetSummaryQuery): Promise<FleetSummary>;
}
