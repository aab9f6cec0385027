// Host-safety checks (move 3 of the mission): a container must not modify host
// system files or gain host root — root user, privileged, sensitive mounts, the
// Docker socket, capabilities, no-new-privileges, writable rootfs, host
// namespaces (cgroup included), unconfined seccomp/AppArmor/SELinux, unmasked
// system paths, host devices and device cgroup rules. Settings another program
// reads (user specs, security options, device paths) are read as that program
// reads them: runc, dockerd, the kernel.
import { compileGlobs } from '../glob';
import { canonicalHostPath, isAncestorOf, isSameOrUnder, normalizeHostPath } from '../host-path';
import type { Mount__Output } from '../../proto/index';
import type { Evidence } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE, normalizeCap, splitSecurityOpt, type TypeBuilder } from './define';

const NoParams = lazySchema((T) => T.Object({}, { additionalProperties: false }));
const NONE: readonly string[] = [];

// ---------------------------------------------------------------- root-user

/** Go's int range on the 64-bit platforms dockerd runs on: strconv.Atoi refuses anything outside it. */
const GO_INT_MIN = -(2n ** 63n);
const GO_INT_MAX = 2n ** 63n - 1n;

/**
 * `s` read as Go's strconv.Atoi reads it: an optional single '+' or '-',
 * then ASCII digits only (no spaces, no underscores, no "0x"), within int
 * range; undefined where Atoi returns an error. The value is exact for the
 * uids that matter (0 and the uid range); beyond 2^53 it is approximate.
 */
export function goAtoi(s: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  return n < GO_INT_MIN || n > GO_INT_MAX ? undefined : Number(n);
}

/**
 * The user a `--user` / image `USER` spec names, read the way runc's
 * user.GetExecUser (which dockerd calls at start and exec) reads it: the
 * user part is everything before the first ':', untrimmed; empty is the
 * default user (uid 0 in a container); a part that Atoi accepts is a uid,
 * even where the image's /etc/passwd has a user of that name ("+0", "-0"
 * and "000" are all uid 0); anything else is a name, looked up in the
 * image's /etc/passwd — which the facts do not carry.
 */
export function uidOf(userSpec: string): number | 'name' | undefined {
  const colon = userSpec.indexOf(':');
  const user = colon < 0 ? userSpec : userSpec.slice(0, colon);
  if (user === '') return undefined;
  return goAtoi(user) ?? 'name';
}

/**
 * True when a Docker user spec means uid 0: "" (the default), any spelling
 * of the number 0 ("0", "00", "+0", "-0"), or the name "root" — each with
 * or without a group. runc refuses a name it cannot find (" root " is no
 * user at all), so only the exact name counts; another name given uid 0 by
 * the image's /etc/passwd is not seen here.
 */
export function isRootUser(user: string): boolean {
  const uid = uidOf(user);
  if (uid === undefined || uid === 0) return true;
  return uid === 'name' && user.split(':', 1)[0] === 'root';
}

export const rootUser = defineCheck({
  type: 'root-user',
  group: 'host',
  summary: "Containers must not run as root (user empty, 0 in any spelling Go reads as 0 — 00, +0, -0 —, root, 0:0, root:root …, including the image's default user).",
  remedy: 'run as an unprivileged user: `USER 10001` in the Dockerfile or `--user 10001:10001` / `user:` in compose',
  params: NoParams,
  defaults: {},
  check({ container }) {
    const user = container.user;
    if (user !== '') {
      return isRootUser(user) ? [{ location: 'user', detail: `container runs as user "${user}", which is root (uid 0)` }] : NO_EVIDENCE;
    }
    // No --user: the image's USER applies, and no USER at all means root.
    const img = container.imageUser;
    if (img === '') return [{ location: 'user', detail: 'no user is set on the container or in the image, so it runs as root' }];
    return isRootUser(img) ? [{ location: 'imageUser', detail: `the image's default user "${img}" is root (uid 0) and the container does not override it` }] : NO_EVIDENCE;
  },
});

// ---------------------------------------------------------------- privileged

export const privileged = defineCheck({
  type: 'privileged',
  group: 'host',
  summary: 'Containers must not run privileged (all capabilities, all devices, no confinement).',
  remedy: 'remove --privileged (`privileged: true`) and add only the specific capability or device the workload needs',
  params: NoParams,
  defaults: {},
  check({ container }) {
    return container.privileged ? [{ location: 'privileged', detail: 'container runs with --privileged' }] : NO_EVIDENCE;
  },
});

// ---------------------------------------------------------------- sensitive-mounts

export const DEFAULT_DOCKER_SOCKETS: readonly string[] = [
  '/var/run/docker.sock',
  '/run/docker.sock',
  '/run/containerd/containerd.sock',
  '/var/run/containerd/containerd.sock',
  '/run/podman/podman.sock',
];

