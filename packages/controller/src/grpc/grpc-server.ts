// Owns the controller's gRPC listener. One port serves both services:
// the TLS layer *requests* a client certificate but does not demand one, so an
// agent without a certificate can enroll, while AgentLink refuses any stream
// whose certificate did not verify against our CA (grpc-js exposes a peer
// certificate to handlers only when it verified). The server sends its
// certificate chain including the CA, which lets a new agent pin the CA by
// fingerprint before it trusts anything.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { loadProto, type Logger } from '@bulkhead/shared';
import type { ControllerPki } from '../pki/data-dir';
import { LivePki } from '../pki/live-pki';
import type { Store } from '../store/store';
import { enrollmentHandlers, withEnrollSizeLimit, type EnrollmentLimits } from '../enrollment/enrollment-service';
import { describeDn } from './unverified-peer';
import { splitHostPort } from '../net/host-port';
import { AgentLinkService, type AgentLinkOptions, type AgentLinkPolicySource } from './agent-link-service';

export interface GrpcServerOptions {
  listen: string;
  store: Store;
  /** A LivePki makes certificate and trust changes take effect without a restart. */
  pki: ControllerPki | LivePki;
  logger: Logger;
  link?: Omit<AgentLinkOptions, 'store' | 'logger'>;
  agentCertDays?: number;
  /** Policy bundles pushed to agents. */
  policy?: AgentLinkPolicySource;
  /** A connection with no call in progress is closed after this long. Default 20 s. */
  idleConnectionMs?: number;
  /** A TLS handshake not finished after this long is dropped. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Enroll attempts per client address and window, and the largest Enroll request. See enrollment-service.ts. */
  enrollment?: EnrollmentLimits;
  /** The listening socket's accept queue (listen(2) backlog). Default GRPC_LISTEN_BACKLOG. */
  listenBacklog?: number;
}

/**
 * How many connections the kernel may hold for the gRPC port before the controller accepts
 * them. Node's default is 511 (grpc-js's bindAsync takes no backlog), and a replica taking over
 * a dead one's agents gets that many connects within a second while its event loop is busy with
 * their handshakes: the kernel then drops the SYNs past the queue, and each such agent's TCP
 * stack tries again only 1 s later, then 3 s, 7 s (BENCHMARKS.md, failover at fleet size:
 * 25,003 ListenOverflows in one 1,000-agent connect). Linux caps the value at
 * net.core.somaxconn (4096 by default since 5.4; docs/cli.md).
 */
export const GRPC_LISTEN_BACKLOG = 4096;

export interface RunningGrpcServer {
  server: grpc.Server;
  port: number;
  link: AgentLinkService;
  shutdown(): Promise<void>;
}

/**
 * A certificate provider whose certificate can be replaced: grpc-js builds a
 * new secure context from each update and uses it for the next handshake
 * (server.setSecureContext), so connections already open are not touched.
 * Listeners are called on the next tick: grpc-js registers its own watcher
 * only after subscribing to the provider, so a synchronous update is lost.
 */
class ReplaceableProvider implements grpc.experimental.CertificateProvider {
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly idListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();

  constructor(
    private ca: grpc.experimental.CaCertificateUpdate | null,
    private identity: grpc.experimental.IdentityCertificateUpdate | null,
  ) {}

  update(ca: grpc.experimental.CaCertificateUpdate | null, identity: grpc.experimental.IdentityCertificateUpdate | null): void {
    this.ca = ca;
    this.identity = identity;
    for (const l of this.caListeners) l(ca);
    for (const l of this.idListeners) l(identity);
  }

  addCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(l);
    process.nextTick(() => this.caListeners.has(l) && l(this.ca));
  }

  removeCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(l);
  }

  addIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.idListeners.add(l);
    process.nextTick(() => this.idListeners.has(l) && l(this.identity));
  }

  removeIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.idListeners.delete(l);
  }
}

function identityOf(pki: ControllerPki): grpc.experimental.IdentityCertificateUpdate {
  return { certificate: Buffer.from(pki.server.certPem.trimEnd() + '\n' + pki.serverIssuer), privateKey: Buffer.from(pki.server.keyPem) };
}

function trustOf(pki: ControllerPki): grpc.experimental.CaCertificateUpdate {
  return { caCertificate: Buffer.from(pki.trust.map((c) => c.trimEnd() + '\n').join('')) };
}

/**
 * The listener's credentials: the server certificate with its issuing CA,
 * and every trusted CA for client certificates. With a LivePki both follow
 * its reloads (new handshakes only).
 */
export function serverCredentials(pki: ControllerPki | LivePki, handshakeTimeoutMs = DEFAULT_HANDSHAKE_TIMEOUT_MS): grpc.ServerCredentials {
  const identity = new ReplaceableProvider(null, identityOf(pki));
  const trust = new ReplaceableProvider(trustOf(pki), null);
  if (pki instanceof LivePki) {
    pki.subscribe((next) => {
      identity.update(null, identityOf(next));
      trust.update(trustOf(next), null);
    });
  }
  const creds = grpc.experimental.createCertificateProviderServerCredentials(
    // grpc-js 1.14 names the first parameter "caCertificateProvider" but hands it
    // to a constructor whose first parameter is the identity provider: the
    // identity provider goes first.
    identity,
    trust,
    false,
  );
  return withHandshakeTimeout(creds, handshakeTimeoutMs);
}

