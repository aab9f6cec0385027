// Owns reading one container's CPU, memory and pids usage straight from its
// cgroup, for cgroup v1 (separate cpu/cpuacct/memory/pids hierarchies, as on
// hybrid hosts) and v2 (one unified hierarchy), with Docker's cgroupfs and
// systemd drivers. Never `docker stats`: that costs the engine ~2 s of
// sampling per container; these are a few small file reads.
//
// Where a container's cgroup is:
//   v1 cgroupfs  /sys/fs/cgroup/<ctrl>/docker/<id>
//   v1 systemd   /sys/fs/cgroup/<ctrl>/system.slice/docker-<id>.scope
//   v2 systemd   /sys/fs/cgroup/system.slice/docker-<id>.scope
//   v2 cgroupfs  /sys/fs/cgroup/docker/<id>
// and, for anything else (a --cgroup-parent, a nested setup), whatever
// /proc/<pid>/cgroup of the container's init process says.
//
// Cost (it runs for every container every few seconds): the per-sample
// files are kept open and re-read with one pread at offset 0 (the kernel
// regenerates them), which is about a tenth of open+read+close; limits are
// re-read every 30 s; memory.stat and pids.current can be skipped on a read
// (their last values are reused) when the caller does not need them fresh.
//
// Block IO (bytes and operations read/written, summed over devices) is read
// only when a read asks for it (ReadDetail.blkio), so callers that do not
// pay nothing: v2 io.stat; v1 blkio.throttle.io_service_bytes/io_serviced
// (the _recursive variants where the kernel has them), which modern kernels
// fill for every cgroup whether or not it is throttled — and, where those
// show no device at all, the CFQ / BFQ scheduler files of older kernels.
// On cgroup v1, buffered writes are charged to the cgroup only when the
// writer itself issues the IO (direct IO, fsync-heavy writes): page-cache
// writeback is done by kernel threads in the root cgroup. v2 charges
// writeback to the dirtying cgroup.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BlkioUsage, closeFile, openFile, parseBlkioRw, parseCfsQuota, parseCounter, parseCpuMax, parseIoStat, parseLimit, parseProcCgroup, preadCounterSync, preadFileSync,
  preadStatSync, readSmallFile, readSmallFileSync, statValue,
} from './cgroup-files';

export type { BlkioUsage } from './cgroup-files';

export type CgroupVersion = 1 | 2;
export type CgroupDriver = 'cgroupfs' | 'systemd';

export interface CgroupReaderOptions {
  /** Where the host's filesystem is visible. Default "/". */
  root?: string | undefined;
  /** The cgroup mount. Default `<root>/sys/fs/cgroup`. */
  cgroupRoot?: string | undefined;
  /** The host's /proc, for the /proc/<pid>/cgroup fallback. Default `<root>/proc`. */
  procRoot?: string | undefined;
  /** Default 'auto': 2 when `<cgroupRoot>/cgroup.controllers` exists (a hybrid host is 1). */
  version?: CgroupVersion | 'auto' | undefined;
  /** Docker's cgroup driver (docker info CgroupDriver). Default 'auto': try both layouts. */
  driver?: CgroupDriver | 'auto' | undefined;
  /** dockerd --cgroup-parent. Default "docker" (cgroupfs) / "system.slice" (systemd). */
  cgroupParent?: string | undefined;
  /**
   * Report memory as the working set (usage minus inactive page cache), as
   * `docker stats` does; the kernel reclaims that cache before OOM, so a
   * "memory above N % of its limit" rule should not fire on it. Default true.
   */
  workingSet?: boolean | undefined;
  /** Limits (memory.max, pids.max, cpu quota) are re-read at most this often per container. Default 30 s; 0: every read. */
  limitsTtlMs?: number | undefined;
  /**
   * Keep the per-sample files open between reads (4 fds per running
   * container; Node raises RLIMIT_NOFILE to the hard limit at start). Default true.
   */
  keepOpen?: boolean | undefined;
  /** At most this many files kept open; beyond it, open/read/close. Default 8192. */
  maxOpenFiles?: number | undefined;
  /** Clock (ms). Default Date.now. */
  now?: (() => number) | undefined;
}

