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
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { closeFile, openFile, parseCfsQuota, parseCounter, parseCpuMax, parseLimit, parseProcCgroup, preadFile, readSmallFile, statValue } from './cgroup-files';

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
   * Keep the per-sample files (CPU, memory, memory.stat, pids) open between
   * reads and pread them at offset 0: ~10× cheaper than open/read/close.
   * Costs 4 fds per running container (Node raises RLIMIT_NOFILE to the hard
   * limit at start). Default true.
   */
  keepOpen?: boolean | undefined;
  /** At most this many files kept open; containers beyond it are read with open/read/close. Default 8192. */
  maxOpenFiles?: number | undefined;
  /** Clock (ms). Default Date.now. */
  now?: (() => number) | undefined;
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
}

interface Located {
  /** v2: the one directory. */
  dir?: string;
  /** v1: per controller. */
  cpu?: string;
  cpuacct?: string;
  memory?: string;
  pids?: string;
}

interface Limits {
  memoryLimitBytes: number;
  pidsLimit: number;
  cpuLimitCores: number;
  readAt: number;
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

const optional = (p: Promise<string>): Promise<string | undefined> => p.catch(() => undefined);

export class CgroupReader {
  private readonly located = new Map<string, Located>();
  private readonly limits = new Map<string, Limits>();
  /** Open fds per container, by file path (promises, so concurrent reads never open twice). */
  private readonly open = new Map<string, Map<string, Promise<number>>>();
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

  /** Files held open right now (for diagnostics and tests). */
  get openFiles(): number {
    return this.openCount;
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
   * Reads a running container's usage. `pid` (its init process, from
   * inspect State.Pid) enables the /proc/<pid>/cgroup fallback for cgroups
   * in non-standard places. Throws CgroupNotFoundError when there is none.
   */
  async read(containerId: string, pid?: number): Promise<CgroupUsage> {
    const cached = this.located.get(containerId);
    try {
      return await this.readAt(containerId, cached ?? (await this.locate(containerId, pid)));
    } catch (e) {
      if (!isGone(e)) throw e;
      this.forget(containerId);
      if (!cached) throw new CgroupNotFoundError(containerId);
    }
    // A cached location vanished: the container stopped, or restarted under
    // another cgroup. Look once more before giving up.
    try {
      return await this.readAt(containerId, await this.locate(containerId, pid));
    } catch (e) {
      if (!isGone(e)) throw e;
      this.forget(containerId);
      throw new CgroupNotFoundError(containerId);
    }
  }

  /** Drops what is cached about a container (call on `destroy`). */
  forget(containerId: string): void {
    this.located.delete(containerId);
    this.limits.delete(containerId);
    const fds = this.open.get(containerId);
    if (fds) {
      this.open.delete(containerId);
      this.openCount -= fds.size;
      for (const p of fds.values()) p.then(closeFile, () => undefined);
    }
  }

  /** Closes every kept-open file and forgets every container. */
  close(): void {
    for (const id of [...this.located.keys(), ...this.open.keys()]) this.forget(id);
  }

  /** Reads a per-sample file: through a kept-open fd when allowed, else open/read/close. */
  private hot(containerId: string, path: string, size: number): Promise<string> {
    if (!this.keepOpen) return readSmallFile(path, size);
    let fds = this.open.get(containerId);
    let fd = fds?.get(path);
    if (fd === undefined) {
      if (this.openCount >= this.maxOpenFiles) return readSmallFile(path, size);
      if (!fds) {
        fds = new Map();
        this.open.set(containerId, fds);
      }
      fd = openFile(path);
      fds.set(path, fd);
      this.openCount++;
      // A failed open must not stay cached (nor counted).
      fd.catch(() => {
        if (this.open.get(containerId)?.get(path) === fd) {
          this.open.get(containerId)!.delete(path);
          this.openCount--;
        }
      });
    }
    return fd.then((n) => preadFile(n, size));
  }

  /** Makes the next read re-read the limits (call after `docker update`). */
  invalidateLimits(containerId: string): void {
    this.limits.delete(containerId);
  }

  /** The directories found for a container (for diagnostics and tests). */
  async locate(containerId: string, pid?: number): Promise<Located> {
    const parents = (d: CgroupDriver): string =>
      d === 'cgroupfs' ? `${this.parent ?? 'docker'}/${containerId}` : `${this.parent ?? 'system.slice'}/docker-${containerId}.scope`;
    const order: CgroupDriver[] = this.driver !== 'auto' ? [this.driver] : this.preferred === 'cgroupfs' ? ['cgroupfs', 'systemd'] : ['systemd', 'cgroupfs'];
    for (const d of order) {
      const rel = parents(d);
      const loc = this.version === 2
        ? { dir: join(this.cgroupRoot, rel) }
        : { cpu: join(this.cgroupRoot, 'cpu', rel), cpuacct: join(this.cgroupRoot, 'cpuacct', rel), memory: join(this.cgroupRoot, 'memory', rel), pids: join(this.cgroupRoot, 'pids', rel) };
      if (await exists(loc.dir ?? loc.memory!)) {
        if (this.driver === 'auto') this.preferred = d;
        this.located.set(containerId, loc);
        return loc;
      }
    }
    if (pid !== undefined && pid > 0) {
      const text = await readSmallFile(join(this.procRoot, String(pid), 'cgroup')).catch(() => '');
      const map = parseProcCgroup(text);
      let loc: Located | undefined;
      if (this.version === 2) {
        const p = map.get('');
        if (p !== undefined) loc = { dir: join(this.cgroupRoot, p) };
      } else if (map.has('memory')) {
        const at = (ctrl: string, alt?: string): string | undefined => {
          const p = map.get(ctrl) ?? (alt ? map.get(alt) : undefined);
          return p === undefined ? undefined : join(this.cgroupRoot, ctrl, p);
        };
        loc = { cpu: at('cpu'), cpuacct: at('cpuacct', 'cpu'), memory: at('memory'), pids: at('pids') };
      }
      if (loc && (await exists(loc.dir ?? loc.memory!))) {
        this.located.set(containerId, loc);
        return loc;
      }
    }
    throw new CgroupNotFoundError(containerId);
  }

