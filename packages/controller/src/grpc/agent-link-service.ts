// Owns the AgentLink stream on the controller side: authenticates the agent
// from its client certificate (and nothing else), applies its snapshot and
// deltas to the store in order, acknowledges them, marks agents offline
// when their stream ends or their heartbeats stop, and answers certificate
// renewal requests for the certificate the stream was opened with.
//
// With several controller replicas on one database, each stream is a lease in
// the store (owner = this process's replica id): taken at hello, renewed while
// the stream lives, dropped when it ends. An agent is marked offline (and
// agent_offline raised) only by the replica whose conditional update made it
// so, never while another replica holds a live lease on it; commands for an
// agent held elsewhere go to its owner (replicas/remote-commands.ts).
//
// At fleet size the link never lets the database's pace close a stream or
// declare an agent offline:
// - A store write that fails for a transient reason (full pool, dropped
//   connection, deadlock, busy SQLite) is retried with back-off, in order, on
//   the same stream; nothing after it is acknowledged meanwhile. Past
//   MAX_BACKLOG messages waiting on one stream the stream is paused (gRPC flow
//   control holds the agent back), and while the controller is behind on a
//   stream it repeats its last acknowledgement every heartbeat interval, so the
//   agent's silence watchdog sees a live controller, not a dead one.
// - At most `maxConcurrentWrites` agent messages are being stored at once
//   (fleet-wide); the rest wait in their streams' order without holding a
//   database connection, so hellos, leases, the sweep and alerts still get one
//   while a whole fleet sends its snapshots.
// - Liveness is judged by what arrives on the stream (its receipt time), not by
//   when the controller got round to storing it: heartbeats are not written one
//   by one; every receipt is noted in memory and the last-seen times are written
//   for all agents in one transaction per flush interval (≤ 1 s).
// - The offline sweep never marks an agent offline whose stream here is alive
//   and sending, or whose messages are still waiting in the controller; and when
//   the controller itself was stalled (the sweep's own timer fired late by more
//   than STALL_SLACK_MS: a long GC, a blocked event loop, a paused process) it
//   judges nobody for one offline-after period, so every agent gets a full period
//   to be heard once the controller is back. A stall that begins inside a sweep
//   (after that check) is covered too: the sweep reads the sockets' waiting input
//   before it judges any stream by its last receipt.
//
// A full snapshot only when needed (docs/architecture.md#inventory-state-hash): the agent's
// hello and heartbeats carry its inventory state hash. A heartbeat's hash is queued once every
// earlier message of the stream is stored, and written with the batched last-seen times; any
// container write (snapshot or delta) clears a stored hash atomically with it. So a hash in
// the store is always the hash of the containers stored for the agent, across restarts and
// replicas, and a hello carrying that same hash is welcomed with snapshot_not_needed.
//
// A bundle the agent could not receive (larger than its gRPC receive limit)
// ends the stream before the agent can answer; the agent says so in its next
// hello, and the failure is stored as the agent's policy status.
import type * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import {
  BulkheadError, Semaphore, agentIdFromCert, canonicalSerial, type AgentLinkHandlers, type AgentMessage__Output, type ControllerMessage, type Logger,
  type PolicyBundle, type ViolationReport__Output, type Command, type CommandResult__Output, type ContainerFacts__Output,
} from '@bulkhead/shared';
import { helloAcceptable, type AgentHelloState, type AgentPolicyStatusRecord, type ContainerWriteOptions, type Store } from '../store/store';
import { toServiceError } from './service-error';
import { storeFullError } from '../store/store-full';
// Live usage.
import { clearUsage, recordUsage } from '../usage/usage-recorder';
// Alerts: agent offline/online and violation alerts.
import type { AlertSink } from '../alerts/alert-service';
import { alertFromViolation } from '../alerts/violation-alerts';
// Tags that move: what each container runs, per repository:tag.
import type { TagTracker } from '../images/tag-tracker';
import type { ReportedVerdicts } from '../signatures/reported-verdicts';
// Metrics and manual commands.
import { closeReason, type LinkMetrics } from '../metrics/controller-metrics';
// Host audit: reports stored, new lockdown findings raised as alerts.
import { recordHostAudit } from '../host-audit/host-audit-recorder';
import { renewAgentCert, type CertRenewalOptions } from '../pki/cert-renewal';
import { unverifiedPeerCertificate } from './unverified-peer';
// Controller replicas on one database: stream leases, commands and revocations across replicas.
import { LocalReplicaBus, type ReplicaBus, type ReplicaMessage } from '../replicas/replica-bus';
import { RemoteCommands } from '../replicas/remote-commands';
import type { FleetEventSink } from '../events/fleet-events';
import { containerProject } from '../auth/project-scope';
import { isTransientStoreError, retryDelayMs } from '../store/transient-error';

/** Messages waiting to be stored on one stream before it is paused (gRPC flow control then holds the agent back). */
export const MAX_BACKLOG = 64;
/** A paused stream is resumed once this few are left. */
const RESUME_BACKLOG = 16;
/** The sweep timer firing this much later than due means the controller itself was stalled. */
export const STALL_SLACK_MS = 1000;
/** Longest wait between retries of a store write that failed for a transient reason. */
const MAX_RETRY_DELAY_MS = 5000;

/** Certificates whose refusal was already logged at warn are remembered up to this many, then forgotten all at once. */
const MAX_REMEMBERED_FOREIGN_CERTS = 1024;

type LinkCall = grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>;

export interface AgentLinkOptions {
  store: Store;
  logger: Logger;
  /** How often agents are told to heartbeat. Default 5 s. */
  heartbeatIntervalMs?: number;
  /** No message for this long marks an agent offline. Default 3 × heartbeat. */
  offlineAfterMs?: number;
  /** How long a new stream may take to say hello. Default 10 s. */
  helloTimeoutMs?: number;
  /** Spacing of each container's recent-usage history points (serve --usage-history-interval). Default 60 s. */
  usageHistoryIntervalMs?: number;
  now?: () => Date;
  /** Policy distribution: the bundle sent after the welcome and on every change. */
  policy?: AgentLinkPolicySource;
  /** Alerts: offline/online transitions and violation reports are raised here. */
  alerts?: AlertSink;
  /** The fleet event stream (GET /v1/events): agents coming and going, containers changing. */
  events?: FleetEventSink;
  /** Tag tracking: the images containers run, per repository:tag (moves raise alerts). */
  tags?: TagTracker;
  /** Image signature verdicts agents report, for the policy dry-run. */
  signatureVerdicts?: ReportedVerdicts;
  /** Metrics: stream counts and stored violations. */
  metrics?: LinkMetrics;
  /** The CA and lifetime for renewing agent certificates over the stream; without it renewals are refused. */
  renewal?: CertRenewalOptions;
  /** Subject of this controller's CA, named when a certificate from another CA is refused. */
  caSubject?: string | (() => string);
  /**
   * How often the store is asked for agents revoked by any controller on the same
   * database (another replica's API, too): their live streams here are closed and their
   * next hello refused. Default 300 ms, so a revocation takes effect on every replica
   * within 1 s even when the replicas' notification (replicas.bus) is lost. 0 turns the
   * watch off (revoke() on this process still acts at once).
   */
  revocationPollMs?: number;
  /**
   * The CAs trusted for agent certificates (pki/live-pki.ts): sent to each agent
   * after the welcome and again whenever they change; a stream whose certificate
   * no trusted CA issued any more is closed then.
   */
  trust?: AgentLinkTrustSource;
  /**
   * Controller replicas on one database (src/replicas). Each stream's ownership is a lease in
   * the store (agent_leases) taken at hello, renewed every third of `leaseMs` while the stream
   * lives and dropped when it ends; with a clustered bus (PostgreSQL) commands for agents held
   * by another replica go there, and revocations reach every replica at once. Without it: a
   * local bus with a random replica id (one controller; leases are still recorded).
   */
  replicas?: { bus: ReplicaBus; leaseMs?: number; acceptMs?: number };
  /**
   * Most agent messages stored at the same time, across all streams (the rest wait their
   * turn, in order per stream, holding no database connection). Default 8; the controller
   * passes half the PostgreSQL pool.
   */
  maxConcurrentWrites?: number;
  /**
   * Most hellos being stored at the same time (the rest wait here, holding no database
   * connection, and one whose agent gave up meanwhile is dropped before it writes). A replica
   * taking over a dead one's agents gets hundreds of hellos at once: without a bound they all
   * queue on the database pool, ahead of everything else, and the abandoned ones write before
   * anyone sees they are gone. Default 4; the controller passes half the PostgreSQL pool.
   */
  maxConcurrentHellos?: number;
}

