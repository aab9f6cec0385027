// Owns the controller's HTTPS REST API for operators: the fastify instance,
// TLS, API-key authentication of /v1, problem+json errors and request
// logging. Routes live in ./routes; wire shapes in ./dto.
import type { FastifyBaseLogger, FastifyError, FastifyInstance } from 'fastify';
import Fastify from 'fastify';
import type { Logger } from '@bulkhead/shared';
import type { ApiKeyRecord, Store } from '../store/store';
import { verifyApiKey } from './api-keys';
import { PROBLEM_CONTENT_TYPE, makeProblem, toProblem } from './problem';
import { registerHealthRoutes } from './routes/health';
import { registerAgentRoutes } from './routes/agents';
import { registerContainerRoutes } from './routes/containers';
import type { Alerting } from '../alerts/alerting';
import { registerWebhookRoutes } from './routes/webhooks';
import { registerAlertRoutes } from './routes/alerts';
import type { PolicyService } from '../policy/policy-service';
import { registerPolicyRoutes } from './routes/policies';
import { registerViolationRoutes } from './routes/violations';
import { registerScanRoutes } from './routes/scans';

/**
 * Checks an Authorization header value; resolves to the key or throws a
 * BulkheadError (BK_ERR_UNAUTHENTICATED → 401).
 */
export type ApiKeyAuthenticator = (authorization: string | undefined, now: Date) => Promise<ApiKeyRecord>;

export interface ApiServerOptions {
  store: Store;
  /** PEM server key and certificate (chain). The API speaks HTTPS only, TLS ≥ 1.2. */
  tls: { keyPem: string; certPem: string };
  /** pino logger; its redaction list keeps the Authorization header out of the log. */
  logger: Logger;
  /** Default: verifyApiKey against `store`. */
  apiKeyAuth?: ApiKeyAuthenticator;
  /** Extra readiness condition for /readyz beyond the store ping. Default: always ready. */
  ready?: () => boolean | Promise<boolean>;
  /** Clock for key expiry. Default: () => new Date(). */
  now?: () => Date;
  /** Per-check timeout for /readyz. Default 2000 ms. */
  readyTimeoutMs?: number;
  /** Serves /v1/webhooks, /v1/deliveries and /v1/alerts; without it they answer 503 BK_ERR_NOT_READY. */
  alerting?: Alerting;
  /** Serves /v1/policies and POST /v1/scans; without it they answer 503 BK_ERR_NOT_READY. */
  policy?: PolicyService;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated key on /v1 routes; null elsewhere. */
    apiKey: ApiKeyRecord | null;
  }
}

/** Builds the server (not listening yet): call `listen({ host, port })`. */
export async function createApiServer(opts: ApiServerOptions): Promise<FastifyInstance> {
  const now = opts.now ?? (() => new Date());
  const authenticate = opts.apiKeyAuth ?? ((header, at) => verifyApiKey(opts.store, header, at));

  const app = Fastify({
    https: { key: opts.tls.keyPem, cert: opts.tls.certPem, minVersion: 'TLSv1.2' },
    // pino's Logger is a FastifyBaseLogger; the cast keeps fastify's generics at their defaults.
    loggerInstance: opts.logger as FastifyBaseLogger,
    // Unknown query parameters are an error, not silently dropped: a typo'd
    // filter must not quietly return the whole fleet.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    bodyLimit: 64 * 1024,
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    return503OnClosing: true,
  });

  app.decorateRequest('apiKey', null);

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const { problem, internal } = toProblem(err);
    if (internal) req.log.error({ err }, 'request failed');
    else req.log.info({ code: problem.code, status: problem.status, detail: problem.detail }, 'request refused');
    if (problem.status === 401) reply.header('www-authenticate', 'Bearer realm="bulkhead"');
    return reply
      .code(problem.status)
      .type(PROBLEM_CONTENT_TYPE)
      .send(JSON.stringify({ ...problem, instance: req.url.split('?')[0], requestId: String(req.id) }));
  });

  app.setNotFoundHandler((req, reply) => {
    const problem = makeProblem('BK_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
    return reply.code(404).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify({ ...problem, requestId: String(req.id) }));
  });

  registerHealthRoutes(app, { store: opts.store, ready: opts.ready ?? (() => true), timeoutMs: opts.readyTimeoutMs ?? 2000 });

  await app.register(
    async (v1) => {
      v1.addHook('onRequest', async (req, reply) => {
        req.apiKey = await authenticate(req.headers.authorization, now());
        // Inventory is sensitive; keep it out of shared caches.
        reply.header('cache-control', 'no-store');
      });
      registerAgentRoutes(v1, { store: opts.store });
      registerContainerRoutes(v1, { store: opts.store });
      registerWebhookRoutes(v1, { alerting: opts.alerting });
      registerAlertRoutes(v1, { alerting: opts.alerting, now });
      registerPolicyRoutes(v1, { policy: opts.policy });
      registerViolationRoutes(v1, { store: opts.store });
      registerScanRoutes(v1, { store: opts.store, policy: opts.policy });
    },
    { prefix: '/v1' },
  );

  return app;
}
