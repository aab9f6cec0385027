// Owns what the controller does with an agent's host audit report
// (AgentMessage.audit): check its shape, store it as the agent's latest (a
// short history kept), and compare its lockdown findings with the agent's
// previous report — each finding that is new raises one `lockdown_finding`
// alert (severity from the finding, grouped like every alert by
// type|rule|agent|container); findings that went away are logged and kept
// in the report's summary as resolved.
//
// A malformed report is logged and dropped, never fatal to the stream: the
// agent keeps an unacknowledged report and would resend it forever.
// A resend of a stored report (same taken_at) changes nothing and raises
// nothing; a report older than the stored latest (delivered late) goes to
// the history without alerts. An image prune record (what the agent's
// --image-prune policy removed) is stored with its report and logged; it
// raises no alert — the stored record is the audit trail
// (GET /v1/agents/:id/audit?format=prune).
import type { AuditReport__Output, Logger } from '@bulkhead/shared';
import type { AlertSink } from '../alerts/alert-service';
import type { AlertInput } from '../alerts/alert-types';
import { HOST_AUDIT_HISTORY, type FindingSeverity, type HostAuditRecord, type HostAuditStore, type HostAuditSummary, type PruneCounts } from './host-audit-store';

/** Largest documents accepted (a CIS report of a busy host is ~100 KiB). */
export const HOST_AUDIT_LIMITS = { cis: 4 * 1024 * 1024, lockdown: 1024 * 1024, fixes: 256 * 1024, hygiene: 512 * 1024, prune: 512 * 1024 } as const;

const SEVERITIES: readonly FindingSeverity[] = ['info', 'low', 'medium', 'high', 'critical'];
const RESULTS = new Set(['PASS', 'WARN', 'INFO', 'NOTE']);