/** Which optional files a read refreshes; skipped ones keep their last value. */
export interface ReadDetail {
  /** memory.stat (for the working set). Default true. */
  memoryStat?: boolean;
  /** pids.current. Default true. */
  pids?: boolean;
  /** Block IO (v2 io.stat, v1 blkio.*). Default FALSE: read only when asked. */
  blkio?: boolean;
}

export interface CgroupUsage {
  containerId: string;
  /** When it was read (ms since epoch). */
  at: number;
  /** Cumulative CPU time of the cgroup, ns. */
  cpuUsageNs: number;
  /** Memory in use: the working set (see `workingSet`), bytes. */
  memoryBytes: number;
  /** Raw usage including page cache (memory.current / memory.usage_in_bytes). */
  memoryUsageBytes: number;
  /** 0 = unlimited. */
  memoryLimitBytes: number;
  pids: number;
  /** 0 = unlimited. */
  pidsLimit: number;
  /** CPU quota in CPUs (cfs quota / period); 0 = unlimited. */
  cpuLimitCores: number;
  /**
   * Cumulative block IO, summed over devices: present once a read asked for
   * it (ReadDetail.blkio; later reads that do not ask repeat the last value),
   * absent when never asked or when the cgroup has no io/blkio controller.
   */
  blkio?: BlkioUsage;
}

/** Where a container's cgroup files are. */
export interface CgroupLocation {
  /** v2: the one directory; v1: the memory controller's. */
  dir: string;
  cpuUsage: string;
  memoryUsage: string;
  memoryStat: string;
  pidsCurrent: string | undefined;
  memoryLimit: string;
  pidsLimit: string | undefined;
  /** v2: [cpu.max]; v1: [cfs_quota_us, cfs_period_us]; [] when the cpu controller is not found. */
  cpuLimit: string[];
  /** v2: io.stat; v1: the blkio controller's directory (which files it has is found on the first blkio read). */
  blkio: string;
}

type HotFile = 'cpuUsage' | 'memoryUsage' | 'memoryStat' | 'pidsCurrent' | 'ioBytes' | 'ioOps';
type LocatedFile = 'cpuUsage' | 'memoryUsage' | 'memoryStat' | 'pidsCurrent';

/**
 * v1 block-IO files, [bytes, ops], in the order tried: the throttle files
 * (every IO, on every kernel with blk-throttle), recursive first.
 */
const V1_IO: ReadonlyArray<readonly [string, string]> = [
  ['blkio.throttle.io_service_bytes_recursive', 'blkio.throttle.io_serviced_recursive'],
  ['blkio.throttle.io_service_bytes', 'blkio.throttle.io_serviced'],
];
/** Read when the throttle files list no device: the CFQ (kernels before 5.0) and BFQ schedulers' own counts. */
const V1_IO_LEGACY: ReadonlyArray<readonly [string, string]> = [
  ['blkio.io_service_bytes_recursive', 'blkio.io_serviced_recursive'],
  ['blkio.bfq.io_service_bytes_recursive', 'blkio.bfq.io_serviced_recursive'],
];

interface Entry {
  loc: CgroupLocation;
  fds: Partial<Record<HotFile, number>>;
  opening: Partial<Record<HotFile, Promise<number>>>;
  limits: { memoryLimitBytes: number; pidsLimit: number; cpuLimitCores: number; readAt: number } | undefined;
  /** Last inactive file cache and pids, reused when a read skips those files. */
  inactive: number;
  pids: number;
  /** Optional files this cgroup does not have (e.g. no pids controller): not tried again. */
  missing: Set<HotFile>;
  /** v1: the block-IO files found on the first blkio read (null: none). */
  io: { bytes: string; ops: string } | null | undefined;
  /** v1: legacy block-IO files found absent. */
  missingLegacy: Set<string>;
  /** Last block-IO counters, reused when a read skips them. */
  blkio: BlkioUsage | undefined;
}

