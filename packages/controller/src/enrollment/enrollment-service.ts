// Owns the Enrollment gRPC service: join token + CSR in, agent certificate
// out. The agent id is chosen here; nothing in the CSR subject is trusted.
import { randomBytes } from 'node:crypto';
import {
  BulkheadError, signAgentCsr, type EnrollmentHandlers, type EnrollRequest__Output, type EnrollResponse, type Logger,
} from '@bulkhead/shared';
import type { ControllerPki } from '../pki/data-dir';
import type { Store } from '../store/store';
import { redeemJoinToken } from './join-tokens';
import { toServiceError } from '../grpc/service-error';

export interface EnrollmentServiceOptions {
  store: Store;
  pki: ControllerPki;
  logger: Logger;
  now?: () => Date;
  /** Lifetime of agent certificates. Default 90 days. */
  agentCertDays?: number;
}

export function newAgentId(): string {
  return 'agt_' + randomBytes(10).toString('hex');
}

export async function enroll(opts: EnrollmentServiceOptions, req: EnrollRequest__Output, peer: string): Promise<EnrollResponse> {
  const now = (opts.now ?? (() => new Date()))();
  if (!req.csrPem) throw new BulkheadError('BK_ERR_CSR_INVALID', 'enrollment request carries no CSR');
  const agentId = newAgentId();
  // Check the CSR before burning the token, so a malformed request leaves the token usable.
  const issued = await signAgentCsr({ ca: opts.pki.ca, csrPem: req.csrPem, agentId, validDays: opts.agentCertDays ?? 90 });
  const token = await redeemJoinToken(opts.store, req.token, agentId, now);
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
    containerCount: 0,
  });
  opts.logger.info({ agentId, hostname: req.hostname, tokenId: token.id, peer, certSerial: issued.serial }, 'agent enrolled');
  return { agentId, certificatePem: issued.certPem, caPem: opts.pki.ca.certPem, notAfterMs: issued.notAfter.getTime() };
}

export function enrollmentHandlers(opts: EnrollmentServiceOptions): EnrollmentHandlers {
  return {
    Enroll(call, callback) {
      enroll(opts, call.request, call.getPeer()).then(
        (res) => callback(null, res),
        (err: unknown) => {
          opts.logger.warn({ peer: call.getPeer(), err: err instanceof BulkheadError ? err.toString() : String(err) }, 'enrollment refused');
          callback(toServiceError(err));
        },
      );
    },
  };
}
