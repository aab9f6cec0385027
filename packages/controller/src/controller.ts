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

export class Controller {
  private constructor(
    readonly store: Store,
    readonly grpc: RunningGrpcServer,
    readonly api: FastifyInstance,
    readonly apiPort: number,
    private readonly logger: Logger,
  ) {}

  static async start(opts: ControllerOptions, logger: Logger): Promise<Controller> {
    const pki = loadPki(opts.dataDir);
    const store = await openStore({ kind: 'sqlite', path: dataDirPaths(opts.dataDir).db });
    await store.migrate();
    let grpc: RunningGrpcServer | undefined;
    try {
      grpc = await startGrpcServer({
        listen: opts.grpcListen,
        store,
        pki,
        logger,
        link: { heartbeatIntervalMs: opts.heartbeatIntervalMs, offlineAfterMs: opts.offlineAfterMs },
      });
      let ready = false;
      const api = await createApiServer({
        store,
        tls: pki.server,
        logger: logger.child({ component: 'api' }),
        ready: () => ready,
      });
      const { host, port } = splitHostPort(opts.apiListen, 'api-listen');
      await api.listen({ host, port });
      const addr = api.server.address();
      const apiPort = typeof addr === 'object' && addr ? addr.port : port;
      ready = true;
      logger.info({ grpcPort: grpc.port, apiPort, caFingerprint: pki.caFingerprint }, 'controller ready');
      return new Controller(store, grpc, api, apiPort, logger);
    } catch (err) {
      await grpc?.shutdown().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_STARTUP_FAILED', `controller failed to start: ${(err as Error).message}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    this.logger.info('controller stopping');
    await this.api.close().catch(() => undefined);
    await this.grpc.shutdown();
    await this.store.close();
  }
}
