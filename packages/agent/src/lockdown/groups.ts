// Owns reading /etc/group and /etc/passwd under a host root: who is in the
// docker group (explicit members and users whose primary group it is), and
// uid/gid ↔ name for messages. Plain file parsing, no NSS: an agent in a
// container sees the host's files, not the host's NSS modules (LDAP/SSSD
// members are therefore not seen; the finding says so).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

export function parseGroupFile(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 3 || !/^\d+$/.test(f[2]!)) continue;
    out.push({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean) });
  }
  return out;
}

export function parsePasswdFile(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    out.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) });
  }
  return out;
}

export interface HostAccounts {
  groups: GroupEntry[];
  users: PasswdEntry[];
  groupByName(name: string): GroupEntry | undefined;
  groupName(gid: number): string;
  userName(uid: number): string;
  /** Explicit members plus users whose primary group it is, sorted, without duplicates. */
  membersOf(groupName: string): string[];
}

export async function readHostAccounts(hostRoot: string): Promise<HostAccounts> {
  const [g, p] = await Promise.all([
    readFile(join(hostRoot, 'etc/group'), 'utf8').catch(() => ''),
    readFile(join(hostRoot, 'etc/passwd'), 'utf8').catch(() => ''),
  ]);
  const groups = parseGroupFile(g);
  const users = parsePasswdFile(p);
  return {
    groups,
    users,
    groupByName: (n) => groups.find((x) => x.name === n),
    groupName: (gid) => groups.find((x) => x.gid === gid)?.name ?? String(gid),
    userName: (uid) => users.find((x) => x.uid === uid)?.name ?? String(uid),
    membersOf(name) {
      const grp = groups.find((x) => x.name === name);
      if (!grp) return [];
      const primary = users.filter((u) => u.gid === grp.gid).map((u) => u.name);
      return [...new Set([...grp.members, ...primary])].sort();
    },
  };
}
