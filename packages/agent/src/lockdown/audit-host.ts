// Owns the socket-and-daemon lockdown audit (move 4 of the mission): who can
// reach the Docker engine, and how the daemon is configured. It only READS
// (the host root, /proc, `docker info`, the container list); fixes are
// applied by fixes.ts, each one switched on separately.
//
// What it checks, and why each matters:
// - Docker / containerd socket owner, group and mode: write access to either
//   socket is root on the host. Modes are compared as permission BITS.
// - docker group members: every member is root-equivalent.
// - dockerd on TCP — from its command line, daemon.json `hosts`, and the
//   sockets it actually listens on (/proc/net/tcp inodes ↔ its fds, which also
//   catches systemd socket activation) — and whether clients must present
//   certificates (--tlsverify).
// - authorization plugin, icc, userns-remap, live-restore, no-new-privileges,
//   insecure registries, log driver: the daemon-wide settings that bound what
//   a container or API client can do.
// - the Docker socket mounted into a container: decided by the ONE policy
//   evaluator's `docker-socket` check, with this host's socket paths added.
import type { ContainerFacts__Output } from '@bulkhead/shared';
import { buildAuditPolicy, containerName, evaluateContainers, type AuditRule } from '../cis/audit-policy';
import { inspectContainers } from '../cis/container-inventory';
import {
  auditedContainerdSocket, authorizationPlugins, boolSetting, listSetting, loadDaemonConfig, sameHostPath, socketGroupName, stringSetting, tcpHosts, tlsMode,
  DEFAULT_DOCKER_SOCKET_PATH, type DaemonConfig,
} from './daemon-config';
import type { DaemonHost } from './dockerd-flags';
import { describeBits, excessBits, formatMode, lstatHostPath, statHostPath } from './file-mode';
import { readHostAccounts, type HostAccounts } from './groups';
import {
  LOCKDOWN_SEVERITY_RANK, type LockdownAuditOptions, type LockdownFinding, type LockdownSeverity,
} from './lockdown-options';
import { isLoopback, tcpListenersOf, type TcpListener } from './proc';

export type { LockdownAuditOptions, LockdownFinding, LockdownSeverity } from './lockdown-options';

/** Registries dockerd always treats as insecure (its built-in default), not a finding. */
const BUILTIN_INSECURE = new Set(['127.0.0.0/8', '::1/128']);

/** Swarm's own ports (mutual TLS built in); dockerd listens on them only when swarm is active. */
const SWARM_PORTS = new Set([2377, 7946]);

/**
 * Audits the host's Docker sockets and daemon configuration. Returns the
 * findings sorted by severity (most severe first), then id. Throws only for
 * programming errors; anything it cannot see becomes an `info` finding.
 */
export async function auditHost(opts: LockdownAuditOptions = {}): Promise<LockdownFinding[]> {
  const hostRoot = opts.hostRoot ?? '/';
  const dockerSocketPath = opts.dockerSocketPath ?? DEFAULT_DOCKER_SOCKET_PATH;
  const [config, accounts] = await Promise.all([
    loadDaemonConfig({
      docker: opts.docker,
      hostRoot,
      procRoot: opts.procRoot,
      dockerSocketPath,
      daemonJsonPath: opts.daemonJsonPath,
      dockerdPid: opts.dockerdPid,
    }),
    readHostAccounts(hostRoot),
  ]);
  // The containerd socket dockerd really uses: given, else dockerd's --containerd
  // (or daemon.json "containerd"), else containerd's default.
  const containerdSocketPath = auditedContainerdSocket(config, opts.containerdSocketPath);
  const groupName = socketGroupName(config);
  const dockerGroup = accounts.groupByName(groupName);
  const findings: LockdownFinding[] = [
    ...(await socketFindings({
      which: 'docker', path: dockerSocketPath, hostRoot, accounts,
      allowedGids: dockerGroup ? [0, dockerGroup.gid] : [0],
      expected: `root:${groupName} 0660`,
      expectedGroup: groupName,
    })),
    ...(await socketFindings({
      which: 'containerd', path: containerdSocketPath, hostRoot, accounts,
      allowedGids: [0],
      expected: 'root:root 0660',
      expectedGroup: 'root',
    })),
    ...groupFindings(accounts, groupName, opts.trustedUsers),
    ...(await tcpFindings(config)),
    ...daemonSettingFindings(config),
    ...swarmFindings(config),
    ...(await socketMountFindings(opts, dockerSocketPath, containerdSocketPath)),
  ];
  return findings.sort((a, b) => LOCKDOWN_SEVERITY_RANK[b.severity] - LOCKDOWN_SEVERITY_RANK[a.severity] || cmp(a.id, b.id) || cmp(a.subject ?? '', b.subject ?? ''));
}

