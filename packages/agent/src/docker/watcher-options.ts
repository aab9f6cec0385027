// Options of ContainerWatcher (watcher.ts) and the one function that fills
// in defaults, turns "30s" into milliseconds and rejects bad combinations.
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { Logger } from '@bulkhead/shared';
import type { DockerApi } from './client';

/** Wall-clock time source; tests pass a fake. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface ContainerWatcherOptions {
  /** Usually createDockerClient(); anything with the same methods works. */
  docker: Pick<DockerApi, 'getEvents' | 'listContainers' | 'getContainer' | 'getImage'>;
  logger: Logger;
  /** Stamps changes found by reconciling (events carry dockerd's time). Default: Date.now. */
  clock?: Clock;
  /**
   * How often to list containers and repair the inventory. Catches what the
   * event stream lost: dockerd silently skips events for a subscriber that
   * lags > 100 ms and replays only its last 256 after a reconnect.
   * Default 30s; 0 disables the timer (a reconcile still runs after every
   * reconnect of the event stream).
   */
  reconcileInterval?: number | string;
  /** First delay before reconnecting a lost event stream; doubles per failure. Default 100ms. */
  reconnectMinDelay?: number | string;
  /** Cap of that delay. Default 10s. */
  reconnectMaxDelay?: number | string;
  /** Inspects run at once during the initial sync and reconciles (events are never throttled). Default 8. */
  inspectConcurrency?: number;
}

export interface ResolvedWatcherOptions {
  docker: ContainerWatcherOptions['docker'];
  logger: Logger;
  clock: Clock;
  reconcileIntervalMs: number;
  reconnectMinDelayMs: number;
  reconnectMaxDelayMs: number;
  inspectConcurrency: number;
}

export const WATCHER_DEFAULTS = {
  reconcileInterval: '30s',
  reconnectMinDelay: '100ms',
  reconnectMaxDelay: '10s',
  inspectConcurrency: 8,
} as const;

export function resolveWatcherOptions(o: ContainerWatcherOptions): ResolvedWatcherOptions {
  const r: ResolvedWatcherOptions = {
    docker: o.docker,
    logger: o.logger,
    clock: o.clock ?? systemClock,
    reconcileIntervalMs: parseDuration(o.reconcileInterval ?? WATCHER_DEFAULTS.reconcileInterval, 'reconcileInterval'),
    reconnectMinDelayMs: parseDuration(o.reconnectMinDelay ?? WATCHER_DEFAULTS.reconnectMinDelay, 'reconnectMinDelay'),
    reconnectMaxDelayMs: parseDuration(o.reconnectMaxDelay ?? WATCHER_DEFAULTS.reconnectMaxDelay, 'reconnectMaxDelay'),
    inspectConcurrency: o.inspectConcurrency ?? WATCHER_DEFAULTS.inspectConcurrency,
  };
  if (r.reconcileIntervalMs > 0 && r.reconcileIntervalMs < 100) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `reconcileInterval: ${r.reconcileIntervalMs}ms is too short (minimum 100ms, or 0 to disable)`);
  }
  if (r.reconnectMinDelayMs <= 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'reconnectMinDelay must be positive');
  if (r.reconnectMaxDelayMs < r.reconnectMinDelayMs) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `reconnectMaxDelay (${r.reconnectMaxDelayMs}ms) is below reconnectMinDelay (${r.reconnectMinDelayMs}ms)`);
  }
  if (!Number.isInteger(r.inspectConcurrency) || r.inspectConcurrency < 1) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `inspectConcurrency: ${r.inspectConcurrency} is not a positive integer`);
  }
  return r;
}
