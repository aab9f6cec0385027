// What an attacker review of the replicas found, each checked on a real, private PostgreSQL
// (test/helpers/postgres.ts): forged notifications (any role that may connect can NOTIFY)
// are refused; a stalled listening connection neither crashes the process (a remote command
// pending on it) nor stays stalled (replaced); crafted values (an unknown error code, an
// accept-by time that is no time) neither crash nor hang; a result too large for one
// notification is shortened, not lost; an agent a stalled replica's peer marked offline is
// set online again by the replica still serving its stream.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { createLogger, type CommandResult__Output } from '@bulkhead/shared';
import { APPLICATION_NAME, PgReplicaBus, REPLICA_CHANNEL, busKey, signMessage } from '../../src/replicas/pg-replica-bus';
import type { ReplicaMessage } from '../../src/replicas/replica-bus';
import { RemoteCommands, fitResult } from '../../src/replicas/remote-commands';
import { openStore } from '../../src/store/open-store';
import { usePostgres } from '../../../../test/helpers/postgres';
import { waitFor } from '../../../../test/helpers/processes';

const silent = createLogger({ name: 'test', level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('forged, stale, unsigned and malformed notifications are refused; signed ones pass', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const secret = randomBytes(32);
  const bus = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret, replicaId: 'rep_B' });
  const ran: string[] = [];
  const remote = new RemoteCommands({
    bus, logger: silent, lease: async () => undefined,
    local: async (_agentId, cmd) => (ran.push(cmd.id!), { id: cmd.id!, ok: true, detail: 'done', error: '', state: 'exited', durationMs: 1 }),
  });
  const got: ReplicaMessage[] = [];
  bus.subscribe((m) => got.push(m));
  // Another role with CONNECT only: it may LISTEN and NOTIFY on any channel.
  await pg.query(`CREATE ROLE reporting LOGIN PASSWORD 'rpw'`);
  await pg.query(`GRANT CONNECT ON DATABASE ${db.name} TO reporting`);
  const evil = new Client({ connectionString: pg.url('reporting', 'rpw', db.name) });
  await evil.connect();
  t.teardown(async () => (remote.close(), await bus.close(), await evil.end()));
  const notify = (payload: string) => evil.query('SELECT pg_notify($1, $2)', [REPLICA_CHANNEL, payload]);
  const cmd = (id: string, acceptBy: unknown = Date.now() + 60_000) => ({ t: 'cmd', to: 'rep_B', from: 'rep_evil', agentId: 'agt_victim', cmd: { id, containerId: 'prod-db', action: 'kill', deadlineMs: Date.now() + 60_000 }, acceptBy });

  await notify(JSON.stringify(cmd('forged-unsigned')));
  await notify(JSON.stringify({ t: 'revoke', from: 'rep_evil', agentId: 'agt_victim' }));
  await notify(JSON.stringify({ t: 'policy', from: 'rep_evil' }));
  await notify(signMessage(busKey(randomBytes(32)), cmd('forged-other-key') as ReplicaMessage, Date.now()));
  // The raw secret as the key (not the derived one): refused too.
  await notify(signMessage(secret, cmd('forged-raw-key') as ReplicaMessage, Date.now()));
  // Right key, but stale (a replay of an old message).
  await notify(signMessage(busKey(secret), cmd('stale') as ReplicaMessage, Date.now() - 120_000));
  // Right key, malformed: no accept-by time, one that is no time, a string where a number belongs.
  await notify(signMessage(busKey(secret), { ...cmd('no-accept-by'), acceptBy: undefined } as unknown as ReplicaMessage, Date.now()));
  await notify(signMessage(busKey(secret), cmd('huge-accept-by', 9e300) as ReplicaMessage, Date.now()));
  await notify(signMessage(busKey(secret), cmd('string-accept-by', '9e15') as ReplicaMessage, Date.now()));
  // A signature cut or changed by one character.
  const good = signMessage(busKey(secret), cmd('tampered') as ReplicaMessage, Date.now());
  await notify(good.replace('agt_victim', 'agt_victin'));
  // And one correctly signed message, last: once it arrived, everything before it was handled.
  await notify(signMessage(busKey(secret), { t: 'policy', from: 'rep_A' }, Date.now()));
  await waitFor('the signed message', async () => got.length > 0, 3000);
  await sleep(100);
  t.same(got, [{ t: 'policy', from: 'rep_A' }], 'only the signed, fresh, well-formed message reached the listeners');
  t.same(ran, [], 'no forged command ran');

  // A correctly signed command from a replica runs (the path the forgeries tried).
  await bus.publish(cmd('real') as ReplicaMessage);
  await waitFor('the signed command ran', async () => ran.length === 1, 3000);
  t.same(ran, ['real']);
});

