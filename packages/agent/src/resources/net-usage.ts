// Owns reading one container's network usage from the host's /proc, without
// entering its namespace: /proc/<pid>/net/* of the container's init process
// shows the network namespace that process is in (the kernel resolves the
// files against the task's netns), so no setns, no nsenter, no exec.
//
//   /proc/<pid>/net/dev                 cumulative rx/tx bytes, packets, drops per interface
//   /proc/<pid>/net/sockstat{,6}        sockets in use per protocol (default `sockets: 'sockstat'`)
//   /proc/<pid>/net/{tcp,tcp6,udp,udp6} one line per socket (`sockets: 'scan'`)
//
// Two ways to count sockets, because of what the kernel does to answer:
// /proc/<pid>/net/tcp walks the host's WHOLE established-connection hash
// table (262,144 buckets here; shared by every namespace unless net.ipv4.tcp_child_ehash_entries
// was set before the container started) and filters by namespace: measured
// here at ~4 ms of kernel CPU per file for a namespace with NO socket at all
// (tcp + tcp6 ≈ 8 ms per container per sample: 200 containers every 5 s
// would be a third of a core). sockstat is a few per-namespace counters, O(1):
//   'sockstat' (default): tcpConnections = TCP + TCP6 "inuse" — every TCP
//       socket that holds a port, i.e. every state but TIME_WAIT and CLOSE,
//       LISTEN INCLUDED (a container's listeners are a handful; the
//       per-state split is only in the socket files); sockets = TCP inuse +
//       tw + TCP6 inuse + UDP + UDP6 inuse.
//   'scan': the exact definition (LISTEN excluded too) from the socket
//       files, scanned as below. Cheap on hosts that give each namespace its
//       own small hash (tcp_child_ehash_entries), costly elsewhere.
//
// Loopback is COUNTED in the totals. Inside a container's own namespace, `lo`
// carries only that container's traffic (nobody else is in the namespace,
// except containers joined with --network container:<it>, which then report the
// same figures), and it is where a container with --network none — or one
// talking to itself — spends its network: excluding it would make a loopback
// flood invisible. The loopback share is reported separately
// (loopbackRxBytes/loopbackTxBytes) for a consumer that wants external traffic
// only. Every byte over lo is counted twice: once sent, once received.
//
// Pid reuse: the first read under a container id records the pid's start time
// (/proc/<pid>/stat field 22, read after the namespace files); a later read
// with another start time for that pid is another process (the container's
// init died and the pid was handed out again): null until the target's pid
// changes or forget(id), never another process's namespace charged.
//
// net/dev and sockstat are read up to maxDevFileBytes (64 KiB ≈ 500
// interfaces, ~2 ms to parse): a namespace with 100,000 interfaces is not read
// whole (6.8 MB, ~600 ms of parsing); the result then says devTruncated.
//
// --network host: the container is in the host's namespace, whose counters
// and sockets belong to the whole host; charging them to one container would
// be wrong, so read() answers null. Detected by comparing the namespace inode
// of /proc/<pid>/ns/net with the host's (/proc/1/ns/net, or the agent's own
// /proc/self/ns/net where pid 1 is unreadable, as in a sandbox).
//
// 'scan' cost on our side: the socket files are generated on every read, ~150
// bytes per socket (2,000 connections ≈ 300 KB). They are read with async fs
// into a reused 64 KiB buffer and scanned in place — one memchr per line plus a
// two-byte hex read at a fixed column — never split into strings or arrays.
// Each file is read at most maxSocketFileBytes (default 8 MiB ≈ 55,000 IPv4
// sockets); beyond that the counts are lower bounds and `socketsTruncated` is
// set. Hand-written on purpose: the npm /proc parsers read synchronously and
// build one object per socket, which is what this must not do at 20,000
// sockets. (netlink sock_diag walks the same hash table, and needs native code.)
import { close, open, read, stat } from 'node:fs';
import { join } from 'node:path';
import type { NetUsage, NetUsageSource, ResourceTarget } from './types';

