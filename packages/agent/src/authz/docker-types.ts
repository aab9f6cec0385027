// Owns the shapes of the Docker API request bodies the authorization plugin
// judges, as Go structs (moby's api/types, identical in dockerd 20.10 and
// 26.1 for every field listed here), for go-json.ts to decode bodies into,
// and the decoding of each judged body the way dockerd's handler does it.
//
// Every field that decides a fact is typed as dockerd types it, so a value
// of the wrong type is an error here exactly when it is one for dockerd.
// Fields Bulkhead never judges are SKIP (syntax-checked, ignored): a type
// error there makes dockerd refuse a request the plugin allowed, which is
// harmless.
import { BOOL, goDecode, goStruct, INT64, mapOf, ptrTo, SKIP, sliceOf, STRING, STRSLICE, UINT16, UINT64, type GoField, type GoType } from './go-json';

const f = (name: string, type: GoType, group?: string): GoField => (group === undefined ? { name, type } : { name, type, group });

const DEVICE_MAPPING = goStruct([f('PathOnHost', STRING), f('PathInContainer', STRING), f('CgroupPermissions', STRING)]);
const RESTART_POLICY = goStruct([f('Name', STRING), f('MaximumRetryCount', INT64)]);
const MOUNT = goStruct([
  f('Type', STRING), f('Source', STRING), f('Target', STRING), f('ReadOnly', BOOL), f('Consistency', STRING),
  f('BindOptions', ptrTo(goStruct([f('Propagation', STRING), f('NonRecursive', BOOL), f('CreateMountpoint', BOOL), f('ReadOnlyNonRecursive', BOOL), f('ReadOnlyForceRecursive', BOOL)]))),
  f('VolumeOptions', ptrTo(goStruct([
    f('NoCopy', BOOL), f('Labels', mapOf(STRING)),
    f('DriverConfig', ptrTo(goStruct([f('Name', STRING), f('Options', mapOf(STRING))]))),
    f('Subpath', STRING),
  ]))),
  f('TmpfsOptions', SKIP),
  f('ClusterOptions', SKIP),
]);

/** container.Resources: promoted into HostConfig and UpdateConfig. */
const RESOURCES: readonly GoField[] = [
  f('CpuShares', INT64), f('Memory', INT64), f('NanoCpus', INT64), f('CgroupParent', STRING), f('BlkioWeight', UINT16),
  f('BlkioWeightDevice', SKIP), f('BlkioDeviceReadBps', SKIP), f('BlkioDeviceWriteBps', SKIP), f('BlkioDeviceReadIOps', SKIP), f('BlkioDeviceWriteIOps', SKIP),
  f('CpuPeriod', INT64), f('CpuQuota', INT64), f('CpuRealtimePeriod', INT64), f('CpuRealtimeRuntime', INT64), f('CpusetCpus', STRING), f('CpusetMems', STRING),
  f('Devices', sliceOf(DEVICE_MAPPING)), f('DeviceCgroupRules', sliceOf(STRING)), f('DeviceRequests', SKIP),
  f('KernelMemory', INT64), f('KernelMemoryTCP', INT64), f('MemoryReservation', INT64), f('MemorySwap', INT64),
  f('MemorySwappiness', ptrTo(INT64)), f('OomKillDisable', ptrTo(BOOL)), f('PidsLimit', ptrTo(INT64)), f('Ulimits', SKIP),
  f('CpuCount', INT64), f('CpuPercent', INT64), f('IOMaximumIOps', UINT64), f('IOMaximumBandwidth', UINT64),
];

