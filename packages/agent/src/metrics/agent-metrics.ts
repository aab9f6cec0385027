// Owns the agent's Prometheus metrics: one prom-client Registry of its own
// (never the global default) and the hooks agent.ts wires to the watcher,
// the enforcer, the authorization plugin, the command runner, the link and
// the spool. Counters are bumped by hooks as things happen; gauges that
// mirror state (link state, spool size, inventory) are read at scrape time.
//
// Served on a local listener (default 127.0.0.1:9465): off the public
// interface, like the Docker socket it watches. docs/metrics.md lists every
// metric.
// @bulkhead/shared before prom-client: it keeps @opentelemetry/api unloaded (modules/stand-in.ts).
import { VERSION, collectProcessMetrics, type Logger, type ViolationReport } from '@bulkhead/shared';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ActionTiming } from '../enforce/enforcer-options';

export const LINK_STATES = ['connecting', 'connected', 'backoff', 'stopped'] as const;

/** Scrape-time readings; each is optional so a partly wired agent (tests) still renders. */
export interface AgentMetricSources {
  linkState?: () => string;
  spool?: () => { pending: number; dropped: number };
  containers?: () => number;
  eventStreamConnected?: () => boolean;
  authzFailOpen?: () => number;
  authzFailClosed?: () => number;
  quarantined?: () => number;
  /** The latest usage sample of every running container (UsageSampler.latest()). */
  usage?: () => Iterable<ResourceUsageReading>;
}

/** What the resource gauges read from a usage sample (UsageSample fits). */
export interface ResourceUsageReading {
  name: string;
  writableBytes?: number | null;
  logBytes?: number | null;
  netRxBytesPerSec?: number | null;
  netTxBytesPerSec?: number | null;
  tcpConnections?: number | null;
}

/**
 * Per-container series are limited to the top this-many containers of each
 * resource (by value, ties by name), so a host with thousands of containers
 * still exports a bounded number of series; the host totals cover everyone.
 */
export const TOP_CONTAINERS = 10;

const RESOURCES = {
  writable_bytes: (r: ResourceUsageReading) => r.writableBytes,
  log_bytes: (r: ResourceUsageReading) => r.logBytes,
  network_bytes_per_second: (r: ResourceUsageReading) =>
    r.netRxBytesPerSec === null || r.netRxBytesPerSec === undefined || r.netTxBytesPerSec === null || r.netTxBytesPerSec === undefined ? null : r.netRxBytesPerSec + r.netTxBytesPerSec,
  tcp_connections: (r: ResourceUsageReading) => r.tcpConnections,
} as const;

export interface AgentMetricsOptions {
  agentId: string;
  logger: Logger;
  /** Node.js process metrics (process_*, nodejs_*). Default true. */
  processMetrics?: boolean;
}

