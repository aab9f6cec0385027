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
import * as grpc from '@grpc/grpc-js';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';

/** The part of a grpc-js secure connector we touch: the options it hands to tls.connect. */
interface SecureConnector {
  connectionOptions?: { servername?: string; host?: string };
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
    return connector;
  };
  return wrapped as unknown as grpc.ChannelCredentials;
}
