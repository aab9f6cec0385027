// Owns what a container's facts cannot say by themselves and the agent
// must look up — on the host or in the engine — before the evaluator judges
// them (the evaluator stays pure: it only reads the fields filled in here):
//
//   mounts      a bind source's symlinks (fs.promises.realpath; the agent
//               runs on the host), the host path a `local`-driver volume
//               binds (volume inspect: `type=none,o=bind,device=/etc`, or
//               any absolute `device`), and for a create request the mounts
//               of its --volumes-from containers → Mount.hostPath, mounts
//   namespaces  `--network/--pid/--ipc container:<ref>`: the joined
//               container's own mode, followed through its joins
//               → effective{Network,Pid,Ipc}Mode
//   networks    a create request's networks named by id or id prefix → their
//               canonical name and id (inspect already names them)
//
// Both doors use it: the authz decider on requests (bounded by a deadline,
// lookups reported as failures so the decider can refuse), the container
// watcher on inspects (best effort, results carried over between inspects of
// the same container: a container's mounts and joined namespaces cannot
// change, and an in-use volume cannot be removed).
//
// Caches, and why they are safe: realpath results for `realpathTtlMs` (2 s;
// the start route asks for fresh ones, since a link may be re-pointed after
// create), network name/id for `networkTtlMs` (10 s; ids never change, a
// name is re-used only after the network is removed). Volume options are
// NOT cached: a volume not in use can be removed and re-created with other
// options under the same name at any moment. Lookups of the same thing at
// the same time share one request.
import { realpath as fsRealpath } from 'node:fs/promises';
import { posix } from 'node:path';
import type Dockerode from 'dockerode';
import type { Logger, Mount__Output } from '@bulkhead/shared';
import { toContainerFacts, type Facts } from './container-facts';
import { str } from './docker-json';

/** What the resolver needs of dockerode (a Dockerode instance satisfies it). */
export interface ResolverDocker {
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
  getVolume?(name: string): { inspect(): Promise<Dockerode.VolumeInspectInfo> };
  getNetwork?(id: string): { inspect(): Promise<Dockerode.NetworkInspectInfo> };
}

/** The agent's inventory (ContainerWatcher satisfies it). */
export interface ResolverInventory {
  get(id: string): Facts | undefined;
  inventory(): Facts[];
}

export interface FactsResolverOptions {
  docker: ResolverDocker;
  /** Read before asking the engine: --volumes-from and namespace targets are usually there. */
  containers?: ResolverInventory | undefined;
  /** Per engine lookup when the caller gives no deadline. Default 1000 ms. */
  lookupTimeoutMs?: number;
  /** realpath gives up after this and the literal path is judged. Default 250 ms. */
  realpathTimeoutMs?: number;
  /** How long a realpath result is reused. Default 2000 ms. */
  realpathTtlMs?: number;
  /** How long a network name → (name, id) answer is reused. Default 10 000 ms. */
  networkTtlMs?: number;
  /** For tests. Default fs.promises.realpath. */
  realpath?: (path: string) => Promise<string>;
  /** Monotonic ms clock for TTLs and deadlines. Default performance.now. */
  clock?: () => number;
}

export type ResolutionKind = 'mounts' | 'namespaces' | 'networks';

/** The check types whose verdict depends on each kind of resolution. */
export const RESOLUTION_CHECKS: Readonly<Record<ResolutionKind, readonly string[]>> = {
  mounts: ['sensitive-mounts', 'docker-socket'],
  namespaces: ['host-namespaces', 'default-bridge', 'project-network-sharing'],
  networks: ['project-network-sharing', 'default-bridge'],
};

/** A lookup that failed (not "not found": dockerd answers that itself). */
export interface ResolutionFailure {
  kind: ResolutionKind;
  /** What could not be learned, e.g. "the mounts of container web (--volumes-from web)". */
  what: string;
  /** Why, e.g. "inspect of container web took longer than 1000 ms". */
  why: string;
}