// ------------------------------------------------------------------ sockets

interface SocketCheck {
  which: 'docker' | 'containerd';
  path: string;
  hostRoot: string;
  accounts: HostAccounts;
  /** Groups that may own the socket (root, and for Docker the docker group). */
  allowedGids: number[];
  expected: string;
  expectedGroup: string;
}

async function socketFindings(s: SocketCheck): Promise<LockdownFinding[]> {
  const prefix = `${s.which}-socket`;
  const label = s.which === 'docker' ? 'Docker' : 'containerd';
  const [st, lst] = await Promise.all([statHostPath(s.hostRoot, s.path), lstatHostPath(s.hostRoot, s.path)]);
  if (!st) {
    return [{
      id: `${prefix}.missing`, severity: 'info', subject: s.path, fixable: false,
      title: `${label} socket ${s.path} not found`,
      detail: `${s.path} does not exist${s.hostRoot !== '/' ? ` under ${s.hostRoot}` : ''}; its owner and mode were not checked.`,
      remediation: s.which === 'docker' ? 'Point the agent at the socket dockerd really uses (--docker-host), or check that dockerd runs.' : 'Pass the containerd socket path the engine uses, if it is not the default.',
    }];
  }
  if (st.kind !== 'socket') {
    return [{
      id: `${prefix}.not-a-socket`, severity: 'medium', subject: s.path, fixable: false,
      title: `${s.path} is a ${st.kind}, not a socket`,
      detail: `${label} socket path ${s.path} is a ${st.kind} (owner ${s.accounts.userName(st.uid)}, mode ${formatMode(st.mode)}).`,
      remediation: `Find out what created ${s.path}; dockerd recreates its socket at start.`,
    }];
  }
  const out: LockdownFinding[] = [];
  const owner = s.accounts.userName(st.uid);
  const group = s.accounts.groupName(st.gid);
  const evidence = { path: s.path, uid: st.uid, gid: st.gid, owner, group, mode: formatMode(st.mode), symlink: lst?.kind === 'symlink' };
  const fixOwnership = s.which === 'docker' ? 'dockerSocketOwnership' : 'containerdSocketOwnership';
  const fixMode = s.which === 'docker' ? 'dockerSocketMode' : 'containerdSocketMode';
  const persist = s.which === 'docker'
    ? 'make it last across restarts with the docker.socket unit (SocketUser=root, SocketGroup=docker, SocketMode=0660) or dockerd --group docker'
    : 'make it last across restarts in containerd\'s config.toml ([grpc] uid = 0, gid = 0)';
  if (st.uid !== 0) {
    out.push({
      id: `${prefix}.owner`, severity: 'high', subject: s.path, fixable: true, fix: fixOwnership, evidence,
      title: `${label} socket is owned by ${owner}, not root`,
      detail: `${s.path} is owned by ${owner} (uid ${st.uid}): that user controls the ${label} engine, which is root on this host. Expected ${s.expected}.`,
      remediation: `chown root:${s.expectedGroup} ${s.path}; ${persist}.`,
    });
  }
  if (!s.allowedGids.includes(st.gid)) {
    out.push({
      id: `${prefix}.group`, severity: 'high', subject: s.path, fixable: true, fix: fixOwnership, evidence,
      title: `${label} socket belongs to group ${group}`,
      detail: `${s.path} belongs to group ${group} (gid ${st.gid})${(st.mode & 0o020) !== 0 ? ', which may write to it: every member of that group is root on this host' : ''}. Expected ${s.expected}.`,
      remediation: `chown root:${s.expectedGroup} ${s.path}; ${persist}.`,
    });
  }
  const excess = excessBits(st.mode, 0o660);
  if (excess !== 0) {
    // Connecting to a unix socket needs write permission: other-write means
    // every local user (and every process of any service account) is root.
    const severity: LockdownSeverity = (excess & 0o002) !== 0 ? 'critical' : (excess & 0o7000) !== 0 ? 'medium' : 'low';
    out.push({
      id: `${prefix}.mode`, severity, subject: s.path, fixable: true, fix: fixMode, evidence: { ...evidence, excessBits: describeBits(excess) },
      title: `${label} socket mode ${formatMode(st.mode)} is more permissive than 0660`,
      detail: `${s.path} has mode ${formatMode(st.mode)}; bits beyond 0660: ${describeBits(excess).join(', ')}.${(excess & 0o002) !== 0 ? ' Any local user can connect and control the engine (root on this host).' : ''}`,
      remediation: `chmod 0660 ${s.path}; ${persist}.`,
    });
  }
  return out;
}

