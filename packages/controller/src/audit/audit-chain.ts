// Owns the audit trail's hash chain: the canonical form of a row, the hash
// linking it to its predecessor, and checking a whole chain.
//   hash(row) = sha256_hex(prev_hash || canonical JSON of the row's other columns)
// The first row's prev_hash is 64 zeros. Editing any column of a row changes
// its hash; recomputing that hash breaks the next row's prev_hash; deleting a
// row leaves a gap in seq. What a chain alone cannot show is the loss of the
// newest rows (truncation): compare `head` with a copy kept elsewhere.
import { createHash } from 'node:crypto';
import type { AuditChainFields, AuditRecord, AuditStore } from './audit-store';

export const GENESIS_HASH = '0'.repeat(64);

/** JSON with object keys sorted at every level and no whitespace. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

export function chainHash(prevHash: string, f: AuditChainFields): string {
  const fields: AuditChainFields = {
    seq: f.seq,
    at: f.at,
    actorKind: f.actorKind,
    actorId: f.actorId,
    actorName: f.actorName,
    method: f.method,
    route: f.route,
    path: f.path,
    action: f.action,
    targetJson: f.targetJson,
    clientIp: f.clientIp,
    status: f.status,
    code: f.code,
  };
  return createHash('sha256').update(prevHash).update(canonicalJson(fields)).digest('hex');
}

import type { AuditVerifyResult } from '@bulkhead/client';

// The result's shape and its human summary are defined once in @bulkhead/client (the ops CLI prints it too).
export { describeVerifyResult, type AuditVerifyResult } from '@bulkhead/client';

/** Why `row` does not follow `prevHash`/`expectedSeq`, or undefined when it does. */
export function checkRow(row: AuditRecord, prevHash: string, expectedSeq: number): string | undefined {
  if (row.seq !== expectedSeq) return `sequence gap: expected seq ${expectedSeq}, found ${row.seq} (rows removed)`;
  if (row.prevHash !== prevHash) return 'prev_hash does not match the previous row';
  if (chainHash(prevHash, row) !== row.hash) return 'hash does not match the row (row altered)';
  return undefined;
}

/** Walks the whole chain in seq order, `batch` rows at a time; stops at the first bad row. */
export async function verifyAuditChain(store: Pick<AuditStore, 'scan'>, batch = 1000): Promise<AuditVerifyResult> {
  let prevHash = GENESIS_HASH;
  let expected = 1;
  let checked = 0;
  let head: AuditVerifyResult['head'] = null;
  for (;;) {
    const rows = await store.scan(expected - 1, batch);
    if (rows.length === 0) break;
    for (const row of rows) {
      checked++;
      const reason = checkRow(row, prevHash, expected);
      if (reason !== undefined) return { ok: false, checked, firstBadSeq: row.seq, reason, head: null };
      prevHash = row.hash;
      expected = row.seq + 1;
      head = { seq: row.seq, hash: row.hash };
    }
  }
  return { ok: true, checked, firstBadSeq: null, reason: null, head };
}

