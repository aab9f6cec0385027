// Owns serving the event stream to connected clients (GET /v1/events). One loop per
// controller reads new events from the store by seq (so with replicas on PostgreSQL every
// replica's events arrive: they are rows in the shared database) and fans them out to
// the clients whose scope admits them. A client resuming from Last-Event-ID first reads
// its backlog from the store, filtered by its scope in SQL, then joins the live fan-out;
// both happen inside the same serialized loop, so nothing is lost or sent twice between
// the two. Memory per client is bounded: once `maxBufferBytes` wait in its connection,
// nothing more is written to it and its cursor stays put (what it has not got yet stays in
// the database, read again when it drains); a client backed up like that for `slowAfterMs`
// is cut off, and may come back with Last-Event-ID. Idle: no polling at all.
//
// On PostgreSQL the loop is woken when any replica commits events (LISTEN/NOTIFY through the
// replica bus: `wakeups`), at most every `minWakeGapMs`, and polls only as a fallback
// (`fallbackPollMs`) in case a notification is lost; while the notification connection is down,
// and on SQLite, it polls every `pollMs`.
import type { Logger } from '@bulkhead/shared';
import { type FleetEventRecord, type FleetEventStore, type FleetEventWakeups } from './event-store';

export interface EventHubOptions {
  store: FleetEventStore;
  logger: Logger;
  /** How often the store is asked for new events while someone listens (without wake-ups). Default 250 ms. */
  pollMs?: number;
  /** Wake-ups when new events are committed (PostgreSQL LISTEN/NOTIFY); while listening, the poll is only a fallback. */
  wakeups?: FleetEventWakeups;
  /** The fallback poll while wake-ups are received. Default 2 s. */
  fallbackPollMs?: number;
  /** Reads started by wake-ups are at least this far apart (a busy fleet does not turn into a read per event). Default 50 ms. */
  minWakeGapMs?: number;
  /** A comment line this often keeps proxies from closing a quiet stream; the client's credential is checked again then. Default 15 s. */
  heartbeatMs?: number;
  /** Nothing more is written to a client with this many bytes not yet taken by its connection. Default 1 MiB. */
  maxBufferBytes?: number;
  /** A client backed up past maxBufferBytes this long is cut off. Default 15 s. */
  slowAfterMs?: number;
  /** Streams served at once by this controller. Default 1000. */
  maxClients?: number;
  /** Streams served at once to one API key (its sessions and tokens included), so one credential cannot take every slot. Default 8. */
  maxClientsPerKey?: number;
  /** Events read per query. Default 500. */
  batch?: number;
}

/** What the hub needs of one connected client. */
export interface EventClientIo {
  /** Only these projects' events; undefined = every event. */
  projects: string[] | undefined;
  /** The API key behind the stream (its tokens' and sessions' key too): ended when the key is revoked. */
  keyId?: string;
  /** sha256 of the session id, when a session cookie opened the stream: ended at logout. */
  sessionIdHash?: string;
  /** Writes a chunk. */
  write(chunk: string): void;
  /** Bytes written but not yet taken by the network. */
  buffered(): number;
  /** Ends the stream (the hub has unsubscribed it). */
  end(reason: EndReason): void;
  /** Whether the credential behind the stream still holds (checked at each heartbeat). */
  stillValid(): Promise<boolean>;
}

/** Why the hub ended a stream ('credential': the key or session ended). */
export type EndReason = 'slow' | 'credential' | 'shutdown';

interface Client {
  io: EventClientIo;
  cursor: number;
  /** Resumed from an id: the first catch-up says when events were pruned meanwhile. */
  checkGap: boolean;
  nextHeartbeat: number;
  checking: boolean;
  /** When it went over maxBufferBytes (undefined while it keeps up). */
  backedUpSince: number | undefined;
}

export class EventHub {
  private readonly clients = new Set<Client>();
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  readonly pollMs: number;
  readonly fallbackPollMs: number;
  readonly minWakeGapMs: number;
  readonly heartbeatMs: number;
  readonly maxBufferBytes: number;
  readonly slowAfterMs: number;
  readonly maxClients: number;
  readonly maxClientsPerKey: number;
  private readonly batch: number;
  /** Slots taken (reserve), in total and per key: counted before the first await, so a burst cannot overshoot. */
  private taken = 0;
  private readonly takenByKey = new Map<string, number>();
  /** Clients cut off for not reading, since start. */
  slowDropped = 0;
  private readonly unsubscribeWakeups: (() => void) | undefined;
  /** When the last read started (ms, Date.now), for minWakeGapMs. */
  private lastTickAt = 0;
  /** A wake-up came while a read ran: read again once minWakeGapMs allows. */
  private notifiedDuringRun = false;
  /** The delay of the pending timer (to tell a poll from a wake-up's short wait). */
  private timerDelay = 0;
  /** Reads started by a wake-up, since start (tests, metrics). */
  wakeReads = 0;
  private wakeRead = false;