// ------------------------------------------------------------------ docker group

function groupFindings(accounts: HostAccounts, groupName: string, trusted: readonly string[] | undefined): LockdownFinding[] {
  const members = accounts.membersOf(groupName);
  if (members.length === 0) return [];
  if (trusted !== undefined) {
    const ok = new Set(trusted);
    const untrusted = members.filter((m) => !ok.has(m));
    if (untrusted.length === 0) return [];
    return [{
      id: 'docker-group.untrusted-members', severity: 'high', subject: groupName, fixable: false,
      evidence: { group: groupName, members, untrusted },
      title: `${untrusted.length} untrusted user(s) in the ${groupName} group`,
      detail: `Members of ${groupName} can use the Docker socket, which is root on this host. Not in the trusted list: ${untrusted.join(', ')} (all members: ${members.join(', ')}; read from /etc/group and /etc/passwd — directory-service members are not seen).`,
      remediation: `gpasswd -d <user> ${groupName} for each untrusted user, or add them to the trusted list if intended.`,
    }];
  }
  return [{
    id: 'docker-group.members', severity: 'medium', subject: groupName, fixable: false,
    evidence: { group: groupName, members },
    title: `${members.length} user(s) in the ${groupName} group are root-equivalent`,
    detail: `Members of ${groupName} can use the Docker socket, which is root on this host: ${members.join(', ')} (from /etc/group and /etc/passwd — directory-service members are not seen).`,
    remediation: `Keep only trusted administrators in ${groupName} (gpasswd -d <user> ${groupName}); list them as trusted users to turn this into a check.`,
  }];
}

// ------------------------------------------------------------------ TCP

function hostIsLoopback(h: DaemonHost): boolean {
  return h.host !== undefined && h.host !== '' && (isLoopback(h.host) || h.host === 'localhost');
}

function tcpSeverity(tls: 'verify' | 'tls' | 'none', loopbackOnly: boolean): LockdownSeverity | undefined {
  if (tls === 'verify') return loopbackOnly ? undefined : 'low';
  return loopbackOnly ? 'high' : 'critical';
}

function tlsText(tls: 'verify' | 'tls' | 'none'): string {
  if (tls === 'verify') return 'TLS with client certificate verification (--tlsverify)';
  if (tls === 'tls') return 'TLS WITHOUT client certificate verification: any client that reaches it controls the engine';
  return 'NO TLS: any client that reaches it controls the engine (root on this host)';
}

