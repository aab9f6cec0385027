// Owns the controller's Prometheus metrics: one prom-client Registry (never
// the global default, so two controllers in one process — tests — do not
// share counters) and the narrow hooks other modules call. The hooks are
// small interfaces (LinkMetrics, ApiRequestObserver, …) so the link, the API
// and the alerts module depend on a method, not on prom-client.
//
// Gauges that describe the fleet (agents by status, containers by state)
// are read from the store at scrape time: they are always what the API
// would answer, with no second bookkeeping that could drift.
//
// docs/metrics.md lists every metric; test/metrics checks it does.
// @bulkhead/shared before prom-client: it keeps @opentelemetry/api unloaded (modules/stand-in.ts).
import { VERSION, collectProcessMetrics, type Logger } from '@bulkhead/shared';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the agent link reports (grpc/agent-link-service.ts). */
export interface LinkMetrics {
  streamOpened(): void;
  /** A stream that had been accepted ended; `reason` is a short snake_case word. */
  streamClosed(reason: string): void;
  /** A stream refused before or at its hello; `code` is the BK_ERR_… code. */
  streamRefused(code: string): void;
  /** A NEW violation report was stored (re-sends are not counted). */
  violationRecorded(v: RecordedViolation): void;
}

export interface RecordedViolation {
  ruleId: string;
  severity: string;
  mode: string;
  source: string;
  denied: boolean;
  action?: { type: string; result: string; durationMs: number } | null | undefined;
}

/** What the API server reports per response (api/server.ts). */
export interface ApiRequestObserver {
  /** `route` is the route pattern ("/v1/containers/:agent/:id"), never the raw URL. */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
}

/** What webhook delivery reports per attempt (alerts/delivery-worker.ts). */
export interface DeliveryObserver {
  /** `outcome`: delivered | retry | failed | gone. */
  deliveryAttempt(outcome: string, latencyMs: number): void;
}

/** What manual actions report (commands/manual-actions.ts). */
export interface ManualActionMetrics {
  /** `outcome`: ok | failed | offline | unconfirmed | refused. */
  manualAction(action: string, outcome: string, durationMs: number): void;
}

/** Where scrape-time gauges come from; set once the store and link exist. */
export interface FleetSources {
  connectedAgents: () => number;
  agentsByStatus: () => Promise<Record<string, number>>;
  containersByState: () => Promise<Record<string, number>>;
}

export interface ControllerMetricsOptions {
  logger: Logger;
  /** Node.js process metrics (process_*, nodejs_*). Default true. */
  processMetrics?: boolean;
}

