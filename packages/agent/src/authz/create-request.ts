// Owns turning Docker API request bodies into ContainerFacts, so a request
// can be judged by the same evaluator as a running container — before
// dockerd acts on it:
//   POST /containers/create        → the facts the container WILL have
//   POST /containers/{id}/update   → its current facts with the update applied
//   POST /containers/{id}/exec     → its facts as a privileged / root process sees them
//   POST /networks/{id}/connect    → its facts with one more network
//   POST /volumes/create           → the host path a local-driver volume would bind
//   POST /plugins/{name}/enable    → the facts of the plugin's process (pluginToFacts)
//
// Pure: no I/O. The mapping mirrors what dockerd does at create (image USER,
// labels, env, entrypoint/cmd and volumes merged in from the image config)
// and reads the HostConfig with the same function as toContainerFacts
// (docker/container-facts.ts), so a request and the container it makes
// yield the same facts; a test compares both against a real engine. What
// only the engine or the host can tell (the mounts of a --volumes-from
// container, an existing volume's options, symlinks, a network named by id,
// a joined container's namespaces) is filled in afterwards by
// docker/facts-resolver.ts.
import { posix } from 'node:path';
import type Dockerode from 'dockerode';
import { isRootUser, type Mount__Output, type NetworkAttachment__Output } from '@bulkhead/shared';
import { envNames, hostConfigFacts, imageDigest, repoDigestsFacts, type Facts } from '../docker/container-facts';
import { cleanPath, cmp, int, isObject, sortMounts, str, stringMap, strings } from '../docker/docker-json';
import { localVolumeHostPath } from '../docker/facts-resolver';
import { mergeHits, scanEnv, scanHistory, scanCommand, scanLabels, type ImageHistoryEntry, type SecretHit } from '../secrets/secret-scan';

/** The body of `POST /containers/create` (Config fields at top level, plus HostConfig and NetworkingConfig). */
export interface ContainerCreateBody {
  User?: string | null;
  Env?: string[] | null;
  Cmd?: string[] | string | null;
  Entrypoint?: string[] | string | null;
  Image?: string | null;
  Labels?: Record<string, string> | null;
  Volumes?: Record<string, unknown> | null;
  HostConfig?: Record<string, unknown> | null;
  NetworkingConfig?: { EndpointsConfig?: Record<string, unknown> | null } | null;
  [k: string]: unknown;
}

/** The body of `POST /containers/{id}/update`. */
export interface ContainerUpdateBody {
  Memory?: number | null;
  MemorySwap?: number | null;
  NanoCpus?: number | null;
  CpuQuota?: number | null;
  CpuPeriod?: number | null;
  CpuShares?: number | null;
  PidsLimit?: number | null;
  RestartPolicy?: { Name?: string | null; MaximumRetryCount?: number | null } | null;
  [k: string]: unknown;
}

/** The body of `POST /containers/{id}/exec`. */
export interface ExecCreateBody {
  User?: string | null;
  Privileged?: boolean | null;
  [k: string]: unknown;
}

/** The body of `POST /networks/{id}/connect`. */
export interface NetworkConnectBody {
  Container?: string | null;
  [k: string]: unknown;
}

/** The body of `POST /volumes/create`. */
export interface VolumeCreateBody {
  Name?: string | null;
  Driver?: string | null;
  DriverOpts?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
  [k: string]: unknown;
}

export interface CreateRequestFacts {
  facts: Facts;
  /** Secret hits in the request's env, labels and command (and the image's, merged in). */
  secretHits: SecretHit[];
}

/**
 * The facts a create request would produce. `name` is the `?name=` query
 * parameter ("" when dockerd will pick one); `image` the inspect of
 * `body.Image` when known (its USER, labels, env, entrypoint/cmd, volumes and
 * digests are merged in the way dockerd merges them); `imageHistory` adds
 * history hits when the caller has it cached.
 */