export interface ResolveOptions {
  /** Which kinds to resolve. Default all. */
  kinds?: ReadonlySet<ResolutionKind>;
  /** HostConfig.VolumesFrom of a create request ("ref[:ro|:rw]"): their mounts are added. */
  volumesFrom?: readonly string[];
  /** Canonicalize network names (create requests; inspect already has them). */
  networks?: boolean;
  /**
   * Ignore cached realpath results and what `previous` says of volumes (the
   * start route: a link may have been re-pointed since — a bind's source, or
   * a local volume's `device`, which the driver mounts afresh at start).
   */
  freshPaths?: boolean;
  /** The same container's facts resolved before: volume and namespace results are reused. */
  previous?: Facts | undefined;
  /** clock() time by which every engine lookup must have answered. */
  deadline?: number;
}

export interface Resolved {
  facts: Facts;
  failures: ResolutionFailure[];
}

const ALL_KINDS: ReadonlySet<ResolutionKind> = new Set(['mounts', 'namespaces', 'networks']);
const NETWORK_KEYWORDS = new Set(['none', 'host', 'bridge', 'default']);
const NAMESPACES = [
  { kind: 'network', mode: 'networkMode', effective: 'effectiveNetworkMode', flag: '--network' },
  { kind: 'pid', mode: 'pidMode', effective: 'effectivePidMode', flag: '--pid' },
  { kind: 'ipc', mode: 'ipcMode', effective: 'effectiveIpcMode', flag: '--ipc' },
] as const;
/** dockerd lets a container join one that joined another; follow that far at most. */
const MAX_JOIN_DEPTH = 5;
const CACHE_MAX = 1024;

/**
 * Filesystem types whose mount source is not a path: the local driver hands
 * `device` to mount(2) as a name or an address (":/export", "//srv/share",
 * "tmpfs") unless the options make it a bind. Each of these mounts a
 * filesystem of its own (a fresh tmpfs, a remote share): nothing of the host.
 */
const NON_PATH_FS_TYPES = new Set([
  'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'tmpfs', 'ramfs', 'devpts', 'hugetlbfs',
  'ceph', 'glusterfs', '9p', 'fuse', 'virtiofs',
]);

/**
 * Kernel filesystems that show the state of the namespaces of whoever mounts
 * them — and the local driver mounts them as dockerd, in the HOST's
 * namespaces, before binding the result into the container. So
 * `docker volume create -o type=proc -o device=proc v` then `-v v:/x` gives a
 * container the host's /proc with /proc/sys WRITABLE (core_pattern: code run
 * as root on the host), `type=sysfs` the host's /sys read-write, `type=cgroup`
 * the host's cgroup roots (the devices root allows every device) — measured
 * on 20.10 and 26.1 (test/authz-differential/kernel-fs-volume.test.ts). Each
 * is judged as a mount of the host path where the host shows the same thing.
 * (A container's own /proc or /sys is mounted by runc in ITS namespaces;
 * that is not this.) Found in session 10.
 */
export const KERNEL_FS_HOST_PATHS: Readonly<Record<string, string>> = {
  proc: '/proc',
  sysfs: '/sys',
  cgroup: '/sys/fs/cgroup',
  cgroup2: '/sys/fs/cgroup',
  cpuset: '/sys/fs/cgroup/cpuset',
  devtmpfs: '/dev',
  mqueue: '/dev/mqueue',
  binfmt_misc: '/proc/sys/fs/binfmt_misc',
  debugfs: '/sys/kernel/debug',
  tracefs: '/sys/kernel/tracing',
  securityfs: '/sys/kernel/security',
  bpf: '/sys/fs/bpf',
  fusectl: '/sys/fs/fuse/connections',
  pstore: '/sys/fs/pstore',
  configfs: '/sys/kernel/config',
  efivarfs: '/sys/firmware/efi/efivars',
  selinuxfs: '/sys/fs/selinux',
  resctrl: '/sys/fs/resctrl',
  nfsd: '/proc/fs/nfsd',
  rpc_pipefs: '/run/rpc_pipefs',
};

/** Overlay options that name host directories (`lowerdir` a ":" list; the `+` forms of Linux 6.8+ name one each). */
const OVERLAY_PATH_OPTIONS = new Set(['lowerdir', 'upperdir', 'workdir', 'lowerdir+', 'datadir+']);