/** Latencies of actions on containers: tens of ms to a stop timeout. */
const ACTION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** API and webhook latencies. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class ControllerMetrics implements LinkMetrics, ApiRequestObserver, DeliveryObserver, ManualActionMetrics {
  readonly registry = new Registry();
  private sources: FleetSources | undefined;

  private readonly streamsOpened: Counter;
  private readonly streamsClosed: Counter<'reason'>;
  private readonly streamsRefused: Counter<'reason'>;
  private readonly violations: Counter<'rule' | 'severity' | 'mode' | 'source'>;
  private readonly actions: Counter<'rule' | 'action' | 'result'>;
  private readonly enforcementLatency: Histogram<'action'>;
  private readonly manualActions: Counter<'action' | 'outcome'>;
  private readonly manualLatency: Histogram<'action'>;
  private readonly deliveries: Counter<'outcome'>;
  private readonly deliveryLatency: Histogram;
  private readonly apiLatency: Histogram<'method' | 'route' | 'status'>;

  constructor(private readonly o: ControllerMetricsOptions) {
    const registers = [this.registry];
    const self = this;
    new Gauge({ name: 'bulkhead_controller_info', help: 'Always 1; the label carries the controller version.', labelNames: ['version'], registers }).set({ version: VERSION }, 1);
    new Gauge({
      name: 'bulkhead_controller_agents_connected',
      help: 'Agents with a live AgentLink stream right now.',
      registers,
      collect() {
        this.set(self.sources?.connectedAgents() ?? 0);
      },
    });
    new Gauge({
      name: 'bulkhead_controller_agents',
      help: 'Enrolled agents by status (online, offline, revoked), as the store holds them.',
      labelNames: ['status'],
      registers,
      async collect() {
        await self.fill(this, 'status', self.sources?.agentsByStatus, ['online', 'offline', 'revoked']);
      },
    });
    new Gauge({
      name: 'bulkhead_controller_containers',
      help: 'Containers the agents report, by state (running, paused, exited, …); removed ones excluded.',
      labelNames: ['state'],
      registers,
      async collect() {
        await self.fill(this, 'state', self.sources?.containersByState, ['running']);
      },
    });
    this.streamsOpened = new Counter({ name: 'bulkhead_controller_agent_streams_opened_total', help: 'AgentLink streams accepted (a valid hello).', registers });
    this.streamsClosed = new Counter({
      name: 'bulkhead_controller_agent_streams_closed_total',
      help: 'Accepted AgentLink streams that ended, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.streamsRefused = new Counter({
      name: 'bulkhead_controller_agent_streams_refused_total',
      help: 'AgentLink streams refused before they were accepted, by error code (cert_required, agent_revoked, …).',
      labelNames: ['reason'],
      registers,
    });
    this.violations = new Counter({
      name: 'bulkhead_controller_violations_total',
      help: 'Violation reports stored, by rule, severity, mode and source (authz, reaction, reconcile).',
      labelNames: ['rule', 'severity', 'mode', 'source'],
      registers,
    });
    this.actions = new Counter({
      name: 'bulkhead_controller_enforcement_actions_total',
      help: 'Enforcement actions agents reported, by rule, action (deny, kill, stop, pause, quarantine, limit) and result.',
      labelNames: ['rule', 'action', 'result'],
      registers,
    });
    this.enforcementLatency = new Histogram({
      name: 'bulkhead_controller_enforcement_duration_seconds',
      help: 'Violation became actionable on the host → enforcement action completed, as the agent measured it.',
      labelNames: ['action'],
      buckets: ACTION_BUCKETS,
      registers,
    });
    this.manualActions = new Counter({
      name: 'bulkhead_controller_manual_actions_total',
      help: 'Manual container actions requested through the API, by action and outcome (ok, failed, offline, unconfirmed, refused).',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.manualLatency = new Histogram({
      name: 'bulkhead_controller_manual_action_duration_seconds',
      help: 'Manual action sent to the agent → its result received.',
      labelNames: ['action'],
      buckets: ACTION_BUCKETS,
      registers,
    });
    this.deliveries = new Counter({
      name: 'bulkhead_controller_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome (delivered, retry, failed = dead-lettered, gone = endpoint disabled by 410).',
      labelNames: ['outcome'],
      registers,
    });
    this.deliveryLatency = new Histogram({
      name: 'bulkhead_controller_webhook_delivery_duration_seconds',
      help: 'Time to the receiver answering one webhook delivery attempt.',
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.apiLatency = new Histogram({
      name: 'bulkhead_controller_api_request_duration_seconds',
      help: 'HTTPS API requests by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    if (o.processMetrics !== false) collectProcessMetrics(this.registry);
  }

  setSources(s: FleetSources): void {
    this.sources = s;
  }

  streamOpened(): void {
    this.streamsOpened.inc();
  }

  streamClosed(reason: string): void {
    this.streamsClosed.inc({ reason });
  }

  streamRefused(code: string): void {
    this.streamsRefused.inc({ reason: codeLabel(code) });
  }

  violationRecorded(v: RecordedViolation): void {
    const rule = v.ruleId || 'unknown';
    this.violations.inc({ rule, severity: v.severity || 'unknown', mode: v.mode || 'unknown', source: v.source || 'unknown' });
    if (v.denied) {
      this.actions.inc({ rule, action: 'deny', result: 'ok' });
      return;
    }
    const a = v.action;
    if (!a || a.type === '' || a.type === 'none' || a.type === 'alert') return;
    this.actions.inc({ rule, action: a.type, result: a.result || 'unknown' });
    // Only actions that reached the engine have a meaningful latency.
    if ((a.result === 'ok' || a.result === 'failed' || a.result === 'escalated') && Number.isFinite(a.durationMs) && a.durationMs > 0) {
      this.enforcementLatency.observe({ action: a.type }, a.durationMs / 1000);
    }
  }

  manualAction(action: string, outcome: string, durationMs: number): void {
    this.manualActions.inc({ action, outcome });
    if (outcome === 'ok' || outcome === 'failed') this.manualLatency.observe({ action }, durationMs / 1000);
  }

  deliveryAttempt(outcome: string, latencyMs: number): void {
    this.deliveries.inc({ outcome });
    if (Number.isFinite(latencyMs) && latencyMs > 0) this.deliveryLatency.observe(latencyMs / 1000);
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.apiLatency.observe({ method, route, status: String(status) }, seconds);
  }

  /** The exposition text (text format 0.0.4). */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /**
   * Sets a labelled gauge from a scrape-time source. Labels seen before but
   * absent now drop to 0 (a state that emptied must not keep its last count);
   * `always` labels are reported even when 0, so dashboards see the series.
   */
  private async fill(g: Gauge<string>, label: string, source: (() => Promise<Record<string, number>>) | undefined, always: string[]): Promise<void> {
    if (!source) return;
    let counts: Record<string, number>;
    try {
      counts = await source();
    } catch (err) {
      // A scrape during a store hiccup keeps the last values rather than failing the whole page.
      this.o.logger.warn({ err, metric: label }, 'metrics: reading the store failed');
      return;
    }
    g.reset();
    for (const k of always) g.set({ [label]: k }, 0);
    for (const [k, v] of Object.entries(counts)) g.set({ [label]: k || 'unknown' }, v);
  }
}

/** BK_ERR_CERT_REQUIRED → cert_required. */
export function codeLabel(code: string): string {
  return code.replace(/^BK_ERR_/, '').toLowerCase();
}

/** Why the controller closed an accepted stream, as a metric label. */
export function closeReason(code: string, message: string): string {
  if (/superseded/i.test(message)) return 'superseded';
  if (/heartbeat/i.test(message)) return 'heartbeat_timeout';
  if (code === 'BK_ERR_CONTROLLER_UNAVAILABLE') return 'shutdown';
  return codeLabel(code);
}
