// Options of the running controller, with their defaults in one place.
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import { splitHostPort } from './net/host-port';

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
}

export interface ControllerOptionsInput {
  dataDir: string;
  grpcListen?: string;
  apiListen?: string;
  heartbeatInterval?: string | number;
  offlineAfter?: string | number;
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
  };
  splitHostPort(opts.grpcListen, 'grpc-listen');
  splitHostPort(opts.apiListen, 'api-listen');
  return opts;
}
