// ContainerWatcher against a REAL private dockerd (test/helpers/engine.ts):
// every lifecycle change is reported with the right state; changes made
// while the event stream is down come back through `since` replay; changes
// whose events never arrive come back through reconcile; every exec_start
// (a `docker exec`, a health check) is passed on, after its container's
// start, without an inspect of ours.
//
// The engine may be shared with other test files running at the same time,
// so assertions look only at this file's containers.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '@bulkhead/shared';
import { useEngine, LABEL_ARGS, removeLabelledContainers, type Engine } from '../../../../test/helpers/engine';
import { createDockerClient, type DockerApi, type DockerClient } from '../../src/docker/client';
import { ContainerWatcher, type ExecStartEvent, type StreamStateEvent } from '../../src/docker/watcher';
import type { Facts } from '../../src/docker/container-facts';

const logger = createLogger({ name: 'watcher-e2e', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;

interface Seen {
  kind: 'upsert' | 'remove';
  action: string;
  state: string;
  facts: Facts;
  timeMs: number;
  at: number;
}

/** Everything the watcher emits, per container id. */
class Recorder {
  readonly byId = new Map<string, Seen[]>();
  readonly stream: StreamStateEvent[] = [];
  /** Each exec with the state the inventory held for its container when it was emitted. */
  readonly execs: Array<{ x: ExecStartEvent; state: string | undefined }> = [];
  private waiters: Array<() => void> = [];

  constructor(w: ContainerWatcher) {
    w.on('exec', (x) => {
      this.execs.push({ x, state: w.get(x.containerId)?.state });
      this.wake();
    });
    w.on('upsert', (facts, action, timeMs) => this.add(facts.id, { kind: 'upsert', action, state: facts.state, facts, timeMs, at: Date.now() }));
    w.on('remove', (id, action, timeMs, last) => this.add(id, { kind: 'remove', action, state: 'removed', facts: last, timeMs, at: Date.now() }));
    w.on('stream', (e) => {
      this.stream.push(e);
      this.wake();
    });
  }

  of(id: string): Seen[] {
    return this.byId.get(id) ?? [];
  }

  async waitFor<T>(what: string, probe: () => T | undefined | false, ms = 15_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined && v !== false) return v;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; seen: ${JSON.stringify(this.summary())}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for an emission for `id` after index `from` matching `pred`. */
  next(id: string, from: number, pred: (s: Seen) => boolean, what: string): Promise<Seen> {
    return this.waitFor(what, () => this.of(id).slice(from).find(pred));
  }

  private add(id: string, s: Seen): void {
    const list = this.byId.get(id) ?? [];
    list.push(s);
    this.byId.set(id, list);
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private summary(): Record<string, string[]> {
    return Object.fromEntries([...this.byId].map(([id, l]) => [id.slice(0, 12), l.map((s) => `${s.kind}:${s.action}:${s.state}`)]));
  }
}

/** The real client's methods, to wrap one of them. */
const bound = (d: DockerClient): DockerApi => ({
  getEvents: (o) => d.getEvents(o),
  listContainers: (o) => d.listContainers(o),
  getContainer: (id) => d.getContainer(id),
  getImage: (id) => d.getImage(id),
  version: () => d.version(),
  info: () => d.info(),
});

const run = (engine: Engine, ...args: string[]): Promise<string> => engine.dockerOk(args);
const create = (engine: Engine, name: string, ...extra: string[]): Promise<string> =>
  run(engine, 'create', '--network', 'none', ...LABEL_ARGS, '--name', name, ...extra, engine.image, 'sleep', '300');

t.test('watcher against a real engine', async (t) => {
  const engine = await useEngine(t);
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const network = `bk-watch-${uniq}`;
  t.teardown(async () => {
    await removeLabelledContainers(engine);
    await engine.docker(['network', 'rm', network]);
  });

  t.test('every lifecycle change is emitted with the right state', async (t) => {
    const before = await create(engine, `pre-${uniq}`);
    const w = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
    t.teardown(() => w.stop());
    const rec = new Recorder(w);
    const snapshot = await new Promise<Facts[]>((resolve) => w.once('snapshot', resolve));
    t.match(snapshot.find((f) => f.id === before), { state: 'created', name: `pre-${uniq}`, networkMode: 'none', labels: { 'bulkhead.test': '1' } }, 'snapshot has a container made before start');

    const name = `life-${uniq}`;
    const id = await create(engine, name, '--env', 'SECRET_TOKEN=do-not-leak');
    let s = await rec.next(id, 0, (x) => x.action === 'create', 'create');
    t.match(s.facts, { state: 'created', name, imageRef: engine.image, envNames: ['SECRET_TOKEN'], command: ['sleep', '300'] }, 'create');
    t.notOk(JSON.stringify(s.facts).includes('do-not-leak'), 'env value not in the facts');

    // `actions`: what the emission may be called. Events for one container
    // that arrive together coalesce into one inspect reported under the
    // newest action, so `docker stop` shows up as `die`, `stop`, or both.
    const step = async (args: string[], actions: string | string[], state: string): Promise<Seen> => {
      const from = rec.of(id).length;
      const accepted = typeof actions === 'string' ? [actions] : actions;
      const action = accepted.join('|');
      await run(engine, ...args);
      const seen = await rec.next(id, from, (x) => accepted.includes(x.action), action);
      // the last emission (not necessarily this one) must show the new state
      await rec.waitFor(`${action} → ${state}`, () => rec.of(id).at(-1)?.state === state);
      t.equal(w.get(id)?.state, state, `${action}: inventory says ${state}`);
      return seen;
    };

    s = await step(['start', id], 'start', 'running');
    t.ok(s.facts.pid > 0 && s.facts.startedAtMs > 0, 'running: pid and start time');
    t.comment(`start event → upsert: ${s.at - s.timeMs} ms`);
    await step(['pause', id], 'pause', 'paused');
    await step(['unpause', id], 'unpause', 'running');
    s = await step(['rename', id, `${name}-b`], 'rename', 'running');
    t.equal(s.facts.name, `${name}-b`, 'rename: new name');
    s = await step(['update', '--memory', '64m', '--memory-swap', '128m', '--pids-limit', '50', id], 'update', 'running');
    t.match(s.facts, { memoryLimitBytes: 64 * 1024 * 1024, pidsLimit: 50 }, 'update: new limits');

    s = await step(['stop', '-t', '0', id], ['die', 'stop'], 'exited');
    t.ok(s.facts.finishedAtMs >= s.facts.startedAtMs && s.facts.exitCode !== 0, `${s.action}: finished, exit ${s.facts.exitCode}`);

    const from = rec.of(id).length;
    await run(engine, 'rm', id);
    s = await rec.next(id, from, (x) => x.kind === 'remove', 'remove');
    t.equal(s.action, 'destroy');
    t.equal(w.get(id), undefined, 'gone from the inventory');
    t.equal(rec.of(id).at(-1)?.kind, 'remove', 'nothing emitted after the remove');

    // A container that lives a few milliseconds: whatever was emitted must end in a remove.
    const out = await run(engine, 'run', '--rm', '--network', 'none', ...LABEL_ARGS, '--name', `flash-${uniq}`, engine.image, 'true');
    t.equal(out, '');
    const flashEntries = (): Seen[] | undefined => [...rec.byId.values()].find((l) => l.some((x) => x.facts.name === `flash-${uniq}`));
    // Its events may all arrive before the first inspect (then nothing is
    // emitted at all), or it is reported and then removed.
    await rec.waitFor('flash container settled', () => {
      const l = flashEntries();
      return l === undefined || l.at(-1)?.kind === 'remove';
    }, 5000);
    await sleep(200);
    const flash = flashEntries();
    if (flash) t.equal(flash.at(-1)?.kind, 'remove', `--rm container: ${flash.map((x) => x.action).join(',')}`);
    t.notOk(w.inventory().some((f) => f.name === `flash-${uniq}`), '--rm container not left in the inventory');
  });

  t.test('network attach/detach (on a container that never starts, so nothing can send traffic)', async (t) => {
    const w = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
    t.teardown(() => w.stop());
    const rec = new Recorder(w);
    await run(engine, 'network', 'create', '--internal', ...LABEL_ARGS, network);
    const id = await create(engine, `net-${uniq}`);
    await rec.next(id, 0, (x) => x.action === 'create', 'create');
    t.same(w.get(id)?.networks.map((n) => n.name), ['none']);

    let from = rec.of(id).length;
    await run(engine, 'network', 'disconnect', 'none', id);
    let s = await rec.next(id, from, (x) => x.action === 'network_disconnect', 'disconnect from none');
    t.same(s.facts.networks, [], 'network_disconnect event: no networks');

    // dockerd 20.10 emits NO event when a container that is not running is
    // connected (the endpoint joins only at start), so only a reconcile sees it.
    from = rec.of(id).length;
    await run(engine, 'network', 'connect', network, id);
    await sleep(300);
    t.equal(rec.of(id).length, from, 'no event for connecting a stopped container');
    await w.reconcileNow();
    s = await rec.next(id, from, (x) => x.action === 'reconcile', 'reconcile sees the attachment');
    t.same(s.facts.networks.map((n) => n.name), [network], 'attached, found by reconcile');

    from = rec.of(id).length;
    await run(engine, 'network', 'disconnect', network, id);
    s = await rec.next(id, from, (x) => x.action === 'network_disconnect', 'disconnect');
    t.same(s.facts.networks, [], 'detached');
  });

  t.test('changes made while the event stream is down come back through since-replay', async (t) => {
    const streams: NodeJS.ReadableStream[] = [];
    const sinces: unknown[] = [];
    // Reconnecting waits for this gate, so the window in which the watcher
    // is deaf is as long as the test needs, however slow the machine.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const tapped: DockerApi = {
      ...bound(docker),
      getEvents: async (o) => {
        sinces.push(o?.since);
        if (sinces.length > 1) await gate;
        const s = await docker.getEvents(o);
        streams.push(s);
        return s;
      },
    };
    const a = await create(engine, `replay-a-${uniq}`);
    await run(engine, 'start', a);
    const w = await ContainerWatcher.start({ docker: tapped, logger, reconcileIntervalMs: 0, reconnectMinDelayMs: 50 });
    t.teardown(() => w.stop());
    const rec = new Recorder(w);
    // Make sure the watcher has seen at least one event, so `since` is an event's time.
    const warm = await create(engine, `replay-warm-${uniq}`);
    await rec.next(warm, 0, (x) => x.action === 'create', 'warm-up create');

    (streams.at(-1) as unknown as { destroy(): void }).destroy();
    await rec.waitFor('reconnect attempt', () => sinces.length === 2);
    const b = await create(engine, `replay-b-${uniq}`);
    await run(engine, 'start', b);
    await run(engine, 'pause', a);
    const doneAt = Date.now();
    t.same(rec.stream.map((e) => e.state), ['disconnected'], 'all three changes happened while disconnected');
    t.same(rec.of(b), [], 'nothing known about b yet');
    openGate();

    const bStart = await rec.next(b, 0, (x) => x.action === 'start', 'replayed start of b');
    const aPause = await rec.next(a, 0, (x) => x.action === 'pause', 'replayed pause of a');
    t.equal(bStart.state, 'running');
    t.equal(aPause.state, 'paused');
    t.ok(bStart.timeMs < doneAt && aPause.timeMs < doneAt, 'they carry dockerd\'s original event times');
    t.equal(sinces.length, 2);
    t.match(sinces[1], /^\d{10}\.\d{9}$/, `reconnected with since=${String(sinces[1])} (seconds.nanoseconds)`);
    t.equal(rec.of(warm).filter((x) => x.action === 'create').length, 1, 'the event at exactly `since` was not emitted twice');
    t.equal(w.get(a)?.state, 'paused');
    t.equal(w.get(b)?.state, 'running');
  });

  t.test('execs: each exec_start is emitted once, after its container\'s start, and costs the watcher no inspect', async (t) => {
    // Inspects per container: other test files may share the engine, and their containers' events are inspected too.
    const inspected: string[] = [];
    const counted: DockerApi = {
      ...bound(docker),
      getContainer: (id) => {
        const c = docker.getContainer(id);
        return { inspect: () => (inspected.push(id), c.inspect()) } as ReturnType<DockerApi['getContainer']>;
      },
    };
    const inspectsOf = (id: string): number => inspected.filter((x) => x === id).length;
    const w = await ContainerWatcher.start({ docker: counted, logger, reconcileIntervalMs: 0 });
    t.teardown(() => w.stop());
    const rec = new Recorder(w);
    // `run -d` then `exec` at once: the exec event can arrive while the
    // start's inspect is still in flight; it must come out after it.
    const id = await run(engine, 'run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `exec-${uniq}`, engine.image, 'sleep', '300');
    await run(engine, 'exec', '-u', '1000', id, 'echo', 'hi');
    const e = await rec.waitFor('exec event', () => rec.execs.find((x) => x.x.containerId === id));
    t.equal(e.x.command, 'echo hi', 'the command, from the event');
    t.equal(e.state, 'running', 'emitted when the inventory already shows the container running');
    const info = await docker.getExec(e.x.execId).inspect();
    t.same([info.ContainerID, info.ProcessConfig.user, info.ProcessConfig.entrypoint], [id, '1000', 'echo'], 'its execID is the exec dockerd ran');

    // A health check starts an exec every interval (with exec_create and
    // exec_die, which never reach us): no inspect for any of them.
    const hc = await run(engine, 'run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `exec-hc-${uniq}`,
      '--health-cmd', 'true', '--health-interval', '1s', '--health-start-period', '0s', engine.image, 'sleep', '300');
    // The first probe turns it healthy: one health_status event, one inspect; later probes change nothing.
    await rec.waitFor('healthy', () => rec.of(hc).some((x) => x.action === 'health_status'));
    await sleep(300);
    const before = inspectsOf(hc);
    const execsBefore = rec.execs.filter((x) => x.x.containerId === hc).length;
    await rec.waitFor('two more health check execs', () => rec.execs.filter((x) => x.x.containerId === hc).length >= execsBefore + 2, 10_000);
    t.equal(inspectsOf(hc), before, `no inspect for ${rec.execs.filter((x) => x.x.containerId === hc).length - execsBefore} health-check execs`);
    t.ok(rec.execs.filter((x) => x.x.containerId === hc).every((x) => x.x.command === '/bin/sh -c true'), 'health checks are execs of the health command');
    t.equal(new Set(rec.execs.map((x) => x.x.execId)).size, rec.execs.length, 'each exec emitted once');
  });

  t.test('changes whose events never arrive are found by reconcile', async (t) => {
    // dockerd skips events for a subscriber that lags > 100 ms; simulate the
    // worst case: a stream that stays open and delivers nothing.
    const deaf: DockerApi = {
      ...bound(docker),
      getEvents: async (o) => {
        const real = await docker.getEvents(o);
        const out = new PassThrough();
        real.on('data', () => undefined);
        real.on('end', () => out.end());
        real.on('error', (e: Error) => out.destroy(e));
        out.on('close', () => (real as unknown as { destroy(): void }).destroy());
        return out;
      },
    };
    const w = await ContainerWatcher.start({ docker: deaf, logger, reconcileIntervalMs: 300 });
    t.teardown(() => w.stop());
    const rec = new Recorder(w);
    const c = await create(engine, `reconcile-${uniq}`);
    await run(engine, 'start', c);
    let s = await rec.next(c, 0, (x) => x.state === 'running', 'running via reconcile');
    t.equal(s.action, 'reconcile');
    let from = rec.of(c).length;
    await run(engine, 'pause', c);
    s = await rec.next(c, from, (x) => x.state === 'paused', 'paused via reconcile');
    t.equal(s.action, 'reconcile');
    from = rec.of(c).length;
    await run(engine, 'rm', '-f', c);
    s = await rec.next(c, from, (x) => x.kind === 'remove', 'remove via reconcile');
    t.equal(s.action, 'reconcile');
    t.ok(rec.of(c).every((x) => x.action === 'reconcile'), 'no event got through the deaf stream');
  });
});