export interface NetUsageReaderOptions {
  /** The host's /proc. Default "/proc". */
  procRoot?: string | undefined;
  /** How sockets are counted (see the top of this file). Default 'sockstat'. */
  sockets?: 'sockstat' | 'scan' | undefined;
  /** 'scan': at most this many bytes read from each socket file per read. Default 8 MiB. */
  maxSocketFileBytes?: number | undefined;
  /**
   * At most this many bytes of net/dev (and of sockstat) are read and parsed per read.
   * Default 64 KiB ≈ 500 interfaces; beyond it the totals cover the interfaces read and
   * `devTruncated` is set. Parsing costs ~2 ms of event loop per 64 KiB.
   */
  maxDevFileBytes?: number | undefined;
}

/** Per-namespace socket counters of /proc/net/sockstat + sockstat6. */
export interface SockstatCounts {
  tcpInuse: number;
  tcpTimeWait: number;
  udpInuse: number;
}

/**
 * /proc/net/sockstat and sockstat6 text → the per-namespace counters. Lines
 * "TCP: inuse 41 orphan 0 tw 3 alloc 48 mem 165", "UDP: inuse 2 mem 0",
 * "TCP6: inuse 1", "UDP6: inuse 0" (orphan/alloc/mem are host-wide: unused).
 */
export function parseSockstat(text: string): SockstatCounts {
  const out: SockstatCounts = { tcpInuse: 0, tcpTimeWait: 0, udpInuse: 0 };
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const proto = line.slice(0, colon);
    const f = line.slice(colon + 1).trim().split(/\s+/);
    const val = (key: string): number => {
      const i = f.indexOf(key);
      const n = i >= 0 ? Number(f[i + 1]) : 0;
      return Number.isFinite(n) ? n : 0;
    };
    if (proto === 'TCP' || proto === 'TCP6') {
      out.tcpInuse += val('inuse');
      out.tcpTimeWait += val('tw');
    } else if (proto === 'UDP' || proto === 'UDP6') out.udpInuse += val('inuse');
  }
  return out;
}

/** Counters of /proc/<pid>/net/dev, summed. */
export interface NetDevTotals {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxDropped: number;
  txDropped: number;
  loopbackRxBytes: number;
  loopbackTxBytes: number;
}

/** What one socket file says. */
export interface SocketCounts {
  /** Lines (sockets) in the file, header excluded. */
  sockets: number;
  /** Sockets in a state that is a connection (every state but LISTEN, TIME_WAIT, CLOSE). */
  connections: number;
  /** Stopped at the byte cap: the counts are lower bounds. */
  truncated: boolean;
}

const CHUNK = 64 * 1024;
/**
 * The first buffer for net/dev, sockstat(6) and stat: a few hundred bytes each for a
 * container's usual interfaces (readSmall grows it for more). Not the 64 KiB CHUNK: the
 * sampler reads a batch of containers at once, and hundreds of 64 KiB buffers per tick
 * were ~23 MB of malloc at its peak that glibc's main arena kept resident afterwards.
 */
const SMALL = 4096;
/** Small buffers kept for reuse: one per container of a sampler batch (its concurrency, 32). */
const SMALL_KEEP = 32;
const NL = 0x0a;
const COLON = 0x3a;
const SPACE = 0x20;

/** TCP states (include/net/tcp_states.h) that are not a connection. */
const TCP_LISTEN = 0x0a;
const TCP_TIME_WAIT = 0x06;
const TCP_CLOSE = 0x07;

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * /proc/net/dev text → totals over every interface, loopback included (see
 * the top of this file). Lines: "  eth0: rxBytes rxPackets errs drop fifo
 * frame compressed multicast txBytes txPackets errs drop …".
 */
export function parseNetDev(text: string): NetDevTotals {
  const t: NetDevTotals = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxDropped: 0, txDropped: 0, loopbackRxBytes: 0, loopbackTxBytes: 0 };
  // A handful of lines (one per interface): plain string handling is fine here.
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.includes('|')) continue; // the two header lines
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (f.length < 12 || f.some((n) => !Number.isFinite(n))) continue;
    t.rxBytes += f[0]!;
    t.rxPackets += f[1]!;
    t.rxDropped += f[3]!;
    t.txBytes += f[8]!;
    t.txPackets += f[9]!;
    t.txDropped += f[11]!;
    if (line.slice(0, colon).trim() === 'lo') {
      t.loopbackRxBytes += f[0]!;
      t.loopbackTxBytes += f[8]!;
    }
  }
  return t;
}

