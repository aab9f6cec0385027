// Owns the agent's side of the AgentLink stream: mutual TLS with the agent's
// own certificate, hello → welcome → full snapshot → deltas + heartbeats, and
// reconnection with capped exponential backoff and full jitter (reconnect-backoff.ts).
//
// Nothing is lost across a disconnect: every (re)connection starts with a full
// snapshot of the inventory, which supersedes any delta that was in flight, and
// resends every spooled report the controller has not acknowledged. The one
// exception: the hello and every heartbeat carry the inventory's state hash, and when
// the controller's welcome says it holds that same hash (its stored inventory is
// exact) and the inventory still has it at the welcome, the snapshot is skipped and
// deltas follow from there (docs/architecture.md#inventory-state-hash).
//
// Several controller addresses (replicas of one controller on one database): the
// link uses one at a time, starting with the first, and moves to the next one in
// the list after every failed attempt and every dropped stream, so a replica that
// died costs one backoff delay (250–500 ms after a stream that was up) before the
// next replica is asked. It stays with a replica that answers; there is no move
// back. Each address gets its own channel, whose TLS check is against that
// address's host name (or IP), so every replica's server certificate must carry the
// name the agent is given for it (docs/cli.md#several-controllers-failover).
// A replica that stops answering without closing the connection (a host lost, a
// network partition) is noticed by the silence watchdog: nothing from it for
// 3 heartbeat intervals (at least 5 s) while a message waits for its acknowledgement.
//
// With `renewal`, the certificate is renewed over this stream before it
// expires (enroll/cert-renewal.ts) and the link reconnects with the new one.
//
// A message too large to receive (a policy bundle over the receive limit)
// kills the stream before the agent can answer it, so the failure is
// remembered and told in the next hello; until a bundle arrives, reconnects
// keep backing off instead of fetching the same bundle every half second.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import {
  BulkheadError, VERSION, inventoryStateHash, issuedByOneOf, loadProto, parseErrorString, type AgentLinkClient, type AgentMessage, type ContainerDelta,
  type ContainerFacts, type ControllerMessage__Output, type HostFacts, type Logger, type PolicyBundle__Output,
  type PolicyStatus, type ViolationReport, type Command__Output, type CommandResult, type AuditReport,
} from '@bulkhead/shared';
import type { ReportSpool } from './report-spool';
import { AuditOutbox } from './audit-outbox';
import { controllerCredentials, controllerSecureContext } from './controller-credentials';
import type { AgentCredentials } from '../state/agent-state';
import { CertRenewer, reenrollHint, type RenewalAnswer } from '../enroll/cert-renewal';
import { acceptTrustBundle, saveTrust, trustedFingerprints, type TrustBundleInput } from './trust-bundle';
import type { CertRenewalOptions } from '../enroll/cert-renewal-options';
import { DEFAULT_RECONNECT_BACKOFF, reconnectCeilingMs, reconnectDelayMs, type ReconnectBackoff } from './reconnect-backoff';
import { formatControllerList, grpcTarget, parseControllerList } from './controller-address';
import { identityControllers } from '../state/agent-state';
import { STALL_RECHECK_MS, stallAwareTimeout, tickWasLate, type StallAwareTimer } from './stall-aware-timer';

/** What the link needs from the Docker side. */
export interface LinkInventory {
  /** The current inventory, synchronously. */
  inventory(): ContainerFacts[];
  /**
   * How many containers inventory() would return, without building it: every
   * heartbeat (5 s) carries the count, and building the reported inventory
   * copies every container's facts. Default: inventory().length.
   */
  count?(): number;
  /** Calls `listener` for every change from now on; returns an unsubscribe. */
  subscribe(listener: (delta: ContainerDelta) => void): () => void;
}

