// Owns the measurement of the disk each running container holds on the host:
// its writable layer (the overlay2 upper dir) and its log files (json-file or
// `local`), read straight from the filesystem under the engine's data root —
// never `docker ps --size` or `docker system df`, which walk every layer of
// every container on each call.
//
// Cost is bounded per read() whatever the fleet's trees hold:
// - Logs: ONE stat of the current log file per container per read. The rotated
//   files (`<log>.1`, `<log>.2.gz` …) are listed again only when that file
//   rotated (it shrank or is a new inode), and on the slow rescan schedule.
// - Writable layers: a full walk (lstat of every entry, st_blocks*512 summed,
//   hard links counted once, like `du -s`) runs only when the layer is new,
//   when a watched directory's mtime moved (an entry was created, removed or
//   renamed in it), or every `rescanInterval`. The walk visits at most
//   `entryBudget` entries per read(), shared by all layers being walked, and
//   resumes where it stopped on the next read (a layer mid-walk keeps the chain
//   of directories from its root to where it stopped open: one descriptor per
//   level, at most maxDepth, plus the directory being listed). Between walks the
//   last complete total is reported.
// - The layer is the container's, and it can change it under the walk (swap a
//   directory the walk has listed but not entered for a symlink to /). So
//   nothing is opened or stat'ed by a path it could redirect: each directory is
//   opened O_DIRECTORY|O_NOFOLLOW relative to its parent's descriptor
//   (/proc/self/fd/<parent>/<name>) and kept only if fstat shows the dev+ino
//   lstat'ed when it was listed; its entries are lstat'ed as
//   /proc/self/fd/<fd>/<name>. Depth is then not limited by PATH_MAX either;
//   beyond maxDepth the layer is reported `writableIncomplete`. Costs ~1.4× the
//   CPU of path-based opendir on directory-heavy trees (open + fstat + opendir
//   per directory).
// - A file growing in place does not move its directory's mtime, so the
//   `largestFiles` biggest files of each layer are re-stat'ed on every read and
//   their growth (or shrinking) added to the last total: a container writing a
//   200 MB file is seen on the next read.
//
// Hand-written rather than a du-like package (get-folder-size, fast-folder-size,
// du): those walk a whole tree in one call, synchronously or without a bound on
// the entries per call, and keep no state between calls; the budget and the
// resumable walk are the point here.
//
// Every fs call is async (fs/promises, opendir), and the synchronous work
// between two awaits is one batch of at most STAT_BATCH entries, so a read()
// never holds the event loop for more than a fraction of a millisecond at a time.
import { constants as fsc, lstatSync, statSync, type Dir, type Stats } from 'node:fs';
import { lstat, open, opendir, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { resolveDiskUsageReaderOptions, type DiskUsageReaderOptions, type ResolvedDiskUsageReaderOptions } from './disk-usage-options';
import type { DiskUsage, DiskUsageSource, ResourceTarget } from './types';

export type { DiskUsageReaderOptions } from './disk-usage-options';

/** Entries lstat'ed in parallel by the walk (and read from a directory handle at once). */
const STAT_BATCH = 64;
/** Targets checked per event-loop turn with syncChecks (≈ 5 lstat of ~2 µs each per target). */
const SYNC_SLICE = 32;
/** Paths (in bytes) shorter than this are safe to lstat by path (PATH_MAX is 4096 bytes). */
const PATH_SAFE = 4000;
/** The file name of the `local` log driver inside `<data-root>/containers/<id>/local-logs/`. */
const LOCAL_LOG_FILE = 'container.log';

interface TrackedFile {
  path: string;
  ino: number;
  dev: number;
  /** st_blocks when the last complete walk saw it. */
  blocksAtScan: number;
  /** st_blocks at the latest re-stat (0 once gone). */
  blocksNow: number;
}

/**
 * One directory on the walk's current chain: opened with O_NOFOLLOW and checked to be the
 * directory that was lstat'ed when its parent was listed; everything under it is reached
 * through `/proc/self/fd/<fd>/…`, so a container swapping a component of its path for a
 * symlink cannot send the walk elsewhere, and depth is not limited by PATH_MAX.
 */
interface Frame {
  fh: FileHandle;
  /** Its path as listed (bookkeeping only: watched dirs, largest files). */
  path: string;
  depth: number;
  /** Its listing in progress; null once fully listed. */
  dir: Dir | null;
  /** Subdirectories found by the listing, still to descend into. */
  children: { name: string; dev: number; ino: number }[];
}

/** A walk of one writable layer in progress (a depth-first walk that keeps the chain of ancestors open). */
interface Walk {
  rootDev: number;
  rootIno: number;
  rootPath: string;
  /** The root has been opened (frames empty after that = done). */
  opened: boolean;
  /** The chain root → current directory, each kept open while anything under it is walked. */
  frames: Frame[];
  /** Set by forget()/close()/a dropped layer: the walk stops at its next step and its handles are closed. */
  cancelled: boolean;
  /** Something could not be walked (deeper than maxDepth, an unexpected open error): the total is a lower bound. */
  incomplete: boolean;
  bytes: number;
  /** Inodes of multiply-linked files already counted. */
  linked: Set<number>;
  largest: TrackedFile[];
  /** Shallow directories and their mtime when the walk lstat'ed them (watch candidates). */
  shallow: { path: string; depth: number; mtimeMs: number }[];
}

interface LayerState {
  upperDir: string;
  /** Total of the last complete walk; null before the first one completes. */
  scanBytes: number | null;
  /** When the next scheduled walk is due (rescanInterval after the last one, ±25 %). */
  rescanAt: number;
  largest: TrackedFile[];
  /** Directory → mtimeMs seen by the last complete walk. */
  watched: Map<string, number>;
  /** Watched directories seen changing: checked on every read from then on. */
  hot: Set<string>;
  /** Where the rotation through the other watched directories resumes. */
  cursor: number;
  walk: Walk | null;
  /** A watched directory moved (or a tracked file went): walk again. */
  dirty: boolean;
  /** The upper dir does not exist (container gone, or not overlay-backed after all). */
  gone: boolean;
  /** The last complete walk could not reach everything (see Walk.incomplete). */
  incomplete: boolean;
}

interface LogState {
  dir: string;
  base: string;
  ino: number;
  size: number;
  currentBytes: number;
  rotatedBytes: number;
  /** When the rotated files were last listed; -1 before the first listing. */
  listedAt: number;
  /** List the rotated files again on the next read (rotation seen; compression may still be running). */
  relistNext: boolean;
}

interface ContainerState {
  layer: LayerState | null;
  log: LogState | null;
  /** An incomplete layer was reported at warn already. */
  warnedIncomplete: boolean;
}

/**
 * Reads how much disk each running container holds: writable layer and logs.
 *
 * - `writableBytes`: the container's overlay2 upper dir (any driver reporting
 *   `GraphDriver.Data.UpperDir`, e.g. fuse-overlayfs, works the same). Other storage
 *   drivers (btrfs, zfs, devicemapper, vfs …) report no upper dir: null. Also null until
 *   the first walk of a layer has completed (one read for a typical layer; a layer of N
 *   entries takes about N / entryBudget reads), and when the upper dir does not exist.
 * - `logBytes`: json-file's LogPath plus its rotated (and compressed) files, or the
 *   `local` driver's `local-logs/` files. null for drivers keeping no file on the host
 *   (journald, syslog, fluentd, none …) and when the files are gone.
 *
 * Staleness: files of ≥ `largestFileMinBytes` growing or shrinking in place among the
 * `largestFiles` biggest, and entries created/removed in the layer's root or a directory
 * seen changing before ("hot"), are seen on the next read (plus the walk's own duration);
 * in the other `watchedDirs` shallowest directories within ⌈watched / watchRotation⌉
 * reads. Any other change deep in the tree (a new small file in /var/lib/app/cache, a
 * small file growing) shows up after at most `rescanInterval` (default 5 min) + the
 * walk's duration. Log files: every read.
 *
 * Sizes are allocated bytes (st_blocks × 512), like `du`: sparse files count what they
 * hold, not their length. Hard links inside a layer are counted once.
 *
 * `writableIncomplete: true` when the last walk could not reach everything (deeper than
 * `maxDepth`, or a directory that failed to open for another reason than vanishing or being
 * swapped): writableBytes is then a lower bound; the container is logged once at warn.
 */
export class DiskUsageReader implements DiskUsageSource {
  readonly options: ResolvedDiskUsageReaderOptions;
  private readonly state = new Map<string, ContainerState>();
  /** Layers being walked, in the order they get the budget (rotated for fairness). */
  private walkQueue: string[] = [];
  private closed = false;
  /** The read in progress: reads run one after another (a walk's open directory is not shareable). */
  private running: Promise<unknown> = Promise.resolve();

  /** lstat/stat for the per-read checks: async (thread pool) or, with syncChecks, synchronous. */
  private readonly checkLstat: (path: string) => Stats | null | Promise<Stats | null>;
  private readonly checkStat: (path: string) => Stats | null | Promise<Stats | null>;

  constructor(opts: DiskUsageReaderOptions = {}) {
    this.options = resolveDiskUsageReaderOptions(opts);
    this.checkLstat = this.options.syncChecks ? (p) => lstatSync(p, { throwIfNoEntry: false }) ?? null : lstatOrNull;
    this.checkStat = this.options.syncChecks ? (p) => statSync(p, { throwIfNoEntry: false }) ?? null : statOrNull;
  }

  read(targets: readonly ResourceTarget[], now: number): Promise<Map<string, DiskUsage>> {
    const r = this.running.then(() => this.readNow(targets, now));
    this.running = r.catch(() => undefined);
    return r;
  }

  private async readNow(targets: readonly ResourceTarget[], now: number): Promise<Map<string, DiskUsage>> {
    const out = new Map<string, DiskUsage>();
    if (this.closed) return out;
    // 1. The cheap per-target part: log stat, largest-file re-stats, watched-dir mtimes.
    //    With syncChecks, SYNC_SLICE targets per event-loop turn (a few hundred µs of lstat).
    const slice = this.options.syncChecks ? SYNC_SLICE : targets.length;
    for (let i = 0; i < targets.length; i += slice) {
      if (i > 0) await new Promise((r) => setImmediate(r));
      await forEachLimited(targets.slice(i, i + slice), this.options.concurrency, async (t) => {
        const st = this.stateOf(t);
        await Promise.all([this.refreshLog(st, now), this.checkLayer(t, st, now)]);
      });
    }
    // 2. The walks, within the entry budget.
    await this.spendBudget(new Set(targets.map((t) => t.id)), now);
    for (const t of targets) {
      const st = this.state.get(t.id);
      const writableBytes = st?.layer ? layerBytes(st.layer) : null;
      const u: DiskUsage = { writableBytes, logBytes: st?.log ? logBytes(st.log) : null };
      if (writableBytes !== null && st?.layer?.incomplete) u.writableIncomplete = true;
      out.set(t.id, u);
    }
    return out;
  }

  forget(id: string): void {
    const st = this.state.get(id);
    if (!st) return;
    this.state.delete(id);
    this.walkQueue = this.walkQueue.filter((q) => q !== id);
    if (st.layer?.walk) closeWalk(st.layer.walk);
  }

  close(): void {
    this.closed = true;
    for (const id of [...this.state.keys()]) this.forget(id);
  }

  /** Containers with state kept (for tests and metrics). */
  get size(): number {
    return this.state.size;
  }

  // ---------------------------------------------------------------- state

  private stateOf(t: ResourceTarget): ContainerState {
    let st = this.state.get(t.id);
    if (!st) {
      st = { layer: null, log: null, warnedIncomplete: false };
      this.state.set(t.id, st);
    }
    const upper = t.upperDir ? this.onHost(t.upperDir) : undefined;
    if (!upper) {
      if (st.layer) this.dropLayer(t.id, st);
    } else if (st.layer?.upperDir !== upper) {
      if (st.layer) this.dropLayer(t.id, st);
      st.layer = { upperDir: upper, scanBytes: null, rescanAt: 0, largest: [], watched: new Map(), hot: new Set(), cursor: 0, walk: null, dirty: true, gone: false, incomplete: false };
    }
    const where = this.logLocation(t);
    if (!where) st.log = null;
    else if (!st.log || st.log.dir !== where.dir || st.log.base !== where.base) {
      st.log = { ...where, ino: -1, size: 0, currentBytes: 0, rotatedBytes: 0, listedAt: -1, relistNext: false };
    }
    return st;
  }

  private dropLayer(id: string, st: ContainerState): void {
    if (st.layer?.walk) closeWalk(st.layer.walk);
    st.layer = null;
    this.walkQueue = this.walkQueue.filter((q) => q !== id);
  }

  /** Where a container's log files live, by driver; undefined when it keeps none on the host. */
  private logLocation(t: ResourceTarget): { dir: string; base: string } | undefined {
    const driver = t.logDriver || (t.logPath ? 'json-file' : '');
    if (driver === 'json-file') {
      return t.logPath ? { dir: dirname(this.onHost(t.logPath)), base: basename(t.logPath) } : undefined;
    }
    if (driver === 'local') {
      const root = this.options.dataRoot ?? dataRootFrom(t);
      return root ? { dir: this.onHost(join(root, 'containers', t.id, 'local-logs')), base: LOCAL_LOG_FILE } : undefined;
    }
    return undefined;
  }

  /** A host path (from inspect, or dataRoot) as this process sees it. */
  private onHost(path: string): string {
    return this.options.hostRoot === '/' ? path : join(this.options.hostRoot, path);
  }

  // ---------------------------------------------------------------- logs

  private async refreshLog(st: ContainerState, now: number): Promise<void> {
    const log = st.log;
    if (!log) return;
    const cur = await this.checkStat(join(log.dir, log.base));
    let list = log.listedAt < 0 || log.relistNext || now - log.listedAt >= this.options.rescanIntervalMs;
    log.relistNext = false;
    if (cur) {
      if (log.ino !== -1 && (cur.ino !== log.ino || cur.size < log.size)) {
        // Rotated. dockerd may still be compressing `.1` into `.1.gz`: list again next read too.
        list = true;
        log.relistNext = true;
      }
      log.ino = cur.ino;
      log.size = cur.size;
      log.currentBytes = cur.blocks * 512;
    } else {
      log.ino = -1;
      log.size = 0;
      log.currentBytes = 0;
      list = true;
    }
    if (!list) return;
    const names = await readdirOrNull(log.dir);
    if (names === null) {
      st.log = null; // the container's directory is gone
      return;
    }
    const rotated = names.filter((n) => isRotatedName(n, log.base));
    const sizes = await Promise.all(rotated.map((n) => statOrNull(join(log.dir, n))));
    log.rotatedBytes = sizes.reduce((sum, x) => sum + (x ? x.blocks * 512 : 0), 0);
    log.listedAt = now;
  }

  // ---------------------------------------------------------------- writable layer

  /** Re-stats the largest files and the watched directories; queues a walk when one is due. */
  private async checkLayer(t: ResourceTarget, st: ContainerState, now: number): Promise<void> {
    const layer = st.layer;
    if (!layer) return;
    if (layer.scanBytes !== null) {
      const [, moved] = await Promise.all([
        Promise.all(layer.largest.map(async (f) => {
          const s = await this.checkLstat(f.path);
          if (!s || s.ino !== f.ino || s.dev !== f.dev) {
            f.blocksNow = 0;
            layer.dirty = true;
          } else {
            f.blocksNow = s.blocks;
          }
        })),
        // A walk in progress records each directory's mtime as it goes: changes after that
        // are caught by comparing with its result, so checking now would only walk twice.
        layer.walk ? false : this.watchedMoved(layer),
      ]);
      if (moved === 'gone') {
        layer.gone = true;
        layer.scanBytes = null;
        layer.largest = [];
        layer.watched.clear();
        if (layer.walk) closeWalk(layer.walk);
        layer.walk = null;
        this.walkQueue = this.walkQueue.filter((q) => q !== t.id);
        layer.dirty = true; // should it come back (a restarted target), walk it again
        return;
      }
      if (moved) layer.dirty = true;
    }
    const due = layer.dirty || now >= layer.rescanAt;
    if (due && !layer.walk) {
      const rootSt = await lstatOrNull(layer.upperDir);
      if (!rootSt || !rootSt.isDirectory()) {
        layer.gone = true;
        layer.scanBytes = null;
        return;
      }
      layer.gone = false;
      layer.dirty = false;
      layer.walk = {
        rootDev: rootSt.dev, rootIno: rootSt.ino, rootPath: layer.upperDir, opened: false, frames: [], cancelled: false, incomplete: false,
        bytes: rootSt.blocks * 512, linked: new Set(), largest: [],
        shallow: [{ path: layer.upperDir, depth: 0, mtimeMs: rootSt.mtimeMs }],
      };
      this.walkQueue.push(t.id);
    }
  }

  /**
   * true when a checked directory's mtime moved; 'gone' when the layer's root is gone.
   * Checked on every read: the root and the "hot" directories (seen changing before); of
   * the other watched directories, `watchRotation` per read in turn.
   */
  private async watchedMoved(layer: LayerState): Promise<boolean | 'gone'> {
    const check = [layer.upperDir];
    const cold: string[] = [];
    for (const path of layer.watched.keys()) {
      if (path === layer.upperDir) continue;
      if (layer.hot.has(path)) check.push(path);
      else cold.push(path);
    }
    const turn = Math.min(this.options.watchRotation, cold.length);
    for (let i = 0; i < turn; i++) check.push(cold[(layer.cursor + i) % cold.length]!);
    layer.cursor = cold.length ? (layer.cursor + turn) % cold.length : 0;
    let moved = false;
    let rootGone = false;
    await Promise.all(check.map(async (path) => {
      const s = await this.checkLstat(path);
      if (s && s.mtimeMs === layer.watched.get(path)) return;
      moved = true;
      if (path === layer.upperDir) {
        rootGone = !s;
      } else if (s && layer.hot.size < this.options.watchedDirs) {
        layer.hot.add(path);
      }
    }));
    return rootGone ? 'gone' : moved;
  }

  /** Walks the queued layers until the entry budget of this read is spent. */
  private async spendBudget(live: Set<string>, now: number): Promise<void> {
    let budget = this.options.entryBudget;
    const queue = this.walkQueue;
    const deferred: string[] = [];
    while (budget > 0 && queue.length > 0) {
      const id = queue.shift()!;
      const layer = this.state.get(id)?.layer;
      if (!layer?.walk) continue;
      if (!live.has(id)) {
        deferred.push(id); // not sampled this time (e.g. paused): keep its place
        continue;
      }
      const walk = layer.walk;
      budget -= await this.step(walk, budget);
      if (this.state.get(id)?.layer !== layer) continue; // forgotten meanwhile
      if (walk.cancelled) continue;
      if (walk.opened && walk.frames.length === 0) this.finishWalk(id, layer, walk, now);
      else queue.push(id); // unfinished: to the back, so the next read starts with another layer
    }
    queue.push(...deferred);
  }

  /**
   * Visits up to `budget` entries of a walk (opening a directory counts as one); returns how
   * many it visited. Stops at once when the walk is cancelled (forget, close): results of
   * calls in flight then are dropped, never counted.
   */
  private async step(w: Walk, budget: number): Promise<number> {
    let used = 0;
    while (used < budget && !w.cancelled && !this.closed) {
      if (!w.opened) {
        w.opened = true;
        used++;
        const fh = await this.openChecked(w, w.rootPath, w.rootDev, w.rootIno);
        if (!fh) break;
        if (w.cancelled) {
          void fh.close().catch(() => undefined);
          break;
        }
        const f = await this.frame(w, fh, w.rootPath, 0);
        if (f) w.frames.push(f);
        continue;
      }
      const top = w.frames[w.frames.length - 1];
      if (!top) break;
      if (top.dir) {
        const dir = top.dir;
        const names: string[] = [];
        const limit = Math.min(STAT_BATCH, budget - used);
        while (names.length < limit) {
          let d;
          try {
            d = await dir.read();
          } catch {
            d = null;
          }
          if (w.cancelled) return used;
          if (!d) {
            top.dir = null;
            void dir.close().catch(() => undefined);
            break;
          }
          names.push(d.name);
        }
        used += names.length;
        // Children are lstat'ed relative to the pinned parent: never by a path a container can redirect.
        const base = `/proc/self/fd/${top.fh.fd}/`;
        const stats = await Promise.all(names.map((n) => lstatOrNull(base + n)));
        if (w.cancelled) return used;
        for (let i = 0; i < names.length; i++) this.account(w, top, names[i]!, stats[i]!);
        continue;
      }
      const child = top.children.pop();
      if (!child) {
        w.frames.pop();
        void top.fh.close().catch(() => undefined);
        continue;
      }
      used++;
      const path = join(top.path, child.name);
      const fh = await this.openChecked(w, `/proc/self/fd/${top.fh.fd}/${child.name}`, child.dev, child.ino);
      if (!fh) continue;
      if (w.cancelled) {
        void fh.close().catch(() => undefined);
        return used;
      }
      const f = await this.frame(w, fh, path, top.depth + 1);
      if (f) w.frames.push(f);
    }
    return used;
  }

  /**
   * Opens a directory without following a symlink in its last component, and only if it is
   * still the directory (dev + ino) that was lstat'ed: null when it vanished or was swapped
   * (nothing of ours to count there), or could not be opened (the walk is then incomplete).
   */
  private async openChecked(w: Walk, path: string, dev: number, ino: number): Promise<FileHandle | null> {
    let fh: FileHandle;
    try {
      fh = await open(path, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // ENOENT: removed; ELOOP: now a symlink; ENOTDIR: now something else. All: not a directory of this layer any more.
      if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENOTDIR') w.incomplete = true;
      return null;
    }
    try {
      const s = await fh.stat();
      if (s.dev === dev && s.ino === ino) return fh;
    } catch {
      w.incomplete = true;
    }
    void fh.close().catch(() => undefined);
    return null;
  }

  /** A frame for an opened directory: its listing is read through the pinned descriptor. */
  private async frame(w: Walk, fh: FileHandle, path: string, depth: number): Promise<Frame | null> {
    try {
      const dir = await opendir(`/proc/self/fd/${fh.fd}`, { bufferSize: STAT_BATCH });
      if (w.cancelled) {
        void dir.close().catch(() => undefined);
        void fh.close().catch(() => undefined);
        return null;
      }
      return { fh, path, depth, dir, children: [] };
    } catch {
      w.incomplete = true;
      void fh.close().catch(() => undefined);
      return null;
    }
  }

  private account(w: Walk, parent: Frame, name: string, s: Stats | null): void {
    if (!s || s.dev !== w.rootDev) return; // vanished, or a mount inside the layer (not ours to count)
    const depth = parent.depth + 1;
    const path = join(parent.path, name);
    // Paths the kernel cannot resolve (≥ PATH_MAX) are counted but never re-stat'ed by path.
    const byPath = path.length < PATH_SAFE / 3 || Buffer.byteLength(path) < PATH_SAFE;
    if (s.isDirectory()) {
      w.bytes += s.blocks * 512;
      if (depth > this.options.maxDepth) w.incomplete = true; // its own blocks counted, what it holds not
      else parent.children.push({ name, dev: s.dev, ino: s.ino });
      if (depth <= this.options.watchDepth && byPath) {
        w.shallow.push({ path, depth, mtimeMs: s.mtimeMs });
        if (w.shallow.length > 4 * this.options.watchedDirs) keepShallowest(w.shallow, this.options.watchedDirs);
      }
      return;
    }
    if (s.nlink > 1) {
      if (w.linked.has(s.ino)) return;
      w.linked.add(s.ino);
    }
    w.bytes += s.blocks * 512;
    const k = this.options.largestFiles;
    if (k > 0 && byPath && s.isFile() && s.blocks * 512 >= this.options.largestFileMinBytes) {
      const l = w.largest;
      if (l.length < k || s.blocks > l[l.length - 1]!.blocksAtScan) {
        l.push({ path, ino: s.ino, dev: s.dev, blocksAtScan: s.blocks, blocksNow: s.blocks });
        l.sort((a, b) => b.blocksAtScan - a.blocksAtScan);
        if (l.length > k) l.length = k;
      }
    }
  }

  private finishWalk(id: string, layer: LayerState, w: Walk, now: number): void {
    layer.incomplete = w.incomplete;
    const st = this.state.get(id);
    if (w.incomplete && st && !st.warnedIncomplete) {
      st.warnedIncomplete = true;
      this.options.logger?.warn({ container: id, upperDir: layer.upperDir, countedBytes: w.bytes, maxDepth: this.options.maxDepth },
        'disk usage: writable layer not fully counted (deeper than maxDepth, or a directory could not be opened): reporting a lower bound');
    }
    keepShallowest(w.shallow, this.options.watchedDirs);
    layer.watched = new Map(w.shallow.map((d) => [d.path, d.mtimeMs]));
    layer.scanBytes = w.bytes;
    layer.largest = w.largest;
    // Spread: layers first walked together (an agent start, a deploy) are not walked again together.
    layer.rescanAt = now + this.options.rescanIntervalMs * (0.75 + Math.random() / 2);
    layer.walk = null;
  }
}

// ------------------------------------------------------------------ helpers

/** The last complete walk's total, corrected by how the largest files grew or shrank since. */
function layerBytes(l: LayerState): number | null {
  if (l.scanBytes === null || l.gone) return null;
  let b = l.scanBytes;
  for (const f of l.largest) b += (f.blocksNow - f.blocksAtScan) * 512;
  return Math.max(0, b);
}

function logBytes(l: LogState): number | null {
  if (l.listedAt < 0) return null;
  return l.currentBytes + l.rotatedBytes;
}

/** `<base>.<n>` or `<base>.<n>.gz` (json-file and local rotation), and a compressed current `<base>.gz`. */
export function isRotatedName(name: string, base: string): boolean {
  if (!name.startsWith(base)) return false;
  return /^(\.\d+)?(\.gz)?$/.test(name.slice(base.length)) && name.length > base.length;
}

/** The data root from an overlay2 upper dir (`<root>/overlay2/<layer>/diff`) or a json-file LogPath (`<root>/containers/<id>/<id>-json.log`). */
export function dataRootFrom(t: Pick<ResourceTarget, 'upperDir' | 'logPath'>): string | undefined {
  const u = t.upperDir ? /^(.+)\/overlay2\/[^/]+\/diff\/?$/.exec(t.upperDir) : null;
  if (u) return u[1];
  const l = t.logPath ? /^(.+)\/containers\/[^/]+\/[^/]+$/.exec(t.logPath) : null;
  return l ? l[1] : undefined;
}

function keepShallowest(list: Walk['shallow'], n: number): void {
  list.sort((a, b) => a.depth - b.depth);
  if (list.length > n) list.length = n;
}

/** Cancels a walk and closes its handles now (not at GC). */
function closeWalk(w: Walk): void {
  w.cancelled = true;
  for (const f of w.frames) {
    if (f.dir) void f.dir.close().catch(() => undefined);
    void f.fh.close().catch(() => undefined);
  }
  w.frames = [];
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch {
    return null;
  }
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch {
    return null;
  }
}

async function readdirOrNull(path: string): Promise<string[] | null> {
  try {
    return await readdir(path);
  } catch {
    return null;
  }
}

/** Runs fn over items, at most `limit` at once. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
