// Owns reading, for a log line only, the client certificate of a stream whose
// certificate did not verify against this controller's CA. grpc-js hands a
// handler the peer certificate only when it verified, so a refusal could not
// say whose certificate it was — an agent enrolled with another controller
// looked the same as one with no certificate at all. The TLS handshake is
// unchanged (it requests a certificate and does not demand one, so Enroll
// works without one); this only looks at the TLS socket grpc-js keeps under
// the call. Nothing read here grants anything.
import { X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';

export interface UnverifiedPeer {
  /** Issuer DN of the client certificate, RDNs joined by ", ". */
  issuer: string;
  subject: string;
  /** SHA-256 of the certificate, colon-separated hex as Node prints it. */
  fingerprint: string;
  /** OpenSSL's verdict, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE or CERT_HAS_EXPIRED. */
  tlsError: string;
}

function field(o: unknown, key: string): unknown {
  return typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[key] : undefined;
}

/**
 * The TLS socket under a grpc-js server call: call.call is the intercepting
 * call, which holds the HTTP/2 stream (server interceptors add `nextCall`
 * layers in front of it). Undefined if grpc-js is laid out otherwise.
 */
function tlsSocketOf(call: object): TLSSocket | undefined {
  let c = field(call, 'call');
  for (let i = 0; i < 8 && c !== undefined && field(c, 'stream') === undefined; i++) c = field(c, 'nextCall');
  const socket = field(field(field(c, 'stream'), 'session'), 'socket');
  return socket instanceof TLSSocket ? socket : undefined;
}

export function describeDn(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

/** The client certificate a call's TLS peer presented but that did not verify; undefined if it sent none. */
export function unverifiedPeerCertificate(call: object): UnverifiedPeer | undefined {
  const socket = tlsSocketOf(call);
  if (!socket || socket.authorized) return undefined;
  const raw = socket.getPeerCertificate()?.raw;
  if (!raw) return undefined;
  const x = new X509Certificate(raw);
  const err = socket.authorizationError as unknown;
  return {
    issuer: describeDn(x.issuer),
    subject: describeDn(x.subject),
    fingerprint: x.fingerprint256,
    tlsError: err instanceof Error ? (field(err, 'code') as string | undefined) ?? err.message : String(err ?? ''),
  };
}
