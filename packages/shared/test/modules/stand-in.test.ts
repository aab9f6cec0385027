import t from 'tap';
import { createRequire } from 'node:module';
// @bulkhead/shared first, as in both daemons (their entry points import it before the metrics modules that import prom-client).
import { collectProcessMetrics, keepOpenTelemetryUnloaded, standIn, unavailableModule } from '../../src/index';
import { Registry } from 'prom-client';

t.test('importing @bulkhead/shared keeps @opentelemetry/api out of a process that loads prom-client', async (t) => {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const text = await registry.metrics();
  t.match(text, /process_cpu_user_seconds_total \d/, 'prom-client still collects process CPU (the module that required the stand-in)');
  const otel = Object.keys(require.cache).filter((k) => k.includes('/node_modules/@opentelemetry/api/'));
  t.equal(otel.length, 1, 'one cache entry for @opentelemetry/api: the stand-in, none of its 51 modules');
  t.equal(keepOpenTelemetryUnloaded(), true, 'idempotent');
  const api = createRequire(require.resolve('prom-client'))('@opentelemetry/api') as { trace: unknown };
  t.throws(() => api.trace, /@opentelemetry\/api is not loaded in this process \(Bulkhead does not enable prom-client exemplars\); "trace" was used/);
});

t.test('standIn: a chain that does not resolve installs nothing', async (t) => {
  t.equal(standIn(['prom-client', './no-such-file-bk'], {}), false);
  t.equal(standIn(['no-such-package-bk'], {}), false);
  t.equal(standIn([], {}), false, 'an empty chain names no module');
});

t.test('standIn: an already loaded module is left in place', async (t) => {
  const real = require('yaml') as unknown;
  t.equal(standIn(['yaml'], { fake: true }), true);
  t.equal(require('yaml'), real, 'the real module, not the stand-in');
});

t.test('unavailableModule: looks like an empty CommonJS module until used', async (t) => {
  const m = unavailableModule('x-lib', 'not needed') as Record<string | symbol, unknown>;
  t.equal(m.__esModule, undefined);
  t.equal(m[Symbol.toPrimitive], undefined);
  t.throws(() => m.foo, /x-lib is not loaded in this process \(not needed\); "foo" was used/);
});
