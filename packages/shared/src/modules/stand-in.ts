// Owns one memory-saving technique: a stand-in in the module cache for a
// dependency's dependency that our daemons never use, so that it is never
// loaded. A resident daemon keeps the source and compiled code of every module
// it ever loaded; modules needed only by features we do not use are pure
// overhead (the agent's memory budget is 75 MB).
//
// Hand-written because the libraries offer no option to skip these requires.
// Safe by construction: if a path no longer resolves (the library moved or
// dropped the file), nothing is installed and the real module loads; if the
// real module is already loaded, it is left in place.
import Module, { createRequire } from 'node:module';

/**
 * Puts `exports` into the module cache for the module that `chain` resolves
 * to: chain[0] from here, each next entry from the one before (e.g.
 * ['dockerode', 'docker-modem', './ssh']). Returns whether the stand-in (or
 * an already loaded real module) is in place; false when it does not resolve.
 */
export function standIn(chain: readonly string[], exports: unknown): boolean {
  let path: string | undefined;
  try {
    let req: NodeRequire = require;
    for (const request of chain) {
      path = req.resolve(request);
      req = createRequire(path);
    }
  } catch {
    return false;
  }
  if (path === undefined) return false;
  if (require.cache[path] !== undefined) return true;
  const stub = new Module(path);
  stub.filename = path;
  stub.loaded = true;
  stub.exports = exports;
  require.cache[path] = stub;
  return true;
}

/** A stand-in whose every property access fails, naming what was not loaded and why. */
export function unavailableModule(name: string, why: string): unknown {
  return new Proxy(
    {},
    {
      get(_target, prop) {
        if (prop === '__esModule' || typeof prop === 'symbol') return undefined;
        throw new Error(`${name} is not loaded in this process (${why}); "${String(prop)}" was used`);
      },
    },
  );
}

/**
 * prom-client requires @opentelemetry/api (51 modules) at load, only to
 * attach trace ids to exemplars, which neither daemon enables.
 */
export function keepOpenTelemetryUnloaded(): boolean {
  return standIn(['prom-client', '@opentelemetry/api'], unavailableModule('@opentelemetry/api', 'Bulkhead does not enable prom-client exemplars'));
}
