// Owns the unauthenticated probes: /healthz (the process answers) and
// /readyz (the store answers and the controller says it is ready).
import type { FastifyInstance } from 'fastify';
import type { Store } from '../../store/store';
import { PROBLEM_CONTENT_TYPE, makeProblem } from '../problem';

export interface HealthRouteOptions {
  store: Store;
  ready: () => boolean | Promise<boolean>;
  timeoutMs: number;
}

export function registerHealthRoutes(app: FastifyInstance, opts: HealthRouteOptions): void {
  // Probes hit these every few seconds; log them only when something is wrong.
  app.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }));

  app.get('/readyz', { logLevel: 'warn' }, async (req, reply) => {
    const failures: string[] = [];
    try {
      await withTimeout(opts.store.ping(), opts.timeoutMs, 'store ping');
    } catch (err) {
      req.log.warn({ err }, 'readiness: store ping failed');
      failures.push('store unavailable');
    }
    try {
      if (!(await withTimeout(Promise.resolve(opts.ready()), opts.timeoutMs, 'ready check'))) failures.push('controller not ready');
    } catch (err) {
      req.log.warn({ err }, 'readiness: ready check failed');
      failures.push('controller not ready');
    }
    if (failures.length === 0) return { status: 'ready' };
    return reply
      .code(503)
      .type(PROBLEM_CONTENT_TYPE)
      .send(JSON.stringify({ ...makeProblem('BK_ERR_NOT_READY', failures.join('; ')), requestId: String(req.id) }));
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
