// Owns the PostgreSQL connection pool and what is particular to reaching a
// server: checking the URL, bounding connection attempts, surviving dropped
// idle connections, describing the database without its password, and the
// one text difference (PostgreSQL text cannot hold U+0000). Queries are
// KyselyStore's, shared with SQLite.
import {
  CompiledQuery, Kysely, OperationNodeTransformer, PostgresDialect, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs,
  type PrimitiveValueListNode, type QueryResult, type RootOperationNode, type UnknownRow, type ValueNode,
} from 'kysely';
import { Pool } from 'pg';
import { BulkheadError } from '@bulkhead/shared';
import type { Database } from './schema';
import { KyselyStore, helloAgentColumns, toHelloState, type HelloStateRow } from './kysely-store';
import type { AgentHelloResult, AgentHelloWrite } from './store';
import { describePostgresUrl } from './postgres-url';

export { describePostgresUrl };

export interface PostgresStoreOptions {
  /**
   * postgres:// or postgresql:// URL (libpq style), e.g.
   * postgresql://bulkhead@db.example.com/bulkhead?sslmode=verify-full&sslrootcert=/etc/bulkhead/db-ca.crt,
   * or a unix socket: postgresql://bulkhead@/bulkhead?host=/var/run/postgresql.
   * A password may be in the URL, in PGPASSWORD, or in ~/.pgpass.
   */
  connectionString: string;
  /** Pool size. Default 10 (the controller passes --database-pool-size, default 20). */
  maxConnections?: number;
  /**
   * How long a query may wait for a pooled connection, or for opening one, before it
   * fails (pg's connectionTimeoutMillis covers both). Default 10 000 ms (the controller
   * passes --database-pool-wait, default 30 s). The agent link and alerts retry such a
   * failure; they never drop the write.
   */
  connectTimeoutMs?: number;
  /**
   * Told when an idle pooled connection fails (server restart, an
   * administrator's pg_terminate_backend, a network cut). The pool drops that
   * connection and opens a new one on the next query; without a listener pg
   * would throw the error as an unhandled 'error' event and end the process.
   */
  onIdleError?: (err: Error) => void;
}

/**
 * Connections of the pool set aside for the container list's key statements (see
 * KyselyStore.listReads), taken out of maxConnections when it is at least
 * LIST_POOL_MIN_TOTAL; below that there is no separate pool. From 8: the agent link stores at
 * most half of maxConnections' messages at once (docs/cli.md), which leaves at least 2 of the
 * other pool's connections for hellos, leases and alerts, as before.
 */
const LIST_POOL_SIZE = 2;
const LIST_POOL_MIN_TOTAL = 8;

export class PostgresStore extends KyselyStore {
  private constructor(db: Kysely<Database>, readonly description: string, listReads?: Kysely<Database>) {
    super(db, listReads);
  }

  /** Creates the pool lazily (no connection is made until the first query). */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const description = describePostgresUrl(opts.connectionString);
    const max = opts.maxConnections ?? 10;
    if (!Number.isSafeInteger(max) || max < 1) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `postgres maxConnections must be a positive integer, got ${max}`);
    const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    if (!Number.isSafeInteger(connectTimeoutMs) || connectTimeoutMs < 1) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `postgres connectTimeoutMs must be a positive integer, got ${connectTimeoutMs}`);
    }
    const listMax = max >= LIST_POOL_MIN_TOTAL ? LIST_POOL_SIZE : 0;
    const newPool = (size: number): Pool => {
      const pool = new Pool({ connectionString: opts.connectionString, max: size, connectionTimeoutMillis: connectTimeoutMs, keepAlive: true });
      pool.on('error', (err) => opts.onIdleError?.(err));
      // pg-pool listens for errors only on idle connections: one that the server ends while it
      // is checked out (a terminated backend, a restart or failover mid-transaction) would emit
      // 'error' with no listener and end the process. The query in flight fails with that error
      // (and the next query on the dead connection fails too), which is where it is handled:
      // the agent link and the alerts retry it. So this listener only keeps the process alive.
      pool.on('connect', (client) => client.on('error', () => undefined));
      return pool;
    };
    const kysely = (pool: Pool) => new Kysely<Database>({ dialect: new PostgresDialect({ pool }), plugins: [new NulToReplacementCharPlugin()] });
    const db = kysely(newPool(max - listMax));
    let listReads: Kysely<Database> | undefined;
    if (listMax > 0) {
      // The container list's key statements run without parallel workers (why: KyselyStore.listContainers).
      // Set once per connection of this small pool, so a page is one round trip instead of four
      // (BEGIN, SET LOCAL, SELECT, COMMIT); no other statement runs on these connections.
      // pg-pool emits 'connect' before it hands the new client out and a client runs its
      // queries in order, so the SET is always the connection's first statement. A SET, not the
      // startup parameter `options`: connection poolers (PgBouncer) refuse unknown startup
      // parameters by default. Should the SET fail, the list still answers (planned with the
      // server's setting) and the error reaches onIdleError.
      const listPool = newPool(listMax);
      // Without JIT too: a page's statements are short, but one the planner costs above
      // jit_above_cost (a usage sort from 20,000 matches, estimated at 174,000) compiled for
      // 5-10 ms before it ran for ~45 (BENCHMARKS.md, session 14).
      listPool.on('connect', (client) => {
        client.query('set max_parallel_workers_per_gather = 0; set jit = off').catch((err: Error) => opts.onIdleError?.(err));
      });
      listReads = kysely(listPool);
    }
    return new PostgresStore(db, description, listReads);
  }

  /**
   * The hello's read, checks, lease and status in one statement: `cur` reads the agent and
   * locks its row (FOR UPDATE: a revocation or another replica's hello committing meanwhile is
   * waited for and its result read, not an older snapshot); `ok` is that row when the hello may
   * be taken (helloAcceptable in SQL: regexp_replace(lower(…), '^0+(?=.)', '') is
   * canonicalSerial); the data-modifying CTEs take the lease and mark the agent connected
   * only for `ok` (PostgreSQL runs them whether or not the query reads them); the SELECT
   * returns the row as it was, with its policy status. One round trip and one commit instead of
   * four. Written as SQL text, not built with Kysely: the hello is the hottest statement of a
   * failover (hundreds at once on the surviving replica) and building it cost more CPU than
   * sending it (BENCHMARKS.md, failover). Parameters get the NUL rule of every other statement.
   */
  override async acceptAgentHello(h: AgentHelloWrite): Promise<AgentHelloResult> {
    const ms = h.now.getTime();
    const c = helloAgentColumns(h);
    const params = [h.agentId, h.certSerial, h.owner, h.leaseExpiresAt.getTime(), c.agent_version, c.host_json, ms, c.trusted_cas ?? null]
      .map((v) => (typeof v === 'string' ? stripNul(v) : v));
    const r = await this.db.executeQuery<HelloStateRow & { accepted: unknown }>(CompiledQuery.raw(ACCEPT_HELLO_SQL, params));
    const row = r.rows[0];
    if (!row) return { accepted: false };
    return { accepted: Number(row.accepted) === 1, before: toHelloState(row) };
  }

  /** Connects once, so a wrong URL, password or database fails at start-up with a clear message. */
  async checkConnection(): Promise<void> {
    try {
      await this.ping();
    } catch (cause) {
      throw new BulkheadError('BK_ERR_STARTUP_FAILED', `cannot connect to PostgreSQL ${this.description}: ${(cause as Error).message}`, { cause });
    }
  }
}

