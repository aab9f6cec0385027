// CIS Docker Benchmark 1.6.0, section 1: host configuration (ids and
// descriptions as docker-bench-security 1.6.0 prints them).
//
// Differences from docker-bench, on purpose:
// - auditd rules are read from the host's files (/etc/audit/audit.rules and
//   rules.d/*.rules) rather than `auditctl -l`, and matched by path token,
//   including recursive directory watches (docker-bench's grep matched
//   substrings: a rule for /usr/bin/docker "covered" /usr/bin/dockerd).
// - binaries are looked up where the distribution installs them (Debian:
//   /usr/sbin/dockerd, /usr/sbin/runc), and the running dockerd's own
//   executable is used for 1.1.3, instead of assuming /usr/bin.
import { access, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { findBinary, findUnitFile, isAudited, listDetails } from './check-helpers';
import type { CisCheck, CisContext, CisOutcome } from './cis-types';

const AUDIT_IMPACT =
  'Audit can generate large log files. So you need to make sure that they are rotated and archived periodically. Create a separate partition for audit logs to avoid filling up other critical partitions.';

function auditRemedy(path: string): string {
  return `Install auditd. Add -w ${path} -k docker to the /etc/audit/rules.d/audit.rules file. Then restart the audit daemon using command service auditd restart.`;
}

/** Audited → PASS, not audited → WARN; when the file is absent and `mustExist` is set → INFO "File not found". */
async function auditOutcome(ctx: CisContext, path: string | undefined, notFound: string | undefined): Promise<CisOutcome> {
  if (path === undefined) return { result: 'INFO', details: notFound ?? 'File not found' };
  if (notFound !== undefined) {
    try {
      await access(join(ctx.hostRoot, path));
    } catch {
      return { result: 'INFO', details: notFound };
    }
  }
  return (await isAudited(ctx, path)) ? { result: 'PASS', details: `Audited: ${path}` } : { result: 'WARN', details: `No audit rule for ${path}` };
}

function fileAudit(id: string, desc: string, path: string, kind: 'File' | 'Directory'): CisCheck {
  return {
    id, desc, scored: true, remediation: auditRemedy(path), impact: AUDIT_IMPACT,
    run: (ctx) => auditOutcome(ctx, path, `${kind} not found`),
  };
}

function unitAudit(id: string, desc: string, unit: string): CisCheck {
  return {
    id, desc, scored: true, remediation: auditRemedy(`<path of ${unit}>`), impact: AUDIT_IMPACT,
    run: async (ctx) => auditOutcome(ctx, await findUnitFile(ctx.hostRoot, unit), 'File not found'),
  };
}

function binaryAudit(id: string, desc: string, name: string): CisCheck {
  return {
    id, desc, scored: true, remediation: auditRemedy(`/usr/bin/${name}`), impact: AUDIT_IMPACT,
    run: async (ctx) => auditOutcome(ctx, await findBinary(ctx.hostRoot, name), 'File not found'),
  };
}

export interface MountEntry {
  /** "major:minor" of the filesystem. */
  device: string;
  /** Path inside the filesystem that is mounted ("/" for a whole filesystem; a bind mount shows its source dir). */
  root: string;
  mountPoint: string;
}

/** Entries of a mountinfo file (octal escapes decoded), in mount order. */
export function parseMountinfo(text: string): MountEntry[] {
  const unesc = (v: string): string => v.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    out.push({ device: f[2]!, root: unesc(f[3]!), mountPoint: unesc(f[4]!) });
  }
  return out;
}

/** The mount that holds `path`: the last-mounted entry whose mount point is the longest prefix. */
function mountOf(entries: readonly MountEntry[], path: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const e of entries) {
    const mp = e.mountPoint;
    const covers = mp === '/' || path === mp || path.startsWith(`${mp}/`);
    if (covers && (!best || mp.length >= best.mountPoint.length)) best = e;
  }
  return best;
}

/**
 * True when `path` is its own filesystem: a mount point whose device differs
 * from its parent's. A bind mount of a directory onto itself (dockerd does
 * that to its data root) is a mount point but NOT a separate partition —
 * `mountpoint -q`, which docker-bench uses, says yes to it.
 */
