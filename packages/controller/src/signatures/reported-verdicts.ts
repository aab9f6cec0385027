// Owns the image signature verdicts agents report (SignatureVerdicts messages): checks
// them, and keeps them in the store (signature-verdict-store.ts), one per verdict key (sha256
// of the rule's verification parameters + repo digest), the most recently decided winning.
// The controller cannot verify a signature itself (no registry access, and keys named by file
// live on the hosts); its policy dry-run looks candidate rules' verdicts up here, and calls
// what no agent reported "not verified yet on any host".
//
// In the store, so every replica's dry-run sees the verdicts of every agent, whichever
// replica holds its stream, and a restarted controller knows them at once. Bounded: a row per
// key, rows not reported again within the retention pruned (once per fleet), and at most
// `maxRows` kept.
import type { Logger, SignatureVerdict } from '@bulkhead/shared';
import type { ReportedVerdictRow, SignatureVerdictStore } from './signature-verdict-store';

const STATUSES = new Set(['verified', 'unsigned', 'rejected']);
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Default retention of a verdict no agent reported again: 7 days. */
export const DEFAULT_VERDICT_RETENTION_MS = 7 * 24 * 3_600_000;
/** Default bound on stored verdicts (the agents' own gates keep at most 4096 each). */
export const DEFAULT_MAX_VERDICTS = 100_000;
/** How often the prune runs (once per fleet, gated by the caller). */
export const VERDICT_PRUNE_EVERY_MS = 3_600_000;

export interface ReportedVerdictsOptions {
  store: SignatureVerdictStore;
  logger: Logger;
  retentionMs?: number;
  maxRows?: number;
  now?: () => Date;
}

export class ReportedVerdicts {
  private readonly now: () => Date;

  constructor(private readonly o: ReportedVerdictsOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * Stores what one SignatureVerdicts message carries; malformed entries are skipped (logged
   * once per message). Returns how many entries were well-formed.
   */
  async record(agentId: string, entries: ReadonlyArray<{ keySha256: string; verdictJson: string }>): Promise<number> {
    const now = this.now();
    const rows: ReportedVerdictRow[] = [];
    let bad = 0;
    for (const e of entries) {
      const v = parseVerdict(e.verdictJson);
      if (!SHA256_HEX.test(e.keySha256) || v === undefined || v.checkedAt < 0) {
        bad++;
        continue;
      }
      // Newest decided wins: a time in the future (a skewed or lying agent) would pin its
      // verdict against every later one, so it counts as decided now.
      rows.push({ keySha256: e.keySha256, verdict: { ...v, checkedAt: Math.min(Math.trunc(v.checkedAt), now.getTime()) } });
    }
    if (bad > 0) this.o.logger.warn({ agentId, skipped: bad }, 'malformed signature verdicts skipped');
    if (rows.length > 0) await this.o.store.recordSignatureVerdicts(agentId, rows, now);
    return rows.length;
  }

  /** The stored verdicts of these verdict-key hashes (the newest decided by any agent). */
  async lookupMany(keySha256s: readonly string[]): Promise<Map<string, SignatureVerdict>> {
    const got = await this.o.store.getSignatureVerdicts(keySha256s);
    return new Map([...got].map(([k, s]) => [k, s.verdict]));
  }

  /** Forgets an agent's verdicts (revoked). */
  forget(agentId: string): Promise<number> {
    return this.o.store.forgetSignatureVerdicts(agentId);
  }

  /** Deletes verdicts past the retention and beyond the bound; returns how many. */
  prune(): Promise<number> {
    const before = new Date(this.now().getTime() - (this.o.retentionMs ?? DEFAULT_VERDICT_RETENTION_MS));
    return this.o.store.pruneSignatureVerdicts(before, this.o.maxRows ?? DEFAULT_MAX_VERDICTS);
  }
}

function parseVerdict(json: string): SignatureVerdict | undefined {
  if (json.length > 16_384) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o['status'] !== 'string' || !STATUSES.has(o['status'])) return undefined;
  if (typeof o['repoDigest'] !== 'string' || typeof o['message'] !== 'string' || typeof o['checkedAt'] !== 'number' || !Number.isFinite(o['checkedAt'])) return undefined;
  if (!Array.isArray(o['signers']) || !o['signers'].every((s) => typeof s === 'string')) return undefined;
  return {
    status: o['status'] as SignatureVerdict['status'], repoDigest: o['repoDigest'].slice(0, 1024), signers: (o['signers'] as string[]).slice(0, 32).map((s) => s.slice(0, 256)),
    message: o['message'].slice(0, 2048), checkedAt: o['checkedAt'],
  };
}
