// Owns the SQL of live container usage (tables container_usage and container_usage_history,
// migrations 0005_usage, 0012_usage_resources and 0022_usage_history), portable across SQLite
// and PostgreSQL like KyselyStore: integer-ms times, ON CONFLICT … DO UPDATE for the latest
// reading, and for the history ring an upsert whose DO UPDATE appends in SQL (no read first).
import { PostgresAdapter, sql, type Selectable } from 'kysely';
import type { ContainerUsageTable, Db } from './schema';
import { pgRowsByKeys } from './pg-keys';
import { usageKey, type ApplyUsageOptions, type ContainerUsageRecord, type UsageStore } from './usage-store';
import { decodePoints, encodePoint, USAGE_HISTORY_DEFAULT_INTERVAL_MS, USAGE_HISTORY_POINTS, USAGE_POINT_CHARS, type UsageHistoryPoint } from './usage-history';

/** Rows per statement: 27 parameters each (5 400 a statement) stays far below SQLite's (32 766) and pg's (65 535) limits. */
const BATCH = 200;

export class KyselyUsageStore implements UsageStore {
  private readonly postgres: boolean;

  constructor(private readonly db: Db) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async applyUsage(agentId: string, rows: readonly ContainerUsageRecord[], gone: readonly string[], opts: ApplyUsageOptions = {}): Promise<void> {
    if (rows.length === 0 && gone.length === 0) return;
    const step = opts.historyIntervalMs ?? USAGE_HISTORY_DEFAULT_INTERVAL_MS;
    // One row per container: a report never names a container twice, but a malformed one must not fail the upsert.
    const latest = new Map<string, ContainerUsageRecord>();
    for (const r of rows) latest.set(r.containerId, r);
    const list = [...latest.values()];
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < gone.length; i += BATCH) {
        await trx.deleteFrom('container_usage').where('agent_id', '=', agentId).where('container_id', 'in', gone.slice(i, i + BATCH)).execute();
        await trx.deleteFrom('container_usage_history').where('agent_id', '=', agentId).where('container_id', 'in', gone.slice(i, i + BATCH)).execute();
      }
      for (let i = 0; i < list.length; i += BATCH) {
        await trx
          .insertInto('container_usage')
          .values(list.slice(i, i + BATCH).map((r) => ({
            agent_id: agentId,
            container_id: r.containerId,
            taken_at: r.takenAt.getTime(),
            received_at: r.receivedAt.getTime(),
            cpu_percent: r.cpuPercent,
            cpu_percent_of_quota: r.cpuPercentOfQuota,
            cpu_limit_cores: r.cpuLimitCores,
            memory_bytes: r.memoryBytes,
            memory_limit_bytes: r.memoryLimitBytes,
            pids: r.pids,
            pids_limit: r.pidsLimit,
            writable_bytes: r.writableBytes ?? null,
            log_bytes: r.logBytes ?? null,
            blkio_read_bytes: r.blkioReadBytes ?? null,
            blkio_write_bytes: r.blkioWriteBytes ?? null,
            blkio_read_ops: r.blkioReadOps ?? null,
            blkio_write_ops: r.blkioWriteOps ?? null,
            net_rx_bytes: r.netRxBytes ?? null,
            net_tx_bytes: r.netTxBytes ?? null,
            net_rx_packets: r.netRxPackets ?? null,
            net_tx_packets: r.netTxPackets ?? null,
            net_rx_dropped: r.netRxDropped ?? null,
            net_tx_dropped: r.netTxDropped ?? null,
            net_rx_bytes_per_sec: r.netRxBytesPerSec ?? null,
            net_tx_bytes_per_sec: r.netTxBytesPerSec ?? null,
            tcp_connections: r.tcpConnections ?? null,
            sockets: r.sockets ?? null,
          })))
          .onConflict((oc) =>
            oc.columns(['agent_id', 'container_id']).doUpdateSet((eb) => ({
              taken_at: eb.ref('excluded.taken_at'),
              received_at: eb.ref('excluded.received_at'),
              cpu_percent: eb.ref('excluded.cpu_percent'),
              cpu_percent_of_quota: eb.ref('excluded.cpu_percent_of_quota'),
              cpu_limit_cores: eb.ref('excluded.cpu_limit_cores'),
              memory_bytes: eb.ref('excluded.memory_bytes'),
              memory_limit_bytes: eb.ref('excluded.memory_limit_bytes'),
              pids: eb.ref('excluded.pids'),
              pids_limit: eb.ref('excluded.pids_limit'),
              writable_bytes: eb.ref('excluded.writable_bytes'),
              log_bytes: eb.ref('excluded.log_bytes'),
              blkio_read_bytes: eb.ref('excluded.blkio_read_bytes'),
              blkio_write_bytes: eb.ref('excluded.blkio_write_bytes'),
              blkio_read_ops: eb.ref('excluded.blkio_read_ops'),
              blkio_write_ops: eb.ref('excluded.blkio_write_ops'),
              net_rx_bytes: eb.ref('excluded.net_rx_bytes'),
              net_tx_bytes: eb.ref('excluded.net_tx_bytes'),
              net_rx_packets: eb.ref('excluded.net_rx_packets'),
              net_tx_packets: eb.ref('excluded.net_tx_packets'),
              net_rx_dropped: eb.ref('excluded.net_rx_dropped'),
              net_tx_dropped: eb.ref('excluded.net_tx_dropped'),
              net_rx_bytes_per_sec: eb.ref('excluded.net_rx_bytes_per_sec'),
              net_tx_bytes_per_sec: eb.ref('excluded.net_tx_bytes_per_sec'),
              tcp_connections: eb.ref('excluded.tcp_connections'),
              sockets: eb.ref('excluded.sockets'),
            })),
          )
          .execute();
        await appendHistory(trx, agentId, list.slice(i, i + BATCH), step);
      }
    });
  }

  async clearUsage(agentId: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('container_usage').where('agent_id', '=', agentId).execute();
      await trx
        .deleteFrom('container_usage_history')
        .where('agent_id', '=', agentId)
        .where((eb) =>
          eb.not(
            eb.exists(
              eb
                .selectFrom('containers')
                .select(sql<number>`1`.as('one'))
                .whereRef('containers.agent_id', '=', 'container_usage_history.agent_id')
                .whereRef('containers.id', '=', 'container_usage_history.container_id')
                .where('containers.removed', '=', 0)
                .where('containers.state', '=', 'running'),
            ),
          ),
        )
        .execute();
    });
  }

  async forgetAgent(agentId: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('container_usage').where('agent_id', '=', agentId).execute();
      await trx.deleteFrom('container_usage_history').where('agent_id', '=', agentId).execute();
    });
  }

  async getUsageHistory(agentId: string, containerId: string): Promise<UsageHistoryPoint[]> {
    const row = await this.db
      .selectFrom('container_usage_history')
      .select('points')
      .where('agent_id', '=', agentId)
      .where('container_id', '=', containerId)
      .executeTakeFirst();
    return row ? decodePoints(row.points) : [];
  }

  async getUsage(keys: ReadonlyArray<{ agentId: string; containerId: string }>): Promise<Map<string, ContainerUsageRecord>> {
    const out = new Map<string, ContainerUsageRecord>();
    const byAgent = new Map<string, string[]>();
    for (const k of keys) {
      const ids = byAgent.get(k.agentId);
      if (ids) ids.push(k.containerId);
      else byAgent.set(k.agentId, [k.containerId]);
    }
    // One statement for a whole page (a round trip per agent cost a PostgreSQL page ~30 of them).
    if (this.postgres && keys.length > 0) {
      // As a container page's rows are read (the OR of one branch per agent took PostgreSQL ~3 ms to plan for 100 agents).
      const rows = await pgRowsByKeys<Selectable<ContainerUsageTable>>(this.db, 'container_usage', 'container_id', keys.map((k) => ({ agentId: k.agentId, id: k.containerId })));
      for (const r of rows) out.set(usageKey(r.agent_id, r.container_id), toUsage(r));
      return out;
    }
    const groups = [...byAgent];
    for (let i = 0; i < groups.length; ) {
      const chunk: Array<[string, string[]]> = [];
      for (let n = 0; i < groups.length && n < BATCH; i++) {
        chunk.push(groups[i]!);
        n += groups[i]![1].length;
      }
      const rows = await this.db
        .selectFrom('container_usage')
        .selectAll()
        .where((eb) => eb.or(chunk.map(([agentId, ids]) => eb.and([eb('agent_id', '=', agentId), eb('container_id', 'in', ids)]))))
        .execute();
      for (const r of rows) out.set(usageKey(r.agent_id, r.container_id), toUsage(r));
    }
    return out;
  }
}

