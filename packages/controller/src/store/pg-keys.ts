// PostgreSQL: a table's rows for a list of (agent, id) keys, the keys passed as two arrays
// (unnest) and joined on the table's primary key. PostgreSQL planned the portable form, an OR
// of one branch per agent (a page of 100 agents: a BitmapOr of 100 index scans), in ~6 ms of
// its CPU at 200,000 containers; the join plans in ~0.1 ms at any length, and an array is one
// parameter, so no statement-parameter limit applies. Used for a container page's rows and
// their latest usage.
import { sql } from 'kysely';
import type { Db } from './schema';

export async function pgRowsByKeys<Row>(
  db: Db,
  table: 'containers' | 'container_usage',
  idColumn: 'id' | 'container_id',
  keys: ReadonlyArray<{ agentId: string; id: string }>,
): Promise<Row[]> {
  const t = sql.table(table);
  return (
    await sql<Row>`select ${sql.ref(table)}.* from unnest(${keys.map((k) => k.agentId)}::text[], ${keys.map((k) => k.id)}::text[]) as k(agent_id, id) join ${t} on ${sql.ref(`${table}.agent_id`)} = ${sql.ref('k.agent_id')} and ${sql.ref(`${table}.${idColumn}`)} = ${sql.ref('k.id')}`.execute(db)
  ).rows;
}