export interface AgentLinkTrustSource {
  readonly trust: string[];
  trustBundle(): { caPem: string; issuingCaFingerprint: string };
  subscribe(listener: () => void): () => void;
}

export const DEFAULT_REVOCATION_POLL_MS = 300;

/** What the link needs of the policy service (policy/policy-service.ts). */
export interface AgentLinkPolicySource {
  bundle(): PolicyBundle;
  /** Returns an unsubscribe function. */
  subscribe(listener: (bundle: PolicyBundle) => void): () => void;
}

interface Session {
  agentId: string;
  call: LinkCall;
  /** Store writes of one stream are applied strictly in arrival order. */
  chain: Promise<void>;
  closed: boolean;
  /** Manual commands sent on this stream and not answered yet, by command id. */
  pending: Map<string, PendingCommand>;
  /** The verified client certificate the stream was opened with: the only identity a renewal is granted to. */
  cert: { raw: Buffer; serial: string };
  /** The agent's hostname as enrolled (it never changes), read at hello: named in its reports' alerts without a read per report. */
  hostname: string | undefined;
  /** A malformed report on this stream was logged at warn: the rest go to debug, so one client cannot flood the log. */
  malformedWarned?: boolean;
  /** When the last message arrived on the stream (monotonic ms): the agent's liveness, whatever the store's pace. */
  lastReceivedMs: number;
  /** Messages received and not yet stored and acknowledged. */
  backlog: number;
  /** Paused for back-pressure (backlog reached MAX_BACKLOG). */
  paused: boolean;
  /** The last sequence number acknowledged, repeated while the controller is behind on this stream. */
  lastAckedSeq: AgentMessage__Output['seq'];
  /** When something was last written to the agent (monotonic ms). */
  lastWriteMs: number;
  /** The state hash the store holds, or may hold (queued or being flushed), for this agent; null = none. */
  storedHash: string | null;
  /** The CAs the store holds as this agent's trusted ones (read at hello, then as written here): a TrustAck repeating them writes nothing. */
  trustedCas: string[] | undefined;
  /**
   * The policy status the store holds for this agent (read at hello, then as written here);
   * undefined when not known. The agent reports its status after every welcome — after a
   * failover the same version and result again — and a report equal to it writes nothing.
   */
  storedPolicy: Pick<AgentPolicyStatusRecord, 'version' | 'applied' | 'error'> | undefined;
}

interface PendingCommand {
  resolve: (r: CommandResult__Output) => void;
  reject: (e: BulkheadError) => void;
  timer: NodeJS.Timeout;
}

/** Errors a client causes by what it sends: logged without a stack trace. */
const CLIENT_FAULTS: ReadonlySet<string> = new Set(['BK_ERR_PROTOCOL', 'BK_ERR_BAD_REQUEST', 'BK_ERR_TOO_LARGE', 'BK_ERR_AGENT_ID_MISMATCH']);

export class AgentLinkService {
  private readonly sessions = new Map<string, Session>();
  /** Fingerprints of foreign certificates whose refusal was logged at warn. */
  private readonly foreignCertsLogged = new Set<string>();
  private sweeper: NodeJS.Timeout | undefined;
  private revocationWatch: NodeJS.Timeout | undefined;
  private revocationCheckRunning = false;
  private readonly heartbeatIntervalMs: number;
  private readonly offlineAfterMs: number;
  private readonly helloTimeoutMs: number;
  private readonly now: () => Date;
  private unsubscribePolicy: (() => void) | undefined;
  private unsubscribeTrust: (() => void) | undefined;
  /** Alerts: pending "offline unless it comes back" checks. */
  private readonly offlineTimers = new Set<NodeJS.Timeout>();
  /** Agent revocation: ids revoked while this process runs, for hellos that passed the store check just before. */
  private readonly revokedIds = new Set<string>();
  /** The bundle version whose failed delivery was last logged per agent: one warning per version, not per reconnect. */
  private readonly deliveryWarned = new Map<string, number>();
  /** Controller replicas. */
  private readonly bus: ReplicaBus;
  private readonly leaseMs: number;
  private leaseTimer: NodeJS.Timeout | undefined;
  private leaseRenewing = false;
  private remote: RemoteCommands | undefined;
  private unsubscribeBus: (() => void) | undefined;
  /** Batched last-seen: the receipt time of each agent's latest message, written in one transaction per flush. */
  private seen = new Map<string, Date>();
  private seenTimer: NodeJS.Timeout | undefined;
  private seenFlushing: Promise<void> | undefined;
  /** State hashes queued by heartbeats, written with the next last-seen flush (only for the stream that queued them). */
  private hashes = new Map<string, { s: Session; hash: string }>();
  private readonly sweepEveryMs: number;
  private sweeping = false;
  /** Controller stall detection: when the sweep timer last fired, and when a stall was last seen to end (monotonic ms). */
  private lastSweepTickMs: number | undefined;
  private stallEndedMs = -Infinity;
  /** Store writes of agent messages retried after a transient failure (instead of closing the stream). */
  storeRetries = 0;
  /** Admission to storing agent messages: free slots, and the writers waiting for one (FIFO). */
  private readonly writeSlots: Semaphore;
  /** Admission to storing hellos, the same way. */
  private readonly helloSlots: Semaphore;