export interface ControllerLinkOptions {
  credentials: AgentCredentials;
  inventory: LinkInventory;
  hostFacts: () => Promise<HostFacts>;
  logger: Logger;
  /**
   * Backoff bounds (reconnect-backoff.ts). Defaults 500 ms and 30 s. The ceiling doubles per
   * failed attempt from `minBackoffMs` and is never more than half the time since the link was
   * lost (nor less than `minBackoffMs`); once the link has been down `backoffSpreadAfterMs`
   * (1 s) it is at least `backoffSpreadMs` (4 s; never above `maxBackoffMs`), so a fleet's
   * reconnects spread over seconds. The delay is drawn uniformly below it (full jitter).
   */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  backoffSpreadMs?: number;
  backoffSpreadAfterMs?: number;
  /** Monotonic clock in ms for how long the link has been down (tests). Default performance.now. */
  now?: () => number;
  /**
   * Retry interval once the controller refused this agent's certificate
   * (BK_ERR_CERT_REQUIRED: issued by another controller's CA, or no longer the
   * one on record). Retrying soon cannot help; only enrolling again can.
   * Default 60 s.
   */
  certRefusedRetryMs?: number;
  /**
   * Overrides the controller addresses from identity.json (`run --controller`): one, or several
   * replicas (a list, or comma-separated), used in order.
   */
  controller?: string | readonly string[];
  /**
   * How long a new stream may take from the attempt to the controller's welcome before the
   * attempt counts as failed and the next address is tried (an address that swallows packets
   * would otherwise hold the link for the TCP connect timeout). Default 10 s.
   */
  welcomeTimeoutMs?: number;
  /**
   * The silence watchdog's least bound: a stream is given up when nothing came from the
   * controller for SILENCE_HEARTBEATS heartbeat intervals, but never sooner than this (a
   * controller busy for a moment under short test heartbeats is not dead). Default 5 s.
   */
  minSilenceMs?: number;
  random?: () => number;
  /** Durable spool for violation reports; without it reports made while disconnected are lost. */
  spool?: ReportSpool;
  /** Applies a policy bundle pushed by the controller; the result is reported back. */
  onPolicy?: (bundle: PolicyBundle__Output) => PolicyStatus | Promise<PolicyStatus>;
  /** Carries out a manual command; the result is sent back on the same stream. */
  onCommand?: (cmd: Command__Output) => Promise<CommandResult>;
  /** Host audit: the latest report until acknowledged; default a memory-only slot. */
  auditOutbox?: AuditOutbox;
  /** Renews the certificate in `stateDir` over the link (agent.ts turns it on); without it nothing renews. */
  renewal?: { stateDir: string; options?: CertRenewalOptions };
  /**
   * gRPC receive limit for messages from the controller. Default
   * DEFAULT_MAX_RECEIVE_MESSAGE_BYTES (8 MiB); tests set it small to make a
   * bundle undeliverable.
   */
  maxReceiveMessageBytes?: number;
}

/**
 * The controller's MAX_POLICY_BUNDLE_BYTES: the largest bundle it sends
 * (docs/limits.md). Below it, a bundle the controller accepted would never arrive.
 */
export const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 8 * 1024 * 1024;

export const DEFAULT_CERT_REFUSED_RETRY_MS = 60_000;

export const DEFAULT_WELCOME_TIMEOUT_MS = 10_000;

/** Silence from the controller, in heartbeat intervals, after which a stream with unacknowledged messages is given up. */
export const SILENCE_HEARTBEATS = 3;

export const DEFAULT_MIN_SILENCE_MS = 5_000;

/**
 * Failures that mean this agent's credentials and the controller's CA do not
 * belong together; only enrolling again helps. Each gets the slow retry and
 * an error line with the enroll command instead of the fast back-off.
 */
const CA_MISMATCH: Partial<Record<string, string>> = {
  BK_ERR_CERT_REQUIRED: 'the controller refused this agent\'s certificate (not issued by its CA, or no longer the one on record)',
  BK_ERR_CA_PIN_MISMATCH: 'the controller\'s certificate is not from the CA this agent enrolled with',
};

export type LinkState = 'connecting' | 'connected' | 'backoff' | 'stopped';

/** Errors after which retrying soon cannot help; we still retry, slowly. */
const PERMANENT = new Set(['BK_ERR_CERT_EXPIRED', 'BK_ERR_AGENT_REVOKED', 'BK_ERR_AGENT_UNKNOWN', 'BK_ERR_CERT_REQUIRED', 'BK_ERR_AGENT_ID_MISMATCH']);

