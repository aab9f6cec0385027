// Owns the controller's HTTPS REST API for operators: the fastify instance,
// TLS, problem+json errors and request logging. Identity and access on /v1
// (API keys, bearer tokens, roles, project scopes, failed-auth limits) and
// the audit trail are installed from src/auth/api-security.ts. Routes live
// in ./routes; wire shapes in ./dto.
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Fastify from 'fastify';
import type { Logger } from '@bulkhead/shared';
import type { ApiKeyRecord, Store } from '../store/store';
import { PROBLEM_CONTENT_TYPE, makeProblem, toProblem } from './problem';
import { registerHealthRoutes } from './routes/health';
import { registerAgentRoutes } from './routes/agents';
import { registerContainerRoutes } from './routes/containers';
import { registerSummaryRoutes } from './routes/summary';
import type { Alerting } from '../alerts/alerting';
import { registerWebhookRoutes } from './routes/webhooks';
import { registerAlertRoutes } from './routes/alerts';
import type { PolicyService } from '../policy/policy-service';
import { registerPolicyRoutes } from './routes/policies';
import { registerViolationRoutes } from './routes/violations';
import { registerScanRoutes } from './routes/scans';
import { registerImageRoutes } from './routes/images';
// OpenAPI, manual actions and metrics.
import { registerOpenApi } from '../openapi/openapi';
import { registerActionRoutes } from './routes/actions';
import type { ManualActions } from '../commands/manual-actions';
import type { ApiRequestObserver } from '../metrics/controller-metrics';
// Identity and access + audit trail.
import { ApiSecurity } from '../auth/api-security';
import type { AuthOptionsInput } from '../auth/auth-options';
import { registerKeyRoutes } from './routes/keys';
import { registerAuthRoutes } from './routes/auth';
import { registerJoinTokenRoutes } from './routes/join-tokens';
import { registerAuditRoutes } from './routes/audit-log';
import type { AgentRevoker } from './routes/agents';
// Host audit reports.
import { registerAgentAuditRoutes } from './routes/agent-audit';
// Route schemas compiled on first use (and warmed after start-up), not before listening.
import { LazySchemas } from './lazy-schemas';
// Browser sessions, the security headers the console relies on, and the event stream.
import { registerSessionRoutes } from './routes/session';
import { securityHeaders } from './security-headers';
import { EventHub, type EventHubOptions } from '../events/event-hub';
import { registerEventRoutes } from './routes/events';
// The web console's built files (packages/console), on this same listener.
import { loadConsoleAssets, registerConsoleRoutes } from './console-assets';

/**
 * How long a client may take over its request head, and over its TLS handshake. Node's defaults
 * (60 s headers, 120 s handshake, checked every 30 s) let a client that sends one byte a second
 * (slowloris) hold a connection — a descriptor and a TLS session — for a minute or two without
 * ever presenting a credential; enough such connections exhaust the descriptors and the API
 * stops accepting. A real client sends its head in one packet. test/bad-input/api-framing.test.ts
 * measures the drop time.
 */
export const API_HEADERS_TIMEOUT_MS = 10_000;
export const API_HANDSHAKE_TIMEOUT_MS = 10_000;
/** How often Node checks connections against headersTimeout and requestTimeout (default 30 s). */
export const API_CONNECTIONS_CHECKING_INTERVAL_MS = 1_000;

