// Owns the shape of a container's recent usage history (table container_usage_history,
// migration 0022_usage_history): a bounded ring of downsampled readings, at most one per
// interval (default one a minute, 60 kept: the last hour), stored as one text value per
// container and appended to by the database itself in the statement that stores the usage
// report (kysely-usage-store.ts), so a report costs no extra round trip and no read, and the
// history is the same on every controller replica.
//
// Hand-written encoding, on purpose: each point is a fixed-width record (a uint32 time in
// seconds and ten float32 figures, 45 bytes, base64 without padding = 60 ASCII characters), so
// SQL can append a point and drop the oldest with `||` and `substr` alone, portably on SQLite
// and PostgreSQL (SQLite's `||` is a text operator, so a BLOB would not concatenate safely).
// float32 keeps ~7 significant digits: plenty for a chart; the latest reading (container_usage)
// keeps the exact figures.
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import type { ContainerUsageRecord } from './usage-store';

/** Points kept per container. */
export const USAGE_HISTORY_POINTS = 60;
/** Default spacing of points: one a minute, so 60 points = the last hour. */
export const USAGE_HISTORY_DEFAULT_INTERVAL_MS = 60_000;
/** Characters of one encoded point (45 bytes as base64). */
export const USAGE_POINT_CHARS = 60;
const POINT_BYTES = 45;

/** The figures a point keeps, in record order; null = not measured (NaN on disk). */
export const USAGE_HISTORY_FIELDS = [
  'cpuPercent',
  'memoryBytes',
  'pids',
  'writableBytes',
  'logBytes',
  'blkioReadBytes',
  'blkioWriteBytes',
  'netRxBytesPerSec',
  'netTxBytesPerSec',
  'tcpConnections',
] as const;
export type UsageHistoryField = (typeof USAGE_HISTORY_FIELDS)[number];

export type UsageHistoryPoint = { at: Date } & Record<UsageHistoryField, number | null>;

/** `--usage-history-interval`: a duration of at least 1 s (tests) and at most 1 h. */
export function parseHistoryInterval(v: string | number | undefined): number {
  const ms = v === undefined ? USAGE_HISTORY_DEFAULT_INTERVAL_MS : parseDuration(v, 'usage-history-interval');
  if (!(ms >= 1000 && ms <= 3_600_000) || ms % 1000 !== 0) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `usage-history-interval must be whole seconds between 1s and 1h (got ${String(v)})`);
  }
  return ms;
}

/** One reading as an encoded point (time to the second). */
export function encodePoint(r: ContainerUsageRecord): string {
  const buf = Buffer.alloc(POINT_BYTES);
  buf.writeUInt32LE(Math.max(0, Math.min(0xffffffff, Math.floor(r.takenAt.getTime() / 1000))), 0);
  USAGE_HISTORY_FIELDS.forEach((k, i) => {
    const v = r[k];
    buf.writeFloatLE(v === null || v === undefined || !Number.isFinite(v) ? Number.NaN : v, 4 + i * 4);
  });
  return buf.toString('base64');
}

/** The ring as stored, oldest first; an incomplete trailing record (never written) is ignored. */
export function decodePoints(text: string): UsageHistoryPoint[] {
  const out: UsageHistoryPoint[] = [];
  for (let i = 0; i + USAGE_POINT_CHARS <= text.length; i += USAGE_POINT_CHARS) {
    const buf = Buffer.from(text.slice(i, i + USAGE_POINT_CHARS), 'base64');
    if (buf.length !== POINT_BYTES) continue;
    const p = { at: new Date(buf.readUInt32LE(0) * 1000) } as UsageHistoryPoint;
    USAGE_HISTORY_FIELDS.forEach((k, j) => {
      const v = buf.readFloatLE(4 + j * 4);
      p[k] = Number.isNaN(v) ? null : v;
    });
    out.push(p);
  }
  return out;
}
