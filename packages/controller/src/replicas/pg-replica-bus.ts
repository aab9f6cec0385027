// Owns the replicas' messages on PostgreSQL: one dedicated connection per controller that
// LISTENs on one channel and sends with pg_notify. PostgreSQL delivers a notification to every
// listening session once, in commit order; nothing is queued for a session that is not
// listening, so a replica whose connection dropped reconnects (1 s, then backing off to 10 s)
// and is told (onReconnect) that it may have missed messages. Loaded only with PostgreSQL.
//
// Any role that may connect to the database may LISTEN and NOTIFY on any channel, so every
// message is signed: HMAC-SHA256 with a key derived (HKDF) from the token signing secret that
// every replica's data directory holds, over the message and the time it was sent. A message
// unsigned, signed with another key, older or newer than MAX_SKEW_MS, or not of a known shape
// is dropped. Payloads carry no secret; they can still be read by such a role (docs/cli.md
// tells to REVOKE CONNECT from PUBLIC).
//
// A connection can stall without dropping (a network black hole, a stopped server): every
// query has a timeout, and the listening connection is checked every LIVENESS_MS with
// SELECT 1; a check or a publish that times out destroys it and reconnects.
//
// The same connection also LISTENs on FLEET_EVENTS_CHANNEL, which the event store NOTIFYs
// when it commits new fleet events: `fleetEvents` wakes GET /v1/events on every replica.
// Those notifications are unsigned on purpose: they carry no message, only "read the store".
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { Client } from 'pg';
import type { Logger } from '@bulkhead/shared';
import { newReplicaId, notSentError, parseReplicaMessage, type ReplicaBus, type ReplicaMessage } from './replica-bus';
import { FLEET_EVENTS_CHANNEL, type FleetEventWakeups } from '../events/event-store';

/** The one channel every replica listens on. */
export const REPLICA_CHANNEL = 'bulkhead_replicas';
/** The listening connection's application_name (pg_stat_activity). */
export const APPLICATION_NAME = 'bulkhead-replicas';
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7900;
/** A signed message older (or further in the future) than this is refused (clocks kept in sync). */
export const MAX_SKEW_MS = 30_000;
/** Every query on the bus connection (a publish, a liveness check) fails after this long. */
export const QUERY_TIMEOUT_MS = 3_000;
/** How often the listening connection is checked. */
export const LIVENESS_MS = 5_000;
/** The signed payload: "b1.<sent at, ms>.<HMAC, base64url>.<message JSON>". */
const SIGNED = /^b1\.(\d{1,16})\.([A-Za-z0-9_-]{43})\.([\s\S]*)$/;

export interface PgReplicaBusOptions {
  connectionString: string;
  logger: Logger;
  /** A secret every replica shares (the data directory's token signing secret); the signing key is derived from it. */
  secret: Buffer;
  replicaId?: string;
  connectTimeoutMs?: number;
  queryTimeoutMs?: number;
  livenessMs?: number;
  now?: () => number;
}

/** The bus's own key: derived, so the token signing key itself is never used for anything else. */
export function busKey(secret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'bulkhead replica bus v1', 32));
}

/** The payload for `msg` sent at `at`, signed with `key`. */
export function signMessage(key: Buffer, msg: ReplicaMessage, at: number): string {
  const json = JSON.stringify(msg);
  const mac = createHmac('sha256', key).update(`b1.${at}.${json}`).digest('base64url');
  return `b1.${at}.${mac}.${json}`;
}