/**
 * The host paths a volume of `driver` with these driver options exposes, as
 * given (symlinks not resolved), or undefined: the `local` driver (also "" =
 * default) mounts `device` with mount(2) `type`/`o`, as dockerd's own
 * process — so a path is resolved as the kernel resolves it for dockerd. An
 * absolute device is a host path (a directory with o=bind, or a block device
 * such as /dev/sda1 with type=ext4); a RELATIVE one is relative to dockerd's
 * working directory — `device=etc,o=bind` binds /etc under systemd, whose
 * units start in "/" — and ".." is resolved (`device=../../etc` from "/" is
 * /etc). A network or fresh filesystem's device (NFS ":/export", tmpfs) is no
 * host path unless `o` asks for a bind, which ignores the type. A kernel
 * filesystem (`type=proc`, `sysfs`, `cgroup` …) is the host path that shows
 * the same (KERNEL_FS_HOST_PATHS), whatever the device. An `overlay` exposes
 * its layers: every `lowerdir` (read), `upperdir` and `workdir` (written).
 *
 * `daemonCwd`: dockerd's working directory, when the caller knows it
 * (/proc/PID/cwd of dockerd); default "/", as under systemd.
 */
export function localVolumeHostPaths(driver: string, opts: Readonly<Record<string, string>>, daemonCwd = '/'): string[] | undefined {
  if (driver !== '' && driver !== 'local') return undefined;
  const device = opts['device'] ?? '';
  const type = opts['type'] ?? '';
  // moby's mount.Mount: options split on ",", a "bind"/"rbind" entry is MS_BIND (the type is then ignored).
  const bind = (opts['o'] ?? '').split(',').some((o) => o === 'bind' || o === 'rbind');
  if (!bind) {
    const kernel = KERNEL_FS_HOST_PATHS[type];
    if (kernel !== undefined) return [kernel];
    if (type === 'overlay') {
      const layers = overlayLayers(opts['o'] ?? '').map((l) => normalize(posix.resolve(daemonCwd, l)));
      return layers.length > 0 ? [...new Set(layers)] : undefined;
    }
  }
  if (device === '') return undefined;
  if (!device.startsWith('/') && !bind && NON_PATH_FS_TYPES.has(type)) return undefined;
  return [normalize(posix.resolve(daemonCwd, device))];
}

/**
 * The one host path a volume is judged as (Mount.hostPath): its only path,
 * or for several (an overlay's layers) the deepest directory holding them
 * all — `lowerdir=/etc,upperdir=/srv/u,…` is judged as "/", which contains
 * every sensitive path: conservative, an exemption is the opt-out.
 */
export function localVolumeHostPath(driver: string, opts: Readonly<Record<string, string>>, daemonCwd = '/'): string | undefined {
  const paths = localVolumeHostPaths(driver, opts, daemonCwd);
  return paths === undefined ? undefined : commonAncestor(paths);
}

