// Owns the agent's memory of when each image was last used by a container.
// dockerd forgets which image a container was made from once the container
// is removed, so an image a since-removed container ran last week would look
// "never used" to the hygiene report — and be pruned as such. The running
// agent therefore remembers, per image id, the newest use it saw: container
// create/start/stop events and removals (the watcher's upsert/remove), and
// running containers at the initial sync and on every reconcile.
//
// Kept in STATE_DIR/image-last-used.json (0600, replaced atomically),
// written at most every `writeIntervalMs`, on flush() (before each host
// audit, whose child process reads the file) and at close(); bounded to
// `maxEntries` images (the longest unused are forgotten first).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BulkheadError, writeFileAtomic, type Logger } from '@bulkhead/shared';
import type { Facts } from '../docker/container-facts';

export const IMAGE_LAST_USED_FILE = 'image-last-used.json';
export const DEFAULT_LAST_USED_MAX_ENTRIES = 10_000;
export const DEFAULT_LAST_USED_WRITE_INTERVAL_MS = 60_000;
/** A running container's image is stamped again at most this often (idle days are what matter, not seconds). */
export const RUNNING_REFRESH_MS = 3_600_000;

/** The file under a state directory. */
export function imageLastUsedPath(stateDir: string): string {
  return join(stateDir, IMAGE_LAST_USED_FILE);
}

interface LastUsedFile {
  version: 1;
  writtenAt: string;
  /** Image id → epoch ms of its last known use. */
  images: Record<string, number>;
}

/** What a watcher offers (ContainerWatcher satisfies it). */
export interface WatcherLike {
  on(event: 'snapshot', fn: (facts: Facts[]) => void): unknown;
  on(event: 'upsert', fn: (facts: Facts, action: string, timeMs: number, changed: boolean) => void): unknown;
  on(event: 'remove', fn: (id: string, action: string, timeMs: number, lastFacts: Facts) => void): unknown;
  on(event: 'reconcile', fn: () => void): unknown;
  off(event: 'snapshot' | 'upsert' | 'remove' | 'reconcile', fn: (...a: any[]) => void): unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
  inventory(): Facts[];
}

/**
 * Reads the file (the audit's child process, `prune-images`). A missing file
 * is an empty memory; an unreadable or malformed one is an error — a prune
 * must not take "can't read it" for "never used".
 */
export function readImageLastUsed(path: string): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new BulkheadError('BK_ERR_INTERNAL', `cannot read the image last-use memory ${path}: ${(e as Error).message}`, { cause: e });
  }
  return parseLastUsed(text, path);
}