/**
 * Incremental scanner of a /proc/net/{tcp,tcp6,udp,udp6} stream: feed it
 * buffers, it counts lines and (for TCP) connection states, carrying a line
 * split across two reads. The state is the 4th whitespace-separated field
 * ("sl local remote st …"); it sits at a fixed distance from the first colon
 * (30 bytes for IPv4, 78 for IPv6, by the kernel's format strings), which is
 * checked on each line and found by a field scan when it does not fit.
 */
export class SocketLineCounter {
  sockets = 0;
  connections = 0;
  private header = true;
  /** Offset of the state field from the colon after "sl", learnt on the first line. */
  private stateOffset = -1;

  constructor(private readonly tcp: boolean) {}

  /**
   * Consumes the complete lines of buf[0, end); returns where the incomplete
   * tail starts (== end when buf ended on a newline).
   */
  feed(buf: Buffer, end: number): number {
    let pos = 0;
    while (pos < end) {
      const nl = buf.indexOf(NL, pos);
      if (nl < 0 || nl >= end) return pos;
      if (this.header) this.header = false;
      else {
        this.sockets++;
        if (this.tcp) {
          const st = this.state(buf, pos, nl);
          if (st >= 0 && st !== TCP_LISTEN && st !== TCP_TIME_WAIT && st !== TCP_CLOSE) this.connections++;
        }
      }
      pos = nl + 1;
    }
    return pos;
  }

  /** The state of the line buf[start, nl), or -1 when unreadable. */
  private state(buf: Buffer, start: number, nl: number): number {
    let colon = start;
    while (colon < nl && buf[colon] !== COLON) colon++;
    const off = this.stateOffset;
    if (off > 0) {
      const p = colon + off;
      if (p + 2 < nl && buf[p - 1] === SPACE && buf[p + 2] === SPACE) return readHex2(buf, p);
    }
    // Field scan: skip the local and the remote address after "sl:".
    let p = colon + 1;
    for (let field = 0; field < 2; field++) {
      while (p < nl && buf[p] === SPACE) p++;
      while (p < nl && buf[p] !== SPACE) p++;
    }
    while (p < nl && buf[p] === SPACE) p++;
    if (p + 2 > nl) return -1;
    this.stateOffset = p - colon;
    return readHex2(buf, p);
  }
}