const HOST_CONFIG_OWN: readonly GoField[] = [
  f('Binds', sliceOf(STRING)), f('ContainerIDFile', STRING), f('LogConfig', goStruct([f('Type', STRING), f('Config', mapOf(STRING))])),
  f('NetworkMode', STRING), f('PortBindings', SKIP), f('RestartPolicy', RESTART_POLICY), f('AutoRemove', BOOL), f('VolumeDriver', STRING),
  f('VolumesFrom', sliceOf(STRING)), f('ConsoleSize', SKIP), f('Annotations', mapOf(STRING)), f('CapAdd', STRSLICE), f('CapDrop', STRSLICE),
  f('CgroupnsMode', STRING), f('Dns', sliceOf(STRING)), f('DnsOptions', sliceOf(STRING)), f('DnsSearch', sliceOf(STRING)),
  f('ExtraHosts', sliceOf(STRING)), f('GroupAdd', sliceOf(STRING)), f('IpcMode', STRING), f('Cgroup', STRING), f('Links', sliceOf(STRING)),
  f('OomScoreAdj', INT64), f('PidMode', STRING), f('Privileged', BOOL), f('PublishAllPorts', BOOL), f('ReadonlyRootfs', BOOL),
  f('SecurityOpt', sliceOf(STRING)), f('StorageOpt', mapOf(STRING)), f('Tmpfs', mapOf(STRING)), f('UTSMode', STRING), f('UsernsMode', STRING),
  f('ShmSize', INT64), f('Sysctls', mapOf(STRING)), f('Runtime', STRING), f('Isolation', STRING),
];
const HOST_CONFIG_TAIL: readonly GoField[] = [f('Mounts', sliceOf(MOUNT)), f('MaskedPaths', sliceOf(STRING)), f('ReadonlyPaths', sliceOf(STRING)), f('Init', ptrTo(BOOL))];

/** container.HostConfig, with Resources' fields promoted (as in Go and in the JSON). */
const HOST_CONFIG_FIELDS: readonly GoField[] = [...HOST_CONFIG_OWN, ...RESOURCES, ...HOST_CONFIG_TAIL];
const HOST_CONFIG = goStruct(HOST_CONFIG_FIELDS);

const CONFIG_FIELDS: readonly GoField[] = [
  f('Hostname', STRING), f('Domainname', STRING), f('User', STRING), f('AttachStdin', BOOL), f('AttachStdout', BOOL), f('AttachStderr', BOOL),
  f('ExposedPorts', SKIP), f('Tty', BOOL), f('OpenStdin', BOOL), f('StdinOnce', BOOL), f('Env', sliceOf(STRING)), f('Cmd', STRSLICE),
  f('Healthcheck', SKIP), f('ArgsEscaped', BOOL), f('Image', STRING), f('Volumes', mapOf(goStruct([]))), f('WorkingDir', STRING),
  f('Entrypoint', STRSLICE), f('NetworkDisabled', BOOL), f('MacAddress', STRING), f('OnBuild', sliceOf(STRING)), f('Labels', mapOf(STRING)),
  f('StopSignal', STRING), f('StopTimeout', ptrTo(INT64)), f('Shell', STRSLICE),
];

/**
 * runconfig.ContainerConfigWrapper, the type dockerd decodes a create body
 * (and a legacy start body) into: the embedded *container.Config and the
 * embedded, deprecated *container.HostConfig promote their fields to the
 * top level; the `HostConfig` key fills the inner host config.
 */
const CONTAINER_CONFIG_WRAPPER = goStruct([
  ...CONFIG_FIELDS.map((x) => f(x.name, x.type, 'Config')),
  f('HostConfig', ptrTo(HOST_CONFIG)),
  f('Cpuset', STRING),
  f('NetworkingConfig', ptrTo(goStruct([f('EndpointsConfig', mapOf(ptrTo(goStruct([]))))]))),
  ...HOST_CONFIG_FIELDS.map((x) => f(x.name, x.type, 'TopLevelHostConfig')),
]);

const EXEC_CONFIG = goStruct([
  f('User', STRING), f('Privileged', BOOL), f('Tty', BOOL), f('ConsoleSize', SKIP), f('AttachStdin', BOOL), f('AttachStderr', BOOL),
  f('AttachStdout', BOOL), f('Detach', BOOL), f('DetachKeys', STRING), f('Env', sliceOf(STRING)), f('WorkingDir', STRING), f('Cmd', sliceOf(STRING)),
]);
const UPDATE_CONFIG = goStruct([...RESOURCES, f('RestartPolicy', RESTART_POLICY)]);
const VOLUME_CREATE = goStruct([f('ClusterVolumeSpec', SKIP), f('Driver', STRING), f('DriverOpts', mapOf(STRING)), f('Labels', mapOf(STRING)), f('Name', STRING)]);
const NETWORK_CONNECT = goStruct([f('Container', STRING), f('EndpointConfig', SKIP)]);

