// Owns the image signature verdicts agents report (SignatureVerdicts messages):
// per agent, sha256 of the verdict key → the verdict, bounded, in memory. The
// controller cannot verify a signature itself (no registry access, and keys named
// by file live on the hosts); its policy dry-run looks candidate rules' verdicts
// up here, and calls what no agent reported "not verified yet on any host".
//
// In memory on purpose: agents re-send every verdict they hold on each new stream,
// so a restarted controller has them again within seconds of the agents
// reconnecting; with replicas, each knows the verdicts of the agents connected to
// it (documented in docs/policy.md).
import type { Logger, SignatureVerdict } from '@bulkhead/shared';

/** Verdicts kept per agent (the agent's own gate keeps at most 4096). */
const MAX_PER_AGENT = 4096;
/** Agents whose verdicts are kept (the least recently reporting forgotten first). */
const MAX_AGENTS = 10_000;
const STATUSES = new Set(['verified', 'unsigned', 'rejected']);
const SHA256_HEX = /^[0-9a-f]{64}$/;

export class ReportedVerdicts {
  private readonly byAgent = new Map<string, Map<string, SignatureVerdict>>();

  constructor(private readonly logger: Logger) {}

  /** Stores what one SignatureVerdicts message carries; malformed entries are skipped (logged once per message). */
  record(agentId: string, entries: ReadonlyArray<{ keySha256: string; verdictJson: string }>): number {
    let mine = this.byAgent.get(agentId);
    if (mine) this.byAgent.delete(agentId);
    mine ??= new Map();
    this.byAgent.set(agentId, mine); // most recent last
    let stored = 0;
    let bad = 0;
    for (const e of entries) {
      const v = parseVerdict(e.verdictJson);
      if (!SHA256_HEX.test(e.keySha256) || v === undefined) {
        bad++;
        continue;
      }
      mine.delete(e.keySha256);
      mine.set(e.keySha256, v);
      stored++;
    }
    while (mine.size > MAX_PER_AGENT) mine.delete(mine.keys().next().value!);
    while (this.byAgent.size > MAX_AGENTS) this.byAgent.delete(this.byAgent.keys().next().value!);
    if (bad > 0) this.logger.warn({ agentId, skipped: bad }, 'malformed signature verdicts skipped');
    return stored;
  }

  /**
   * The verdict for a verdict key's sha256: the one reported by `preferAgent` (the container's
   * own host) when it has one, else the most recently decided one any agent reported.
   */
  lookup(keySha256: string, preferAgent?: string): SignatureVerdict | undefined {
    if (preferAgent !== undefined) {
      const own = this.byAgent.get(preferAgent)?.get(keySha256);
      if (own) return own;
    }
    let best: SignatureVerdict | undefined;
    for (const m of this.byAgent.values()) {
      const v = m.get(keySha256);
      if (v && (!best || v.checkedAt > best.checkedAt)) best = v;
    }
    return best;
  }

  /** Forgets an agent (revoked). */
  forget(agentId: string): void {
    this.byAgent.delete(agentId);
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
  if (typeof o['repoDigest'] !== 'string' || typeof o['message'] !== 'string' || typeof o['checkedAt'] !== 'number') return undefined;
  if (!Array.isArray(o['signers']) || !o['signers'].every((s) => typeof s === 'string')) return undefined;
  return {
    status: o['status'] as SignatureVerdict['status'], repoDigest: o['repoDigest'], signers: (o['signers'] as string[]).slice(0, 32),
    message: o['message'].slice(0, 2048), checkedAt: o['checkedAt'],
  };
}