export interface ApiServerOptions {
  store: Store;
  /** PEM server key and certificate (chain). The API speaks HTTPS only, TLS ≥ 1.2. */
  tls: { keyPem: string; certPem: string };
  /** pino logger; its redaction list keeps the Authorization header out of the log. */
  logger: Logger;
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
  /** Serves POST /v1/containers/:agent/:id/actions; without it that route answers 503 BK_ERR_NOT_READY. */
  actions?: ManualActions;
  /** Observes every response (method, route pattern, status, latency) for the metrics. */
  metrics?: ApiRequestObserver;
  /** Token signing secret and lifetimes, failed-auth limits (src/auth/auth-options.ts). */
  auth?: AuthOptionsInput;
  /** Closes a revoked agent's live stream (the gRPC AgentLinkService); without it revocation only marks the store. */
  agentLink?: AgentRevoker;
  /** The CA fingerprint handed out with join tokens; without it POST /v1/join-tokens answers 503. */
  /** What agents pin at enrollment; a function when it can change (a CA rotation). */
  caFingerprint?: string | (() => string);
  /** Tuning of GET /v1/events (poll interval, heartbeat, per-client buffer bound); it is served whenever the store keeps events. */
  events?: Omit<EventHubOptions, 'store' | 'logger'>;
  /** Spacing of the recent-usage history points (GET /v1/containers/:agent/:id/usage); default 60 s, as the agent link stores them. */
  usageHistoryIntervalMs?: number;
  /** Directory of the built web console (index.html + assets/); default dist/console of this package; `false` serves none. */
  consoleDir?: string | false;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated key on /v1 routes (role and projects as the credential holds them); null elsewhere. */
    apiKey: ApiKeyRecord | null;
  }
  interface FastifyInstance {
    /** Identity and access + audit (src/auth/api-security.ts): declared routes, the limiter, the audit log. */
    security: ApiSecurity;
    /** The route schemas, compiled on first use; `warm()` compiles the rest in the background. */
    schemas: LazySchemas;
  }
}

