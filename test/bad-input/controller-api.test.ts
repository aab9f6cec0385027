// Values the operator API must refuse rather than store or reinterpret, over
// real HTTPS with a real store: webhook URLs with raw CR/LF and header values
// the HTTP client could never send (refused when saved, not at every
// delivery), and query and body values outside any sane range or of the
// wrong type. Each refusal is a 400 problem+json naming the field.
import t from 'tap';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../packages/shared/src/index';
import { createApiServer } from '../../packages/controller/src/api/server';
import { generateApiKey } from '../../packages/controller/src/api/api-keys';
import { testPki } from '../../packages/controller/test/api/fixtures/api-server';
import { startAlerting } from '../../packages/controller/test/alerts/fixtures/alerting';
import { recordBadInput } from '../helpers/bad-input-report';

interface Res {
  status: number;
  contentType: string;
  json: { code?: string; detail?: string; [k: string]: unknown };
  ms: number;
}

t.test('the operator API refuses values outside their range or type', async (t) => {
  const a = await startAlerting({ deliver: false });
  const { ca, server } = await testPki();
  const admin = generateApiKey('admin', 'admin');
  await a.store.insertApiKey(admin.record);
  const app = await createApiServer({ store: a.store, tls: server, logger: createLogger({ name: 'api-test', level: 'silent' }), alerting: a.alerting });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  t.teardown(async () => {
    await app.close();
    await a.close();
  });

  const call = (method: string, path: string, body?: unknown): Promise<Res> =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        `https://127.0.0.1:${port}${path}`,
        { method, ca: ca.certPem, agent: false, headers: { authorization: `Bearer ${admin.plaintext}`, ...(data !== undefined ? { 'content-type': 'application/json' } : {}) } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            let json: Res['json'] = {};
            try {
              json = JSON.parse(text);
            } catch {
              /* not JSON */
            }
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']), json, ms: Date.now() - started });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });

  const refused = (t: tap.Test, r: Res, field: RegExp, what: string): void => {
    t.equal(r.status, 400, `${what}: 400`);
    t.match(r.contentType, /^application\/problem\+json/, `${what}: problem+json`);
    t.equal(r.json.code, 'BK_ERR_BAD_REQUEST', `${what}: BK_ERR_BAD_REQUEST`);
    t.match(r.json.detail, field, `${what}: names the field and the reason (${r.json.detail})`);
    // No canary here: these are single, cheap requests (figures for RELIABILITY.md).
    recordBadInput({
      category: /webhook|header values/i.test(t.fullname) ? 'webhooks' : 'API values', input: `${t.name}: ${what}`, expected: '400 BK_ERR_BAD_REQUEST',
      got: `${r.status} ${r.json.code ?? ''}`, refusedAsDocumented: r.status === 400 && r.json.code === 'BK_ERR_BAD_REQUEST' && field.test(r.json.detail ?? ''), ms: r.ms, canaryMs: null, stalled: false,
    });
  };

  t.test('webhook URL with raw CR/LF is refused, not silently stripped', async (t) => {
    for (const [name, url] of [
      ['CR LF', 'http://127.0.0.1:9/hook\r\nX-Injected: 1'],
      ['LF', 'http://127.0.0.1:9/ho\nok'],
      ['tab', 'http://127.0.0.1:9/ho\tok'],
      ['NUL', 'http://127.0.0.1:9/hook\u0000'],
      ['leading space', ' http://127.0.0.1:9/hook'],
    ] as const) {
      refused(t, await call('POST', '/v1/webhooks', { url, allowUnsafeTarget: true }), /^url: contains a raw (CR|LF|tab|space|control character 0x00) at position \d+/, name);
    }
    t.equal((await call('GET', '/v1/webhooks')).json['items'] instanceof Array ? ((await call('GET', '/v1/webhooks')).json['items'] as unknown[]).length : -1, 0, 'nothing was stored');
    const ok = await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/hook?q=a%0D%0Ab' });
    t.equal(ok.status, 201, 'percent-encoded CR/LF is a normal URL');
  });

  t.test('header values the HTTP client cannot send are refused when saved', async (t) => {
    for (const [name, value] of [
      ['control character', 'abc\u0001def'],
      ['DEL', 'abc\u007f'],
      ['non-Latin-1', 'token-\u0100'],
      ['emoji', 'hi \u{1F600}'],
      ['CR LF', 'a\r\nX-Evil: 1'],
      ['NUL', 'a\u0000'],
    ] as const) {
      refused(t, await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/h', headers: { 'X-Team': value } }), /^headers\.X-Team: the value contains a character an HTTP header cannot carry/, `create: ${name}`);
    }
    const ok = await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/h', headers: { 'X-Team': 'caf\u00e9\ttab ok' } });
    t.equal(ok.status, 201, 'Latin-1 and tab are fine');
    const id = ok.json['id'] as string;
    refused(t, await call('PATCH', `/v1/webhooks/${id}`, { headers: { 'X-Team': 'x\u007f' } }), /^headers\.X-Team: /, 'update: DEL');
  });

  t.test('query values outside the range, or not in decimal', async (t) => {
    refused(t, await call('GET', '/v1/alerts?since=99999999999999d'), /^since: "99999999999999d" reaches back more than 3650d; give a duration from 0 to 3650d/, 'since huge');
    t.equal((await call('GET', '/v1/alerts?since=7d')).status, 200, 'since=7d fine');
    for (const [path, field] of [
      ['/v1/alerts?limit=0x10', 'limit'],
      ['/v1/alerts?limit=1e2', 'limit'],
      ['/v1/alerts?offset=%2010', 'offset'],
      ['/v1/audit-log?limit=0x10', 'limit'],
      ['/v1/join-tokens?limit=0b11', 'limit'],
      ['/v1/violations?limit=0x10', 'limit'],
      ['/v1/containers?limit=0x10', 'limit'],
    ] as const) {
      refused(t, await call('GET', path), new RegExp(`^querystring/${field} must be an integer (from 1 to \\d+|from 0 to \\d+|of at least 0) written in decimal digits, got "`), path);
    }
    t.equal((await call('GET', '/v1/alerts?limit=16')).status, 200, 'limit=16 fine');
    const zero = await call('GET', '/v1/alerts?limit=0');
    refused(t, zero, /limit must be >= 1/, 'limit=0 (schema minimum)');
  });

  t.test('API key name and role', async (t) => {
    for (const [what, name] of [['CR LF', 'ops\r\nFAKE LOG LINE'], ['NUL', 'ops\u0000'], ['DEL', 'ops\u007f']] as const) {
      refused(t, await call('POST', '/v1/keys', { name, role: 'viewer' }), /^body\/name must match pattern/, `name with ${what}`);
    }
    refused(t, await call('POST', '/v1/keys', { name: 'ops', role: ['admin'] }), /^body\/role must be one of viewer, operator, admin, not a list/, 'role as a list');
    refused(t, await call('POST', '/v1/keys', { name: 123, role: 'viewer' }), /^body\/name must be a string, not a/, 'name as a number');
    const ok = await call('POST', '/v1/keys', { name: 'ops team', role: 'viewer' });
    t.equal(ok.status, 201, 'a plain key is created');
  });
});