export class ControllerLink {
  private client: AgentLinkClient | undefined;
  /** The current channel already carried a Connect attempt; the next attempt gets a new one. */
  private clientTried = false;
  private call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output> | undefined;
  private seq = 0;
  private ackedSeq = 0;
  private attempt = 0;
  /** When the failing streak began (the link lost, or the first attempt failed); undefined while it is healthy. */
  private downSince: number | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private stateValue: LinkState = 'connecting';
  private lastError: BulkheadError | undefined;
  private readonly listeners = new Set<(s: LinkState) => void>();
  /** Report ids sent on the current stream, by the sequence number that carried them. */
  private inFlight: { seq: number; id: string }[] = [];
  /** Host audit: the sequence number that carried the pending audit report on this stream. */
  private auditInFlight: { seq: number; takenAtMs: number } | undefined;
  private auditSlot: AuditOutbox | undefined;
  /** The pair the link connects with; replaced after a renewal. */
  private creds: AgentCredentials;
  private renewer: CertRenewer | undefined;
  /** The renewal request waiting for its CertRenewal on the current stream. */
  private renewalWait: { resolve: (a: RenewalAnswer) => void; reject: (e: BulkheadError) => void; timer: NodeJS.Timeout } | undefined;
  /** The trusted CAs the current channel was built with; a new trust bundle rebuilds it at the next connection. */
  private clientCaPem: string | undefined;
  /** The issuing CA a renewal was started for, so a bundle repeated on every connection does not start it again. */
  private renewingForCa: string | undefined;
  /** Why the last stream could not receive a controller message; told in each hello until a bundle arrives. */
  private deliveryError: string | undefined;
  /** The controller addresses (one or more replicas), and which one the current or next attempt uses. */
  private readonly addresses: string[];
  private addressIndex = 0;
  /** The TLS context built for these PEMs, reused by every channel while they are the credentials. */
  private tlsContext: { caPem: string; keyPem: string; certPem: string; context: SecureContext } | undefined;
  /** Set when the current attempt has no welcome after welcomeTimeoutMs (re-checked after a stall of this process). */
  private welcomeTimer: StallAwareTimer | undefined;
  /** The silence watchdog's verdict deferred past a stall of this process, until the pending input is read. */
  private silenceRecheck: StallAwareTimer | undefined;
  /** Times a welcome or silence deadline fired late (this process stalled) and was re-checked after reading input. */
  readonly stallRechecks = { welcome: 0, silence: 0 };
  /** When the current stream last heard from the controller (monotonic ms), for the silence watchdog. */
  private lastHeardAt = 0;
  /** The silence watchdog: the last heartbeat's and the last other message's sequence numbers on this stream. */
  private lastHeartbeatSeq = 0;
  private lastOtherSeq = 0;
  /** This controller acknowledged a heartbeat by its own number on this stream, so an unacknowledged heartbeat means silence. */
  private heartbeatsAcked = false;
  /** The state hash the current stream's hello carried. */
  private helloHash = '';
  /**
   * What this stream told the controller: the snapshot (or the inventory the controller already
   * held) with every delta sent since applied. Heartbeats carry its hash, not the inventory's:
   * the inventory can change without a delta (a new policy's project label), and the controller
   * must never store a hash for a state it was not sent.
   */
  private sent: Map<string, ContainerFacts> | undefined;
  /** The hash of `sent`, cached until the next delta (undefined = to compute). */
  private hashCache: string | undefined;
  /** Full snapshots sent and skipped (the controller held the same state hash), since start. */
  private snapshotCounts = { sent: 0, skipped: 0 };
  /** The certificate's expiry, parsed once per certificate (every attempt checks it). */
  private notAfter: { certPem: string; ms: number } | undefined;
  /**
   * The last trust bundle that needed nothing (its CAs are the ones trusted now, and this
   * agent's certificate is from its issuing CA), with the credentials it was checked against.
   * Every welcome carries the bundle: a repeat of it is not parsed and verified again. After a
   * replica failover the agents of the dead one reconnect at once, and these checks were a
   * tenth of the simulated agents' CPU (BENCHMARKS.md, failover 2026-12-07 evening).
   */
  private trustSettled: { caPem: string; issuingCaFingerprint: string; ownCaPem: string; certPem: string } | undefined;
  /** Trust bundles checked (parsed and verified) since start; a repeat that needed nothing before is not. */
  trustBundlesChecked = 0;

  constructor(private readonly opts: ControllerLinkOptions) {
    this.creds = opts.credentials;
    this.addresses = parseControllerList(opts.controller ?? identityControllers(opts.credentials.identity));
  }

  /** The address the current stream (or the next attempt) uses. */
  get controllerAddress(): string {
    return this.addresses[this.addressIndex]!;
  }

  /** Every address this link rotates through, in order. */
  get controllerAddresses(): readonly string[] {
    return this.addresses;
  }

  private monotonicNow(): number {
    return (this.opts.now ?? performance.now.bind(performance))();
  }

  /** The credentials in use (after a renewal, the renewed ones). */
  get credentials(): AgentCredentials {
    return this.creds;
  }

  /** Why the last policy bundle could not be received, until one is; reported in every hello meanwhile. */
  get lastDeliveryError(): string | undefined {
    return this.deliveryError;
  }

  private get maxReceiveBytes(): number {
    return this.opts.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES;
  }

  get state(): LinkState {
    return this.stateValue;
  }

  get error(): BulkheadError | undefined {
    return this.lastError;
  }

  /** Full snapshots sent, and skipped because the controller already held this inventory's state hash. */
  get snapshots(): { sent: number; skipped: number } {
    return { ...this.snapshotCounts };
  }

  /** The state hash of what this stream sent the controller (cached until the next delta). */
  private sentHash(): string {
    return (this.hashCache ??= inventoryStateHash([...(this.sent?.values() ?? [])]));
  }

  /** Highest sequence number the controller acknowledged on this stream. */
  get acked(): number {
    return this.ackedSeq;
  }

