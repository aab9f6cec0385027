// Owns what the API writes to the audit trail: every mutating call
// (POST/PUT/PATCH/DELETE under /v1) and every refused credential or role
// (401, 403, 429) whatever the method — who, what, target, when, from
// where, outcome. Written from onSend, after the status is final and before a
// byte of the answer leaves: the caller never sees an outcome that is not yet
// in the trail, so a controller killed right after answering has still
// recorded the call. The write goes through AuditLog's single queue.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { toProblem } from '../api/problem';
import { deriveAction } from '../auth/roles';
import type { AuditEntry } from './audit-store';
import type { AuditLog } from './audit-log';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const REFUSED = new Set([401, 403, 429]);
const MAX_FIELD = 256;

/** Per-request notes for the audit entry. */
export interface AuditNotes {
  /** BK_ERR_… of the error that answered the request. */
  code?: string;
  /** Ids the handler adds (created objects, versions, …). */
  target?: Record<string, string>;
  /** The key id presented by a caller that failed to authenticate (unverified). */
  presentedKeyId?: string;
  /** Bucket refused with 429 (de-duplicates rate-limit entries). */
  limitedBucket?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Notes for the audit entry of this request (src/audit). */
    auditNotes: AuditNotes | null;
  }
}

/** Adds target ids to this request's audit entry (e.g. the id of a created object). */
export function auditTarget(req: FastifyRequest, target: Record<string, string | number>): void {
  const notes = (req.auditNotes ??= {});
  notes.target = { ...(notes.target ?? {}), ...Object.fromEntries(Object.entries(target).map(([k, v]) => [k, String(v)])) };
}

export function auditNotes(req: FastifyRequest): AuditNotes {
  return (req.auditNotes ??= {});
}

export interface AuditHookOptions {
  audit: AuditLog | undefined;
  now: () => Date;
  /** 429s are recorded once per limited bucket per this many ms, so a flood cannot flood the trail. */
  rateLimitedEveryMs: number;
}

/** Installs the hooks on the /v1 scope. */
export function installAuditHooks(v1: FastifyInstance, o: AuditHookOptions): void {
  v1.decorateRequest('auditNotes', null);
  const lastLimited = new Map<string, number>();

  v1.addHook('onError', async (req, _reply, err) => {
    auditNotes(req).code = toProblem(err).problem.code;
  });

  v1.addHook('onSend', async (req, reply, payload) => {
    const audit = o.audit;
    if (!audit) return payload;
    const status = reply.statusCode;
    if (!MUTATING.has(req.method) && !REFUSED.has(status)) return payload;
    const notes = req.auditNotes ?? {};
    const at = o.now();
    if (status === 429 && notes.limitedBucket !== undefined) {
      const last = lastLimited.get(notes.limitedBucket);
      if (last !== undefined && at.getTime() - last < o.rateLimitedEveryMs) return payload;
      lastLimited.set(notes.limitedBucket, at.getTime());
      if (lastLimited.size > 10_000) lastLimited.delete(lastLimited.keys().next().value!);
    }
    // Never rejects: a failed write is logged by AuditLog and the answer still goes out.
    await audit.record(entryFor(req, reply, notes, at));
    return payload;
  });
}

function entryFor(req: FastifyRequest, reply: FastifyReply, notes: AuditNotes, at: Date): AuditEntry {
  const p = req.auth;
  const route = req.routeOptions.url ?? '';
  const target: Record<string, string> = {};
  const params = (req.params ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(params)) if (typeof v === 'string') target[k] = cut(v);
  for (const [k, v] of Object.entries(notes.target ?? {})) target[k] = cut(v);
  if (p?.tokenId) target['tokenId'] = p.tokenId;
  if (p?.session) target['sessionId'] = p.session.publicId;
  if (!p && notes.presentedKeyId !== undefined) target['presentedKeyId'] = notes.presentedKeyId;
  const location = reply.getHeader('location');
  if (typeof location === 'string') target['location'] = cut(location);
  return {
    at,
    actorKind: p ? p.kind : 'anonymous',
    actorId: p?.keyId ?? '',
    actorName: p?.keyName ?? '',
    method: req.method,
    route,
    path: cut(req.url.split('?')[0] ?? '', 1024),
    action: req.routeOptions.config.action ?? deriveAction(req.method, route),
    target,
    clientIp: req.ip,
    status: reply.statusCode,
    code: notes.code ?? '',
  };
}

function cut(s: string, max = MAX_FIELD): string {
  return s.length > max ? s.slice(0, max) : s;
}