function parseLastUsed(text: string, path: string): Map<string, number> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new BulkheadError('BK_ERR_INTERNAL', `the image last-use memory ${path} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const images = (doc as Partial<LastUsedFile> | null)?.images;
  if (typeof doc !== 'object' || doc === null || (doc as LastUsedFile).version !== 1 || typeof images !== 'object' || images === null || Array.isArray(images)) {
    throw new BulkheadError('BK_ERR_INTERNAL', `the image last-use memory ${path} is not a version 1 document`);
  }
  const out = new Map<string, number>();
  for (const [id, at] of Object.entries(images)) {
    if (id !== '' && id.length <= 256 && typeof at === 'number' && Number.isFinite(at) && at > 0) out.set(id, at);
  }
  return out;
}

export interface ImageLastUsedOptions {
  /** The file (imageLastUsedPath(stateDir)). */
  path: string;
  logger: Logger;
  /** Clock (ms). Default Date.now. */
  now?: () => number;
  /** Writes at most this often. Default 60 s. */
  writeIntervalMs?: number;
  /** Images remembered at most. Default 10 000. */
  maxEntries?: number;
}

export class ImageLastUsedStore {
  private readonly uses: Map<string, number>;
  private readonly now: () => number;
  private readonly writeIntervalMs: number;
  private readonly maxEntries: number;
  private timer: NodeJS.Timeout | undefined;
  private dirty = false;
  private closed = false;
  private writes = 0;

  private constructor(private readonly o: ImageLastUsedOptions, loaded: Map<string, number>) {
    this.uses = loaded;
    this.now = o.now ?? Date.now;
    this.writeIntervalMs = o.writeIntervalMs ?? DEFAULT_LAST_USED_WRITE_INTERVAL_MS;
    this.maxEntries = o.maxEntries ?? DEFAULT_LAST_USED_MAX_ENTRIES;
    if (!(this.maxEntries >= 1)) throw new RangeError('ImageLastUsedStore: maxEntries must be ≥ 1');
  }

  /**
   * Loads what an earlier run remembered. A malformed file is logged and
   * replaced (at the next write) rather than stopping the agent: losing the
   * memory makes the report less exact, it does not break enforcement.
   */
  static open(o: ImageLastUsedOptions): ImageLastUsedStore {
    let loaded = new Map<string, number>();
    try {
      loaded = readImageLastUsed(o.path);
    } catch (err) {
      o.logger.error({ err: (err as Error).message, path: o.path }, 'image last-use memory unreadable; starting empty');
    }
    const s = new ImageLastUsedStore(o, loaded);
    s.trim();
    return s;
  }

  get path(): string {
    return this.o.path;
  }

  get size(): number {
    return this.uses.size;
  }

  /** Files written so far (tests, logs). */
  get writeCount(): number {
    return this.writes;
  }

  get(imageId: string): number | undefined {
    return this.uses.get(imageId);
  }

  /** A copy (for an in-process audit). */
  snapshot(): Map<string, number> {
    return new Map(this.uses);
  }

  /** Records a use; an older time than the one known changes nothing. Returns true when it changed. */
  touch(imageId: string, atMs: number): boolean {
    if (this.closed || imageId === '' || !Number.isFinite(atMs) || atMs <= 0) return false;
    const at = Math.min(atMs, this.now()); // never in the future: a skewed event time must not shield an image
    const known = this.uses.get(imageId);
    if (known !== undefined && known >= at) return false;
    this.uses.set(imageId, at);
    if (this.uses.size > this.maxEntries + 100) this.trim();
    this.markDirty();
    return true;
  }

  /**
   * A container seen (event, sync, reconcile, removal): its image was in use
   * until now if it runs, else until the newest of its created, started and
   * finished times. `fallbackMs` (the event's time) stands in when the facts
   * carry no time. `refresh` (periodic sightings): stamp a running
   * container's image only if the known use is older than RUNNING_REFRESH_MS.
   */
  observe(f: Facts, fallbackMs: number, refresh = false): void {
    const id = f.imageId;
    if (!id) return;
    const live = f.state === 'running' || f.state === 'paused' || f.state === 'restarting';
    if (live && refresh) {
      const known = this.uses.get(id);
      if (known !== undefined && fallbackMs - known < RUNNING_REFRESH_MS) return;
    }
    const times = Math.max(Number(f.createdAtMs) || 0, Number(f.startedAtMs) || 0, Number(f.finishedAtMs) || 0);
    this.touch(id, live || times <= 0 ? fallbackMs : times);
  }

  /** Follows a watcher's inventory; returns the unsubscribe. */
  attach(w: WatcherLike): () => void {
    const onSnapshot = (all: Facts[]): void => all.forEach((f) => this.observe(f, this.now(), true));
    const onUpsert = (f: Facts, action: string, timeMs: number): void => {
      if (action === 'reconcile') this.observe(f, this.now(), true);
      else this.observe(f, timeMs > 0 ? timeMs : this.now());
    };
    const onRemove = (_id: string, _action: string, timeMs: number, last: Facts): void => {
      if (last) this.observe(last, timeMs > 0 ? timeMs : this.now());
    };
    const onReconcile = (): void => {
      const now = this.now();
      for (const f of w.inventory()) if (f.state === 'running' || f.state === 'paused' || f.state === 'restarting') this.observe(f, now, true);
    };
    w.on('snapshot', onSnapshot);
    w.on('upsert', onUpsert);
    w.on('remove', onRemove);
    w.on('reconcile', onReconcile);
    return () => {
      w.off('snapshot', onSnapshot);
      w.off('upsert', onUpsert);
      w.off('remove', onRemove);
      w.off('reconcile', onReconcile);
    };
  }

  /** Writes now if anything changed since the last write (before an audit reads the file). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.dirty) return;
    this.trim();
    const doc: LastUsedFile = { version: 1, writtenAt: new Date(this.now()).toISOString(), images: Object.fromEntries(this.uses) };
    try {
      writeFileAtomic(this.o.path, `${JSON.stringify(doc)}\n`, 0o600);
      this.dirty = false;
      this.writes++;
    } catch (err) {
      // Kept dirty: the next change, flush or close tries again.
      this.o.logger.warn({ err: (err as Error).message, path: this.o.path }, 'image last-use memory not written');
    }
  }

  /** Stops the timer and writes what is pending (agent shutdown). */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private markDirty(): void {
    this.dirty = true;
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.writeIntervalMs);
    this.timer.unref();
  }

  /** Forgets the longest-unused images beyond maxEntries. */
  private trim(): void {
    if (this.uses.size <= this.maxEntries) return;
    const keep = [...this.uses].sort((a, b) => b[1] - a[1]).slice(0, this.maxEntries);
    this.uses.clear();
    for (const [id, at] of keep) this.uses.set(id, at);
    this.dirty = true;
  }
}