export function createRequestToFacts(
  body: ContainerCreateBody,
  name: string,
  image?: Dockerode.ImageInspectInfo,
  imageHistory?: readonly ImageHistoryEntry[],
): CreateRequestFacts {
  const b = (body ?? {}) as ContainerCreateBody;
  const hc = isObject(b.HostConfig) ? b.HostConfig : {};
  const icfg = (image?.Config ?? {}) as Partial<Dockerode.ImageInspectInfo['Config']>;
  const imageRef = str(b.Image);

  const env = mergeEnv(strings(icfg.Env), strings(b.Env));
  const labels: Record<string, string> = { ...stringMap(icfg.Labels), ...stringMap(b.Labels) };
  // runconfig.Merge: the image's entrypoint/cmd apply only where the request leaves them empty.
  let entrypoint = b.Entrypoint === undefined || b.Entrypoint === null ? null : strings(b.Entrypoint);
  let cmd = strings(b.Cmd);
  if (entrypoint === null || entrypoint.length === 0) {
    if (cmd.length === 0) cmd = strings(icfg.Cmd);
    if (entrypoint === null) entrypoint = strings(icfg.Entrypoint);
  }
  const command = [...entrypoint, ...cmd];
  const networkMode = str(hc['NetworkMode']) || 'default';
  const h = hostConfigFacts(hc);

  const facts: Facts = {
    id: '',
    name: str(name).replace(/^\//, ''),
    imageRef,
    imageId: str(image?.Id),
    imageDigest: imageDigest(imageRef, image),
    ...repoDigestsFacts(image),
    labels,
    state: 'created',
    // dockerd copies the image USER into the container's config at create.
    user: str(b.User) || str(icfg.User),
    // What the HostConfig decides, read the same way as for an inspect.
    ...h,
    // No LogConfig is the daemon's default driver and log-opts.
    logConfig: h.logConfig ?? { type: '', config: {} },
    mounts: createMounts(hc, b.Volumes, icfg.Volumes),
    networkMode,
    networks: createNetworks(networkMode, b.NetworkingConfig?.EndpointsConfig),
    securityOpt: securityOpts(hc),
    envNames: envNames(env),
    command,
    createdAtMs: 0,
    startedAtMs: 0,
    finishedAtMs: 0,
    exitCode: 0,
    pid: 0,
    imageUser: str(icfg.User),
    restartCount: 0,
    secretHits: [],
    project: '',
    // dockerd completes LogConfig and Ulimits with its defaults; the checks
    // that read them take those from the host facts.
    daemonDefaultsMerged: false,
  };
  const secretHits = mergeHits(scanEnv(env), scanLabels(labels), scanCommand(command), scanHistory(imageHistory));
  return { facts, secretHits };
}

/**
 * A container's facts as they would be after `docker update`. dockerd
 * treats 0 (and absent) as "leave unchanged" for the resource fields, and a
 * null PidsLimit likewise; PidsLimit 0 or -1 means unlimited.
 */
export function applyUpdateRequest(current: Facts, body: ContainerUpdateBody): Facts {
  const b = (isObject(body) ? body : {}) as ContainerUpdateBody;
  const next: Facts = { ...current };
  const set = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v !== 0 ? Math.trunc(v) : undefined);
  const mem = set(b.Memory);
  if (mem !== undefined) next.memoryLimitBytes = mem < 0 ? 0 : mem;
  const nano = set(b.NanoCpus);
  if (nano !== undefined) next.nanoCpus = nano < 0 ? 0 : nano;
  const quota = set(b.CpuQuota);
  if (quota !== undefined) next.cpuQuota = quota;
  const period = set(b.CpuPeriod);
  if (period !== undefined) next.cpuPeriod = period;
  const shares = set(b.CpuShares);
  if (shares !== undefined) next.cpuShares = shares;
  if (typeof b.PidsLimit === 'number' && Number.isFinite(b.PidsLimit)) next.pidsLimit = b.PidsLimit <= 0 ? 0 : Math.trunc(b.PidsLimit);
  const rp = isObject(b.RestartPolicy) ? b.RestartPolicy! : undefined;
  if (rp && str(rp.Name) !== '') {
    next.restartPolicy = str(rp.Name);
    next.restartMaxRetries = int(rp.MaximumRetryCount);
  }
  return next;
}

/**
 * Whether an exec runs privileged and/or as root. The user is resolved the
 * way runc resolves it (isRootUser): "root", or a uid that Go's Atoi reads
 * as 0 ("0", "00", "+0", "-0"), with or without a group. An empty user runs
 * as the container's own user, so it asks for nothing.
 */
