// Owns the TLS credentials the agent's gRPC channels to the controller use
// (enrollment and the AgentLink stream).
//
// grpc-js 1.14 always sets the TLS ServerName (SNI) to the target host, also
// when that host is an IP address. RFC 6066 does not allow an IP there and
// Node answers with a DEP0123 warning on the first connection of every
// process. For an IP target the ServerName is therefore left out. The
// certificate check does not change: without a ServerName Node checks the
// server certificate against `host`, the same IP, so the certificate must
// still carry that IP as a SAN.
//
// The TLS context (CA, key and certificate parsed into OpenSSL) can be built
// once and reused for every channel with the same identity: building one
// costs milliseconds of CPU, which a host reconnecting now and then never
// notices but a process that holds many links (the fleet simulator, where it
// was a third of the CPU during a reconnect storm) does.
//
// The server certificate's host-name check: Node's TLS client calls
// getPeerCertificate(true) after every full handshake, which turns the whole peer chain into
// JavaScript objects (half a millisecond of CPU on Node 20, about a tenth of a reconnect's
// TLS work; the largest single item of the simulated agents in a replica failover,
// BENCHMARKS.md). With a reused context the result is remembered per exact leaf certificate
// (its DER bytes): the same bytes give the same subject and names to check the host against.
// Only that object is remembered. OpenSSL still verifies the chain against the trusted CAs and
// the validity dates on every handshake, and the host-name check still runs every time. The
// memory belongs to the TLS context, which is built anew when the trusted CAs or this agent's
// certificate change (controller-link.ts), so a new trust bundle starts with nothing remembered.
import * as grpc from '@grpc/grpc-js';
import { isIP } from 'node:net';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type DetailedPeerCertificate, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';

/** The part of a grpc-js secure connector we touch: the options it hands to tls.connect, and its connect. */
interface SecureConnector {
  connectionOptions?: ConnectionOptions & { servername?: string; host?: string };
  connect?: (socket: Socket) => Promise<{ socket: TLSSocket; secure: boolean }>;
}

/** Detailed peer certificates remembered per TLS context, by the leaf's DER (base64); a few servers per context. */
const peerCertificates = new WeakMap<SecureContext, Map<string, DetailedPeerCertificate>>();
const MAX_PEER_CERTIFICATES = 8;

/** How many detailed peer certificates were built and how many came from memory, since start (tests). */
export const peerCertificateStats = { built: 0, remembered: 0 };

/**
 * Makes `socket` answer getPeerCertificate(true) from `memory` when its leaf certificate's DER
 * is one seen before with this context; getPeerCertificate() (grpc-js asks once for its auth
 * context) is built once per socket, and gives the DER.
 */
function rememberPeerCertificates(socket: TLSSocket, memory: Map<string, DetailedPeerCertificate>): void {
  const proto = Object.getPrototypeOf(socket) as TLSSocket;
  let plain: PeerCertificate | undefined;
  // The peer's certificate is fixed once the handshake gave one; before that (or without one) nothing is kept.
  const own = (): PeerCertificate => {
    if (plain) return plain;
    const c = proto.getPeerCertificate.call(socket, false);
    if (Buffer.isBuffer(c?.raw) && c.raw.length > 0) plain = c;
    return c;
  };
  function getPeerCertificate(detailed: true): DetailedPeerCertificate;
  function getPeerCertificate(detailed?: false): PeerCertificate;
  function getPeerCertificate(detailed?: boolean): PeerCertificate | DetailedPeerCertificate {
    if (detailed !== true) return own();
    const raw = own()?.raw;
    if (!Buffer.isBuffer(raw) || raw.length === 0) return proto.getPeerCertificate.call(socket, true);
    const key = raw.toString('base64');
    const known = memory.get(key);
    if (known) {
      peerCertificateStats.remembered += 1;
      return known;
    }
    const built = proto.getPeerCertificate.call(socket, true) as DetailedPeerCertificate;
    peerCertificateStats.built += 1;
    if (Buffer.isBuffer(built.raw) && built.raw.equals(raw)) {
      if (memory.size >= MAX_PEER_CERTIFICATES) memory.delete(memory.keys().next().value!);
      memory.set(key, built);
    }
    return built;
  }
  Object.defineProperty(socket, 'getPeerCertificate', { value: getPeerCertificate, configurable: true, writable: true });
}

/**
 * grpc-js's secure connect (1.14: tls.connect with the connector's options; a connection that did
 * not verify is refused), with the peer certificate remembered per context. Undefined when the
 * connector is not laid out that way (then grpc-js's own connect runs, nothing remembered).
 */
function connectRemembering(connector: SecureConnector, context: SecureContext): SecureConnector['connect'] {
  const o = connector.connectionOptions;
  if (typeof connector.connect !== 'function' || o === undefined || o.secureContext !== context) return undefined;
  let memory = peerCertificates.get(context);
  if (!memory) peerCertificates.set(context, (memory = new Map()));
  const m = memory;
  return (socket) => new Promise((resolve, reject) => {
    const tlsSocket = tlsConnect({ socket, ...o }, () => {
      if ((o.rejectUnauthorized ?? true) && !tlsSocket.authorized) {
        reject(tlsSocket.authorizationError);
        return;
      }
      resolve({ socket: tlsSocket, secure: true });
    });
    rememberPeerCertificates(tlsSocket, m);
    tlsSocket.on('error', reject);
  });
}

type ConnectorFactory = (...args: unknown[]) => SecureConnector;

/**
 * The TLS context controllerCredentials builds, for reuse: trusting only `caPem`, presenting
 * `identity` if given (the same context grpc-js's createSsl builds).
 */
export function controllerSecureContext(caPem: string, identity?: { keyPem: string; certPem: string }): SecureContext {
  const ciphers = process.env.GRPC_SSL_CIPHER_SUITES;
  return createSecureContext({
    ca: caPem,
    ...(identity ? { key: identity.keyPem, cert: identity.certPem } : {}),
    ...(ciphers ? { ciphers } : {}),
  });
}

/**
 * Channel credentials for the controller. `context` (from controllerSecureContext, for the
 * same CA and identity) is reused instead of building a new TLS context.
 */
export function controllerCredentials(caPem: string, identity?: { keyPem: string; certPem: string }, context?: SecureContext): grpc.ChannelCredentials {
  const creds = grpc.credentials.createFromSecureContext(context ?? controllerSecureContext(caPem, identity));
  // grpc-js has no option to leave SNI out; the connector it builds per
  // subchannel holds plain tls.connect options, adjusted here before use.
  // If a later grpc-js builds connectors differently, connectionOptions is
  // absent and this changes nothing (the warning comes back, nothing breaks).
  const base = creds as unknown as { _createSecureConnector: ConnectorFactory };
  const wrapped = Object.create(creds) as typeof base;
  wrapped._createSecureConnector = (...args: unknown[]) => {
    const connector = base._createSecureConnector(...args);
    const o = connector.connectionOptions;
    if (o?.servername !== undefined && isIP(o.servername) !== 0) delete o.servername;
    // Only a context the caller keeps (one per identity and trusted CAs) remembers peer certificates.
    const remembering = context ? connectRemembering(connector, context) : undefined;
    if (remembering) connector.connect = remembering;
    return connector;
  };
  return wrapped as unknown as grpc.ChannelCredentials;
}
