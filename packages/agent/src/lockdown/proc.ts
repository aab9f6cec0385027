// Owns what the lockdown audit reads from /proc: which process is the dockerd
// behind a given socket, its command line, and which TCP sockets it listens
// on. Everything is async and takes the proc root as a parameter, so a test
// hands in a fixture tree and an agent in a container passes the host's /proc.
//
// Why /proc and not `ss`/`netstat`: no child processes in a daemon, no
// dependency on procps/iproute2 being installed, and the same code reads a
// fixture tree in tests.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** A listening TCP socket from /proc/<pid>/net/tcp{,6}. */
export interface TcpListener {
  /** Printable address: "0.0.0.0", "127.0.0.1", "::", "::1", "2001:db8::1". */
  address: string;
  port: number;
  family: 4 | 6;
  /** The socket inode (matches `socket:[inode]` links under /proc/<pid>/fd). */
  inode: number;
}

/** /proc/<pid>/cmdline split on NULs; [] when unreadable (the process is gone or hidden). */
export async function readCmdline(procRoot: string, pid: number): Promise<string[]> {
  try {
    const raw = await readFile(join(procRoot, String(pid), 'cmdline'), 'utf8');
    return raw.split('\0').filter((s, i, a) => !(s === '' && i === a.length - 1));
  } catch {
    return [];
  }
}

/** Numeric pids under procRoot whose `comm` equals `name`. */
export async function pidsByName(procRoot: string, name: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await readdir(procRoot);
  } catch {
    return [];
  }
  const pids = entries.filter((e) => /^\d+$/.test(e)).map(Number);
  const out: number[] = [];
  // comm is 15 bytes at most; "dockerd" fits. Reads run in parallel batches
  // so a host with thousands of processes is scanned quickly without
  // opening thousands of files at once.
  for (let i = 0; i < pids.length; i += 64) {
    const batch = pids.slice(i, i + 64);
    const comms = await Promise.all(batch.map((p) => readFile(join(procRoot, String(p), 'comm'), 'utf8').catch(() => '')));
    comms.forEach((c, j) => {
      if (c.trim() === name) out.push(batch[j]!);
    });
  }
  return out.sort((a, b) => a - b);
}

/** Inodes of the sockets a process holds open (from the `socket:[N]` links in /proc/<pid>/fd). */
export async function socketInodes(procRoot: string, pid: number): Promise<Set<number>> {
  const dir = join(procRoot, String(pid), 'fd');
  const out = new Set<number>();
  let fds: string[];
  try {
    fds = await readdir(dir);
  } catch {
    return out;
  }
  const links = await Promise.all(fds.map((fd) => readlink(join(dir, fd)).catch(() => '')));
  for (const l of links) {
    const m = /^socket:\[(\d+)\]$/.exec(l);
    if (m) out.add(Number(m[1]));
  }
  return out;
}

/**
 * Listening sockets from the text of /proc/net/tcp or tcp6. Columns:
 * `sl local_address rem_address st ... uid timeout inode`; st 0A = LISTEN.
 * Addresses are hex in host byte order per 32-bit word (little-endian here).
 */
export function parseProcNetTcp(text: string, family: 4 | 6): TcpListener[] {
  const out: TcpListener[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    if (f[3] !== '0A') continue;
    const [hexAddr, hexPort] = f[1]!.split(':');
    if (hexAddr === undefined || hexPort === undefined) continue;
    const address = family === 4 ? hexToIpv4(hexAddr) : hexToIpv6(hexAddr);
    if (address === undefined) continue;
    out.push({ address, port: parseInt(hexPort, 16), family, inode: Number(f[9]) });
  }
  return out;
}

function hexToIpv4(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return undefined;
  // One little-endian 32-bit word.
  const b = [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return b.join('.');
}

function hexToIpv6(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return undefined;
  const bytes: number[] = [];
  // Four little-endian 32-bit words.
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (const i of [6, 4, 2, 0]) bytes.push(parseInt(word.slice(i, i + 2), 16));
  }
  // IPv4-mapped (::ffff:a.b.c.d) reads better as the IPv4 address.
  if (bytes.slice(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes.slice(12).join('.')}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return compressIpv6(groups);
}

/** RFC 5952 text form: the longest run (≥ 2) of zero groups becomes "::". */
function compressIpv6(groups: string[]): string {
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Every listening TCP socket in the network namespace of `pid` (its own view of net/tcp{,6}). */
export async function listeningTcp(procRoot: string, pid: number | 'self' | undefined): Promise<TcpListener[]> {
  const base = pid === undefined ? join(procRoot, 'net') : join(procRoot, String(pid), 'net');
  const [v4, v6] = await Promise.all([
    readFile(join(base, 'tcp'), 'utf8').catch(() => ''),
    readFile(join(base, 'tcp6'), 'utf8').catch(() => ''),
  ]);
  return [...parseProcNetTcp(v4, 4), ...parseProcNetTcp(v6, 6)];
}

/** The TCP sockets `pid` itself listens on: net/tcp{,6} entries whose inode is one of its fds. */
export async function tcpListenersOf(procRoot: string, pid: number): Promise<TcpListener[]> {
  const [all, inodes] = await Promise.all([listeningTcp(procRoot, pid), socketInodes(procRoot, pid)]);
  return all.filter((l) => inodes.has(l.inode));
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback(address: string): boolean {
  const a = address.replace(/^::ffff:/, '');
  return a.startsWith('127.') || a === '::1' || a === 'localhost';
}

/**
 * Unix socket inodes bound to `path` (from /proc/net/unix, whose last column
 * is the bound path). A listening socket and its accepted connections all
 * show the path; any of their inodes identifies the owning process.
 */
export async function unixSocketInodes(procRoot: string, path: string): Promise<Set<number>> {
  const out = new Set<number>();
  let text: string;
  try {
    text = await readFile(join(procRoot, 'net', 'unix'), 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path
    if (f.length >= 8 && samePath(f.slice(7).join(' '), path)) out.add(Number(f[6]));
  }
  return out;
}

/** Same socket path, with /var/run and /run folded (systemd binds /run/docker.sock; clients say /var/run). */
function samePath(a: string, b: string): boolean {
  const fold = (p: string): string => (p.startsWith('/var/run/') ? p.slice(4) : p);
  return fold(a) === fold(b);
}
