// The CIS checks that overlap policy rules, expressed as ONE policy built in
// code and run through the shared evaluator. Rule ids are the CIS ids, so
// the report maps findings straight back. This is also where
// docker-bench-security's false results are fixed — by the evaluator:
// - 4.1 root user: "0", "0:0", "root:root", "root:<group>" and an image
//   default user of root are all root (docker-bench only caught "").
// - 5.6 sensitive mounts: subpaths (/etc/ssl, /proc/sys …) and parents of
//   sensitive paths (/var contains /var/lib/docker) count, paths are compared
//   segment-wise, /var/run and /run are the same (docker-bench matched exact
//   strings from `{{ .Mounts }}` and missed all of these).
import { buildAuditPolicy, type AuditRule } from './audit-policy';
import type { Policy } from '@bulkhead/shared';

/** Docker's default capability set: adding one of these again is not "adding" anything (CIS 5.4). */
export const DOCKER_DEFAULT_CAPABILITIES: readonly string[] = [
  'AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'NET_RAW', 'SETFCAP', 'SETGID',
  'SETPCAP', 'SETUID', 'SYS_CHROOT',
];

/** Runtime sockets are 5.32's business; 5.6 leaves them out so one mount is not reported twice. */
const SOCKET_PATHS = ['/var/run/docker.sock', '/run/docker.sock', '/var/run/containerd', '/run/containerd', '/run/containerd/containerd.sock'];

const DEFAULT_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock', '/var/run/containerd/containerd.sock'];

/**
 * The audit policy. `extraSockets` are this host's Docker/containerd socket
 * paths when they are not the defaults (a private engine), so 5.32 finds
 * mounts of THE socket this engine serves.
 */
export function cisPolicy(extraSockets: readonly string[] = []): Policy {
  const extra = extraSockets.filter((p) => !DEFAULT_SOCKETS.includes(p));
  const rules: AuditRule[] = [
    { id: '4.1', check: { type: 'root-user' } },
    { id: '5.2', check: { type: 'seccomp-apparmor', seccomp: false, apparmor: true, selinux: false } },
    { id: '5.3', check: { type: 'seccomp-apparmor', seccomp: false, apparmor: false, selinux: true } },
    { id: '5.4', check: { type: 'capabilities', allowed: [...DOCKER_DEFAULT_CAPABILITIES] } },
    { id: '5.5', check: { type: 'privileged' } },
    { id: '5.6', check: { type: 'sensitive-mounts', removePaths: SOCKET_PATHS } },
    { id: '5.10', check: { type: 'host-namespaces', namespaces: ['network'] } },
    { id: '5.11', check: { type: 'resource-limits', requireMemory: true, requireCpu: false, requirePids: false } },
    { id: '5.12', check: { type: 'resource-limits', requireMemory: false, requireCpu: true, requirePids: false } },
    { id: '5.13', check: { type: 'read-only-rootfs' } },
    { id: '5.16', check: { type: 'host-namespaces', namespaces: ['pid'] } },
    { id: '5.17', check: { type: 'host-namespaces', namespaces: ['ipc'] } },
    { id: '5.18', check: { type: 'devices' } },
    { id: '5.21', check: { type: 'host-namespaces', namespaces: ['uts'] } },
    { id: '5.22', check: { type: 'seccomp-apparmor', seccomp: true, apparmor: false, selinux: false } },
    { id: '5.26', check: { type: 'no-new-privileges' } },
    { id: '5.29', check: { type: 'resource-limits', requireMemory: false, requireCpu: false, requirePids: true } },
    { id: '5.30', check: { type: 'default-bridge' } },
    { id: '5.31', check: { type: 'host-namespaces', namespaces: ['userns'] } },
    { id: '5.32', check: { type: 'docker-socket' } },
  ];
  if (extra.length > 0) rules.push({ id: '5.32.host', check: { type: 'docker-socket', socketPaths: [...new Set(extra)] } });
  return buildAuditPolicy('bulkhead-cis-1.6.0', rules);
}