export function execEscalation(body: ExecCreateBody): { privileged: boolean; root: boolean } {
  const b = (isObject(body) ? body : {}) as ExecCreateBody;
  const user = str(b.User);
  return { privileged: b.Privileged === true, root: user !== '' && isRootUser(user) };
}

/**
 * The container's facts as seen by an escalated exec: privileged when the
 * exec is, running as root when the exec's user is root. undefined when the
 * exec asks for nothing beyond the container's own configuration (an empty
 * User runs as the container's user).
 */
export function execRequestToFacts(container: Facts, body: ExecCreateBody): Facts | undefined {
  const e = execEscalation(body);
  if (!e.privileged && !e.root) return undefined;
  return {
    ...container,
    privileged: container.privileged || e.privileged,
    user: e.root ? 'root' : container.user,
  };
}

/** HostConfig.VolumesFrom of a create request: "container[:ro|:rw]" entries. */
export function volumesFromOf(body: ContainerCreateBody): string[] {
  const hc = isObject(body?.HostConfig) ? body.HostConfig : {};
  return strings(hc['VolumesFrom']);
}

/**
 * A container's facts once `docker network connect` has attached it to one
 * more network (canonical name and id, as the resolver found them).
 */
export function applyNetworkConnect(current: Facts, network: { name: string; id: string }): Facts {
  if (current.networks.some((n) => n.name === network.name || (network.id !== '' && n.networkId === network.id))) return current;
  const networks = [...current.networks, { name: network.name, networkId: network.id, ipAddress: '' }].sort((a, b) => cmp(a.name, b.name));
  return { ...current, networks };
}

/**
 * What `POST /volumes/create` would let a container mount, as the facts of
 * a container that mounts it (name = the volume's, labels = its labels):
 * one volume mount carrying the host path a local-driver volume binds, or
 * undefined when it binds none (any other driver, or no device). Judged only
 * by the host-path rules; everything else about this "container" is empty.
 */
export function volumeCreateToFacts(body: VolumeCreateBody): Facts | undefined {
  const b = (isObject(body) ? body : {}) as VolumeCreateBody;
  const opts = stringMap(b.DriverOpts);
  const hostPath = localVolumeHostPath(str(b.Driver), opts);
  if (hostPath === undefined) return undefined;
  const ro = str(opts['o']).split(',').some((o) => o.trim() === 'ro');
  return {
    ...emptyFacts(),
    name: str(b.Name),
    labels: stringMap(b.Labels),
    mounts: [{ type: 'volume', source: str(b.Name), destination: '', readOnly: ro, propagation: '', hostPath }],
  };
}

/** Mount types that bind nothing from the host (a kernel filesystem made afresh). */
const VIRTUAL_MOUNT_TYPES = new Set(['tmpfs', 'proc', 'sysfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2']);

/**
 * The facts of the process dockerd runs for a managed plugin when it is
 * ENABLED, from the plugin's inspect (`GET /plugins/{name}/json`), judged
 * like a container's: a plugin is a root process (uid 0 whatever its config
 * says; no user namespace) that dockerd starts with whatever its
 * config.json asks — host binds (`mounts`, changeable with `docker plugin
 * set` while disabled), capabilities, host PID/IPC/network namespaces,
 * devices, every device (`allowAllDevices`). Nothing asks the user at
 * `docker plugin create` (a local tarball), and a running plugin is not a
 * container (containerd namespace plugins.moby): neither `docker ps` nor
 * the reaction path ever sees it. So the enable is the only door.
 * Mirrors moby's plugin/v2 InitSpec (20.10–26.1); Settings hold the
 * effective mounts/devices, Config the declared ones — both are judged
 * (a set can only re-point a declared, settable entry).
 */
