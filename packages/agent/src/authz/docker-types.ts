// Owns the shapes of the Docker API request bodies the authorization plugin
// judges, as Go structs (moby's api/types, identical in dockerd 20.10 and
// 26.1 for every field listed here), for go-json.ts to decode bodies into,
// and the decoding of each judged body the way dockerd's handler does it.
//
// Every field a fact is read from is typed as dockerd types it, so a value
// of the wrong type there is an error exactly when it is one for dockerd.
// The other fields are listed but SKIP (syntax-checked, not decoded: the
// decision is on the hot path of every create): a type error there makes
// dockerd refuse a request the plugin allowed, which is harmless. A field a
// check starts to read must be typed here first.
import { BOOL, goDecode, goStruct, INT64, mapOf, ptrTo, SKIP, sliceOf, STRING, STRSLICE, UINT64, type GoField, type GoType } from './go-json';

const f = (name: string, type: GoType, group?: string): GoField => (group === undefined ? { name, type } : { name, type, group });
/** A field no fact is read from: skipped (a wrong type there is dockerd's to refuse). */
const u = (name: string): GoField => f(name, SKIP);

const DEVICE_MAPPING = goStruct([f('PathOnHost', STRING), u('PathInContainer'), u('CgroupPermissions')]);
const RESTART_POLICY = goStruct([f('Name', STRING), f('MaximumRetryCount', INT64)]);
/** container.LogConfig. */
const LOG_CONFIG = goStruct([f('Type', STRING), f('Config', mapOf(STRING))]);
/** []*units.Ulimit (go-units: no JSON tags). */
const ULIMITS = sliceOf(ptrTo(goStruct([f('Name', STRING), f('Hard', INT64), f('Soft', INT64)])));
/** []*blkiodev.ThrottleDevice. */
const THROTTLE_DEVICES = sliceOf(ptrTo(goStruct([f('Path', STRING), f('Rate', UINT64)])));
const MOUNT = goStruct([
  f('Type', STRING), f('Source', STRING), f('Target', STRING), f('ReadOnly', BOOL), u('Consistency'),
  f('BindOptions', ptrTo(goStruct([f('Propagation', STRING), u('NonRecursive'), u('CreateMountpoint'), u('ReadOnlyNonRecursive'), u('ReadOnlyForceRecursive')]))),
  f('VolumeOptions', ptrTo(goStruct([
    u('NoCopy'), u('Labels'),
    f('DriverConfig', ptrTo(goStruct([f('Name', STRING), f('Options', mapOf(STRING))]))),
    u('Subpath'),
  ]))),
  u('TmpfsOptions'),
  u('ClusterOptions'),
]);

/** container.Resources: promoted into HostConfig and UpdateConfig. */
const RESOURCES: readonly GoField[] = [
  f('CpuShares', INT64), f('Memory', INT64), f('NanoCpus', INT64), u('CgroupParent'), u('BlkioWeight'),
  u('BlkioWeightDevice'), f('BlkioDeviceReadBps', THROTTLE_DEVICES), f('BlkioDeviceWriteBps', THROTTLE_DEVICES),
  f('BlkioDeviceReadIOps', THROTTLE_DEVICES), f('BlkioDeviceWriteIOps', THROTTLE_DEVICES),
  f('CpuPeriod', INT64), f('CpuQuota', INT64), u('CpuRealtimePeriod'), u('CpuRealtimeRuntime'), f('CpusetCpus', STRING), u('CpusetMems'),
  f('Devices', sliceOf(DEVICE_MAPPING)), f('DeviceCgroupRules', sliceOf(STRING)), u('DeviceRequests'),
  u('KernelMemory'), u('KernelMemoryTCP'), u('MemoryReservation'), f('MemorySwap', INT64),
  u('MemorySwappiness'), u('OomKillDisable'), f('PidsLimit', ptrTo(INT64)), f('Ulimits', ULIMITS),
  u('CpuCount'), u('CpuPercent'), u('IOMaximumIOps'), u('IOMaximumBandwidth'),
];

const HOST_CONFIG_OWN: readonly GoField[] = [
  f('Binds', sliceOf(STRING)), u('ContainerIDFile'), f('LogConfig', LOG_CONFIG),
  f('NetworkMode', STRING), u('PortBindings'), f('RestartPolicy', RESTART_POLICY), u('AutoRemove'), f('VolumeDriver', STRING),
  f('VolumesFrom', sliceOf(STRING)), u('ConsoleSize'), u('Annotations'), f('CapAdd', STRSLICE), f('CapDrop', STRSLICE),
  f('CgroupnsMode', STRING), u('Dns'), u('DnsOptions'), u('DnsSearch'),
  u('ExtraHosts'), u('GroupAdd'), f('IpcMode', STRING), u('Cgroup'), u('Links'),
  u('OomScoreAdj'), f('PidMode', STRING), f('Privileged', BOOL), u('PublishAllPorts'), f('ReadonlyRootfs', BOOL),
  f('SecurityOpt', sliceOf(STRING)), f('StorageOpt', mapOf(STRING)), f('Tmpfs', mapOf(STRING)), f('UTSMode', STRING), f('UsernsMode', STRING),
  u('ShmSize'), u('Sysctls'), u('Runtime'), u('Isolation'),
];
const HOST_CONFIG_TAIL: readonly GoField[] = [f('Mounts', sliceOf(MOUNT)), f('MaskedPaths', sliceOf(STRING)), f('ReadonlyPaths', sliceOf(STRING)), u('Init')];

/** container.HostConfig, with Resources' fields promoted (as in Go and in the JSON). */
const HOST_CONFIG_FIELDS: readonly GoField[] = [...HOST_CONFIG_OWN, ...RESOURCES, ...HOST_CONFIG_TAIL];
const HOST_CONFIG = goStruct(HOST_CONFIG_FIELDS);