/** Builds the server (not listening yet): call `listen({ host, port })`. */
export async function createApiServer(opts: ApiServerOptions): Promise<FastifyInstance> {
  const now = opts.now ?? (() => new Date());
  const security = new ApiSecurity({ ...(opts.auth ?? {}), store: opts.store, logger: opts.logger, now });
  const schemas = new LazySchemas();

  // Fastify's own refusals before any route or hook runs (a malformed percent-encoding, a path
  // parameter over maxParamLength): the same security headers and problem+json as every other
  // answer, and never the raw URL echoed back.
  const frameworkHeaders = securityHeaders();
  const frameworkErrors = (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    const internal = (err.statusCode ?? 400) >= 500;
    const detail = err.code === 'FST_ERR_BAD_URL' ? 'malformed URL (invalid percent-encoding)' : err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : undefined;
    const problem = internal ? makeProblem('BK_ERR_INTERNAL', 'internal error; see the controller log') : makeProblem('BK_ERR_BAD_REQUEST', detail ?? 'invalid request');
    req.log.info({ code: problem.code, status: problem.status, fastifyCode: err.code }, 'request refused');
    void reply.headers(frameworkHeaders).header('cache-control', 'no-store').code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify({ ...problem, requestId: String(req.id) }));
  };

  const app = Fastify({
    frameworkErrors,
    https: {
      key: opts.tls.keyPem,
      cert: opts.tls.certPem,
      minVersion: 'TLSv1.2',
      // Slow clients are dropped within seconds, not minutes (see API_HEADERS_TIMEOUT_MS).
      headersTimeout: API_HEADERS_TIMEOUT_MS,
      handshakeTimeout: API_HANDSHAKE_TIMEOUT_MS,
      connectionsCheckingInterval: API_CONNECTIONS_CHECKING_INTERVAL_MS,
    },
    // Fastify's own compilers, compiled per route on first use: a restarted controller serves
    // sooner (lazy-schemas.ts). No route has a headers schema — fastify passes those to a
    // custom compiler without lower-casing their property names.
    schemaController: { compilersFactory: schemas.compilersFactory },
    // pino's Logger is a FastifyBaseLogger; the cast keeps fastify's generics at their defaults.
    loggerInstance: opts.logger as FastifyBaseLogger,
    // Unknown query parameters are an error, not silently dropped: a typo'd
    // filter must not quietly return the whole fleet.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    bodyLimit: 64 * 1024,
    // An image ref in a path (/v1/images/:ref, "/" sent as %2F) runs past fastify's default
    // of 100 characters; every param schema still bounds its own length.
    // (A router option: set under routerOptions, where fastify 5 reads it without a deprecation warning.)
    routerOptions: { maxParamLength: 1024 },
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    return503OnClosing: true,
  });

  // Every answer, errors and the event stream included, carries the browser-facing security
  // headers (strict CSP, no framing, HSTS, no referrer, nosniff): src/api/security-headers.ts.
  const headers = securityHeaders();
  app.addHook('onRequest', async (_req, reply) => {
    reply.headers(headers);
  });
  const hub = opts.store.events ? new EventHub({ ...(opts.events ?? {}), store: opts.store.events, logger: opts.logger.child({ component: 'events' }) }) : undefined;
  // Open event streams end before the server waits for its connections to close.
  app.addHook('preClose', async () => hub?.stop());

  app.decorateRequest('apiKey', null);
  app.decorate('security', security);
  app.decorate('schemas', schemas);
  // Queued audit entries and last-used writes land before the caller closes the store.
  app.addHook('onClose', async () => security.drain());

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const { problem, internal } = toProblem(err);
    // 503 BK_ERR_NOT_READY is a refusal (under load, starting, no such component), not a failure: no stack.
    if (internal && problem.code === 'BK_ERR_NOT_READY') req.log.warn({ code: problem.code, status: problem.status, detail: problem.detail }, 'request refused');
    else if (internal) req.log.error({ err }, 'request failed');
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

  // Metrics: the route pattern, never the raw URL, keeps the label set bounded.
  const metrics = opts.metrics;
  if (metrics) {
    app.addHook('onResponse', async (req, reply) => {
      metrics.observeRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    });
  }
  // OpenAPI: before any route, so the document sees them all; GET /v1/openapi.json needs no key.
  await registerOpenApi(app);

  registerHealthRoutes(app, { store: opts.store, ready: opts.ready ?? (() => true), timeoutMs: opts.readyTimeoutMs ?? 2000 });
  registerConsoleRoutes(app, opts.consoleDir === false ? null : loadConsoleAssets(opts.consoleDir));

  await app.register(
    async (v1) => {
      v1.addHook('onRequest', async (_req, reply) => {
        // Inventory is sensitive; keep it out of shared caches (errors included).
        reply.header('cache-control', 'no-store');
      });
      // Authenticate, authorize by the route's declared role, audit.
      security.install(v1);
      registerAgentRoutes(v1, { store: opts.store, link: opts.agentLink, now });
      registerAgentAuditRoutes(v1, { store: opts.store });
      registerContainerRoutes(v1, { store: opts.store, now, ...(opts.usageHistoryIntervalMs !== undefined ? { usageHistoryIntervalMs: opts.usageHistoryIntervalMs } : {}) });
      registerSummaryRoutes(v1, { store: opts.store, now });
      registerWebhookRoutes(v1, { alerting: opts.alerting });
      registerAlertRoutes(v1, { alerting: opts.alerting, now });
      registerPolicyRoutes(v1, { policy: opts.policy });
      registerViolationRoutes(v1, { store: opts.store, now });
      registerScanRoutes(v1, { store: opts.store, policy: opts.policy });
      registerImageRoutes(v1, { store: opts.store });
      registerActionRoutes(v1, { store: opts.store, actions: opts.actions });
      // Identity and access + audit trail.
      // Revocation and logout end this controller's open streams of that key/session at once;
      // other replicas end theirs at their next heartbeat check (events heartbeatMs).
      registerKeyRoutes(v1, { store: opts.store, now, routes: () => security.routes, ...(hub ? { onRevoked: (keyId: string) => void hub.endKey(keyId) } : {}) });
      registerAuthRoutes(v1, { auth: security.options, now, routes: () => security.routes });
      registerJoinTokenRoutes(v1, { store: opts.store, now, caFingerprint: opts.caFingerprint });
      registerAuditRoutes(v1, { audit: security.audit, now });
      // Browser sessions and the live event stream.
      registerSessionRoutes(v1, { auth: security.options, sessions: opts.store.sessions, now, routes: () => security.routes, ...(hub ? { onLogout: (idHash: string) => void hub.endSession(idHash) } : {}) });
      registerEventRoutes(v1, { hub, authenticator: security.authenticator, now });
    },
    { prefix: '/v1' },
  );

  return app;
}
