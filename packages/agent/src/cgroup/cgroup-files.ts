// Owns reading and parsing the cgroup interface files, v1 and v2: the small
// pseudo-files the kernel regenerates on every read (cpu.stat,
// memory.current, cpuacct.usage, pids.max …).
//
// The files sampled every few seconds are kept open and re-read with a
// SYNCHRONOUS pread: the kernel answers from memory in about a microsecond
// (measured: ~1 µs of CPU per readSync against 11-15 µs per async read, whose
// thread-pool round trip costs far more than the read itself), and a batch of
// 32 containers blocks the event loop well under a millisecond. Opening, and
// the rare one-off reads, stay async: open, ONE read into a buffer, close —
// fs.readFile would also fstat and read again to see EOF, for files whose
// st_size is 0 anyway.
import { close, closeSync, open, openSync, read, readSync } from 'node:fs';

/** Opens a file read-only (callback API: no FileHandle objects to collect). */
export function openFile(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** Closes, ignoring errors (the cgroup may be gone). */
export function closeFile(fd: number): void {
  close(fd, () => undefined);
}

/**
 * Reads a pseudo-file through an fd kept open, from offset 0: the kernel
 * regenerates cgroup files on every read at offset 0, so one pread is a
 * fresh value — about a tenth of the CPU of open + read + close. Synchronous
 * (see the top of this file); throws what read(2) fails with.
 */
export function preadFileSync(fd: number, size = 64): string {
  let buf = Buffer.allocUnsafe(size);
  let n = readSync(fd, buf, 0, buf.length, 0);
  if (n < buf.length) return buf.toString('latin1', 0, n);
  // Larger than guessed (a big memory.stat): keep reading, growing the buffer.
  const chunks: Buffer[] = [buf];
  let pos = n;
  for (;;) {
    buf = Buffer.allocUnsafe(buf.length * 4);
    n = readSync(fd, buf, 0, buf.length, pos);
    chunks.push(buf.subarray(0, n));
    pos += n;
    if (n < buf.length) return Buffer.concat(chunks).toString('latin1');
  }
}

// Parsing in place: the per-sample files are read into one scratch buffer and their
// numbers parsed from the bytes, so a reading makes no Buffer and no string (it runs for
// every container every few seconds; allocation is what keeps an idle agent's heap from
// shrinking, BENCHMARKS.md agent-idle). Synchronous use only: the buffer is shared.
// Anything but plain digits falls back to the string parsers above, so the value is
// always what parseCounter / statValue would give.
const SCRATCH = Buffer.allocUnsafeSlow(8192);

/** Reads a file through an open fd into SCRATCH; -1 when it did not fit (read it as a string then). */
function preadScratch(fd: number): number {
  const n = readSync(fd, SCRATCH, 0, SCRATCH.length, 0);
  return n < SCRATCH.length ? n : -1;
}

const isSpace = (b: number): boolean => b === 32 || b === 10 || b === 9 || b === 13;

/**
 * SCRATCH[from, to) as a whole number when it is optional whitespace, digits, optional
 * whitespace, and no larger than 2^53 (where digit arithmetic and Number() agree); else undefined.
 */
function digitsAt(from: number, to: number): number | undefined {
  let i = from;
  while (i < to && isSpace(SCRATCH[i]!)) i++;
  const first = i;
  let v = 0;
  for (; i < to; i++) {
    const d = SCRATCH[i]! - 48;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
    if (v > Number.MAX_SAFE_INTEGER) return undefined;
  }
  if (i === first) return undefined;
  while (i < to && isSpace(SCRATCH[i]!)) i++;
  return i === to ? v : undefined;
}

/** parseCounter of a file read through an open fd (pread at 0), without a string in the common case. */
export function preadCounterSync(fd: number): number {
  const n = preadScratch(fd);
  if (n < 0) return parseCounter(preadFileSync(fd, SCRATCH.length * 2));
  return digitsAt(0, n) ?? parseCounter(SCRATCH.toString('latin1', 0, n));
}

/** statValue of a file read through an open fd (pread at 0), without a string in the common case. `key` is ASCII. */
export function preadStatSync(fd: number, key: string): number | undefined {
  const n = preadScratch(fd);
  if (n < 0) return statValue(preadFileSync(fd, SCRATCH.length * 2), key);
  // The first line starting with "<key> ", as statValue finds it.
  const k = key.length;
  for (let line = 0; line < n;) {
    let match = line + k < n && SCRATCH[line + k] === 32;
    for (let j = 0; match && j < k; j++) if (SCRATCH[line + j] !== key.charCodeAt(j)) match = false;
    let end = SCRATCH.indexOf(10, line);
    if (end < 0 || end > n) end = n;
    if (match) return digitsAt(line + k + 1, end) ?? statValue(SCRATCH.toString('latin1', 0, n), key);
    line = end + 1;
  }
  return undefined;
}

/** A small pseudo-file read whole, synchronously: open, pread(s), close (limits, every 30 s). */
export function readSmallFileSync(path: string, size = 4096): string {
  const fd = openSync(path, 'r');
  try {
    return preadFileSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

/** Reads a small pseudo-file completely (grows the buffer for the rare large memory.stat). */
export function readSmallFile(path: string, size = 4096): Promise<string> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (err, fd) => {
      if (err) {
        reject(err);
        return;
      }
      const chunks: Buffer[] = [];
      const step = (buf: Buffer, pos: number): void => {
        read(fd, buf, 0, buf.length, pos, (err2, n) => {
          if (err2) {
            close(fd, () => undefined);
            reject(err2);
            return;
          }
          chunks.push(buf.subarray(0, n));
          if (n === buf.length) {
            step(Buffer.allocUnsafe(buf.length * 2), pos + n);
            return;
          }
          close(fd, () => undefined);
          resolve(chunks.length === 1 ? chunks[0]!.toString('latin1') : Buffer.concat(chunks).toString('latin1'));
        });
      };
      step(Buffer.allocUnsafe(size), 0);
    });
  });
}

