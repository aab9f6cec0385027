// Owns the lockdown fixes the agent may apply by itself. Every fix is OFF by
// default and switched on one by one; each returns a record of exactly what
// it changed (before/after owner and mode), which the agent reports and the
// controller keeps as the audit trail.
//
// Fixes only ever TIGHTEN: the mode fix clears the bits beyond 0660 (a 0600
// socket stays 0600), and nothing is touched unless the path is a socket.
// dockerd and systemd recreate sockets at restart, so the record's
// `persist` hint says how to make the change permanent.
import { chmod, chown, lstat, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_DOCKER_SOCKET_PATH } from './daemon-config';
import { formatMode } from './file-mode';
import { readHostAccounts } from './groups';
import { DEFAULT_CONTAINERD_SOCKET_PATH, LOCKDOWN_FIX_NAMES, type LockdownFixName } from './lockdown-options';

export type { LockdownFixName } from './lockdown-options';

export { LOCKDOWN_FIX_NAMES };

export interface LockdownFixOptions {
  /** Which fixes to run; every one is off unless set to true here. */
  fixes: Partial<Record<LockdownFixName, boolean>>;
  /** Where the host's filesystem is visible. Default "/". */
  hostRoot?: string | undefined;
  /** Default /var/run/docker.sock. */
  dockerSocketPath?: string | undefined;
  /** Default /run/containerd/containerd.sock. */
  containerdSocketPath?: string | undefined;
  /** Group the Docker socket should belong to. Default "docker" (dockerd's --group). */
  dockerGroup?: string | undefined;
  /** Report what would change without changing it. Default false. */
  dryRun?: boolean | undefined;
  /** Clock for the records. Default Date.now. */
  now?: (() => number) | undefined;
}

export interface FileOwnership {
  uid: number;
  gid: number;
  /** "0660". */
  mode: string;
  owner: string;
  group: string;
}

export interface FixRecord {
  fix: LockdownFixName;
  /** The socket path as configured (host path). */
  path: string;
  /** ISO time the fix ran. */
  at: string;
  /** True when something was (or, in a dry run, would be) changed. */
  changed: boolean;
  dryRun: boolean;
  before?: FileOwnership;
  after?: FileOwnership;
  /** One line: what changed, or why nothing did. */
  message: string;
  /** Set when the fix could not run (path missing, not a socket, no such group, EPERM …). */
  error?: string;
  /** How to make the change survive a restart of dockerd/containerd. */
  persist: string;
}

const PERSIST = {
  docker: 'docker.socket unit: SocketUser=root, SocketGroup=docker, SocketMode=0660 (or dockerd --group docker); dockerd recreates the socket at start',
  containerd: 'containerd config.toml: [grpc] uid = 0, gid = 0; containerd recreates the socket at start',
} as const;

/** Runs the enabled fixes, ownership before mode, and returns one record per enabled fix. */
export async function applyLockdownFixes(o: LockdownFixOptions): Promise<FixRecord[]> {
  const hostRoot = o.hostRoot ?? '/';
  const now = o.now ?? Date.now;
  const dryRun = o.dryRun === true;
  const dockerPath = o.dockerSocketPath ?? DEFAULT_DOCKER_SOCKET_PATH;
  const ctdPath = o.containerdSocketPath ?? DEFAULT_CONTAINERD_SOCKET_PATH;
  const accounts = await readHostAccounts(hostRoot);
  const dockerGroupName = o.dockerGroup ?? 'docker';
  const out: FixRecord[] = [];
  for (const fix of LOCKDOWN_FIX_NAMES) {
    if (o.fixes[fix] !== true) continue;
    const isDocker = fix.startsWith('docker');
    const path = isDocker ? dockerPath : ctdPath;
    const persist = isDocker ? PERSIST.docker : PERSIST.containerd;
    const base = { fix, path, at: new Date(now()).toISOString(), dryRun, persist };
    const target = await socketTarget(hostRoot, path);
    if ('error' in target) {
      out.push({ ...base, changed: false, message: `${fix}: nothing done: ${target.error}`, error: target.error });
      continue;
    }
    const describe = (uid: number, gid: number, mode: number): FileOwnership => ({
      uid, gid, mode: formatMode(mode), owner: accounts.userName(uid), group: accounts.groupName(gid),
    });
    const before = describe(target.uid, target.gid, target.mode);
    let want: { uid: number; gid: number; mode: number };
    if (fix.endsWith('Ownership')) {
      let gid = 0;
      if (isDocker) {
        const g = accounts.groupByName(dockerGroupName);
        if (!g) {
          const error = `group "${dockerGroupName}" does not exist in ${join(hostRoot, 'etc/group')}`;
          out.push({ ...base, changed: false, before, message: `${fix}: nothing done: ${error}`, error });
          continue;
        }
        gid = g.gid;
      }
      want = { uid: 0, gid, mode: target.mode };
    } else {
      want = { uid: target.uid, gid: target.gid, mode: target.mode & 0o660 };
    }
    const after = describe(want.uid, want.gid, want.mode);
    const changed = want.uid !== target.uid || want.gid !== target.gid || want.mode !== target.mode;
    if (!changed) {
      out.push({ ...base, changed: false, before, after, message: `${fix}: ${path} already ${before.owner}:${before.group} ${before.mode}` });
      continue;
    }
    const what = fix.endsWith('Ownership')
      ? `chown ${before.owner}:${before.group} → ${after.owner}:${after.group}`
      : `chmod ${before.mode} → ${after.mode}`;
    if (dryRun) {
      out.push({ ...base, changed: true, before, after, message: `${fix}: would ${what} on ${path}` });
      continue;
    }
    try {
      if (fix.endsWith('Ownership')) await chown(target.real, want.uid, want.gid);
      else await chmod(target.real, want.mode);
      out.push({ ...base, changed: true, before, after, message: `${fix}: ${what} on ${path}${target.real !== join(hostRoot, path) ? ` (${target.real})` : ''}` });
    } catch (e) {
      const error = (e as Error).message;
      out.push({ ...base, changed: false, before, message: `${fix}: failed: ${error}`, error });
    }
  }
  return out;
}

/** The socket a host path names (symlinks resolved), or why it cannot be fixed. */
async function socketTarget(hostRoot: string, path: string): Promise<{ real: string; uid: number; gid: number; mode: number } | { error: string }> {
  let real: string;
  try {
    real = await realpath(join(hostRoot, path));
  } catch {
    return { error: `${path} does not exist` };
  }
  const s = await lstat(real);
  if (!s.isSocket()) return { error: `${path} is not a socket; refusing to change it` };
  return { real, uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
}
