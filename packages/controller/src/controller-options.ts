// Options of the running controller, with their defaults in one place.
import { BulkheadError, parseDuration, resolveMetricsAddress } from '@bulkhead/shared';
import { splitHostPort } from './net/host-port';
import { DEFAULT_SESSION_IDLE_MS, DEFAULT_SESSION_MAX_LIFETIME_MS, MAX_TOKEN_MAX_TTL_MS, MIN_TOKEN_MAX_TTL_MS, checkSessionTimeouts } from './auth/auth-options';
import type { ApiTlsFiles } from './api/api-tls';
import { storeConfigFor } from './store/open-store';
import { parseHistoryInterval } from './store/usage-history';

export interface ControllerOptions {
  dataDir: string;
  /** Agent gRPC listener (mutual TLS). Default 0.0.0.0:7443. */
  grpcListen: string;
  /** Ops HTTPS API listener. Default 0.0.0.0:8443. */
  apiListen: string;
  /** How often agents heartbeat. Default 5 s. */
  heartbeatIntervalMs: number;
  /** Silence after which an agent is marked offline. Default 3 × heartbeat. */
  offlineAfterMs: number;
  /**
   * Prometheus metrics listener (plain HTTP, GET /metrics). Default
   * 127.0.0.1:9464; undefined = no metrics listener. Loopback only unless
   * `metricsAllowRemote`.
   */
  metricsListen: string | undefined;
  /** Allow a non-loopback metrics address. Default false. */
  metricsAllowRemote: boolean;
  /** Identity and access: longest bearer-token lifetime a caller may ask for. Default 1 h (1 min – 24 h). */
  tokenMaxTtlMs?: number;
  /** Browser sessions (POST /v1/session): ended after this long without a request. Default 15 min (10 s – 24 h). */
  sessionIdleMs?: number;
  /** Browser sessions: ended this long after login, used or not. Default 8 h (1 min – 30 d). */
  sessionMaxLifetimeMs?: number;
  /**
   * Operator-supplied certificate (chain) and key for the HTTPS API, checked
   * at start and on SIGHUP (src/api/api-tls.ts). Default: the data
   * directory's server certificate, issued by the controller CA. Agents'
   * gRPC always uses the controller CA.
   */
  apiTls?: ApiTlsFiles;
  /**
   * PostgreSQL URL (`--database-url` / BULKHEAD_DATABASE_URL). Default:
   * undefined = the embedded SQLite file DATA_DIR/bulkhead.db.
   */
  databaseUrl?: string;
  /** PostgreSQL pool size (`--database-pool-size`). Default 20. */
  databasePoolSize?: number;
  /** PostgreSQL: longest wait for a pooled connection, or for opening one (`--database-pool-wait`). Default 30 s. */
  databasePoolWaitMs?: number;
  /** Spacing of each container's recent-usage history points (`--usage-history-interval`); 60 are kept. Default 60 s. */
  usageHistoryIntervalMs?: number;
}

export const DEFAULT_DATABASE_POOL_SIZE = 20;
export const DEFAULT_DATABASE_POOL_WAIT_MS = 30_000;

export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9464';

export interface ControllerOptionsInput {
  dataDir: string;
  grpcListen?: string;
  apiListen?: string;
  heartbeatInterval?: string | number;
  offlineAfter?: string | number;
  /** false (from --no-metrics) turns the metrics listener off. */
  metricsListen?: string | false;
  metricsAllowRemote?: boolean;
  /** `--token-max-ttl`, e.g. "1h". */
  tokenMaxTtl?: string | number;
  /** `--session-idle-timeout`, e.g. "15m". */
  sessionIdleTimeout?: string | number;
  /** `--session-max-lifetime`, e.g. "8h". */
  sessionMaxLifetime?: string | number;
  /** `--api-tls-cert` / BULKHEAD_API_TLS_CERT: PEM certificate, leaf first, then intermediates. */
  apiTlsCert?: string;
  /** `--api-tls-key` / BULKHEAD_API_TLS_KEY: its PEM private key. */
  apiTlsKey?: string;
  /** `--database-url` / BULKHEAD_DATABASE_URL: postgresql://… ; empty or absent = SQLite in the data directory. */
  databaseUrl?: string;
  /** `--database-pool-size` / BULKHEAD_DATABASE_POOL_SIZE. */
  databasePoolSize?: string | number;
  /** `--database-pool-wait` / BULKHEAD_DATABASE_POOL_WAIT, e.g. "30s". */
  databasePoolWait?: string | number;
  /** `--usage-history-interval` / BULKHEAD_USAGE_HISTORY_INTERVAL, e.g. "60s". */
  usageHistoryInterval?: string | number;
}

