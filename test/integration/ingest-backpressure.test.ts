// The controller's ingest path when the controller or its database cannot keep
// up (issue 16): the built controller as a real process, simulated agents on
// real mutual-TLS streams (the agent's own ControllerLink, via the fleet
// simulator's lib), a real PostgreSQL and a real SQLite.
//
// 1. PostgreSQL briefly unable to take writes (tables locked by another session,
//    the controller's waiting connections terminated, a pool of 2 with a 1 s
//    wait, so queries also time out waiting for a connection): every violation
//    report is stored, every alert is stored (none dropped), and no agent stream
//    is closed — the controller retries in order and keeps the agents' silence
//    watchdogs satisfied while it is behind.
// 2. The controller process stopped (SIGSTOP) for longer than --offline-after
//    while its agents keep sending: no agent is declared offline for the
//    controller's own stall, while an agent that really went silent still is.
// Needs the built packages (`npx tsc -b`), as the other end-to-end tests do.
import t from 'tap';
import { join } from 'node:path';
import { Client } from 'pg';
import { Fleet, apiClient, startController } from '../../bench/lib/fleet-sim';
import { usePostgres } from '../helpers/postgres';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

t.test('PostgreSQL briefly unable to take writes: no alert lost, no stream closed', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const dir = t.testdir();
  const msgs: Record<string, number> = {};
  const controller = await startController({
    dir, databaseUrl: db.url, heartbeatInterval: '1s',
    extraArgs: ['--database-pool-size', '2', '--database-pool-wait', '1s'],
    onLine: (l) => {
      if (typeof l.msg === 'string' && Number(l.level) >= 40) msgs[l.msg] = (msgs[l.msg] ?? 0) + 1;
    },
  });
  t.teardown(() => controller.stop());
  const api = apiClient({ port: controller.apiPort, ca: controller.ca, apiKey: controller.adminApiKey, maxSockets: 2 });
  t.teardown(() => api.close());
  // The agents' default silence watchdog (5 s at a 1 s heartbeat) stays on: the database is held for longer.
  // Enrolled one at a time: enrollment is not what this test is about, and a pool of 2 is small.
  const fleet = new Fleet({ controller, api, agents: 8, containers: 5, stateDir: join(dir, 'agents'), seed: 3, enrollConcurrency: 1 });
  t.teardown(() => fleet.stop());
  await fleet.enrollAll();
  const snap = await fleet.connectAll({ timeoutMs: 60_000 });
  t.equal(snap.stored, 8, 'every snapshot stored');

  const admin = new Client({ connectionString: pg.adminUrl(db.name) });
  await admin.connect();
  t.teardown(() => admin.end());
  // The controller's connections that wait on our locks: terminated, so their queries fail (SQLSTATE 57P01).
  const terminateWaiting = async () =>
    (await admin.query(`SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`, [db.name])).rowCount ?? 0;
  const report = async (n: number, overMs: number) => {
    for (let i = 0; i < n; i++) {
      t.ok(fleet.reportViolation(fleet.hosts[i % fleet.hosts.length]!), 'violation sent on a connected link');
      await sleep(overMs / n);
    }
  };

  const t0 = Date.now();
  await admin.query('BEGIN');
  await admin.query('LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE');
  await report(10, 2000); // stored; their alerts wait on the lock
  let terminated = await terminateWaiting();
  await admin.query('LOCK TABLE violations, agents IN ACCESS EXCLUSIVE MODE');
  await report(10, 2000); // wait on the lock too; the pool (2) is full: the rest time out waiting for a connection
  await sleep(2000);
  terminated += await terminateWaiting();
  await sleep(Math.max(0, 8000 - (Date.now() - t0)));
  await admin.query('COMMIT');
  t.ok(Date.now() - t0 >= 8000, 'the database was unable to take writes for 8 s (longer than the agents\' 5 s silence limit)');
  t.ok(terminated >= 1, `the controller's waiting connections were terminated (${terminated})`);

  t.ok(await fleet.drained(60_000), 'the controller acknowledged every message once the database caught up');
  const ids = fleet.violationIds.map((v) => v.id);
  t.equal(ids.length, 20);
  const stored = await admin.query<{ id: string; alert_pending: number | null }>('SELECT id, alert_pending FROM violations WHERE id = ANY($1)', [ids]);
  t.equal(stored.rowCount, 20, 'every violation report stored');
  // Every violation's alert committed: its mark cleared, and the alerts' counts add up (repeats fold into one alert).
  await until('every alert stored', async () => {
    const r = await admin.query<{ n: string | null }>(`SELECT sum(count) AS n FROM alerts WHERE rule_id = 'no-privileged'`);
    return Number(r.rows[0]?.n ?? 0) >= 20;
  }, 60_000);
  const sum = await admin.query<{ n: string }>(`SELECT sum(count) AS n FROM alerts WHERE rule_id = 'no-privileged'`);
  t.equal(Number(sum.rows[0]!.n), 20, 'one alert occurrence per violation: none lost, none twice');
  const pending = await admin.query('SELECT id FROM violations WHERE alert_pending = 1');
  t.equal(pending.rowCount, 0, 'no violation left waiting for its alert');

  t.equal(fleet.counts.linkDowns, 0, `no agent stream was closed (${JSON.stringify(fleet.linkErrors)})`);
  t.equal(fleet.counts.reconnects, 0, 'no agent reconnected (no snapshot re-sent)');
  const busy = Object.entries(msgs).filter(([m]) => /the store is busy, retrying/.test(m)).reduce((n, [, c]) => n + c, 0);
  // Whether an agent message itself met the lock, a terminated connection or a full pool depends on
  // which queries are waiting at the moment the test terminates them (0 or 1 of the 20 in runs on a
  // loaded machine): reported, not required. What is required is above and below: nothing lost,
  // no stream closed, and the alert batches that did fail were retried.
  t.comment(`agent messages retried while the database was busy: ${busy}`);
  t.ok((msgs['storing alerts failed for now: retrying (not dropped)'] ?? 0) > 0, 'alert batches were retried');
  t.notOk(msgs['applying agent message failed'], 'no agent message failed');
  t.notOk(msgs['raising an alert failed'], 'no alert failed');
  t.notOk(msgs['agent offline: heartbeats stopped'], 'no agent declared offline');
  const offline = await admin.query(`SELECT id FROM alerts WHERE type = 'agent_offline'`);
  t.equal(offline.rowCount, 0, 'no agent_offline alert');
});