/** Thrown when a container has no cgroup (not running, or already gone). `code` is 'ENOENT'. */
export class CgroupNotFoundError extends Error {
  readonly code = 'ENOENT';
  constructor(readonly containerId: string) {
    super(`no cgroup found for container ${containerId.slice(0, 12)}`);
    this.name = 'CgroupNotFoundError';
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** The cgroup is gone (ENOENT) or being removed (ENODEV). */
function isGone(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ENOENT' || code === 'ENODEV' || code === 'ESRCH';
}

const SIZES: Record<HotFile, number> = { cpuUsage: 512, memoryUsage: 64, memoryStat: 4000, pidsCurrent: 64, ioBytes: 1024, ioOps: 1024 };
const FULL: ReadDetail = { memoryStat: true, pids: true };

export class CgroupReader {
  private readonly entries = new Map<string, Entry>();
  private openCount = 0;
  /** The driver layout that worked last, tried first next time. */
  private preferred: CgroupDriver;

  private constructor(
    readonly version: CgroupVersion,
    readonly driver: CgroupDriver | 'auto',
    private readonly cgroupRoot: string,
    private readonly procRoot: string,
    private readonly parent: string | undefined,
    private readonly workingSet: boolean,
    private readonly limitsTtlMs: number,
    private readonly keepOpen: boolean,
    private readonly maxOpenFiles: number,
    private readonly now: () => number,
  ) {
    this.preferred = driver === 'systemd' ? 'systemd' : 'cgroupfs';
  }

  /** A reader for the host's cgroup layout (detects the version unless given). */
  static async forHost(o: CgroupReaderOptions = {}): Promise<CgroupReader> {
    const root = o.root ?? '/';
    const cgroupRoot = o.cgroupRoot ?? join(root, 'sys/fs/cgroup');
    const procRoot = o.procRoot ?? join(root, 'proc');
    let version = o.version ?? 'auto';
    if (version === 'auto') version = (await exists(join(cgroupRoot, 'cgroup.controllers'))) ? 2 : 1;
    return new CgroupReader(
      version, o.driver ?? 'auto', cgroupRoot, procRoot, o.cgroupParent, o.workingSet !== false, o.limitsTtlMs ?? 30_000,
      o.keepOpen !== false, o.maxOpenFiles ?? 8192, o.now ?? Date.now,
    );
  }

  /**
   * Whether the kernel counts block IO per cgroup here. v1 only: since Linux 6.10 the
   * throttling layer (whose counters the v1 blkio files are) is set up on a disk only once some
   * cgroup configures a limit on it, and until then every cgroup's counters stay at 0 — seen as
   * the root cgroup's throttle file listing no device. 'inactive' then; 'active' when it lists
   * one; 'unknown' on v2 (io.stat counts regardless), without the blkio controller, or unreadable.
   */
  async blkioAccounting(): Promise<'active' | 'inactive' | 'unknown'> {
    if (this.version === 2) return 'unknown';
    try {
      const text = await readSmallFile(join(this.cgroupRoot, 'blkio', 'blkio.throttle.io_service_bytes'));
      return /^\d+:\d+ /m.test(text) ? 'active' : 'inactive';
    } catch {
      return 'unknown';
    }
  }

  /** Files held open right now. */
  get openFiles(): number {
    return this.openCount;
  }

  /**
   * Reads a running container's usage. `pid` (its init process, inspect
   * State.Pid) enables the /proc/<pid>/cgroup fallback for cgroups in
   * non-standard places. Throws CgroupNotFoundError when there is none.
   */
  async read(containerId: string, pid?: number, detail: ReadDetail = FULL): Promise<CgroupUsage> {
    const cached = this.entries.get(containerId);
    try {
      return await this.readEntry(containerId, cached ?? (await this.entry(containerId, pid)), detail);
    } catch (e) {
      if (!isGone(e)) throw e;
      this.forget(containerId);
      if (!cached) throw new CgroupNotFoundError(containerId);
    }
    // A cached location vanished: the container stopped, or restarted under
    // another cgroup. Look once more before giving up.
    try {
      return await this.readEntry(containerId, await this.entry(containerId, pid), FULL);
    } catch (e) {
      if (!isGone(e)) throw e;
      this.forget(containerId);
      throw new CgroupNotFoundError(containerId);
    }
  }

  /**
   * The reading read() would give, synchronously, when every file it needs is
   * already open (every read of a container after its first, with keepOpen):
   * a few preads parsed in place, no promise and no string. Undefined when a
   * file is not open yet, block IO is asked for, or anything fails — read()
   * then does the read and deals with what went wrong, as it always did.
   */
  readSync(containerId: string, _pid?: number, detail: ReadDetail = FULL): CgroupUsage | undefined {
    const e = this.entries.get(containerId);
    if (!e || detail.blkio === true) return undefined;
    const wantStat = this.workingSet && detail.memoryStat !== false && !e.missing.has('memoryStat');
    const wantPids = detail.pids !== false && e.loc.pidsCurrent !== undefined && !e.missing.has('pidsCurrent');
    const { cpuUsage, memoryUsage, memoryStat, pidsCurrent } = e.fds;
    if (cpuUsage === undefined || memoryUsage === undefined || (wantStat && memoryStat === undefined) || (wantPids && pidsCurrent === undefined)) return undefined;
    const now = this.now();
    let cpuUsageNs: number;
    let usage: number;
    let inactive: number | undefined;
    let pids: number | undefined;
    try {
      cpuUsageNs = this.version === 2 ? (preadStatSync(cpuUsage, 'usage_usec') ?? 0) * 1000 : preadCounterSync(cpuUsage);
      usage = preadCounterSync(memoryUsage);
      if (wantStat) inactive = preadStatSync(memoryStat!, this.version === 2 ? 'inactive_file' : 'total_inactive_file') ?? 0;
      if (wantPids) pids = preadCounterSync(pidsCurrent!);
    } catch {
      return undefined;
    }
    // From here as readEntry (which read the same files).
    const limitsDue = !e.limits || this.limitsTtlMs <= 0 || now - e.limits.readAt >= this.limitsTtlMs;
    if (limitsDue) this.readLimits(e, now);
    if (inactive !== undefined) e.inactive = inactive;
    if (pids !== undefined) e.pids = pids;
    return this.usageOf(e, containerId, now, cpuUsageNs, usage);
  }

  /** One reading from the entry's cached limits, inactive/pids/blkio and the two counters just read (both read paths). */
  private usageOf(e: Entry, containerId: string, now: number, cpuUsageNs: number, usage: number): CgroupUsage {
    const limits = e.limits!;
    const out: CgroupUsage = {
      containerId,
      at: now,
      cpuUsageNs,
      memoryBytes: this.workingSet ? Math.max(0, usage - e.inactive) : usage,
      memoryUsageBytes: usage,
      memoryLimitBytes: limits.memoryLimitBytes,
      pids: e.pids,
      pidsLimit: limits.pidsLimit,
      cpuLimitCores: limits.cpuLimitCores,
    };
    if (e.blkio) out.blkio = e.blkio;
    return out;
  }

  /** Drops what is cached about a container and closes its files (call on `destroy`). */
  forget(containerId: string): void {
    const e = this.entries.get(containerId);
    if (!e) return;
    this.entries.delete(containerId);
    for (const fd of Object.values(e.fds)) {
      closeFile(fd);
      this.openCount--;
    }
    // Opens still in flight close when they land (see hot()).
  }

  /** Closes every kept-open file and forgets every container. */
  close(): void {
    for (const id of [...this.entries.keys()]) this.forget(id);
  }

  /** Makes the next read re-read the limits (call after `docker update`). */
  invalidateLimits(containerId: string): void {
    const e = this.entries.get(containerId);
    if (e) e.limits = undefined;
  }

  /** Finds a container's cgroup files. Throws CgroupNotFoundError. */
  async locate(containerId: string, pid?: number): Promise<CgroupLocation> {
    const rel = (d: CgroupDriver): string =>
      d === 'cgroupfs' ? `${this.parent ?? 'docker'}/${containerId}` : `${this.parent ?? 'system.slice'}/docker-${containerId}.scope`;
    const order: CgroupDriver[] = this.driver !== 'auto' ? [this.driver] : this.preferred === 'cgroupfs' ? ['cgroupfs', 'systemd'] : ['systemd', 'cgroupfs'];
    for (const d of order) {
      const loc = this.version === 2 ? this.v2(join(this.cgroupRoot, rel(d))) : this.v1((ctrl) => join(this.cgroupRoot, ctrl, rel(d)));
      if (await exists(loc.dir)) {
        if (this.driver === 'auto') this.preferred = d;
        return loc;
      }
    }
    if (pid !== undefined && pid > 0) {
      const map = parseProcCgroup(await readSmallFile(join(this.procRoot, String(pid), 'cgroup')).catch(() => ''));
      let loc: CgroupLocation | undefined;
      if (this.version === 2) {
        const p = map.get('');
        if (p !== undefined) loc = this.v2(join(this.cgroupRoot, p));
      } else if (map.has('memory')) {
        loc = this.v1((ctrl) => {
          const p = map.get(ctrl) ?? (ctrl === 'cpuacct' ? map.get('cpu') : undefined) ?? map.get('memory')!;
          return join(this.cgroupRoot, ctrl, p);
        });
      }
      if (loc && (await exists(loc.dir))) return loc;
    }
    throw new CgroupNotFoundError(containerId);
  }

  private v2(dir: string): CgroupLocation {
    return {
      dir,
      cpuUsage: join(dir, 'cpu.stat'),
      memoryUsage: join(dir, 'memory.current'),
      memoryStat: join(dir, 'memory.stat'),
      pidsCurrent: join(dir, 'pids.current'),
      memoryLimit: join(dir, 'memory.max'),
      pidsLimit: join(dir, 'pids.max'),
      cpuLimit: [join(dir, 'cpu.max')],
      blkio: join(dir, 'io.stat'),
    };
  }

  private v1(at: (ctrl: string) => string): CgroupLocation {
    const memory = at('memory');
    const cpu = at('cpu');
    const pids = at('pids');
    return {
      dir: memory,
      cpuUsage: join(at('cpuacct'), 'cpuacct.usage'),
      memoryUsage: join(memory, 'memory.usage_in_bytes'),
      memoryStat: join(memory, 'memory.stat'),
      pidsCurrent: join(pids, 'pids.current'),
      memoryLimit: join(memory, 'memory.limit_in_bytes'),
      pidsLimit: join(pids, 'pids.max'),
      cpuLimit: [join(cpu, 'cpu.cfs_quota_us'), join(cpu, 'cpu.cfs_period_us')],
      blkio: at('blkio'),
    };
  }

  private async entry(containerId: string, pid: number | undefined): Promise<Entry> {
    const loc = await this.locate(containerId, pid);
    const e: Entry = { loc, fds: {}, opening: {}, limits: undefined, inactive: 0, pids: 0, missing: new Set(), io: undefined, missingLegacy: new Set(), blkio: undefined };
    this.entries.set(containerId, e);
    return e;
  }

  /** Reads a per-sample file: one pread on a kept-open fd when allowed, else open/read/close. */
  private hot(id: string, e: Entry, file: HotFile, path: string = e.loc[file as LocatedFile]!): Promise<string> {
    const fd = e.fds[file];
    if (fd !== undefined) return settle(() => preadFileSync(fd, SIZES[file]));
    if (!this.keepOpen || this.openCount >= this.maxOpenFiles) return readSmallFile(path, SIZES[file]);
    let opening = e.opening[file];
    if (!opening) {
      opening = openFile(path).then((n) => {
        delete e.opening[file];
        if (this.entries.get(id) !== e) {
          closeFile(n); // forgotten meanwhile
          return n;
        }
        e.fds[file] = n;
        this.openCount++;
        return n;
      });
      e.opening[file] = opening;
      opening.catch(() => delete e.opening[file]);
    }
    return opening.then((n) => preadFileSync(n, SIZES[file]));
  }

  private async readEntry(id: string, e: Entry, detail: ReadDetail): Promise<CgroupUsage> {
    const now = this.now();
    const limitsDue = !e.limits || this.limitsTtlMs <= 0 || now - e.limits.readAt >= this.limitsTtlMs;
    const wantStat = this.workingSet && detail.memoryStat !== false && !e.missing.has('memoryStat');
    const wantPids = detail.pids !== false && e.loc.pidsCurrent !== undefined && !e.missing.has('pidsCurrent');
    const optional = (file: HotFile) => (err: NodeJS.ErrnoException): undefined => {
      // Only a file this cgroup lacks is skipped from now on; ENODEV (being removed) is left to the required files.
      if (err.code === 'ENOENT') e.missing.add(file);
      return undefined;
    };
    const wantIo = detail.blkio === true && !e.missing.has('ioBytes');
    const [cpu, mem, stat, pids, io] = await Promise.all([
      this.hot(id, e, 'cpuUsage'),
      this.hot(id, e, 'memoryUsage'),
      wantStat ? this.hot(id, e, 'memoryStat').catch(optional('memoryStat')) : undefined,
      wantPids ? this.hot(id, e, 'pidsCurrent').catch(optional('pidsCurrent')) : undefined,
      wantIo ? this.readBlkio(id, e).catch(optional('ioBytes')) : undefined,
    ]);
    if (io !== undefined) e.blkio = io;
    if (limitsDue) this.readLimits(e, now);
    if (stat !== undefined) e.inactive = statValue(stat, this.version === 2 ? 'inactive_file' : 'total_inactive_file') ?? 0;
    if (pids !== undefined) e.pids = parseCounter(pids);
    const cpuUsageNs = this.version === 2 ? (statValue(cpu, 'usage_usec') ?? 0) * 1000 : parseCounter(cpu);
    return this.usageOf(e, id, now, cpuUsageNs, parseCounter(mem));
  }

  /** Block IO: v2 io.stat; v1 the throttle files (found once), the legacy ones when those list no device. Rejects ENOENT when there is none. */
  private async readBlkio(id: string, e: Entry): Promise<BlkioUsage> {
    if (this.version === 2) return parseIoStat(await this.hot(id, e, 'ioBytes', e.loc.blkio));
    if (e.io === undefined) {
      e.io = null;
      for (const [b, o] of V1_IO) {
        if (await exists(join(e.loc.blkio, b))) {
          e.io = { bytes: join(e.loc.blkio, b), ops: join(e.loc.blkio, o) };
          break;
        }
      }
    }
    if (e.io === null) throw Object.assign(new Error('no blkio files'), { code: 'ENOENT' });
    const [bytesText, opsText] = await Promise.all([this.hot(id, e, 'ioBytes', e.io.bytes), this.hot(id, e, 'ioOps', e.io.ops)]);
    let bytes = parseBlkioRw(bytesText);
    let ops = parseBlkioRw(opsText);
    if (bytes.lines === 0 && ops.lines === 0) {
      for (const [b, o] of V1_IO_LEGACY) {
        if (e.missingLegacy.has(b)) continue;
        try {
          const [lb, lo] = await Promise.all([readSmallFile(join(e.loc.blkio, b)), readSmallFile(join(e.loc.blkio, o))]);
          const [pb, po] = [parseBlkioRw(lb), parseBlkioRw(lo)];
          if (pb.lines > 0 || po.lines > 0) {
            [bytes, ops] = [pb, po];
            break;
          }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') e.missingLegacy.add(b);
          else throw err;
        }
      }
    }
    return { readBytes: bytes.read, writeBytes: bytes.write, readOps: ops.read, writeOps: ops.write };
  }

  /** The limits files (re-read every limitsTtlMs), synchronously like the hot files: a few µs in all. */
  private readLimits(e: Entry, now: number): void {
    const opt = (p: string | undefined): string | undefined => {
      if (p === undefined) return undefined;
      try {
        return readSmallFileSync(p);
      } catch {
        return undefined;
      }
    };
    const [mem, pids, c0, c1] = [opt(e.loc.memoryLimit), opt(e.loc.pidsLimit), opt(e.loc.cpuLimit[0]), opt(e.loc.cpuLimit[1])];
    let cpuLimitCores = 0;
    if (this.version === 2) cpuLimitCores = parseCpuMax(c0 ?? 'max');
    else if (c0 !== undefined && c1 !== undefined) cpuLimitCores = parseCfsQuota(c0, c1);
    e.limits = { memoryLimitBytes: parseLimit(mem ?? 'max'), pidsLimit: parseLimit(pids ?? 'max'), cpuLimitCores, readAt: now };
  }
}

/** A synchronous read as a settled promise, so callers chain .catch() on it whatever happens. */
function settle<T>(read: () => T): Promise<T> {
  try {
    return Promise.resolve(read());
  } catch (err) {
    return Promise.reject(err);
  }
}
