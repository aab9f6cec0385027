// Owns the PostgreSQL connection pool and what is particular to reaching a
// server: checking the URL, bounding connection attempts, surviving dropped
// idle connections, describing the database without its password, and the
// one text difference (PostgreSQL text cannot hold U+0000). Queries are
// KyselyStore's, shared with SQLite.
import {
  Kysely, OperationNodeTransformer, PostgresDialect, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs,
  type PrimitiveValueListNode, type QueryResult, type RootOperationNode, type UnknownRow, type ValueNode,
} from 'kysely';
import { Pool } from 'pg';
import { BulkheadError } from '@bulkhead/shared';
import type { Database } from './schema';
import { KyselyStore, helloAgentColumns, upsertAgentLease } from './kysely-store';
import type { AgentHelloWrite } from './store';
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
      listPool.on('connect', (client) => {
        client.query('set max_parallel_workers_per_gather = 0').catch((err: Error) => opts.onIdleError?.(err));
      });
      listReads = kysely(listPool);
    }
    return new PostgresStore(db, description, listReads);
  }

  /**
   * The hello's lease and status in one statement: a data-modifying CTE takes the lease
   * (PostgreSQL runs it whether or not the UPDATE reads it), the UPDATE marks the agent
   * connected; both commit together. One round trip instead of three.
   */
  override async acceptAgentHello(h: AgentHelloWrite): Promise<void> {
    await this.db
      .with('lease', (db) => upsertAgentLease(db, h.agentId, h.owner, h.leaseExpiresAt).returning('agent_id'))
      .updateTable('agents')
      .set(helloAgentColumns(h))
      .where('id', '=', h.agentId)
      .where('status', '!=', 'revoked')
      .execute();
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

function stripNul(s: string): string {
  return s.replaceAll('\u0000', '\uFFFD');
}
