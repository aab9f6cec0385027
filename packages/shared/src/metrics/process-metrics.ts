// The process and Node.js metrics both daemons expose, configured once.
// prom-client is required on first use, so importing @bulkhead/shared (the ops
// CLI, the audit child) does not load it.
import type { Registry } from 'prom-client';

/**
 * Resolution of prom-client's event-loop-delay histogram. Its default, 10 ms,
 * wakes the process 100 times a second: measured 0.44 % of a core on an idle
 * process (against 0.07 % at 100 ms and 0.01 % with no monitor) — almost half
 * the agent's idle budget of 1 %, spent watching for stalls. At 100 ms a stall
 * of more than a few ms still shows in the max and percentiles.
 */
export const EVENT_LOOP_MONITOR_RESOLUTION_MS = 100;

/**
 * prom-client's default process and Node.js metrics, minus the three gauges
 * named `*_total` (nodejs_active_{handles,requests,resources}_total): that
 * suffix is reserved for counters, `promtool check metrics` rejects it, and
 * each duplicates the sum of its labelled twin (nodejs_active_handles …).
 */
export function collectProcessMetrics(registry: Registry): void {
  const { collectDefaultMetrics } = require('prom-client') as typeof import('prom-client');
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_MONITOR_RESOLUTION_MS });
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
}