const TCP_REMEDIATION =
  'Remove tcp:// entries from dockerd -H / daemon.json "hosts" (and ListenStream from docker.socket) and use the unix socket (or `ssh://` from remote clients); if TCP is required, use --tlsverify with --tlscacert/--tlscert/--tlskey, bind to a specific interface, and firewall it.';

async function tcpFindings(c: DaemonConfig): Promise<LockdownFinding[]> {
  const out: LockdownFinding[] = [];
  const tls = tlsMode(c);
  const configured = tcpHosts(c);
  let listeners: TcpListener[] = [];
  if (c.pid === undefined) {
    out.push({
      id: 'daemon.process-not-found', severity: 'info', subject: c.dockerSocketPath, fixable: false,
      title: 'dockerd process not found',
      detail: `No dockerd process serving ${c.dockerSocketPath} was found in ${c.procRoot}; its command line and listening sockets were not checked (daemon.json and docker info were).`,
      remediation: 'Run the agent in the host PID namespace (or pass the host /proc), or pass the dockerd pid.',
    });
  } else {
    listeners = await tcpListenersOf(c.procRoot, c.pid);
  }
  const swarmActive = c.info?.Swarm?.LocalNodeState === 'active';
  const matches = (l: TcpListener, h: DaemonHost): boolean =>
    l.port === h.port && (h.host === '' || h.host === undefined || h.host === l.address || h.host === '0.0.0.0' || h.host === '::' || (h.host === 'localhost' && isLoopback(l.address)));
  if (configured.length > 0) {
    const loopbackOnly = configured.every(hostIsLoopback);
    const sev = tcpSeverity(tls, loopbackOnly);
    const listening = listeners.filter((l) => configured.some((h) => matches(l, h)));
    if (sev) {
      out.push({
        id: 'daemon.tcp-configured', severity: sev, subject: configured.map((h) => h.raw).join(', '), fixable: false,
        evidence: { hosts: configured.map((h) => h.raw), source: c.hostsSource, tls, listening: listening.map((l) => `${l.address}:${l.port}`) },
        title: `dockerd is configured to listen on TCP (${configured.map((h) => h.raw).join(', ')})`,
        detail: `From ${c.hostsSource === 'cmdline' ? 'its command line' : c.hostsSource}: ${configured.map((h) => h.raw).join(', ')}${loopbackOnly ? ' (loopback only: every local user can connect, bypassing the socket\'s permissions)' : ''}; ${tlsText(tls)}.${listening.length > 0 ? ` Listening now on ${listening.map((l) => `${l.address}:${l.port}`).join(', ')}.` : ''}`,
        remediation: TCP_REMEDIATION,
      });
    }
  }
  const unexplained = listeners.filter((l) => !configured.some((h) => matches(l, h)) && !(swarmActive && SWARM_PORTS.has(l.port)));
  if (unexplained.length > 0) {
    const loopbackOnly = unexplained.every((l) => isLoopback(l.address));
    const sev = tcpSeverity(tls, loopbackOnly);
    if (sev) {
      out.push({
        id: 'daemon.tcp-listening', severity: sev, subject: unexplained.map((l) => `${l.address}:${l.port}`).join(', '), fixable: false,
        evidence: { listeners: unexplained.map((l) => ({ address: l.address, port: l.port, family: l.family })), pid: c.pid, tls },
        title: `dockerd listens on TCP ${unexplained.map((l) => `${fmtAddr(l.address)}:${l.port}`).join(', ')}`,
        detail: `dockerd (pid ${c.pid}) holds listening TCP sockets not named in its -H flags or daemon.json (e.g. systemd socket activation): ${unexplained.map((l) => `${fmtAddr(l.address)}:${l.port}`).join(', ')}; ${tlsText(tls)}.`,
        remediation: TCP_REMEDIATION,
      });
    }
  }
  return out;
}