t.test('a stalled listening connection: the pending remote command settles, the process lives, the connection is replaced', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const bus = await PgReplicaBus.connect({ connectionString: db.url, logger: createLogger({ name: 'stall', level: process.env['HAFIX_DEBUG'] ? 'debug' : 'silent' }), secret: randomBytes(32), replicaId: 'rep_A', queryTimeoutMs: 1500, livenessMs: 500 });
  let unhandled: unknown;
  const onUnhandled = (err: unknown) => (unhandled = err);
  process.on('unhandledRejection', onUnhandled);
  let stopped: number | undefined;
  t.teardown(async () => {
    if (stopped) process.kill(stopped, 'SIGCONT');
    process.off('unhandledRejection', onUnhandled);
    await bus.close();
  });
  let reconnected = 0;
  bus.onReconnect(() => reconnected++);
  const remote = new RemoteCommands({
    bus, logger: silent, acceptMs: 300,
    lease: async () => ({ owner: 'rep_B', expiresAt: new Date(Date.now() + 15_000) }),
    local: async () => {
      throw new Error('not here');
    },
  });
  t.teardown(() => remote.close());
  const [row] = await pg.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1 and application_name = $2', [db.name, APPLICATION_NAME]);
  stopped = row!.pid;
  process.kill(stopped, 'SIGSTOP'); // a network black hole: the connection neither answers nor drops
  const t0 = Date.now();
  const err = await remote.send('agt_1', { id: 'cmd_stall', containerId: 'c', action: 'stop', deadlineMs: Date.now() + 30_000 }).then(
    () => undefined,
    (e: { code?: string; message?: string }) => e,
  );
  t.ok(err, 'the command was refused, not run');
  t.match(err, { code: /^BK_ERR_(ACTION_UNCONFIRMED|CONTROLLER_UNAVAILABLE)$/ }, 'an answer the caller can act on');
  t.notMatch(err?.message ?? '', /timeout|Query read/i, 'no database error text in the answer');
  t.ok(Date.now() - t0 < 5000, 'settled within a few seconds');
  await waitFor('the stalled connection replaced', async () => reconnected > 0, 8000);
  await sleep(2000); // the publish's own timeout fires after the answer: still no crash
  t.equal(unhandled, undefined, 'no unhandled rejection (it would end the replica)');
  process.kill(stopped, 'SIGCONT');
  stopped = undefined;
  const heard: ReplicaMessage[] = [];
  bus.subscribe((m) => heard.push(m));
  const t1 = Date.now();
  await waitFor('messages flow on the new connection', async () => {
    if (heard.length > 0) return true;
    await bus.publish({ t: 'policy', from: 'rep_A' }).catch(() => undefined);
    await sleep(300);
    return heard.length > 0;
  }, 20_000, 10);
  t.comment(`heard after ${Date.now() - t1} ms`);
  t.pass('the bus works again');
});