export const DEFAULT_IDLE_CONNECTION_MS = 20_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * grpc-js has no option for the TLS handshake timeout, and Node's default is
 * 120 s: a client that opens TCP connections and never says hello would hold
 * a socket each for two minutes (grpc.max_connection_idle_ms only starts
 * once TLS is up). grpc-js builds its tls server from the credentials'
 * constructor options, so the timeout is added there; the wrapper inherits
 * everything else from the real credentials.
 */
function withHandshakeTimeout(creds: grpc.ServerCredentials, ms: number): grpc.ServerCredentials {
  const base = creds as unknown as { _getConstructorOptions(): object | null };
  const wrapped = Object.create(creds) as typeof base;
  wrapped._getConstructorOptions = () => {
    const o = base._getConstructorOptions();
    return o === null ? null : { ...o, handshakeTimeout: ms };
  };
  return wrapped as unknown as grpc.ServerCredentials;
}

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const proto = loadProto();
  const server = new grpc.Server({
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    // Agent snapshots can be large; Enroll, open to anyone who reaches the
    // port, gets its own much smaller limit (withEnrollSizeLimit).
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    // Connections that finished TLS but carry no call (including those that
    // never send the HTTP/2 preface) are closed: the agent's stream is a
    // call, so a connected agent is never idle by this measure.
    'grpc.max_connection_idle_ms': opts.idleConnectionMs ?? DEFAULT_IDLE_CONNECTION_MS,
  });
  const link = new AgentLinkService({
    ...(opts.link ?? {}),
    ...(opts.policy ? { policy: opts.policy } : {}),
    caSubject: () => opts.pki.trust.map((c) => describeDn(new X509Certificate(c).subject)).join('" or "'),
    ...(opts.pki instanceof LivePki ? { trust: opts.pki } : {}),
    store: opts.store,
    logger: opts.logger.child({ component: 'link' }),
  });
  server.addService(proto.bulkhead.v1.AgentLink.service, link.handlers());
  server.addService(
    withEnrollSizeLimit(proto.bulkhead.v1.Enrollment.service, opts.enrollment?.maxMessageBytes),
    enrollmentHandlers({
      store: opts.store,
      pki: opts.pki,
      logger: opts.logger.child({ component: 'enrollment' }),
      ...(opts.agentCertDays ? { agentCertDays: opts.agentCertDays } : {}),
      ...(opts.enrollment ? { limits: opts.enrollment } : {}),
    }),
  );
  // Before any stream: alerts of violations stored by a controller that died before writing them.
  await link.recoverPendingAlerts().catch((err: unknown) => opts.logger.error({ err }, 'raising the pending alerts of stored violations failed; they are raised at the next start'));
  // Our own listening sockets, handing each connection to grpc-js (its connection injector: the
  // same TLS, HTTP/2 and handlers as bindAsync), so that the accept queue can be larger.
  const injector = server.createConnectionInjector(serverCredentials(opts.pki, opts.handshakeTimeoutMs));
  const { listeners, port } = await listenAll(opts.listen, opts.listenBacklog ?? GRPC_LISTEN_BACKLOG, (socket) => injector.injectConnection(socket), (err) =>
    // An accept that fails (EMFILE, ENFILE …) is logged, never a crash: the listener goes on.
    opts.logger.warn({ err: err.message, code: (err as NodeJS.ErrnoException).code }, 'accepting a gRPC connection failed'),
  );
  link.start();
  return {
    server,
    port,
    link,
    async shutdown() {
      // No new connections; those open (the injector's HTTP/2 server and sessions) are closed by
      // grpc-js's shutdown below.
      for (const l of listeners) l.close();
      await link.stop();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), 3000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}

/**
 * Listens on every address `listen` ("HOST:PORT", "[v6]:PORT") resolves to, as grpc-js's
 * bindAsync does (a name such as localhost may be 127.0.0.1 and ::1; port 0: the port the first
 * one got, for all), with the given backlog. Fails when no address could be bound, naming each
 * error; addresses bound before a failure are closed.
 */
async function listenAll(listen: string, backlog: number, onConnection: (s: Socket) => void, onError: (err: Error) => void): Promise<{ listeners: NetServer[]; port: number }> {
  const { host, port: wanted } = splitHostPort(listen, 'grpc-listen');
  const addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  const listeners: NetServer[] = [];
  const errors: string[] = [];
  let port = wanted;
  for (const address of addresses) {
    const srv = createServer(onConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: address, port, backlog }, () => {
          srv.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      errors.push(`${address}:${port}: ${(err as Error).message}`);
      continue;
    }
    srv.on('error', onError);
    const bound = srv.address();
    if (port === 0 && bound !== null && typeof bound === 'object') port = bound.port;
    listeners.push(srv);
  }
  if (listeners.length === 0) {
    throw new Error(`No address added out of total ${addresses.length} resolved for ${listen}: ${errors.join('; ')}`);
  }
  return { listeners, port };
}
