// `bulkhead webhooks …`, `bulkhead deliveries redeliver`, `bulkhead alerts`
// against the real HTTPS API with real delivery workers and a real receiver.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@bulkhead/shared';
import { createApiServer } from '../../src/api/server';
import { generateApiKey } from '../../src/api/api-keys';
import { main, type OpsCliIo } from '../../../cli/src/main';
import { testPki } from '../api/fixtures/api-server';
import { Receiver } from './fixtures/receiver';
import { eventually, startAlerting } from './fixtures/alerting';

t.test('webhooks, deliveries and alerts commands', async (t) => {
  const a = await startAlerting({ options: { retrySchedule: '100ms' } });
  const rx = await Receiver.start();
  const { ca, server } = await testPki();
  const caFile = join(a.dir, 'ca.crt');
  writeFileSync(caFile, ca.certPem);
  const admin = generateApiKey('admin', 'admin');
  const viewer = generateApiKey('viewer', 'viewer');
  await a.store.insertApiKey(admin.record);
  await a.store.insertApiKey(viewer.record);
  const app = await createApiServer({ store: a.store, tls: server, logger: createLogger({ name: 't', level: 'silent' }), alerting: a.alerting });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    await a.close();
    await rx.close();
  });
  const env = { BULKHEAD_API: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`, BULKHEAD_CA: caFile, BULKHEAD_API_KEY: admin.plaintext };
  const run = async (argv: string[], e: Record<string, string> = env) => {
    let out = '';
    let err = '';
    const io: Partial<OpsCliIo> = { out: (s) => void (out += s), err: (s) => void (err += s), env: e };
    const code = await main(argv, io);
    return { code, out, err };
  };

  const add = await run(['webhooks', 'add', '--url', rx.url, '--name', 'siem', '--min-severity', 'medium', '--type', 'violation', '--type', 'action_failed', '--header', 'Authorization: Bearer tok']);
  t.equal(add.code, 0, add.err);
  const id = /^ID:\s+(wh_[0-9a-f]{16})$/m.exec(add.out)?.[1];
  const secret = /^Secret:\s+(whsec_\S+)$/m.exec(add.out)?.[1];
  t.ok(id && secret, 'add prints the id and the secret');
  t.match(add.out, /shown only now/);
  rx.secrets = [secret!];

  const list = await run(['webhooks']);
  t.equal(list.code, 0, list.err);
  t.match(list.out, /^ID\s+NAME\s+FORMAT\s+URL\s+FILTER\s+ENABLED\s+PENDING\s+DELIVERED\s+DEAD$/m);
  t.match(list.out, new RegExp(`^${id}\\s+siem\\s+json\\s+http://127\\.0\\.0\\.1:\\d+/hook\\s+>=medium types=violation,action_failed\\s+yes\\s+0\\s+0\\s+0$`, 'm'));
  t.notMatch(list.out, secret!.slice(6));

  const get = await run(['webhooks', 'get', id!]);
  t.match(get.out, /^Headers:\s+authorization$/m);
  t.notMatch(get.out, 'tok');
  t.notMatch((await run(['--json', 'webhooks', 'get', id!])).out, secret!.slice(6));

  const test = await run(['webhooks', 'test', id!]);
  t.equal(test.code, 0, test.err);
  t.match(test.out, /^DELIVERY\s+ALERT\s+STATUS\s+ATTEMPT\s+TIME\s+CODE\s+LATENCY\s+RESULT\s+NEXT TRY$/m);
  t.match(test.out, /msg_\S+\s+test\s+delivered\s+1\s+\S+ ago\s+204\s+\d+ms\s+delivered\s+-/);
  t.same(rx.received[0]!.verifiedBy, [0]);

  const upd = await run(['webhooks', 'update', id!, '--min-severity', 'high', '--all-types']);
  t.equal(upd.code, 0, upd.err);
  t.match(upd.out, /^Min severity:\s+high$/m);
  t.match(upd.out, /^Types:\s+\(all\)$/m);
  t.equal((await run(['webhooks', 'update', id!])).code, 2, 'nothing to change is a usage error');
  t.equal((await run(['webhooks', 'update', id!, '--enable', '--disable'])).code, 2);
  t.equal((await run(['webhooks', 'add', '--url', rx.url, '--header', 'nocolon'])).code, 2);
  t.equal((await run(['webhooks', 'add', '--url', rx.url, '--type', 'bogus'])).code, 2);

  const unsafe = await run(['webhooks', 'add', '--url', 'http://169.254.169.254/latest']);
  t.equal(unsafe.code, 1);
  t.match(unsafe.err, /BK_ERR_WEBHOOK_UNSAFE_TARGET: refusing webhook target http:\/\/169\.254\.169\.254.*\(HTTP 400\)/);

  const denied = await run(['webhooks', 'remove', id!], { ...env, BULKHEAD_API_KEY: viewer.plaintext });
  t.equal(denied.code, 1);
  t.match(denied.err, /BK_ERR_FORBIDDEN/);

  // A delivery that fails permanently, then is redelivered.
  rx.reply = () => ({ status: 400, body: 'nope' });
  await a.alerting.alerts.raise({ type: 'action_failed', message: 'kill failed', ruleId: 'r1', agentId: 'agt_1', host: 'web-1', containerName: 'api' });
  await eventually('dead', async () => (await a.store.alerts!.listDeliveries({ endpointId: id!, status: 'dead' })).length === 1);
  const log = await run(['webhooks', 'deliveries', id!, '--status', 'dead']);
  t.equal(log.code, 0, log.err);
  t.match(log.out, /msg_\S+\s+action_failed\s+dead\s+1\s+\S+ ago\s+400\s+\d+ms\s+HTTP 400: nope\s+-/);
  t.match(log.out, /Dead-lettered \(bulkhead deliveries redeliver ID\):\n {2}msg_\S+: permanent failure: HTTP 400: nope/);
  const msgId = /(msg_[0-9A-Z]{26})/.exec(log.out)![1]!;
  rx.reply = () => ({ status: 204 });
  const re = await run(['deliveries', 'redeliver', msgId]);
  t.equal(re.code, 0, re.err);
  t.match(re.out, `requeued ${msgId}`);
  await eventually('redelivered', async () => (await a.store.alerts!.getDelivery(msgId))?.status === 'delivered');
  const again = await run(['deliveries', 'redeliver', msgId]);
  t.equal(again.code, 1);
  t.match(again.err, /BK_ERR_CONFLICT/);

  const rot = await run(['webhooks', 'rotate-secret', id!, '--grace', '1h']);
  t.equal(rot.code, 0, rot.err);
  t.match(rot.out, /^New secret:\s+whsec_\S+$/m);
  t.match(rot.out, /the old secret also signs until /);
  t.equal((await run(['webhooks', 'rotate-secret', id!, '--grace', 'soon'])).code, 2);

  const alerts = await run(['alerts', '--severity', 'high']);
  t.equal(alerts.code, 0, alerts.err);
  t.match(alerts.out, /^LAST SEEN\s+SEVERITY\s+TYPE\s+COUNT\s+HOST\s+CONTAINER\s+RULE\s+MESSAGE$/m);
  t.match(alerts.out, /\S+ ago\s+high\s+action_failed\s+1\s+web-1\s+api\s+r1\s+kill failed/);
  t.notMatch(alerts.out, /\btest\b/, 'info test alert filtered out by --severity high');
  const j = JSON.parse((await run(['--json', 'alerts', '--type', 'test', '--since', '1h'])).out) as { items: Array<{ type: string }> };
  t.same(j.items.map((x) => x.type), ['test']);
  t.equal((await run(['alerts', '--since', 'last tuesday'])).code, 2);

  const rm = await run(['webhooks', 'remove', id!]);
  t.equal(rm.code, 0, rm.err);
  t.equal(rm.out, `removed ${id}\n`);
  t.equal((await run(['webhooks'])).out, 'no webhooks\n');
});