/**
 * Appends one point per container whose newest point lies in an earlier interval (integer
 * division of epoch ms by the interval, the same on both databases), dropping the oldest when
 * the ring is full. A reading in the same interval leaves the row untouched (the DO UPDATE's
 * WHERE is false: no row write). A clock that went back by more than the ring's span restarts
 * the interval count rather than stalling the history until it catches up.
 */
async function appendHistory(trx: Db, agentId: string, rows: readonly ContainerUsageRecord[], step: number): Promise<void> {
  if (rows.length === 0) return;
  const full = sql.lit(USAGE_HISTORY_POINTS * USAGE_POINT_CHARS);
  const afterOldest = sql.lit(USAGE_POINT_CHARS + 1);
  const interval = sql.lit(Math.round(step));
  const span = sql.lit(Math.round(step) * USAGE_HISTORY_POINTS);
  await trx
    .insertInto('container_usage_history')
    .values(rows.map((r) => ({ agent_id: agentId, container_id: r.containerId, last_at: r.takenAt.getTime(), points: encodePoint(r) })))
    .onConflict((oc) =>
      oc
        .columns(['agent_id', 'container_id'])
        .doUpdateSet({
          points: sql<string>`case when length(container_usage_history.points) >= ${full}
            then substr(container_usage_history.points, ${afterOldest}) || excluded.points
            else container_usage_history.points || excluded.points end`,
          last_at: sql<number>`excluded.last_at`,
        })
        .where(sql<boolean>`excluded.last_at / ${interval} > container_usage_history.last_at / ${interval}
          or excluded.last_at < container_usage_history.last_at - ${span}`),
    )
    .execute();
}

