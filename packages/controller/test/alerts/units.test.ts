// Pure pieces of alerting: signing (against the reference library), retry
// schedule and Retry-After, options, SSRF address checks, URL redaction,
// violation → alert mapping.
import t from 'tap';
import { Webhook } from 'standardwebhooks';
import { checkSecret, generateSecret, secretKey, signV1, signatureHeader } from '../../src/alerts/webhook-secret';
import { parseRetryAfter, resolveAlertOptions, retryDelayMs, alertOptionsFromEnv } from '../../src/alerts/alert-options';
import { unsafeAddressReason, unsafeHostReason, checkTargetOnSave, parseWebhookUrl } from '../../src/alerts/webhook-target';
import { redactUrl } from '../../src/alerts/alert-dto';
import { alertFromViolation } from '../../src/alerts/violation-alerts';
import { endpointMatches } from '../../src/alerts/alert-service';
import { checkHeaders } from '../../src/alerts/webhook-service';
import { ulid } from '../../src/alerts/ids';
import { WorkSignal } from '../../src/alerts/work-signal';
import { createLogger, type ViolationReport__Output } from '@bulkhead/shared';
import { CertExpiryWatch } from '../../src/alerts/cert-expiry-watch';
import { startAlerting } from './fixtures/alerting';
import type { WebhookEndpointRecord } from '../../src/alerts/alert-store';

t.test('signatures match the Standard Webhooks reference implementation', async (t) => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
  const ts = 1614265330;
  const body = '{"test": 2432232314}';
  // The spec's own example vector.
  t.equal(signV1(secretKey(secret), id, ts, body), 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  t.equal(signV1(secretKey(secret), id, ts, body), new Webhook(secret).sign(id, new Date(ts * 1000), body));
  const other = generateSecret();
  const header = signatureHeader([secretKey(secret), secretKey(other)], id, ts, body);
  t.equal(header.split(' ').length, 2);
  t.match(generateSecret(), /^whsec_[A-Za-z0-9+/]{43}=$/);
  t.equal(secretKey(generateSecret()).length, 32);
  t.throws(() => checkSecret('whsec_' + Buffer.alloc(8).toString('base64')), { code: 'BK_ERR_BAD_REQUEST' }, 'too short');
  t.throws(() => checkSecret('whsec_not*base64*at*all*but*long*enough*xx'), { code: 'BK_ERR_BAD_REQUEST' });
  t.throws(() => checkSecret('sk_abc'), { code: 'BK_ERR_BAD_REQUEST' });
  t.equal(checkSecret(secret), secret);
});

t.test('retry schedule, jitter and Retry-After', async (t) => {
  const s = [5000, 300_000];
  t.equal(retryDelayMs(s, 1, 0), 5000);
  t.equal(retryDelayMs(s, 2, 0), 300_000);
  t.equal(retryDelayMs(s, 3, 0), undefined, 'exhausted');
  t.equal(retryDelayMs(s, 1, 0.2, () => 0), 4000, '-20 %');
  t.equal(retryDelayMs(s, 1, 0.2, () => 1), 6000, '+20 %');
  const now = new Date('2026-01-01T00:00:00Z');
  t.equal(parseRetryAfter('120', now), 120_000);
  t.equal(parseRetryAfter(['7'], now), 7000);
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
  t.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0, 'a past date means now');
  t.equal(parseRetryAfter('soon', now), undefined);
  t.equal(parseRetryAfter('-5', now), undefined);
  t.equal(parseRetryAfter(undefined, now), undefined);
});