export function pluginToFacts(info: Record<string, unknown>): Facts {
  const config = isObject(info['Config']) ? info['Config'] : {};
  const settings = isObject(info['Settings']) ? info['Settings'] : {};
  const linux = isObject(config['Linux']) ? config['Linux'] : {};
  const network = isObject(config['Network']) ? config['Network'] : {};
  const mounts: Mount__Output[] = [];
  const seen = new Set<string>();
  const list = (v: unknown): Record<string, unknown>[] => (Array.isArray(v) ? v.filter(isObject) : []);
  for (const m of [...list(settings['Mounts']), ...list(config['Mounts'])]) {
    const source = str(m['Source']);
    const type = str(m['Type']);
    const options = strings(m['Options']);
    // runc binds whenever the options say bind/rbind, whatever the type says.
    const binds = type === 'bind' || options.includes('bind') || options.includes('rbind') || !VIRTUAL_MOUNT_TYPES.has(type);
    if (source === '' || !binds) continue;
    // Absolute and clean; the resolver adds where its symlinks lead (runc follows them).
    const abs = cleanPath(posix.resolve('/', source));
    const key = `${abs}\u0000${str(m['Destination'])}`;
    if (seen.has(key)) continue;
    seen.add(key);
    mounts.push({ type: 'bind', source: abs, destination: str(m['Destination']), readOnly: options.includes('ro'), propagation: '' });
  }
  const devices = new Set<string>();
  for (const d of [...list(settings['Devices']), ...list(linux['Devices'])]) {
    const path = str(d['Path']);
    if (path !== '') devices.add(path);
  }
  const ref = str(info['PluginReference']) || str(info['Name']);
  return {
    ...emptyFacts(),
    id: str(info['Id']),
    name: str(info['Name']),
    imageRef: ref,
    // Root, whatever Config.User says: dockerd does not apply it (measured on
    // 20.10 and 26.1: a plugin declaring uid 1000 runs as uid=0 gid=0).
    user: '0:0',
    capAdd: strings(linux['Capabilities']),
    mounts,
    devices: [...devices],
    ...(linux['AllowAllDevices'] === true ? { deviceCgroupRules: { values: ['a *:* rwm'] } } : {}),
    pidMode: config['PidHost'] === true ? 'host' : '',
    ipcMode: config['IpcHost'] === true ? 'host' : '',
    networkMode: str(network['Type']) === 'host' ? 'host' : 'none',
  };
}

/**
 * The container's facts once dockerd ≤ 24 has applied a host config sent
 * with `POST /v1.2x/containers/{id}/start`: it REPLACES the stored one
 * (daemon.setHostConfig), so everything the host config decides is read
 * from it — mounts, namespaces, privileges, devices, limits, network mode.
 * Config (user, image, env) stays as stored.
 */
export function applyLegacyStartHostConfig(current: Facts, hc: Record<string, unknown>): Facts {
  const networkMode = str(hc['NetworkMode']) || 'default';
  // Optional host-config facts the new host config leaves unset are unset.
  const rest: Facts = { ...current };
  for (const k of OPTIONAL_HOST_CONFIG_FACTS) delete rest[k];
  return {
    ...rest,
    ...hostConfigFacts(hc),
    // The replaced host config is stored as sent, without dockerd's defaults.
    logConfig: hostConfigFacts(hc).logConfig ?? { type: '', config: {} },
    daemonDefaultsMerged: false,
    mounts: createMounts(hc, undefined, undefined),
    networkMode,
    networks: networkMode === current.networkMode ? current.networks : createNetworks(networkMode, undefined),
    securityOpt: securityOpts(hc),
  };
}

/** The facts hostConfigFacts leaves out when the host config does not set them. */
const OPTIONAL_HOST_CONFIG_FACTS = ['deviceCgroupRules', 'maskedPaths', 'readonlyPaths', 'cgroupnsMode', 'logConfig', 'ulimits', 'blkioThrottles', 'storageOpt'] as const;

/** Facts with every field at its proto3 default. */
export function emptyFacts(): Facts {
  return {
    id: '', name: '', imageRef: '', imageId: '', imageDigest: '', labels: {}, state: '', user: '', privileged: false,
    mounts: [], networkMode: '', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [], securityOpt: [],
    readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0, restartPolicy: 'no',
    restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 0, startedAtMs: 0, finishedAtMs: 0, exitCode: 0, pid: 0, devices: [],
    imageUser: '', restartCount: 0, secretHits: [], project: '',
  };
}