  private async readAt(containerId: string, loc: Located): Promise<CgroupUsage> {
    const now = this.now();
    const cached = this.limits.get(containerId);
    const fresh = cached !== undefined && this.limitsTtlMs > 0 && now - cached.readAt < this.limitsTtlMs;
    const [usage, limits] = await Promise.all([this.readUsage(containerId, loc), fresh ? Promise.resolve(cached) : this.readLimits(loc, now)]);
    if (!fresh) this.limits.set(containerId, limits);
    return { containerId, at: now, ...usage, memoryLimitBytes: limits.memoryLimitBytes, pidsLimit: limits.pidsLimit, cpuLimitCores: limits.cpuLimitCores };
  }

  private async readUsage(id: string, loc: Located): Promise<Pick<CgroupUsage, 'cpuUsageNs' | 'memoryBytes' | 'memoryUsageBytes' | 'pids'>> {
    if (this.version === 2) {
      const d = loc.dir!;
      const [cpu, mem, stat, pids] = await Promise.all([
        this.hot(id, join(d, 'cpu.stat'), 512),
        this.hot(id, join(d, 'memory.current'), 64),
        this.workingSet ? optional(this.hot(id, join(d, 'memory.stat'), 4000)) : Promise.resolve(undefined),
        optional(this.hot(id, join(d, 'pids.current'), 64)),
      ]);
      const usage = parseCounter(mem);
      const inactive = stat === undefined ? 0 : statValue(stat, 'inactive_file') ?? 0;
      return { cpuUsageNs: (statValue(cpu, 'usage_usec') ?? 0) * 1000, memoryUsageBytes: usage, memoryBytes: Math.max(0, usage - inactive), pids: pids === undefined ? 0 : parseCounter(pids) };
    }
    const [cpu, mem, stat, pids] = await Promise.all([
      this.hot(id, join(loc.cpuacct!, 'cpuacct.usage'), 64),
      this.hot(id, join(loc.memory!, 'memory.usage_in_bytes'), 64),
      this.workingSet ? optional(this.hot(id, join(loc.memory!, 'memory.stat'), 4000)) : Promise.resolve(undefined),
      loc.pids ? optional(this.hot(id, join(loc.pids, 'pids.current'), 64)) : Promise.resolve(undefined),
    ]);
    const usage = parseCounter(mem);
    const inactive = stat === undefined ? 0 : statValue(stat, 'total_inactive_file') ?? 0;
    return { cpuUsageNs: parseCounter(cpu), memoryUsageBytes: usage, memoryBytes: Math.max(0, usage - inactive), pids: pids === undefined ? 0 : parseCounter(pids) };
  }

  private async readLimits(loc: Located, now: number): Promise<Limits> {
    if (this.version === 2) {
      const d = loc.dir!;
      const [mem, pids, cpu] = await Promise.all([
        optional(readSmallFile(join(d, 'memory.max'))),
        optional(readSmallFile(join(d, 'pids.max'))),
        optional(readSmallFile(join(d, 'cpu.max'))),
      ]);
      return { memoryLimitBytes: parseLimit(mem ?? 'max'), pidsLimit: parseLimit(pids ?? 'max'), cpuLimitCores: parseCpuMax(cpu ?? 'max'), readAt: now };
    }
    const [mem, pids, quota, period] = await Promise.all([
      optional(readSmallFile(join(loc.memory!, 'memory.limit_in_bytes'))),
      loc.pids ? optional(readSmallFile(join(loc.pids, 'pids.max'))) : Promise.resolve(undefined),
      loc.cpu ? optional(readSmallFile(join(loc.cpu, 'cpu.cfs_quota_us'))) : Promise.resolve(undefined),
      loc.cpu ? optional(readSmallFile(join(loc.cpu, 'cpu.cfs_period_us'))) : Promise.resolve(undefined),
    ]);
    return {
      memoryLimitBytes: parseLimit(mem ?? 'max'),
      pidsLimit: parseLimit(pids ?? 'max'),
      cpuLimitCores: quota !== undefined && period !== undefined ? parseCfsQuota(quota, period) : 0,
      readAt: now,
    };
  }
}