  constructor(private readonly o: EventHubOptions) {
    this.pollMs = o.pollMs ?? 250;
    this.fallbackPollMs = Math.max(this.pollMs, o.fallbackPollMs ?? 2_000);
    this.minWakeGapMs = o.minWakeGapMs ?? 50;
    this.unsubscribeWakeups = o.wakeups?.subscribe(() => this.notified());
    this.heartbeatMs = o.heartbeatMs ?? 15_000;
    this.maxBufferBytes = o.maxBufferBytes ?? 1024 * 1024;
    this.slowAfterMs = o.slowAfterMs ?? 15_000;
    this.maxClients = o.maxClients ?? 1000;
    this.maxClientsPerKey = o.maxClientsPerKey ?? 8;
    this.batch = o.batch ?? 500;
  }

  get size(): number {
    return this.clients.size;
  }

  /**
   * Takes a stream slot for `keyId` before anything is awaited: the release function (call
   * once the stream is gone; repeated calls are harmless), or which bound is reached —
   * 'controller' (maxClients) or 'key' (maxClientsPerKey).
   */
  reserve(keyId: string): (() => void) | 'controller' | 'key' {
    if (this.taken >= this.maxClients) return 'controller';
    const n = this.takenByKey.get(keyId) ?? 0;
    if (n >= this.maxClientsPerKey) return 'key';
    this.taken++;
    this.takenByKey.set(keyId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.taken--;
      const m = (this.takenByKey.get(keyId) ?? 1) - 1;
      if (m <= 0) this.takenByKey.delete(keyId);
      else this.takenByKey.set(keyId, m);
    };
  }

  /** Ends at once the streams of this session (logout) on this controller; returns how many. */
  endSession(idHash: string): number {
    return this.endWhere((io) => io.sessionIdHash === idHash);
  }

  /** Ends at once the streams of this key (revocation), its sessions' and tokens' included, on this controller. */
  endKey(keyId: string): number {
    return this.endWhere((io) => io.keyId === keyId);
  }

  private endWhere(match: (io: EventClientIo) => boolean): number {
    let n = 0;
    for (const c of [...this.clients]) {
      if (!match(c.io)) continue;
      this.drop(c, 'credential');
      n++;
    }
    return n;
  }

  /**
   * Adds a client. `after`: the last event id it saw (Last-Event-ID); undefined = only events
   * from now on. Returns the unsubscribe function.
   */
  async subscribe(io: EventClientIo, after: number | undefined): Promise<() => void> {
    let cursor = after;
    let checkGap = after !== undefined;
    if ((this.clients.size === 0 && !this.running) || after !== undefined) {
      const last = await this.o.store.lastEventSeq();
      if (this.clients.size === 0 && !this.running) this.cursor = last;
      if (after !== undefined && after > last) {
        // An id beyond the newest event (another database, a restored backup, a typo): waiting
        // for it would keep the stream silent until the fleet caught up. Resume from the newest
        // and say so with the same event as for pruned ones: the client reloads its view.
        io.write(`event: stream.gap\ndata: ${JSON.stringify({ after, firstAvailable: last + 1, reason: 'unknown_id' })}\n\n`);
        cursor = last;
        checkGap = false;
      }
    }
    const c: Client = { io, cursor: cursor ?? this.cursor, checkGap, nextHeartbeat: Date.now() + this.heartbeatMs, checking: false, backedUpSince: undefined };
    this.clients.add(c);
    this.kick(0);
    return () => void this.clients.delete(c);
  }

  /** Ends every stream (controller shutdown). */
  stop(): void {
    this.stopped = true;
    this.unsubscribeWakeups?.();
    if (this.timer) clearTimeout(this.timer);
    for (const c of [...this.clients]) this.drop(c, 'shutdown');
  }