/**
 * PostgreSQL's text type cannot store U+0000 (SQLite's can), and one NUL in,
 * say, a Docker label value would make a whole container snapshot fail. Every
 * string parameter has NUL replaced with U+FFFD instead, on PostgreSQL only.
 * JSON columns are unaffected (JSON.stringify escapes NUL as \u0000), so the
 * container facts keep the exact value.
 */
class NulToReplacementCharPlugin implements KyselyPlugin {
  private readonly transformer = new NulTransformer();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.transformer.transformNode(args.node, args.queryId);
  }

  transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return Promise.resolve(args.result);
  }
}

class NulTransformer extends OperationNodeTransformer {
  protected override transformValue(node: ValueNode): ValueNode {
    return typeof node.value === 'string' && node.value.includes('\u0000') ? Object.freeze({ ...node, value: stripNul(node.value) }) : node;
  }

  protected override transformPrimitiveValueList(node: PrimitiveValueListNode): PrimitiveValueListNode {
    if (!node.values.some((v) => typeof v === 'string' && v.includes('\u0000'))) return node;
    return Object.freeze({ ...node, values: Object.freeze(node.values.map((v) => (typeof v === 'string' ? stripNul(v) : v))) });
  }
}

/** PostgresStore.acceptAgentHello's statement ($1 agent id, $2 canonical serial, $3 owner, $4 lease expiry, $5 version, $6 host JSON, $7 now, $8 trusted CAs JSON or null). */
const ACCEPT_HELLO_SQL = `with cur as (
  select id, hostname, status, revoked_at, cert_serial, prev_cert_serial, trusted_cas, state_hash from agents where id = $1 for update
), ok as (
  select id from cur
  where status <> 'revoked' and revoked_at is null
    and (regexp_replace(lower(cert_serial), '^0+(?=.)', '') = $2
      or (prev_cert_serial is not null and prev_cert_serial <> '' and regexp_replace(lower(prev_cert_serial), '^0+(?=.)', '') = $2))
), lease as (
  insert into agent_leases (agent_id, owner, expires_at) select id, $3, $4 from ok
  on conflict (agent_id) do update set owner = excluded.owner, expires_at = excluded.expires_at
  returning agent_id
), upd as (
  update agents set agent_version = $5, host_json = $6, status = 'online', connected_at = $7, last_seen_at = $7, trusted_cas = coalesce($8, agents.trusted_cas)
  from ok where agents.id = ok.id and agents.status <> 'revoked'
  returning agents.id
)
select cur.hostname, cur.status, cur.revoked_at, cur.cert_serial, cur.prev_cert_serial, cur.trusted_cas, cur.state_hash,
  ps.version as ps_version, ps.applied as ps_applied, ps.error as ps_error, (select count(*) from upd) as accepted
from cur left join agent_policy_status ps on ps.agent_id = cur.id`;

function stripNul(s: string): string {
  return s.replaceAll('\u0000', '\uFFFD');
}
