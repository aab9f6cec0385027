// Options of ContainerWatcher (watcher.ts) and the one function that fills
// in defaults and rejects bad combinations. Durations are milliseconds here:
// the agent's own options turn "30s" into ms (agent-options.ts).
import { BulkheadError } from '@bulkhead/shared';
import type { Logger } from '@bulkhead/shared';
import type { DockerApi } from './client';
import type { Facts } from './container-facts';
import type { DockerEvent } from './event-stream';

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
   * Default 30 s; 0 disables the timer (a reconcile still runs after every
   * reconnect of the event stream).
   */
  reconcileIntervalMs?: number;
  /** First delay before reconnecting a lost event stream; doubles per failure. Default 100 ms. */
  reconnectMinDelayMs?: number;
  /** Cap of that delay. Default 10 s. */
  reconnectMaxDelayMs?: number;
  /** Inspects run at once during the initial sync and reconciles (events are never throttled). Default 8. */
  inspectConcurrency?: number;
  /**
   * Completes facts with what one inspect cannot say (symlinked bind
   * sources, a local volume's bound host path, a joined container's
   * namespaces): FactsResolver (facts-resolver.ts). `previous` are the facts
   * last held for the same container. Best effort: it must not throw.
   * Default: none (facts as inspect shows them).
   */
  resolveFacts?: (facts: Facts, previous: Facts | undefined) => Promise<Facts>;
  /**
   * An image event that may move a ref (tag, untag, pull, load, import,
   * delete): the authorization plugin drops its cached image inspects.
   */
  onImageEvent?: (ev: DockerEvent) => void;
}

export interface ResolvedWatcherOptions {
  docker: ContainerWatcherOptions['docker'];
  logger: Logger;
  clock: Clock;
  reconcileIntervalMs: number;
  reconnectMinDelayMs: number;
  reconnectMaxDelayMs: number;
  inspectConcurrency: number;
  resolveFacts: ContainerWatcherOptions['resolveFacts'];
  onImageEvent: ContainerWatcherOptions['onImageEvent'];
}

export const WATCHER_DEFAULTS = {
  reconcileIntervalMs: 30_000,
  reconnectMinDelayMs: 100,
  reconnectMaxDelayMs: 10_000,
  inspectConcurrency: 8,
} as const;

export function resolveWatcherOptions(o: ContainerWatcherOptions): ResolvedWatcherOptions {
  const r: ResolvedWatcherOptions = {
    docker: o.docker,
    logger: o.logger,
    clock: o.clock ?? systemClock,
    reconcileIntervalMs: ms(o.reconcileIntervalMs ?? WATCHER_DEFAULTS.reconcileIntervalMs, 'reconcileIntervalMs'),
    reconnectMinDelayMs: ms(o.reconnectMinDelayMs ?? WATCHER_DEFAULTS.reconnectMinDelayMs, 'reconnectMinDelayMs'),
    reconnectMaxDelayMs: ms(o.reconnectMaxDelayMs ?? WATCHER_DEFAULTS.reconnectMaxDelayMs, 'reconnectMaxDelayMs'),
    inspectConcurrency: o.inspectConcurrency ?? WATCHER_DEFAULTS.inspectConcurrency,
    resolveFacts: o.resolveFacts,
    onImageEvent: o.onImageEvent,
  };
  if (r.reconcileIntervalMs > 0 && r.reconcileIntervalMs < 100) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `reconcileIntervalMs: ${r.reconcileIntervalMs} is too short (minimum 100ms, or 0 to disable)`);
  }
  if (r.reconnectMinDelayMs <= 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'reconnectMinDelayMs must be positive');
  if (r.reconnectMaxDelayMs < r.reconnectMinDelayMs) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `reconnectMaxDelayMs (${r.reconnectMaxDelayMs}) is below reconnectMinDelayMs (${r.reconnectMinDelayMs})`);
  }
  if (!Number.isInteger(r.inspectConcurrency) || r.inspectConcurrency < 1) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `inspectConcurrency: ${r.inspectConcurrency} is not a positive integer`);
  }
  return r;
}

function ms(v: number, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${field}: ${String(v)} is not a non-negative number of milliseconds`);
  }
  return Math.round(v);
}
