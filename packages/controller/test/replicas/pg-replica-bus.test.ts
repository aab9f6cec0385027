// The replicas' notification bus on a real, private PostgreSQL (test/helpers/postgres.ts):
// a message published by one replica reaches the others (and itself); a payload PostgreSQL
// would refuse is refused before sending; a listening connection the server drops
// (pg_terminate_backend, as a database restart or failover would) is reconnected, the
// replica is told (so it reloads what it may have missed), and messages flow again.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createLogger } from '@bulkhead/shared';
import { APPLICATION_NAME, PgReplicaBus } from '../../src/replicas/pg-replica-bus';
import type { ReplicaMessage } from '../../src/replicas/replica-bus';
import { usePostgres } from '../../../../test/helpers/postgres';
import { waitFor } from '../../../../test/helpers/processes';

const silent = createLogger({ name: 'test', level: 'silent' });

t.test('PgReplicaBus: publish, refuse oversize, reconnect after the server drops the connection', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const secret = randomBytes(32);
  const one = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret });
  const two = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret });
  t.teardown(async () => (await one.close(), await two.close()));
  t.not(one.replicaId, two.replicaId);
  const got: Array<[string, ReplicaMessage]> = [];
  one.subscribe((m) => got.push(['one', m]));
  two.subscribe((m) => got.push(['two', m]));

  await one.publish({ t: 'revoke', from: one.replicaId, agentId: 'agt_1' });
  await waitFor('both heard it', async () => got.length === 2, 3000);
  t.same(got.map(([who]) => who).sort(), ['one', 'two'], 'every replica hears every message, the sender too');
  t.same(got[0]![1], { t: 'revoke', from: one.replicaId, agentId: 'agt_1' });

  await t.rejects(one.publish({ t: 'cmd-result', to: 'x', id: 'y', error: { code: 'BK_ERR_INTERNAL', message: 'x'.repeat(9000) } }), { code: 'BK_ERR_INTERNAL', message: /at most 7900/ });

  let reconnected = 0;
  one.onReconnect(() => reconnected++);
  two.onReconnect(() => reconnected++);
  const killed = await pg.query<{ ok: boolean }>('select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = $1 and application_name = $2', [db.name, APPLICATION_NAME]);
  t.equal(killed.length, 2, 'both listening connections terminated by the server');
  // Until it is back, a publish is refused with a clear error (a forwarded command fails fast).
  const refused = await waitFor('a publish while down is refused', async () =>
    two.publish({ t: 'policy', from: two.replicaId }).then(() => undefined, (e: { code?: string }) => (e.code === 'BK_ERR_CONTROLLER_UNAVAILABLE' ? e : undefined)), 2000, 20);
  t.match(refused, { code: 'BK_ERR_CONTROLLER_UNAVAILABLE', message: /not connected to the other replicas/ });
  await waitFor('both reconnected', async () => reconnected === 2, 8000);
  got.length = 0;
  await two.publish({ t: 'policy', from: two.replicaId });
  await waitFor('heard again after the reconnect', async () => got.length === 2, 3000);
  t.pass('messages flow again');
});
