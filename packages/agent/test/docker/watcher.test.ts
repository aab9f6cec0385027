// ContainerWatcher against a scripted fake engine: coalescing, ordering,
// since-replay, dedupe, reconcile and start-up, with exact control of timing.
// watcher.e2e.test.ts covers the same ground against a real dockerd.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '@bulkhead/shared';
import type Dockerode from 'dockerode';
import { ContainerWatcher, listingDiffers, statusMarks } from '../../src/docker/watcher';
import { toContainerFacts } from '../../src/docker/container-facts';
import type { Facts } from '../../src/docker/container-facts';
import { FakeDocker, cid, baseInspect } from './fixtures/fake-docker';

const logger = createLogger({ name: 'test', level: 'silent' });
const T0 = 1_795_883_017_000_000_000n;

interface Rec {
  kind: 'snapshot' | 'upsert' | 'remove' | 'exec';
  execId?: string;
  command?: string;
  id?: string;
  action?: string;
  state?: string;
  timeMs?: number;
  changed?: boolean;
  count?: number;
}

function record(w: ContainerWatcher): Rec[] {
  const out: Rec[] = [];
  w.on('snapshot', (list: Facts[]) => out.push({ kind: 'snapshot', count: list.length }));
  w.on('upsert', (f, action, timeMs, changed) => out.push({ kind: 'upsert', id: f.id, action, state: f.state, timeMs, changed }));
  w.on('remove', (id, action, timeMs) => out.push({ kind: 'remove', id, action, timeMs }));
  w.on('exec', (x) => out.push({ kind: 'exec', id: x.containerId, execId: x.execId, command: x.command, timeMs: x.timeMs, state: w.get(x.containerId)?.state }));
  return out;
}

async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

async function started(fake: FakeDocker, extra: Partial<Parameters<typeof ContainerWatcher.start>[0]> = {}): Promise<{ w: ContainerWatcher; rec: Rec[] }> {
  const w = await ContainerWatcher.start({ docker: fake, logger, reconcileIntervalMs: 0, reconnectMinDelayMs: 5, ...extra });
  const rec = record(w);
  await until(() => rec.some((r) => r.kind === 'snapshot'), 'snapshot');
  return { w, rec };
}

t.test('snapshot after start, one image inspect per image id', async (t) => {
  const fake = new FakeDocker();
  fake.add(1);
  fake.add(2);
  fake.add(3, (i) => (i.State.Status = 'exited'));
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  t.same(rec, [{ kind: 'snapshot', count: 3 }], 'snapshot is delivered to a listener attached after start() resolves');
  t.equal(fake.calls.image.length, 1, 'three containers, one image, one image inspect');
  t.same(w.inventory().map((f) => f.state).sort(), ['exited', 'running', 'running']);
  t.equal(w.get(cid(1))?.imageUser, '1000', 'image facts applied');
  t.same(fake.calls.events[0]?.['filters'], {
    type: ['container', 'network', 'image'],
    event: ['create', 'start', 'restart', 'die', 'stop', 'pause', 'unpause', 'rename', 'update', 'destroy', 'oom', 'health_status', 'exec_start', 'connect', 'disconnect',
      'tag', 'untag', 'pull', 'load', 'import', 'delete'],
  });
  t.equal(fake.calls.events[0]?.['since'], undefined, 'first subscription has no since');
});

t.test('image events go to onImageEvent and nowhere else', async (t) => {
  const fake = new FakeDocker();
  const seen: string[] = [];
  const { w, rec } = await started(fake, { onImageEvent: (ev) => seen.push(`${ev.action} ${ev.actorId}`) });
  t.teardown(() => w.stop());
  fake.emitEvent('image', 'tag', 'sha256:abc', T0 + 1n);
  fake.emitEvent('image', 'pull', 'app:1', T0 + 2n);
  await until(() => seen.length === 2, 'image events');
  t.same(seen, ['tag sha256:abc', 'pull app:1']);
  t.same(rec, [{ kind: 'snapshot', count: 0 }], 'no inventory change');
  t.same(fake.calls.inspect, [], 'no inspect');
});

t.test('an event leads to one inspect and an upsert with the event time', async (t) => {
  const fake = new FakeDocker();
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  const id = fake.add(1);
  fake.emitEvent('container', 'create', id, T0 + 123_456_789n);
  await until(() => rec.length === 2, 'upsert');
  t.same(rec[1], { kind: 'upsert', id, action: 'create', state: 'running', timeMs: 1_795_883_017_123, changed: true });
  t.same(fake.calls.inspect, [id]);
});

