// Options of the socket-and-daemon lockdown audit, with their defaults.
import type { ContainerFacts__Output } from '@bulkhead/shared';
import type { InventoryDocker } from '../cis/container-inventory';

export const DEFAULT_CONTAINERD_SOCKET_PATH = '/run/containerd/containerd.sock';

/** The Docker API calls the lockdown audit makes (a Dockerode instance satisfies it). */
export interface LockdownDocker extends InventoryDocker {
  info(): Promise<unknown>;
}

export interface LockdownAuditOptions {
  /** The engine to audit. Needed for `docker info` and, unless `containers` is given, the container list. */
  docker?: LockdownDocker | undefined;
  /**
   * Running containers' facts, e.g. the watcher's inventory; saves listing and
   * inspecting every container again. Default: listed through `docker`.
   */
  containers?: readonly ContainerFacts__Output[] | undefined;
  /** Where the host's filesystem is visible. Default "/" (an agent in a container: "/host"). */
  hostRoot?: string | undefined;
  /** The host's /proc. Default `<hostRoot>/proc`. */
  procRoot?: string | undefined;
  /** The Docker socket (host path). Default /var/run/docker.sock. */
  dockerSocketPath?: string | undefined;
  /** containerd's socket (host path). Default: dockerd's --containerd (or daemon.json containerd), else /run/containerd/containerd.sock. */
  containerdSocketPath?: string | undefined;
  /** daemon.json (host path). Default: dockerd's --config-file, else /etc/docker/daemon.json. */
  daemonJsonPath?: string | undefined;
  /** dockerd's pid when known. Default: found in /proc (the dockerd whose -H, or open fd, is our socket). */
  dockerdPid?: number | undefined;
  /**
   * Users expected in the docker group. When given, anybody else there is a
   * `docker-group.untrusted-members` finding (high); when not, every member
   * is listed in a `docker-group.members` finding (medium).
   */
  trustedUsers?: readonly string[] | undefined;
  /** Evaluation time (exemptions in the evaluator). Default now. */
  now?: Date | undefined;
}

export type LockdownSeverity = 'info' | 'low' | 'medium' | 'high' | 'critical';

/** The switchable fixes (see fixes.ts); a finding names the one that resolves it. */
export type LockdownFixName = 'dockerSocketOwnership' | 'dockerSocketMode' | 'containerdSocketOwnership' | 'containerdSocketMode';

/** Every lockdown fix, in the order they are applied (lockdown/fixes.ts). */
export const LOCKDOWN_FIX_NAMES: readonly LockdownFixName[] = ['dockerSocketOwnership', 'dockerSocketMode', 'containerdSocketOwnership', 'containerdSocketMode'];

export interface LockdownFinding {
  /** Stable id, e.g. "docker-socket.mode", "daemon.tcp-configured", "container.docker-socket". */
  id: string;
  severity: LockdownSeverity;
  /** One line. */
  title: string;
  /** What exactly was found (paths, modes, addresses, sources). */
  detail: string;
  /** How to fix it by hand (and make the fix survive a restart). */
  remediation: string;
  /** True when an agent fix (fixes.ts) resolves it. */
  fixable: boolean;
  /** The fix that resolves it, when fixable. */
  fix?: LockdownFixName;
  /** What it is about: a socket path, a container id, a daemon.json path … */
  subject?: string;
  /** Structured evidence for the controller (modes, uids, addresses, container names). */
  evidence?: Record<string, unknown>;
}

/** Severity order, for sorting and --fail-on style thresholds. */
export const LOCKDOWN_SEVERITY_RANK: Readonly<Record<LockdownSeverity, number>> = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