t.test('controller stalled longer than --offline-after: live agents stay online, a silent one goes offline', async (t) => {
  const dir = t.testdir();
  const lines: Record<string, unknown>[] = [];
  const controller = await startController({
    dir, heartbeatInterval: '1s', offlineAfter: '3s',
    onLine: (l) => {
      if (Number(l.level) >= 40) lines.push(l);
    },
  });
  t.teardown(() => controller.stop());
  const api = apiClient({ port: controller.apiPort, ca: controller.ca, apiKey: controller.adminApiKey, maxSockets: 2 });
  t.teardown(() => api.close());
  // The agents keep their streams through the stall (a silence watchdog longer than it), as behind a long GC pause.
  const fleet = new Fleet({ controller, api, agents: 6, containers: 5, stateDir: join(dir, 'agents'), seed: 5, linkOptions: { minSilenceMs: 60_000 } });
  t.teardown(() => fleet.stop());
  await fleet.enrollAll();
  t.equal((await fleet.connectAll({ timeoutMs: 60_000 })).stored, 6, 'every snapshot stored');
  await sleep(2000);

  // One agent goes silent on a live stream: its heartbeat timer stops (a hung host), the connection stays.
  const silent = fleet.hosts[0]!;
  const hb = (silent.link as unknown as { heartbeat?: NodeJS.Timeout }).heartbeat;
  t.ok(hb, 'ControllerLink keeps its heartbeat timer in `heartbeat` (else update this test)');
  clearInterval(hb);
  const stallStart = Date.now();
  process.kill(controller.pid!, 'SIGSTOP');
  try {
    await sleep(7000); // > 2 × offline-after; the agents keep heartbeating into their streams
  } finally {
    process.kill(controller.pid!, 'SIGCONT');
  }
  t.ok(Date.now() - stallStart >= 7000, 'the controller was stopped for 7 s (offline-after 3 s)');

  // The silent agent: declared offline once the grace after the stall is over.
  await until('the silent agent declared offline', async () => (await api.all(`/v1/alerts?type=agent_offline`)).some((a) => a.agentId === silent.agentId), 30_000);
  await sleep(2000); // a few more sweeps
  const offlineIds = lines.filter((l) => l.msg === 'agent offline: heartbeats stopped').map((l) => l.agentId);
  t.same(offlineIds, [silent.agentId], 'only the silent agent was declared offline');
  const alerts = await api.all('/v1/alerts?type=agent_offline');
  t.same(alerts.map((a) => a.agentId), [silent.agentId], 'one agent_offline alert: the silent agent\'s');
  t.ok(lines.some((l) => l.msg === 'the controller was stalled: no agent is marked offline until every agent had one offline-after period to be heard'), 'the stall was noticed');
  const agents: { id: string; status: string }[] = (await api.get('/v1/agents')).json.items;
  for (const h of fleet.hosts.slice(1)) {
    t.equal(agents.find((a) => a.id === h.agentId)?.status, 'online', `${h.hostname} online`);
    t.equal(h.link.state, 'connected', `${h.hostname} kept its stream`);
  }
  t.ok(await fleet.drained(30_000), 'everything the live agents sent was acknowledged');
});
