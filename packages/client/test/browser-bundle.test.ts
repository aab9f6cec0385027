// @bulkhead/client is browser-safe: esbuild bundles its entry points for the
// browser (platform 'browser', as the console does) and the bundle imports
// nothing from Node — a plugin fails the build on any Node built-in, whether
// written node:fs or fs. The bundle then runs in a bare V8 context (no require,
// process or Buffer) against a fetch that records what the client sends.
import t from 'tap';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { createContext, runInContext } from 'node:vm';
import { build, type Plugin } from 'esbuild';

const src = join(__dirname, '../src');
const NODE_BUILTIN = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

function noNode(seen: string[]): Plugin {
  return {
    name: 'no-node',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.path.startsWith('node:') || NODE_BUILTIN.has(args.path) || NODE_BUILTIN.has(args.path.split('/')[0]!)) {
          seen.push(`${args.path} (from ${args.importer})`);
          return { errors: [{ text: `Node module "${args.path}" imported by ${args.importer}` }] };
        }
        return undefined;
      });
    },
  };
}

for (const entry of ['index.ts', 'fetch.ts']) {
  t.test(`${entry} bundles for the browser without Node`, async (t) => {
    const seen: string[] = [];
    const out = await build({
      entryPoints: [join(src, entry)],
      bundle: true,
      platform: 'browser',
      format: 'iife',
      globalName: 'bk',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
      plugins: [noNode(seen)],
    });
    t.same(seen, [], 'no Node built-in imported');
    t.same(out.errors, []);
    const js = out.outputFiles[0]!.text;
    t.ok(js.length > 1000, `${js.length} bytes`);
    t.notMatch(js, /\brequire\(/, 'no require() left in the bundle');
  });
}

t.test('a Node import fails the check', async (t) => {
  const seen: string[] = [];
  await t.rejects(
    build({ stdin: { contents: "import { readFileSync } from 'node:fs'; export const x = readFileSync;", resolveDir: src }, bundle: true, platform: 'browser', write: false, logLevel: 'silent', plugins: [noNode(seen)] }),
  );
  t.same(seen.length, 1, 'the plugin saw it');
});

t.test('the bundle runs without Node globals: session, CSRF header on mutating requests, problem errors', async (t) => {
  const out = await build({
    stdin: {
      contents: "export * from './index'; export { FetchTransport } from './fetch';",
      resolveDir: src,
      loader: 'ts',
    },
    bundle: true, platform: 'browser', format: 'iife', globalName: 'bk', target: 'es2022', write: false, logLevel: 'silent', plugins: [noNode([])],
  });
  const sent: Array<{ url: string; method: string; headers: Record<string, string>; credentials: string | undefined; body: unknown }> = [];
  const session = { sessionId: 'ses_0123456789abcdef', keyId: 'k', keyName: 'n', role: 'operator', projects: [], csrfToken: 'tok123', csrfHeader: 'x-bulkhead-csrf', createdAt: '', expiresAt: '', idleTimeoutSeconds: 900 };
  const fakeFetch = async (url: string, init: RequestInit) => {
    sent.push({ url, method: String(init.method), headers: { ...(init.headers as Record<string, string>) }, credentials: init.credentials, body: init.body });
    if (url.endsWith('/v1/session')) return new Response(JSON.stringify(init.method === 'DELETE' ? { sessionId: session.sessionId, loggedOut: true } : session), { status: 200, headers: { 'content-type': 'application/json' } });
    if (url.includes('/acknowledge')) return new Response(JSON.stringify({ type: 'about:blank', title: 'Conflict', status: 409, detail: 'already acknowledged', code: 'BK_ERR_CONFLICT' }), { status: 409, headers: { 'content-type': 'application/problem+json' } });
    if (url.includes('/v1/events')) return new Response('id: 7\nevent: container.updated\ndata: {"seq":7,"containerId":"c1"}\n\n: heartbeat\n\n', { status: 200, headers: { 'content-type': 'text/event-stream' } });
    return new Response(JSON.stringify({ items: [], nextCursor: null }), { status: 200, headers: { 'content-type': 'application/json' } });
  };
  // A context with only what a browser page has (and Node's fetch classes standing in for the browser's).
  const ctx = createContext({ Response, Headers, URLSearchParams, TextDecoder, AbortController, AbortSignal, setTimeout, clearTimeout, console, fetch: fakeFetch });
  runInContext(out.outputFiles[0]!.text, ctx);
  t.equal(runInContext('typeof require + typeof process + typeof Buffer', ctx), 'undefinedundefinedundefined', 'no Node globals in the context');
  const bk = runInContext('bk', ctx) as typeof import('../src/index') & typeof import('../src/fetch');
  const transport = new bk.FetchTransport();
  const client = new bk.BulkheadClient({ transport });
  await client.login('bk_secret');
  t.equal(sent[0]!.url, '/v1/session', 'login sent to the page origin');
  t.equal(sent[0]!.method, 'POST');
  t.same(JSON.parse(String(sent[0]!.body)), { key: 'bk_secret' }, 'the key in the body, not the URL');
  t.equal(sent[0]!.headers['x-bulkhead-csrf'], undefined, 'no CSRF token before a session');
  t.equal(sent[0]!.credentials, 'same-origin', 'cookies same-origin only');
  await client.listContainers({ state: 'running', label: ['a=b', 'c'], limit: 5 });
  t.equal(sent[1]!.url, '/v1/containers?state=running&label=a%3Db&label=c&limit=5', 'query built from the typed filters');
  t.equal(sent[1]!.headers['x-bulkhead-csrf'], undefined, 'no CSRF header on GET');
  const err = await client.acknowledgeViolation('vio_1', 'seen').catch((e: unknown) => e);
  t.equal(sent[2]!.headers['x-bulkhead-csrf'], 'tok123', 'CSRF header on POST');
  t.ok(err instanceof bk.ApiError, 'a problem becomes ApiError');
  t.match(err, { status: 409, code: 'BK_ERR_CONFLICT', title: 'Conflict', detail: 'already acknowledged' });
  const events: unknown[] = [];
  await client.streamEvents({ onEvent: (e) => events.push(bk.parseFleetEvent(e)) });
  t.same(events, [{ seq: 7, containerId: 'c1', type: 'container.updated' }], 'SSE parsed');
  t.equal(sent[3]!.headers['accept'], 'text/event-stream');
  await client.logout();
  t.equal(sent[4]!.method, 'DELETE');
  t.equal(sent[4]!.headers['x-bulkhead-csrf'], 'tok123', 'CSRF header on logout');
  t.equal(transport.hasSession, false, 'token forgotten after logout');
});