function fmtAddr(a: string): string {
  return a.includes(':') ? `[${a}]` : a;
}

// ------------------------------------------------------------------ daemon settings

function daemonSettingFindings(c: DaemonConfig): LockdownFinding[] {
  const out: LockdownFinding[] = [];
  const where = (s: { source: string } | undefined): string => (s ? ` (${s.source === 'cmdline' ? 'command line' : c.daemonJsonPath})` : ' (default)');
  if (c.daemonJsonError !== undefined) {
    out.push({
      id: 'daemon.json-invalid', severity: 'high', subject: c.daemonJsonPath, fixable: false,
      title: `${c.daemonJsonPath} is not valid`,
      detail: `${c.daemonJsonPath}: ${c.daemonJsonError}. dockerd refuses to start with it, so the next restart fails; its settings were not audited.`,
      remediation: `Fix ${c.daemonJsonPath} (validate with \`dockerd --validate --config-file ${c.daemonJsonPath}\` on Docker ≥ 23).`,
    });
  }
  const plugins = authorizationPlugins(c);
  if (plugins.length === 0) {
    out.push({
      id: 'daemon.no-authorization-plugin', severity: 'medium', fixable: false,
      title: 'No authorization plugin: every API call on the socket is allowed',
      detail: 'Neither --authorization-plugin, daemon.json "authorization-plugins" nor docker info lists an authorization plugin, so nothing can refuse a privileged `docker run` before it starts.',
      remediation: 'Enable Bulkhead\'s authorization plugin (--authorization-plugin=<name> or "authorization-plugins": ["<name>"] in daemon.json, then restart dockerd).',
    });
  }
  const icc = boolSetting(c, 'icc');
  const bridge = stringSetting(c, 'bridge');
  const noDefaultBridge = bridge?.value === 'none';
  if (icc?.value !== false && !noDefaultBridge) {
    out.push({
      id: 'daemon.icc', severity: 'medium', fixable: false, evidence: { icc: icc?.value ?? true, source: icc?.source ?? 'default' },
      title: 'Containers on the default bridge can talk to each other (icc)',
      detail: `Inter-container communication on docker0 is enabled${where(icc)}: any container on the default bridge reaches every other one's ports.`,
      remediation: 'Set "icc": false in daemon.json (or --icc=false) and give applications user-defined networks.',
    });
  }
  const secOpts = c.info?.SecurityOptions ?? [];
  const userns = stringSetting(c, 'userns-remap');
  if (!secOpts.some((o) => o.includes('name=userns')) && !(userns && userns.value !== '')) {
    out.push({
      id: 'daemon.userns-remap', severity: 'medium', fixable: false,
      title: 'User namespace remapping is off: root in a container is root on the host',
      detail: 'Neither docker info (SecurityOptions name=userns) nor --userns-remap / daemon.json "userns-remap" shows user namespace remapping.',
      remediation: 'Set "userns-remap": "default" in daemon.json (check volume ownership first: remapped containers see host files with shifted ids).',
    });
  }
  const live = c.info?.LiveRestoreEnabled ?? boolSetting(c, 'live-restore')?.value;
  if (live !== true) {
    out.push({
      id: 'daemon.live-restore', severity: 'low', fixable: false,
      title: 'live-restore is off: restarting dockerd stops every container',
      detail: `live-restore is ${live === false ? 'disabled' : 'not enabled'}; a daemon upgrade or crash takes all containers down.`,
      remediation: 'Set "live-restore": true in daemon.json and reload dockerd (SIGHUP).',
    });
  }
  const nnp = boolSetting(c, 'no-new-privileges');
  if (nnp?.value !== true) {
    out.push({
      id: 'daemon.no-new-privileges', severity: 'medium', fixable: false,
      title: 'no-new-privileges is not the daemon default',
      detail: `Containers may gain privileges through setuid binaries unless each one sets no-new-privileges${where(nnp)}.`,
      remediation: 'Set "no-new-privileges": true in daemon.json (or --no-new-privileges).',
    });
  }
  const insecure = insecureRegistries(c);
  if (insecure.length > 0) {
    out.push({
      id: 'daemon.insecure-registries', severity: 'high', fixable: false, evidence: { registries: insecure },
      title: `Insecure registries configured: ${insecure.join(', ')}`,
      detail: `Images from ${insecure.join(', ')} are pulled over plain HTTP or without certificate checks, so they can be swapped in transit.`,
      remediation: 'Remove them from "insecure-registries" / --insecure-registry and give the registries valid TLS certificates (or a CA in /etc/docker/certs.d/<registry>/ca.crt).',
    });
  }
  const logDriver = c.info?.LoggingDriver ?? stringSetting(c, 'log-driver')?.value ?? 'json-file';
  if (logDriver === 'none') {
    out.push({
      id: 'daemon.log-driver', severity: 'medium', fixable: false, evidence: { logDriver },
      title: 'Container logs are discarded (log driver "none")',
      detail: 'The default log driver is "none": no container output is kept anywhere.',
      remediation: 'Set "log-driver" to a central driver (syslog, journald, fluentd, gelf …) in daemon.json.',
    });
  } else if (logDriver === 'json-file' || logDriver === 'local') {
    out.push({
      id: 'daemon.log-driver', severity: 'low', fixable: false, evidence: { logDriver },
      title: `Container logs stay on this host (log driver "${logDriver}")`,
      detail: `The default log driver is "${logDriver}": logs are lost with the host and an intruder with root can edit them.`,
      remediation: 'Set "log-driver" to a central driver (syslog, journald shipped off-host, fluentd, gelf …) in daemon.json.',
    });
  }
  return out;
}