  onState(l: (s: LinkState) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private reenrollHint(): string {
    return this.opts.renewal
      ? reenrollHint(this.creds, this.opts.renewal.stateDir)
      : `bulkhead-agent enroll --controller ${formatControllerList(this.addresses)} --token <new join token> --ca-fingerprint <this controller's CA fingerprint> --state-dir <state dir>`;
  }

  start(): void {
    this.makeClient();
    void this.connect();
    this.startRenewer();
  }

  private makeClient(): void {
    const { caPem, keyPem, certPem } = this.creds;
    const proto = loadProto();
    // The channel's target is this one address: grpc-js checks the server certificate against its host.
    const target = grpcTarget(this.controllerAddress);
    this.clientCaPem = caPem;
    this.clientTried = false;
    // One TLS context per identity, reused by every attempt's channel (see controller-credentials.ts).
    const t = this.tlsContext;
    if (!t || t.caPem !== caPem || t.keyPem !== keyPem || t.certPem !== certPem) {
      this.tlsContext = { caPem, keyPem, certPem, context: controllerSecureContext(caPem, { keyPem, certPem }) };
    }
    this.client = new proto.bulkhead.v1.AgentLink(target, controllerCredentials(caPem, { keyPem, certPem }, this.tlsContext!.context), {
      // This channel's subchannels are its own: a new channel connects for real (see connect())
      // whatever state an older channel's connection is in, and creating one does not scan a
      // process-wide pool of every other channel's subchannels.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      // We run our own backoff and give each attempt a new channel (connect()); these bound
      // grpc's reconnects within one channel only.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.max_receive_message_length': this.maxReceiveBytes,
    }) as unknown as AgentLinkClient;
  }

  private startRenewer(): void {
    if (this.opts.renewal && !this.renewer) {
      this.renewer = new CertRenewer({
        stateDir: this.opts.renewal.stateDir,
        credentials: this.creds,
        link: {
          connected: () => this.stateValue === 'connected',
          onConnected: (l) => this.onState((s) => s === 'connected' && l()),
          requestRenewal: (csrPem, timeoutMs) => this.requestRenewal(csrPem, timeoutMs),
          useCredentials: (c) => this.useCredentials(c),
        },
        logger: this.opts.logger.child({ component: 'cert-renewal' }),
        ...(this.opts.renewal.options ? { options: this.opts.renewal.options } : {}),
        ...(this.opts.random ? { random: this.opts.random } : {}),
      });
      this.renewer.start();
    }
  }

  /**
   * Reconnects with a renewed certificate: the current stream and channel
   * are closed and a new channel is opened with `creds`. The controller
   * accepts only the new certificate from now on.
   */
  useCredentials(creds: AgentCredentials): void {
    this.creds = creds;
    if (this.stateValue === 'stopped') return;
    this.teardown();
    if (this.retry) clearTimeout(this.retry);
    this.client?.close();
    this.attempt = 0;
    this.downSince = undefined;
    this.start();
  }

  /** Sends a CSR on the current stream and waits for the controller's CertRenewal. */
  requestRenewal(csrPem: string, timeoutMs: number): Promise<RenewalAnswer> {
    if (this.stateValue !== 'connected' || !this.call) {
      return Promise.reject(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', 'not connected to the controller'));
    }
    if (this.renewalWait) return Promise.reject(new BulkheadError('BK_ERR_CONFLICT', 'a renewal request is already waiting for its answer'));
    return new Promise<RenewalAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.renewalWait = undefined;
        reject(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `the controller did not answer the renewal request within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.renewalWait = { resolve, reject, timer };
      this.send({ renewCert: { csrPem } });
    });
  }

  private settleRenewal(a: RenewalAnswer | BulkheadError): void {
    const w = this.renewalWait;
    if (!w) return;
    this.renewalWait = undefined;
    clearTimeout(w.timer);
    if (a instanceof BulkheadError) w.reject(a);
    else w.resolve(a);
  }

  stop(): void {
    this.setState('stopped');
    this.renewer?.stop();
    this.teardown();
    if (this.retry) clearTimeout(this.retry);
    this.client?.close();
  }

  private setState(s: LinkState): void {
    if (this.stateValue === s) return;
    this.stateValue = s;
    for (const l of this.listeners) l(s);
  }

  private async connect(): Promise<void> {
    if (this.stateValue === 'stopped' || !this.client) return;
    this.setState('connecting');
    let host: HostFacts;
    try {
      host = await this.opts.hostFacts();
    } catch (err) {
      this.fail(new BulkheadError('BK_ERR_DOCKER_UNAVAILABLE', `collecting host facts failed: ${(err as Error).message}`, { cause: err }));
      return;
    }
    if ((this.stateValue as LinkState) === 'stopped') return; // stopped while we awaited
    // An expired certificate fails every handshake; say why and what to do instead of a TLS error.
    if (this.notAfter?.certPem !== this.creds.certPem) this.notAfter = { certPem: this.creds.certPem, ms: new Date(new X509Certificate(this.creds.certPem).validTo).getTime() };
    const notAfter = new Date(this.notAfter.ms);
    if (notAfter.getTime() <= Date.now()) {
      const hint = this.opts.renewal ? reenrollHint(this.creds, this.opts.renewal.stateDir) : 'bulkhead-agent enroll --controller HOST:PORT --token <new join token> --ca-fingerprint sha256:… --state-dir <state dir>';
      this.fail(new BulkheadError('BK_ERR_CERT_EXPIRED', `the agent certificate expired at ${notAfter.toISOString()} and was not renewed in time; the controller refuses it. Enroll this host again: ${hint}`));
      return;
    }
    // Every attempt gets a channel of its own. After a failed connect grpc-js keeps a channel in
    // TRANSIENT_FAILURE for its own reconnect backoff (200–1000 ms here) and fails a new call
    // from that cached state without trying ("No connection established. Last error:
    // ECONNREFUSED"), even when the controller is back: the agent then lost one more of its
    // backoff cycles. A new channel (and new credentials, so no subchannel is shared from
    // grpc-js's pool) connects for real; it costs a TLS context per attempt, at most two a
    // second. New trusted CAs since the channel was built are picked up the same way.
    if (this.clientTried || this.clientCaPem !== this.creds.caPem) {
      this.client.close();
      this.makeClient();
    }
    this.clientTried = true;
    const call = this.client!.Connect();
    this.call = call;
    this.seq = 0;
    this.ackedSeq = 0;
    this.lastHeartbeatSeq = 0;
    this.lastOtherSeq = 0;
    this.heartbeatsAcked = false;
    this.inFlight = [];
    this.auditInFlight = undefined;
    let welcomed = false;
    const address = this.controllerAddress;
    this.welcomeTimer?.clear();
    const welcomeTimeoutMs = this.opts.welcomeTimeoutMs ?? DEFAULT_WELCOME_TIMEOUT_MS;
    // Stall-aware: if this process could not run when the deadline came, the welcome may be
    // waiting unread in the socket; it is read before the deadline is judged.
    const welcomeTimer = stallAwareTimeout(() => {
      this.stallRechecks.welcome += welcomeTimer.rechecks;
      if (this.welcomeTimer === welcomeTimer) this.welcomeTimer = undefined;
      if (this.call === call && !welcomed) {
        this.fail(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `controller ${address} did not welcome this agent within ${welcomeTimeoutMs} ms`));
      }
    }, welcomeTimeoutMs); // lateness on the real clock: it is about this process's event loop
    this.welcomeTimer = welcomeTimer;
    call.on('data', (m: ControllerMessage__Output) => {
      if (this.call === call) this.lastHeardAt = this.monotonicNow();
      if (m.body === 'ack' && m.ack) this.onAck(m.ack.seq);
      else if (m.body === 'welcome' && m.welcome && !welcomed) {
        welcomed = true;
        this.onWelcome(call, m.welcome.heartbeatIntervalMs || 5000, m.welcome.snapshotNotNeeded === true);
      } else if (m.body === 'policy' && m.policy) {
        this.bundleArrived();
        void this.applyPolicy(call, m.policy);
      } else if (m.body === 'command' && m.command) {
        void this.runCommand(call, m.command);
      } else if (m.body === 'certRenewal' && m.certRenewal && this.call === call) {
        this.settleRenewal({ ...m.certRenewal, notAfterMs: Number(m.certRenewal.notAfterMs) });
      } else if (m.body === 'trust' && m.trust && this.call === call) {
        this.onTrust(m.trust);
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (this.call !== call) return;
      const parsed = parseErrorString(err.details ?? '');
      if (!parsed && isReceiveTooLarge(err)) {
        this.deliveryError = `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`;
        this.opts.logger.error(
          { reason: this.deliveryError, maxReceiveMessageBytes: this.maxReceiveBytes },
          'a message from the controller exceeds this agent\'s receive limit; the policy bundle was not received (reported to the controller on reconnect)',
        );
      }
      if (!parsed && isUntrustedServer(err)) {
        this.fail(new BulkheadError('BK_ERR_CA_PIN_MISMATCH', `the controller's server certificate is not issued by the CA this agent enrolled with (${err.details}); it is another controller, or this one was set up again with a new CA`, { cause: err }));
        return;
      }
      this.fail(parsed ? new BulkheadError(parsed.code, parsed.message) : new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `link to controller ${address} failed: ${err.details || err.message}`, { cause: err }));
    });
    call.on('end', () => {
      if (this.call !== call) return;
      this.fail(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `controller ${address} closed the stream`));
    });
    this.helloHash = inventoryStateHash(this.opts.inventory.inventory());
    this.send({
      hello: {
        stateHash: this.helloHash,
        agentId: this.creds.identity.agentId,
        agentVersion: VERSION,
        host,
        startedAtMs: Math.round(Date.now() - process.uptime() * 1000),
        lastDeliveryError: this.deliveryError ?? '',
        maxReceiveMessageBytes: this.maxReceiveBytes,
        trustedCaFingerprints: trustedFingerprints(this.creds.caPem),
      },
    });
  }

  /**
   * A CA rotation: the controller's trusted CAs changed. They are stored
   * (ca.crt) and used from the next connection on; the stream stays. A
   * certificate not from the issuing CA is renewed at once, under it.
   */
  private onTrust(b: TrustBundleInput): void {
    const settled = this.trustSettled;
    if (settled && settled.caPem === b.caPem && settled.issuingCaFingerprint === b.issuingCaFingerprint
      && settled.ownCaPem === this.creds.caPem && settled.certPem === this.creds.certPem) return;
    this.trustBundlesChecked += 1;
    let t: ReturnType<typeof acceptTrustBundle>;
    try {
      t = acceptTrustBundle(this.creds.caPem, b);
    } catch (err) {
      this.opts.logger.error({ code: (err as BulkheadError).code, reason: (err as Error).message }, 'trust bundle from the controller refused; keeping the CAs trusted now');
      return;
    }
    if (t.changed || this.creds.identity.caFingerprint !== b.issuingCaFingerprint) {
      const identity = { ...this.creds.identity, caFingerprint: b.issuingCaFingerprint };
      try {
        if (this.opts.renewal) saveTrust(this.opts.renewal.stateDir, t.caPem, identity);
      } catch (err) {
        this.opts.logger.error({ err: (err as Error).message }, 'storing the trusted controller CAs failed; keeping the CAs trusted now');
        return;
      }
      this.creds = { ...this.creds, caPem: t.caPem, identity };
      this.renewer?.updateTrust(t.caPem, b.issuingCaFingerprint);
      this.opts.logger.info({ trustedCas: t.fingerprints, issuingCa: b.issuingCaFingerprint }, 'trusted controller CAs updated');
      this.send({ trustAck: { caFingerprints: t.fingerprints } });
    }
    if (!issuedByOneOf(this.creds.certPem, t.issuingCaPem)) {
      if (this.renewer && this.renewingForCa !== b.issuingCaFingerprint) {
        this.renewingForCa = b.issuingCaFingerprint;
        this.opts.logger.info({ issuingCa: b.issuingCaFingerprint }, 'this agent\'s certificate is not from the controller\'s issuing CA; renewing it now');
        void this.renewer.renewNow();
      }
      return;
    }
    // Stored (when it changed) and this certificate is from its issuing CA: the same bundle again needs nothing.
    this.trustSettled = { caPem: b.caPem, issuingCaFingerprint: b.issuingCaFingerprint, ownCaPem: this.creds.caPem, certPem: this.creds.certPem };
  }

  private onWelcome(call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>, heartbeatMs: number, snapshotNotNeeded: boolean): void {
    if (this.call !== call) return;
    // After an undeliverable bundle a welcome proves little: the same bundle
    // follows it and kills the stream again, so the backoff keeps growing
    // until a bundle actually arrives.
    if (this.deliveryError === undefined) {
      this.attempt = 0;
      this.downSince = undefined;
    }
    this.lastError = undefined;
    if (this.welcomeTimer) this.stallRechecks.welcome += this.welcomeTimer.rechecks;
    this.welcomeTimer?.clear();
    this.welcomeTimer = undefined;
    // Subscribe before taking the snapshot: both happen in this same tick, so no change falls between them.
    this.unsubscribe = this.opts.inventory.subscribe((delta) => {
      if (this.send({ delta }) > 0 && this.sent && delta.containerId) {
        if (delta.kind === 'REMOVE' || delta.kind === 2) this.sent.delete(delta.containerId);
        else if (delta.container) this.sent.set(delta.containerId, delta.container);
        this.hashCache = undefined;
      }
    });
    const containers = this.opts.inventory.inventory();
    // The controller holds the hash the hello carried; skip the snapshot only if nothing changed
    // since the hello (changes between hello and welcome were sent as no delta).
    const hash = inventoryStateHash(containers);
    this.sent = new Map(containers.map((c) => [c.id ?? '', c]));
    this.hashCache = hash;
    const skip = snapshotNotNeeded && this.helloHash !== '' && hash === this.helloHash;
    if (skip) this.snapshotCounts.skipped += 1;
    else {
      this.send({ snapshot: { containers, takenAtMs: Date.now() } });
      this.snapshotCounts.sent += 1;
    }
    // Reports the controller has not acknowledged yet (made offline, or lost with the last stream).
    for (const r of this.opts.spool?.list() ?? []) this.sendReport(r);
    const audit = this.audits.pending;
    if (audit) this.sendAudit(audit);
    this.lastHeardAt = this.monotonicNow();
    const silenceLimitMs = Math.max(SILENCE_HEARTBEATS * heartbeatMs, this.opts.minSilenceMs ?? DEFAULT_MIN_SILENCE_MS);
    // Silence watchdog: a replica that stopped without closing the connection (its host
    // lost, a partition) acknowledges nothing; give the stream up and try the next address.
    // Only while something waits for its acknowledgement: a heartbeat only once this
    // controller was seen to acknowledge heartbeats (a protocol that stops acknowledging
    // them must not make an idle link look dead).
    const silent = (): number | undefined => {
      const silentMs = this.monotonicNow() - this.lastHeardAt;
      const waiting = this.lastOtherSeq > this.ackedSeq || (this.heartbeatsAcked && this.lastHeartbeatSeq > this.ackedSeq);
      return waiting && silentMs > silenceLimitMs ? silentMs : undefined;
    };
    const giveUp = (silentMs: number): void => this.fail(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `controller ${this.controllerAddress} sent nothing for ${Math.round(silentMs)} ms (limit ${silenceLimitMs} ms) with ${this.seq - this.ackedSeq} message(s) unacknowledged`));
    // The tick's own lateness is judged on the real clock (it is about this process's event loop).
    let tickDue = performance.now() + heartbeatMs;
    this.heartbeat = setInterval(() => {
      if (this.call !== call) return;
      const tickAt = performance.now();
      const late = tickWasLate(tickDue, tickAt);
      tickDue = tickAt + heartbeatMs;
      const silentMs = silent();
      if (silentMs !== undefined && !this.silenceRecheck) {
        if (!late) {
          giveUp(silentMs);
          return;
        }
        // This process itself stalled past the tick: the controller's answers may be waiting
        // unread in the socket. Judge again once they are read.
        this.stallRechecks.silence += 1;
        const recheck = stallAwareTimeout(() => {
          if (this.silenceRecheck === recheck) this.silenceRecheck = undefined;
          if (this.call !== call) return;
          const still = silent();
          if (still !== undefined) giveUp(still);
        }, STALL_RECHECK_MS, { afterInput: true });
        this.silenceRecheck = recheck;
      }
      this.lastHeartbeatSeq = this.send({ heartbeat: { sentAtMs: Date.now(), containerCount: this.opts.inventory.count?.() ?? this.opts.inventory.inventory().length, stateHash: this.sentHash() } });
    }, heartbeatMs);
    this.heartbeat.unref();
    this.setState('connected');
    this.opts.logger.info({ agentId: this.creds.identity.agentId, controller: this.controllerAddress, containers: containers.length, snapshot: skip ? 'skipped (controller holds this state)' : 'sent' }, 'connected to controller');
  }

  private send(body: Omit<AgentMessage, 'seq'>): number {
    if (!this.call) return 0;
    this.seq += 1;
    if (body.heartbeat === undefined) this.lastOtherSeq = this.seq;
    this.call.write({ seq: this.seq, ...body });
    return this.seq;
  }

  /**
   * Records a violation report: spooled first (so a crash or an outage loses
   * nothing), then sent at once when connected, else on the next connection.
   */
  report(r: ViolationReport): void {
    void this.opts.spool?.add(r);
    if (this.stateValue === 'connected') this.sendReport(r);
  }

  /**
   * Live usage: sent only while connected, never spooled — usage
   * is perishable, and after a reconnect the next report carries everything
   * again. Returns false when it was not sent.
   */
  sendUsage(r: NonNullable<AgentMessage['usage']>): boolean {
    if (this.stateValue !== 'connected') return false;
    return this.send({ usage: r }) > 0;
  }

  /** Signature verdicts for the controller's dry-run: like usage, sent only while connected, never spooled. */
  sendSignatureVerdicts(r: NonNullable<AgentMessage['signatureVerdicts']>): boolean {
    if (this.stateValue !== 'connected') return false;
    return this.send({ signatureVerdicts: r }) > 0;
  }

  private sendReport(r: ViolationReport): void {
    const seq = this.send({ violation: r });
    if (seq > 0 && r.id) this.inFlight.push({ seq, id: r.id });
  }

  // ---- host audit ------------------------------------------------------
  private get audits(): AuditOutbox {
    return (this.auditSlot ??= this.opts.auditOutbox ?? AuditOutbox.inMemory(this.opts.logger));
  }

  /**
   * Records a host audit report: it replaces any unsent one (only the latest
   * matters), is kept until the controller acknowledges it, and is sent at
   * once when connected, else on the next connection.
   */
  reportAudit(r: AuditReport): Promise<void> {
    const written = this.audits.put(r);
    if (this.stateValue === 'connected') this.sendAudit(r);
    return written;
  }

  private sendAudit(r: AuditReport): void {
    const seq = this.send({ audit: r });
    if (seq > 0) this.auditInFlight = { seq, takenAtMs: Number(r.takenAtMs) };
  }

  private onAck(seq: number): void {
    if (seq === this.lastHeartbeatSeq && seq > 0) this.heartbeatsAcked = true;
    this.ackedSeq = Math.max(this.ackedSeq, seq);
    if (this.auditInFlight && this.auditInFlight.seq <= seq) {
      void this.audits.ack(this.auditInFlight.takenAtMs);
      this.auditInFlight = undefined;
    }
    let n = 0;
    while (n < this.inFlight.length && this.inFlight[n]!.seq <= seq) {
      void this.opts.spool?.ack(this.inFlight[n]!.id);
      n += 1;
    }
    if (n > 0) this.inFlight.splice(0, n);
  }

  private bundleArrived(): void {
    if (this.deliveryError === undefined) return;
    this.opts.logger.info({ previousError: this.deliveryError }, 'a policy bundle arrived again after a failed delivery');
    this.deliveryError = undefined;
    this.attempt = 0;
    this.downSince = undefined;
  }

  private async applyPolicy(call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>, bundle: PolicyBundle__Output): Promise<void> {
    let status: PolicyStatus;
    try {
      status = this.opts.onPolicy ? await this.opts.onPolicy(bundle) : { version: bundle.version, applied: false, error: 'this agent does not enforce policy' };
    } catch (err) {
      status = { version: bundle.version, applied: false, error: (err as Error).message };
    }
    if (this.call === call) this.send({ policyStatus: status });
  }

  /**
   * Manual commands. The result goes back only on the stream that
   * asked: after a reconnect the controller has already given up on it.
   */
  private async runCommand(call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>, cmd: Command__Output): Promise<void> {
    let result: CommandResult;
    try {
      result = this.opts.onCommand
        ? await this.opts.onCommand(cmd)
        : { id: cmd.id, ok: false, error: 'BK_ERR_ACTION_FAILED: this agent does not run manual commands', detail: '', durationMs: 0, state: '' };
    } catch (err) {
      result = { id: cmd.id, ok: false, error: `BK_ERR_ACTION_FAILED: ${(err as Error).message}`, detail: '', durationMs: 0, state: '' };
    }
    if (this.call === call) this.send({ commandResult: result });
    else this.opts.logger.warn({ commandId: cmd.id, ok: result.ok }, 'command finished after its stream closed; the result is not delivered');
  }

  private teardown(): void {
    this.welcomeTimer?.clear();
    this.welcomeTimer = undefined;
    this.silenceRecheck?.clear();
    this.silenceRecheck = undefined;
    this.settleRenewal(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', 'the stream closed before the controller answered the renewal request'));
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.sent = undefined;
    this.hashCache = undefined;
    const call = this.call;
    this.call = undefined;
    if (call) {
      call.removeAllListeners('data');
      call.on('error', () => undefined); // a late error after cancel is expected
      call.cancel();
    }
  }

  private fail(err: BulkheadError): void {
    this.teardown();
    if (this.stateValue === 'stopped') return;
    this.lastError = err;
    const b: ReconnectBackoff = {
      minMs: this.opts.minBackoffMs ?? DEFAULT_RECONNECT_BACKOFF.minMs,
      maxMs: this.opts.maxBackoffMs ?? DEFAULT_RECONNECT_BACKOFF.maxMs,
      spreadMs: this.opts.backoffSpreadMs ?? DEFAULT_RECONNECT_BACKOFF.spreadMs,
      spreadAfterMs: this.opts.backoffSpreadAfterMs ?? DEFAULT_RECONNECT_BACKOFF.spreadAfterMs,
    };
    const permanent = PERMANENT.has(err.code);
    // Monotonic: a wall clock stepped back would make the outage look negative and the agent retry every ≤ 0.5 s.
    const now = this.monotonicNow();
    this.downSince ??= now;
    const ceiling = permanent ? b.maxMs : reconnectCeilingMs(b, this.attempt, now - this.downSince);
    this.attempt += 1;
    // The next attempt goes to the next address: a replica that failed is the least likely to answer.
    const failedAt = this.controllerAddress;
    this.addressIndex = (this.addressIndex + 1) % this.addresses.length;
    // A refused certificate may be one replica set up wrong; the slow retry only once every
    // address has had its try in this failing streak.
    const untried = this.attempt < this.addresses.length;
    // An expired certificate cannot recover by retrying: check rarely (the operator re-enrolls and restarts).
    const delay = err.code === 'BK_ERR_CERT_EXPIRED'
      ? this.renewer?.options.expiredRetryMs ?? 60 * 60_000
      : CA_MISMATCH[err.code] !== undefined && !untried
        ? this.opts.certRefusedRetryMs ?? DEFAULT_CERT_REFUSED_RETRY_MS
        : reconnectDelayMs(b, ceiling, this.opts.random ?? Math.random);
    const mismatch = CA_MISMATCH[err.code];
    const where = { controller: failedAt, ...(this.addresses.length > 1 ? { next: this.controllerAddress } : {}) };
    if (mismatch !== undefined && !untried) {
      this.opts.logger.error(
        { code: err.code, reason: err.message, retryInMs: delay, attempt: this.attempt, ...where },
        `${mismatch}; retrying will not help — enroll this host again: ${this.reenrollHint()}`,
      );
    } else (permanent ? this.opts.logger.error.bind(this.opts.logger) : this.opts.logger.warn.bind(this.opts.logger))(
      { code: err.code, reason: err.message, retryInMs: delay, attempt: this.attempt, ...where },
      'controller link down',
    );
    this.setState('backoff');
    this.retry = setTimeout(() => void this.connect(), delay);
  }
}

/**
 * A message the channel refused for its size: grpc-js cancels the call with
 * RESOURCE_EXHAUSTED ("Received message larger than max (N vs M)"). The
 * controller's own errors carry a BK_ERR code and are parsed before this.
 */
function isReceiveTooLarge(err: grpc.ServiceError): boolean {
  return err.code === grpc.status.RESOURCE_EXHAUSTED || /larger than max/i.test(err.details ?? '');
}

/**
 * The agent's TLS check of the controller's certificate failed against the CA
 * it pinned at enrollment (Node's OpenSSL messages). A name mismatch is left
 * out: that is a wrong address, not a wrong CA.
 */
function isUntrustedServer(err: grpc.ServiceError): boolean {
  return err.code === grpc.status.UNAVAILABLE
    && /self[- ]signed certificate in certificate chain|unable to get local issuer certificate|unable to verify the first certificate|certificate signature failure/i.test(err.details ?? '');
}