// ---- helpers -------------------------------------------------------------

/** The request's env, then the image's entries it does not override (runconfig.Merge's order). */
function mergeEnv(imageEnv: string[], reqEnv: string[]): string[] {
  const nameOf = (e: string): string => {
    const i = e.indexOf('=');
    return i === -1 ? e : e.slice(0, i);
  };
  const given = new Set(reqEnv.map(nameOf));
  return [...reqEnv, ...imageEnv.filter((e) => !given.has(nameOf(e)))];
}

/**
 * dockerd turns SELinux labelling off for privileged containers and those
 * sharing the host's PID or IPC namespace, unless the request set a label
 * option itself (daemon.generateSecurityOpt); inspect shows the result.
 */
function securityOpts(hc: Record<string, unknown>): string[] {
  const opts = strings(hc['SecurityOpt']);
  if (opts.some((o) => o.split(/[=:]/)[0] === 'label')) return opts;
  if (hc['Privileged'] === true || str(hc['PidMode']) === 'host' || str(hc['IpcMode']) === 'host') return [...opts, 'label=disable'];
  return opts;
}

const PROPAGATIONS = new Set(['shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate']);

function createMounts(hc: Record<string, unknown>, volumes: unknown, imageVolumes: unknown): Mount__Output[] {
  const out: Mount__Output[] = [];
  const taken = new Set<string>();
  const add = (m: Mount__Output): void => {
    if (m.destination === '' || taken.has(m.destination)) return;
    taken.add(m.destination);
    out.push(m);
  };
  for (const bind of strings(hc['Binds'])) {
    // "src:dst[:opts]" or a bare "dst" (anonymous volume).
    const parts = bind.split(':');
    if (parts.length === 1) {
      add({ type: 'volume', source: '', destination: cleanPath(parts[0]!), readOnly: false, propagation: '' });
      continue;
    }
    const [src, dst, opts = ''] = parts as [string, string, string?];
    const o = opts.split(',').map((s) => s.trim());
    const isBind = src.startsWith('/');
    add({
      type: isBind ? 'bind' : 'volume',
      source: isBind ? cleanPath(src) : src,
      destination: cleanPath(dst),
      readOnly: o.includes('ro'),
      propagation: isBind ? (o.find((x) => PROPAGATIONS.has(x)) ?? 'rprivate') : '',
    });
  }
  for (const m of Array.isArray(hc['Mounts']) ? (hc['Mounts'] as unknown[]) : []) {
    if (!isObject(m)) continue;
    const type = str(m['Type']) || 'volume';
    const bindOpts = isObject(m['BindOptions']) ? m['BindOptions'] : {};
    const mount: Mount__Output = {
      type,
      source: type === 'bind' ? cleanPath(str(m['Source'])) : str(m['Source']),
      destination: cleanPath(str(m['Target'])),
      readOnly: m['ReadOnly'] === true,
      propagation: type === 'bind' ? (str(bindOpts['Propagation']) || 'rprivate') : '',
    };
    // `--mount type=volume,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc`:
    // a volume created by this very request, bound to a host path. (Should
    // the named volume exist already, dockerd uses it as it is and the
    // resolver reads its options instead.)
    if (type === 'volume') {
      const volOpts = isObject(m['VolumeOptions']) ? m['VolumeOptions'] : {};
      const driver = isObject(volOpts['DriverConfig']) ? volOpts['DriverConfig'] : undefined;
      const hostPath = driver ? localVolumeHostPath(str(driver['Name']) || str(hc['VolumeDriver']), stringMap(driver['Options'])) : undefined;
      if (hostPath !== undefined) mount.hostPath = hostPath;
    }
    add(mount);
  }
  for (const [dest, options] of Object.entries(stringMap(hc['Tmpfs']))) {
    const ro = options.split(',').some((o) => o.trim() === 'ro');
    add({ type: 'tmpfs', source: '', destination: cleanPath(dest), readOnly: ro, propagation: '' });
  }
  // Anonymous volumes: the request's and the image's VOLUME lines.
  for (const dest of [...Object.keys(isObject(volumes) ? volumes : {}), ...Object.keys(isObject(imageVolumes) ? imageVolumes : {})]) {
    add({ type: 'volume', source: '', destination: cleanPath(dest), readOnly: false, propagation: '' });
  }
  return sortMounts(out);
}