export const DEFAULT_SENSITIVE_PATHS: readonly string[] = [
  '/',
  '/boot',
  '/dev',
  '/etc',
  '/lib',
  '/lib32',
  '/lib64',
  '/bin',
  '/sbin',
  '/usr',
  '/proc',
  '/sys',
  '/root',
  '/var/lib/docker',
  '/var/lib/containerd',
  '/var/run/docker.sock',
  '/run/docker.sock',
  '/var/run/containerd',
  '/run/containerd',
  '/run/containerd/containerd.sock',
  // dockerd's exec-root: its plugin sockets (/run/docker/plugins — a container
  // that can write there swaps the authorization plugin's socket for one it
  // serves), containerd shim sockets, network namespaces. Found in session 8.
  '/run/docker',
  '/var/run/docker',
  // The agent's state: its mTLS key and certificate (the agent's identity at
  // the controller) and the persisted policy bundle it enforces after a restart.
  '/var/lib/bulkhead-agent',
  // The agent's code as the shipped unit runs it (written there, it runs as root at the next start).
  '/opt/bulkhead',
];

export const DEFAULT_READONLY_EXCEPTIONS: readonly string[] = [
  '/etc/localtime',
  '/etc/timezone',
  '/usr/share/zoneinfo',
  '/etc/ssl/certs',
  '/etc/pki/ca-trust/extracted',
  '/etc/ca-certificates',
];

const PathList = (T: TypeBuilder, description: string) => T.Array(T.String({ minLength: 1, pattern: '^/' }), { description });

const SensitiveMountsParams = lazySchema((T) => T.Object(
  {
    paths: T.Optional(PathList(T, `Sensitive host paths; a bind mount of one of them or anything under it breaks the rule ("/" only when mounted itself). Default: ${DEFAULT_SENSITIVE_PATHS.join(', ')}.`)),
    addPaths: T.Optional(PathList(T, 'Added to `paths` (keeps the defaults).')),
    removePaths: T.Optional(PathList(T, 'Removed from `paths` (exact entries).')),
    readOnlyExceptions: T.Optional(
      PathList(T, `Paths (and their subpaths) allowed when mounted read-only. Default: ${DEFAULT_READONLY_EXCEPTIONS.join(', ')}. Sockets stay dangerous read-only; do not list them.`),
    ),
    matchParents: T.Optional(
      T.Boolean({ description: 'Also flag mounts of a directory that CONTAINS a sensitive path (mounting /var exposes /var/lib/docker). Default true.' }),
    ),
  },
  { additionalProperties: false },
));

/** Host path of a bind mount, or undefined for volumes/tmpfs. */
function bindSource(m: Mount__Output): string | undefined {
  if (m.type === 'bind' || (m.type === '' && m.source.startsWith('/'))) return m.source;
  return undefined;
}

/**
 * Every host path a mount exposes: a bind's source as given, and the host
 * path the agent resolved (`hostPath`: the source with its symlinks
 * resolved, or the directory or device a local-driver volume binds).
 * Judging both means a symlink cannot hide a sensitive target, and a
 * resolution that fails or is absent (the controller's dry-run of old facts)
 * still judges what was asked for. undefined: no host path at all.
 */
function hostPathsOf(m: Mount__Output): string[] | undefined {
  const src = bindSource(m);
  const hp = m.hostPath;
  if (hp === undefined || !hp.startsWith('/')) return src === undefined ? undefined : [src];
  if (src === undefined) return [hp];
  return canonicalHostPath(hp) === canonicalHostPath(src) ? [src] : [src, hp];
}

/** "host path /a" or "host path /a (resolves to /b)" or "volume v (host path /b)": how evidence names a mount. */
function describeMount(m: Mount__Output, paths: readonly string[]): string {
  if (bindSource(m) === undefined) return `volume ${m.source || '(anonymous)'} (host path ${paths[0]})`;
  return paths.length > 1 ? `host path ${paths[0]} (resolves to ${paths[1]})` : `host path ${paths[0]}`;
}

