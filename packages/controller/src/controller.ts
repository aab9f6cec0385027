// Owns the running controller: store + gRPC listener for agents + HTTPS API
// for ops, started and stopped together.
import { BulkheadError, startOptionalMetricsListener, type Logger, type MetricsListener } from '@bulkhead/shared';
import type { FastifyInstance } from 'fastify';
import { createApiServer } from './api/server';
import { startGrpcServer, type RunningGrpcServer } from './grpc/grpc-server';
import { loadPki } from './pki/data-dir';
// The gRPC certificates and trusted CAs, replaced on SIGHUP (server certificate re-issue, CA rotation).
import { LivePki, type PkiSummary } from './pki/live-pki';
import type { AuditLog } from './audit/audit-log';
import { describeStore, openStore, storeConfigFor } from './store/open-store';
import type { Store } from './store/store';
import { DEFAULT_DATABASE_POOL_SIZE, DEFAULT_DATABASE_POOL_WAIT_MS, type ControllerOptions } from './controller-options';
import { splitHostPort } from './net/host-port';
import { Alerting } from './alerts/alerting';
import { alertOptionsFromEnv } from './alerts/alert-options';
import { PolicyService } from './policy/policy-service';
// Tags that move: fed by the agent link, pins handed to the policy service.
import { TagTracker } from './images/tag-tracker';
import { ReportedVerdicts, VERDICT_PRUNE_EVERY_MS } from './signatures/reported-verdicts';
// Metrics and manual actions.
import { ControllerMetrics } from './metrics/controller-metrics';
import { fleetSources } from './metrics/fleet-sources';
import { ManualActions } from './commands/manual-actions';
// Identity and access: the token signing secret lives in the data directory.
import { loadOrCreateSigningSecret } from './auth/signing-secret';
// The API's certificate: the data directory's, or the operator's (--api-tls-cert), reloaded on SIGHUP.
import { apiTlsSource, reloadApiTls, type ApiTlsSource, type ApiTlsSummary, type SecureContextTarget } from './api/api-tls';
// Controller replicas on one database: messages between replicas, and periodic jobs once per fleet.
import { LocalReplicaBus, newReplicaId, type ReplicaBus } from './replicas/replica-bus';
import type * as PgReplicaBusModule from './replicas/pg-replica-bus';
import { ALWAYS_RUN, gatedTick, storeJobGate } from './replicas/fleet-jobs';
// The fleet event stream (GET /v1/events): events recorded by the link and the alert service.
import { FleetEvents } from './events/fleet-events';

/** How long after `controller ready` the route schemas not used yet are compiled (lazy-schemas.ts). */
const SCHEMA_WARM_DELAY_MS = 2_000;
/** Replicas: how often each compares its policy bundle with the store's, in case a notification was lost. */
const POLICY_POLL_MS = 10_000;
/** How often ended browser sessions are deleted from the store. */
const SESSION_PRUNE_MS = 10 * 60_000;

export class Controller {
  private constructor(
    readonly store: Store,
    readonly grpc: RunningGrpcServer,
    readonly api: FastifyInstance,
    readonly apiPort: number,
    private readonly logger: Logger,
    /** Alerts and webhook delivery (src/alerts); undefined only for a store without alert tables. */
    readonly alerting?: Alerting,
    /** Prometheus metrics; the listener is undefined when off or when it could not bind. */
    readonly metrics?: ControllerMetrics,
    readonly metricsListener?: MetricsListener,
    readonly pki?: LivePki,
    /** How this replica talks to the others on the same database (a local one on SQLite). */
    readonly replicas: ReplicaBus = new LocalReplicaBus(),
  ) {}

  /** This process's replica id: the owner of the agent stream leases it holds. */
  get replicaId(): string {
    return this.replicas.replicaId;
  }