function createNetworks(networkMode: string, endpoints: unknown): NetworkAttachment__Output[] {
  const names = new Set<string>();
  if (networkMode.startsWith('container:')) return [];
  names.add(networkMode === 'default' ? 'bridge' : networkMode);
  for (const n of Object.keys(isObject(endpoints) ? endpoints : {})) names.add(n);
  return [...names].map((name) => ({ name, networkId: '', ipAddress: '' })).sort((a, b) => cmp(a.name, b.name));
}

/** A swarm service spec as a container create, and what the door cannot map. */
export interface ServiceCreateMapping {
  /** The create body swarm's executor would send dockerd for each task (daemon/cluster/executor/container). */
  body: ContainerCreateBody;
  /** The service's name: the tasks' containers are named `<name>.<slot>.<task id>`. */
  name: string;
  /** Network targets (names or ids) of TaskTemplate.Networks (else the deprecated ServiceSpec.Networks). */
  networks: string[];
  /** Fields the door cannot turn into container facts, with why ("" when none). */
  unmappable: string[];
}

const SECCOMP_MODES = new Set(['', 'default', 'unconfined', 'custom']);
const APPARMOR_MODES = new Set(['', 'default', 'disabled']);

/**
 * `POST /services/create` and `/services/{id}/update`: swarm's executor
 * makes each task's container inside dockerd (no create reaches the
 * plugin), from the service's TaskTemplate. This builds the create body it
 * would use, mirroring moby's daemon/cluster/executor/container
 * (containerConfig.config, hostConfig, resources, applyPrivileges;
 * 20.10–26.1), so the ONE evaluator judges the task's container as it
 * judges a `docker run`:
 *   ContainerSpec.Command → Entrypoint (Args → Cmd), User, Env, Labels
 *   (plus com.docker.swarm.service.name, as on the task's containers),
 *   Mounts (same mount.Mount type), ReadOnly, CapabilityAdd/Drop, Ulimits,
 *   Privileges (SELinux → label=…, Seccomp unconfined/custom → seccomp=…,
 *   AppArmor disabled → apparmor=unconfined, NoNewPrivileges),
 *   Resources.Limits (MemoryBytes, NanoCPUs, Pids), LogDriver → LogConfig.
 * The network mode is decided by the caller once the targets are resolved
 * (a predefined `host` network → NetworkMode host; the CLI sends its id).
 * Sysctls, Init, Isolation, Groups, Hosts, DNS, Secrets and Configs are
 * what a create may carry unjudged too. Swarm has no --privileged, devices
 * or --pid/--ipc host.
 */