/** A judged body as dockerd decoded it, or why dockerd would refuse it. */
export type Decoded<T> = { ok: true; body: T } | { ok: false; error: string };

/** A create (or legacy start) body: Config's fields at the top, the effective HostConfig, NetworkingConfig. */
export interface DecodedCreate {
  body: Record<string, unknown> & { HostConfig: Record<string, unknown> | null };
  /** The host config came (wholly or partly) from deprecated top-level fields. */
  legacyHostConfig: boolean;
}

/**
 * A create body as dockerd's runconfig.decodeContainerConfig reads it:
 * the wrapper, then getHostConfig — the inner HostConfig when given (with
 * Memory, MemorySwap, CpuShares, CpusetCpus and VolumeDriver taken from
 * the top level where the inner one leaves them zero), else the top-level
 * fields (still applied by dockerd 20.10 through 26.1).
 */
export function decodeCreate(raw: Uint8Array): Decoded<DecodedCreate> {
  const d = goDecode(raw, CONTAINER_CONFIG_WRAPPER);
  if (d.error !== undefined) return { ok: false, error: d.error };
  const w = d.value ?? (Object.create(null) as Record<string, unknown>);
  const cfg = (w['Config'] as Record<string, unknown> | undefined) ?? {};
  const top = w['TopLevelHostConfig'] as Record<string, unknown> | undefined;
  const inner = w['HostConfig'] as Record<string, unknown> | null | undefined;
  let hc: Record<string, unknown> | null = null;
  let legacy = false;
  if (inner) {
    hc = inner;
    if (top) {
      for (const k of ['Memory', 'MemorySwap', 'CpuShares'] as const) if (!num(hc[k]) && num(top[k])) hc[k] = top[k];
      for (const k of ['CpusetCpus', 'VolumeDriver'] as const) if (!hc[k] && top[k]) {
        hc[k] = top[k];
        legacy ||= k === 'VolumeDriver';
      }
      legacy ||= num(top['Memory']) !== 0 || num(top['CpuShares']) !== 0;
    }
  } else if (top) {
    hc = top;
    legacy = true;
  }
  if (hc && typeof w['Cpuset'] === 'string' && w['Cpuset'] !== '' && !hc['CpusetCpus']) hc['CpusetCpus'] = w['Cpuset'];
  const body = { ...cfg, HostConfig: hc, NetworkingConfig: w['NetworkingConfig'] ?? null };
  return { ok: true, body: { body, legacyHostConfig: legacy } };
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

function plain(raw: Uint8Array, type: GoType): Decoded<Record<string, unknown>> {
  const d = goDecode(raw, type);
  if (d.error !== undefined) return { ok: false, error: d.error };
  return { ok: true, body: d.value ?? {} };
}

/** `POST /containers/{id}/exec` (types.ExecConfig). */
export const decodeExec = (raw: Uint8Array): Decoded<Record<string, unknown>> => plain(raw, EXEC_CONFIG);
/** `POST /containers/{id}/update` (container.UpdateConfig). */
export const decodeUpdate = (raw: Uint8Array): Decoded<Record<string, unknown>> => plain(raw, UPDATE_CONFIG);
/** `POST /volumes/create` (volume.CreateOptions). */
export const decodeVolumeCreate = (raw: Uint8Array): Decoded<Record<string, unknown>> => plain(raw, VOLUME_CREATE);
/** `POST /networks/{id}/connect` (types.NetworkConnect). */
export const decodeNetworkConnect = (raw: Uint8Array): Decoded<Record<string, unknown>> => plain(raw, NETWORK_CONNECT);
