// Owns the Enrollment gRPC service: join token + CSR in, agent certificate
// out. The agent id is chosen here; nothing in the CSR subject is trusted.
// Enroll is open to anyone who reaches the port, so the cheap checks come
// first: attempts per client address, the request size, then the token (a
// hash compare) — only a request with a live token gets its CSR parsed and
// signed.
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import {
  BulkheadError, certFingerprint, signAgentCsr, type EnrollmentHandlers, type EnrollRequest__Output, type EnrollResponse, type Logger,
} from '@bulkhead/shared';
import type { ControllerPki } from '../pki/data-dir';
import type { Store } from '../store/store';
import { checkJoinToken, consumeJoinToken } from './join-tokens';
import { FailureLimiter } from '../auth/rate-limiter';
import { toServiceError } from '../grpc/service-error';

export interface EnrollmentServiceOptions {
  store: Store;
  pki: ControllerPki;
  logger: Logger;
  now?: () => Date;
  /** Lifetime of agent certificates. Default 90 days. */
  agentCertDays?: number;
  limits?: EnrollmentLimits;
}

export interface EnrollmentLimits {
  /** Enroll attempts (successful or not) per client address per window. Default 20. */
  perAddress?: number;
  /** Default 60 000 ms. */
  windowMs?: number;
  /** Largest Enroll request accepted, in bytes. Default 16 KiB (a CSR is ~1 KiB). */
  maxMessageBytes?: number;
}

export const DEFAULT_ENROLLMENT_LIMITS: Required<EnrollmentLimits> = { perAddress: 20, windowMs: 60_000, maxMessageBytes: 16 * 1024 };

/** What the Enroll deserializer hands on instead of decoding a request over the limit. */
interface OversizeRequest {
  readonly oversizeBytes: number;
}

function isOversize(r: unknown): r is OversizeRequest {
  return typeof r === 'object' && r !== null && 'oversizeBytes' in r;
}

/**
 * The Enrollment service definition with Enroll's own size limit. grpc-js
 * has one receive limit per server, and the agent stream needs a large one;
 * so a request over `maxBytes` is not decoded, and the handler refuses it
 * with RESOURCE_EXHAUSTED (a throwing deserializer would show as INTERNAL).
 */
export function withEnrollSizeLimit(service: grpc.ServiceDefinition, maxBytes = DEFAULT_ENROLLMENT_LIMITS.maxMessageBytes): grpc.ServiceDefinition {
  const enroll = service['Enroll'];
  if (!enroll) throw new BulkheadError('BK_ERR_INTERNAL', 'Enrollment service has no Enroll method');
  return {
    ...service,
    Enroll: {
      ...enroll,
      requestDeserialize: (buf: Buffer) => (buf.length > maxBytes ? ({ oversizeBytes: buf.length } satisfies OversizeRequest) : enroll.requestDeserialize(buf)),
    },
  };
}

/** "1.2.3.4:5678", "[::1]:5678", "ipv4:1.2.3.4:5678" → the address alone. */
export function peerAddress(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(p);
  if (v6) return v6[1]!;
  const v4 = /^(.*):\d+$/.exec(p);
  return v4 ? v4[1]! : p;
}

export function newAgentId(): string {
  return 'agt_' + randomBytes(10).toString('hex');
}

export async function enroll(opts: EnrollmentServiceOptions, req: EnrollRequest__Output, peer: string): Promise<EnrollResponse> {
  const now = (opts.now ?? (() => new Date()))();
  // The token is checked first (cheap) and consumed last: a malformed CSR
  // leaves a good token usable, and a bad token costs no CSR parsing.
  const token = await checkJoinToken(opts.store, req.token, now);
  if (!req.csrPem) throw new BulkheadError('BK_ERR_CSR_INVALID', 'enrollment request carries no CSR');
  const agentId = newAgentId();
  const ca = opts.pki.ca; // once: a reload during this call must not split the certificate from its CA
  const issued = await signAgentCsr({ ca, csrPem: req.csrPem, agentId, validDays: opts.agentCertDays ?? 90 });
  await consumeJoinToken(opts.store, token, agentId, now);
  await opts.store.insertAgent({
    id: agentId,
    hostname: req.hostname.slice(0, 253),
    status: 'offline',
    agentVersion: req.agentVersion.slice(0, 64),
    host: null,
    certSerial: issued.serial,
    certNotAfter: issued.notAfter,
    enrolledAt: now,
    lastSeenAt: null,
    connectedAt: null,
    revokedAt: null,
    certCa: certFingerprint(ca.certPem),
    containerCount: 0,
  });
  opts.logger.info({ agentId, hostname: req.hostname, tokenId: token.id, peer, certSerial: issued.serial }, 'agent enrolled');
  return { agentId, certificatePem: issued.certPem, caPem: ca.certPem, notAfterMs: issued.notAfter.getTime() };
}

export function enrollmentHandlers(opts: EnrollmentServiceOptions): EnrollmentHandlers {
  const limits = { ...DEFAULT_ENROLLMENT_LIMITS, ...(opts.limits ?? {}) };
  const attempts = new FailureLimiter({ max: limits.perAddress, windowMs: limits.windowMs });
  const admit = (peer: string, req: unknown): void => {
    const addr = peerAddress(peer);
    const nowMs = Date.now();
    const wait = attempts.retryAfterMs(addr, nowMs);
    if (wait > 0) {
      throw new BulkheadError('BK_ERR_RATE_LIMITED', `too many enrollment attempts from ${addr}: at most ${limits.perAddress} per ${limits.windowMs / 1000} s; retry in ${Math.ceil(wait / 1000)} s`);
    }
    attempts.fail([addr], nowMs);
    if (isOversize(req)) {
      throw new BulkheadError('BK_ERR_TOO_LARGE', `enrollment request is ${req.oversizeBytes} bytes; the limit is ${limits.maxMessageBytes} bytes`);
    }
  };
  return {
    Enroll(call, callback) {
      Promise.resolve()
        .then(() => admit(call.getPeer(), call.request))
        .then(() => enroll(opts, call.request, call.getPeer()))
        .then(
          (res) => callback(null, res),
          (err: unknown) => {
            opts.logger.warn({ peer: call.getPeer(), err: err instanceof BulkheadError ? err.toString() : String(err) }, 'enrollment refused');
            callback(toServiceError(err));
          },
        );
    },
  };
}
