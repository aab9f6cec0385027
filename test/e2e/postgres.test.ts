// End to end on PostgreSQL: the built `bulkhead-controller` (init, serve, token create,
// audit-log verify) keeps its store in a private PostgreSQL cluster (test/helpers/postgres.ts,
// unix socket only, password authentication, a database owned by a NON-superuser role), an
// agent enrolled against it reports a private Docker engine, and what it reported — agents,
// containers, API keys, the audit chain — survives a controller restart. Real processes
// throughout; nothing of the store is in the data directory.
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LABEL_ARGS, removeLabelledContainers, useEngine, FILE_LABEL } from '../helpers/engine';
import { CONTROLLER_BIN, apiRequest, run, waitFor } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { enrollAgent, startController, tempRoot } from './stack';
import { MIGRATIONS } from '../../packages/controller/src/store/migrations';

interface Container {
  id: string;
  name: string;
  state: string;
  agentId: string;
}

t.test('the controller on PostgreSQL: init, serve, enroll, inventory, restart', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return; // loudly skipped: not root and PostgreSQL not installed (as root that is a failure)
  const db = await pg.createDatabase({ name: 'bulkhead', owner: 'bulkhead' });
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine, FILE_LABEL));
  const root = tempRoot();
  t.teardown(root.cleanup);

  // The URL (with its password) reaches init, serve and token create through the environment,
  // as docs/cli.md#postgresql recommends.
  const env = { BULKHEAD_DATABASE_URL: db.url };
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s', env });
  t.teardown(() => ctl.stop());

  t.notOk(existsSync(join(ctl.dataDir, 'bulkhead.db')), 'no SQLite file in the data directory');
  t.same(readdirSync(ctl.dataDir).filter((f) => f.includes('.db')), []);
  const ready = ctl.daemon.lines.find((l) => l['msg'] === 'controller ready');
  t.same(ready?.['store'], { kind: 'postgres', location: `bulkhead@${pg.dir}/bulkhead` }, 'the ready line names the database');

  // init ran every migration there, as the non-superuser owner.
  const migrations = await pg.query<{ name: string }>('select name from bulkhead_migration order by name', [], db.name);
  t.same(migrations.map((m) => m.name), Object.keys(MIGRATIONS).sort(), 'every migration recorded');
  const owners = await pg.query<{ owner: string }>("select distinct tableowner as owner from pg_tables where schemaname = 'public'", [], db.name);
  t.same(owners, [{ owner: 'bulkhead' }], 'tables belong to the bulkhead role');
  t.equal((await pg.query<{ n: string }>('select count(*)::text as n from api_keys', [], db.name))[0]?.n, '1', 'the admin key is in PostgreSQL');

  // An agent enrolls (token create also goes to PostgreSQL) and reports the engine.
  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent online', async () => (await ctl.get<{ items: { id: string; status: string }[] }>('/v1/agents')).body.items.some((a) => a.id === agent.agentId && a.status === 'online'), 60_000);

  const started = await engine.docker(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--label', 'bk.pg=e2e', '--name', `bk-pg-${process.pid}`, engine.image, 'sleep', '600']);
  t.equal(started.code, 0, started.stderr);
  const id = started.stdout.trim();
  const seen = await waitFor('container in GET /v1/containers', async () => {
    const r = await ctl.get<{ items: Container[] }>('/v1/containers?label=bk.pg=e2e');
    return r.body.items.find((c) => c.id === id && c.state === 'running');
  }, 60_000);
  t.match(seen, { agentId: agent.agentId, name: `bk-pg-${process.pid}` });
  const rows = await pg.query<{ agent_id: string; state: string; removed: number }>('select agent_id, state, removed from containers where id = $1', [id], db.name);
  t.same(rows, [{ agent_id: agent.agentId, state: 'running', removed: 0 }], 'the row is in PostgreSQL');

  // An audited write, through the API.
  const jt = await apiRequest<{ id: string }>(ctl.apiBase, 'POST', '/v1/join-tokens', ctl.caPem, ctl.adminKey, JSON.stringify({ description: 'pg e2e' }));
  t.equal(jt.status, 201);

  // Restart with the agent stopped: what the controller shows now comes from the database only.
  await agent.stop();
  await ctl.restart();
  const afterAgents = await ctl.get<{ items: { id: string }[] }>('/v1/agents');
  t.equal(afterAgents.status, 200, 'the admin key (stored in PostgreSQL) still works');
  t.ok(afterAgents.body.items.some((a) => a.id === agent.agentId), 'the enrolled agent is still known');
  const afterContainers = await ctl.get<{ items: Container[] }>('/v1/containers?label=bk.pg=e2e');
  t.same(afterContainers.body.items.map((c) => c.id), [id], 'the inventory survived the restart');
  const audit = await ctl.get<{ items: { action: string; target: Record<string, string> }[] }>('/v1/audit-log?limit=20');
  t.ok(audit.body.items.some((e) => e.action === 'join-tokens.create' && e.target['joinTokenId'] === jt.body.id), 'the audit trail survived too');

  // The agent reconnects (its certificate is checked against the agent row in PostgreSQL) and reports a change.
  agent.start();
  const stop = await engine.docker(['stop', '-t', '1', id]);
  t.equal(stop.code, 0);
  await waitFor('exited after reconnect', async () => (await ctl.get<{ items: Container[] }>('/v1/containers?label=bk.pg=e2e')).body.items.find((c) => c.id === id && c.state === 'exited'), 60_000);
  t.pass('changes after the restart arrive');

  // The offline verifier reads the chain from PostgreSQL; --database-url on the command line works, with a warning.
  const verify = await run(CONTROLLER_BIN, ['audit-log', 'verify', '--data-dir', ctl.dataDir, '--database-url', db.url, '--json']);
  t.equal(verify.code, 0, `audit-log verify exits 0 (stderr: ${verify.stderr.trim()})`);
  t.match(JSON.parse(verify.stdout), { ok: true, firstBadSeq: null });
  t.ok((JSON.parse(verify.stdout) as { checked: number }).checked >= 1);
  t.match(verify.stderr, /password in --database-url is visible to other local users/);

  // A second controller data directory initialized against the same database: migrations are idempotent.
  const second = await run(CONTROLLER_BIN, ['init', '--data-dir', join(root.dir, 'second'), '--json'], env);
  t.equal(second.code, 0, second.stderr);
  t.equal((await pg.query<{ n: string }>('select count(*)::text as n from bulkhead_migration', [], db.name))[0]?.n, String(Object.keys(MIGRATIONS).length));

  // A wrong password: serve refuses to start, says why, and does not print the password.
  const bad = await run(CONTROLLER_BIN, ['serve', '--data-dir', ctl.dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics'], {
    BULKHEAD_DATABASE_URL: pg.url('bulkhead', 'wrong-password-123', 'bulkhead'),
  });
  t.not(bad.code, 0);
  t.match(bad.stderr + bad.stdout, /BK_ERR_STARTUP_FAILED|cannot connect to PostgreSQL bulkhead@/);
  t.notMatch(bad.stderr + bad.stdout, /wrong-password-123/);

  // Nothing the controller printed holds the database password.
  t.notMatch(ctl.daemon.raw, db.password, 'the password is never logged');
});
