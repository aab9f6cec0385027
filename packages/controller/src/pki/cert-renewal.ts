// Owns renewing an agent's client certificate over its live AgentLink stream.
// The caller is whoever holds the stream's verified client certificate: the
// renewal is granted only when that certificate is the one on record for the
// agent (so an older, replaced certificate cannot renew), the agent is not
// revoked, and the CSR brings a key pair other than the current one. The new
// certificate keeps the agent id and gets a fresh validity; its serial replaces
// the old one in the store, which is what every later hello is checked against.
// The replaced serial stays accepted (for hellos and for renewing) until the agent
// first connects with the new certificate: a renewal answer lost on the way (the
// stream dropped, the agent crashed before storing it) must not strand the agent.
import { BulkheadError, canonicalSerial, certFingerprint, signAgentCsr, type KeyAndCert, type Logger } from '@bulkhead/shared';
import type { Store } from '../store/store';
import type { AuditEntry } from '../audit/audit-store';

export interface CertRenewalOptions {
  /** The CA that signs; a function when it can change while the controller runs (a CA rotation). */
  ca: KeyAndCert | (() => KeyAndCert);
  /** Lifetime of a renewed certificate. Default 90 days, as at enrollment. */
  agentCertDays?: number;
  /** Lifetime in milliseconds; overrides agentCertDays (tests exercising renewal use seconds). */
  agentCertMs?: number;
  /** Where renewals (granted and refused) are recorded; the controller passes the API's audit log. */
  audit?: { record(e: AuditEntry): Promise<void> | void };
}

/** The stream asking: its identity comes from the TLS layer, never from the request. */
export interface RenewalCaller {
  agentId: string;
  /** DER of the client certificate the stream was opened with. */
  certRaw: Buffer;
  /** Canonical serial of that certificate. */
  serial: string;
  /** gRPC peer string, for the audit trail. */
  peer: string;
  /** True once the agent was revoked while this process runs (the store may not say so yet). */
  revoked: () => boolean;
}

export interface RenewedCert {
  certPem: string;
  serial: string;
  notAfter: Date;
}

/** A CSR is about 1 KiB; anything much larger is not one. */
const MAX_CSR_BYTES = 16 * 1024;

export const RENEW_AUDIT_ACTION = 'agents.renew-cert';
const RENEW_ROUTE = '/bulkhead.v1.AgentLink/Connect';

export async function renewAgentCert(
  deps: { store: Store; logger: Logger; now: () => Date; options: CertRenewalOptions },
  caller: RenewalCaller,
  csrPem: string,
): Promise<RenewedCert> {
  const { store, options } = deps;
  const target: Record<string, string> = { agentId: caller.agentId, fromSerial: caller.serial };
  try {
    if (!csrPem) throw new BulkheadError('BK_ERR_CSR_INVALID', 'renewal request carries no CSR');
    if (csrPem.length > MAX_CSR_BYTES) throw new BulkheadError('BK_ERR_TOO_LARGE', `renewal CSR is ${csrPem.length} bytes; the limit is ${MAX_CSR_BYTES}`);
    const rec = await store.getAgent(caller.agentId);
    if (!rec) throw new BulkheadError('BK_ERR_AGENT_UNKNOWN', `agent ${caller.agentId} is not enrolled with this controller`);
    if (rec.status === 'revoked' || rec.revokedAt || caller.revoked()) {
      throw new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${caller.agentId} was revoked; its certificate is not renewed — enroll again with a new join token`);
    }
    // The previous certificate may renew too: its renewal answer was lost before the agent
    // stored the new one (that certificate was then never used, and is replaced again).
    const fromPrevious = rec.prevCertSerial !== undefined && canonicalSerial(rec.prevCertSerial) === caller.serial;
    if (canonicalSerial(rec.certSerial) !== caller.serial && !fromPrevious) {
      throw new BulkheadError('BK_ERR_CERT_REQUIRED', `certificate serial ${caller.serial} is not the one on record for ${caller.agentId}; only the current certificate can renew`);
    }
    if (!store.replaceAgentCert) throw new BulkheadError('BK_ERR_INTERNAL', 'this store cannot record renewed certificates');
    const ca = typeof options.ca === 'function' ? options.ca() : options.ca;
    const issued = await signAgentCsr({
      ca,
      csrPem,
      agentId: caller.agentId,
      notKeyOf: caller.certRaw,
      ...(options.agentCertMs !== undefined ? { validMs: options.agentCertMs } : { validDays: options.agentCertDays ?? 90 }),
    });
    // Compare-and-set on the serial we checked: a revocation or a second renewal in between wins.
    const previous = fromPrevious ? rec.prevCertSerial! : rec.certSerial;
    if (!(await store.replaceAgentCert(caller.agentId, rec.certSerial, { serial: issued.serial, notAfter: issued.notAfter, ca: certFingerprint(ca.certPem) }, previous))) {
      const now = await store.getAgent(caller.agentId);
      if (!now || now.status === 'revoked' || now.revokedAt) throw new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${caller.agentId} was revoked during the renewal`);
      throw new BulkheadError('BK_ERR_CONFLICT', `the certificate of ${caller.agentId} changed during the renewal`);
    }
    if (caller.revoked()) {
      // Revoked in this process after our store read: the store row is already
      // 'revoked' (the API writes it before closing streams), so the new serial
      // can never pass a hello. Refuse rather than hand out a useless certificate.
      throw new BulkheadError('BK_ERR_AGENT_REVOKED', `agent ${caller.agentId} was revoked during the renewal`);
    }
    target['toSerial'] = issued.serial;
    audit(deps, caller, target, 200, '');
    deps.logger.info({ agentId: caller.agentId, fromSerial: caller.serial, toSerial: issued.serial, notAfter: issued.notAfter.toISOString() }, 'agent certificate renewed');
    return { certPem: issued.certPem, serial: issued.serial, notAfter: issued.notAfter };
  } catch (err) {
    const e = err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', 'certificate renewal failed', { cause: err });
    audit(deps, caller, target, e.status, e.code);
    deps.logger.warn({ agentId: caller.agentId, serial: caller.serial, code: e.code, reason: e.message, ...(e.code === 'BK_ERR_INTERNAL' ? { err } : {}) }, 'agent certificate renewal refused');
    throw e;
  }
}

function audit(
  deps: { logger: Logger; now: () => Date; options: CertRenewalOptions },
  caller: RenewalCaller,
  target: Record<string, string>,
  status: number,
  code: string,
): void {
  const sink = deps.options.audit;
  if (!sink) return;
  const entry: AuditEntry = {
    at: deps.now(),
    actorKind: 'agent',
    actorId: caller.agentId,
    actorName: caller.agentId,
    method: 'GRPC',
    route: RENEW_ROUTE,
    path: RENEW_ROUTE,
    action: RENEW_AUDIT_ACTION,
    target: { ...target },
    clientIp: peerIp(caller.peer),
    status,
    code,
  };
  // The audit log logs its own write failures; it must never fail the renewal.
  void Promise.resolve()
    .then(() => sink.record(entry))
    .catch((err: unknown) => deps.logger.error({ err, agentId: caller.agentId }, 'recording the certificate renewal in the audit trail failed'));
}

/** "ipv4:1.2.3.4:5678", "[::1]:5678" → the address alone. */
function peerIp(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(p);
  if (v6) return v6[1]!;
  const v4 = /^(.*):\d+$/.exec(p);
  return v4 ? v4[1]! : p;
}
