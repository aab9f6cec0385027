// /v1/webhooks, /v1/deliveries and /v1/alerts over real HTTPS with a real
// store, real delivery workers and a real receiver.
import t from 'tap';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@bulkhead/shared';
import { createApiServer } from '../../src/api/server';
import { generateApiKey } from '../../src/api/api-keys';
import { testPki } from '../api/fixtures/api-server';
import { Receiver } from './fixtures/receiver';
import { eventually, startAlerting } from './fixtures/alerting';

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

t.test('webhooks and alerts API', async (t) => {
  const a = await startAlerting({ options: { retrySchedule: '100ms' } });
  const rx = await Receiver.start();
  const { ca, server } = await testPki();
  const lines: string[] = [];
  const logger = createLogger({ name: 'api-test', level: 'trace', destination: { write: (s: string) => void lines.push(s) } });
  const admin = generateApiKey('admin', 'admin');
  const viewer = generateApiKey('viewer', 'viewer');
  await a.store.insertApiKey(admin.record);
  await a.store.insertApiKey(viewer.record);
  const app = await createApiServer({ store: a.store, tls: server, logger, alerting: a.alerting });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  t.teardown(async () => {
    await app.close();
    await a.close();
    await rx.close();
  });

  const call = (method: string, path: string, body?: unknown, key = admin.plaintext): Promise<Res> =>
    new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        `https://127.0.0.1:${port}${path}`,
        { method, ca: ca.certPem, agent: false, headers: { authorization: `Bearer ${key}`, ...(data !== undefined ? { 'content-type': 'application/json' } : {}) } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });

  let id = '';
  let secret = '';

  t.test('create shows the secret once; GET never does', async (t) => {
    const r = await call('POST', '/v1/webhooks', { url: rx.url + '?token=abc', name: 'siem', minSeverity: 'medium', types: ['violation', 'action_failed'], headers: { Authorization: 'Bearer s3cr3t-header' } });
    t.equal(r.status, 201, r.text);
    t.match(r.json, { id: /^wh_[0-9a-f]{16}$/, name: 'siem', format: 'json', minSeverity: 'medium', types: ['violation', 'action_failed'], projects: [], headerNames: ['authorization'], enabled: true, allowUnsafeTarget: false, disabledReason: null, secret: /^whsec_/ });
    t.equal(r.headers['location'], `/v1/webhooks/${r.json.id}`);
    t.match(r.json.url, /\?token=redacted$/, 'query values redacted');
    id = r.json.id;
    secret = r.json.secret;
    rx.secrets = [secret];

    const g = await call('GET', `/v1/webhooks/${id}`);
    t.equal(g.status, 200);
    t.notOk('secret' in g.json, 'no secret field');
    t.notMatch(g.text, secret.slice(6), 'secret not in the body');
    t.notMatch(g.text, 's3cr3t-header', 'header values not in the body');
    t.match(g.json.stats, { pending: 0, delivered: 0, dead: 0 });
    const l = await call('GET', '/v1/webhooks', undefined, viewer.plaintext);
    t.equal(l.status, 200, 'a viewer may read');
    t.equal(l.json.items.length, 1);
    t.notMatch(l.text, secret.slice(6));
    t.notMatch(lines.join(''), secret.slice(6), 'secret never logged');
  });

  t.test('validation and refusals', async (t) => {
    const bad = [
      [{ url: 'http://169.254.169.254/' }, 400, 'BK_ERR_WEBHOOK_UNSAFE_TARGET'],
      [{ url: 'gopher://x/' }, 400, 'BK_ERR_BAD_REQUEST'],
      [{ url: rx.url, format: 'xml' }, 400, 'BK_ERR_BAD_REQUEST'],
      [{ url: rx.url, types: ['test'] }, 400, 'BK_ERR_BAD_REQUEST'],
      [{ url: rx.url, secret: 'whsec_tooShort' }, 400, 'BK_ERR_BAD_REQUEST'],
      [{ url: rx.url, headers: { 'webhook-id': 'x' } }, 400, 'BK_ERR_BAD_REQUEST'],
      [{ url: rx.url, headers: { 'x-a': 'a\r\nb' } }, 400, 'BK_ERR_BAD_REQUEST'],
      [{ url: rx.url, bogus: 1 }, 400, 'BK_ERR_BAD_REQUEST'],
    ] as const;
    for (const [body, status, code] of bad) {
      const r = await call('POST', '/v1/webhooks', body);
      t.equal(r.status, status, `${JSON.stringify(body)} → ${status}`);
      t.equal(r.json?.code, code);
      t.match(String(r.headers['content-type']), /^application\/problem\+json/);
    }
    const forbidden = await call('POST', '/v1/webhooks', { url: rx.url }, viewer.plaintext);
    t.equal(forbidden.status, 403, 'viewers cannot create');
    t.equal(forbidden.json.code, 'BK_ERR_FORBIDDEN');
    t.equal((await call('DELETE', `/v1/webhooks/${id}`, undefined, viewer.plaintext)).status, 403);
    t.equal((await call('GET', '/v1/webhooks/wh_nope')).status, 404);
    t.equal((await call('PATCH', `/v1/webhooks/${id}`, {})).status, 400, 'an empty patch is refused');
  });

  t.test('test delivery, with wait, through the outbox', async (t) => {
    const r = await call('POST', `/v1/webhooks/${id}/test`, { wait: true });
    t.equal(r.status, 200, r.text);
    t.match(r.json, { id: /^msg_/, webhookId: id, alertType: 'test', status: 'delivered', attempts: 1, attemptLog: [{ attempt: 1, statusCode: 204, outcome: 'delivered' }] });
    const got = rx.received.find((x) => x.id === r.json.id)!;
    t.same(got.verifiedBy, [0], 'signed with the secret shown at creation');
    t.match(got.json, { type: 'alert.test', data: { type: 'test', severity: 'info' } });
    const noBody = await call('POST', `/v1/webhooks/${id}/test`);
    t.equal(noBody.status, 202, 'body is optional; without wait it answers 202 at once');
  });

  t.test('patch, rotate-secret, delivery log, redeliver', async (t) => {
    const p = await call('PATCH', `/v1/webhooks/${id}`, { minSeverity: 'info', types: [], name: 'siem-2' });
    t.equal(p.status, 200, p.text);
    t.match(p.json, { name: 'siem-2', minSeverity: 'info', types: [] });
    const rot = await call('POST', `/v1/webhooks/${id}/rotate-secret`, { grace: '1h' });
    t.equal(rot.status, 200, rot.text);
    t.not(rot.json.secret, secret);
    t.ok(Date.parse(rot.json.previousSecretExpiresAt) > Date.now() + 3_500_000);
    rx.secrets = [secret, rot.json.secret];
    t.equal((await call('POST', `/v1/webhooks/${id}/rotate-secret`, { grace: 'forever' })).status, 400);

    rx.reply = () => ({ status: 422, body: 'unprocessable' });
    await a.alerting.alerts.raise({ type: 'violation', severity: 'high', message: 'bad', ruleId: 'r1', agentId: 'agt_1', containerId: 'f'.repeat(64), containerName: 'web' });
    const dead = await eventually('dead', async () => {
      const r = await call('GET', `/v1/webhooks/${id}/deliveries?status=dead`);
      return r.json.items.length === 1 ? r.json.items[0] : undefined;
    });
    t.match(dead, { status: 'dead', alertType: 'violation', attempts: 1, lastStatusCode: 422, deadReason: /permanent failure: HTTP 422: unprocessable/, nextAttemptAt: null });
    t.match(dead.attemptLog[0], { attempt: 1, statusCode: 422, outcome: 'failed', latencyMs: Number });
    t.same(rx.received.at(-1)!.verifiedBy, [0, 1], 'both secrets sign during the grace period');

    rx.reply = () => ({ status: 200 });
    const re = await call('POST', `/v1/deliveries/${dead.id}/redeliver`);
    t.equal(re.status, 202, re.text);
    t.equal(re.json.status, 'pending');
    t.equal((await call('POST', `/v1/deliveries/${dead.id}/redeliver`)).json.code, 'BK_ERR_CONFLICT');
    t.equal((await call('POST', '/v1/deliveries/msg_nope/redeliver')).status, 404);
    await eventually('redelivered', async () => (await call('GET', `/v1/webhooks/${id}/deliveries`)).json.items.find((d: { id: string }) => d.id === dead.id).status === 'delivered');
    const page = await call('GET', `/v1/webhooks/${id}/deliveries?limit=1`);
    t.equal(page.json.items.length, 1);
    t.equal(page.json.nextOffset, 1);
    t.equal((await call('GET', `/v1/webhooks/${id}/deliveries?bogus=1`)).status, 400);
  });

  t.test('GET /v1/alerts filters', async (t) => {
    await a.alerting.alerts.raise({ type: 'agent_offline', message: 'down', agentId: 'agt_2' });
    await a.alerting.alerts.raise({ type: 'lockdown_finding', severity: 'low', message: 'socket 0666', agentId: 'agt_2' });
    const all = await call('GET', '/v1/alerts', undefined, viewer.plaintext);
    t.equal(all.status, 200);
    t.ok(all.json.items.length >= 4);
    t.match(all.json.items[0], { type: 'lockdown_finding', severity: 'low', count: 1 }, 'newest first');
    const q = async (s: string) => (await call('GET', `/v1/alerts?${s}`)).json.items.map((x: { type: string }) => x.type);
    t.same(await q('type=agent_offline&type=lockdown_finding'), ['lockdown_finding', 'agent_offline']);
    t.same(await q('severity=high&agent=agt_2'), ['agent_offline']);
    t.same(await q('container=ffffffffffff'), ['violation'], 'container id prefix');
    t.same(await q('container=web'), ['violation'], 'container name');
    t.same(await q('since=1h&agent=agt_2'), ['lockdown_finding', 'agent_offline']);
    t.same(await q(`since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`), []);
    t.equal((await call('GET', '/v1/alerts?since=yesterday')).status, 400);
    t.equal((await call('GET', '/v1/alerts?severity=urgent')).status, 400);
    const p = await call('GET', '/v1/alerts?limit=2');
    t.equal(p.json.items.length, 2);
    t.equal(p.json.nextOffset, 2);
  });

  t.test('delete', async (t) => {
    t.equal((await call('DELETE', `/v1/webhooks/${id}`)).status, 204);
    t.equal((await call('GET', `/v1/webhooks/${id}`)).status, 404);
    t.equal((await call('DELETE', `/v1/webhooks/${id}`)).status, 404);
  });
});

t.test('without alerting the routes answer 503', async (t) => {
  const { server } = await testPki();
  const { store } = await startAlerting().then(async (x) => {
    t.teardown(() => x.close());
    return x;
  });
  const key = generateApiKey('admin', 'admin');
  await store.insertApiKey(key.record);
  const app = await createApiServer({ store, tls: server, logger: createLogger({ name: 't', level: 'silent' }) });
  t.teardown(() => app.close());
  const r = await app.inject({ method: 'GET', url: '/v1/alerts', headers: { authorization: `Bearer ${key.plaintext}` } });
  t.equal(r.statusCode, 503);
  t.equal(r.json().code, 'BK_ERR_NOT_READY');
});