t.test('crafted values from a replica neither crash nor hang; large results are shortened by bytes', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const secret = randomBytes(32);
  const a = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret, replicaId: 'rep_A' });
  const b = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret, replicaId: 'rep_B' });
  let unhandled: unknown;
  const onUnhandled = (err: unknown) => (unhandled = err);
  process.on('unhandledRejection', onUnhandled);
  let answer: () => Promise<CommandResult__Output> = () => Promise.reject(new Error('unset'));
  const holder = new RemoteCommands({ bus: b, logger: silent, lease: async () => undefined, local: () => answer() });
  const caller = new RemoteCommands({ bus: a, logger: silent, lease: async () => ({ owner: 'rep_B', expiresAt: new Date(Date.now() + 15_000) }), local: () => Promise.reject(new Error('x')) });
  t.teardown(async () => {
    process.off('unhandledRejection', onUnhandled);
    holder.close();
    caller.close();
    await a.close();
    await b.close();
  });
  const send = (id: string) => caller.send('agt_1', { id, containerId: 'c', action: 'stop', deadlineMs: Date.now() + 10_000 });

  // An error code this version does not know: reported as internal, the call settles.
  // The holder's agent does not answer; the result comes by hand (as a replica of another version would send it).
  answer = () => new Promise(() => undefined);
  const bogus = caller.send('agt_1', { id: 'cmd_code', containerId: 'c', action: 'stop', deadlineMs: Date.now() + 10_000 });
  await sleep(300);
  await a.publish({ t: 'cmd-result', to: 'rep_A', id: 'cmd_code', error: { code: 'BK_ERR_FROM_THE_FUTURE', message: 'newer replica' } });
  await t.rejects(bogus, { code: 'BK_ERR_INTERNAL', message: 'newer replica' }, 'unknown code: internal, and the call settles');

  // A result of 3-byte characters: cut by bytes, the answer arrives (not an "unconfirmed" timeout).
  answer = async () => ({ id: 'cmd_big', ok: false, error: '€'.repeat(5000), detail: '€'.repeat(5000), state: 'running', durationMs: 3 });
  const big = await send('cmd_big');
  t.equal(big.ok, false, 'the definite failure arrives');
  t.ok(Buffer.byteLength(big.error) <= 2048 && big.error.length > 100, `error cut to ${Buffer.byteLength(big.error)} bytes`);
  // Control characters grow sixfold in JSON: the whole message is measured, then shortened.
  const ctl = fitResult('rep_A', 'x', { id: 'x', ok: false, error: '\u0001'.repeat(5000), detail: '\u0002'.repeat(5000), state: '', durationMs: 1 });
  t.ok(Buffer.byteLength(JSON.stringify({ t: 'cmd-result', to: 'rep_A', id: 'x', result: ctl })) <= 7000, 'a result of control characters fits too');

  // A signed command whose accept-by time is no date: dropped (before, toISOString threw and ended the process).
  let ran = 0;
  answer = async () => (ran++, { id: 'y', ok: true, error: '', detail: '', state: '', durationMs: 1 });
  await a.publish({ t: 'cmd', to: 'rep_B', from: 'rep_A', agentId: 'agt_1', cmd: { id: 'cmd_nan' }, acceptBy: 9e300 });
  await a.publish({ t: 'cmd', to: 'rep_B', from: 'rep_A', agentId: 'agt_1', cmd: { id: 'cmd_late' }, acceptBy: Date.now() - 1 });
  await sleep(500);
  t.equal(ran, 0, 'neither ran');
  t.equal(unhandled, undefined, 'no unhandled rejection');
});

