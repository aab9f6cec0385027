// Owns the agent's live inventory of containers: one ContainerFacts per
// container on this engine, kept current from dockerd's event stream and
// repaired by periodic listing, and the events that tell the rest of the
// agent what changed.
//
// Why both events and listing: dockerd silently skips events for a
// subscriber that lags > 100 ms, and after a reconnect replays (`since`)
// only the last 256 events it buffered. Events give low latency; the
// reconcile gives eventual correctness.
//
// Ordering guarantee: work for one container is serialized. Every event
// marks the container dirty; one inspect runs at a time per container, and
// events arriving meanwhile coalesce into exactly one re-inspect after it.
// So per container, emissions happen in the order their inspects ran, and
// the last emission reflects the latest state dockerd reported.
//
// Execs: every exec_start is passed on as an `exec` event, without an
// inspect of ours (health checks start one per interval; whether an exec is
// worth inspecting depends on the policy, which the enforcer knows). It is
// emitted after any inspect of its container already under way, so a
// listener that reads the inventory sees the container as the exec found
// it — running — even right after `docker run -d; docker exec`.
import { EventEmitter } from 'node:events';
import type Dockerode from 'dockerode';
import { BulkheadError, Semaphore } from '@bulkhead/shared';
import type { Logger } from '@bulkhead/shared';
import { toContainerFacts, type Facts } from './container-facts';
import type { ResourceTarget } from '../resources/types';
import {
  EventLineParser, execStartEvent, formatSince, relevantContainerEvent, FACT_CHANGING_ACTIONS, type DockerEvent, type ExecStartEvent,
} from './event-stream';
import { resolveWatcherOptions, type ContainerWatcherOptions, type ResolvedWatcherOptions } from './watcher-options';

export type { ContainerWatcherOptions } from './watcher-options';
export type { ExecStartEvent } from './event-stream';

/**
 * What caused an upsert/remove: a Docker container action (create, start,
 * die, stop, pause, unpause, rename, update, destroy, restart, oom,
 * health_status), `network_connect` / `network_disconnect`, or `reconcile`
 * when periodic listing found a change the event stream did not deliver.
 *
 * Events for one container that arrive together (same chunk, or while its
 * inspect is in flight) are reported once, under the NEWEST action: `docker
 * stop` may appear as `die` then `stop`, or as `stop` alone; `create` +
 * `start` as `start` alone. Decide on the facts (e.g. `state`), not on the
 * action name alone.
 */
export type WatchAction = string;

export interface StreamStateEvent {
  state: 'connected' | 'disconnected';
  /** The `since` sent when (re)connecting; undefined on the first connection. */
  since?: string | undefined;
  error?: Error | undefined;
}

export interface ContainerWatcherEvents {
  /** The full inventory, once, after the initial list + inspect. */
  snapshot: [facts: Facts[]];
  /**
   * A container's facts after a change. `eventTimeMs` is dockerd's event
   * time, or the watcher clock's time for `reconcile`. `changed` is false
   * when an event led to an inspect that found nothing new (e.g. `stop`
   * right after `die`, or an event replayed after a reconnect).
   */
  upsert: [facts: Facts, eventAction: WatchAction, eventTimeMs: number, changed: boolean];
  /** A container is gone; `lastFacts` are the facts last reported for it. */
  remove: [id: string, eventAction: WatchAction, eventTimeMs: number, lastFacts: Facts];
  /**
   * A process was started in a container (`docker exec`, a health check).
   * Emitted after the snapshot, once per exec_start dockerd reported, and
   * after any inspect of that container already under way (see the top of
   * this file).
   */
  exec: [exec: ExecStartEvent];
  /** The event stream's connection state (for logs, metrics and tests). */
  stream: [event: StreamStateEvent];
  /** A reconcile listed the engine's containers (for metrics); `suspects` were queued for inspection. */
  reconcile: [info: { reason: string; listed: number; suspects: number }];
}

interface Job {
  action: WatchAction;
  timeMs: number;
  /** Reconcile jobs neither replace an event's action nor emit unchanged facts. */
  fromEvent: boolean;
}

