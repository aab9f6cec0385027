// Owns "how is this dockerd configured": its process (the one behind OUR
// socket — a host may run several engines), its command line, its
// daemon.json (parsed as JSON, never grepped) and `docker info`. The lockdown
// audit and the CIS report both read settings through this one view, so they
// never disagree about what the daemon does.
import { readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { parseDaemonHost, parseDockerdFlags, type DaemonHost, type DockerdFlags } from './dockerd-flags';
import { pidsByName, readCmdline, socketInodes, unixSocketInodes } from './proc';
import { DEFAULT_CONTAINERD_SOCKET_PATH } from './lockdown-options';

export const DEFAULT_DAEMON_JSON = '/etc/docker/daemon.json';
export const DEFAULT_DOCKER_SOCKET_PATH = '/var/run/docker.sock';

/** The part of `docker info` the audits read (every field optional: engines differ). */
export interface DockerInfo {
  ServerVersion?: string;
  Driver?: string;
  DockerRootDir?: string;
  LoggingDriver?: string;
  LiveRestoreEnabled?: boolean;
  SecurityOptions?: string[] | null;
  ExperimentalBuild?: boolean;
  CgroupDriver?: string;
  CgroupVersion?: string;
  Containers?: number;
  ContainersRunning?: number;
  Images?: number;
  Plugins?: { Authorization?: string[] | null } | null;
  RegistryConfig?: {
    InsecureRegistryCIDRs?: string[] | null;
    IndexConfigs?: Record<string, { Name?: string; Secure?: boolean; Official?: boolean }> | null;
  } | null;
  Swarm?: {
    LocalNodeState?: string;
    NodeID?: string;
    NodeAddr?: string;
    RemoteManagers?: Array<{ NodeID?: string; Addr?: string }> | null;
    ControlAvailable?: boolean;
    Managers?: number;
    Nodes?: number;
    Cluster?: {
      Spec?: {
        EncryptionConfig?: { AutoLockManagers?: boolean };
        CAConfig?: { NodeCertExpiry?: number };
      };
    } | null;
  } | null;
}

export interface DaemonConfigOptions {
  /** `docker info` source; omit to audit files and /proc only. */
  docker?: { info(): Promise<unknown> } | undefined;
  /** Where the host's filesystem is visible. Default "/". */
  hostRoot?: string | undefined;
  /** The host's /proc. Default `<hostRoot>/proc`. */
  procRoot?: string | undefined;
  /** The Docker socket this agent talks to (a host path). Default /var/run/docker.sock. */
  dockerSocketPath?: string | undefined;
  /** daemon.json (host path). Default: dockerd's --config-file, else /etc/docker/daemon.json. */
  daemonJsonPath?: string | undefined;
  /** The dockerd pid when known (skips the search). */
  dockerdPid?: number | undefined;
}

export type PidSource = 'given' | 'cmdline' | 'socket' | 'only' | 'none';

export interface DaemonConfig {
  hostRoot: string;
  procRoot: string;
  dockerSocketPath: string;
  /** dockerd's pid, when found. */
  pid: number | undefined;
  /** How the pid was found: given, its -H names our socket, it holds our socket, or it is the only dockerd. */
  pidSource: PidSource;
  argv: readonly string[];
  flags: DockerdFlags;
  /** daemon.json as a host path. */
  daemonJsonPath: string;
  daemonJsonExists: boolean;
  /** The parsed object; {} when the file is missing or invalid. */
  daemonJson: Record<string, unknown>;
  /** Why daemon.json could not be used (dockerd refuses to start with such a file). */
  daemonJsonError: string | undefined;
  info: DockerInfo | undefined;
  infoError: string | undefined;
  /** Listen addresses: -H flags, else daemon.json `hosts`, else dockerd's default socket. */
  hosts: DaemonHost[];
  /** Where `hosts` came from. */
  hostsSource: 'cmdline' | 'daemon.json' | 'cmdline+daemon.json' | 'default';
}

/** Reads everything once. Never throws for a missing file or process: the audit reports what it could not see. */
export async function loadDaemonConfig(o: DaemonConfigOptions): Promise<DaemonConfig> {
  const hostRoot = o.hostRoot ?? '/';
  const procRoot = o.procRoot ?? join(hostRoot, 'proc');
  const dockerSocketPath = o.dockerSocketPath ?? DEFAULT_DOCKER_SOCKET_PATH;
  const infoP = readInfo(o.docker);
  const { pid, pidSource, argv } = await findDockerd(procRoot, hostRoot, dockerSocketPath, o.dockerdPid);
  const flags = parseDockerdFlags(argv);
  const daemonJsonPath = o.daemonJsonPath ?? flags.last('config-file') ?? DEFAULT_DAEMON_JSON;
  const json = await readDaemonJson(join(hostRoot, daemonJsonPath));
  const { info, infoError } = await infoP;
  const cmdHosts = flags.all('host').map(parseDaemonHost);
  const jsonHosts = stringList(json.value['hosts']).map(parseDaemonHost);
  let hosts: DaemonHost[];
  let hostsSource: DaemonConfig['hostsSource'];
  if (cmdHosts.length > 0 && jsonHosts.length > 0) {
    // dockerd refuses to start with both, but report what each says.
    hosts = [...cmdHosts, ...jsonHosts];
    hostsSource = 'cmdline+daemon.json';
  } else if (cmdHosts.length > 0) {
    hosts = cmdHosts;
    hostsSource = 'cmdline';
  } else if (jsonHosts.length > 0) {
    hosts = jsonHosts;
    hostsSource = 'daemon.json';
  } else {
    hosts = [parseDaemonHost(`unix://${DEFAULT_DOCKER_SOCKET_PATH}`)];
    hostsSource = 'default';
  }
  return {
    hostRoot, procRoot, dockerSocketPath, pid, pidSource, argv, flags,
    daemonJsonPath, daemonJsonExists: json.exists, daemonJson: json.value, daemonJsonError: json.error,
    info, infoError, hosts, hostsSource,
  };
}

/** A setting as dockerd resolves it: the command line, else daemon.json. */
export interface Setting<T> {
  value: T;
  source: 'cmdline' | 'daemon.json';
}

/** A boolean flag / daemon.json key (`icc`, `live-restore`, `no-new-privileges`, `userland-proxy`, …). */
export function boolSetting(c: DaemonConfig, flag: string, jsonKey = flag): Setting<boolean> | undefined {
  const cmd = c.flags.bool(flag);
  if (cmd !== undefined) return { value: cmd, source: 'cmdline' };
  const j = c.daemonJson[jsonKey];
  if (typeof j === 'boolean') return { value: j, source: 'daemon.json' };
  if (typeof j === 'string') return { value: j === 'true', source: 'daemon.json' };
  return undefined;
}

/** A string flag / daemon.json key (`log-level`, `log-driver`, `userns-remap`, `cgroup-parent`, …). */
export function stringSetting(c: DaemonConfig, flag: string, jsonKey = flag): Setting<string> | undefined {
  const cmd = c.flags.last(flag);
  if (cmd !== undefined) return { value: cmd, source: 'cmdline' };
  const j = c.daemonJson[jsonKey];
  if (typeof j === 'string') return { value: j, source: 'daemon.json' };
  return undefined;
}

/**
 * The containerd socket dockerd was told to use (`--containerd`, or daemon.json
 * "containerd"), as a host path; undefined when not set — dockerd then uses
 * containerd's default socket (or starts its own containerd there).
 */
export function containerdSocketOf(c: DaemonConfig): string | undefined {
  const v = stringSetting(c, 'containerd')?.value.trim().replace(/^unix:\/\//, '');
  return v !== undefined && v.startsWith('/') ? v : undefined;
}

/** The containerd socket to audit: `given` (an option), else the one dockerd was told to use, else containerd's default. */
export function auditedContainerdSocket(c: DaemonConfig, given: string | undefined): string {
  return given ?? containerdSocketOf(c) ?? DEFAULT_CONTAINERD_SOCKET_PATH;
}

/** A repeatable flag and its plural daemon.json key (`insecure-registry` / `insecure-registries`). Both sources, in order. */
export function listSetting(c: DaemonConfig, flag: string, jsonKey: string): Array<Setting<string>> {
  return [
    ...c.flags.all(flag).map((value) => ({ value, source: 'cmdline' as const })),
    ...stringList(c.daemonJson[jsonKey]).map((value) => ({ value, source: 'daemon.json' as const })),
  ];
}

/** An object-valued daemon.json key (e.g. `default-ulimits`, `log-opts`); undefined when not an object. */
export function objectSetting(c: DaemonConfig, jsonKey: string): Record<string, unknown> | undefined {
  const v = c.daemonJson[jsonKey];
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The TCP listen addresses among the configured hosts. */
export function tcpHosts(c: DaemonConfig): DaemonHost[] {
  return c.hosts.filter((h) => h.kind === 'tcp');
}

/** TLS on the TCP endpoint: `verify` (clients must present certificates), `tls` (server TLS only) or `none`. */
export function tlsMode(c: DaemonConfig): 'verify' | 'tls' | 'none' {
  if (boolSetting(c, 'tlsverify')?.value === true) return 'verify';
  if (boolSetting(c, 'tls')?.value === true) return 'tls';
  // dockerd turns TLS on when a key and certificate are given, even without --tls.
  if (stringSetting(c, 'tlscert') && stringSetting(c, 'tlskey')) return 'tls';
  return 'none';
}

/** Authorization plugins from the command line, daemon.json and `docker info`. */
export function authorizationPlugins(c: DaemonConfig): string[] {
  const fromInfo = c.info?.Plugins?.Authorization ?? [];
  return [...new Set([...listSetting(c, 'authorization-plugin', 'authorization-plugins').map((s) => s.value), ...fromInfo])].filter((p) => p !== '');
}

/** The socket's expected group: dockerd's --group / daemon.json `group`, default "docker". */
export function socketGroupName(c: DaemonConfig): string {
  return stringSetting(c, 'group')?.value || 'docker';
}

/** Compares host paths the way the kernel resolves them here: normalised, /var/run folded into /run. */
export function sameHostPath(a: string, b: string): boolean {
  return canonical(a) === canonical(b);
}

function canonical(p: string): string {
  let n = posix.normalize(p);
  if (n.length > 1 && n.endsWith('/')) n = n.slice(0, -1);
  if (n === '/var/run') return '/run';
  return n.startsWith('/var/run/') ? n.slice(4) : n;
}

async function findDockerd(
  procRoot: string,
  hostRoot: string,
  socketPath: string,
  given: number | undefined,
): Promise<{ pid: number | undefined; pidSource: PidSource; argv: string[] }> {
  if (given !== undefined) return { pid: given, pidSource: 'given', argv: await readCmdline(procRoot, given) };
  // Only a root process of the agent's own PID namespace can be the host's dockerd: any
  // process can call itself "dockerd" (comm is settable) and name our socket in its argv,
  // including one inside a container.
  const candidates = await hostRootProcesses(procRoot, await pidsByName(procRoot, 'dockerd'));
  const argvs = await Promise.all(candidates.map((p) => readCmdline(procRoot, p)));
  // 1. It holds our socket open: the one proof a command line cannot fake.
  if (candidates.length > 0) {
    const bound = await unixSocketInodes(procRoot, socketPath);
    if (bound.size > 0) {
      for (let i = 0; i < candidates.length; i++) {
        const held = await socketInodes(procRoot, candidates[i]!);
        for (const ino of bound) {
          if (held.has(ino)) return { pid: candidates[i], pidSource: 'socket', argv: argvs[i]! };
        }
      }
    }
  }
  // 2. Its -H (or its daemon.json hosts, or the default socket) names our socket.
  for (let i = 0; i < candidates.length; i++) {
    const flags = parseDockerdFlags(argvs[i]!);
    let hosts = flags.all('host');
    if (hosts.length === 0) {
      const j = await readDaemonJson(join(hostRoot, flags.last('config-file') ?? DEFAULT_DAEMON_JSON));
      hosts = stringList(j.value['hosts']);
    }
    if (hosts.length === 0) hosts = [`unix://${DEFAULT_DOCKER_SOCKET_PATH}`];
    if (hosts.map(parseDaemonHost).some((h) => h.kind === 'unix' && h.path !== undefined && sameHostPath(h.path, socketPath))) {
      return { pid: candidates[i], pidSource: 'cmdline', argv: argvs[i]! };
    }
  }
  // 3. The only dockerd on the host.
  if (candidates.length === 1) return { pid: candidates[0], pidSource: 'only', argv: argvs[0]! };
  return { pid: undefined, pidSource: 'none', argv: [] };
}

/**
 * The pids owned by uid 0 and in the PID namespace of `procRoot`'s "self" (the agent's);
 * where either cannot be read (a test's fixture /proc) the process is kept.
 */
async function hostRootProcesses(procRoot: string, pids: number[]): Promise<number[]> {
  const ownNs = await readlink(join(procRoot, 'self', 'ns', 'pid')).catch(() => undefined);
  const out: number[] = [];
  for (const pid of pids) {
    const status = await readFile(join(procRoot, String(pid), 'status'), 'utf8').catch(() => undefined);
    const uid = status === undefined ? undefined : /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (uid !== undefined && uid !== '0') continue;
    const ns = ownNs === undefined ? undefined : await readlink(join(procRoot, String(pid), 'ns', 'pid')).catch(() => undefined);
    if (ns !== undefined && ns !== ownNs) continue;
    out.push(pid);
  }
  return out;
}

async function readDaemonJson(path: string): Promise<{ exists: boolean; value: Record<string, unknown>; error: string | undefined }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { exists: false, value: {}, error: undefined };
    return { exists: true, value: {}, error: `cannot read: ${(e as Error).message}` };
  }
  if (text.trim() === '') return { exists: true, value: {}, error: undefined };
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { exists: true, value: {}, error: 'not a JSON object' };
    return { exists: true, value: v as Record<string, unknown>, error: undefined };
  } catch (e) {
    return { exists: true, value: {}, error: `invalid JSON: ${(e as Error).message}` };
  }
}

async function readInfo(docker: DaemonConfigOptions['docker']): Promise<{ info: DockerInfo | undefined; infoError: string | undefined }> {
  if (!docker) return { info: undefined, infoError: 'no Docker client' };
  try {
    return { info: ((await docker.info()) ?? {}) as DockerInfo, infoError: undefined };
  } catch (e) {
    return { info: undefined, infoError: (e as Error).message };
  }
}

function stringList(v: unknown): string[] {
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (!Array.isArray(v)) return [];
  return v.filter((x): x is string => typeof x === 'string');
}