/** PostgreSQL returns bigint as a string, SQLite as a number. */
function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : num(v);
}

function toUsage(r: Selectable<ContainerUsageTable>): ContainerUsageRecord {
  return {
    agentId: r.agent_id,
    containerId: r.container_id,
    takenAt: new Date(num(r.taken_at)),
    receivedAt: new Date(num(r.received_at)),
    cpuPercent: num(r.cpu_percent),
    cpuPercentOfQuota: r.cpu_percent_of_quota === null ? null : num(r.cpu_percent_of_quota),
    cpuLimitCores: num(r.cpu_limit_cores),
    memoryBytes: num(r.memory_bytes),
    memoryLimitBytes: num(r.memory_limit_bytes),
    pids: num(r.pids),
    pidsLimit: num(r.pids_limit),
    writableBytes: numOrNull(r.writable_bytes),
    logBytes: numOrNull(r.log_bytes),
    blkioReadBytes: numOrNull(r.blkio_read_bytes),
    blkioWriteBytes: numOrNull(r.blkio_write_bytes),
    blkioReadOps: numOrNull(r.blkio_read_ops),
    blkioWriteOps: numOrNull(r.blkio_write_ops),
    netRxBytes: numOrNull(r.net_rx_bytes),
    netTxBytes: numOrNull(r.net_tx_bytes),
    netRxPackets: numOrNull(r.net_rx_packets),
    netTxPackets: numOrNull(r.net_tx_packets),
    netRxDropped: numOrNull(r.net_rx_dropped),
    netTxDropped: numOrNull(r.net_tx_dropped),
    netRxBytesPerSec: numOrNull(r.net_rx_bytes_per_sec),
    netTxBytesPerSec: numOrNull(r.net_tx_bytes_per_sec),
    tcpConnections: numOrNull(r.tcp_connections),
    sockets: numOrNull(r.sockets),
  };
}