interface Work {
  pending: Job | undefined;
  done: Promise<void>;
}

/** Image actions after which a ref may name another image (the authz plugin's image cache listens). */
export const IMAGE_REF_ACTIONS: readonly string[] = ['tag', 'untag', 'pull', 'load', 'import', 'delete'];

const EVENT_FILTERS = {
  type: ['container', 'network', 'image'],
  // Server-side filtering keeps exec_create, exec_die (with exec_start, three
  // per health check), attach, top and the like off the wire;
  // relevantContainerEvent() and execStartEvent() decide the rest. dockerd
  // matches exec_start and health_status by prefix: the action carries the
  // command ("exec_start: sh -c id") or the result after a colon.
  event: [...FACT_CHANGING_ACTIONS, 'exec_start', 'connect', 'disconnect', ...IMAGE_REF_ACTIONS],
};

/** How long stop() waits for in-flight inspects. */
const STOP_WAIT_MS = 2000;

/** A stream that lived this long was healthy; the next failure starts backoff afresh. */
const HEALTHY_STREAM_MS = 10_000;

export class ContainerWatcher extends EventEmitter<ContainerWatcherEvents> {
  private readonly inv = new Map<string, Facts>();
  /** Where each container's disk lives on the host, from the same inspect (not part of the facts: host paths never leave the agent). */
  private readonly targets = new Map<string, ResourceTarget>();
  private readonly work = new Map<string, Work>();
  private readonly images = new Map<string, Promise<Dockerode.ImageInspectInfo | undefined>>();
  /** Per container, the Status marks of the last listing (see listingDiffers). */
  private listMarks = new Map<string, string>();
  private readonly slots: Semaphore;
  private readonly log: Logger;

  private stream: NodeJS.ReadableStream | undefined;
  private lastTimeNano: bigint | undefined;
  private seenAtLast = new Set<string>();
  /** `since` for a reconnect before any event arrived: the first connection's time. */
  private anchorNano: bigint | undefined;
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconcileRunning: Promise<void> | undefined;
  private reconcileAgain = false;
  /** A reconcile was asked for during the initial sync; run it after the snapshot. */
  private reconcileAfterSync = false;
  private syncing = true;
  private buffered: Array<{ id: string; job: Job }> = [];
  /** Execs seen during the initial sync, emitted after the snapshot. */
  private bufferedExecs: ExecStartEvent[] = [];
  private stopped = false;

  private constructor(private readonly o: ResolvedWatcherOptions) {
    super();
    this.slots = new Semaphore(o.inspectConcurrency);
    // Used as given: the caller names the component (a second `component`
    // binding would print the key twice in pino's JSON).
    this.log = o.logger;
  }

  /**
   * Subscribes to events, lists and inspects every container, and resolves
   * with the watcher. The `snapshot` event fires on the next turn of the
   * event loop after this resolves (so a listener attached right after
   * `await` sees it); upserts and removes follow it, never precede it.
   * Rejects with BK_ERR_DOCKER_UNAVAILABLE when the engine does not answer.
   */
  static async start(opts: ContainerWatcherOptions): Promise<ContainerWatcher> {
    const w = new ContainerWatcher(resolveWatcherOptions(opts));
    try {
      await w.initialSync();
    } catch (err) {
      await w.stop();
      throw err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_DOCKER_UNAVAILABLE', undefined, { cause: err });
    }
    return w;
  }

  /** The current inventory (a new array; the facts objects are shared, do not mutate them). */
  inventory(): Facts[] {
    return [...this.inv.values()];
  }

  /** How many containers inventory() holds (without building the array). */
  get size(): number {
    return this.inv.size;
  }

  get(id: string): Facts | undefined {
    return this.inv.get(id);
  }

  /** The storage driver, writable-layer dir, log file and log driver of a container (for the usage sampler's disk source). */
  resourceTarget(id: string): ResourceTarget | undefined {
    return this.targets.get(id);
  }

  /** True while the Docker event stream is open (for metrics). */
  get streamConnected(): boolean {
    return this.stream !== undefined;
  }