/** Authorization decisions sit in the path of every `docker` call: sub-millisecond to a timeout. */
const AUTHZ_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];
/** Engine actions: the measured floors are 40 ms (pause) to 180 ms (kill). */
const ACTION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class AgentMetrics {
  readonly registry = new Registry();
  private sources: AgentMetricSources = {};

  private readonly events: Counter<'action'>;
  private readonly reconciles: Counter;
  private readonly corrections: Counter<'kind'>;
  private readonly evaluations: Counter;
  private readonly findingsTotal: Counter<'source' | 'mode'>;
  private readonly actions: Counter<'action' | 'result'>;
  private readonly actionLatency: Histogram<'action'>;
  private readonly decisions: Counter<'decision'>;
  private readonly decisionLatency: Histogram<'decision'>;
  private readonly commands: Counter<'action' | 'result'>;
  private readonly linkConnects: Counter;

  constructor(o: AgentMetricsOptions) {
    const registers = [this.registry];
    const self = this;
    new Gauge({ name: 'bulkhead_agent_info', help: 'Always 1; labels carry the agent id and version.', labelNames: ['agent_id', 'version'], registers }).set(
      { agent_id: o.agentId, version: VERSION },
      1,
    );
    this.events = new Counter({
      name: 'bulkhead_agent_docker_events_processed_total',
      help: 'Docker engine events processed into inventory changes, by action (events for one container arriving together count once).',
      labelNames: ['action'],
      registers,
    });
    this.reconciles = new Counter({ name: 'bulkhead_agent_reconcile_runs_total', help: 'Full re-listings of the engine\'s containers (timer, reconnect of the event stream).', registers });
    this.corrections = new Counter({
      name: 'bulkhead_agent_reconcile_corrections_total',
      help: 'Inventory changes only a reconcile found (the event stream missed them), by kind (upsert, remove).',
      labelNames: ['kind'],
      registers,
    });
    this.evaluations = new Counter({ name: 'bulkhead_agent_policy_evaluations_total', help: 'Policy evaluations of running containers (the reaction door).', registers });
    this.findingsTotal = new Counter({
      name: 'bulkhead_agent_findings_total',
      help: 'Findings reported to the controller, by source (authz, reaction, reconcile) and mode (monitor, enforce).',
      labelNames: ['source', 'mode'],
      registers,
    });
    this.actions = new Counter({
      name: 'bulkhead_agent_enforcement_actions_total',
      help: 'Enforcement actions taken by policy, by action (deny, kill, stop, pause, quarantine, limit) and result (ok, failed, skipped, escalated).',
      labelNames: ['action', 'result'],
      registers,
    });
    this.actionLatency = new Histogram({
      name: 'bulkhead_agent_enforcement_duration_seconds',
      help: 'Violation became actionable → engine action completed.',
      labelNames: ['action'],
      buckets: ACTION_BUCKETS,
      registers,
    });
    this.decisions = new Counter({
      name: 'bulkhead_agent_authz_decisions_total',
      help: 'Docker API requests the authorization plugin decided, by decision (allow, deny).',
      labelNames: ['decision'],
      registers,
    });
    this.decisionLatency = new Histogram({
      name: 'bulkhead_agent_authz_decision_duration_seconds',
      help: 'Authorization plugin: request received → decision made.',
      labelNames: ['decision'],
      buckets: AUTHZ_BUCKETS,
      registers,
    });
    new Counter({
      name: 'bulkhead_agent_authz_fail_open_total',
      help: 'Requests the authorization plugin allowed because deciding failed (malformed request, evaluator error, timeout).',
      registers,
      collect() {
        setTotal(this, self.sources.authzFailOpen?.());
      },
    });
    new Counter({
      name: 'bulkhead_agent_authz_fail_closed_total',
      help: 'Requests the authorization plugin refused because deciding failed while the policy has rules in enforce mode.',
      registers,
      collect() {
        setTotal(this, self.sources.authzFailClosed?.());
      },
    });
    this.commands = new Counter({
      name: 'bulkhead_agent_commands_total',
      help: 'Manual commands from the controller, by action and result (ok, failed).',
      labelNames: ['action', 'result'],
      registers,
    });
    new Gauge({
      name: 'bulkhead_agent_link_state',
      help: 'The controller link\'s state: 1 for the current one of connecting, connected, backoff, stopped.',
      labelNames: ['state'],
      registers,
      collect() {
        const now = self.sources.linkState?.();
        for (const s of LINK_STATES) this.set({ state: s }, s === now ? 1 : 0);
      },
    });
    this.linkConnects = new Counter({ name: 'bulkhead_agent_link_connects_total', help: 'Times the controller link reached the connected state.', registers });
    new Gauge({
      name: 'bulkhead_agent_spool_reports',
      help: 'Violation reports spooled on disk and not yet acknowledged by the controller.',
      registers,
      collect() {
        this.set(self.sources.spool?.().pending ?? 0);
      },
    });
    new Counter({
      name: 'bulkhead_agent_spool_dropped_total',
      help: 'Violation reports dropped because the spool was full (oldest first).',
      registers,
      collect() {
        setTotal(this, self.sources.spool?.().dropped);
      },
    });
    new Gauge({
      name: 'bulkhead_agent_containers',
      help: 'Containers on this host, as the watcher knows them.',
      registers,
      collect() {
        this.set(self.sources.containers?.() ?? 0);
      },
    });
    new Gauge({
      name: 'bulkhead_agent_docker_event_stream_up',
      help: '1 while the Docker event stream is connected.',
      registers,
      collect() {
        this.set(self.sources.eventStreamConnected?.() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'bulkhead_agent_quarantined_containers',
      help: 'Containers a manual quarantine disconnected and a release has not reconnected yet.',
      registers,
      collect() {
        this.set(self.sources.quarantined?.() ?? 0);
      },
    });
    // Live usage beyond the cgroup, read at scrape time from the sampler's latest samples.
    new Gauge({
      name: 'bulkhead_agent_usage_host',
      help: 'Sum over the running containers measured: writable_bytes, log_bytes, network_bytes_per_second (rx + tx), tcp_connections.',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        const list = [...(self.sources.usage?.() ?? [])];
        for (const [resource, of] of Object.entries(RESOURCES)) {
          let sum = 0;
          for (const r of list) sum += of(r) ?? 0;
          this.set({ resource }, sum);
        }
      },
    });
    new Gauge({
      name: 'bulkhead_agent_usage_top_containers',
      help: `The top ${TOP_CONTAINERS} running containers of each resource (writable_bytes, log_bytes, network_bytes_per_second, tcp_connections) by value; others are only in bulkhead_agent_usage_host.`,
      labelNames: ['resource', 'container'],
      registers,
      collect() {
        // Reset every scrape: a container that left the top (or stopped) must not linger as a stale series.
        this.reset();
        const list = [...(self.sources.usage?.() ?? [])];
        for (const [resource, of] of Object.entries(RESOURCES)) {
          for (const [container, v] of topN(list, of, TOP_CONTAINERS)) this.set({ resource, container }, v);
        }
      },
    });
    if (o.processMetrics !== false) collectProcessMetrics(this.registry);
  }

  setSources(s: AgentMetricSources): void {
    this.sources = { ...this.sources, ...s };
  }

  /** A watcher upsert/remove: an event (any action but "reconcile") or a reconcile correction. */
  inventoryChange(kind: 'upsert' | 'remove', action: string, changed = true): void {
    if (action === 'reconcile') {
      if (changed) this.corrections.inc({ kind });
    } else {
      this.events.inc({ action });
    }
  }

  reconcileRun(): void {
    this.reconciles.inc();
  }

  evaluation(): void {
    this.evaluations.inc();
  }

  /** Every report the agent sends: the finding, and what was done about it. */
  report(r: ViolationReport, timing?: ActionTiming): void {
    this.findingsTotal.inc({ source: r.source || 'unknown', mode: r.mode || 'unknown' });
    const a = r.action;
    if (r.denied) this.actions.inc({ action: 'deny', result: 'ok' });
    else if (a?.type && a.type !== 'none' && a.type !== 'alert') this.actions.inc({ action: a.type, result: a.result || 'unknown' });
    if (timing && a?.type && Number.isFinite(timing.sinceEventMs) && timing.sinceEventMs >= 0) {
      this.actionLatency.observe({ action: a.type }, timing.sinceEventMs / 1000);
    }
  }

  authzDecision(allow: boolean, seconds: number): void {
    const decision = allow ? 'allow' : 'deny';
    this.decisions.inc({ decision });
    if (Number.isFinite(seconds) && seconds >= 0) this.decisionLatency.observe({ decision }, seconds);
  }

  command(action: string, ok: boolean): void {
    this.commands.inc({ action: action || 'unknown', result: ok ? 'ok' : 'failed' });
  }

  linkConnected(): void {
    this.linkConnects.inc();
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** A counter that mirrors a total kept elsewhere (the plugin's, the spool's). */
function setTotal(c: Counter, v: number | undefined): void {
  c.reset();
  if (v !== undefined && v > 0) c.inc(v);
}

/**
 * Wraps an authorization decision (sync or async) to count it and time it
 * from the plugin's receipt of the request. Never changes the decision.
 */
export function timedDecision<D extends { allow: boolean }>(d: D | Promise<D>, receivedAt: number, metrics: Pick<AgentMetrics, 'authzDecision'>): D | Promise<D> {
  const seen = (x: D): D => {
    metrics.authzDecision(x.allow, (performance.now() - receivedAt) / 1000);
    return x;
  };
  return d instanceof Promise ? d.then(seen) : seen(d);
}

/** The n largest measured values (> 0), ties by name; a name seen twice (never in practice) keeps its larger value. */
export function topN(list: readonly ResourceUsageReading[], of: (r: ResourceUsageReading) => number | null | undefined, n: number): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const r of list) {
    const v = of(r);
    if (v === null || v === undefined || !(v > 0)) continue;
    out.push([r.name, v]);
  }
  out.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const seen = new Set<string>();
  const top: Array<[string, number]> = [];
  for (const e of out) {
    if (seen.has(e[0])) continue;
    seen.add(e[0]);
    top.push(e);
    if (top.length === n) break;
  }
  return top;
}