export function serviceSpecToCreate(spec: Record<string, unknown>): ServiceCreateMapping {
  const unmappable: string[] = [];
  const task = isObject(spec['TaskTemplate']) ? spec['TaskTemplate'] : {};
  const runtime = str(task['Runtime']);
  if (task['PluginSpec'] !== undefined && task['PluginSpec'] !== null) {
    unmappable.push('TaskTemplate.PluginSpec (a swarm-managed plugin: its process runs with what the plugin\'s config asks, which the request does not show)');
  }
  if (task['NetworkAttachmentSpec'] !== undefined && task['NetworkAttachmentSpec'] !== null) unmappable.push('TaskTemplate.NetworkAttachmentSpec');
  if (runtime !== '' && runtime !== 'container') unmappable.push(`TaskTemplate.Runtime "${runtime}"`);
  const c = isObject(task['ContainerSpec']) ? task['ContainerSpec'] : {};
  const name = str(spec['Name']);
  const hc: Record<string, unknown> = {};
  const securityOpt: string[] = [];
  const p = isObject(c['Privileges']) ? c['Privileges'] : undefined;
  if (p) {
    const se = isObject(p['SELinuxContext']) ? p['SELinuxContext'] : undefined;
    if (se) {
      if (se['Disable'] === true) securityOpt.push('label=disable');
      for (const [k, opt] of [['User', 'user'], ['Role', 'role'], ['Type', 'type'], ['Level', 'level']] as const) {
        if (str(se[k]) !== '') securityOpt.push(`label=${opt}:${str(se[k])}`);
      }
    }
    const sc = isObject(p['Seccomp']) ? p['Seccomp'] : undefined;
    if (sc) {
      const mode = str(sc['Mode']);
      if (!SECCOMP_MODES.has(mode)) unmappable.push(`TaskTemplate.ContainerSpec.Privileges.Seccomp.Mode "${mode}"`);
      else if (mode === 'unconfined') securityOpt.push('seccomp=unconfined');
      else if (mode === 'custom') {
        // A []byte in Go: base64 in the JSON; the executor passes the bytes as the profile.
        const b64 = str(sc['Profile']);
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) unmappable.push('TaskTemplate.ContainerSpec.Privileges.Seccomp.Profile (not base64)');
        else securityOpt.push(`seccomp=${Buffer.from(b64, 'base64').toString('utf8')}`);
      }
    }
    const aa = isObject(p['AppArmor']) ? p['AppArmor'] : undefined;
    if (aa) {
      const mode = str(aa['Mode']);
      if (!APPARMOR_MODES.has(mode)) unmappable.push(`TaskTemplate.ContainerSpec.Privileges.AppArmor.Mode "${mode}"`);
      else if (mode === 'disabled') securityOpt.push('apparmor=unconfined');
    }
    if (p['NoNewPrivileges'] === true) securityOpt.push('no-new-privileges=true');
  }
  if (securityOpt.length > 0) hc['SecurityOpt'] = securityOpt;
  const mounts = Array.isArray(c['Mounts']) ? c['Mounts'].filter(isObject) : [];
  mounts.forEach((m, i) => {
    const type = str(m['Type']);
    if (!['bind', 'volume', 'tmpfs', 'npipe', ''].includes(type)) {
      unmappable.push(`TaskTemplate.ContainerSpec.Mounts[${i}].Type "${type}" (what a cluster volume mounts is known only to its CSI plugin)`);
    }
  });
  if (mounts.length > 0) hc['Mounts'] = mounts;
  if (c['ReadOnly'] === true) hc['ReadonlyRootfs'] = true;
  if (Array.isArray(c['CapabilityAdd'])) hc['CapAdd'] = c['CapabilityAdd'];
  if (Array.isArray(c['CapabilityDrop'])) hc['CapDrop'] = c['CapabilityDrop'];
  if (Array.isArray(c['Ulimits'])) hc['Ulimits'] = c['Ulimits'];
  const res = isObject(task['Resources']) ? task['Resources'] : {};
  const limits = isObject(res['Limits']) ? res['Limits'] : {};
  if (typeof limits['MemoryBytes'] === 'number') hc['Memory'] = limits['MemoryBytes'];
  if (typeof limits['NanoCPUs'] === 'number') hc['NanoCpus'] = limits['NanoCPUs'];
  if (typeof limits['Pids'] === 'number' && limits['Pids'] > 0) hc['PidsLimit'] = limits['Pids'];
  const log = isObject(task['LogDriver']) ? task['LogDriver'] : undefined;
  if (log) hc['LogConfig'] = { Type: str(log['Name']), Config: stringMap(log['Options']) };
  // Swarm restarts tasks itself: the containers have no restart policy.
  const command = strings(c['Command']);
  const args = strings(c['Args']);
  const body: ContainerCreateBody = {
    Image: str(c['Image']),
    User: str(c['User']),
    Env: strings(c['Env']),
    Labels: { ...stringMap(c['Labels']), ...(name !== '' ? { 'com.docker.swarm.service.name': name } : {}) },
    ...(command.length > 0 ? { Entrypoint: command, Cmd: args } : args.length > 0 ? { Cmd: args } : {}),
    HostConfig: hc,
  };
  const targets = (v: unknown): string[] => (Array.isArray(v) ? v.filter(isObject).map((n) => str(n['Target'])).filter((t) => t !== '') : []);
  let networks = targets(task['Networks']);
  // dockerd moves the deprecated top-level Networks into the task template when it has none.
  if (networks.length === 0) networks = targets(spec['Networks']);
  return { body, name, networks, unmappable };
}