  /** Lists containers now instead of waiting for the timer (e.g. after the agent suspects a gap). */
  reconcileNow(): Promise<void> {
    return this.requestReconcile('manual');
  }

  /**
   * Closes the event stream and timers, then waits (at most STOP_WAIT_MS:
   * a hung dockerd must not hang the agent's shutdown) for in-flight
   * inspects, which emit nothing any more.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.reconcileTimer);
    destroyStream(this.stream);
    this.stream = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...[...this.work.values()].map((w) => w.done), this.reconcileRunning]),
      new Promise<void>((resolve) => {
        // Not unref'd: with nothing else alive the process would exit
        // mid-await and skip the caller's remaining shutdown steps.
        timer = setTimeout(resolve, STOP_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  // ---- initial sync ------------------------------------------------------

  private async initialSync(): Promise<void> {
    // Subscribe before listing, so nothing that happens in between is lost;
    // events arriving during the sync are held until after the snapshot.
    await this.connect();
    const list = await this.o.docker.listContainers({ all: true });
    const results = await Promise.all(list.map((c) => this.slots.run(() => this.inspectFacts(c.Id).then(
      (f) => f,
      (err: unknown) => {
        this.log.warn({ err, containerId: c.Id }, 'inspect failed during initial sync; the next reconcile retries');
        return undefined;
      },
    ))));
    for (const f of results) if (f) this.inv.set(f.id, f);
    this.listMarks = new Map(list.map((c) => [c.Id, statusMarks(c)]));
    this.log.info({ containers: this.inv.size }, 'container inventory synced');
    setImmediate(() => {
      if (this.stopped) return;
      this.safeEmit('snapshot', [...this.inv.values()]);
      this.syncing = false;
      const held = this.buffered;
      this.buffered = [];
      for (const { id, job } of held) this.enqueue(id, job);
      const execs = this.bufferedExecs;
      this.bufferedExecs = [];
      for (const x of execs) this.onExec(x);
      if (this.reconcileAfterSync) void this.requestReconcile('reconnect');
      else this.scheduleReconcile();
    });
  }

  // ---- event stream ------------------------------------------------------

  private async connect(): Promise<void> {
    const since = this.lastTimeNano !== undefined ? formatSince(this.lastTimeNano)
      : this.anchorNano !== undefined ? formatSince(this.anchorNano) : undefined;
    // `since` accepts "seconds.nanoseconds"; @types/dockerode says number only.
    const opts = { filters: EVENT_FILTERS, ...(since !== undefined ? { since } : {}) } as unknown as Dockerode.GetEventsOptions;
    // The anchor uses the real wall clock, not the injected one: it is
    // compared with dockerd's clock, and a reconcile covers any skew.
    this.anchorNano ??= BigInt(Date.now() - 1000) * 1_000_000n;
    const stream = await this.o.docker.getEvents(opts);
    if (this.stopped) {
      destroyStream(stream);
      return;
    }
    this.stream = stream;
    const openedAt = performance.now();
    let sawEvent = false;
    const parser = new EventLineParser({
      onEvent: (ev) => {
        sawEvent = true;
        this.onDockerEvent(ev);
      },
      onBadLine: (line, err) => this.log.warn({ err, line }, 'skipping an unparseable line on the docker event stream'),
    });
    let ended = false;
    const end = (err?: Error): void => {
      if (ended) return;
      ended = true;
      parser.end();
      if (this.stream === stream) this.stream = undefined;
      if (sawEvent || performance.now() - openedAt >= HEALTHY_STREAM_MS) this.reconnectAttempt = 0;
      this.onStreamLost(err);
    };
    stream.on('data', (chunk: Buffer | string) => parser.push(chunk));
    stream.on('end', () => end());
    stream.on('close', () => end());
    stream.on('error', (err: Error) => end(err));
    this.log.debug({ since }, 'docker event stream connected');
    this.safeEmit('stream', { state: 'connected', since });
  }

  private onStreamLost(err: Error | undefined): void {
    if (this.stopped) return;
    this.log.warn({ err, lastTimeNano: this.lastTimeNano?.toString() }, 'docker event stream ended; reconnecting with since-replay');
    this.safeEmit('stream', { state: 'disconnected', error: err });
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = Math.min(this.o.reconnectMaxDelayMs, this.o.reconnectMinDelayMs * 2 ** Math.min(this.reconnectAttempt, 30));
    this.reconnectAttempt++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().then(
        // dockerd replays only 256 events; list too in case the gap was longer.
        () => { if (!this.stopped) void this.requestReconcile('reconnect'); },
        (err: unknown) => {
          this.log.warn({ err, attempt: this.reconnectAttempt, delayMs: delay }, 'docker event stream reconnect failed');
          this.scheduleReconnect();
        },
      );
    }, delay);
  }

  private onDockerEvent(ev: DockerEvent): void {
    if (this.stopped) return;
    // A `since` replay starts AT the last seen instant (dockerd compares
    // with >=), so events sharing that timestamp may come twice.
    const key = `${ev.type}|${ev.action}|${ev.actorId}|${ev.timeNano}`;
    if (ev.timeNano === this.lastTimeNano) {
      if (this.seenAtLast.has(key)) return;
      this.seenAtLast.add(key);
    } else {
      this.lastTimeNano = ev.timeNano;
      this.seenAtLast = new Set([key]);
    }
    if (ev.type === 'image') {
      this.o.onImageEvent?.(ev);
      return;
    }
    const exec = execStartEvent(ev);
    if (exec) {
      if (this.syncing) this.bufferedExecs.push(exec);
      else this.onExec(exec);
      return;
    }
    const rel = relevantContainerEvent(ev);
    if (!rel) return;
    const job: Job = { action: rel.action, timeMs: Number(ev.timeNano / 1_000_000n), fromEvent: true };
    if (this.syncing) this.buffered.push({ id: rel.containerId, job });
    else this.enqueue(rel.containerId, job);
  }

  // ---- execs -------------------------------------------------------------

  private onExec(x: ExecStartEvent): void {
    if (this.stopped) return;
    // An exec in a container we do not know (its events were lost): inspect
    // it first, so the exec is judged against real facts.
    if (!this.inv.has(x.containerId) && !this.work.has(x.containerId)) {
      this.enqueue(x.containerId, { action: 'exec_start', timeMs: x.timeMs, fromEvent: true });
    }
    const w = this.work.get(x.containerId);
    if (!w) {
      this.safeEmit('exec', x);
      return;
    }
    void w.done.then(() => {
      if (!this.stopped) this.safeEmit('exec', x);
    });
  }

  // ---- per-container work ------------------------------------------------

  private enqueue(id: string, job: Job): void {
    if (this.stopped) return;
    const w = this.work.get(id);
    if (w) {
      const p = w.pending;
      // The newest event wins (its action names the latest change), but a
      // reconcile never hides an event's action, and nothing outlives destroy.
      if (!p || (p.action !== 'destroy' && (job.fromEvent || !p.fromEvent))) w.pending = job;
      return;
    }
    const fresh: Work = { pending: job, done: Promise.resolve() };
    this.work.set(id, fresh);
    fresh.done = this.drain(id, fresh);
  }

  private async drain(id: string, w: Work): Promise<void> {
    // Yield once so events from the same chunk coalesce before the first inspect.
    await Promise.resolve();
    try {
      while (w.pending && !this.stopped) {
        const job = w.pending;
        w.pending = undefined;
        await this.refresh(id, job);
      }
    } finally {
      this.work.delete(id);
    }
  }

  private async refresh(id: string, job: Job): Promise<void> {
    if (job.action === 'destroy') {
      this.forget(id, job);
      return;
    }
    let facts: Facts | undefined;
    try {
      // Event-driven inspects are never throttled: a `start` may need a
      // reaction within tens of milliseconds.
      facts = job.fromEvent ? await this.inspectFacts(id) : await this.slots.run(() => this.inspectFacts(id));
    } catch (err) {
      this.log.warn({ err, containerId: id, action: job.action }, 'inspect failed; the next reconcile retries');
      return;
    }
    if (this.stopped) return;
    if (facts === undefined) {
      // Destroyed while we looked (404).
      this.forget(id, job);
      return;
    }
    const prev = this.inv.get(id);
    const changed = prev === undefined || !sameFacts(prev, facts);
    this.inv.set(id, facts);
    if (changed || job.fromEvent) {
      this.log.debug({ containerId: id, action: job.action, state: facts.state, changed }, 'container facts updated');
      this.safeEmit('upsert', facts, job.action, job.timeMs, changed);
    }
  }

  private forget(id: string, job: Job): void {
    const prev = this.inv.get(id);
    this.listMarks.delete(id);
    this.targets.delete(id);
    if (prev === undefined) return; // never reported, so nothing to retract
    this.inv.delete(id);
    this.log.debug({ containerId: id, action: job.action }, 'container removed');
    this.safeEmit('remove', id, job.action, job.timeMs, prev);
  }

  /** Facts for a container; undefined when it no longer exists. */
  private async inspectFacts(id: string): Promise<Facts | undefined> {
    let info: Dockerode.ContainerInspectInfo;
    try {
      info = await this.o.docker.getContainer(id).inspect();
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
    this.targets.set(info.Id, resourceTargetOf(info));
    const facts = toContainerFacts(info, await this.image(info.Image));
    return this.o.resolveFacts ? this.o.resolveFacts(facts, this.inv.get(facts.id)) : facts;
  }

  /**
   * Image inspect, once per image id (the id is a content hash, so the
   * config cannot change; only its repo digests can, rarely). Concurrent
   * callers share one request. A 404 (image force-removed under a
   * container) is cached as unknown; other errors are not cached and fail
   * the container's refresh, because facts with a missing image user would
   * read as "runs as root".
   */
  private image(imageId: string): Promise<Dockerode.ImageInspectInfo | undefined> {
    if (imageId === '') return Promise.resolve(undefined);
    let p = this.images.get(imageId);
    if (!p) {
      p = this.o.docker.getImage(imageId).inspect().then(
        (img) => img,
        (err: unknown) => {
          if (statusCode(err) === 404) return undefined;
          this.images.delete(imageId);
          throw err;
        },
      );
      this.images.set(imageId, p);
    }
    return p;
  }

  // ---- reconcile ---------------------------------------------------------

  private scheduleReconcile(): void {
    clearTimeout(this.reconcileTimer);
    if (this.stopped || this.o.reconcileIntervalMs === 0) return;
    this.reconcileTimer = setTimeout(() => void this.requestReconcile('timer'), this.o.reconcileIntervalMs);
  }

  private requestReconcile(reason: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.syncing) {
      this.reconcileAfterSync = true;
      return Promise.resolve();
    }
    if (this.reconcileRunning) {
      this.reconcileAgain = true;
      return this.reconcileRunning;
    }
    const run = (async () => {
      try {
        do {
          this.reconcileAgain = false;
          await this.reconcile(reason);
        } while (this.reconcileAgain && !this.stopped);
      } finally {
        this.reconcileRunning = undefined;
        this.scheduleReconcile();
      }
    })();
    this.reconcileRunning = run;
    return run;
  }

