// Owns the translation of Docker's inspect output into the wire's
// ContainerFacts. Pure: no I/O, so the same inspect always yields the same
// facts, and the policy evaluator, the audit and the tests all agree. What
// needs the host or the engine beyond one inspect (symlinks, a volume's
// options, a joined container's namespaces) is docker/facts-resolver.ts.
//
// The HostConfig part is shared with the authz plugin's reading of a create
// request (authz/create-request.ts): a request and the container it makes
// carry the same HostConfig, so `hostConfigFacts` reads both.
//
// Secret material never leaves this function: environment variables are
// reduced to their NAMES here, before anything is logged or sent.
import type Dockerode from 'dockerode';
import { parseImageRef } from '@bulkhead/shared';
import type { BlkioThrottle__Output, ContainerFacts__Output, Mount__Output, NetworkAttachment__Output, Ulimit__Output } from '@bulkhead/shared';
import { capabilities, cmp, devicePaths, int, isObject, presentList, sortMounts, str, stringMap, strings } from './docker-json';

export { normalizeCapability } from './docker-json';

/**
 * The facts of one container. Every field is set (proto3 defaults for what
 * Docker leaves out), so consumers never test for undefined; it is assignable
 * to the looser `ContainerFacts` wherever that is wanted.
 */
export type Facts = ContainerFacts__Output;

/** Docker reports "never" as Go's zero time. */
const DOCKER_ZERO_TIME = '0001-01-01T00:00:00Z';

/**
 * Maps `docker inspect` (and, when known, the image's inspect) to facts.
 * Docker returns `null` for many "empty" lists and maps even where
 * @types/dockerode says otherwise, so every read below tolerates null.
 */