// ------------------------------------------------------------------ swarm

/** Node states in which the engine belongs to a swarm (docker info's Swarm.LocalNodeState). */
const SWARM_MEMBER_STATES = new Set(['active', 'pending', 'locked', 'error']);

/**
 * A swarm member runs the task containers its managers schedule; swarm's executor creates them
 * inside dockerd, so they never pass the authorization plugin (only the reaction path sees
 * them once they run). The plugin refuses `POST /swarm/join` while host rules are enforced
 * (docs/authz.md), but a node that joined before, or under the `swarm-join` exemption, is
 * reported here.
 */
function swarmFindings(c: DaemonConfig): LockdownFinding[] {
  const swarm = c.info?.Swarm;
  const state = swarm?.LocalNodeState ?? '';
  if (!SWARM_MEMBER_STATES.has(state)) return [];
  const self = swarm?.NodeID ?? '';
  const remote = (swarm?.RemoteManagers ?? []).filter((m) => m.NodeID !== self && m.NodeID !== undefined);
  const addrs = remote.map((m) => m.Addr ?? m.NodeID ?? '?');
  const manager = swarm?.ControlAvailable === true;
  const nodes = swarm?.Nodes ?? 0;
  // The swarm's only manager: services are created only through this engine's API, where the
  // plugin judges them; another engine joining as a manager could schedule unjudged work here.
  const alone = manager && remote.length === 0 && (swarm?.Managers ?? 1) <= 1;
  const evidence = { state, nodeId: self, manager, nodes: swarm?.Nodes ?? null, remoteManagers: addrs };
  const remediation = 'If this host should not run swarm tasks: `docker swarm leave` (`--force` on a manager). If it should, keep the managers as trusted as this host: every service they create runs here as dockerd decides, with only the reaction path of Bulkhead\'s policy acting on its containers.';
  if (alone) {
    return [{
      id: 'daemon.swarm-member', severity: 'medium', subject: self || state, fixable: false, evidence,
      title: `This engine is its swarm's only manager (${nodes || 1} node${nodes > 1 ? 's' : ''})`,
      detail: `Swarm is ${state} on this engine, the only manager of a swarm of ${nodes || 1} node${nodes > 1 ? 's' : ''}. Services created through this engine's API are judged by the authorization plugin; an engine that joins this swarm as a manager could schedule task containers here that dockerd creates without asking the plugin.`,
      remediation,
    }];
  }
  return [{
    id: 'daemon.swarm-member', severity: 'high', subject: self || state, fixable: false, evidence,
    title: `This engine is in a swarm${addrs.length > 0 ? ` managed from ${addrs.join(', ')}` : ''}: its task containers bypass the authorization plugin`,
    detail: `Swarm is ${state} on this engine (${manager ? 'a manager' : 'a worker'}${nodes > 0 ? ` of ${nodes} nodes` : ''}${addrs.length > 0 ? `; other managers: ${addrs.join(', ')}` : ''}). Swarm's executor creates task containers inside dockerd, so the services those managers schedule here are never judged by this host's authorization plugin; Bulkhead acts on them only after they start.`,
    remediation,
  }];
}