  private async reconcile(reason: string): Promise<void> {
    let list: Dockerode.ContainerInfo[];
    try {
      list = await this.o.docker.listContainers({ all: true });
    } catch (err) {
      this.log.warn({ err, reason }, 'listing containers failed; reconcile skipped');
      return;
    }
    if (this.stopped) return;
    const now = this.o.clock.now();
    const job = (): Job => ({ action: 'reconcile', timeMs: now, fromEvent: false });
    const listed = new Set<string>();
    const marks = new Map<string, string>();
    let suspects = 0;
    for (const c of list) {
      listed.add(c.Id);
      marks.set(c.Id, statusMarks(c));
      const known = this.inv.get(c.Id);
      if (!known || listingDiffers(c, known, this.listMarks.get(c.Id))) {
        suspects++;
        this.enqueue(c.Id, job());
      }
    }
    // Not listed: inspect rather than drop, since the container may have
    // been created after dockerd built the list; a 404 removes it.
    for (const id of this.inv.keys()) {
      if (!listed.has(id)) {
        suspects++;
        this.enqueue(id, job());
      }
    }
    this.listMarks = marks;
    // Forget image inspects no container uses any more.
    const used = new Set([...this.inv.values()].map((f) => f.imageId));
    for (const id of this.images.keys()) if (!used.has(id)) this.images.delete(id);
    this.log.debug({ reason, listed: list.length, suspects }, 'reconcile');
    this.safeEmit('reconcile', { reason, listed: list.length, suspects });
  }