export const sensitiveMounts = defineCheck({
  type: 'sensitive-mounts',
  group: 'host',
  summary: 'No bind mounts of sensitive host paths or their subpaths (/, /etc, /proc, /sys, /var/lib/docker, runtime sockets …), except listed read-only paths.',
  remedy: 'mount a named volume or a dedicated application directory instead, mount read-only if the path is in `readOnlyExceptions`, or narrow the mount',
  params: SensitiveMountsParams,
  defaults: { paths: [...DEFAULT_SENSITIVE_PATHS], addPaths: [], removePaths: [], readOnlyExceptions: [...DEFAULT_READONLY_EXCEPTIONS], matchParents: true },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const removed = new Set((params.removePaths ?? []).map(canonicalHostPath));
    const sensitive = [...new Set([...(params.paths ?? DEFAULT_SENSITIVE_PATHS), ...(params.addPaths ?? [])].map(canonicalHostPath))].filter((p) => !removed.has(p));
    const exceptions = (params.readOnlyExceptions ?? DEFAULT_READONLY_EXCEPTIONS).map(canonicalHostPath);
    const parents = params.matchParents !== false;
    /** The sensitive path `p` (canonical) is, is under, or contains; undefined when none. */
    const sensitiveHit = (p: string): { hit: string; contains: boolean } | undefined => {
      for (const s of sensitive) {
        if (isSameOrUnder(p, s)) return { hit: s, contains: false };
        if (parents && isAncestorOf(p, s)) return { hit: s, contains: true };
      }
      return undefined;
    };
    return ({ container }) => {
      const mounts = container.mounts;
      if (mounts.length === 0) return NO_EVIDENCE;
      let out: Evidence[] | undefined;
      for (const m of mounts) {
        const paths = hostPathsOf(m);
        if (paths === undefined) continue;
        let found: { hit: string; contains: boolean; p: string } | undefined;
        let excepted = false;
        for (const raw of paths) {
          const p = canonicalHostPath(raw);
          const h = found === undefined ? sensitiveHit(p) : undefined;
          if (h !== undefined) found = { ...h, p };
          // A read-only exception names a path (e.g. /etc/ssl/certs) that only
          // root can re-point, so either spelling of the mount may claim it.
          if (m.readOnly && !excepted && exceptions.some((e) => isSameOrUnder(p, e))) excepted = true;
        }
        if (found === undefined || excepted) continue;
        const how = m.readOnly ? 'read-only' : 'read-write';
        const { hit, contains, p } = found;
        const what = contains ? `contains the sensitive path ${hit}` : p === hit ? 'is a sensitive path' : `is under the sensitive path ${hit}`;
        (out ??= []).push({ location: `mounts[${bindSource(m) ?? (m.source || m.destination)}]`, detail: `${describeMount(m, paths)} mounted ${how} at ${m.destination || '(not mounted yet)'} ${what}` });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- docker-socket

const DockerSocketParams = lazySchema((T) => T.Object(
  {
    socketPaths: T.Optional(PathList(T, `Container runtime sockets. Default: ${DEFAULT_DOCKER_SOCKETS.join(', ')}.`)),
  },
  { additionalProperties: false },
));

export const dockerSocket = defineCheck({
  type: 'docker-socket',
  group: 'host',
  summary: 'The Docker (or containerd) socket must not be mounted into a container, directly or through a parent directory such as /var/run. Read-only does not help: a socket stays writable.',
  remedy: 'remove the socket mount; if a tool really needs the engine, give it a filtering proxy or an exemption with an expiry',
  params: DockerSocketParams,
  defaults: { socketPaths: [...DEFAULT_DOCKER_SOCKETS] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const sockets = [...new Set((params.socketPaths ?? DEFAULT_DOCKER_SOCKETS).map(canonicalHostPath))];
    return ({ container }) => {
      let out: Evidence[] | undefined;
      for (const m of container.mounts) {
        const paths = hostPathsOf(m);
        if (paths === undefined) continue;
        const location = `mounts[${bindSource(m) ?? (m.source || m.destination)}]`;
        const at = m.destination || '(not mounted yet)';
        const what = describeMount(m, paths);
        let ev: Evidence | undefined;
        for (const raw of paths) {
          const p = canonicalHostPath(raw);
          for (const s of sockets) {
            if (p === s) {
              const through = what === `host path ${raw}` ? '' : ` through ${what}`;
              ev = { location, detail: `runtime socket ${through === '' ? raw : s} is mounted at ${at}${through}${m.readOnly ? ' (read-only does not protect a socket)' : ''}` };
              break;
            }
            if (isAncestorOf(p, s)) {
              const which = what === `host path ${raw}` ? `host directory ${raw}` : what;
              ev = { location, detail: `${which} mounted at ${at} contains the runtime socket ${s}` };
              break;
            }
          }
          if (ev) break;
        }
        if (ev) (out ??= []).push(ev);
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- capabilities

export const LINUX_CAPABILITIES: readonly string[] = [
  'AUDIT_CONTROL', 'AUDIT_READ', 'AUDIT_WRITE', 'BLOCK_SUSPEND', 'BPF', 'CHECKPOINT_RESTORE', 'CHOWN', 'DAC_OVERRIDE',
  'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'IPC_LOCK', 'IPC_OWNER', 'KILL', 'LEASE', 'LINUX_IMMUTABLE', 'MAC_ADMIN',
  'MAC_OVERRIDE', 'MKNOD', 'NET_ADMIN', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_RAW', 'PERFMON', 'SETFCAP', 'SETGID',
  'SETPCAP', 'SETUID', 'SYSLOG', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_CHROOT', 'SYS_MODULE', 'SYS_NICE', 'SYS_PACCT',
  'SYS_PTRACE', 'SYS_RAWIO', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'WAKE_ALARM',
];

export const DEFAULT_FORBIDDEN_CAPABILITIES: readonly string[] = [
  'ALL', 'SYS_ADMIN', 'SYS_MODULE', 'SYS_PTRACE', 'SYS_RAWIO', 'SYS_TIME', 'SYS_BOOT', 'DAC_READ_SEARCH', 'NET_ADMIN',
  'MAC_ADMIN', 'MAC_OVERRIDE', 'BPF', 'PERFMON', 'SYSLOG', 'LINUX_IMMUTABLE', 'SYS_PACCT', 'AUDIT_CONTROL', 'BLOCK_SUSPEND',
];

const CapName = (T: TypeBuilder) => T.String({ pattern: '^(?:[Cc][Aa][Pp]_)?[A-Za-z_]+$', description: 'A capability, with or without the CAP_ prefix ("SYS_ADMIN" or "CAP_SYS_ADMIN"), or "ALL".' });

const CapabilitiesParams = lazySchema((T) => T.Object(
  {
    forbidden: T.Optional(T.Array(CapName(T), { description: `Capabilities that must not be added. Default: ${DEFAULT_FORBIDDEN_CAPABILITIES.join(', ')}.` })),
    allowed: T.Optional(T.Array(CapName(T), { description: 'Allowlist mode: when given, ANY added capability not listed breaks the rule (and `forbidden` is ignored).' })),
    requireDropAll: T.Optional(T.Boolean({ description: 'Also require `--cap-drop ALL` (CIS 5.3 hardening). Default false.' })),
  },
  { additionalProperties: false },
));

const KNOWN_CAPS = new Set([...LINUX_CAPABILITIES, 'ALL']);

export const capabilities = defineCheck({
  type: 'capabilities',
  group: 'host',
  summary: 'Dangerous Linux capabilities (ALL, SYS_ADMIN, SYS_MODULE, SYS_PTRACE, DAC_READ_SEARCH, NET_ADMIN …) must not be added.',
  remedy: 'remove the listed --cap-add entries (`cap_add:`); most workloads need none beyond Docker\'s default set',
  params: CapabilitiesParams,
  defaults: { forbidden: [...DEFAULT_FORBIDDEN_CAPABILITIES], requireDropAll: false },
  validate(p) {
    const errs: { path: string; message: string }[] = [];
    for (const key of ['forbidden', 'allowed'] as const) {
      (p[key] ?? []).forEach((c, i) => {
        if (!KNOWN_CAPS.has(normalizeCap(c))) errs.push({ path: `${key}[${i}]`, message: `unknown capability "${c}"` });
      });
    }
    return errs;
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const allowed = params.allowed ? new Set(params.allowed.map(normalizeCap)) : undefined;
    const forbidden = new Set((params.forbidden ?? DEFAULT_FORBIDDEN_CAPABILITIES).map(normalizeCap));
    const requireDropAll = params.requireDropAll === true;
    return ({ container }) => {
      let out: Evidence[] | undefined;
      for (const raw of container.capAdd) {
        const c = normalizeCap(raw);
        const bad = allowed ? !allowed.has(c) : forbidden.has(c) || (c === 'ALL' && forbidden.size > 0);
        if (bad) (out ??= []).push({ location: `capAdd[${raw}]`, detail: c === 'ALL' ? 'all capabilities are added (--cap-add ALL)' : `capability ${c} is added` });
      }
      if (requireDropAll && !container.capDrop.some((c) => normalizeCap(c) === 'ALL')) {
        (out ??= []).push({ location: 'capDrop', detail: 'capabilities are not dropped with --cap-drop ALL' });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- no-new-privileges

/** The spellings Go's strconv.ParseBool reads as true (dockerd parses `no-new-privileges=<bool>` with it). */
const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);

/** The effective no-new-privileges setting from security options (the last entry wins, as in dockerd). */
export function hasNoNewPrivileges(securityOpt: readonly string[]): boolean {
  let on = false;
  for (const opt of securityOpt) {
    const [k, v] = splitSecurityOpt(opt);
    if (k !== 'no-new-privileges') continue;
    on = v === undefined || v === '' || GO_TRUE.has(v);
  }
  return on;
}

export const noNewPrivileges = defineCheck({
  type: 'no-new-privileges',
  group: 'host',
  summary: 'Containers must run with no-new-privileges (setuid binaries cannot raise privileges).',
  remedy: 'add `--security-opt no-new-privileges:true` (`security_opt: [no-new-privileges:true]`)',
  params: NoParams,
  defaults: {},
  check({ container }) {
    return hasNoNewPrivileges(container.securityOpt) ? NO_EVIDENCE : [{ location: 'securityOpt', detail: 'no-new-privileges is not set' }];
  },
});

// ---------------------------------------------------------------- read-only-rootfs

export const readOnlyRootfs = defineCheck({
  type: 'read-only-rootfs',
  group: 'host',
  summary: "The container's root filesystem must be read-only (writes go to volumes or tmpfs).",
  remedy: 'run with --read-only (`read_only: true`) and mount a volume or tmpfs where the app writes',
  params: NoParams,
  defaults: {},
  check({ container }) {
    return container.readOnlyRootfs ? NO_EVIDENCE : [{ location: 'readOnlyRootfs', detail: 'root filesystem is writable' }];
  },
});

// ---------------------------------------------------------------- host-namespaces

export const NAMESPACES = ['network', 'pid', 'ipc', 'uts', 'userns', 'cgroup'] as const;

const HostNamespacesParams = lazySchema((T) => T.Object(
  {
    namespaces: T.Optional(
      T.Array(T.Union(NAMESPACES.map((n) => T.Literal(n))), { uniqueItems: true, description: 'Which host namespaces are forbidden. Default all: network, pid, ipc, uts, userns, cgroup.' }),
    ),
    cgroupnsOnCgroupV1: T.Optional(
      T.Boolean({
        description: "Also flag the host's cgroup namespace where it is dockerd's default for every container: on cgroup v1 hosts, and where the host's cgroup version is unknown. Default false: flagged on cgroup v2 hosts only, where it must have been asked for.",
      }),
    ),
  },
  { additionalProperties: false },
));

export const hostNamespaces = defineCheck({
  type: 'host-namespaces',
  group: 'host',
  summary: "Containers must not share the host's network, PID, IPC, UTS, user or cgroup namespace.",
  remedy: 'remove --network host / --pid host / --ipc host / --uts host / --userns host / --cgroupns host; publish ports instead of host networking',
  params: HostNamespacesParams,
  defaults: { namespaces: [...NAMESPACES], cgroupnsOnCgroupV1: false },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const ns = new Set<string>(params.namespaces ?? NAMESPACES);
    const n = ns.has('network');
    const p = ns.has('pid');
    const i = ns.has('ipc');
    const u = ns.has('uts');
    const un = ns.has('userns');
    const cg = ns.has('cgroup');
    const cgAnywhere = params.cgroupnsOnCgroupV1 === true;
    return ({ container: c, host }) => {
      let out: Evidence[] | undefined;
      if (n && c.networkMode === 'host') (out ??= []).push({ location: 'networkMode', detail: "shares the host's network namespace (--network host)" });
      else if (n && joinsHost(c.networkMode, c.effectiveNetworkMode)) (out ??= []).push({ location: 'networkMode', detail: joinedDetail('network', c.networkMode) });
      if (p && c.pidMode === 'host') (out ??= []).push({ location: 'pidMode', detail: "shares the host's PID namespace (--pid host)" });
      else if (p && joinsHost(c.pidMode, c.effectivePidMode)) (out ??= []).push({ location: 'pidMode', detail: joinedDetail('PID', c.pidMode) });
      if (i && c.ipcMode === 'host') (out ??= []).push({ location: 'ipcMode', detail: "shares the host's IPC namespace (--ipc host)" });
      else if (i && joinsHost(c.ipcMode, c.effectiveIpcMode)) (out ??= []).push({ location: 'ipcMode', detail: joinedDetail('IPC', c.ipcMode) });
      if (u && c.utsMode === 'host') (out ??= []).push({ location: 'utsMode', detail: "shares the host's UTS namespace (--uts host)" });
      if (un && c.usernsMode === 'host') (out ??= []).push({ location: 'usernsMode', detail: "uses the host's user namespace (--userns host)" });
      // On cgroup v1 (and hybrid) hosts dockerd gives EVERY container the
      // host's cgroup namespace unless daemon.json says otherwise, and
      // inspect cannot tell that default from `--cgroupns host`; flagging it
      // there would flag the whole host. On v2 the default is private, so
      // "host" was asked for.
      if (cg && c.cgroupnsMode === 'host' && (host?.cgroupVersion === 2 || cgAnywhere)) {
        (out ??= []).push({ location: 'cgroupnsMode', detail: "shares the host's cgroup namespace (--cgroupns host), so it sees the host's cgroup hierarchy" });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

/** `container:<id>` whose container (followed through its own joins) uses the host's namespace. */
function joinsHost(mode: string, effective: string | undefined): boolean {
  return effective === 'host' && mode.startsWith('container:');
}

function joinedDetail(ns: string, mode: string): string {
  const target = mode.slice('container:'.length);
  const shown = /^[0-9a-f]{64}$/.test(target) ? target.slice(0, 12) : target;
  const flag = ns === 'network' ? 'network' : ns.toLowerCase();
  return `joins the ${ns} namespace of container ${shown}, which is the host's (--${flag} ${mode})`;
}

// ---------------------------------------------------------------- seccomp-apparmor

const SeccompParams = lazySchema((T) => T.Object(
  {
    seccomp: T.Optional(T.Boolean({ description: 'Flag seccomp=unconfined. Default true.' })),
    apparmor: T.Optional(T.Boolean({ description: 'Flag apparmor=unconfined. Default true.' })),
    selinux: T.Optional(T.Boolean({ description: 'Flag label=disable (SELinux confinement off). Default true.' })),
  },
  { additionalProperties: false },
));

/** Seccomp default actions that let a syscall through: a profile with one of them is a blocklist at best. */
const PERMISSIVE_SECCOMP_ACTIONS = new Set(['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG']);

/**
 * The permissive default action of a seccomp profile given inline
 * (`--security-opt seccomp=<file>`: the CLI sends the file's JSON, dockerd
 * stores and applies it), or undefined. dockerd reads the profile with Go's
 * json.Unmarshal, which matches the key `defaultAction` case-insensitively
 * (only ASCII letters can fold to its letters) and lets the last duplicate
 * win; here ANY spelling of the key with a permissive value counts (never
 * looser than dockerd). A profile that does not parse is refused by dockerd
 * when the container starts. Verified on dockerd 20.10 and 26.1:
 * `{"defaultAction":"SCMP_ACT_ALLOW"}` and `{"DEFAULTACTION":"SCMP_ACT_LOG"}`
 * let a container unshare(CLONE_NEWUSER), which the default profile forbids.
 */
export function permissiveSeccompDefault(profile: string): string | undefined {
  if (!profile.trimStart().startsWith('{')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(profile);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  for (const [key, value] of Object.entries(parsed)) {
    if (key.toLowerCase() === 'defaultaction' && /^[\x00-\x7f]*$/.test(key) && typeof value === 'string' && PERMISSIVE_SECCOMP_ACTIONS.has(value)) return value;
  }
  return undefined;
}

/** SELinux process types that are not confined: `label=type:spc_t` is as good as `label=disable`. */
const UNCONFINED_SELINUX_TYPES = new Set(['spc_t', 'unconfined_t']);

export const seccompApparmor = defineCheck({
  type: 'seccomp-apparmor',
  group: 'host',
  summary: 'Seccomp and AppArmor (and SELinux labels) must not be disabled (`unconfined`).',
  remedy: 'remove `--security-opt seccomp=unconfined` / `apparmor=unconfined` / `label=disable`; use a custom profile that allows just the needed syscalls',
  params: SeccompParams,
  defaults: { seccomp: true, apparmor: true, selinux: true },
  check({ container }, params) {
    let out: Evidence[] | undefined;
    for (const opt of container.securityOpt) {
      const [k, v] = splitSecurityOpt(opt);
      const val = v?.toLowerCase();
      if (k === 'seccomp' && val === 'unconfined' && params.seccomp !== false) (out ??= []).push({ location: 'securityOpt', detail: 'seccomp is unconfined' });
      else if (k === 'seccomp' && v !== undefined && params.seccomp !== false && permissiveSeccompDefault(v) !== undefined) {
        (out ??= []).push({ location: 'securityOpt', detail: `seccomp is as good as unconfined: the profile's defaultAction is ${permissiveSeccompDefault(v)}, so every syscall it does not list is allowed` });
      }
      else if (k === 'apparmor' && val === 'unconfined' && params.apparmor !== false) (out ??= []).push({ location: 'securityOpt', detail: 'AppArmor is unconfined' });
      else if (params.selinux !== false) {
        // dockerd (parseSecurityOpt) reads a bare "disable" as label=disable.
        if ((k === 'label' && val === 'disable') || (k === 'disable' && v === undefined)) {
          (out ??= []).push({ location: 'securityOpt', detail: `SELinux labelling is disabled (${opt.trim() === 'disable' ? '"disable", which dockerd reads as label=disable' : opt.trim()})` });
        } else if (k === 'label' && val !== undefined && val.startsWith('type:') && UNCONFINED_SELINUX_TYPES.has(val.slice(5).trim())) {
          (out ??= []).push({ location: 'securityOpt', detail: `SELinux runs the container as the unconfined type ${val.slice(5).trim()} (${opt.trim()})` });
        }
      }
    }
    return out ?? NO_EVIDENCE;
  },
});

// ---------------------------------------------------------------- system-paths

/**
 * What every dockerd since 19.03 masks (binds /dev/null or an empty tmpfs
 * over) when HostConfig.MaskedPaths is null. Later versions add more
 * (/sys/devices/virtual/powercap in 25, /proc/interrupts and per-CPU
 * thermal_throttle paths in 28.x); a container created by an older engine
 * must not break the rule for lacking them.
 */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
];

/** What every dockerd since 19.03 mounts read-only when HostConfig.ReadonlyPaths is null. */
export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const ContainerPathList = (T: TypeBuilder, description: string) => T.Array(T.String({ minLength: 1, pattern: '^/' }), { description });

const SystemPathsParams = lazySchema((T) => T.Object(
  {
    maskedPaths: T.Optional(ContainerPathList(T, `Container paths that must stay masked (the path or a parent in HostConfig.MaskedPaths). Default: ${DEFAULT_MASKED_PATHS.join(', ')}.`)),
    readonlyPaths: T.Optional(
      ContainerPathList(T, `Container paths that must stay read-only (the path or a parent in HostConfig.ReadonlyPaths, or masked). Default: ${DEFAULT_READONLY_PATHS.join(', ')}.`),
    ),
  },
  { additionalProperties: false },
));

/** The required paths that no entry of `given` (a path or a parent of it) covers. */
function uncovered(required: readonly string[], given: readonly string[]): string[] {
  const have = given.map(normalizeHostPath);
  return required.filter((p) => !have.some((g) => isSameOrUnder(p, g)));
}

export const systemPaths = defineCheck({
  type: 'system-paths',
  group: 'host',
  summary: "The kernel interfaces dockerd masks or makes read-only in every container (/proc/kcore, /proc/sys, /proc/sysrq-trigger, /sys/firmware …) must stay so: no `--security-opt systempaths=unconfined`, no MaskedPaths / ReadonlyPaths lists that leave them out.",
  remedy: 'remove `--security-opt systempaths=unconfined` (and any HostConfig.MaskedPaths / ReadonlyPaths the client sends); dockerd then applies its defaults',
  params: SystemPathsParams,
  defaults: { maskedPaths: [...DEFAULT_MASKED_PATHS], readonlyPaths: [...DEFAULT_READONLY_PATHS] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const masked = (params.maskedPaths ?? DEFAULT_MASKED_PATHS).map(normalizeHostPath);
    const readonly = (params.readonlyPaths ?? DEFAULT_READONLY_PATHS).map(normalizeHostPath);
    return ({ container: c }) => {
      // Absent lists are dockerd's defaults (or a privileged container, which
      // the privileged rule judges); only a list the client gave can leave
      // something out.
      const m = c.maskedPaths?.values;
      const r = c.readonlyPaths?.values;
      if (m === undefined && r === undefined) return NO_EVIDENCE;
      let out: Evidence[] | undefined;
      if (m !== undefined) {
        const open = uncovered(masked, m);
        if (open.length > 0) out = [{ location: 'maskedPaths', detail: `${open.join(', ')} ${open.length === 1 ? 'is' : 'are'} not masked (${m.length === 0 ? 'MaskedPaths is empty: --security-opt systempaths=unconfined' : 'MaskedPaths leaves them out'})` }];
      }
      if (r !== undefined) {
        const open = uncovered(uncovered(readonly, r), m ?? NONE);
        if (open.length > 0) (out ??= []).push({ location: 'readonlyPaths', detail: `${open.join(', ')} ${open.length === 1 ? 'is' : 'are'} writable (${r.length === 0 ? 'ReadonlyPaths is empty: --security-opt systempaths=unconfined' : 'ReadonlyPaths leaves them out'})` });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- devices

/**
 * A device host path as dockerd opens it: a relative path is relative to
 * dockerd's working directory ("/" under systemd), and ".." and "//" are
 * the kernel's to resolve, so "/dev/net/.." is /dev — which dockerd passes
 * whole (every device under a directory). Compared after this, a glob such
 * as "/dev/net/*" cannot be satisfied by a path that leaves /dev/net.
 */
export function normalizeDevicePath(p: string): string {
  return normalizeHostPath(p);
}

/** dockerd's own pattern for a device cgroup rule (oci.AppendDevicePermissionsFromCgroupRules); nothing else starts. */
const CGROUP_RULE = /^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$/;

export interface DeviceCgroupRule {
  /** a = every device, b = block, c = character. */
  type: 'a' | 'b' | 'c';
  /** A number, or "*" for any. */
  major: string;
  minor: string;
  /** Subset of "rwm" (read, write, mknod). */
  access: string;
}

/** A `--device-cgroup-rule` as dockerd parses it; undefined for one it refuses (the container then fails to start). */
export function parseDeviceCgroupRule(rule: string): DeviceCgroupRule | undefined {
  const m = CGROUP_RULE.exec(rule);
  if (!m) return undefined;
  return { type: m[1] as DeviceCgroupRule['type'], major: m[2]!, minor: m[3]!, access: m[4]! };
}

/**
 * Whether allowlist entry `a` permits container rule `r`: same type (an
 * "a" entry is every device, whatever numbers follow it — the kernel
 * ignores them), numbers equal or "*" in the entry, and no access the
 * entry does not give.
 */
function cgroupRuleCovers(a: DeviceCgroupRule, r: DeviceCgroupRule): boolean {
  if (a.type !== 'a') {
    if (r.type !== a.type) return false;
    if (a.major !== '*' && a.major !== r.major) return false;
    if (a.minor !== '*' && a.minor !== r.minor) return false;
  }
  for (const ch of r.access) if (!a.access.includes(ch)) return false;
  return true;
}

/** What a device cgroup rule opens up, for evidence. */
function describeCgroupRule(raw: string, r: DeviceCgroupRule | undefined): string {
  if (r === undefined) return `device cgroup rule "${raw}" is not one dockerd accepts`;
  const mknod = r.access.includes('m') ? ', and with mknod it can create the device nodes itself' : '';
  if (r.type === 'a') return `device cgroup rule "${raw}" allows every host device${mknod}`;
  if (r.type === 'b') return `device cgroup rule "${raw}" allows block devices — the host's disks${mknod}`;
  if (r.major === '*') return `device cgroup rule "${raw}" allows every character device (any major number)${mknod}`;
  return `device cgroup rule "${raw}" allows host character devices ${r.major}:${r.minor}`;
}

const DevicesParams = lazySchema((T) => T.Object(
  {
    allowed: T.Optional(T.Array(T.String({ minLength: 1 }), { description: 'Host device paths (globs, e.g. "/dev/nvidia*") that may be passed in. Default none: any device breaks the rule.' })),
    allowedCgroupRules: T.Optional(
      T.Array(T.String({ pattern: CGROUP_RULE.source }), {
        description: 'Device cgroup rules (--device-cgroup-rule, "c 189:* rwm") a container may carry: one it gives is allowed when an entry here has its type (or "a"), its numbers (or "*") and at least its access. Default none: any rule breaks the rule.',
      }),
    ),
  },
  { additionalProperties: false },
));

export const devices = defineCheck({
  type: 'devices',
  group: 'host',
  summary: 'No host devices passed into containers and no device cgroup rules (--device-cgroup-rule), except allowlists.',
  remedy: 'remove --device (`devices:`) and --device-cgroup-rule (`device_cgroup_rules:`), or add the device or rule to the rule\'s `allowed` / `allowedCgroupRules` list if it is expected',
  params: DevicesParams,
  defaults: { allowed: [], allowedCgroupRules: [] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const allowed = compileGlobs(params.allowed ?? []);
    const none = (params.allowed ?? []).length === 0;
    const allowedRules = (params.allowedCgroupRules ?? []).map(parseDeviceCgroupRule).filter((r) => r !== undefined);
    return ({ container }) => {
      const rules = container.deviceCgroupRules?.values ?? NONE;
      if (container.devices.length === 0 && rules.length === 0) return NO_EVIDENCE;
      let out: Evidence[] | undefined;
      for (const d of container.devices) {
        // Facts carry the host path; tolerate the CLI's "host:container:perms" form too.
        const given = d.split(':', 1)[0]!;
        // Normalised here as well as by the agent: facts from elsewhere (an
        // older agent, a dry-run of stored facts) may carry the raw path.
        const host = normalizeDevicePath(given);
        if (!none && allowed(host)) continue;
        const shown = host === given ? host : `${given} (that is ${host})`;
        (out ??= []).push({ location: `devices[${given}]`, detail: `host device ${shown} is passed into the container${none ? '' : ' and is not in the allowed list'}` });
      }
      for (const raw of rules) {
        const r = parseDeviceCgroupRule(raw);
        if (r !== undefined && allowedRules.some((a) => cgroupRuleCovers(a, r))) continue;
        const listed = allowedRules.length > 0 ? ' and is not in the allowed list' : '';
        (out ??= []).push({ location: `deviceCgroupRules[${raw}]`, detail: `${describeCgroupRule(raw, r)}${listed}` });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

export const HOST_CHECKS = [
  rootUser, privileged, sensitiveMounts, dockerSocket, capabilities, noNewPrivileges, readOnlyRootfs, hostNamespaces, seccompApparmor, systemPaths, devices,
] as const;
