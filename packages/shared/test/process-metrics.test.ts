import t from 'tap';
import perfHooks from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { collectProcessMetrics, EVENT_LOOP_MONITOR_RESOLUTION_MS } from '../src/metrics/process-metrics';

t.test('process metrics: prom-client defaults, a coarse event-loop monitor, no *_total gauges', async (t) => {
  const resolutions: (number | undefined)[] = [];
  const original = perfHooks.monitorEventLoopDelay;
  perfHooks.monitorEventLoopDelay = ((o?: { resolution?: number }) => {
    resolutions.push(o?.resolution);
    return original(o);
  }) as typeof original;
  t.teardown(() => {
    perfHooks.monitorEventLoopDelay = original;
  });
  const registry = new Registry();
  collectProcessMetrics(registry);
  t.same(resolutions, [EVENT_LOOP_MONITOR_RESOLUTION_MS], 'one event-loop monitor, at the coarse resolution');
  t.ok(EVENT_LOOP_MONITOR_RESOLUTION_MS >= 50, 'not the 10 ms default that wakes the process 100 times a second');
  const text = await registry.metrics();
  t.match(text, /^nodejs_eventloop_lag_p99_seconds /m);
  t.match(text, /^process_resident_memory_bytes /m);
  t.match(text, /^nodejs_active_handles\{/m, 'the labelled twin stays');
  for (const gone of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    t.notMatch(text, new RegExp(`^${gone} `, 'm'), `${gone} removed`);
  }
});