  private safeEmit<K extends keyof ContainerWatcherEvents>(name: K, ...args: ContainerWatcherEvents[K]): void {
    try {
      // A throwing listener must not break the watcher's own bookkeeping.
      (this.emit as (n: K, ...a: ContainerWatcherEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      this.log.error({ err, event: name }, 'a container watcher listener threw');
    }
  }
}

/**
 * Whether a listing entry disagrees with the facts we hold: state, name,
 * image, networks, or the parenthesised parts of Status ("(Paused)",
 * "(healthy)", "Exited (137)") compared with the previous listing. Comparing
 * against the facts (not only the previous listing) repairs facts left stale
 * by a failed inspect. Durations ("Up 5 minutes") are ignored, or every
 * reconcile would re-inspect everything. Changes a listing cannot show
 * (`docker update`) rely on events.
 */
export function listingDiffers(c: Dockerode.ContainerInfo, f: Facts, previousMarks: string | undefined): boolean {
  if (c.State !== f.state) return true;
  if (typeof c.ImageID === 'string' && c.ImageID !== '' && c.ImageID !== f.imageId) return true;
  if (!(c.Names ?? []).includes(`/${f.name}`)) return true;
  const listed = Object.entries(c.NetworkSettings?.Networks ?? {}).map(([name, n]) => ({
    name, networkId: n?.NetworkID ?? '', ipAddress: n?.IPAddress || (n as { GlobalIPv6Address?: string } | undefined)?.GlobalIPv6Address || '',
  }));
  if (networksKey(listed) !== networksKey(f.networks)) return true;
  return previousMarks !== undefined && previousMarks !== statusMarks(c);
}

export function statusMarks(c: Pick<Dockerode.ContainerInfo, 'Status'>): string {
  return ((c.Status ?? '').match(/\([^)]*\)/g) ?? []).join(' ');
}

function networksKey(nets: ReadonlyArray<{ name: string; networkId: string; ipAddress: string }>): string {
  return nets.map((n) => `${n.name}=${n.networkId}/${n.ipAddress}`).sort().join(',');
}

function sameFacts(a: Facts, b: Facts): boolean {
  // toContainerFacts sorts its lists, and dockerd emits map keys sorted, so
  // equal facts serialize equally.
  return JSON.stringify(a) === JSON.stringify(b);
}

function statusCode(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function destroyStream(s: NodeJS.ReadableStream | undefined): void {
  (s as { destroy?: () => void } | undefined)?.destroy?.();
}

/** The inspect fields the disk and network sources need. */
export function resourceTargetOf(info: Dockerode.ContainerInspectInfo): ResourceTarget {
  const t: ResourceTarget = { id: info.Id, pid: typeof info.State?.Pid === 'number' ? info.State.Pid : 0 };
  const gd = info.GraphDriver as { Name?: unknown; Data?: Record<string, unknown> | null } | undefined;
  if (typeof gd?.Name === 'string' && gd.Name !== '') t.graphDriver = gd.Name;
  if (typeof gd?.Data?.['UpperDir'] === 'string' && gd.Data['UpperDir'] !== '') t.upperDir = gd.Data['UpperDir'];
  const logPath = (info as { LogPath?: unknown }).LogPath;
  if (typeof logPath === 'string' && logPath !== '') t.logPath = logPath;
  const logType = (info.HostConfig as { LogConfig?: { Type?: unknown } } | undefined)?.LogConfig?.Type;
  if (typeof logType === 'string' && logType !== '') t.logDriver = logType;
  return t;
}