t.test('events arriving during an inspect coalesce into one re-inspect; last emission is the latest state', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  fake.calls.inspect.length = 0;
  fake.hold(id);
  fake.setState(id, 'paused');
  fake.emitEvent('container', 'pause', id, T0 + 1n);
  await until(() => fake.calls.inspect.length === 1, 'first inspect');
  // While that inspect is held, three more changes happen.
  fake.setState(id, 'running');
  fake.emitEvent('container', 'unpause', id, T0 + 2n);
  fake.setState(id, 'exited');
  fake.emitEvent('container', 'die', id, T0 + 3n);
  fake.emitEvent('container', 'stop', id, T0 + 4n);
  await sleep(20);
  t.equal(fake.calls.inspect.length, 1, 'no second inspect while the first is in flight');
  fake.release(id);
  await until(() => rec.filter((r) => r.kind === 'upsert').length === 2, 'two upserts');
  await sleep(20);
  t.equal(fake.calls.inspect.length, 2, 'exactly one re-inspect for three events');
  const ups = rec.filter((r) => r.kind === 'upsert');
  t.equal(ups[1]?.action, 'stop', 'the re-inspect carries the newest action');
  t.equal(ups.at(-1)?.state, 'exited', 'last emitted facts are the latest state');
  t.equal(w.get(id)?.state, 'exited');
});

t.test('one chunk with several events for a container costs one inspect', async (t) => {
  const fake = new FakeDocker();
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  const id = fake.add(1);
  fake.stream.write(['create', 'start'].map((a, i) =>
    `{"Type":"container","Action":"${a}","Actor":{"ID":"${id}","Attributes":{}},"time":1,"timeNano":${T0 + BigInt(i)}}\n`).join(''));
  await until(() => rec.length === 2, 'upsert');
  await sleep(20);
  t.equal(fake.calls.inspect.length, 1);
  t.equal(rec[1]?.action, 'start');
});

t.test('destroyed while being inspected: upsert, then remove; never the reverse', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  fake.hold(id);
  fake.emitEvent('container', 'die', id, T0 + 1n);
  await until(() => fake.calls.inspect.includes(id) && fake.calls.inspect.length >= 2, 'inspect started');
  fake.emitEvent('container', 'destroy', id, T0 + 2n);
  await sleep(10);
  fake.release(id);
  await until(() => rec.some((r) => r.kind === 'remove'), 'remove');
  t.same(rec.slice(1).map((r) => `${r.kind}:${r.action}`), ['upsert:die', 'remove:destroy']);
  t.same(w.inventory(), []);
});

t.test('inspect answering 404 removes a known container; unknown ones stay silent', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  fake.containers.delete(id);
  fake.emitEvent('container', 'die', id, T0 + 1n);
  await until(() => rec.length === 2, 'remove');
  t.same(rec[1], { kind: 'remove', id, action: 'die', timeMs: Number((T0 + 1n) / 1_000_000n) });
  // A container created and removed (`run --rm`) before we looked: nothing to say.
  fake.emitEvent('container', 'create', cid(9), T0 + 2n);
  fake.emitEvent('container', 'destroy', cid(9), T0 + 3n);
  await sleep(30);
  t.equal(rec.length, 2);
});

t.test('network connect/disconnect refresh the container they name', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  fake.containers.get(id)!.NetworkSettings.Networks['bk'] = { NetworkID: 'n'.repeat(64), IPAddress: '10.0.0.2' } as never;
  fake.emitEvent('network', 'connect', id, T0 + 1n);
  await until(() => rec.length === 2, 'upsert');
  t.equal(rec[1]?.action, 'network_connect');
  t.same(w.get(id)?.networks.map((n) => n.name), ['bk', 'none']);
});

t.test('events during the initial sync wait until after the snapshot', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  fake.hold(id);
  const startP = ContainerWatcher.start({ docker: fake, logger, reconcileIntervalMs: 0 });
  await until(() => fake.calls.inspect.length === 1, 'initial inspect');
  fake.setState(id, 'paused');
  fake.emitEvent('container', 'pause', id, T0 + 1n);
  fake.release(id);
  const w = await startP;
  t.teardown(() => w.stop());
  const rec = record(w);
  await until(() => rec.length === 2, 'snapshot + upsert');
  t.same(rec.map((r) => r.kind), ['snapshot', 'upsert']);
  t.equal(rec[1]?.state, 'paused');
});