function insecureRegistries(c: DaemonConfig): string[] {
  const out = new Set<string>();
  for (const s of listSetting(c, 'insecure-registry', 'insecure-registries')) out.add(s.value);
  for (const cidr of c.info?.RegistryConfig?.InsecureRegistryCIDRs ?? []) out.add(cidr);
  for (const [name, cfg] of Object.entries(c.info?.RegistryConfig?.IndexConfigs ?? {})) {
    if (cfg && cfg.Secure === false) out.add(cfg.Name ?? name);
  }
  return [...out].filter((r) => !BUILTIN_INSECURE.has(r)).sort();
}

// ------------------------------------------------------------------ socket mounted into containers

const DEFAULT_RUNTIME_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock', '/var/run/containerd/containerd.sock'];

async function socketMountFindings(opts: LockdownAuditOptions, dockerSocket: string, containerdSocket: string): Promise<LockdownFinding[]> {
  let containers: readonly ContainerFacts__Output[];
  if (opts.containers) {
    containers = opts.containers;
  } else if (opts.docker) {
    containers = (await inspectContainers(opts.docker)).map((a) => a.facts);
  } else {
    return [];
  }
  // The evaluator's own defaults, plus this host's sockets when they live
  // elsewhere (a private engine, a non-default containerd).
  const extra = [dockerSocket, containerdSocket].filter((p) => !DEFAULT_RUNTIME_SOCKETS.some((d) => sameHostPath(d, p)));
  const rules: AuditRule[] = [{ id: 'lockdown.docker-socket', check: { type: 'docker-socket' } }];
  if (extra.length > 0) rules.push({ id: 'lockdown.docker-socket.host', check: { type: 'docker-socket', socketPaths: [...new Set(extra)] } });
  const policy = buildAuditPolicy('bulkhead-lockdown', rules);
  const hits = evaluateContainers(policy, containers, opts.now ?? new Date());
  const byContainer = new Map<string, { c: ContainerFacts__Output; details: string[] }>();
  for (const list of hits.values()) {
    for (const h of list) {
      const e = byContainer.get(h.container.id) ?? { c: h.container, details: [] };
      for (const ev of h.evidence) if (!e.details.includes(ev.detail)) e.details.push(ev.detail);
      byContainer.set(h.container.id, e);
    }
  }
  return [...byContainer.values()].map(({ c, details }) => ({
    id: 'container.docker-socket', severity: 'critical' as const, subject: c.id, fixable: false,
    evidence: { containerId: c.id, name: containerName(c), image: c.imageRef, mounts: details },
    title: `Container ${containerName(c)} has the container runtime socket mounted`,
    detail: `${details.join('; ')}. Whoever controls this container controls the engine, i.e. is root on the host.`,
    remediation: 'Remove the mount; a tool that truly needs the engine should use a filtering proxy. The policy rule of type docker-socket decides what enforcement does to such containers.',
  }));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