  constructor(private readonly opts: AgentLinkOptions) {
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 5000;
    this.offlineAfterMs = opts.offlineAfterMs ?? this.heartbeatIntervalMs * 3;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 10_000;
    this.now = opts.now ?? (() => new Date());
    if (this.offlineAfterMs <= this.heartbeatIntervalMs) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'offlineAfterMs must exceed heartbeatIntervalMs');
    }
    this.bus = opts.replicas?.bus ?? new LocalReplicaBus();
    this.leaseMs = opts.replicas?.leaseMs ?? this.offlineAfterMs;
    this.sweepEveryMs = Math.max(250, Math.floor(this.heartbeatIntervalMs / 2));
    this.writeSlots = new Semaphore(positiveInteger(opts.maxConcurrentWrites ?? 8, 'maxConcurrentWrites'));
    this.helloSlots = new Semaphore(positiveInteger(opts.maxConcurrentHellos ?? 4, 'maxConcurrentHellos'));
    if (!(this.leaseMs >= 300)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'the stream lease must last at least 300 ms');
  }

  /** This process's replica id: the owner of the stream leases it holds. */
  get replicaId(): string {
    return this.bus.replicaId;
  }

  handlers(): AgentLinkHandlers {
    return { Connect: (call) => this.onConnect(call) };
  }

  /** Ids of agents with a live stream right now. */
  connectedAgents(): string[] {
    return [...this.sessions.keys()];
  }

  /**
   * Agent revocation: closes the agent's live stream at once with
   * BK_ERR_AGENT_REVOKED; true when one was open. Mark the agent revoked in
   * the store first — every later hello is refused there; a hello already
   * past that check is refused by the in-memory mark set here.
   */
  revoke(agentId: string): boolean {
    // A revoked host's word counts for nothing (the revocation is already stored: a verdict it
    // sends meanwhile is refused with its stream, or ages out).
    void this.opts.signatureVerdicts?.forget(agentId).catch((err: unknown) =>
      this.opts.logger.warn({ err: (err as Error).message, agentId }, 'forgetting a revoked agent\'s signature verdicts failed; they age out'),
    );
    // The other replicas close the agent's stream if they hold it (the store poll is the fallback).
    if (this.bus.clustered) {
      void this.bus.publish({ t: 'revoke', from: this.bus.replicaId, agentId }).catch((err: unknown) =>
        this.opts.logger.warn({ err, agentId }, 'telling the other replicas about a revocation failed; their store poll closes the stream'),
      );
    }
    return this.revokeLocal(agentId, 'api');
  }

  /** `via`: how this replica learnt of it — its own API, another replica's notification, or the store poll. */
  private revokeLocal(agentId: string, via: 'api' | 'replica notification' | 'store poll'): boolean {
    this.revokedIds.add(agentId);
    const s = this.sessions.get(agentId);
    if (!s) return false;
    this.close(s, new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${agentId} was revoked; enroll again with a new join token`));
    this.opts.logger.warn({ agentId, via }, 'agent revoked: stream closed');
    return true;
  }

  /** Starts the offline sweeper (and, with a policy source, pushing new bundles). */
  start(): void {
    this.sweeper = setInterval(() => void this.sweep(), this.sweepEveryMs);
    this.sweeper.unref();
    // Batched heartbeats: every agent's last receipt written in one transaction, at most 1 s late.
    this.seenTimer = setInterval(() => void this.flushSeen(), Math.min(1000, this.sweepEveryMs));
    this.seenTimer.unref();
    const pollMs = this.opts.revocationPollMs ?? DEFAULT_REVOCATION_POLL_MS;
    if (pollMs > 0 && this.opts.store.listRevokedAgents) {
      this.revocationWatch = setInterval(() => void this.checkRevocations(), pollMs);
      this.revocationWatch.unref();
    }
    // Policy: every connected agent gets each new bundle at once.
    this.unsubscribePolicy ??= this.opts.policy?.subscribe((bundle) => {
      for (const s of this.sessions.values()) if (!s.closed) s.call.write({ policy: bundle });
      this.opts.logger.info({ version: bundle.version, sha256: bundle.sha256, agents: this.sessions.size }, 'policy bundle pushed');
    });
    this.unsubscribeTrust ??= this.opts.trust?.subscribe(() => this.trustChanged());
    // Replicas: renew the leases of the streams held here; act on what other replicas say.
    this.leaseTimer = setInterval(() => void this.renewLeases(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.leaseTimer.unref();
    if (this.bus.clustered) {
      this.remote ??= new RemoteCommands({
        bus: this.bus,
        lease: (id) => this.opts.store.getAgentLease?.(id) ?? Promise.resolve(undefined),
        local: (id, cmd) => this.sendLocalCommand(id, cmd),
        logger: this.opts.logger,
        ...(this.opts.store.recordRemoteCommand && this.opts.store.decideRemoteCommand
          ? { decisions: { record: this.opts.store.recordRemoteCommand.bind(this.opts.store), decide: this.opts.store.decideRemoteCommand.bind(this.opts.store) } }
          : {}),
        now: this.now,
        ...(this.opts.replicas?.acceptMs !== undefined ? { acceptMs: this.opts.replicas.acceptMs } : {}),
      });
      this.unsubscribeBus ??= this.bus.subscribe((m) => this.onReplicaMessage(m));
    }
  }

  private onReplicaMessage(m: ReplicaMessage): void {
    if (m.t === 'revoke' && m.from !== this.bus.replicaId && this.sessions.has(m.agentId)) this.revokeLocal(m.agentId, 'replica notification');
  }

  /**
   * Extends the leases of the streams held here. A stream whose lease another replica holds
   * now is closed: the agent opened a newer stream there, so this one is a dead connection.
   */
  async renewLeases(): Promise<void> {
    const renew = this.opts.store.renewAgentLeases;
    if (!renew || this.leaseRenewing || this.sessions.size === 0) return;
    this.leaseRenewing = true;
    try {
      const lost = await renew.call(this.opts.store, this.bus.replicaId, [...this.sessions.keys()], new Date(this.now().getTime() + this.leaseMs));
      for (const id of lost) {
        const s = this.sessions.get(id);
        if (!s) continue;
        this.opts.logger.info({ agentId: id }, 'agent stream moved to another replica: the old stream here is closed');
        this.close(s, new BulkheadError('BK_ERR_PROTOCOL', 'superseded by a newer stream from the same agent on another controller replica'));
      }
      // Marked offline by another replica while this one stalled, yet its stream is served here
      // and heartbeats flow again: online again (never one whose heartbeats the sweep finds stale).
      const gone = new Set(lost);
      const held = [...this.sessions.keys()].filter((id) => !gone.has(id));
      const now = this.now();
      const back = held.length > 0 ? ((await this.opts.store.markHeldAgentsOnline?.(this.bus.replicaId, held, now, new Date(now.getTime() - this.offlineAfterMs))) ?? []) : [];
      for (const id of back) {
        const hostname = (await this.opts.store.getAgent(id))?.hostname;
        this.opts.logger.warn({ agentId: id }, 'agent was marked offline by another replica while its stream here lived (this replica stalled?): online again');
        this.raiseAgentState(id, 'agent_online', `agent ${hostname ?? id} (${id}) is back online`, hostname);
      }
    } catch (err) {
      this.opts.logger.error({ err }, 'renewing the stream leases failed');
    } finally {
      this.leaseRenewing = false;
    }
  }

  /** Closes every stream (controller shutdown) and marks those agents offline. */
  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    if (this.revocationWatch) clearInterval(this.revocationWatch);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.seenTimer) clearInterval(this.seenTimer);
    this.unsubscribeBus?.();
    this.unsubscribeBus = undefined;
    this.remote?.close();
    for (const timer of this.offlineTimers) clearTimeout(timer); // alerts
    this.offlineTimers.clear();
    this.unsubscribePolicy?.();
    this.unsubscribePolicy = undefined;
    this.unsubscribeTrust?.();
    this.unsubscribeTrust = undefined;
    const all = [...this.sessions.values()];
    for (const s of all) this.close(s, new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', 'controller is shutting down'));
    await Promise.allSettled(all.map((s) => s.chain));
    await this.flushSeen();
    // Leases dropped first: an agent already back on another replica is not marked offline.
    for (const s of all) await this.streamGone(s.agentId).catch(() => undefined);
  }

  /**
   * The stream of `agentId` here ended (and no newer one is held here): its lease is dropped
   * and the agent marked offline unless its stream is on another replica now. True when this
   * call marked it offline (so this replica, and no other, raises agent_offline later).
   */
  private async streamGone(agentId: string): Promise<boolean> {
    if (this.sessions.has(agentId)) return false;
    const store = this.opts.store;
    if (!store.markAgentOfflineUnlessHeld) {
      await store.setAgentStatus(agentId, 'offline', this.now());
      return true;
    }
    await store.releaseAgentLease?.(agentId, this.bus.replicaId);
    if (this.sessions.has(agentId)) return false; // reconnected here meanwhile
    return store.markAgentOfflineUnlessHeld(agentId, this.bus.replicaId, this.now());
  }

  /**
   * Closes the streams of agents another controller on this database revoked.
   * It asks about the agents whose streams this replica holds, by id (primary-key
   * lookups, chunked), so it does not depend on the replicas' clocks agreeing
   * and never misses a revocation however long ago it was written; only while
   * this replica holds a stream.
   */
  async checkRevocations(): Promise<void> {
    if (this.revocationCheckRunning || this.sessions.size === 0 || !this.opts.store.listRevokedAgents) return;
    this.revocationCheckRunning = true;
    try {
      for (const id of await this.opts.store.listRevokedAgents([...this.sessions.keys()])) {
        if (!this.sessions.has(id)) continue;
        this.revokeLocal(id, 'store poll');
      }
    } catch (err) {
      this.opts.logger.error({ err }, 'checking for revoked agents failed');
    } finally {
      this.revocationCheckRunning = false;
    }
  }

  /**
   * The trusted CAs changed (a reload after `ca rotate …`): streams opened
   * with a certificate no trusted CA issued are closed as a new handshake
   * would be refused, and every other agent gets the new trust bundle.
   */
  private trustChanged(): void {
    const trust = this.opts.trust;
    if (!trust) return;
    const bundle = trust.trustBundle();
    let closed = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.closed) continue;
      if (!trust.trust.some((ca) => certIssuedBy(s.cert.raw, ca))) {
        closed += 1;
        this.close(s, new BulkheadError('BK_ERR_CERT_REQUIRED', `the certificate of ${s.agentId} is from a CA this controller no longer trusts; enroll the host again`));
        continue;
      }
      s.call.write({ trust: bundle });
    }
    this.opts.logger.info({ issuingCa: bundle.issuingCaFingerprint, trustedCas: trust.trust.length, agents: this.sessions.size, closed }, 'trust bundle pushed');
  }

  /**
   * Writes the batched last-seen times (every agent's latest receipt) in one
   * transaction. On failure they are kept (a newer receipt wins) for the next flush.
   */
  flushSeen(): Promise<void> {
    if (this.seenFlushing) return this.seenFlushing;
    if (this.seen.size === 0 && this.hashes.size === 0) return Promise.resolve();
    const batch = this.seen;
    this.seen = new Map();
    // State hashes of live streams only: an ended stream's hash may be older than what a newer stream stored.
    const hashes = new Map<string, string>();
    for (const [id, q] of this.hashes) if (!q.s.closed && this.sessions.get(id) === q.s) hashes.set(id, q.hash);
    this.hashes = new Map();
    const store = this.opts.store;
    this.seenFlushing = (async () => {
      try {
        // A hash not written (failure) is dropped, not retried: the agent then sends a snapshot on reconnect.
        if (store.touchAgents) await store.touchAgents(batch, hashes);
        else for (const [id, at] of batch) await store.touchAgent(id, at);
      } catch (err) {
        for (const [id, at] of batch) if (!this.seen.has(id)) this.seen.set(id, at);
        this.opts.logger[isTransientStoreError(err) ? 'warn' : 'error']({ err: (err as Error).message, agents: batch.size }, 'writing the agents\' last-seen times failed; kept for the next flush');
      }
    })().finally(() => {
      this.seenFlushing = undefined;
    });
    return this.seenFlushing;
  }

  /**
   * Marks agents offline whose heartbeats stopped, and drops their streams.
   * Never one whose stream here is alive and sending (judged by receipt time) or
   * has messages still waiting in the controller, and nobody for one offline-after
   * period after the controller itself was stalled.
   */
  async sweep(): Promise<void> {
    const tick = performance.now();
    if (this.lastSweepTickMs !== undefined && tick - this.lastSweepTickMs > this.sweepEveryMs + STALL_SLACK_MS) {
      this.stallEndedMs = tick;
      this.opts.logger.warn(
        { stalledMs: Math.round(tick - this.lastSweepTickMs - this.sweepEveryMs), graceMs: this.offlineAfterMs },
        'the controller was stalled: no agent is marked offline until every agent had one offline-after period to be heard',
      );
    }
    this.lastSweepTickMs = tick;
    // Behind on a stream (retrying a write, or a backlog): say "alive" with the last ack, so the agent's silence watchdog keeps the stream.
    for (const s of this.sessions.values()) {
      if (!s.closed && s.backlog > 0 && tick - s.lastWriteMs >= this.heartbeatIntervalMs) this.writeAck(s, s.lastAckedSeq);
    }
    if (this.sweeping || tick - this.stallEndedMs < this.offlineAfterMs) return;
    this.sweeping = true;
    try {
      await this.flushSeen();
      const cutoff = new Date(this.now().getTime() - this.offlineAfterMs);
      const stale = await this.opts.store.listStaleOnlineAgents(cutoff);
      // Read what is waiting in the sockets before judging a stream here by its last receipt:
      // the process may have been stopped while this sweep ran (after its stall check above),
      // and the agents' heartbeats of that time are still unread. setImmediate runs after the
      // event loop's next poll for I/O, which delivers them.
      if (stale.some((a) => this.sessions.has(a.id))) await new Promise<void>((r) => setImmediate(r));
      for (const a of stale) {
        const s = this.sessions.get(a.id);
        if (s && !s.closed) {
          // Its stream is here: judged by what arrives on it, not by when the store was told.
          const heardMs = performance.now() - s.lastReceivedMs;
          if (s.backlog > 0 || heardMs < this.offlineAfterMs) continue;
          this.close(s, new BulkheadError('BK_ERR_PROTOCOL', 'heartbeats stopped'));
        }
        // Every replica sweeps; the store's conditional update lets exactly one mark it offline
        // and alert, and none while another replica holds a live lease on it.
        if (this.opts.store.markAgentOfflineUnlessHeld) {
          if (!(await this.opts.store.markAgentOfflineUnlessHeld(a.id, this.bus.replicaId, this.now()))) continue;
        } else {
          await this.opts.store.setAgentStatus(a.id, 'offline', this.now());
        }
        this.opts.logger.warn({ agentId: a.id, lastSeenAt: a.lastSeenAt }, 'agent offline: heartbeats stopped');
        this.raiseAgentState(a.id, 'agent_offline', `agent ${a.hostname} (${a.id}) is offline: no heartbeat since ${a.lastSeenAt?.toISOString() ?? 'never'}`); // alerts
      }
    } catch (err) {
      this.opts.logger.error({ err }, 'offline sweep failed');
    } finally {
      this.sweeping = false;
    }
  }

  private writeAck(s: Session, seq: AgentMessage__Output['seq']): void {
    if (s.closed) return;
    s.call.write({ ack: { seq } });
    s.lastAckedSeq = seq;
    s.lastWriteMs = performance.now();
  }

  /**
   * Runs a store operation, retrying it with back-off while it fails for a
   * transient reason (the database is briefly slow or unreachable) and `gone()`
   * is false. Any other error, or a transient one once gone, is thrown.
   */
  private async retrying<T>(what: string, agentId: string, gone: () => boolean, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await fn();
        if (attempt > 0) this.opts.logger.info({ agentId, attempts: attempt + 1 }, `${what}: stored after the store caught up`);
        return r;
      } catch (err) {
        if (gone() || storeFullError(err) || !isTransientStoreError(err)) throw err;
        this.storeRetries += 1;
        const delay = retryDelayMs(attempt, MAX_RETRY_DELAY_MS);
        if (attempt % 10 === 0) {
          this.opts.logger.warn({ agentId, err: (err as Error).message, attempt: attempt + 1, retryInMs: delay }, `${what}: the store is busy, retrying (the stream stays open, nothing is acknowledged meanwhile)`);
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private onConnect(call: LinkCall): void {
    const log = this.opts.logger.child({ peer: call.getPeer() });
    const refuse = (err: BulkheadError, quiet = false): void => {
      if (!quiet) log.warn({ code: err.code, reason: err.message }, 'agent stream refused');
      this.opts.metrics?.streamRefused(err.code);
      call.emit('error', toServiceError(err));
    };
    const cert = call.getAuthContext()?.sslPeerCertificate;
    // grpc-js only exposes a peer certificate that verified against our CA and is in its validity window.
    if (!cert) {
      const foreign = unverifiedPeerCertificate(call);
      if (!foreign) return refuse(new BulkheadError('BK_ERR_CERT_REQUIRED'));
      const cs = this.opts.caSubject;
      const ours = (typeof cs === 'function' ? cs() : cs) ?? 'this controller\'s CA';
      const err = new BulkheadError(
        'BK_ERR_CERT_REQUIRED',
        `the client certificate (issuer "${foreign.issuer}", ${foreign.tlsError}) did not verify against this controller's CA "${ours}"; enroll the host with this controller again`,
      );
      // An agent enrolled elsewhere retries for as long as it runs: warn once
      // per certificate, the repeats go to debug.
      const first = !this.foreignCertsLogged.has(foreign.fingerprint);
      if (first) {
        if (this.foreignCertsLogged.size >= MAX_REMEMBERED_FOREIGN_CERTS) this.foreignCertsLogged.clear();
        this.foreignCertsLogged.add(foreign.fingerprint);
      }
      log[first ? 'warn' : 'debug'](
        { code: err.code, certIssuer: foreign.issuer, certSubject: foreign.subject, caSubject: ours, tlsError: foreign.tlsError, fingerprint: foreign.fingerprint },
        'agent stream refused: client certificate did not verify against this controller\'s CA',
      );
      return refuse(err, true);
    }
    const agentId = agentIdFromCert(cert);
    if (!agentId) return refuse(new BulkheadError('BK_ERR_CERT_REQUIRED', 'client certificate carries no Bulkhead agent identity'));
    const serial = canonicalSerial(cert.serialNumber);

    let session: Session | undefined;
    let gone = false;
    const helloTimer = setTimeout(() => refuse(new BulkheadError('BK_ERR_PROTOCOL', 'no hello within the allowed time')), this.helloTimeoutMs);

    call.on('data', (msg: AgentMessage__Output) => {
      if (!session) {
        clearTimeout(helloTimer);
        call.pause(); // hold further messages until the hello is accepted
        const progress = { wrote: false };
        this.acceptHello(call, agentId, { raw: cert.raw, serial }, msg, () => gone, progress).then(
          (s) => {
            session = s;
            call.resume();
          },
          (err: unknown) => {
            // The agent gave up waiting (its welcome timeout) after the hello may have marked it
            // online: offline again unless it is back (here or elsewhere), as for any ended stream.
            // A hello given up before it wrote anything leaves nothing to undo.
            if (gone && progress.wrote && !this.sessions.has(agentId)) {
              void this.streamGone(agentId).then(
                (wentOffline) => {
                  if (wentOffline) this.raiseOfflineUnlessBack(agentId, 'ended before its hello was accepted');
                },
                (e: unknown) => log.error({ err: e, agentId }, 'marking agent offline failed'),
              );
            }
            refuse(storeFullError(err) ?? (err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', undefined, { cause: err })), gone);
          },
        );
        return;
      }
      const s = session;
      // Liveness is the receipt: noted now, however long storing what came before takes.
      s.lastReceivedMs = performance.now();
      this.seen.set(s.agentId, this.now());
      s.backlog += 1;
      if (s.backlog >= MAX_BACKLOG && !s.paused && !s.closed) {
        s.paused = true;
        call.pause();
      }
      const store = () => this.retrying(`storing an agent ${msg.body ?? 'message'}`, s.agentId, () => s.closed, () => this.apply(s, msg));
      // Heartbeats and command results write nothing: never queued behind other agents' writes.
      const write = msg.body === 'heartbeat' || msg.body === 'commandResult' ? store : () => this.writeSlots.run(store);
      s.chain = s.chain.then(write).catch((err: unknown) => {
        // A client's protocol fault closes its stream: one warn line, no stack trace.
        // Nothing unstored is acknowledged: the stream closes and the agent sends its spool again.
        const full = storeFullError(err);
        if (full) log.error({ err, agentId, code: full.code }, 'the store is out of disk space: agent message not stored nor acknowledged; the agent keeps it and sends it again');
        else if (err instanceof BulkheadError && CLIENT_FAULTS.has(err.code)) log.warn({ agentId, code: err.code, reason: err.message }, 'agent stream closed: protocol error');
        else log.error({ err, agentId }, 'applying agent message failed');
        this.close(s, full ?? (err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', undefined, { cause: err })));
      }).finally(() => {
        s.backlog -= 1;
        if (s.paused && s.backlog <= RESUME_BACKLOG && !s.closed) {
          s.paused = false;
          call.resume();
        }
      });
    });
    const ended = (why: string): void => {
      gone = true;
      clearTimeout(helloTimer);
      if (!session) return;
      const s = session;
      if (!s.closed) this.opts.metrics?.streamClosed(why === 'stream ended' ? 'ended' : why);
      s.closed = true;
      this.failPending(s, why);
      if (this.sessions.get(s.agentId) !== s) return; // superseded by a newer stream
      this.sessions.delete(s.agentId);
      void s.chain.then(() => this.streamGone(s.agentId)).then(
        (wentOffline) => {
          log.info({ agentId: s.agentId, why, ...(wentOffline ? {} : { heldElsewhere: true }) }, 'agent disconnected');
          if (wentOffline) this.raiseOfflineUnlessBack(s.agentId, why); // alerts
        },
        (err: unknown) => log.error({ err }, 'marking agent offline failed'),
      );
    };
    call.on('end', () => {
      ended('stream ended');
      if (session && !call.writableEnded) call.end();
    });
    call.on('cancelled', () => ended('cancelled'));
    call.on('error', () => ended('error'));
    call.on('close', () => ended('closed'));
  }

  private async acceptHello(
    call: LinkCall, agentId: string, cert: Session['cert'], msg: AgentMessage__Output, gone: () => boolean, progress: { wrote: boolean },
  ): Promise<Session> {
    // A briefly slow store delays the welcome rather than refusing the stream (a refused agent comes back with a full snapshot).
    const stored = <T>(fn: () => Promise<T>): Promise<T> => this.retrying('accepting an agent hello', agentId, gone, fn);
    // A hello whose stream ended while it waited (the agent gave up after its welcome timeout,
    // 10 s, and is connecting again) is dropped before its next store step. In a fleet connect
    // on a busy controller most waiting hellos are such: each used to go on to write its lease
    // and online status and then undo both (5 statements, no welcome anyone reads), ahead of
    // the retries that replaced them in the pool's queue, so the backlog fed itself.
    const stillWanted = (): void => {
      if (gone()) throw new BulkheadError('BK_ERR_PROTOCOL', 'the stream ended before its hello was accepted');
    };
    stillWanted();
    const serial = cert.serial;
    if (msg.body !== 'hello' || !msg.hello) throw new BulkheadError('BK_ERR_PROTOCOL', 'the first message on a stream must be a hello');
    const hello = msg.hello;
    if (hello.agentId !== agentId) {
      throw new BulkheadError('BK_ERR_AGENT_ID_MISMATCH', `hello claims agent "${hello.agentId}" but the certificate identifies "${agentId}"`);
    }
    if (!hello.host) throw new BulkheadError('BK_ERR_PROTOCOL', 'hello carries no host facts');
    if (this.revokedIds.has(agentId)) throw new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${agentId} was revoked; enroll again with a new join token`);
    const now = this.now();
    const trusted = trustedFingerprints(hello.trustedCaFingerprints);
    const leaseExpiresAt = new Date(now.getTime() + this.leaseMs);
    const acceptHello = this.opts.store.acceptAgentHello;
    let rec: AgentHelloState;
    let trustChanged: boolean;
    if (acceptHello) {
      // The agent's checks, lease, online status and trusted CAs in one transaction (one
      // statement on PostgreSQL): a replica taking over a dead one's agents runs hundreds of
      // these at once (BENCHMARKS.md, failover). A refused hello writes nothing; the stored row
      // it returns says why. The CAs ride on the row's update whenever the agent reports some
      // (the same value costs nothing there).
      const r = await this.helloSlots.run(() => {
        stillWanted(); // an agent that gave up while its hello waited for a slot: nothing written
        progress.wrote = true; // from here a stream that ends is undone by the caller (offline unless back)
        return stored(() => acceptHello.call(this.opts.store, {
          agentId, certSerial: serial, owner: this.bus.replicaId, leaseExpiresAt, agentVersion: hello.agentVersion, host: hello.host!, now,
          ...(hello.trustedCaFingerprints.length > 0 ? { trustedCas: trusted } : {}),
        }));
      });
      if (!r.accepted) {
        progress.wrote = false;
        throw helloRefusal(agentId, serial, r.before);
      }
      rec = r.before!;
      trustChanged = hello.trustedCaFingerprints.length > 0 && !sameList(trusted, rec.trustedCas);
      if (trustChanged) rec = { ...rec, trustedCas: trusted };
    } else {
      const a = await stored(() => this.opts.store.getAgent(agentId));
      const before: AgentHelloState | undefined = a && { ...a, policyStatus: a.policyStatus ?? undefined };
      if (!before || !helloAcceptable(before, serial)) throw helloRefusal(agentId, serial, before);
      rec = before;
      stillWanted();
      progress.wrote = true;
      trustChanged = hello.trustedCaFingerprints.length > 0 && !sameList(trusted, rec.trustedCas);
      // The lease before the status: a replica whose old stream of this agent ends now sees it and leaves the agent online.
      await stored(async () => this.opts.store.claimAgentLease?.(agentId, this.bus.replicaId, leaseExpiresAt));
      await stored(() => this.opts.store.markAgentConnected(agentId, hello.agentVersion, hello.host!, now));
    }
    if (canonicalSerial(rec.certSerial) !== serial) {
      // Its last renewal answer never reached it: it renews again from this stream (the agent's schedule renews at once past half-life).
      this.opts.logger.warn({ agentId, serial, current: canonicalSerial(rec.certSerial) }, 'agent connected with its previous certificate: the renewed one never reached it');
    } else if (rec.prevCertSerial !== undefined) {
      await stored(async () => this.opts.store.retirePreviousCert?.(agentId, rec.certSerial));
    }
    if (gone()) throw new BulkheadError('BK_ERR_PROTOCOL', 'the stream ended before its hello was accepted');
    if (this.revokedIds.has(agentId)) throw new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${agentId} was revoked; enroll again with a new join token`);
    const previous = this.sessions.get(agentId);
    const s: Session = {
      agentId, call, chain: Promise.resolve(), closed: false, pending: new Map(), cert, hostname: rec.hostname,
      lastReceivedMs: performance.now(), backlog: 0, paused: false, lastAckedSeq: msg.seq, lastWriteMs: performance.now(),
      storedHash: rec.stateHash ?? null,
      trustedCas: rec.trustedCas,
      // Not while an older stream of the agent is open here: it may still be writing its status.
      storedPolicy: previous === undefined ? rec.policyStatus : undefined,
    };
    // The stored inventory is exact when the agent's inventory has the hash stored with it. Not
    // while an older stream of the agent is still open here: a write of it may be under way,
    // after the hash was read.
    const snapshotNotNeeded = this.opts.store.touchAgents !== undefined && hello.stateHash !== '' && hello.stateHash === rec.stateHash && previous === undefined;
    this.sessions.set(agentId, s);
    this.opts.metrics?.streamOpened();
    if (previous) this.close(previous, new BulkheadError('BK_ERR_PROTOCOL', 'superseded by a newer stream from the same agent'));
    call.write({ welcome: { agentId, heartbeatIntervalMs: this.heartbeatIntervalMs, serverTimeMs: now.getTime(), snapshotNotNeeded } });
    call.write({ ack: { seq: msg.seq } });
    // The bundle in force follows the welcome, unless the agent just told us it cannot receive it.
    if (this.opts.policy) {
      const bundle = this.opts.policy.bundle();
      if (hello.lastDeliveryError) s.storedPolicy = undefined; // recordDeliveryFailure may write it
      const undeliverable = hello.lastDeliveryError ? await stored(() => this.recordDeliveryFailure(agentId, hello, bundle, now)) : false;
      if (!undeliverable) call.write({ policy: bundle });
    }
    if (this.opts.trust) call.write({ trust: this.opts.trust.trustBundle() });
    if (trustChanged && !acceptHello) await stored(() => this.recordTrust(agentId, hello.trustedCaFingerprints));
    this.opts.logger.info({ agentId, hostname: hello.host.hostname, agentVersion: hello.agentVersion, snapshotNotNeeded }, 'agent connected');
    // Alerts: raised only if an agent_offline alert preceded it (AlertService decides).
    this.raiseAgentState(agentId, 'agent_online', `agent ${hello.host.hostname} (${agentId}) is back online`, hello.host.hostname);
    return s;
  }

  /**
   * Stores the failed delivery an agent reported in its hello as its policy
   * status. Returns true when the bundle in force is the one that cannot
   * reach it (larger than the receive limit the agent reported): sending it
   * would only end the stream again, so the agent stays connected on its old
   * policy until a bundle that fits is pushed. A bundle that fits means the
   * failure concerned an older one: nothing is stored, the bundle is sent and
   * the agent's PolicyStatus says the rest.
   */
  private async recordDeliveryFailure(agentId: string, hello: NonNullable<AgentMessage__Output['hello']>, bundle: PolicyBundle, now: Date): Promise<boolean> {
    const version = Number(bundle.version ?? 0);
    const limit = Number(hello.maxReceiveMessageBytes);
    const size = bundleWireBytes(bundle);
    const reported = hello.lastDeliveryError.slice(0, 1024);
    if (limit > 0 && size <= limit) {
      this.opts.logger.info({ agentId, reported, version, bundleBytes: size, agentLimitBytes: limit }, 'agent could not receive an earlier policy bundle; the one in force fits and is sent');
      return false;
    }
    const limitText = limit > 0 ? formatBytes(limit) : 'not reported';
    const error = `policy bundle could not be received: ${reported} (bundle v${version} is ${size} bytes, ${formatBytes(size)}; agent receive limit ${limitText})`;
    await this.opts.store.setAgentPolicyStatus({ agentId, version, applied: false, error, updatedAt: now });
    if (this.deliveryWarned.get(agentId) !== version) {
      this.deliveryWarned.set(agentId, version);
      this.opts.logger.warn({ agentId, version, bundleBytes: size, agentLimitBytes: limit, reported }, 'agent cannot receive the policy bundle: it keeps its previous policy');
    }
    return limit > 0;
  }

  private async apply(s: Session, msg: AgentMessage__Output): Promise<void> {
    if (s.closed) return;
    const now = this.now();
    switch (msg.body) {
      case 'snapshot':
        await this.opts.store.replaceContainers(s.agentId, msg.snapshot?.containers ?? [], now, await this.forgettingStateHash(s));
        s.storedHash = null;
        this.snapshotEvents(s.agentId, msg.snapshot?.containers ?? [], now);
        await this.trackTags(s.agentId, msg.snapshot?.containers ?? []);
        await clearUsage(this.opts.store, s.agentId); // the agent re-sends all usage on a new stream (history of running containers kept)
        break;
      // Live usage: deltas of the latest reading per container.
      case 'usage':
        await recordUsage({ store: this.opts.store, logger: this.opts.logger, historyIntervalMs: this.opts.usageHistoryIntervalMs }, s.agentId, msg.usage, now);
        break;
      case 'delta': {
        const d = msg.delta;
        if (!d || !d.containerId) throw new BulkheadError('BK_ERR_PROTOCOL', 'delta without a container id');
        if (d.kind === 'UPSERT') {
          if (!d.container || d.container.id !== d.containerId) throw new BulkheadError('BK_ERR_PROTOCOL', 'upsert delta without matching container facts');
          await this.opts.store.upsertContainer(s.agentId, d.container, now, await this.forgettingStateHash(s));
          s.storedHash = null;
          this.opts.events?.record({ type: 'container.updated', at: now, agentId: s.agentId, project: containerProject(d.container), data: containerEvent(d.container) });
          await this.trackTags(s.agentId, [d.container]);
        } else if (d.kind === 'REMOVE') {
          // The row as stored comes back from the write (no read before it).
          const gone = await this.opts.store.removeContainer(s.agentId, d.containerId, now, await this.forgettingStateHash(s));
          s.storedHash = null;
          this.opts.events?.record({
            type: 'container.removed', at: now, agentId: s.agentId, project: gone?.project ?? '',
            data: { containerId: d.containerId, name: gone?.name ?? null },
          });
        } else {
          throw new BulkheadError('BK_ERR_PROTOCOL', `unknown delta kind ${String(d.kind)}`);
        }
        break;
      }
      // Heartbeats are leases: their receipt time was noted on arrival and is written with
      // every other agent's in one batched transaction (flushSeen), not one UPDATE each.
      // Its state hash too: everything the stream sent before it is stored now, so the hash is
      // that of the stored containers; queued only when it changed.
      case 'heartbeat': {
        const hash = msg.heartbeat?.stateHash ?? '';
        if (hash !== '' && hash.length <= 128 && hash !== s.storedHash && this.opts.store.touchAgents) {
          this.hashes.set(s.agentId, { s, hash });
          s.storedHash = hash;
        }
        break;
      }
      // Policy: what the agent applied, and what it found and did.
      case 'policyStatus': {
        const st = msg.policyStatus;
        if (!st) throw new BulkheadError('BK_ERR_PROTOCOL', 'policy status without a body');
        const reported = { version: Number(st.version), applied: st.applied, error: st.error.slice(0, 4096) };
        const known = s.storedPolicy;
        if (known === undefined || known.version !== reported.version || known.applied !== reported.applied || known.error !== reported.error) {
          await this.opts.store.setAgentPolicyStatus({ agentId: s.agentId, ...reported, updatedAt: now });
          s.storedPolicy = reported;
        }
        if (!st.applied) this.opts.logger.warn({ agentId: s.agentId, version: Number(st.version), error: st.error }, 'agent refused the policy bundle');
        break;
      }
      case 'violation':
        await this.recordViolation(s, msg.violation);
        break;
      // Host audit: acknowledged once stored, so the agent's outbox lets it go.
      case 'audit':
        await recordHostAudit({ store: this.opts.store, alerts: this.opts.alerts, logger: this.opts.logger, now: this.now }, s.agentId, msg.audit);
        break;
      // Manual commands: the answer to sendCommand().
      case 'commandResult': {
        const r = msg.commandResult;
        const p = r ? s.pending.get(r.id) : undefined;
        if (!r || !p) {
          this.opts.logger.warn({ agentId: s.agentId, id: r?.id?.slice(0, 64) }, 'command result for no pending command (answered too late?)');
          break;
        }
        s.pending.delete(r.id);
        clearTimeout(p.timer);
        p.resolve(r);
        break;
      }
      case 'renewCert':
        await this.renewCert(s, msg.renewCert?.csrPem ?? '');
        break;
      case 'trustAck': {
        // Every welcome carries the trust bundle and the agent acknowledges it: on a reconnect
        // (a replica failover: hundreds at once) the same CAs again, not written again.
        const fps = trustedFingerprints(msg.trustAck?.caFingerprints ?? []);
        if (sameList(fps, s.trustedCas)) break;
        await this.recordTrust(s.agentId, fps);
        s.trustedCas = fps;
        break;
      }
      // Signature verdicts the agent decided: stored for every replica's dry-run, never fatal
      // (the agent re-sends them all on its next stream).
      case 'signatureVerdicts':
        try {
          await this.opts.signatureVerdicts?.record(s.agentId, (msg.signatureVerdicts?.verdicts ?? []).slice(0, 1024));
        } catch (err) {
          this.opts.logger.warn({ err: (err as Error).message, agentId: s.agentId }, 'storing signature verdicts failed; the dry-run misses them until the agent re-sends them');
        }
        break;
      case 'hello':
        throw new BulkheadError('BK_ERR_PROTOCOL', 'hello sent twice on one stream');
      default:
        throw new BulkheadError('BK_ERR_PROTOCOL', 'empty agent message');
    }
    this.writeAck(s, msg.seq);
  }

  /**
   * Before a container write: the agent's stored state hash will no longer describe the stored
   * containers, so it is dropped from the queue here and the write clears it in the store,
   * atomically with the write (ContainerWriteOptions.clearStateHash; it used to be a
   * transaction of its own ahead of the write: 3 more statements per delta). A flush under way
   * may be writing the hash: it is waited for first, so the clear is never overtaken by it. The
   * caller sets `s.storedHash = null` once the write is stored; should the write fail, the hash
   * stays marked as possibly stored and the retry clears it again.
   */
  private async forgettingStateHash(s: Session): Promise<ContainerWriteOptions> {
    if (s.storedHash === null || !this.opts.store.touchAgents) return {};
    this.hashes.delete(s.agentId);
    if (this.seenFlushing) await this.seenFlushing;
    return { clearStateHash: true };
  }

  /**
   * Stores a violation report once (re-sends after a reconnect carry the same
   * id). A malformed report is logged and acknowledged, not fatal: the agent
   * spools reports until acked, and a stream dropped over one would resend it forever.
   */
  private async recordViolation(s: Session, v: ViolationReport__Output | null | undefined): Promise<void> {
    const agentId = s.agentId;
    if (!v || !v.id || v.id.length > 128 || !v.ruleId) {
      this.opts.logger[s.malformedWarned ? 'debug' : 'warn'](
        { agentId, id: v?.id?.slice(0, 128), ruleId: v?.ruleId?.slice(0, 128) },
        s.malformedWarned ? 'dropped a malformed violation report' : 'dropped a malformed violation report (further ones on this stream are logged at debug)',
      );
      s.malformedWarned = true;
      return;
    }
    const cut = (x: string, n = 1024) => (x.length > n ? x.slice(0, n) : x);
    const atMs = Number(v.atMs);
    // Alerts: the row says its alert is still due until the alert's own transaction clears it,
    // so a controller killed in between raises it at its next start (recoverPendingAlerts).
    const alertDue = this.opts.alerts !== undefined && alertFromViolation(agentId, undefined, v) !== undefined;
    const inserted = await this.opts.store.insertViolation({
      id: v.id,
      agentId,
      containerId: cut(v.containerId, 128),
      containerName: cut(v.containerName, 256),
      imageRef: cut(v.imageRef),
      project: cut(v.project, 256),
      ruleId: cut(v.ruleId, 256),
      severity: cut(v.severity, 32),
      mode: cut(v.mode, 32),
      source: cut(v.source, 32),
      message: cut(v.message, 4096),
      evidenceJson: cut(v.evidenceJson, 64 * 1024),
      denied: v.denied,
      action: {
        type: cut(v.action?.type ?? '', 32),
        result: cut(v.action?.result ?? '', 32),
        error: cut(v.action?.error ?? '', 4096),
        durationMs: Number(v.action?.durationMs ?? 0),
      },
      at: Number.isFinite(atMs) && atMs > 0 ? new Date(atMs) : this.now(),
      policyVersion: Number(v.policyVersion),
      exemptedBy: cut(v.exemptedBy),
      alertPending: alertDue,
    });
    if (inserted) this.opts.logger.info({ agentId, ruleId: v.ruleId, containerId: v.containerId, mode: v.mode, denied: v.denied, action: v.action?.type }, 'violation reported');
    if (inserted) this.opts.metrics?.violationRecorded({ ...v, action: v.action ? { ...v.action, durationMs: Number(v.action.durationMs) } : null }); // metrics
    // Alerts: one alert per new report (violation / action / action_failed / authz_denied).
    // Stored: from here nothing may throw, or a retry would find it stored and never raise its alert.
    const host = !(inserted && alertDue) ? undefined : (s.hostname ?? (await this.opts.store.getAgent(agentId).catch(() => undefined))?.hostname);
    const alert = inserted && alertDue ? alertFromViolation(agentId, host, v) : undefined;
    if (alert) this.raise({ ...alert, violationId: v.id });
  }

  /**
   * Raises the alerts of violations stored before a crash whose alert was never committed:
   * the agent had its acknowledgement (the violation was stored), so nobody sends them again.
   * Run once at start, before any stream is served. Returns how many were raised.
   */
  async recoverPendingAlerts(): Promise<number> {
    if (!this.opts.alerts) return 0;
    let raised = 0;
    const hosts = new Map<string, string | undefined>();
    // Each raise clears its row's mark, so every round reads the next ones; bounded in case a store never clears.
    for (let round = 0; round < 1000; round++) {
      const pending = await this.opts.store.listAlertPendingViolations(500);
      if (pending.length === 0) break;
      const raises: Promise<unknown>[] = [];
      for (const r of pending) {
        if (!hosts.has(r.agentId)) hosts.set(r.agentId, (await this.opts.store.getAgent(r.agentId))?.hostname);
        const report: ViolationReport__Output = {
          id: r.id, containerId: r.containerId, containerName: r.containerName, imageRef: r.imageRef, project: r.project, ruleId: r.ruleId,
          severity: r.severity, mode: r.mode, source: r.source, message: r.message, evidenceJson: r.evidenceJson, denied: r.denied,
          action: r.action.type === '' ? null : { ...r.action, detail: '' }, atMs: r.at.getTime(), policyVersion: r.policyVersion, exemptedBy: r.exemptedBy,
        };
        const alert = alertFromViolation(r.agentId, hosts.get(r.agentId), report);
        // Nothing to raise (cannot happen for a row marked pending): raise a plain finding rather than leave the mark forever.
        raises.push(this.opts.alerts.raise({ ...(alert ?? { type: 'violation', message: r.message, agentId: r.agentId, ruleId: r.ruleId }), violationId: r.id }));
      }
      await Promise.all(raises);
      raised += pending.length;
    }
    if (raised > 0) this.opts.logger.warn({ raised }, 'raised the alerts of violations stored before the controller stopped without their alert');
    return raised;
  }

  /** What the agent trusts for our certificate: `ca status` shows it, `ca rotate activate` checks it. */
  private async recordTrust(agentId: string, fingerprints: string[]): Promise<void> {
    await this.opts.store.setAgentTrustedCas?.(agentId, trustedFingerprints(fingerprints));
  }

  // ---- certificate renewal ---------------------------------------------------
  /**
   * Answers a renewal request with a CertRenewal: the new certificate, or the
   * refusal. A refusal keeps the stream (the agent retries with backoff) unless
   * the agent is revoked: then the stream is closed as revoke() would.
   */
  private async renewCert(s: Session, csrPem: string): Promise<void> {
    const renewal = this.opts.renewal;
    let reply: NonNullable<ControllerMessage['certRenewal']>;
    let revoked = false;
    if (!renewal) {
      reply = { error: new BulkheadError('BK_ERR_CONFLICT', 'this controller does not renew agent certificates over the link').toString() };
    } else {
      try {
        const issued = await renewAgentCert(
          { store: this.opts.store, logger: this.opts.logger, now: this.now, options: renewal },
          { agentId: s.agentId, certRaw: s.cert.raw, serial: s.cert.serial, peer: s.call.getPeer(), revoked: () => this.revokedIds.has(s.agentId) },
          csrPem,
        );
        reply = { certificatePem: issued.certPem, notAfterMs: issued.notAfter.getTime(), serial: issued.serial };
      } catch (err) {
        const e = err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', undefined, { cause: err });
        revoked = e.code === 'BK_ERR_AGENT_REVOKED';
        reply = { error: e.toString() };
      }
    }
    if (!s.closed) s.call.write({ certRenewal: reply });
    if (revoked) this.close(s, new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${s.agentId} was revoked; enroll again with a new join token`));
  }

  /** Tag tracking never fails the stream: the inventory is stored; the next report tries again. */
  private async trackTags(agentId: string, containers: readonly ContainerFacts__Output[]): Promise<void> {
    if (!this.opts.tags) return;
    try {
      await this.opts.tags.observe(agentId, containers);
    } catch (err) {
      this.opts.logger.error({ err, agentId }, 'recording image tags failed');
    }
  }

  // ---- alerts -----------------------------------------------------
  /** Never blocks or fails the link: a failed raise is logged. */
  private raise(input: Parameters<AlertSink['raise']>[0]): void {
    this.opts.alerts?.raise(input).catch((err: unknown) => this.opts.logger.error({ err, alertType: input.type }, 'raising an alert failed'));
  }

  /**
   * A stream that ends is often an agent restart (upgrade, config change):
   * agent_offline only if it has not reconnected within offlineAfterMs.
   */
  private raiseOfflineUnlessBack(agentId: string, why: string): void {
    if (!this.opts.alerts) return;
    const timer = setTimeout(() => {
      this.offlineTimers.delete(timer);
      if (this.sessions.has(agentId)) return;
      // Back on another replica meanwhile: its status says online again.
      void this.opts.store.getAgent(agentId).then(
        (a) => {
          if (a?.status === 'online' || this.sessions.has(agentId)) return;
          this.raiseAgentState(agentId, 'agent_offline', `agent ${agentId} is offline: its stream ${why} ${Math.round(this.offlineAfterMs / 1000)}s ago and it has not reconnected`);
        },
        (err: unknown) => this.opts.logger.error({ err, agentId }, 'checking whether an agent came back failed'),
      );
    }, this.offlineAfterMs);
    timer.unref();
    this.offlineTimers.add(timer);
  }

  /** A snapshot replaced the agent's containers: one event per project (counts), not one per container. */
  private snapshotEvents(agentId: string, containers: readonly ContainerFacts__Output[], at: Date): void {
    const events = this.opts.events;
    if (!events) return;
    const byProject = new Map<string, number>();
    for (const c of containers) byProject.set(containerProject(c), (byProject.get(containerProject(c)) ?? 0) + 1);
    if (!byProject.has('')) byProject.set('', 0);
    for (const [project, count] of byProject) events.record({ type: 'container.snapshot', at, agentId, project, data: { containers: count } });
  }

  private raiseAgentState(agentId: string, type: 'agent_offline' | 'agent_online', message: string, hostname?: string): void {
    // Agents belong to no project, and every scope may read them (GET /v1/agents): every stream sees these.
    this.opts.events?.record({ type: type === 'agent_online' ? 'agent.online' : 'agent.offline', agentId, everyScope: true, data: { hostname: hostname ?? null, message } });
    if (!this.opts.alerts) return;
    const host = hostname !== undefined ? Promise.resolve(hostname) : this.opts.store.getAgent(agentId).then((a) => a?.hostname, () => undefined);
    void host.then((h) => this.raise({ type, agentId, host: h, message }));
  }

  // ---- manual commands ----------------------------------------------
  /**
   * Sends `cmd` over the agent's live stream and resolves with its
   * CommandResult. Rejects with BK_ERR_AGENT_OFFLINE when the agent has no
   * stream, and BK_ERR_ACTION_UNCONFIRMED when no answer arrives by
   * `cmd.deadlineMs` or the stream ends first (the agent may have acted).
   */
  sendCommand(agentId: string, cmd: Command): Promise<CommandResult__Output> {
    const s = this.sessions.get(agentId);
    // Held by another replica (PostgreSQL): sent there, its result comes back here.
    if ((!s || s.closed) && this.remote) return this.remote.send(agentId, cmd);
    return this.sendLocalCommand(agentId, cmd);
  }

  /** The command on a stream held by this replica. */
  private sendLocalCommand(agentId: string, cmd: Command): Promise<CommandResult__Output> {
    const s = this.sessions.get(agentId);
    if (!s || s.closed) return Promise.reject(new BulkheadError('BK_ERR_AGENT_OFFLINE', `agent ${agentId} is not connected; it cannot act until it reconnects`));
    const id = cmd.id ?? '';
    if (id === '' || s.pending.has(id)) return Promise.reject(new BulkheadError('BK_ERR_INTERNAL', `command id "${id}" is empty or already pending`));
    const waitMs = Math.max(0, Number(cmd.deadlineMs ?? 0) - this.now().getTime());
    return new Promise<CommandResult__Output>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        reject(new BulkheadError('BK_ERR_ACTION_UNCONFIRMED', `agent ${agentId} did not answer within ${Math.round(waitMs / 100) / 10}s; the action may or may not have been carried out — check the container's state`));
      }, waitMs);
      timer.unref();
      s.pending.set(id, { resolve, reject, timer });
      s.call.write({ command: cmd });
    });
  }

  private failPending(s: Session, why: string): void {
    for (const [id, p] of s.pending) {
      clearTimeout(p.timer);
      p.reject(new BulkheadError('BK_ERR_ACTION_UNCONFIRMED', `the stream of agent ${s.agentId} closed (${why}) before it answered command ${id}; the action may or may not have been carried out — check the container's state`));
    }
    s.pending.clear();
  }

  private close(s: Session, err: BulkheadError): void {
    if (s.closed) return;
    this.opts.metrics?.streamClosed(closeReason(err.code, err.message));
    this.failPending(s, err.message);
    s.closed = true;
    if (this.sessions.get(s.agentId) === s) {
      this.sessions.delete(s.agentId);
      // Not superseded here: another replica may take the agent at once.
      const release = this.opts.store.releaseAgentLease;
      if (release) {
        void s.chain
          .then(() => (this.sessions.has(s.agentId) ? undefined : release.call(this.opts.store, s.agentId, this.bus.replicaId)))
          .catch((e: unknown) => this.opts.logger.error({ err: e, agentId: s.agentId }, 'dropping a stream lease failed; it expires'));
      }
    }
    s.call.emit('error', toServiceError(err));
  }
}