export function isSeparatePartition(entries: readonly MountEntry[], path: string): boolean {
  const own = mountOf(entries, path);
  if (!own || own.mountPoint !== path || path === '/') return false;
  const parentPath = path.replace(/\/[^/]+$/, '') || '/';
  const parent = mountOf(entries.filter((e) => e !== own && e.mountPoint !== path), parentPath);
  return parent === undefined || parent.device !== own.device;
}

/** The dockerd executable (host path): the running process's, else the usual places. */
async function dockerdBinary(ctx: CisContext): Promise<string | undefined> {
  if (ctx.daemon.pid !== undefined) {
    try {
      const exe = await readlink(join(ctx.procRoot, String(ctx.daemon.pid), 'exe'));
      if (exe.startsWith('/')) return exe.replace(/ \(deleted\)$/, '');
    } catch {
      // not permitted or gone: fall back to the usual paths
    }
  }
  return findBinary(ctx.hostRoot, 'dockerd');
}

/** Docker's version as [major, minor] (20.10.24+dfsg1 → [20, 10]). */
export function versionParts(v: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export const SECTION_1: { id: string; desc: string; checks: CisCheck[] } = {
  id: '1',
  desc: 'Host Configuration',
  checks: [
    {
      id: '1.1.1',
      desc: 'Ensure a separate partition for containers has been created (Automated)',
      scored: true,
      remediation: 'For new installations, you should create a separate partition for the /var/lib/docker mount point. For systems that have already been installed, you should use the Logical Volume Manager (LVM) within Linux to create a new partition.',
      impact: 'None.',
      async run(ctx) {
        let root = ctx.info.DockerRootDir || '/var/lib/docker';
        // With userns-remap the root dir is <root>/<uid>.<gid>; the partition is its parent.
        if ((ctx.info.SecurityOptions ?? []).some((o) => o.includes('name=userns'))) root = root.replace(/\/[^/]+$/, '') || '/';
        const text = await readFile(join(ctx.procRoot, '1', 'mountinfo'), 'utf8').catch(() => readFile(join(ctx.procRoot, 'self', 'mountinfo'), 'utf8').catch(() => ''));
        if (text === '') return { result: 'INFO', details: `Cannot read mountinfo; check that ${root} is its own partition` };
        return isSeparatePartition(parseMountinfo(text), root) ? { result: 'PASS', details: `${root} is a separate partition` } : { result: 'WARN', details: `${root} is not a separate partition` };
      },
    },
    {
      id: '1.1.2',
      desc: 'Ensure only trusted users are allowed to control Docker daemon (Automated)',
      scored: true,
      remediation: 'You should remove any untrusted users from the docker group using command sudo gpasswd -d <your-user> docker or add trusted users to the docker group using command sudo usermod -aG docker <your-user>. You should not create a mapping of sensitive directories from the host to container volumes.',
      impact: 'Only trust user are allow to build and execute containers as normal user.',
      run(ctx) {
        const users = ctx.accounts.membersOf('docker');
        if (ctx.trustedUsers === undefined) return users.length === 0 ? { result: 'INFO', details: 'No users in the docker group' } : { result: 'INFO', details: listDetails('doubtfulusers', users), items: users };
        const doubtful = users.filter((u) => !ctx.trustedUsers!.includes(u));
        return doubtful.length === 0 ? { result: 'PASS' } : { result: 'WARN', details: listDetails('doubtfulusers', doubtful), items: doubtful };
      },
    },
    {
      id: '1.1.3',
      desc: 'Ensure auditing is configured for the Docker daemon (Automated)',
      scored: true,
      remediation: auditRemedy('/usr/bin/dockerd'),
      impact: AUDIT_IMPACT,
      run: async (ctx) => auditOutcome(ctx, (await dockerdBinary(ctx)) ?? '/usr/bin/dockerd', undefined),
    },
    {
      id: '1.1.4',
      desc: 'Ensure auditing is configured for Docker files and directories -/run/containerd (Automated)',
      scored: true,
      remediation: 'Install auditd. Add -a exit,always -F path=/run/containerd -F perm=war -k docker to the /etc/audit/rules.d/audit.rules file. Then restart the audit daemon using command service auditd restart.',
      impact: AUDIT_IMPACT,
      run: (ctx) => auditOutcome(ctx, '/run/containerd', undefined),
    },
    fileAudit('1.1.5', 'Ensure auditing is configured for Docker files and directories - /var/lib/docker (Automated)', '/var/lib/docker', 'Directory'),
    fileAudit('1.1.6', 'Ensure auditing is configured for Docker files and directories - /etc/docker (Automated)', '/etc/docker', 'Directory'),
    unitAudit('1.1.7', 'Ensure auditing is configured for Docker files and directories - docker.service (Automated)', 'docker.service'),
    {
      id: '1.1.8',
      desc: 'Ensure auditing is configured for Docker files and directories - containerd.sock (Automated)',
      scored: true,
      remediation: auditRemedy('/run/containerd/containerd.sock'),
      impact: AUDIT_IMPACT,
      run: (ctx) => auditOutcome(ctx, ctx.containerdSocketPath, 'File not found'),
    },
    unitAudit('1.1.9', 'Ensure auditing is configured for Docker files and directories - docker.socket (Automated)', 'docker.socket'),
    fileAudit('1.1.10', 'Ensure auditing is configured for Docker files and directories - /etc/default/docker (Automated)', '/etc/default/docker', 'File'),
    {
      id: '1.1.11',
      desc: 'Ensure auditing is configured for Dockerfiles and directories - /etc/docker/daemon.json (Automated)',
      scored: true,
      remediation: auditRemedy('/etc/docker/daemon.json'),
      impact: AUDIT_IMPACT,
      // The daemon.json dockerd really reads (--config-file), not only the default path.
      run: (ctx) => auditOutcome(ctx, ctx.daemon.daemonJsonPath, 'File not found'),
    },
    fileAudit('1.1.12', '1.1.12 Ensure auditing is configured for Dockerfiles and directories - /etc/containerd/config.toml (Automated)', '/etc/containerd/config.toml', 'File'),
    fileAudit('1.1.13', 'Ensure auditing is configured for Docker files and directories - /etc/sysconfig/docker (Automated)', '/etc/sysconfig/docker', 'File'),
    binaryAudit('1.1.14', 'Ensure auditing is configured for Docker files and directories - /usr/bin/containerd (Automated)', 'containerd'),
    binaryAudit('1.1.15', 'Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim (Automated)', 'containerd-shim'),
    binaryAudit('1.1.16', 'Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim-runc-v1 (Automated)', 'containerd-shim-runc-v1'),
    binaryAudit('1.1.17', 'Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim-runc-v2 (Automated)', 'containerd-shim-runc-v2'),
    binaryAudit('1.1.18', 'Ensure auditing is configured for Docker files and directories - /usr/bin/runc (Automated)', 'runc'),
    {
      id: '1.2.1',
      desc: 'Ensure the container host has been Hardened (Manual)',
      scored: false,
      remediation: 'You may consider various Security Benchmarks for your container host.',
      impact: 'None.',
      run: () => ({ result: 'NOTE' }),
    },
    {
      id: '1.2.2',
      desc: 'Ensure that the version of Docker is up to date (Manual)',
      scored: false,
      remediation: 'You should monitor versions of Docker releases and make sure your software is updated as required.',
      impact: 'You should perform a risk assessment regarding Docker version updates and review how they may impact your operations.',
      run(ctx) {
        const v = ctx.serverVersion;
        const parts = versionParts(v);
        // docker-bench's rule: a version whose YY.MM is not older than a month ago is current.
        const ref = new Date(ctx.now.getTime() - 30 * 86_400_000);
        const cur: [number, number] = [ref.getUTCFullYear() % 100, ref.getUTCMonth() + 1];
        if (parts && (parts[0] > cur[0] || (parts[0] === cur[0] && parts[1] >= cur[1]))) return { result: 'PASS', details: `Using ${v}` };
        return { result: 'INFO', details: `Using ${v || 'an unknown version'}, verify is it up to date as deemed necessary` };
      },
    },
  ],
};