/** The message in `payload` when it is signed with `key`, fresh at `now` and well formed; otherwise why not. */
export function verifyMessage(key: Buffer, payload: string, now: number): { msg: ReplicaMessage } | { refused: string } {
  const m = SIGNED.exec(payload);
  if (!m) return { refused: 'unsigned' };
  const [, at, mac, json] = m as unknown as [string, string, string, string];
  const want = createHmac('sha256', key).update(`b1.${at}.${json}`).digest();
  const got = Buffer.from(mac, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { refused: 'bad signature' };
  if (Math.abs(now - Number(at)) > MAX_SKEW_MS) return { refused: 'stale' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return { refused: 'malformed' };
  }
  const msg = parseReplicaMessage(parsed);
  return msg ? { msg } : { refused: 'malformed' };
}

export class PgReplicaBus implements ReplicaBus {
  readonly clustered = true;
  readonly replicaId: string;
  private client: Client | undefined;
  private readonly listeners = new Set<(msg: ReplicaMessage) => void>();
  private readonly eventListeners = new Set<() => void>();
  /** Wake-ups for the event stream: a committed fleet event on any replica, or a reconnect (some may have been missed). */
  readonly fleetEvents: FleetEventWakeups;
  private readonly reconnectListeners = new Set<() => void>();
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private livenessTimer: NodeJS.Timeout | undefined;
  private retryMs = 1000;
  private readonly key: Buffer;
  private readonly now: () => number;
  /** Refused messages since the last warning (warned at most once a minute). */
  private refused = 0;
  private refusedWarnedAt = 0;

  private constructor(private readonly o: PgReplicaBusOptions) {
    // The getter below reads the live connection.
    const bus = this;
    this.fleetEvents = {
      subscribe: (l) => {
        this.eventListeners.add(l);
        return () => void this.eventListeners.delete(l);
      },
      get listening() {
        return bus.client !== undefined;
      },
    };
    this.replicaId = o.replicaId ?? newReplicaId();
    if (!(o.secret?.length >= 16)) throw new Error('the replica bus needs the shared signing secret');
    this.key = busKey(o.secret);
    this.now = o.now ?? Date.now;
  }

  /** Connects and LISTENs before returning: a replica that cannot hear the others does not start. */
  static async connect(o: PgReplicaBusOptions): Promise<PgReplicaBus> {
    const bus = new PgReplicaBus(o);
    await bus.open();
    bus.livenessTimer = setInterval(() => void bus.checkLiveness(), o.livenessMs ?? LIVENESS_MS);
    bus.livenessTimer.unref();
    return bus;
  }

  private async open(): Promise<void> {
    const client = new Client({
      connectionString: this.o.connectionString, connectionTimeoutMillis: this.o.connectTimeoutMs ?? 10_000, keepAlive: true,
      // Client-side: a stalled server fails the query instead of hanging it (the connection is then replaced).
      query_timeout: this.o.queryTimeoutMs ?? QUERY_TIMEOUT_MS,
      // Named in pg_stat_activity, so an administrator can tell it from the pool's connections.
      application_name: APPLICATION_NAME,
    });
    client.on('notification', (n) => {
      if (n.channel === FLEET_EVENTS_CHANNEL) return this.wakeEventReaders();
      if (n.channel !== REPLICA_CHANNEL || !n.payload) return;
      const v = verifyMessage(this.key, n.payload, this.now());
      if ('refused' in v) return this.refuse(v.refused);
      const msg = v.msg;
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
    try {
      await client.connect();
      await client.query(`LISTEN ${REPLICA_CHANNEL}`);
      await client.query(`LISTEN ${FLEET_EVENTS_CHANNEL}`);
    } catch (err) {
      destroy(client); // connected but not listening: not leaked
      throw err;
    }
    this.client = client;
  }

  private wakeEventReaders(): void {
    for (const l of [...this.eventListeners]) {
      try {
        l();
      } catch (err) {
        this.o.logger.error({ err }, 'an event stream wake-up listener failed');
      }
    }
  }

  private refuse(why: string): void {
    this.refused++;
    const now = this.now();
    if (now - this.refusedWarnedAt < 60_000) return;
    this.refusedWarnedAt = now;
    this.o.logger.warn({ refused: this.refused, last: why }, 'refused replica messages not signed with this fleet\'s key, stale or malformed (another role on the database NOTIFYing, a replica with another data directory, or clocks out of sync)');
    this.refused = 0;
  }

  /** SELECT 1 on the listening connection: one that does not answer in time is replaced. */
  private async checkLiveness(): Promise<void> {
    const client = this.client;
    if (!client || this.closed) return;
    try {
      await client.query('SELECT 1');
    } catch (err) {
      this.lost(client, err as Error);
    }
  }

  private lost(client: Client, err: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    destroy(client);
    if (this.closed) return;
    this.o.logger.warn({ err: err.message, replicaId: this.replicaId }, 'the replica notification connection to PostgreSQL dropped or stalled; reconnecting');
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
          this.wakeEventReaders();
          for (const l of [...this.reconnectListeners]) {
            try {
              l();
            } catch (err) {
              this.o.logger.error({ err }, 'a replica reconnect listener failed');
            }
          }
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
    const payload = signMessage(this.key, msg, this.now());
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      throw notSentError('BK_ERR_INTERNAL', `a ${msg.t} message to the other replicas is ${Buffer.byteLength(payload)} bytes; PostgreSQL notifications carry at most ${MAX_PAYLOAD_BYTES}`);
    }
    const client = this.client;
    if (!client) throw notSentError('BK_ERR_CONTROLLER_UNAVAILABLE', 'this replica is not connected to the other replicas (its PostgreSQL notification connection is down)');
    try {
      await client.query('SELECT pg_notify($1, $2)', [REPLICA_CHANNEL, payload]);
    } catch (err) {
      // Timed out or failed mid-way: the connection is replaced; the notification may or may not have been committed.
      this.lost(client, err as Error);
      throw err;
    }
  }

  /**
   * The text of a NOTIFY for `msg`, signed: for a caller that sends it inside its own
   * transaction (SELECT pg_notify($1, $2) with REPLICA_CHANNEL), so it goes out exactly when
   * that transaction commits.
   */
  signed(msg: ReplicaMessage): string {
    return signMessage(this.key, msg, this.now());
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
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}

/**
 * Ends a connection without waiting on the server: end() alone waits for a stalled server's
 * answer forever. pg has no public destroy, so the socket (connection.stream) is destroyed.
 */
function destroy(client: Client): void {
  void client.end().catch(() => undefined);
  (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
}
