// Owns the replicas' messages on PostgreSQL: one dedicated connection per controller that
// LISTENs on one channel and sends with pg_notify. PostgreSQL delivers a notification to every
// listening session once, in commit order; nothing is queued for a session that is not
// listening, so a replica whose connection dropped reconnects (1 s, then backing off to 10 s)
// and is told (onReconnect) that it may have missed messages. Loaded only with PostgreSQL.
import { Client } from 'pg';
import { BulkheadError, type Logger } from '@bulkhead/shared';
import { newReplicaId, type ReplicaBus, type ReplicaMessage } from './replica-bus';

/** The one channel every replica listens on. */
export const REPLICA_CHANNEL = 'bulkhead_replicas';
/** The listening connection's application_name (pg_stat_activity). */
export const APPLICATION_NAME = 'bulkhead-replicas';
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7900;

export interface PgReplicaBusOptions {
  connectionString: string;
  logger: Logger;
  replicaId?: string;
  connectTimeoutMs?: number;
}

export class PgReplicaBus implements ReplicaBus {
  readonly clustered = true;
  readonly replicaId: string;
  private client: Client | undefined;
  private readonly listeners = new Set<(msg: ReplicaMessage) => void>();
  private readonly reconnectListeners = new Set<() => void>();
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = 1000;

  private constructor(private readonly o: PgReplicaBusOptions) {
    this.replicaId = o.replicaId ?? newReplicaId();
  }

  /** Connects and LISTENs before returning: a replica that cannot hear the others does not start. */
  static async connect(o: PgReplicaBusOptions): Promise<PgReplicaBus> {
    const bus = new PgReplicaBus(o);
    await bus.open();
    return bus;
  }

  private async open(): Promise<void> {
    const client = new Client({
      connectionString: this.o.connectionString, connectionTimeoutMillis: this.o.connectTimeoutMs ?? 10_000, keepAlive: true,
      // Named in pg_stat_activity, so an administrator can tell it from the pool's connections.
      application_name: APPLICATION_NAME,
    });
    client.on('notification', (n) => {
      if (n.channel !== REPLICA_CHANNEL || !n.payload) return;
      let msg: ReplicaMessage;
      try {
        msg = JSON.parse(n.payload) as ReplicaMessage;
      } catch {
        return;
      }
      for (const l of [...this.listeners]) {
        try {
          l(msg);
        } catch (err) {
          this.o.logger.error({ err, type: msg.t }, 'a replica message listener failed');
        }
      }
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    await client.connect();
    await client.query(`LISTEN ${REPLICA_CHANNEL}`);
    this.client = client;
  }

  private lost(client: Client, err: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    void client.end().catch(() => undefined);
    if (this.closed) return;
    this.o.logger.warn({ err: err.message, replicaId: this.replicaId }, 'the replica notification connection to PostgreSQL dropped; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.open().then(
        () => {
          this.retryMs = 1000;
          this.o.logger.info({ replicaId: this.replicaId }, 'replica notification connection to PostgreSQL restored');
          for (const l of [...this.reconnectListeners]) l();
        },
        (err: unknown) => {
          this.retryMs = Math.min(this.retryMs * 2, 10_000);
          this.o.logger.warn({ err: (err as Error).message }, 'reconnecting the replica notification connection failed');
          this.scheduleReconnect();
        },
      );
    }, this.retryMs);
    this.retryTimer.unref();
  }

  async publish(msg: ReplicaMessage): Promise<void> {
    const payload = JSON.stringify(msg);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      throw new BulkheadError('BK_ERR_INTERNAL', `a ${msg.t} message to the other replicas is ${Buffer.byteLength(payload)} bytes; PostgreSQL notifications carry at most ${MAX_PAYLOAD_BYTES}`);
    }
    const client = this.client;
    if (!client) throw new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', 'this replica is not connected to the other replicas (its PostgreSQL notification connection is down)');
    await client.query('SELECT pg_notify($1, $2)', [REPLICA_CHANNEL, payload]);
  }

  subscribe(listener: (msg: ReplicaMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}