/** The deepest directory that is or contains every one of these absolute, clean paths. */
export function commonAncestor(paths: readonly string[]): string {
  let parts = paths[0]!.split('/').filter((s) => s !== '');
  for (const p of paths.slice(1)) {
    const q = p.split('/').filter((s) => s !== '');
    let i = 0;
    while (i < parts.length && i < q.length && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  return `/${parts.join('/')}`;
}

/**
 * The layer directories of overlay mount data, as the kernel reads it:
 * options split on unescaped ",", `lowerdir` on unescaped ":", then every
 * backslash escape removed (fs/overlayfs ovl_next_opt / ovl_unescape).
 * moby splits on "," first and joins the options that are not flags back
 * with ",", so the kernel sees the data as sent.
 */
function overlayLayers(data: string): string[] {
  const out: string[] = [];
  for (const opt of splitUnescaped(data, ',')) {
    const eq = opt.indexOf('=');
    if (eq === -1) continue;
    const key = opt.slice(0, eq);
    if (!OVERLAY_PATH_OPTIONS.has(key)) continue;
    const value = opt.slice(eq + 1);
    const list = key === 'lowerdir' ? splitUnescaped(value, ':') : [value];
    for (const l of list) {
      const path = l.replace(/\\(.)/gs, '$1');
      if (path !== '') out.push(path);
    }
  }
  return out;
}

function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/**
 * "web", "web:ro", "web:rw" → the container and whether its mounts become
 * read-only (dockerd: RW = source RW && mode != "ro"; ":rw" cannot make a
 * read-only mount writable).
 */
export function parseVolumesFrom(spec: string): { ref: string; readOnly: boolean } {
  const i = spec.lastIndexOf(':');
  if (i > 0) {
    const mode = spec.slice(i + 1);
    if (mode === 'ro' || mode === 'rw' || mode === 'z' || mode === 'Z' || mode.includes(',')) {
      return { ref: spec.slice(0, i), readOnly: mode.split(',').includes('ro') };
    }
  }
  return { ref: spec, readOnly: false };
}

/**
 * The parts of `previous` a re-inspect cannot change, carried onto `fresh`
 * (the enforcer re-reads a container after acting on it): resolved host
 * paths of the same mounts and the joined namespaces' modes.
 */
export function carryResolution(fresh: Facts, previous: Facts): Facts {
  let changed = false;
  const mounts = fresh.mounts.map((m) => {
    if (m.hostPath !== undefined) return m;
    const p = previous.mounts.find((x) => x.destination === m.destination && x.source === m.source && x.type === m.type);
    if (p?.hostPath === undefined) return m;
    changed = true;
    return { ...m, hostPath: p.hostPath };
  });
  const out: Facts = changed ? { ...fresh, mounts } : { ...fresh };
  for (const ns of NAMESPACES) {
    const eff = previous[ns.effective];
    if (eff !== undefined && out[ns.effective] === undefined && previous[ns.mode] === out[ns.mode]) out[ns.effective] = eff;
  }
  return out;
}

interface CacheEntry<T> {
  at: number;
  value?: T;
  p?: Promise<T>;
}

export class FactsResolver {
  private readonly lookupTimeoutMs: number;
  private readonly realpathTimeoutMs: number;
  private readonly realpathTtlMs: number;
  private readonly networkTtlMs: number;
  private readonly realpath: (path: string) => Promise<string>;
  private readonly clock: () => number;
  private readonly paths = new Map<string, CacheEntry<string>>();
  private readonly networks = new Map<string, CacheEntry<{ name: string; id: string } | undefined>>();
  private readonly inflight = new Map<string, Promise<unknown>>();

  constructor(private readonly o: FactsResolverOptions) {
    this.lookupTimeoutMs = o.lookupTimeoutMs ?? 1000;
    this.realpathTimeoutMs = o.realpathTimeoutMs ?? 250;
    this.realpathTtlMs = o.realpathTtlMs ?? 2000;
    this.networkTtlMs = o.networkTtlMs ?? 10_000;
    this.realpath = o.realpath ?? fsRealpath;
    this.clock = o.clock ?? (() => performance.now());
  }

  /**
   * Whether `resolve` has anything to do for these facts: host paths to
   * check, volumes, --volumes-from, joined namespaces or (with `networks`)
   * user-defined networks. Cheap; a caller skips the (async) resolution
   * when it is false.
   */
  needed(facts: Facts, r: ResolveOptions = {}): boolean {
    const kinds = r.kinds ?? ALL_KINDS;
    if (kinds.has('mounts')) {
      if ((r.volumesFrom?.length ?? 0) > 0) return true;
      for (const m of facts.mounts) if (m.type === 'bind' || m.hostPath !== undefined || (m.type === 'volume' && m.source !== '')) return true;
    }
    if (kinds.has('namespaces')) {
      for (const ns of NAMESPACES) if (facts[ns.mode].startsWith('container:')) return true;
    }
    if (r.networks && kinds.has('networks')) {
      for (const n of facts.networks) if (!NETWORK_KEYWORDS.has(n.name)) return true;
    }
    return false;
  }

  /** The facts with what could be looked up filled in; failed lookups are listed, never thrown. */
  async resolve(facts: Facts, r: ResolveOptions = {}): Promise<Resolved> {
    const kinds = r.kinds ?? ALL_KINDS;
    const failures: ResolutionFailure[] = [];
    const deadline = r.deadline ?? this.clock() + this.lookupTimeoutMs;
    const out: Facts = { ...facts };
    const jobs: Promise<void>[] = [];
    if (kinds.has('mounts')) jobs.push(this.resolveMounts(out, r, deadline, failures));
    if (kinds.has('namespaces')) jobs.push(this.resolveNamespaces(out, r, deadline, failures));
    if (r.networks && kinds.has('networks')) jobs.push(this.resolveNetworks(out, deadline, failures));
    await Promise.all(jobs);
    return { facts: out, failures };
  }

  /**
   * For ContainerWatcher's `resolveFacts`: best effort — a failed lookup is
   * logged and the facts keep what inspect said (the reaction door judges
   * the literal paths then, as before resolution existed).
   */
  watcherHook(logger: Pick<Logger, 'warn'>): (facts: Facts, previous: Facts | undefined) => Promise<Facts> {
    return async (facts, previous) => {
      if (!this.needed(facts)) return facts;
      // A (re)start since the last inspect mounted the container's volumes
      // afresh: their devices' links are followed again, as dockerd did.
      const restarted = previous !== undefined && previous.startedAtMs !== facts.startedAtMs;
      const { facts: resolved, failures } = await this.resolve(facts, { previous, ...(restarted ? { freshPaths: true } : {}) });
      if (failures.length > 0) logger.warn({ containerId: facts.id, failures }, 'could not resolve all of a container\'s mounts or namespaces; judging what inspect shows');
      return resolved;
    };
  }

  // ---- mounts ----------------------------------------------------------------

  private async resolveMounts(out: Facts, r: ResolveOptions, deadline: number, failures: ResolutionFailure[]): Promise<void> {
    let mounts = out.mounts;
    if (r.volumesFrom && r.volumesFrom.length > 0) {
      mounts = [...mounts];
      const donors = await Promise.all(r.volumesFrom.map(async (spec) => {
        const { ref, readOnly } = parseVolumesFrom(spec);
        try {
          return { ref, readOnly, facts: await this.container(ref, deadline) };
        } catch (err) {
          failures.push({ kind: 'mounts', what: `the mounts of container ${ref} (--volumes-from ${spec})`, why: message(err) });
          return undefined;
        }
      }));
      for (const d of donors) {
        // Not found: dockerd refuses the create itself.
        if (!d?.facts) continue;
        for (const m of d.facts.mounts) {
          if (m.type === 'tmpfs') continue;
          const inherited: Mount__Output = { ...m, readOnly: m.readOnly || d.readOnly };
          // The request's own mounts win (dockerd: binds after volumes-from);
          // an anonymous volume (image VOLUME) yields to an inherited mount.
          const at = mounts.findIndex((x) => x.destination === m.destination);
          if (at === -1) mounts.push(inherited);
          else if (mounts[at]!.type === 'volume' && mounts[at]!.source === '' && mounts[at]!.hostPath === undefined) mounts[at] = inherited;
        }
      }
    }
    const prev = r.previous;
    const resolved = await Promise.all(mounts.map(async (m): Promise<Mount__Output> => {
      if (m.type === 'bind') {
        const real = await this.hostPath(m.source, r.freshPaths === true);
        return withHostPath(m, real !== normalize(m.source) ? real : undefined);
      }
      if (m.type !== 'volume') return m;
      let hostPaths = m.hostPath === undefined ? undefined : [m.hostPath];
      if (m.source !== '') {
        const same = prev?.mounts.find((x) => x.type === 'volume' && x.source === m.source && x.destination === m.destination);
        // What a resolution of `previous` found is carried over (an in-use
        // volume cannot be re-created) — except at start (freshPaths): the
        // local driver mounts a volume afresh when its first user starts,
        // following `device`'s symlinks as they are THEN (measured on 20.10
        // and 26.1: device=/tmp/l, l re-pointed at /etc between create and
        // start, and the container got /etc), and the facts of a fresh
        // inspect were never resolved. So the options are read again.
        if (same !== undefined && r.freshPaths !== true) {
          hostPaths = same.hostPath === undefined ? undefined : [same.hostPath];
        } else {
          try {
            const vol = await this.volume(m.source, deadline);
            // An existing volume is used as it is (any options in the
            // request apply only to one it creates).
            if (vol !== undefined) hostPaths = localVolumeHostPaths(str(vol.Driver), vol.Options ?? {});
          } catch (err) {
            failures.push({ kind: 'mounts', what: `the options of volume ${m.source} (mounted at ${m.destination})`, why: message(err) });
          }
        }
      }
      if (hostPaths === undefined) return withHostPath(m, undefined);
      // Each path with its symlinks resolved (the kernel follows them for
      // dockerd); several (an overlay's layers) are judged as the deepest
      // directory holding them all.
      const real = await Promise.all(hostPaths.map((p) => this.hostPath(p, r.freshPaths === true)));
      return withHostPath(m, commonAncestor(real));
    }));
    out.mounts = resolved;
  }

  /**
   * `p` with its symlinks resolved; for a path that does not exist (yet:
   * dockerd creates a missing bind source), its longest existing ancestor
   * resolved and the rest appended — so /tmp/link-to-etc/new is /etc/new.
   * The literal path when realpath fails otherwise or is slow.
   */
  private async hostPath(p: string, fresh: boolean): Promise<string> {
    const n = normalize(p);
    const now = this.clock();
    const hit = this.paths.get(n);
    if (!fresh && hit && now - hit.at <= this.realpathTtlMs) return hit.value ?? hit.p!;
    const promise = this.resolvePath(n).then((v) => {
      this.paths.set(n, { at: now, value: v });
      return v;
    });
    this.paths.set(n, { at: now, p: promise });
    prune(this.paths);
    return promise;
  }

  private async resolvePath(n: string): Promise<string> {
    let dir = n;
    const rest: string[] = [];
    for (let i = 0; i < 16; i++) {
      try {
        const real = await withTimeout(this.realpath(dir), this.realpathTimeoutMs, `realpath of ${dir}`);
        return rest.length === 0 ? real : posix.join(real, ...rest.reverse());
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dir === '/') return n;
        rest.push(posix.basename(dir));
        dir = posix.dirname(dir);
      }
    }
    return n;
  }

  private volume(name: string, deadline: number): Promise<Dockerode.VolumeInspectInfo | undefined> {
    const get = this.o.docker.getVolume;
    if (!get) return Promise.reject(new Error('this engine client cannot inspect volumes'));
    return this.once(`v:${name}`, () => notFoundAsUndefined(withTimeout(get.call(this.o.docker, name).inspect(), this.remaining(deadline), `inspect of volume ${name}`)));
  }

  // ---- namespaces ------------------------------------------------------------

  private async resolveNamespaces(out: Facts, r: ResolveOptions, deadline: number, failures: ResolutionFailure[]): Promise<void> {
    await Promise.all(NAMESPACES.map(async (ns) => {
      const mode = out[ns.mode];
      if (!mode.startsWith('container:')) return;
      const prev = r.previous;
      if (prev && prev[ns.mode] === mode && prev[ns.effective] !== undefined) {
        out[ns.effective] = prev[ns.effective];
        return;
      }
      const ref = mode.slice('container:'.length);
      try {
        const eff = await this.effectiveMode(ns, ref, deadline, 1);
        if (eff !== undefined) out[ns.effective] = eff;
      } catch (err) {
        failures.push({ kind: 'namespaces', what: `the ${ns.kind} namespace of container ${ref} (${ns.flag} ${mode})`, why: message(err) });
      }
    }));
  }

  private async effectiveMode(ns: (typeof NAMESPACES)[number], ref: string, deadline: number, depth: number): Promise<string | undefined> {
    const target = await this.container(ref, deadline);
    if (!target) return undefined;
    const mode = target[ns.mode];
    if (!mode.startsWith('container:')) return mode;
    if (target[ns.effective] !== undefined) return target[ns.effective];
    if (depth >= MAX_JOIN_DEPTH) throw new Error(`more than ${MAX_JOIN_DEPTH} containers joined one after another`);
    return this.effectiveMode(ns, mode.slice('container:'.length), deadline, depth + 1);
  }

  // ---- networks --------------------------------------------------------------

  private async resolveNetworks(out: Facts, deadline: number, failures: ResolutionFailure[]): Promise<void> {
    const known = new Map<string, { name: string; id: string }>();
    for (const f of this.o.containers?.inventory() ?? []) {
      for (const n of f.networks) if (n.networkId !== '') known.set(n.name, { name: n.name, id: n.networkId });
    }
    const nets = await Promise.all(out.networks.map(async (a) => {
      if (NETWORK_KEYWORDS.has(a.name)) return a;
      // dockerd looks a network up by full id, then exact name, then id prefix.
      const byName = /^[0-9a-f]{64}$/.test(a.name) ? undefined : known.get(a.name);
      if (byName) return { ...a, name: byName.name, networkId: byName.id };
      try {
        const n = await this.network(a.name, deadline);
        return n ? { ...a, name: n.name, networkId: n.id } : a;
      } catch (err) {
        failures.push({ kind: 'networks', what: `which network "${a.name}" is`, why: message(err) });
        return a;
      }
    }));
    const seen = new Set<string>();
    out.networks = nets.filter((n) => (seen.has(n.name) ? false : (seen.add(n.name), true))).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private async network(ref: string, deadline: number): Promise<{ name: string; id: string } | undefined> {
    const now = this.clock();
    const hit = this.networks.get(ref);
    if (hit && now - hit.at <= this.networkTtlMs && 'value' in hit) return hit.value;
    const get = this.o.docker.getNetwork;
    if (!get) throw new Error('this engine client cannot inspect networks');
    const info = await this.once(`n:${ref}`, () => notFoundAsUndefined(withTimeout(get.call(this.o.docker, ref).inspect(), this.remaining(deadline), `inspect of network ${ref}`)));
    const v = info ? { name: str(info.Name), id: str(info.Id) } : undefined;
    // A network that does not exist yet may be created in a moment: not cached.
    if (v) {
      this.networks.set(ref, { at: now, value: v });
      prune(this.networks);
    }
    return v;
  }

  // ---- containers --------------------------------------------------------------

  /** A container by id, name or unique id prefix: the inventory first, else one inspect. undefined = no such container. */
  private async container(ref: string, deadline: number): Promise<Facts | undefined> {
    const inv = this.o.containers;
    if (inv) {
      const f = findContainer(inv, ref);
      if (f) return f;
    }
    const info = await this.once(`c:${ref}`, () => notFoundAsUndefined(withTimeout(this.o.docker.getContainer(ref).inspect(), this.remaining(deadline), `inspect of container ${ref}`)));
    return info ? toContainerFacts(info) : undefined;
  }

  private once<T>(key: string, start: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const p = start().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private remaining(deadline: number): number {
    return Math.max(1, Math.round(deadline - this.clock()));
  }
}

/** By full id, name (with or without "/") or unique hex id prefix, as dockerd accepts. */
export function findContainer(inv: ResolverInventory, ref: string): Facts | undefined {
  const byId = inv.get(ref);
  if (byId) return byId;
  const name = ref.replace(/^\//, '');
  const hex = /^[0-9a-f]+$/.test(ref);
  let prefixMatch: Facts | undefined;
  let prefixCount = 0;
  for (const f of inv.inventory()) {
    if (f.name === name) return f;
    if (hex && f.id.startsWith(ref)) {
      prefixMatch = f;
      prefixCount++;
    }
  }
  return prefixCount === 1 ? prefixMatch : undefined;
}

function withHostPath(m: Mount__Output, hostPath: string | undefined): Mount__Output {
  if (m.hostPath === hostPath) return m;
  const { hostPath: _old, ...rest } = m;
  return hostPath === undefined ? rest : { ...rest, hostPath };
}

function normalize(p: string): string {
  const n = posix.normalize(p.startsWith('/') ? p : `/${p}`);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

function prune<K, V>(m: Map<K, V>): void {
  while (m.size > CACHE_MAX) m.delete(m.keys().next().value as K);
}

async function notFoundAsUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if ((err as { statusCode?: unknown } | null)?.statusCode === 404) return undefined;
    throw err;
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