const CONFIG_FIELDS: readonly GoField[] = [
  u('Hostname'), u('Domainname'), f('User', STRING), u('AttachStdin'), u('AttachStdout'), u('AttachStderr'),
  u('ExposedPorts'), u('Tty'), u('OpenStdin'), u('StdinOnce'), f('Env', sliceOf(STRING)), f('Cmd', STRSLICE),
  u('Healthcheck'), u('ArgsEscaped'), f('Image', STRING), f('Volumes', mapOf(goStruct([]))), u('WorkingDir'),
  f('Entrypoint', STRSLICE), u('NetworkDisabled'), u('MacAddress'), u('OnBuild'), f('Labels', mapOf(STRING)),
  u('StopSignal'), u('StopTimeout'), u('Shell'),
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
  f('User', STRING), f('Privileged', BOOL), u('Tty'), u('ConsoleSize'), u('AttachStdin'), u('AttachStderr'),
  u('AttachStdout'), u('Detach'), u('DetachKeys'), u('Env'), u('WorkingDir'), f('Cmd', sliceOf(STRING)),
]);
const UPDATE_CONFIG = goStruct([...RESOURCES, f('RestartPolicy', RESTART_POLICY)]);
const VOLUME_CREATE = goStruct([u('ClusterVolumeSpec'), f('Driver', STRING), f('DriverOpts', mapOf(STRING)), f('Labels', mapOf(STRING)), f('Name', STRING)]);
const NETWORK_CONNECT = goStruct([f('Container', STRING), u('EndpointConfig')]);

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

// ---- swarm services -------------------------------------------------------
// swarm.ServiceSpec (api/types/swarm, 20.10–26.1), the body of
// `POST /services/create` and `POST /services/{id}/update`. Typed where a
// fact is read from it or where its presence decides (PluginSpec,
// NetworkAttachmentSpec: tasks that are not containers); the rest skipped.

/** swarm.NetworkAttachmentConfig. */
const SWARM_NETWORKS = sliceOf(goStruct([f('Target', STRING), u('Aliases'), u('DriverOpts')]));
const PRESENT = goStruct([]);
const SWARM_CONTAINER_SPEC = goStruct([
  f('Image', STRING), f('Labels', mapOf(STRING)), f('Command', sliceOf(STRING)), f('Args', sliceOf(STRING)), u('Hostname'),
  f('Env', sliceOf(STRING)), u('Dir'), f('User', STRING), u('Groups'),
  f('Privileges', ptrTo(goStruct([
    u('CredentialSpec'),
    f('SELinuxContext', ptrTo(goStruct([f('Disable', BOOL), f('User', STRING), f('Role', STRING), f('Type', STRING), f('Level', STRING)]))),
    // Profile is a []byte: base64 in JSON.
    f('Seccomp', ptrTo(goStruct([f('Mode', STRING), f('Profile', STRING)]))),
    f('AppArmor', ptrTo(goStruct([f('Mode', STRING)]))),
    f('NoNewPrivileges', BOOL),
  ]))),
  u('Init'), u('StopSignal'), u('TTY'), u('OpenStdin'), f('ReadOnly', BOOL), f('Mounts', sliceOf(MOUNT)), u('StopGracePeriod'),
  u('Healthcheck'), u('Hosts'), u('DNSConfig'), u('Secrets'), u('Configs'), u('Isolation'), u('Sysctls'),
  f('CapabilityAdd', sliceOf(STRING)), f('CapabilityDrop', sliceOf(STRING)), f('Ulimits', ULIMITS), u('OomScoreAdj'),
]);
const SWARM_TASK_SPEC = goStruct([
  f('ContainerSpec', ptrTo(SWARM_CONTAINER_SPEC)),
  f('PluginSpec', ptrTo(PRESENT)),
  f('NetworkAttachmentSpec', ptrTo(PRESENT)),
  f('Resources', ptrTo(goStruct([
    f('Limits', ptrTo(goStruct([f('NanoCPUs', INT64), f('MemoryBytes', INT64), f('Pids', INT64)]))),
    u('Reservations'),
  ]))),
  u('RestartPolicy'), u('Placement'), f('Networks', SWARM_NETWORKS),
  f('LogDriver', ptrTo(goStruct([f('Name', STRING), f('Options', mapOf(STRING))]))),
  u('ForceUpdate'), f('Runtime', STRING),
]);
const SERVICE_SPEC = goStruct([
  // Annotations (embedded): Name, Labels promoted.
  f('Name', STRING), f('Labels', mapOf(STRING)),
  f('TaskTemplate', SWARM_TASK_SPEC), u('Mode'), u('UpdateConfig'), u('RollbackConfig'),
  f('Networks', SWARM_NETWORKS), u('EndpointSpec'),
]);

/** `POST /services/create` and `/services/{id}/update` (swarm.ServiceSpec). */
export const decodeServiceSpec = (raw: Uint8Array): Decoded<Record<string, unknown>> => plain(raw, SERVICE_SPEC);

/** `POST /swarm/init` (swarm.InitRequest): only where the manager listens is read. */
const SWARM_INIT = goStruct([
  f('ListenAddr', STRING), u('AdvertiseAddr'), u('DataPathAddr'), u('DataPathPort'), u('ForceNewCluster'), u('Spec'),
  u('AutoLockManagers'), u('Availability'), u('DefaultAddrPool'), u('SubnetSize'),
]);
export const decodeSwarmInit = (raw: Uint8Array): Decoded<Record<string, unknown>> => plain(raw, SWARM_INIT);
