// Route schemas compiled on first use (src/api/lazy-schemas.ts): the same answers as fastify's
// eager defaults, nothing compiled before the first request, warm() compiles the rest.
import t from 'tap';
import Fastify, { type FastifyInstance } from 'fastify';
import { LazySchemas } from '../../src/api/lazy-schemas';

const AJV = { customOptions: { removeAdditional: false, coerceTypes: 'array' as const, useDefaults: true } };

function build(schemas?: LazySchemas): FastifyInstance {
  const app = Fastify({ ajv: AJV, ...(schemas ? { schemaController: { compilersFactory: schemas.compilersFactory } } : {}) });
  app.get('/items', {
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, default: 10 }, tag: { type: 'array', items: { type: 'string' } } } },
      response: { 200: { type: 'object', properties: { limit: { type: 'integer' }, tag: { type: 'array', items: { type: 'string' } } } } },
    },
  }, async (req) => ({ ...(req.query as object), secret: 'not in the schema' }));
  app.post('/things', {
    schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1 } } } },
  }, async (req) => ({ got: (req.body as { name: string }).name }));
  return app;
}

const requests = [
  { method: 'GET' as const, url: '/items' },
  { method: 'GET' as const, url: '/items?limit=3&tag=a' },
  { method: 'GET' as const, url: '/items?limit=0' },
  { method: 'GET' as const, url: '/items?nope=1' },
  { method: 'POST' as const, url: '/things', payload: { name: 'x' } },
  { method: 'POST' as const, url: '/things', payload: { name: '' } },
  { method: 'POST' as const, url: '/things', payload: {} },
];

t.test('answers exactly as fastify\'s eager compilers', async (t) => {
  const eager = build();
  const schemas = new LazySchemas();
  const lazy = build(schemas);
  t.teardown(() => Promise.all([eager.close(), lazy.close()]).then(() => undefined));
  await Promise.all([eager.ready(), lazy.ready()]);
  t.ok(schemas.remaining > 0, `nothing compiled by ready() (${schemas.remaining} waiting)`);
  for (const r of requests) {
    const [a, b] = await Promise.all([eager.inject(r), lazy.inject(r)]);
    t.equal(b.statusCode, a.statusCode, `${r.method} ${r.url} ${JSON.stringify(r.payload ?? '')}: status ${a.statusCode}`);
    t.same(JSON.parse(b.body), JSON.parse(a.body), `${r.method} ${r.url}: body`);
  }
  t.notMatch((await lazy.inject(requests[0]!)).body, /secret/, 'the response schema still filters');
  t.match((await lazy.inject(requests[3]!)).body, /must NOT have additional properties/, 'the validator\'s errors reach the answer');
});

t.test('warm() compiles what was not used yet, in the background', async (t) => {
  const schemas = new LazySchemas();
  const app = build(schemas);
  t.teardown(() => app.close());
  await app.ready();
  const before = schemas.remaining;
  await app.inject(requests[4]!);
  t.ok(schemas.remaining < before, 'a request compiles its route\'s schemas');
  const left = schemas.remaining;
  const errors: string[] = [];
  const n = await schemas.warm((what) => errors.push(what));
  t.equal(schemas.remaining, 0, 'none left');
  t.equal(n, left, `warm compiled the ${left} not used yet`);
  t.same(errors, []);
  t.equal(await schemas.warm(() => undefined), 0, 'a second warm() has nothing to do');
});

t.test('a schema that does not compile is reported by warm() and answers 500', async (t) => {
  const schemas = new LazySchemas();
  const app = Fastify({ schemaController: { compilersFactory: schemas.compilersFactory } });
  app.get('/bad', { schema: { querystring: { type: 'object', properties: { x: { type: 'no-such-type' } } } } }, async () => ({}));
  t.teardown(() => app.close());
  await app.ready();
  const errors: string[] = [];
  await schemas.warm((what, err) => errors.push(`${what}: ${err.message}`));
  // GET and the HEAD route fastify adds for it.
  t.same(errors.map((e) => e.split(':')[0]), ['GET /bad querystring', 'HEAD /bad querystring'], `reported: ${errors.join('; ')}`);
  t.equal((await app.inject({ method: 'GET', url: '/bad' })).statusCode, 500);
});

t.test('stop() ends a warm-up', async (t) => {
  const schemas = new LazySchemas();
  const app = build(schemas);
  t.teardown(() => app.close());
  await app.ready();
  const before = schemas.remaining;
  const keepAlive = setInterval(() => undefined, 1_000); // warm()'s delay timer does not hold the process
  const w = schemas.warm(() => undefined, 50);
  schemas.stop();
  t.equal(await w, 0, 'nothing compiled after stop');
  clearInterval(keepAlive);
  t.equal(schemas.remaining, before);
});
