// Host-safety checks (move 3 of the mission): a container must not modify host
// system files or gain host root — root user, privileged, sensitive mounts, the
// Docker socket, capabilities, no-new-privileges, writable rootfs, host
// namespaces, unconfined seccomp/AppArmor, host devices.
import { compileGlobs } from '../glob';
import { canonicalHostPath, isAncestorOf, isSameOrUnder } from '../host-path';
import type { Mount__Output } from '../../proto/index';
import type { Evidence } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE, normalizeCap, splitSecurityOpt, type TypeBuilder } from './define';

const NoParams = lazySchema((T) => T.Object({}, { additionalProperties: false }));

// ---------------------------------------------------------------- root-user

/** True when a Docker `--user` value means uid 0: "", "0", "root", "0:0", "root:root", "0:<any>", "root:<any>". */
export function isRootUser(user: string): boolean {
  const u = user.trim();
  if (u === '') return true;
  const colon = u.indexOf(':');
  const name = colon < 0 ? u : u.slice(0, colon);
  return name === 'root' || name === '' || /^0+$/.test(name);
}

export const rootUser = defineCheck({
  type: 'root-user',
  group: 'host',
  summary: "Containers must not run as root (user empty, 0, root, 0:0, root:root …, including the image's default user).",
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

/** The effective no-new-privileges setting from security options (the last entry wins, as in dockerd). */
export function hasNoNewPrivileges(securityOpt: readonly string[]): boolean {
  let on = false;
  for (const opt of securityOpt) {
    const [k, v] = splitSecurityOpt(opt);
    if (k !== 'no-new-privileges') continue;
    on = v === undefined || v === '' || v.toLowerCase() === 'true';
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

export const NAMESPACES = ['network', 'pid', 'ipc', 'uts', 'userns'] as const;

const HostNamespacesParams = lazySchema((T) => T.Object(
  {
    namespaces: T.Optional(
      T.Array(T.Union(NAMESPACES.map((n) => T.Literal(n))), { uniqueItems: true, description: 'Which host namespaces are forbidden. Default all: network, pid, ipc, uts, userns.' }),
    ),
  },
  { additionalProperties: false },
));

export const hostNamespaces = defineCheck({
  type: 'host-namespaces',
  group: 'host',
  summary: "Containers must not share the host's network, PID, IPC, UTS or user namespace.",
  remedy: 'remove --network host / --pid host / --ipc host / --uts host / --userns host; publish ports instead of host networking',
  params: HostNamespacesParams,
  defaults: { namespaces: [...NAMESPACES] },
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
    return ({ container: c }) => {
      let out: Evidence[] | undefined;
      if (n && c.networkMode === 'host') (out ??= []).push({ location: 'networkMode', detail: "shares the host's network namespace (--network host)" });
      else if (n && joinsHost(c.networkMode, c.effectiveNetworkMode)) (out ??= []).push({ location: 'networkMode', detail: joinedDetail('network', c.networkMode) });
      if (p && c.pidMode === 'host') (out ??= []).push({ location: 'pidMode', detail: "shares the host's PID namespace (--pid host)" });
      else if (p && joinsHost(c.pidMode, c.effectivePidMode)) (out ??= []).push({ location: 'pidMode', detail: joinedDetail('PID', c.pidMode) });
      if (i && c.ipcMode === 'host') (out ??= []).push({ location: 'ipcMode', detail: "shares the host's IPC namespace (--ipc host)" });
      else if (i && joinsHost(c.ipcMode, c.effectiveIpcMode)) (out ??= []).push({ location: 'ipcMode', detail: joinedDetail('IPC', c.ipcMode) });
      if (u && c.utsMode === 'host') (out ??= []).push({ location: 'utsMode', detail: "shares the host's UTS namespace (--uts host)" });
      if (un && c.usernsMode === 'host') (out ??= []).push({ location: 'usernsMode', detail: "uses the host's user namespace (--userns host)" });
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
      else if (k === 'apparmor' && val === 'unconfined' && params.apparmor !== false) (out ??= []).push({ location: 'securityOpt', detail: 'AppArmor is unconfined' });
      else if (k === 'label' && val === 'disable' && params.selinux !== false) (out ??= []).push({ location: 'securityOpt', detail: 'SELinux labelling is disabled (label=disable)' });
    }
    return out ?? NO_EVIDENCE;
  },
});

// ---------------------------------------------------------------- devices

const DevicesParams = lazySchema((T) => T.Object(
  {
    allowed: T.Optional(T.Array(T.String({ minLength: 1 }), { description: 'Host device paths (globs, e.g. "/dev/nvidia*") that may be passed in. Default none: any device breaks the rule.' })),
  },
  { additionalProperties: false },
));

export const devices = defineCheck({
  type: 'devices',
  group: 'host',
  summary: 'No host devices passed into containers, except an allowlist.',
  remedy: 'remove --device (`devices:`), or add the device to the rule\'s `allowed` list if it is expected',
  params: DevicesParams,
  defaults: { allowed: [] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const allowed = compileGlobs(params.allowed ?? []);
    const none = (params.allowed ?? []).length === 0;
    return ({ container }) => {
      if (container.devices.length === 0) return NO_EVIDENCE;
      let out: Evidence[] | undefined;
      for (const d of container.devices) {
        // Facts carry the host path; tolerate the CLI's "host:container:perms" form too.
        const host = d.split(':', 1)[0]!;
        if (!none && allowed(host)) continue;
        (out ??= []).push({ location: `devices[${host}]`, detail: `host device ${host} is passed into the container${none ? '' : ' and is not in the allowed list'}` });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

export const HOST_CHECKS = [rootUser, privileged, sensitiveMounts, dockerSocket, capabilities, noNewPrivileges, readOnlyRootfs, hostNamespaces, seccompApparmor, devices] as const;