/** A lockdown finding as the agent reports it (packages/agent/src/lockdown/lockdown-options.ts). */
export interface ReportedFinding {
  id: string;
  severity: FindingSeverity;
  title: string;
  detail: string;
  subject?: string;
  evidence?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface ParsedHostAudit {
  takenAt: Date;
  cis: { summary: { pass: number; warn: number; info: number; note: number; percent: number }; checks: number; score: number; tests: unknown[] };
  lockdown: ReportedFinding[];
  fixes: Array<{ changed?: unknown; error?: unknown; [k: string]: unknown }>;
  hygiene: { counts?: { images?: unknown; stale?: unknown; dangling?: unknown }; staleBytes?: unknown; [k: string]: unknown } | null;
  /** The image prune record (agent: hygiene/prune-summary.ts), or `{ error }`; null when the policy is off. */
  prune: { dryRun?: unknown; counts?: { removed?: unknown; deleted?: unknown; failed?: unknown }; reclaimedBytes?: unknown; wouldReclaimBytes?: unknown; images?: unknown; error?: unknown; [k: string]: unknown } | null;
  /** The documents as sent (stored verbatim). */
  raw: { cis: string; lockdown: string; fixes: string; hygiene: string | null; prune: string | null };
}

/** Checks the report's shape; `error` says what is wrong. */
export function parseHostAudit(m: AuditReport__Output | null | undefined): ParsedHostAudit | { error: string } {
  if (!m) return { error: 'audit message without a body' };
  const takenAtMs = Number(m.takenAtMs);
  if (!Number.isSafeInteger(takenAtMs) || takenAtMs <= 0) return { error: `taken_at_ms ${String(m.takenAtMs)} is not a time` };
  const sizes: Array<[keyof typeof HOST_AUDIT_LIMITS, string]> = [['cis', m.cisJson], ['lockdown', m.lockdownJson], ['fixes', m.fixesJson], ['hygiene', m.hygieneJson], ['prune', m.pruneJson]];
  for (const [k, v] of sizes) {
    if ((v?.length ?? 0) > HOST_AUDIT_LIMITS[k]) return { error: `${k}_json is ${v.length} characters, over the ${HOST_AUDIT_LIMITS[k]} limit` };
  }
  const cis = parseJson(m.cisJson, 'cis_json');
  if ('error' in cis) return cis;
  const lockdown = parseJson(m.lockdownJson, 'lockdown_json');
  if ('error' in lockdown) return lockdown;
  const fixes = m.fixesJson ? parseJson(m.fixesJson, 'fixes_json') : { value: [] };
  if ('error' in fixes) return fixes;
  const hygiene = m.hygieneJson ? parseJson(m.hygieneJson, 'hygiene_json') : { value: null };
  if ('error' in hygiene) return hygiene;
  // An agent older than prune_json sends none: the same as the policy being off.
  const prune = m.pruneJson ? parseJson(m.pruneJson, 'prune_json') : { value: null };
  if ('error' in prune) return prune;

  const c = cis.value as Record<string, unknown>;
  if (!isObject(c) || !Array.isArray(c['tests']) || !isObject(c['summary'])) return { error: 'cis_json is not a CIS report (tests[] and summary)' };
  for (const s of c['tests'] as unknown[]) {
    if (!isObject(s) || typeof s['id'] !== 'string' || !Array.isArray(s['results'])) return { error: 'cis_json: a section without id or results[]' };
    for (const r of s['results'] as unknown[]) {
      if (!isObject(r) || typeof r['id'] !== 'string' || typeof r['desc'] !== 'string' || !RESULTS.has(r['result'] as string)) {
        return { error: `cis_json: section ${s['id'] as string} holds a result without id, desc or a PASS/WARN/INFO/NOTE verdict` };
      }
    }
  }
  const sum = c['summary'] as Record<string, unknown>;
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  if (!Array.isArray(lockdown.value)) return { error: 'lockdown_json is not an array' };
  const findings: ReportedFinding[] = [];
  for (const f of lockdown.value as unknown[]) {
    if (!isObject(f) || typeof f['id'] !== 'string' || f['id'] === '' || typeof f['title'] !== 'string') return { error: 'lockdown_json: a finding without id or title' };
    if (!SEVERITIES.includes(f['severity'] as FindingSeverity)) return { error: `lockdown_json: finding ${f['id']} has severity "${String(f['severity'])}"` };
    if (f['subject'] !== undefined && typeof f['subject'] !== 'string') return { error: `lockdown_json: finding ${f['id']} has a non-string subject` };
    findings.push({ ...f, detail: typeof f['detail'] === 'string' ? f['detail'] : '' } as ReportedFinding);
  }
  if (!Array.isArray(fixes.value) || !(fixes.value as unknown[]).every(isObject)) return { error: 'fixes_json is not an array of fix records' };
  if (hygiene.value !== null && !isObject(hygiene.value)) return { error: 'hygiene_json is not an object' };
  if (prune.value !== null) {
    const p = prune.value;
    if (!isObject(p)) return { error: 'prune_json is not an object' };
    if (typeof p['error'] !== 'string' && (!isObject(p['counts']) || !Array.isArray(p['images']))) return { error: 'prune_json is neither a prune record (counts, images[]) nor { error }' };
  }
  return {
    takenAt: new Date(takenAtMs),
    cis: {
      summary: { pass: num(sum['pass']), warn: num(sum['warn']), info: num(sum['info']), note: num(sum['note']), percent: num(sum['percent']) },
      checks: num(c['checks']),
      score: num(c['score']),
      tests: c['tests'] as unknown[],
    },
    lockdown: findings,
    fixes: fixes.value as ParsedHostAudit['fixes'],
    hygiene: hygiene.value as ParsedHostAudit['hygiene'],
    prune: prune.value as ParsedHostAudit['prune'],
    raw: { cis: m.cisJson, lockdown: m.lockdownJson, fixes: m.fixesJson || '[]', hygiene: m.hygieneJson || null, prune: m.pruneJson || null },
  };
}

/** Identity of a finding across reports: the same check about the same thing. */
export function findingKey(f: Pick<ReportedFinding, 'id' | 'subject'>): string {
  return `${f.id}|${f.subject ?? ''}`;
}

export function summarize(p: ParsedHostAudit, newFindings: string[], resolvedFindings: string[]): HostAuditSummary {
  const lockdown = { total: p.lockdown.length, critical: 0, high: 0, medium: 0, low: 0, info: 0 };
  for (const f of p.lockdown) lockdown[f.severity] += 1;
  const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const h = p.hygiene;
  return {
    score: p.cis.summary.percent,
    cis: { checks: p.cis.checks, score: p.cis.score, ...p.cis.summary },
    lockdown,
    fixes: { applied: p.fixes.filter((f) => f.changed === true && f.error === undefined).length, failed: p.fixes.filter((f) => f.error !== undefined).length },
    hygiene: h && isObject(h.counts) ? { images: n(h.counts.images), stale: n(h.counts.stale), dangling: n(h.counts.dangling), staleBytes: n(h.staleBytes) } : null,
    prune: pruneCounts(p.prune),
    newFindings,
    resolvedFindings,
  };
}

/** The prune record's counts for the summary (history listings); null when there is none. */
export function pruneCounts(pr: ParsedHostAudit['prune']): PruneCounts | null {
  if (!pr) return null;
  const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const c = isObject(pr.counts) ? pr.counts : {};
  return {
    dryRun: pr.dryRun === true,
    removed: n(c['removed']),
    deleted: n(c['deleted']),
    failed: n(c['failed']),
    reclaimedBytes: n(pr.reclaimedBytes),
    ...(typeof pr.error === 'string' ? { error: pr.error } : {}),
  };
}

/** The alert a new finding raises. */
export function alertForFinding(agentId: string, host: string | undefined, f: ReportedFinding, time: Date): AlertInput {
  const ev = isObject(f.evidence) ? f.evidence : {};
  const container = f.id.startsWith('container.');
  const name = typeof ev['name'] === 'string' ? ev['name'] : undefined;
  const image = typeof ev['image'] === 'string' ? ev['image'] : undefined;
  const detail = f.detail !== '' ? `: ${f.detail}` : '';
  return {
    type: 'lockdown_finding',
    severity: f.severity,
    time,
    agentId,
    ...(host !== undefined ? { host } : {}),
    ruleId: f.id,
    ...(container && f.subject ? { containerId: f.subject } : {}),
    ...(container && name ? { containerName: name } : {}),
    ...(container && image ? { image } : {}),
    message: `${f.title}${detail}`,
  };
}

export interface RecordHostAuditOptions {
  store: { hostAudits?: HostAuditStore; getAgent(id: string): Promise<{ hostname: string } | undefined> };
  alerts?: AlertSink | undefined;
  logger: Logger;
  now: () => Date;
  /** Reports kept per agent. Default HOST_AUDIT_HISTORY. */
  keep?: number;
}

export interface RecordHostAuditResult {
  stored: boolean;
  /** Why nothing was stored: malformed, duplicate, or no host audit store. */
  reason?: 'malformed' | 'duplicate' | 'unsupported';
  newFindings: string[];
  resolvedFindings: string[];
  alerts: number;
}

export async function recordHostAudit(o: RecordHostAuditOptions, agentId: string, m: AuditReport__Output | null | undefined): Promise<RecordHostAuditResult> {
  const none = (reason: RecordHostAuditResult['reason']): RecordHostAuditResult => ({ stored: false, reason, newFindings: [], resolvedFindings: [], alerts: 0 });
  const store = o.store.hostAudits;
  if (!store) return none('unsupported');
  const p = parseHostAudit(m);
  if ('error' in p) {
    o.logger.warn({ agentId, reason: p.error }, 'dropped a malformed host audit report');
    return none('malformed');
  }
  const previous = await store.latestHostAudit(agentId);
  const newest = previous === undefined || p.takenAt.getTime() > previous.takenAt.getTime();
  let fresh: ReportedFinding[] = [];
  let resolved: string[] = [];
  if (newest) {
    const before = previous ? previousFindings(previous) : new Map<string, string>();
    const now = new Map(p.lockdown.map((f) => [findingKey(f), f] as const));
    fresh = [...now.entries()].filter(([k]) => !before.has(k)).map(([, f]) => f);
    resolved = [...before.keys()].filter((k) => !now.has(k));
  }
  const summary = summarize(p, fresh.map(findingKey), resolved);
  const record: HostAuditRecord = {
    agentId, takenAt: p.takenAt, receivedAt: o.now(), summary,
    cisJson: p.raw.cis, lockdownJson: p.raw.lockdown, fixesJson: p.raw.fixes, hygieneJson: p.raw.hygiene, pruneJson: p.raw.prune,
  };
  if (!(await store.insertHostAudit(record, o.keep ?? HOST_AUDIT_HISTORY))) return none('duplicate');
  o.logger.info(
    { agentId, takenAt: p.takenAt.toISOString(), score: summary.score, cisWarn: summary.cis.warn, lockdown: summary.lockdown.total, newFindings: summary.newFindings, late: !newest },
    'host audit stored',
  );
  for (const f of p.fixes) if (f.changed === true || f.error !== undefined) o.logger.warn({ agentId, fix: f['fix'], path: f['path'], message: f['message'], error: f.error }, 'agent applied a lockdown fix');
  if (resolved.length > 0) o.logger.info({ agentId, resolvedFindings: resolved }, 'lockdown findings resolved');
  const pr = summary.prune;
  if (pr && (pr.removed > 0 || pr.error !== undefined)) {
    o.logger.info({ agentId, takenAt: p.takenAt.toISOString(), dryRun: pr.dryRun, removed: pr.removed, deleted: pr.deleted, failed: pr.failed, reclaimedBytes: pr.reclaimedBytes, error: pr.error }, pr.dryRun ? 'agent image prune (dry run) recorded' : 'agent pruned images');
  }
  let alerts = 0;
  if (o.alerts && fresh.length > 0) {
    const host = (await o.store.getAgent(agentId))?.hostname;
    for (const f of fresh) {
      const input = alertForFinding(agentId, host, f, p.takenAt);
      o.alerts.raise(input).catch((err: unknown) => o.logger.error({ err, alertType: input.type, ruleId: f.id }, 'raising an alert failed'));
      alerts += 1;
    }
  }
  return { stored: true, newFindings: summary.newFindings, resolvedFindings: resolved, alerts };
}

/** Keys of the stored report's findings (an unreadable one counts as none: everything is new again). */
function previousFindings(r: HostAuditRecord): Map<string, string> {
  try {
    const list = JSON.parse(r.lockdownJson) as unknown;
    if (!Array.isArray(list)) return new Map();
    return new Map(list.filter(isObject).map((f) => [findingKey(f as ReportedFinding), String(f['id'])] as const));
  } catch {
    return new Map();
  }
}

function parseJson(text: string, field: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (e) {
    return { error: `${field} is not JSON: ${(e as Error).message}` };
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