t.test('an agent marked offline while its holder stalled is set online again by the holder', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const store = await openStore({ kind: 'postgres', connectionString: db.url }, { logger: silent });
  t.teardown(() => store.close());
  const id = 'agt_' + randomBytes(11).toString('hex').slice(0, 22).padEnd(26, 'x');
  const t0 = Date.now();
  const at = (s: number) => new Date(t0 + s * 1000);
  const LEASE = 15_000;
  await store.insertAgent({ id, hostname: 'h1', status: 'offline', agentVersion: '1', host: null, certSerial: 'ab', certNotAfter: at(86400), enrolledAt: at(0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0 } as never);
  await store.claimAgentLease!(id, 'rep_B', new Date(at(0).getTime() + LEASE));
  await store.markAgentConnected(id, '1', { hostname: 'h1' } as never, at(0));
  await store.touchAgent(id, at(5));
  await store.renewAgentLeases!('rep_B', [id], new Date(at(5).getTime() + LEASE));
  // B stalls; C's sweep at +21 s marks it offline (B's lease ran out at +20 s).
  t.ok(await store.markAgentOfflineUnlessHeld!(id, 'rep_C', at(21)), 'C marked it offline');
  // B resumes at +22 s: renews (its lease row is still its own) and sets it online again.
  t.same(await store.renewAgentLeases!('rep_B', [id], new Date(at(22).getTime() + LEASE)), []);
  t.same(await store.markHeldAgentsOnline!('rep_B', [id], at(22), at(7)), [], 'not before heartbeats flow again (last seen +5 s)');
  await store.touchAgent(id, at(22));
  t.same(await store.markHeldAgentsOnline!('rep_C', [id], at(22), at(7)), [], 'a replica without the lease does not set it online');
  t.same(await store.markHeldAgentsOnline!('rep_B', [id], at(22), at(7)), [id], 'the holder sets it online again (and raises agent_online)');
  t.equal((await store.getAgent(id))?.status, 'online');
  t.same(await store.markHeldAgentsOnline!('rep_B', [id], at(23), at(8)), [], 'once: already online');
  // A revoked agent stays revoked.
  await store.setAgentStatus(id, 'revoked', at(24));
  t.same(await store.markHeldAgentsOnline!('rep_B', [id], at(25), at(10)), []);
  t.equal((await store.getAgent(id))?.status, 'revoked');
});

t.test('the database decides whether a remote command runs: "not carried out" and a run never both happen', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const store = await openStore({ kind: 'postgres', connectionString: db.url }, { logger: silent });
  const secret = randomBytes(32);
  const a = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret, replicaId: 'rep_A' });
  const b = await PgReplicaBus.connect({ connectionString: db.url, logger: silent, secret, replicaId: 'rep_B' });
  const decisions = { record: store.recordRemoteCommand!.bind(store), decide: store.decideRemoteCommand!.bind(store) };
  // The holder's "accepted" is lost (as a commit stuck behind a slow database would delay it past the caller's wait).
  const lossy = Object.assign(Object.create(b) as PgReplicaBus, { publish: (m: ReplicaMessage) => (m.t === 'cmd-accepted' ? Promise.resolve() : b.publish(m)) });
  let takeDelayMs = 0;
  const ran: string[] = [];
  const holder = new RemoteCommands({
    bus: lossy, logger: silent, lease: async () => undefined,
    decisions: { record: decisions.record, decide: async (id, to) => (await sleep(takeDelayMs), decisions.decide(id, to)) },
    local: async (_agentId, cmd) => (ran.push(cmd.id!), { id: cmd.id!, ok: true, detail: 'paused', error: '', state: 'paused', durationMs: 2 }),
  });
  const caller = new RemoteCommands({ bus: a, logger: silent, acceptMs: 500, decisions, lease: async () => ({ owner: 'rep_B', expiresAt: new Date(Date.now() + 15_000) }), local: () => Promise.reject(new Error('x')) });
  t.teardown(async () => {
    holder.close();
    caller.close();
    await a.close();
    await b.close();
    await store.close();
  });
  const send = (id: string) => caller.send('agt_1', { id, containerId: 'c', action: 'pause', deadlineMs: Date.now() + 8_000 });

  // Taken by the holder, its "accepted" lost: the caller does not say "not carried out"; it gets the result.
  const r = await send('cmd_taken');
  t.equal(r.ok, true, 'the result arrives although "accepted" never did');
  t.same(ran, ['cmd_taken']);

  // The holder is too slow to take it: the caller gives up first, and the holder then does not run it.
  takeDelayMs = 2500;
  await t.rejects(send('cmd_late'), { code: 'BK_ERR_AGENT_OFFLINE', message: /not carried out/ });
  await sleep(3000);
  t.same(ran, ['cmd_taken'], 'the command the caller called not carried out never ran');
  t.equal((await pg.query<{ state: string }>("select state from remote_commands where id = 'cmd_late'", [], db.name))[0]?.state, 'abandoned');
});
