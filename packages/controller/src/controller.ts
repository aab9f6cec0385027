// Owns the running controller: store + gRPC listener for agents + HTTPS API
// for ops, started and stopped together.
import { BulkheadError, type Logger } from '@bulkhead/shared';
import type { FastifyInstance } from 'fastify';
import { createApiServer } from './api/server';
import { startGrpcServer, type RunningGrpcServer } from './grpc/grpc-server';
import { dataDirPaths, loadPki } from './pki/data-dir';
import { openStore } from './store/open-store';
import type { Store } from './store/store';
import type { ControllerOptions } from './controller-options';
import { splitHostPort } from './net/host-port';
import { Alerting } from './alerts/alerting';
import { alertOptionsFromEnv } from './alerts/alert-options';
import { PolicyService } from './policy/policy-service';

export class Controller {
  private constructor(
    readonly store: Store,
    readonly grpc: RunningGrpcServer,
    readonly api: FastifyInstance,
    readonly apiPort: number,
    private readonly logger: Logger,
    /** Alerts and webhook delivery (src/alerts); undefined only for a store without alert tables. */
    readonly alerting?: Alerting,
  ) {}

  static async start(opts: ControllerOptions, logger: Logger): Promise<Controller> {
    const pki = loadPki(opts.dataDir);
    const store = await openStore({ kind: 'sqlite', path: dataDirPaths(opts.dataDir).db });
    await store.migrate();
    let grpc: RunningGrpcServer | undefined;
    let alerting: Alerting | undefined;
    try {
      // Webhook workers start before the listeners: deliveries left in the
      // outbox by a previous run (crash included) go out right away.
      // Tuning comes from BULKHEAD_WEBHOOK_* / BULKHEAD_ALERT_* (docs/alerts.md).
      alerting = store.alerts
        ? Alerting.start({ store: store.alerts, agents: store, logger: logger.child({ component: 'alerts' }), options: alertOptionsFromEnv(process.env) })
        : undefined;
      const policy = await PolicyService.create({ store, logger: logger.child({ component: 'policy' }) });
      grpc = await startGrpcServer({
        listen: opts.grpcListen,
        store,
        pki,
        logger,
        link: { heartbeatIntervalMs: opts.heartbeatIntervalMs, offlineAfterMs: opts.offlineAfterMs, alerts: alerting?.alerts },
        policy,
      });
      let ready = false;
      const api = await createApiServer({
        store,
        tls: pki.server,
        logger: logger.child({ component: 'api' }),
        ready: () => ready,
        policy,
        alerting,
      });
      const { host, port } = splitHostPort(opts.apiListen, 'api-listen');
      await api.listen({ host, port });
      const addr = api.server.address();
      const apiPort = typeof addr === 'object' && addr ? addr.port : port;
      ready = true;
      logger.info({ grpcPort: grpc.port, apiPort, caFingerprint: pki.caFingerprint }, 'controller ready');
      return new Controller(store, grpc, api, apiPort, logger, alerting);
    } catch (err) {
      await grpc?.shutdown().catch(() => undefined);
      await alerting?.stop().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_STARTUP_FAILED', `controller failed to start: ${(err as Error).message}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    this.logger.info('controller stopping');
    await this.api.close().catch(() => undefined);
    await this.grpc.shutdown();
    // After the link: alerts it raised while closing are committed, and
    // in-flight deliveries are recorded before the store closes.
    await this.alerting?.stop();
    await this.store.close();
  }
}