  /** A client's connection drained: serve it now rather than at the next poll. */
  wake(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.clients.size > 0) this.kick(0);
  }

  private again = false;

  /** New events were committed somewhere: read soon (no sooner than minWakeGapMs after the last read). */
  private notified(): void {
    if (this.stopped || this.clients.size === 0) return;
    if (this.running) {
      this.notifiedDuringRun = true;
      return;
    }
    const wait = this.wakeDelay();
    if (this.timer && this.timerDelay <= wait) return; // a read comes soon enough already
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.wakeRead = true;
    this.kick(wait);
  }

  private wakeDelay(): number {
    return Math.max(0, this.lastTickAt + this.minWakeGapMs - Date.now());
  }

  /** The poll: a fallback while wake-ups are being received. */
  private pollDelay(): number {
    return this.o.wakeups?.listening ? this.fallbackPollMs : this.pollMs;
  }

  private kick(ms: number): void {
    if (this.stopped || this.running || this.timer) return;
    this.timerDelay = ms;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.lastTickAt = Date.now();
      if (this.wakeRead) this.wakeReads++;
      this.wakeRead = false;
      this.running = this.tick()
        .catch((err: unknown) => this.o.logger.warn({ err }, 'reading fleet events failed; retrying'))
        .then((more) => {
          this.running = undefined;
          const now = this.again || more === true;
          this.again = false;
          const woken = this.notifiedDuringRun;
          this.notifiedDuringRun = false;
          if (this.clients.size === 0) return;
          if (now) this.kick(0);
          else if (woken) {
            this.wakeRead = true;
            this.kick(this.wakeDelay());
          } else this.kick(this.pollDelay());
        });
    }, ms);
    this.timer.unref();
  }

  /** One round; true when there is more to read right away. */
  private async tick(): Promise<boolean> {
    let more = false;
    const fresh = await this.o.store.listEvents({ after: this.cursor, limit: this.batch });
    const top = fresh.length > 0 ? fresh[fresh.length - 1]!.seq : this.cursor;
    if (fresh.length === this.batch) more = true;
    const now = Date.now();
    for (const c of [...this.clients]) {
      if (c.io.buffered() > this.maxBufferBytes) {
        c.backedUpSince ??= now;
        if (now - c.backedUpSince >= this.slowAfterMs) {
          this.slowDropped++;
          this.o.logger.warn({ buffered: c.io.buffered(), maxBufferBytes: this.maxBufferBytes, backedUpMs: now - c.backedUpSince }, 'event stream client not reading: cut off (it may resume with Last-Event-ID)');
          this.drop(c, 'slow');
        }
        continue;
      }
      c.backedUpSince = undefined;
      if (c.cursor < this.cursor) {
        // Behind: its backlog comes from the store, in its scope, up to where the hub stood.
        if (c.checkGap) {
          c.checkGap = false;
          const first = await this.o.store.firstEventSeq();
          if (first !== undefined && first > c.cursor + 1) {
            this.send(c, `event: stream.gap\ndata: ${JSON.stringify({ after: c.cursor, firstAvailable: first, reason: 'pruned' })}\n\n`);
          }
        }
        const rows = await this.o.store.listEvents({ after: c.cursor, upTo: this.cursor, limit: this.batch, ...(c.io.projects ? { projects: c.io.projects } : {}) });
        let sent = 0;
        for (const r of rows) {
          if (!this.sendEvent(c, r)) break;
          c.cursor = r.seq;
          sent++;
        }
        // Read a whole page without holding back: nothing else in its scope up to the hub's cursor.
        if (sent === rows.length && rows.length < this.batch) c.cursor = this.cursor;
        else more = true;
        continue;
      }
      c.checkGap = false;
      let full = false;
      for (const r of fresh) {
        if (r.seq <= c.cursor) continue;
        if (visible(c, r) && !this.sendEvent(c, r)) {
          full = true;
          break;
        }
        c.cursor = r.seq;
      }
      if (!full) c.cursor = Math.max(c.cursor, top);
    }
    this.cursor = top;
    this.heartbeats();
    return more;
  }

  private heartbeats(): void {
    const now = Date.now();
    for (const c of this.clients) {
      if (now < c.nextHeartbeat || c.checking) continue;
      c.nextHeartbeat = now + this.heartbeatMs;
      this.send(c, `: heartbeat ${new Date(now).toISOString()}\n\n`);
      c.checking = true;
      void c.io.stillValid().then(
        (ok) => {
          c.checking = false;
          if (!ok && this.clients.has(c)) this.drop(c, 'credential');
        },
        () => void (c.checking = false),
      );
    }
  }

  private sendEvent(c: Client, r: FleetEventRecord): boolean {
    const body = { seq: r.seq, type: r.type, at: r.at.toISOString(), project: r.project, agentId: r.agentId, ...r.data };
    // Types are ours ([a-z._]); a data line holds JSON, which never contains a raw newline.
    return this.send(c, `id: ${r.seq}\nevent: ${r.type}\ndata: ${JSON.stringify(body)}\n\n`);
  }

  /** Writes unless the client is over its buffer bound (then false: the caller keeps its cursor). */
  private send(c: Client, chunk: string): boolean {
    if (!this.clients.has(c) || c.io.buffered() > this.maxBufferBytes) return false;
    c.io.write(chunk);
    return true;
  }

  private drop(c: Client, reason: EndReason): void {
    this.clients.delete(c);
    try {
      c.io.end(reason);
    } catch {
      // the connection is gone already
    }
  }
}

function visible(c: Client, r: FleetEventRecord): boolean {
  const scope = c.io.projects;
  return scope === undefined || r.everyScope || (r.project !== '' && scope.includes(r.project));
}