export function toContainerFacts(inspect: Dockerode.ContainerInspectInfo, image?: Dockerode.ImageInspectInfo): Facts {
  const cfg = (inspect.Config ?? {}) as Partial<Dockerode.ContainerInspectInfo['Config']>;
  const hc = (inspect.HostConfig ?? {}) as Dockerode.HostConfig;
  const state = (inspect.State ?? {}) as Partial<Dockerode.ContainerInspectInfo['State']>;
  const imageRef = str(cfg.Image);
  const h = hostConfigFacts(hc as unknown as Record<string, unknown>);
  return {
    id: str(inspect.Id),
    name: str(inspect.Name).replace(/^\//, ''),
    imageRef,
    imageId: str(inspect.Image),
    imageDigest: imageDigest(imageRef, image),
    ...repoDigestsFacts(image),
    labels: { ...(cfg.Labels ?? {}) },
    state: str(state.Status),
    user: str(cfg.User),
    // What the HostConfig decides, read the same way as for a create request.
    ...h,
    mounts: mounts(inspect.Mounts, hc.Tmpfs),
    networkMode: str(hc.NetworkMode),
    networks: networks(inspect.NetworkSettings?.Networks),
    securityOpt: strings(hc.SecurityOpt),
    envNames: envNames(cfg.Env),
    command: [...strings(cfg.Entrypoint), ...strings(cfg.Cmd)],
    createdAtMs: dockerTimeToMs(inspect.Created),
    startedAtMs: dockerTimeToMs(state.StartedAt),
    finishedAtMs: dockerTimeToMs(state.FinishedAt),
    exitCode: int(state.ExitCode),
    pid: int(state.Pid),
    imageUser: str(image?.Config?.User),
    restartCount: int(inspect.RestartCount),
    // Filled in by the agent's secret scan and policy (project label) before reporting.
    secretHits: [],
    project: '',
    // dockerd merged its default log driver and log-opts into LogConfig at
    // create, and merges its default ulimits into every inspect.
    daemonDefaultsMerged: true,
  };
}

/** The facts a HostConfig decides, read alike from inspect and from a create request. */
export type HostConfigFacts = Pick<Facts,
  'privileged' | 'pidMode' | 'ipcMode' | 'utsMode' | 'usernsMode' | 'capAdd' | 'capDrop' | 'readOnlyRootfs' | 'memoryLimitBytes' |
  'nanoCpus' | 'cpuQuota' | 'cpuPeriod' | 'cpuShares' | 'pidsLimit' | 'restartPolicy' | 'restartMaxRetries' | 'devices' |
  'deviceCgroupRules' | 'maskedPaths' | 'readonlyPaths' | 'cgroupnsMode' | 'logConfig' | 'ulimits' | 'blkioThrottles' | 'storageOpt'>;

/** HostConfig's block-IO throttle lists and the kind each one sets. */
const BLKIO_THROTTLES: ReadonlyArray<readonly [key: string, kind: string]> = [
  ['BlkioDeviceReadBps', 'read-bps'], ['BlkioDeviceWriteBps', 'write-bps'], ['BlkioDeviceReadIOps', 'read-iops'], ['BlkioDeviceWriteIOps', 'write-iops'],
];

/**
 * HostConfig keys read (Docker's canonical JSON names, as both inspect and
 * a create request body spell them): Privileged, PidMode, IpcMode, UTSMode,
 * UsernsMode, CapAdd, CapDrop, ReadonlyRootfs, Memory, NanoCpus, CpuQuota,
 * CpuPeriod, CpuShares, PidsLimit, RestartPolicy, Devices,
 * DeviceCgroupRules, MaskedPaths, ReadonlyPaths, CgroupnsMode, LogConfig,
 * Ulimits, BlkioDevice{Read,Write}{Bps,IOps}, StorageOpt. From
 * DeviceCgroupRules on, they are left out of the facts when unset, so facts
 * stay as small as before for the containers that do not set them
 * (LogConfig is always set by inspect).
 */
export function hostConfigFacts(hc: Record<string, unknown>): HostConfigFacts {
  const restart = isObject(hc['RestartPolicy']) ? hc['RestartPolicy'] : {};
  const cgroupRules = strings(hc['DeviceCgroupRules']);
  // null = dockerd's defaults (it fills them in at create unless privileged),
  // [] = nothing masked / read-only: the difference is the point.
  const masked = presentList(hc['MaskedPaths']);
  const readonly = presentList(hc['ReadonlyPaths']);
  const cgroupns = str(hc['CgroupnsMode']);
  const ulimits = ulimitList(hc['Ulimits']);
  const blkio = blkioThrottles(hc);
  const storageOpt = stringMap(hc['StorageOpt']);
  return {
    ...(isObject(hc['LogConfig']) ? { logConfig: { type: str(hc['LogConfig']['Type']), config: stringMap(hc['LogConfig']['Config']) } } : {}),
    ...(ulimits.length > 0 ? { ulimits: { values: ulimits } } : {}),
    ...(blkio.length > 0 ? { blkioThrottles: { values: blkio } } : {}),
    ...(Object.keys(storageOpt).length > 0 ? { storageOpt: { values: storageOpt } } : {}),
    ...(cgroupRules.length > 0 ? { deviceCgroupRules: { values: cgroupRules } } : {}),
    ...(masked ? { maskedPaths: masked } : {}),
    ...(readonly ? { readonlyPaths: readonly } : {}),
    ...(cgroupns !== '' ? { cgroupnsMode: cgroupns } : {}),
    privileged: hc['Privileged'] === true,
    pidMode: str(hc['PidMode']),
    ipcMode: str(hc['IpcMode']),
    utsMode: str(hc['UTSMode']),
    usernsMode: str(hc['UsernsMode']),
    capAdd: capabilities(hc['CapAdd']),
    capDrop: capabilities(hc['CapDrop']),
    readOnlyRootfs: hc['ReadonlyRootfs'] === true,
    memoryLimitBytes: int(hc['Memory']),
    nanoCpus: int(hc['NanoCpus']),
    cpuQuota: int(hc['CpuQuota']),
    cpuPeriod: int(hc['CpuPeriod']),
    cpuShares: int(hc['CpuShares']),
    pidsLimit: int(hc['PidsLimit']),
    // "" and "no" mean the same to dockerd; report one spelling.
    restartPolicy: str(restart['Name']) || 'no',
    restartMaxRetries: int(restart['MaximumRetryCount']),
    devices: devicePaths(hc['Devices']),
  };
}

/**
 * HostConfig.Ulimits ([{Name, Soft, Hard}], Go's units.Ulimit: no JSON
 * tags, int64 values), in order; entries without a name dropped. The name
 * is kept as given: dockerd matches its defaults by the exact name but
 * hands runc "RLIMIT_" + the name in upper case.
 */
export function ulimitList(v: unknown): Ulimit__Output[] {
  if (!Array.isArray(v)) return [];
  const out: Ulimit__Output[] = [];
  for (const u of v) {
    if (!isObject(u) || str(u['Name']) === '') continue;
    out.push({ name: str(u['Name']), soft: int(u['Soft']), hard: int(u['Hard']) });
  }
  return out;
}

/** The four block-IO throttle lists ([{Path, Rate}] each), in a fixed order. */
function blkioThrottles(hc: Record<string, unknown>): BlkioThrottle__Output[] {
  const out: BlkioThrottle__Output[] = [];
  for (const [key, kind] of BLKIO_THROTTLES) {
    const list = hc[key];
    if (!Array.isArray(list)) continue;
    for (const d of list) {
      if (!isObject(d)) continue;
      out.push({ kind, path: str(d['Path']), rate: int(d['Rate']) });
    }
  }
  return out;
}

/** RFC 3339 (nanosecond precision) → epoch ms; Docker's zero time, absent or bad → 0. */
export function dockerTimeToMs(t: string | undefined | null): number {
  if (typeof t !== 'string' || t === '' || t === DOCKER_ZERO_TIME) return 0;
  const ms = Date.parse(t);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

/** Names of `NAME=value` entries (a bare `NAME` is a name too), first occurrence kept. */
export function envNames(env: readonly string[] | null | undefined): string[] {
  const seen = new Set<string>();
  for (const e of env ?? []) {
    if (typeof e !== 'string') continue;
    const i = e.indexOf('=');
    const name = i === -1 ? e : e.slice(0, i);
    if (name !== '') seen.add(name);
  }
  return [...seen];
}

/**
 * The repo digest that identifies the image: the one for the repository the
 * container asked for if the image carries several, else the first; a ref
 * pinned by digest is its own digest. "" when unknown (e.g. locally built
 * or imported images have no repo digest).
 */
export function imageDigest(imageRef: string, image?: Dockerode.ImageInspectInfo): string {
  const digests = strings(image?.RepoDigests);
  if (digests.length > 0) {
    // Compared normalised ("nginx" is "docker.io/library/nginx"), as dockerd resolves names.
    const repo = repositoryOf(imageRef);
    return digests.find((d) => repositoryOf(d) === repo) ?? digests[0]!;
  }
  return /@sha256:[0-9a-f]{64}$/.test(imageRef) ? imageRef : '';
}

/** Facts' `repoDigests`: every repo digest of the image (where it came from), absent when none. */
export function repoDigestsFacts(image?: Dockerode.ImageInspectInfo): Pick<Facts, 'repoDigests'> {
  const digests = strings(image?.RepoDigests);
  return digests.length > 0 ? { repoDigests: { values: digests } } : {};
}

/** "reg:5000/a/b:tag@sha256:…" → "reg:5000/a/b"; Docker Hub names normalised ("nginx" → "docker.io/library/nginx"). */
function repositoryOf(ref: string): string {
  const p = parseImageRef(ref);
  return `${p.registry}/${p.repository}`;
}

type InspectMount = Dockerode.ContainerInspectInfo['Mounts'][number];

function mounts(list: readonly InspectMount[] | null | undefined, tmpfs: Record<string, string> | null | undefined): Mount__Output[] {
  const out: Mount__Output[] = (list ?? []).map((m) => ({
    type: str(m.Type),
    // The proto asks for the volume NAME for volumes (the host path under
    // /var/lib/docker says nothing useful), the host path for binds.
    source: m.Type === 'volume' ? str(m.Name) || str(m.Source) : str(m.Source),
    destination: str(m.Destination),
    readOnly: m.RW === false,
    propagation: str(m.Propagation),
  }));
  // `--tmpfs` mounts appear only in HostConfig.Tmpfs, not in Mounts
  // (`--mount type=tmpfs` appears in both); report each destination once.
  const seen = new Set(out.map((m) => m.destination));
  for (const [dest, options] of Object.entries(tmpfs ?? {})) {
    if (seen.has(dest)) continue;
    const ro = str(options).split(',').some((o) => o.trim() === 'ro');
    out.push({ type: 'tmpfs', source: '', destination: dest, readOnly: ro, propagation: '' });
  }
  return sortMounts(out);
}

type InspectNetworks = Dockerode.ContainerInspectInfo['NetworkSettings']['Networks'];

function networks(nets: InspectNetworks | null | undefined): NetworkAttachment__Output[] {
  return Object.entries(nets ?? {})
    .map(([name, n]) => ({
      name,
      networkId: str(n?.NetworkID),
      ipAddress: str(n?.IPAddress) || str(n?.GlobalIPv6Address),
    }))
    .sort((a, b) => cmp(a.name, b.name));
}