export function resolveControllerOptions(input: ControllerOptionsInput): ControllerOptions {
  if (!input.dataDir) throw new BulkheadError('BK_ERR_CONFIG_INVALID', '--data-dir is required');
  const heartbeatIntervalMs = parseDuration(input.heartbeatInterval ?? '5s', 'heartbeat-interval');
  const offlineAfterMs = input.offlineAfter !== undefined ? parseDuration(input.offlineAfter, 'offline-after') : heartbeatIntervalMs * 3;
  if (heartbeatIntervalMs < 100) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'heartbeat-interval must be at least 100ms');
  if (offlineAfterMs <= heartbeatIntervalMs) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `offline-after (${offlineAfterMs}ms) must be longer than heartbeat-interval (${heartbeatIntervalMs}ms)`);
  }
  const opts: ControllerOptions = {
    dataDir: input.dataDir,
    grpcListen: input.grpcListen ?? '0.0.0.0:7443',
    apiListen: input.apiListen ?? '0.0.0.0:8443',
    heartbeatIntervalMs,
    offlineAfterMs,
    metricsListen: input.metricsListen === false ? undefined : (input.metricsListen ?? DEFAULT_METRICS_LISTEN),
    metricsAllowRemote: input.metricsAllowRemote === true,
    tokenMaxTtlMs: parseDuration(input.tokenMaxTtl ?? '1h', 'token-max-ttl'),
    sessionIdleMs: input.sessionIdleTimeout !== undefined ? parseDuration(input.sessionIdleTimeout, 'session-idle-timeout') : DEFAULT_SESSION_IDLE_MS,
    sessionMaxLifetimeMs: input.sessionMaxLifetime !== undefined ? parseDuration(input.sessionMaxLifetime, 'session-max-lifetime') : DEFAULT_SESSION_MAX_LIFETIME_MS,
    usageHistoryIntervalMs: parseHistoryInterval(input.usageHistoryInterval),
  };
  checkSessionTimeouts(opts.sessionIdleMs!, opts.sessionMaxLifetimeMs!);
  if (!(opts.tokenMaxTtlMs! >= MIN_TOKEN_MAX_TTL_MS && opts.tokenMaxTtlMs! <= MAX_TOKEN_MAX_TTL_MS)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `token-max-ttl must be between 1m and 24h, got ${input.tokenMaxTtl ?? '1h'}`);
  }
  const cert = input.apiTlsCert || undefined;
  const key = input.apiTlsKey || undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `--api-tls-cert and --api-tls-key go together: got only ${cert !== undefined ? '--api-tls-cert' : '--api-tls-key'}`);
  }
  if (cert !== undefined && key !== undefined) opts.apiTls = { certFile: cert, keyFile: key };
  // Checked at start-up (scheme, parseable); connecting is Controller.start's job.
  if (storeConfigFor(input.dataDir, input.databaseUrl).kind === 'postgres') opts.databaseUrl = input.databaseUrl!.trim();
  // The pool: its size and how long a query waits for a connection (then the write is retried, never dropped).
  const poolSize = Number(input.databasePoolSize ?? DEFAULT_DATABASE_POOL_SIZE);
  if (!Number.isSafeInteger(poolSize) || poolSize < 1 || poolSize > 1000) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `database-pool-size must be an integer from 1 to 1000, got ${input.databasePoolSize}`);
  }
  const poolWaitMs = parseDuration(input.databasePoolWait ?? DEFAULT_DATABASE_POOL_WAIT_MS, 'database-pool-wait');
  if (!(poolWaitMs >= 100)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'database-pool-wait must be at least 100ms');
  opts.databasePoolSize = poolSize;
  opts.databasePoolWaitMs = poolWaitMs;
  if (opts.metricsListen !== undefined) resolveMetricsAddress(opts.metricsListen, opts.metricsAllowRemote);
  splitHostPort(opts.grpcListen, 'grpc-listen');
  splitHostPort(opts.apiListen, 'api-listen');
  return opts;
}