t.test('options: defaults, env, invalid combinations', async (t) => {
  const d = resolveAlertOptions();
  t.match(d, { groupWindowMs: 300_000, workers: 4, batchSize: 64, perEndpoint: 8, timeoutMs: 10_000, jitter: 0.2, leaseMs: 30_000, pollIntervalMs: 1000 });
  t.same(d.retryScheduleMs, [5000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
  const e = resolveAlertOptions(alertOptionsFromEnv({ BULKHEAD_WEBHOOK_RETRY_SCHEDULE: '1s, 2s', BULKHEAD_WEBHOOK_WORKERS: '2', BULKHEAD_WEBHOOK_TIMEOUT: '500ms', BULKHEAD_ALERT_GROUP_WINDOW: '1m', BULKHEAD_WEBHOOK_JITTER: '' }));
  t.match(e, { retryScheduleMs: [1000, 2000], workers: 2, timeoutMs: 500, leaseMs: 20_500, groupWindowMs: 60_000, jitter: 0.2 });
  t.throws(() => resolveAlertOptions({ lease: '5s', timeout: '10s' }), { code: 'BK_ERR_CONFIG_INVALID', message: /lease .* must be longer than the webhook timeout/ });
  t.throws(() => resolveAlertOptions({ workers: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveAlertOptions({ jitter: 1 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveAlertOptions({ retrySchedule: '5s,soon' }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.same(resolveAlertOptions({ retrySchedule: '' }).retryScheduleMs, [], 'an empty schedule means one attempt');
});

t.test('unsafe addresses and hosts', async (t) => {
  for (const a of ['169.254.169.254', '169.254.0.1', 'fe80::1', 'FE80::abcd', 'fd00:ec2::254', '::ffff:169.254.169.254', '100.100.100.200']) t.ok(unsafeAddressReason(a), `${a} unsafe`);
  for (const a of ['127.0.0.1', '10.0.0.1', '192.168.1.1', '::1', 'fd00:ec2::253', '8.8.8.8', 'not-an-ip']) t.notOk(unsafeAddressReason(a), `${a} fine`);
  t.match(unsafeAddressReason('169.254.169.254'), /cloud metadata address/);
  t.match(unsafeAddressReason('169.254.1.1'), /link-local address/);
  t.ok(unsafeHostReason('metadata.google.internal.'));
  t.ok(unsafeHostReason('[fe80::1]'));
  t.notOk(unsafeHostReason('example.com'));
  // Unresolvable names are accepted on save (checked again at delivery).
  await checkTargetOnSave(parseWebhookUrl('https://nowhere.invalid/x'), false, async () => {
    throw new Error('ENOTFOUND');
  });
  await t.rejects(checkTargetOnSave(parseWebhookUrl('https://two.example/x'), false, async () => ['10.0.0.1', 'fe80::2']), { code: 'BK_ERR_WEBHOOK_UNSAFE_TARGET' }, 'any unsafe address refuses');
});

t.test('URL redaction for GET responses', async (t) => {
  t.equal(redactUrl('https://hooks.slack.com/services/T0/B0/SECRETTOKEN', 'slack'), 'https://hooks.slack.com/services/T0/B0/redacted');
  t.equal(redactUrl('https://user:pass@siem.example/h?token=abc&x=1', 'json'), 'https://user:redacted@siem.example/h?token=redacted&x=redacted');
  t.equal(redactUrl('https://siem.example/hooks/bulkhead', 'json'), 'https://siem.example/hooks/bulkhead');
});

t.test('custom headers are validated', async (t) => {
  t.same(checkHeaders({ 'X-Team': 'a', Authorization: 'Bearer x' }), { 'x-team': 'a', authorization: 'Bearer x' });
  const bad: Array<Record<string, string>> = [{ Host: 'x' }, { 'Content-Length': '1' }, { 'Webhook-Signature': 'v1,x' }, { 'bad name': 'x' }, { 'x-a': 'a\nb' }, { 'Proxy-Authorization': 'x' }, { 'X-A': '1', 'x-a': '2' }];
  for (const h of bad) {
    t.throws(() => checkHeaders(h), { code: 'BK_ERR_BAD_REQUEST' }, JSON.stringify(h));
  }
});

t.test('endpoint filters', async (t) => {
  const e = (o: Partial<WebhookEndpointRecord>): WebhookEndpointRecord => ({ id: 'wh', name: '', url: 'http://x', format: 'json', minSeverity: 'info', types: [], projects: [], secret: '', previousSecret: null, previousSecretExpiresAt: null, headers: {}, enabled: true, allowUnsafeTarget: false, disabledReason: null, createdAt: new Date(), updatedAt: new Date(), ...o });
  const a = { type: 'violation' as const, severity: 'medium' as const, project: 'shop' };
  t.ok(endpointMatches(e({}), a));
  t.notOk(endpointMatches(e({ enabled: false }), a));
  t.notOk(endpointMatches(e({ minSeverity: 'high' }), a));
  t.ok(endpointMatches(e({ minSeverity: 'medium' }), a));
  t.notOk(endpointMatches(e({ types: ['action'] }), a));
  t.ok(endpointMatches(e({ projects: ['shop'] }), a));
  t.notOk(endpointMatches(e({ projects: ['shop'] }), { ...a, project: null }), 'a project filter excludes alerts without a project');
  t.notOk(endpointMatches(e({}), { ...a, type: 'test' }), 'test alerts never match filters');
});

t.test('violation reports become one alert each', async (t) => {
  const r = (o: Partial<ViolationReport__Output>): ViolationReport__Output => ({ id: 'v1', containerId: 'c1', containerName: '/web', imageRef: 'nginx:1', project: 'shop', ruleId: 'host.privileged', severity: 'high', mode: 'enforce', source: 'reaction', message: 'privileged', evidenceJson: '[]', denied: false, action: null, atMs: 1_700_000_000_000, policyVersion: 3, exemptedBy: '', ...o });
  t.match(alertFromViolation('agt_1', 'web-1', r({ mode: 'monitor' })), { type: 'violation', severity: 'high', agentId: 'agt_1', host: 'web-1', containerId: 'c1', containerName: '/web', image: 'nginx:1', project: 'shop', ruleId: 'host.privileged', time: new Date(1_700_000_000_000) });
  t.match(alertFromViolation('agt_1', 'web-1', r({ denied: true, source: 'authz' })), { type: 'authz_denied', action: 'deny' });
  t.match(alertFromViolation('agt_1', 'web-1', r({ action: { type: 'kill', result: 'ok', error: '', durationMs: 40, detail: '' } })), { type: 'action', action: 'kill', result: 'ok' });
  t.match(alertFromViolation('agt_1', 'web-1', r({ severity: 'low', action: { type: 'stop', result: 'failed', error: 'no such container', durationMs: 0, detail: '' } })), { type: 'action_failed', severity: 'high', message: /stop failed: no such container/ });
  t.match(alertFromViolation('agt_1', 'web-1', r({ action: { type: 'alert', result: 'ok', error: '', durationMs: 0, detail: '' } })), { type: 'violation' }, 'an alert-only action is a violation');
  t.equal(alertFromViolation('agt_1', 'web-1', r({ exemptedBy: 'alice: migration' })), undefined, 'exempted: no alert');
  t.notOk('severity' in alertFromViolation('agt_1', undefined, r({ severity: 'weird' }))!, 'unknown severities fall back to the type default');
});

t.test('ids sort by time; the work signal does not miss an early notify', async (t) => {
  t.ok(ulid(1000) < ulid(2000));
  t.match(ulid(), /^[0-9A-HJKMNP-TV-Z]{26}$/);
  const s = new WorkSignal();
  const gen = s.generation;
  s.notify();
  const t0 = Date.now();
  await s.wait(5000, gen);
  t.ok(Date.now() - t0 < 100, 'a notify before wait() still wakes it');
  const w = s.wait(5000);
  setTimeout(() => s.notify(), 10);
  await w;
  t.ok(Date.now() - t0 < 1000);
});

t.test('certificates near expiry raise cert_expiring once a day', async (t) => {
  const a = await startAlerting({ deliver: false });
  t.teardown(() => a.close());
  let now = new Date('2026-06-01T00:00:00Z');
  const day = 86_400_000;
  const agent = (id: string, daysLeft: number, status = 'online') => ({ id, hostname: id.replace('agt_', 'host-'), status, certSerial: id + 'serial', certNotAfter: new Date(now.getTime() + daysLeft * day) }) as never;
  const agents = [agent('agt_soon', 10), agent('agt_later', 60), agent('agt_gone', -1), agent('agt_revoked', 1, 'revoked')];
  const w = new CertExpiryWatch({ agents: { listAgents: async () => agents }, store: a.store.alerts!, alerts: a.alerting.alerts, logger: createLogger({ name: 't', level: 'silent' }), now: () => now });
  t.same((await w.check()).sort(), ['agt_gone', 'agt_soon']);
  t.same(await w.check(), [], 'not again the same day');
  now = new Date(now.getTime() + day + 1000);
  t.same((await w.check()).sort(), ['agt_gone', 'agt_soon'], 'a daily reminder');
  const alerts = await a.store.alerts!.listAlerts({ types: ['cert_expiring'] });
  t.equal(alerts.length, 4);
  t.match(alerts.find((x) => x.agentId === 'agt_gone'), { severity: 'high', message: /expired at/ });
  t.match(alerts.find((x) => x.agentId === 'agt_soon'), { severity: 'medium', message: /expires in \d days/ });
});