function positiveInteger(n: number, what: string): number {
  if (!(Number.isSafeInteger(n) && n >= 1)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${what} must be a positive integer`);
  return n;
}

/** Why a hello is refused, from the agent as stored (undefined: not enrolled); the store's acceptAgentHello decided. */
function helloRefusal(agentId: string, serial: string, a: AgentHelloState | undefined): BulkheadError {
  if (!a) return new BulkheadError('BK_ERR_AGENT_UNKNOWN', `agent ${agentId} is not enrolled with this controller`);
  if (a.status === 'revoked' || a.revokedAt) return new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${agentId} was revoked; enroll again with a new join token`);
  return new BulkheadError('BK_ERR_CERT_REQUIRED', `certificate serial ${serial} is not the one issued to ${agentId}`);
}

/** True when the DER certificate `raw` is signed by the PEM CA `caPem`. */
function certIssuedBy(raw: Buffer, caPem: string): boolean {
  try {
    const c = new X509Certificate(raw);
    const ca = new X509Certificate(caPem);
    return c.checkIssued(ca) && c.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** A bundle's size as a ControllerMessage on the wire: its strings plus the protobuf tags and lengths. */
function bundleWireBytes(b: PolicyBundle): number {
  return Buffer.byteLength(b.policyJson ?? '') + Buffer.byteLength(b.scansJson ?? '') + Buffer.byteLength(b.tagPinsJson ?? '') + Buffer.byteLength(b.sha256 ?? '') + 32;
}

/** "8 MiB", "64 KiB", "9.3 MiB", "900 bytes": limits are round, sizes rarely are. */
function formatBytes(n: number): string {
  for (const [unit, size] of [['MiB', 1024 * 1024], ['KiB', 1024]] as const) {
    if (n >= size) {
      const v = n / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  return `${n} bytes`;
}

/** What a container event carries: enough for a list row, not the whole facts (GET /v1/containers/… has those). */
function containerEvent(c: ContainerFacts__Output): Record<string, unknown> {
  return { containerId: c.id, name: c.name, image: c.imageRef, state: c.state };
}

/** The CA fingerprints an agent reports, as stored: well-formed ones only, at most 8. */
function trustedFingerprints(fingerprints: readonly string[]): string[] {
  return fingerprints.filter((f) => /^sha256:[0-9a-f]{64}$/.test(f)).slice(0, 8);
}

function sameList(a: readonly string[], b: readonly string[] | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
}