  /**
   * SIGHUP: re-reads the CA(s) and the server certificate from the data
   * directory. New gRPC handshakes use them; open streams stay; agents get
   * the trust bundle when it changed. A directory that fails the checks is
   * refused (thrown, and logged) and the current certificates stay.
   */
  reloadPki(): PkiSummary {
    try {
      return this.pki!.reload(this.logger);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'controller certificate reload failed; still serving the previous ones');
      throw err;
    }
  }

  /** Where the API certificate is (re)loaded from; set by start(). */
  private apiTls?: ApiTlsSource;

  /**
   * SIGHUP: re-reads the API certificate and key and serves them to new
   * connections. A pair that fails the start-up checks is refused (thrown,
   * and logged) and the current one stays.
   */
  reloadApiTls(): ApiTlsSummary {
    try {
      const summary = reloadApiTls(this.apiTls!, this.api.server as unknown as SecureContextTarget);
      this.logger.info({ apiCertificate: summary }, 'API certificate reloaded');
      return summary;
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'API certificate reload failed; still serving the previous one');
      throw err;
    }
  }

  static async start(opts: ControllerOptions, logger: Logger): Promise<Controller> {
    // Where start-up time goes (ms since the process started), in the `controller ready` line:
    // a restarted controller is judged by how soon agents are served again (RELIABILITY.md).
    const startup: Record<string, number> = { main: Math.round(performance.now()) };
    const mark = (phase: string): void => void (startup[phase] = Math.round(performance.now()));
    const pki = new LivePki(loadPki(opts.dataDir), opts.dataDir);
    // Checked before anything starts: a bad operator certificate is a start-up error, not a handshake failure later.
    const apiTls = apiTlsSource(opts.apiTls, () => pki.server, { logger: logger.child({ component: 'api' }) });
    const apiCert = apiTls.load();
    const tokenSecret = loadOrCreateSigningSecret(opts.dataDir); // created here for data dirs initialized before tokens
    mark('pki');
    // SQLite in the data directory, or PostgreSQL with --database-url (docs/cli.md#postgresql).
    const baseStoreConfig = storeConfigFor(opts.dataDir, opts.databaseUrl);
    const storeConfig =
      baseStoreConfig.kind === 'postgres'
        ? {
            ...baseStoreConfig,
            maxConnections: opts.databasePoolSize ?? DEFAULT_DATABASE_POOL_SIZE,
            connectTimeoutMs: opts.databasePoolWaitMs ?? DEFAULT_DATABASE_POOL_WAIT_MS,
          }
        : baseStoreConfig;
    const store = await openStore(storeConfig, { logger: logger.child({ component: 'store' }), existing: true });
    mark('store');
    // Several replicas may share a PostgreSQL database: they hear each other through LISTEN/NOTIFY.
    let bus: ReplicaBus;
    try {
      bus =
        storeConfig.kind === 'postgres'
          ? await (require('./replicas/pg-replica-bus') as typeof PgReplicaBusModule).PgReplicaBus.connect({
              connectionString: storeConfig.connectionString, logger: logger.child({ component: 'replicas' }), replicaId: newReplicaId(),
              // Every replica's data directory holds the same secret (docs/cli.md): the bus signs with a key derived from it.
              secret: tokenSecret,
            })
          : new LocalReplicaBus();
    } catch (err) {
      await store.close().catch(() => undefined);
      throw new BulkheadError('BK_ERR_STARTUP_FAILED', `cannot listen for the other controller replicas on PostgreSQL: ${(err as Error).message}`, { cause: err });
    }
    // Periodic jobs once per fleet with replicas; one SQLite controller keeps its timers as they were.
    const jobGate = bus.clustered ? storeJobGate(store, bus.replicaId) : undefined;
    mark('replicas');
    let grpc: RunningGrpcServer | undefined;
    let policyPoll: NodeJS.Timeout | undefined;
    let verdictPrune: NodeJS.Timeout | undefined;
    let alerting: Alerting | undefined;
    // Rows in the store, read by seq by every replica's GET /v1/events.
    const events = store.events ? new FleetEvents({ store: store.events, logger: logger.child({ component: 'events' }) }).start() : undefined;
    const metrics = new ControllerMetrics({ logger: logger.child({ component: 'metrics' }) });
    const renewalAudit: { log?: AuditLog | undefined } = {};
    try {
      // Webhook workers start before the listeners: deliveries left in the
      // outbox by a previous run (crash included) go out right away.
      // Tuning comes from BULKHEAD_WEBHOOK_* / BULKHEAD_ALERT_* (docs/alerts.md).
      alerting = store.alerts
        ? Alerting.start({
            store: store.alerts, agents: store, logger: logger.child({ component: 'alerts' }), options: alertOptionsFromEnv(process.env),
            onDeliveryAttempt: (outcome, ms) => metrics.deliveryAttempt(outcome, ms),
            ...(jobGate ? { jobGate } : {}),
            ...(events ? { events } : {}),
          })
        : undefined;
      mark('alerting');
      const policyLogger = logger.child({ component: 'policy' });
      // Image signature verdicts agents report (the dry-run cannot verify itself).
      const signatureLogger = logger.child({ component: 'signatures' });
      const signatureVerdicts = store.signatureVerdicts ? new ReportedVerdicts({ store: store.signatureVerdicts, logger: signatureLogger }) : undefined;
      if (signatureVerdicts) {
        // Verdicts no agent reported again within the retention, and beyond the bound, once per fleet.
        const gate = jobGate ?? ALWAYS_RUN;
        verdictPrune = setInterval(() => {
          void gate('signature-verdict-prune', VERDICT_PRUNE_EVERY_MS)
            .then((mine) => (mine ? signatureVerdicts.prune() : 0))
            .then((n) => n > 0 && signatureLogger.info({ pruned: n }, 'old signature verdicts pruned'))
            .catch((err: unknown) => signatureLogger.warn({ err: (err as Error).message }, 'pruning old signature verdicts failed'));
        }, gatedTick(VERDICT_PRUNE_EVERY_MS));
        verdictPrune.unref();
      }
      const policy = await PolicyService.create({
        store, logger: policyLogger, ...(signatureVerdicts ? { signatureVerdicts } : {}),
        // A bundle changed here: every other replica reloads it and pushes it to its own agents.
        announce: () => void bus.publish({ t: 'policy', from: bus.replicaId }).catch((err: unknown) => policyLogger.error({ err }, 'telling the other replicas about the new policy bundle failed')),
      });
      const reloadPolicy = () => void policy.reload().catch((err: unknown) => policyLogger.error({ err }, 'reloading the policy changed on another replica failed'));
      bus.subscribe((m) => m.t === 'policy' && m.from !== bus.replicaId && reloadPolicy());
      // A change announced while this replica's bus was down, or made here while it was (its
      // announce failed): reload, and announce again so the others reload too.
      bus.onReconnect(() => {
        reloadPolicy();
        void bus.publish({ t: 'policy', from: bus.replicaId }).catch((err: unknown) => policyLogger.warn({ err: (err as Error).message }, 'telling the other replicas to reload the policy after a reconnect failed'));
      });
      if (bus.clustered) {
        // Notifications can be lost (a connection that dropped on either side): every replica
        // also compares its policy version with the store's every POLICY_POLL_MS (one row), and
        // rebuilds the whole bundle (scans and tag pins too) every sixth time; reload() pushes
        // only a bundle that changed.
        let polls = 0;
        policyPoll = setInterval(() => {
          if (++polls % 6 === 0) return reloadPolicy();
          void store.getPolicy().then(
            (latest) => latest && latest.version !== policy.bundle().version && reloadPolicy(),
            (err: unknown) => policyLogger.warn({ err: (err as Error).message }, 'comparing the policy version with the store failed'),
          );
        }, POLICY_POLL_MS);
        policyPoll.unref();
      }
      mark('policy');
      const tagLogger = logger.child({ component: 'images' });
      const tags = new TagTracker({
        store, logger: tagLogger, alerts: alerting?.alerts, ...(jobGate ? { jobGate } : {}),
        onNewDigest: () => void policy.refreshTagPins().catch((err: unknown) => tagLogger.error({ err }, 'sending tag pins failed')),
        policy: () => policy.current().policy,
      });
      // Scoped image-tag-pinned rules take their first pins from what runs in their scope when
      // they take effect: at start, and whenever a new bundle (policy version) comes.
      void tags.policyChanged();
      policy.subscribe(() => void tags.policyChanged());
      // Moves stored before a stop without their alert (at least once: a crash after the alert, before its mark, raises it twice).
      void tags.raisePending().catch((err: unknown) => tagLogger.error({ err }, 'raising pending image_tag_moved alerts failed'));
      grpc = await startGrpcServer({
        listen: opts.grpcListen,
        store,
        pki,
        logger,
        link: {
          heartbeatIntervalMs: opts.heartbeatIntervalMs, offlineAfterMs: opts.offlineAfterMs, alerts: alerting?.alerts, metrics, tags, ...(signatureVerdicts ? { signatureVerdicts } : {}),
          ...(opts.usageHistoryIntervalMs !== undefined ? { usageHistoryIntervalMs: opts.usageHistoryIntervalMs } : {}),
          // Half the PostgreSQL pool stores agent messages, and at most half takes hellos: a takeover's
          // hundreds of hellos wait here, not in the pool's queue ahead of leases, the sweep and alerts.
          maxConcurrentWrites: storeConfig.kind === 'postgres' ? Math.max(1, Math.floor((opts.databasePoolSize ?? DEFAULT_DATABASE_POOL_SIZE) / 2)) : 8,
          maxConcurrentHellos: storeConfig.kind === 'postgres' ? Math.max(1, Math.floor((opts.databasePoolSize ?? DEFAULT_DATABASE_POOL_SIZE) / 2)) : 4,
          // Certificate renewal over the link, audited in the API's audit log (one writer per chain), which exists only once the API does.
          renewal: { ca: () => pki.ca, audit: { record: (e) => renewalAudit.log?.record(e) } },
          replicas: { bus },
          ...(events ? { events } : {}),
        },
        policy,
      });
      mark('grpc');
      metrics.setSources(fleetSources(store, grpc.link));
      const link = grpc.link;
      const actions = new ManualActions({
        link,
        logger: logger.child({ component: 'actions' }),
        alerts: alerting?.alerts,
        metrics,
        hostname: async (id) => (await store.getAgent(id))?.hostname,
      });
      let ready = false;
      mark('actions');
      const api = await createApiServer({
        actions,
        metrics,
        store,
        tls: apiCert.material,
        // Identity and access.
        auth: {
          tokenSecret, ...(opts.tokenMaxTtlMs !== undefined ? { tokenMaxTtlMs: opts.tokenMaxTtlMs } : {}),
          ...(opts.sessionIdleMs !== undefined ? { sessionIdleMs: opts.sessionIdleMs } : {}),
          ...(opts.sessionMaxLifetimeMs !== undefined ? { sessionMaxLifetimeMs: opts.sessionMaxLifetimeMs } : {}),
        },
        agentLink: grpc.link,
        ...(opts.usageHistoryIntervalMs !== undefined ? { usageHistoryIntervalMs: opts.usageHistoryIntervalMs } : {}),
        // On PostgreSQL GET /v1/events wakes when any replica commits events (LISTEN/NOTIFY), and polls only as a fallback.
        ...(bus.fleetEvents ? { events: { wakeups: bus.fleetEvents } } : {}),
        caFingerprint: () => pki.caFingerprint,
        logger: logger.child({ component: 'api' }),
        ready: () => ready,
        policy,
        alerting,
      });
      const { host, port } = splitHostPort(opts.apiListen, 'api-listen');
      renewalAudit.log = api.security.audit;
      mark('apiBuilt');
      await api.listen({ host, port });
      mark('apiListening');
      const addr = api.server.address();
      const apiPort = typeof addr === 'object' && addr ? addr.port : port;
      const metricsListener = await startOptionalMetricsListener({ listen: opts.metricsListen, allowRemote: opts.metricsAllowRemote, render: () => metrics.render(), logger });
      ready = true;
      mark('ready');
      logger.info(
        {
          startupMs: startup,
          grpcPort: grpc.port, apiPort, replicaId: bus.replicaId, metricsPort: metricsListener?.port ?? null, caFingerprint: pki.caFingerprint, caRotation: pki.rotation, store: describeStore(storeConfig),
          apiCertificate: { source: apiCert.summary.source, fingerprint: apiCert.summary.fingerprint, subject: apiCert.summary.subject, notAfter: apiCert.summary.notAfter.toISOString() },
        },
        'controller ready',
      );
      // Deferred start-up work: the route schemas not used yet, compiled in the background
      // once the agents' reconnections (right after a restart) had the CPU first.
      const apiLogger = logger.child({ component: 'api' });
      void api.schemas.warm((what, err) => apiLogger.error({ route: what, err: err.message }, 'a route schema does not compile; that route answers 500'), SCHEMA_WARM_DELAY_MS).then(
        (n) => apiLogger.debug({ schemas: n, ms: Math.round(performance.now() - startup['ready']!) }, 'route schemas compiled'),
      );
      const controller = new Controller(store, grpc, api, apiPort, logger, alerting, metrics, metricsListener, pki, bus);
      controller.apiTls = apiTls;
      controller.events = events;
      // Ended sessions (logged out, past their lifetime) are deleted now and then; one DELETE, every replica may run it.
      const sessions = store.sessions;
      if (sessions) {
        controller.sessionPrune = setInterval(() => {
          void sessions.pruneSessions(new Date()).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'pruning ended sessions failed'));
        }, SESSION_PRUNE_MS);
        controller.sessionPrune.unref();
      }
      controller.policyPoll = policyPoll;
      controller.verdictPrune = verdictPrune;
      return controller;
    } catch (err) {
      if (policyPoll) clearInterval(policyPoll);
      if (verdictPrune) clearInterval(verdictPrune);
      await grpc?.shutdown().catch(() => undefined);
      await alerting?.stop().catch(() => undefined);
      await events?.stop().catch(() => undefined);
      await bus.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_STARTUP_FAILED', `controller failed to start: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Deletes ended browser sessions now and then. */
  private sessionPrune?: NodeJS.Timeout | undefined;

  /** The fleet event recorder (GET /v1/events); undefined only for a store without the events table. */
  events?: FleetEvents | undefined;

  /** Replicas: the periodic comparison of this replica's policy bundle with the store's. */
  private policyPoll?: NodeJS.Timeout | undefined;

  /** The hourly prune of old signature verdicts (once per fleet). */
  private verdictPrune?: NodeJS.Timeout | undefined;

  async stop(): Promise<void> {
    this.logger.info('controller stopping');
    if (this.policyPoll) clearInterval(this.policyPoll);
    if (this.verdictPrune) clearInterval(this.verdictPrune);
    if (this.sessionPrune) clearInterval(this.sessionPrune);
    this.api.schemas.stop();
    await this.api.close().catch(() => undefined);
    await this.metricsListener?.close().catch(() => undefined);
    await this.grpc.shutdown();
    // After the link: alerts it raised while closing are committed, and
    // in-flight deliveries are recorded before the store closes.
    await this.alerting?.stop();
    await this.events?.stop();
    await this.replicas.close();
    await this.store.close();
  }
}

