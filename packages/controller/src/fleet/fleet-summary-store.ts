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
  /**
   * Hosts' latest audit: how many worst hosts to list (0 = counts only). Left out = no host
   * section (a project-scoped caller: host audits are fleet-wide, as GET /v1/agents/:id/audit).
   */
  hostsTop?: number;
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

/** One host's latest audit, as the overview lists it. */
export interface HostAuditBrief {
  agentId: string;
  hostname: string;
  status: string;
  /** CIS: passed scored checks / (passed + warned scored checks), 0–100. */
  score: number;
  cis: { pass: number; warn: number; info: number; note: number; checks: number };
  /** Open lockdown findings of the latest report, by severity. */
  lockdown: { total: number; critical: number; high: number; medium: number; low: number; info: number };
  takenAt: Date;
  receivedAt: Date;
}

export interface HostsSummary {
  /** Agents (not revoked) with at least one stored host audit. */
  audited: number;
  /** Agents (not revoked) that never sent one (audit off, or not yet run). */
  notAudited: number;
  /** Audited hosts whose latest report has at least one lockdown finding. */
  withLockdownFindings: number;
  /** Lockdown findings of every host's latest report, by severity. */
  lockdownBySeverity: CountBy[];
  /** Audited hosts whose CIS score is below 100. */
  belowFullScore: number;
  /** The worst hosts first: most critical, then high, then any lockdown findings, then the lowest CIS score. */
  worst: HostAuditBrief[];
}

export interface FleetSummary {
  agents: { total: number; online: number; offline: number; revoked: number; certExpiringSoon: number; versions: CountBy[] };
  containers: { total: number; byState: CountBy[] };
  violations: { open: number; openBySeverity: CountBy[]; recent: number };
  alerts: { groups: number; occurrences: number; bySeverity: CountBy[] };
  webhooks: { endpoints: number; enabled: number; pending: number; dead: number; deliveredRecent: number; failedAttemptsRecent: number };
  busiest: { cpu: BusyContainer[]; memory: BusyContainer[] };
  /** Undefined when the query asked for none (hostsTop left out). */
  hosts?: HostsSummary;
}

export interface FleetSummaryStore {
  summary(q: FleetSummaryQuery): Promise<FleetSummary>;
}