t.test('exec_start: passed on without an inspect, after any inspect of its container under way', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  const inspects = fake.calls.inspect.length;
  fake.emitEvent('container', 'exec_start: sh -c true', id, T0 + 1n, { execID: 'x1' });
  await until(() => rec.some((r) => r.kind === 'exec'), 'exec');
  t.same(rec.at(-1), { kind: 'exec', id, execId: 'x1', command: 'sh -c true', timeMs: Number((T0 + 1n) / 1_000_000n), state: 'running' });
  t.equal(fake.calls.inspect.length, inspects, 'no inspect for an exec');
  fake.emitEvent('container', 'exec_create: sh -c true', id, T0 + 2n, { execID: 'x2' });
  fake.emitEvent('container', 'exec_die', id, T0 + 3n, { execID: 'x1', exitCode: '0' });
  await sleep(20);
  t.equal(rec.filter((r) => r.kind === 'exec').length, 1, 'exec_create and exec_die are not execs to judge');

  // A restart in flight: the exec comes out after the upsert, so the
  // inventory holds the new run when a listener looks.
  fake.hold(id);
  fake.emitEvent('container', 'restart', id, T0 + 4n);
  await until(() => fake.calls.inspect.length === inspects + 1, 'restart inspect started');
  fake.emitEvent('container', 'exec_start: id', id, T0 + 5n, { execID: 'x3' });
  fake.emitEvent('container', 'exec_start: id -u', id, T0 + 6n, { execID: 'x4' });
  await sleep(20);
  t.equal(rec.filter((r) => r.kind === 'exec').length, 1, 'held while the inspect runs');
  fake.release(id);
  await until(() => rec.filter((r) => r.kind === 'exec').length === 3, 'both execs');
  t.same(rec.slice(-3).map((r) => `${r.kind}:${r.action ?? r.execId}`), ['upsert:restart', 'exec:x3', 'exec:x4'], 'in order, after the upsert');
});

t.test('exec_start in a container the watcher does not know: inspected first, then passed on', async (t) => {
  const fake = new FakeDocker();
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  const id = fake.add(2); // its create/start events were lost
  fake.emitEvent('container', 'exec_start: sh', id, T0 + 1n, { execID: 'x1' });
  await until(() => rec.some((r) => r.kind === 'exec'), 'exec');
  t.same(rec.slice(1).map((r) => `${r.kind}:${r.action ?? r.execId}:${r.state}`), ['upsert:exec_start:running', 'exec:x1:running']);
});

t.test('exec_start during the initial sync comes after the snapshot', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  fake.hold(id);
  const startP = ContainerWatcher.start({ docker: fake, logger, reconcileIntervalMs: 0 });
  await until(() => fake.calls.inspect.length === 1, 'initial inspect');
  fake.emitEvent('container', 'exec_start: sh', id, T0 + 1n, { execID: 'x1' });
  fake.release(id);
  const w = await startP;
  t.teardown(() => w.stop());
  const rec = record(w);
  await until(() => rec.length === 2, 'snapshot + exec');
  t.same(rec.map((r) => `${r.kind}:${r.execId ?? ''}`), ['snapshot:', 'exec:x1']);
});

t.test('lost stream: reconnect with exact since, replayed duplicate skipped, missed event applied', async (t) => {
  const fake = new FakeDocker();
  const a = fake.add(1);
  const { w, rec } = await started(fake, { reconnectMinDelayMs: 5 });
  t.teardown(() => w.stop());
  const last = T0 + 987_654_321n;
  fake.setState(a, 'paused');
  fake.emitEvent('container', 'pause', a, last);
  await until(() => rec.length === 2, 'pause upsert');
  const connected: Array<string | undefined> = [];
  w.on('stream', (e) => { if (e.state === 'connected') connected.push(e.since); });
  fake.stream.end();
  await until(() => fake.streams.length === 2 && connected.length === 1, 'reconnect');
  t.equal(fake.calls.events[1]?.['since'], '1795883017.987654321', 'since = last timeNano, to the nanosecond');
  // dockerd replays from `since` inclusive: the pause again, then what we missed.
  const b = fake.add(2);
  const inspectsBefore = fake.calls.inspect.filter((x) => x === a).length;
  fake.emitEvent('container', 'pause', a, last);
  fake.emitEvent('container', 'create', b, last + 5n);
  await until(() => rec.some((r) => r.id === b && r.kind === 'upsert'), 'replayed create');
  await sleep(30);
  t.equal(rec.filter((r) => r.id === a && r.action === 'pause').length, 1, 'duplicate at the same instant not re-emitted');
  t.ok(fake.calls.inspect.filter((x) => x === a).length - inspectsBefore <= 1, 'at most the reconcile inspect for a');
  t.equal(rec.find((r) => r.id === b)?.action, 'create', 'the missed event itself, not a reconcile');
});