function readHex2(buf: Buffer, p: number): number {
  const hi = hex(buf[p]!);
  const lo = hex(buf[p + 1]!);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/** Counts a socket file's text (tests, and callers that have it in memory). */
export function countSocketLines(text: string | Buffer, tcp: boolean): SocketCounts {
  const buf = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const c = new SocketLineCounter(tcp);
  const rest = c.feed(buf, buf.length);
  if (rest < buf.length) c.feed(Buffer.concat([buf.subarray(rest), Buffer.from('\n')]), buf.length - rest + 1);
  return { sockets: c.sockets, connections: c.connections, truncated: false };
}

function netDevUsage(d: NetDevTotals): Omit<NetUsage, 'tcpConnections' | 'sockets'> {
  return {
    rxBytes: d.rxBytes, txBytes: d.txBytes, rxPackets: d.rxPackets, txPackets: d.txPackets, rxDropped: d.rxDropped, txDropped: d.txDropped,
    loopbackRxBytes: d.loopbackRxBytes, loopbackTxBytes: d.loopbackTxBytes,
  };
}

function openP(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

function readP(fd: number, buf: Buffer, offset: number, length: number): Promise<number> {
  // position null: sequential read(2), which is what seq_file files want (a pread
  // at an offset other than where the last read stopped makes the kernel re-walk).
  return new Promise((resolve, reject) => read(fd, buf, offset, length, null, (err, n) => (err ? reject(err) : resolve(n))));
}

function statIno(path: string): Promise<number> {
  return new Promise((resolve, reject) => stat(path, (err, s) => (err ? reject(err) : resolve(s.ino))));
}

/** The process (or its namespace files) is gone, or was never there. */
function isGone(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ENOENT' || code === 'ESRCH' || code === 'EINVAL';
}

/**
 * The start time of /proc/<pid>/stat (field 22, clock ticks since boot): with the pid, it
 * names one process for good (a reused pid has a later start time). Fields are counted
 * from the last ')' — the command name before it may hold spaces and parentheses.
 */
export function parseStartTime(statText: string): string | null {
  const close = statText.lastIndexOf(')');
  if (close < 0) return null;
  // After ") ": field 3 (state) is the first; starttime is field 22.
  const f = statText.slice(close + 2).split(' ', 20);
  const v = f[19];
  return v !== undefined && /^\d+$/.test(v) ? v : null;
}

export class ProcNetUsageReader implements NetUsageSource {
  private readonly free: Buffer[] = [];
  private readonly smallFree: Buffer[] = [];
  /**
   * Per container id: the process first read under it (pid + start time). A later read
   * whose pid shows another start time is a reused pid — another process, perhaps in
   * another namespace — and is answered null (stale) until the target's pid changes
   * (the container restarted) or forget(id).
   */
  private readonly identity = new Map<string, { pid: number; startTime: string; stale: boolean }>();

  private constructor(
    private readonly procRoot: string,
    /** Namespace inodes of the host (pid 1's) and of the agent itself. */
    readonly hostNetns: ReadonlySet<number>,
    private readonly maxBytes: number,
    readonly mode: 'sockstat' | 'scan',
    private readonly maxDevBytes: number,
  ) {}

  /** Resolves the host's network namespace once (it never changes). */
  static async create(o: NetUsageReaderOptions = {}): Promise<ProcNetUsageReader> {
    const procRoot = o.procRoot ?? '/proc';
    const host = new Set<number>();
    for (const who of ['1', 'self']) {
      try {
        host.add(await statIno(join(procRoot, who, 'ns/net')));
      } catch {
        // pid 1's namespace links are unreadable without ptrace rights over it (a sandbox); self is enough then
      }
    }
    if (host.size === 0) throw new Error(`cannot read the host's network namespace under ${procRoot} (is it a /proc?)`);
    const mode = o.sockets ?? 'sockstat';
    if (mode !== 'sockstat' && mode !== 'scan') throw new Error(`sockets: expected 'sockstat' or 'scan', got ${JSON.stringify(mode)}`);
    const maxDev = o.maxDevFileBytes ?? CHUNK;
    if (!(Number.isInteger(maxDev) && maxDev >= 4096)) throw new Error(`maxDevFileBytes: expected an integer ≥ 4096, got ${String(o.maxDevFileBytes)}`);
    return new ProcNetUsageReader(procRoot, host, Math.max(CHUNK, o.maxSocketFileBytes ?? 8 * 1024 * 1024), mode, maxDev);
  }

  /**
   * null: not running (pid 0), gone, in the host's network namespace (--network host), or
   * the pid no longer the process first read under this container id (reused pid).
   */
  async read(target: ResourceTarget): Promise<NetUsage | null> {
    if (!(target.pid > 0)) return null;
    const dir = join(this.procRoot, String(target.pid));
    let known = this.identity.get(target.id);
    if (known && known.pid !== target.pid) known = undefined;
    if (known?.stale) return null;
    try {
      const usage = await this.readNs(dir);
      // The start time is read AFTER the files: if the pid was reused before they were
      // read, the newcomer is already there and shows its own start time.
      const start = parseStartTime((await this.readSmall(join(dir, 'stat'))).text);
      if (start === null) return null;
      if (!known) {
        this.identity.set(target.id, { pid: target.pid, startTime: start, stale: false });
      } else if (known.startTime !== start) {
        known.stale = true;
        return null;
      }
      return usage;
    } catch (e) {
      if (isGone(e)) return null;
      throw e;
    }
  }

  private async readNs(dir: string): Promise<NetUsage | null> {
    {
      if (this.hostNetns.has(await statIno(join(dir, 'ns/net')))) return null;
      if (this.mode === 'sockstat') {
        // One file after the other: a container holds one buffer at a time (the sampler already
        // reads a batch of containers at once, more than the file system's thread pool serves).
        const devText = await this.readSmall(join(dir, 'net/dev'));
        const v4 = await this.readSmall(join(dir, 'net/sockstat'));
        const v6 = await this.readSmall(join(dir, 'net/sockstat6')).catch((e: unknown) => {
          if ((e as { code?: string }).code === 'ENOENT') return { text: '', truncated: false }; // a kernel without IPv6
          throw e;
        });
        const c = parseSockstat(`${v4.text}\n${v6.text}`);
        const usage: NetUsage = { ...netDevUsage(parseNetDev(devText.text)), tcpConnections: c.tcpInuse, sockets: c.tcpInuse + c.tcpTimeWait + c.udpInuse };
        if (devText.truncated) usage.devTruncated = true;
        if (v4.truncated || v6.truncated) usage.socketsTruncated = true;
        return usage;
      }
      // One file after the other, as above: one 64 KiB scan buffer per container at a time.
      const dev = await this.readSmall(join(dir, 'net/dev'));
      const tcp = await this.count(join(dir, 'net/tcp'), true);
      const tcp6 = await this.count(join(dir, 'net/tcp6'), true);
      const udp = await this.count(join(dir, 'net/udp'), false);
      const udp6 = await this.count(join(dir, 'net/udp6'), false);
      const usage: NetUsage = {
        ...netDevUsage(parseNetDev(dev.text)),
        tcpConnections: tcp.connections + tcp6.connections,
        sockets: tcp.sockets + tcp6.sockets + udp.sockets + udp6.sockets,
      };
      if (tcp.truncated || tcp6.truncated || udp.truncated || udp6.truncated) usage.socketsTruncated = true;
      if (dev.truncated) usage.devTruncated = true;
      return usage;
    }
  }

  /** Drops the process identity kept for a container (see `identity`). */
  forget(id: string): void {
    this.identity.delete(id);
  }

  /**
   * net/dev, sockstat: usually one read. A /proc seq_file read returns the
   * records that fit in the kernel's page-sized buffer, so a read that stops
   * for that reason returns more than PAGE_SIZE minus one record (> 2 KiB for
   * these short lines); a short read below that is the end, and saves the
   * second read that would return 0.
   */
  private async readSmall(path: string): Promise<{ text: string; truncated: boolean }> {
    const fd = await openP(path);
    const pooled = this.smallFree.pop() ?? Buffer.allocUnsafeSlow(SMALL);
    // At most maxDevBytes (+1 to tell "exactly full" from "more"): a namespace with
    // 100,000 interfaces is not read (6.8 MB) nor parsed (~600 ms) whole.
    let buf = pooled;
    try {
      let n = 0;
      let truncated = false;
      for (;;) {
        if (n > this.maxDevBytes) {
          truncated = true;
          break;
        }
        if (n === buf.length) {
          // Hundreds of interfaces: grow up to the cap (rare; the bigger buffer is not pooled).
          const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, this.maxDevBytes + 1));
          buf.copy(bigger, 0, 0, n);
          buf = bigger;
        }
        const want = buf.length - n;
        const got = await readP(fd, buf, n, want);
        n += got;
        if (got === 0 || (got < want && got < 2048)) break;
      }
      if (truncated) {
        // Keep whole lines only: a line cut in the middle would add a wrong number.
        const nl = buf.lastIndexOf(NL, this.maxDevBytes - 1);
        n = nl < 0 ? 0 : nl + 1;
      }
      return { text: buf.toString('latin1', 0, n), truncated };
    } finally {
      if (this.smallFree.length < SMALL_KEEP) this.smallFree.push(pooled);
      close(fd, () => undefined);
    }
  }

  /** Streams a socket file through a SocketLineCounter. A missing file (no IPv6 in the kernel) counts 0. */
  private async count(path: string, tcp: boolean): Promise<SocketCounts> {
    let fd: number;
    try {
      fd = await openP(path);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT' && !path.endsWith('/tcp')) return { sockets: 0, connections: 0, truncated: false };
      throw e;
    }
    const buf = this.take();
    const c = new SocketLineCounter(tcp);
    let total = 0;
    let carry = 0;
    let truncated = false;
    try {
      for (;;) {
        if (total >= this.maxBytes) {
          truncated = true;
          break;
        }
        const n = await readP(fd, buf, carry, buf.length - carry);
        if (n === 0) break;
        total += n;
        const end = carry + n;
        const rest = c.feed(buf, end);
        carry = end - rest;
        // Lines are ~150-180 bytes: an incomplete tail always fits back at the start.
        if (carry > 0) buf.copy(buf, 0, rest, end);
      }
    } finally {
      this.give(buf);
      close(fd, () => undefined);
    }
    return { sockets: c.sockets, connections: c.connections, truncated };
  }

  private take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(CHUNK);
  }

  private give(buf: Buffer): void {
    if (this.free.length < 8) this.free.push(buf);
  }
}