/**
 * Values at or above this are "no limit": v1 writes PAGE_COUNTER_MAX pages
 * (9223372036854771712 on 4 KiB pages) for an unlimited memory cgroup.
 */
const UNLIMITED_BYTES = 2 ** 60;

/** An integer file: "12345\n" → 12345; "max" / "-1" / huge → 0 (= unlimited, as Docker reports it). */
export function parseLimit(text: string): number {
  const t = text.trim();
  if (t === 'max' || t === '' || t.startsWith('-')) return 0;
  const n = Number(t);
  return Number.isFinite(n) && n < UNLIMITED_BYTES ? n : 0;
}

/** An integer counter file ("12345\n" → 12345); NaN-safe (→ 0). */
export function parseCounter(text: string): number {
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : 0;
}

/** "key value" lines (cpu.stat, memory.stat, pids.events) → the value of `key`, or undefined. */
export function statValue(text: string, key: string): number | undefined {
  // Keys are at line starts; search instead of splitting every line (memory.stat has ~40).
  let i = text.startsWith(`${key} `) ? 0 : text.indexOf(`\n${key} `);
  if (i < 0) return undefined;
  if (i > 0) i += 1;
  const start = i + key.length + 1;
  const end = text.indexOf('\n', start);
  const n = Number(text.slice(start, end < 0 ? undefined : end));
  return Number.isFinite(n) ? n : undefined;
}

/** v2 cpu.max: "max 100000" → 0 (unlimited); "20000 100000" → 0.2 CPUs. */
export function parseCpuMax(text: string): number {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return 0;
  const q = Number(quota);
  const p = Number(period ?? '100000');
  return q > 0 && p > 0 ? q / p : 0;
}

/** v1 cpu.cfs_quota_us / cpu.cfs_period_us → CPUs (quota -1 → 0 = unlimited). */
export function parseCfsQuota(quotaText: string, periodText: string): number {
  const q = Number(quotaText.trim());
  const p = Number(periodText.trim());
  return q > 0 && p > 0 ? q / p : 0;
}

/**
 * /proc/<pid>/cgroup → controller → path. v1 lines "4:memory:/docker/<id>"
 * (comma-joined controllers split out); the v2 line "0::/system.slice/…" is
 * stored under "" .
 */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const ctrls = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (ctrls === '') out.set('', path);
    else for (const c of ctrls.split(',')) out.set(c, path);
  }
  return out;
}

/** Block-IO of a cgroup, summed over its devices (cumulative). */
export interface BlkioUsage {
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
}

/**
 * v2 io.stat: one line per device, "8:0 rbytes=1 wbytes=2 rios=3 wios=4
 * dbytes=0 dios=0" → the sums. (Stacked devices — dm on top of a disk — are
 * each listed, as docker stats sums them too.)
 */
export function parseIoStat(text: string): BlkioUsage {
  const out: BlkioUsage = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
  for (const line of text.split('\n')) {
    for (const kv of line.split(' ')) {
      const eq = kv.indexOf('=');
      if (eq < 0) continue;
      const n = Number(kv.slice(eq + 1));
      if (!Number.isFinite(n)) continue;
      switch (kv.slice(0, eq)) {
        case 'rbytes': out.readBytes += n; break;
        case 'wbytes': out.writeBytes += n; break;
        case 'rios': out.readOps += n; break;
        case 'wios': out.writeOps += n; break;
      }
    }
  }
  return out;
}

/**
 * v1 blkio.*io_service_bytes* / *io_serviced*: "8:0 Read 4096" lines per
 * device and operation (Read, Write, Sync, Async, Discard, Total) and a last
 * "Total N" line → the Read and Write lines summed over devices, and how many
 * device lines there were (0: the file is empty for this cgroup).
 */
export function parseBlkioRw(text: string): { read: number; write: number; lines: number } {
  const out = { read: 0, write: 0, lines: 0 };
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3) continue;
    out.lines++;
    const n = Number(f[2]);
    if (!Number.isFinite(n)) continue;
    if (f[1] === 'Read') out.read += n;
    else if (f[1] === 'Write') out.write += n;
  }
  return out;
}