t.test('reconnect before any event uses the subscription time as since; retries with backoff', async (t) => {
  const fake = new FakeDocker();
  const { w } = await started(fake, { reconnectMinDelayMs: 5, reconnectMaxDelayMs: 20 });
  t.teardown(() => w.stop());
  fake.failEvents = 3;
  fake.stream.destroy(new Error('socket hang up'));
  await until(() => fake.streams.length === 2, 'reconnect after failures', 3000);
  t.equal(fake.calls.events.length, 5, 'first + 3 failures + success');
  const since = fake.calls.events.at(-1)?.['since'];
  t.type(since, 'string');
  t.ok(Math.abs(Number(since) * 1000 - Date.now()) < 5000, `since ${String(since)} is about now`);
});

t.test('reconcile: finds unseen, changed and vanished containers; quiet when nothing changed', async (t) => {
  const fake = new FakeDocker();
  const keep = fake.add(1);
  const change = fake.add(2);
  const vanish = fake.add(3);
  let now = 42_000;
  const { w, rec } = await started(fake, { clock: { now: () => now } });
  t.teardown(() => w.stop());
  fake.calls.inspect.length = 0;
  await w.reconcileNow();
  await sleep(20);
  t.same(fake.calls.inspect, [], 'nothing changed: no inspects at all');
  t.equal(rec.length, 1);

  const born = fake.add(4);
  fake.setState(change, 'paused');
  fake.containers.delete(vanish);
  now = 43_000;
  await w.reconcileNow();
  await until(() => rec.length === 4, 'three changes');
  const byId = new Map(rec.slice(1).map((r) => [r.id, r]));
  t.same(byId.get(born), { kind: 'upsert', id: born, action: 'reconcile', state: 'running', timeMs: 43_000, changed: true });
  t.match(byId.get(change), { kind: 'upsert', action: 'reconcile', state: 'paused' });
  t.same(byId.get(vanish), { kind: 'remove', id: vanish, action: 'reconcile', timeMs: 43_000 });
  t.notOk(fake.calls.inspect.includes(keep), 'the unchanged container was not inspected');
});

t.test('reconcile does not drop a container the listing missed but which exists', async (t) => {
  const fake = new FakeDocker();
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  const id = fake.add(1);
  fake.emitEvent('container', 'create', id, T0 + 1n);
  await until(() => rec.length === 2, 'create');
  fake.hiddenFromList.add(id); // the list was built before the create
  await w.reconcileNow();
  await sleep(30);
  t.equal(rec.length, 2, 'no remove, no unchanged upsert');
  t.ok(w.get(id));
});

t.test('the reconcile timer runs on its own', async (t) => {
  const fake = new FakeDocker();
  const { w, rec } = await started(fake, { reconcileIntervalMs: 100 });
  t.teardown(() => w.stop());
  const lists = fake.calls.list;
  fake.add(1);
  await until(() => rec.length === 2, 'reconcile upsert', 3000);
  t.ok(fake.calls.list > lists);
  t.equal(rec[1]?.action, 'reconcile');
});

t.test('start fails clearly when the engine does not answer', async (t) => {
  const fake = new FakeDocker();
  fake.failList = true;
  await t.rejects(ContainerWatcher.start({ docker: fake, logger }), { code: 'BK_ERR_DOCKER_UNAVAILABLE' });
  t.ok(fake.stream.destroyed, 'the event stream opened for the sync was closed');
  const fake2 = new FakeDocker();
  fake2.failEvents = 1;
  await t.rejects(ContainerWatcher.start({ docker: fake2, logger }), { code: 'BK_ERR_DOCKER_UNAVAILABLE' });
});

t.test('bad options are rejected at start', async (t) => {
  const fake = new FakeDocker();
  await t.rejects(ContainerWatcher.start({ docker: fake, logger, reconcileIntervalMs: 5 }), { code: 'BK_ERR_CONFIG_INVALID' });
  await t.rejects(ContainerWatcher.start({ docker: fake, logger, reconnectMinDelayMs: 100, reconnectMaxDelayMs: 10 }), { code: 'BK_ERR_CONFIG_INVALID' });
  await t.rejects(ContainerWatcher.start({ docker: fake, logger, inspectConcurrency: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('a throwing listener does not break the watcher', async (t) => {
  const fake = new FakeDocker();
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  w.prependListener('upsert', () => { throw new Error('listener bug'); });
  const a = fake.add(1);
  fake.emitEvent('container', 'create', a, T0 + 1n);
  await sleep(30);
  const b = fake.add(2);
  fake.emitEvent('container', 'create', b, T0 + 2n);
  await until(() => w.inventory().length === 2, 'both containers');
  t.equal(rec.length, 1, 'later listeners of the throwing emit are skipped (EventEmitter semantics)');
});

t.test('stop: no emissions afterwards, stream closed, idempotent', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  fake.hold(id);
  fake.emitEvent('container', 'die', id, T0 + 1n);
  await until(() => fake.calls.inspect.length === 2, 'inspect in flight');
  const stopping = w.stop();
  fake.release(id);
  await stopping;
  await w.stop();
  t.ok(fake.stream.destroyed);
  t.equal(rec.length, 1, 'the in-flight inspect emitted nothing');
  await sleep(30);
  t.equal(fake.streams.length, 1, 'no reconnect after stop');
});

t.test('a failed inspect leaves stale facts that the next reconcile repairs', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w, rec } = await started(fake);
  t.teardown(() => w.stop());
  fake.containers.get(id)!.Name = '/renamed';
  fake.failInspectOnce.add(id);
  fake.emitEvent('container', 'rename', id, T0 + 1n);
  await sleep(30);
  t.equal(w.get(id)?.name, 'c1', 'stale after the failed inspect');
  t.equal(rec.length, 1);
  await w.reconcileNow();
  await until(() => rec.length === 2, 'repair');
  t.match(rec[1], { action: 'reconcile', changed: true });
  t.equal(w.get(id)?.name, 'renamed');
});

t.test('listingDiffers', async (t) => {
  const facts = toContainerFacts(baseInspect());
  const entry = (patch: Partial<Dockerode.ContainerInfo> = {}): Dockerode.ContainerInfo => ({
    Id: facts.id, Names: ['/web-1'], Image: 'x', ImageID: facts.imageId, Command: '', Created: 0, Ports: [], Labels: {},
    State: 'running', Status: 'Up 3 seconds', HostConfig: { NetworkMode: 'none' },
    NetworkSettings: { Networks: { none: { NetworkID: facts.networks[0]!.networkId, IPAddress: '' } as Dockerode.NetworkInfo } },
    Mounts: [], ...patch,
  });
  const table: Array<[string, Dockerode.ContainerInfo, string | undefined, boolean]> = [
    ['same', entry(), '', false],
    ['only the uptime changed', entry({ Status: 'Up 3 hours' }), '', false],
    ['first listing (no previous marks)', entry({ Status: 'Up 3 hours (healthy)' }), undefined, false],
    ['state', entry({ State: 'exited' }), '', true],
    ['name', entry({ Names: ['/other'] }), '', true],
    ['link alias besides the name', entry({ Names: ['/web-1', '/app/db'] }), '', false],
    ['image', entry({ ImageID: 'sha256:other' }), '', true],
    ['network added', entry({ NetworkSettings: { Networks: { ...entry().NetworkSettings.Networks, bk: { NetworkID: 'n', IPAddress: '10.0.0.2' } as Dockerode.NetworkInfo } } }), '', true],
    ['network gone', entry({ NetworkSettings: { Networks: {} } }), '', true],
    ['health changed', entry({ Status: 'Up 3 seconds (unhealthy)' }), '(healthy)', true],
  ];
  for (const [name, c, prev, want] of table) t.equal(listingDiffers(c, facts, prev), want, name);
  t.equal(statusMarks({ Status: 'Exited (137) 2 minutes ago' }), '(137)');
  t.equal(statusMarks({ Status: 'Up 2 minutes (Paused)' }), '(Paused)');
});

t.test('a stream lost during the initial sync leads to a reconcile right after the snapshot', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  fake.hold(id);
  const startP = ContainerWatcher.start({ docker: fake, logger, reconcileIntervalMs: 0, reconnectMinDelayMs: 5 });
  await until(() => fake.calls.inspect.length === 1, 'initial inspect');
  fake.stream.end();
  await until(() => fake.streams.length === 2, 'reconnected during sync');
  t.equal(fake.calls.list, 1, 'no reconcile while syncing');
  fake.release(id);
  const w = await startP;
  t.teardown(() => w.stop());
  await until(() => fake.calls.list === 2, 'reconcile after the snapshot');
  t.pass('reconciled');
});

t.test('stop does not hang on an inspect that never returns', async (t) => {
  const fake = new FakeDocker();
  const id = fake.add(1);
  const { w } = await started(fake);
  fake.hold(id); // never released
  fake.emitEvent('container', 'die', id, T0 + 1n);
  await until(() => fake.calls.inspect.length === 2, 'inspect in flight');
  const t0 = Date.now();
  await w.stop();
  const took = Date.now() - t0;
  t.ok(took >= 1500 && took < 4000, `stop returned after ${took} ms`);
});
