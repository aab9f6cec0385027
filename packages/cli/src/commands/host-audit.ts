// Owns `bulkhead audit HOST`: an agent's latest host audit as the
// controller stored it — the socket/daemon lockdown findings, the fixes the
// agent applied, the CIS Docker Benchmark summary and its WARN results, image
// hygiene and what the image prune policy removed (`--prunes`: every stored
// prune record). HOST is an agent id or a host name (as `bulkhead agents` shows).
// `--fail-on` mirrors `bulkhead-agent audit --fail-on` (exit 4), so CI can
// gate on a host's audit without logging into the host.
import { Option, type Command } from 'commander';
import type { Agent as AgentDto } from '@bulkhead/client';
import type { CisReport as CisReportDto, HostAudit as HostAuditDto, HostAuditPruneList as HostAuditPruneListDto } from '@bulkhead/client';
import { formatKeyValues, formatTable } from '../table';
import { formatSize } from '@bulkhead/client';
import { ago } from '../render';
import { CommandFailed } from './audit-log';
import { toJson, type CommandContext } from './context';

/** Exit code when --fail-on / --fail-on-finding is met (as `bulkhead-agent audit`). */
export const AUDIT_FAIL_EXIT_CODE = 4;

type CisLevel = 'warn' | 'info' | 'note';
type FindingLevel = 'low' | 'medium' | 'high' | 'critical';
const CIS_RANK: Record<string, number> = { PASS: 0, NOTE: 1, INFO: 2, WARN: 3 };
const CIS_FAIL: Record<CisLevel, number> = { note: 1, info: 2, warn: 3 };
const SEVERITY_RANK: Record<string, number> = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };

export function registerHostAuditCommand(program: Command, ctx: CommandContext): void {
  program
    .command('audit')
    .description("an agent's latest host audit: socket/daemon lockdown findings, fixes applied, CIS Docker Benchmark summary and WARN results, image hygiene")
    .argument('<host>', 'agent id (agt_…) or host name, as `bulkhead agents` shows')
    .option('--all', 'list every CIS result, not only WARN')
    .option('--cis', "print only the CIS report in docker-bench-security's log.json shape")
    .option('--prunes', "list the image prune records of the host's stored reports (what its --image-prune policy removed, and when)")
    .addOption(new Option('--fail-on <level>', 'exit 4 when a CIS result is at or above this level (WARN > INFO > NOTE)').choices(['warn', 'info', 'note']))
    .addOption(new Option('--fail-on-finding <severity>', 'exit 4 when a lockdown finding is at or above this severity').choices(['low', 'medium', 'high', 'critical']))
    .addHelpText(
      'after',
      '\nWith the global --json, the whole stored report (GET /v1/agents/{id}/audit).\nExit status: 0 shown; 4 a --fail-on level was reached; 1 no such agent or no report yet; others as every command.\n' +
        '\nExamples:\n  bulkhead audit web-01\n  bulkhead audit agt_3f9c2a7b1d0e4f5a6b7c --all\n  bulkhead --json audit web-01 | jq \'.lockdown[] | select(.severity=="critical")\'\n  bulkhead audit web-01 --cis > web-01-cis.json\n  bulkhead audit web-01 --prunes\n  bulkhead audit web-01 --fail-on warn --fail-on-finding high\n',
    )
    .action(async (host: string, o: { all?: boolean; cis?: boolean; prunes?: boolean; failOn?: CisLevel; failOnFinding?: FindingLevel }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      if (o.prunes && (o.cis || o.all || o.failOn || o.failOnFinding)) throw ctx.usageError('--prunes lists prune records only; it does not combine with --cis, --all or --fail-on*');
      const id = await resolveAgent(ctx, host, () => api.listAllAgents());
      const path = `/v1/agents/${encodeURIComponent(id)}/audit`;
      if (o.prunes) {
        const list = await api.getJson<HostAuditPruneListDto>(path, new URLSearchParams({ format: 'prune' }));
        ctx.out(json ? toJson(list) : renderPruneList(list));
        return;
      }
      let report: HostAuditDto | undefined;
      let cis: CisReportDto;
      if (o.cis) {
        cis = await api.getJson<CisReportDto>(path, new URLSearchParams({ format: 'cis' }));
        ctx.out(toJson(cis));
      } else {
        report = await api.getJson<HostAuditDto>(path);
        cis = report.cis;
        ctx.out(json ? toJson(report) : renderHostAudit(report, ctx.now(), { all: o.all === true }));
      }
      const reasons: string[] = [];
      if (o.failOn) {
        const min = CIS_FAIL[o.failOn];
        const failing = cis.tests.flatMap((s) => s.results).filter((r) => (CIS_RANK[r.result] ?? 0) >= min);
        if (failing.length > 0) reasons.push(`${failing.length} CIS result(s) at or above ${o.failOn.toUpperCase()} (${failing.slice(0, 10).map((r) => `${r.id} ${r.result}`).join(', ')}${failing.length > 10 ? ', …' : ''})`);
      }
      if (o.failOnFinding) {
        if (!report) report = await api.getJson<HostAuditDto>(path);
        const min = SEVERITY_RANK[o.failOnFinding]!;
        const failing = report.lockdown.filter((f) => (SEVERITY_RANK[f.severity] ?? 0) >= min);
        if (failing.length > 0) reasons.push(`${failing.length} lockdown finding(s) at or above ${o.failOnFinding} (${[...new Set(failing.map((f) => f.id))].slice(0, 10).join(', ')})`);
      }
      if (reasons.length > 0) {
        ctx.err(`audit: ${reasons.join('; ')}\n`);
        throw new CommandFailed(AUDIT_FAIL_EXIT_CODE);
      }
    });
}

/** An agent id as is; otherwise the one agent with that host name (a usage error when none or several). */
export async function resolveAgent(ctx: CommandContext, host: string, list: () => Promise<{ items: AgentDto[] }>): Promise<string> {
  if (/^agt_[0-9a-f]+$/.test(host)) return host;
  const agents = (await list()).items;
  const byId = agents.find((a) => a.id === host);
  if (byId) return byId.id;
  let matches = agents.filter((a) => a.hostname === host);
  if (matches.length === 0) matches = agents.filter((a) => a.hostname.toLowerCase() === host.toLowerCase());
  // A host enrolled again leaves its revoked identity behind: prefer the live one.
  if (matches.length > 1) {
    const live = matches.filter((a) => a.status !== 'revoked');
    if (live.length >= 1) matches = live;
  }
  if (matches.length === 1) return matches[0]!.id;
  if (matches.length === 0) {
    // Like an unknown agent id (404 from the API): exit 1, not a usage error.
    ctx.err(`bulkhead: BK_ERR_NOT_FOUND: no agent with id or host name "${host}" (see \`bulkhead agents\`)\n`);
    throw new CommandFailed(1);
  }
  throw ctx.usageError(`host name "${host}" matches ${matches.length} agents (${matches.map((a) => a.id).join(', ')}); give the agent id`);
}

export function renderHostAudit(r: HostAuditDto, now: Date, o: { all?: boolean } = {}): string {
  const s = r.summary;
  const sev = (['critical', 'high', 'medium', 'low', 'info'] as const).filter((k) => s.lockdown[k] > 0).map((k) => `${s.lockdown[k]} ${k}`);
  const pairs: Array<[string, string]> = [
    ['Agent', `${r.agentId} (${r.hostname})`],
    ['Audited', `${r.takenAt} (${ago(r.takenAt, now)})`],
    ['CIS score', `${s.cis.percent} % of scored checks pass (PASS ${s.cis.pass}, WARN ${s.cis.warn}, INFO ${s.cis.info}, NOTE ${s.cis.note}; docker-bench score ${s.cis.score})`],
    ['Lockdown', s.lockdown.total === 0 ? 'no findings' : `${s.lockdown.total} finding(s): ${sev.join(', ')}${s.newFindings.length > 0 ? `; ${s.newFindings.length} new since the previous report` : ''}`],
  ];
  if (s.resolvedFindings.length > 0) pairs.push(['Resolved', s.resolvedFindings.join('\n')]);
  pairs.push(['Fixes', r.fixes.length === 0 ? 'none enabled or due' : `${s.fixes.applied} applied, ${s.fixes.failed} failed`]);
  if (s.hygiene) pairs.push(['Images', `${s.hygiene.images} image(s), ${s.hygiene.stale} stale (${formatSize(s.hygiene.staleBytes)}), ${s.hygiene.dangling} dangling`]);
  const prune = asPrune(r.prune);
  if (prune) pairs.push(['Pruned', pruneLine(prune)]);
  let out = formatKeyValues(pairs);

  const fresh = new Set(s.newFindings);
  out += '\nLOCKDOWN FINDINGS\n';
  out += r.lockdown.length === 0
    ? 'none\n'
    : formatTable(
        ['SEVERITY', 'ID', 'SUBJECT', 'NEW', 'FIX', 'FINDING'],
        r.lockdown.map((f) => [f.severity, f.id, f.subject ?? '-', fresh.has(`${f.id}|${f.subject ?? ''}`) ? 'new' : '', f.fix ?? '-', f.detail ? `${f.title}: ${f.detail}` : f.title]),
      );
  if (r.fixes.length > 0) {
    out += '\nFIXES\n';
    out += formatTable(
      ['FIX', 'PATH', 'RESULT', 'WHAT'],
      r.fixes.map((f) => [f.fix, f.path, f.error !== undefined ? 'failed' : f.changed ? 'applied' : 'not needed', f.error ?? f.message]),
    );
  }
  if (prune && prune.images.length > 0) {
    out += prune.dryRun ? '\nPRUNED (DRY RUN: NOTHING REMOVED)\n' : '\nPRUNED\n';
    out += pruneTable(prune, PRUNE_ROWS);
  }
  const results = r.cis.tests.flatMap((t) => t.results).filter((x) => o.all === true || x.result === 'WARN');
  out += o.all === true ? '\nCIS RESULTS\n' : '\nCIS WARN\n';
  out += results.length === 0
    ? 'none\n'
    : formatTable(
        ['ID', 'RESULT', 'CHECK', 'DETAILS'],
        results.map((x) => [x.id, x.result, x.desc, x.items && x.items.length > 0 ? x.items.join(', ') : (x.details ?? '')]),
      );
  return out;
}

/** Rows of the PRUNED table in the report view (`--prunes` and --json give every record). */
const PRUNE_ROWS = 20;

interface PruneImage { id: string; tags?: string[]; untagged?: string[]; deleted?: boolean; sizeBytes?: number; reason?: string; error?: string }
interface PruneView {
  at?: string;
  dryRun: boolean;
  counts: { removed: number; deleted: number; untagged: number; failed: number; skipped: number };
  reclaimedBytes: number;
  wouldReclaimBytes: number;
  images: PruneImage[];
  truncated: boolean;
  error?: string;
}

/** The agent's prune record (passed through by the API), read defensively. */
function asPrune(v: unknown): PruneView | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const p = v as Record<string, unknown>;
  const n = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
  const c = (typeof p['counts'] === 'object' && p['counts'] !== null ? p['counts'] : {}) as Record<string, unknown>;
  return {
    ...(typeof p['at'] === 'string' ? { at: p['at'] } : {}),
    dryRun: p['dryRun'] === true,
    counts: { removed: n(c['removed']), deleted: n(c['deleted']), untagged: n(c['untagged']), failed: n(c['failed']), skipped: n(c['skipped']) },
    reclaimedBytes: n(p['reclaimedBytes']),
    wouldReclaimBytes: n(p['wouldReclaimBytes']),
    images: Array.isArray(p['images']) ? (p['images'] as PruneImage[]).filter((i) => typeof i === 'object' && i !== null && typeof i.id === 'string') : [],
    truncated: p['truncated'] === true,
    ...(typeof p['error'] === 'string' ? { error: p['error'] } : {}),
  };
}

function pruneLine(p: PruneView): string {
  if (p.error !== undefined) return `did not run: ${p.error}`;
  const n = p.counts.removed - p.counts.failed;
  const failed = p.counts.failed > 0 ? `; ${p.counts.failed} failed` : '';
  if (p.dryRun) return `dry run: would remove ${n} image(s), ${formatSize(p.wouldReclaimBytes)}${failed}`;
  return `pruned ${n} image(s) (${p.counts.deleted} deleted), ${formatSize(p.reclaimedBytes)} reclaimed${failed}`;
}

function pruneTable(p: PruneView, max: number): string {
  const rows = p.images.slice(0, max).map((i) => [
    i.error !== undefined ? 'failed' : i.deleted ? 'deleted' : 'untagged',
    i.id.replace(/^sha256:/, '').slice(0, 12),
    (i.untagged ?? []).length > 0 ? (i.untagged ?? []).join(', ') : '<none>',
    formatSize(typeof i.sizeBytes === 'number' ? i.sizeBytes : 0),
    i.error ?? i.reason ?? '',
  ]);
  let out = formatTable(['RESULT', 'IMAGE', 'TAGS', 'SIZE', 'WHY'], rows);
  const more = p.counts.removed - Math.min(max, p.images.length);
  if (more > 0) out += `… and ${more} more (bulkhead --json audit HOST${p.truncated ? '; the agent sent the first 100, its log has every one' : ''})\n`;
  return out;
}

/** `--prunes`: one block per stored prune record, newest first. */
export function renderPruneList(l: HostAuditPruneListDto): string {
  let out = formatKeyValues([['Agent', `${l.agentId} (${l.hostname})`], ['Records', String(l.items.length)]]);
  if (l.items.length === 0) return `${out}\nno prune records (the agent's --image-prune policy is off, or it has not run yet)\n`;
  for (const item of l.items) {
    const p = asPrune(item.prune)!;
    out += `\n${item.takenAt}  ${pruneLine(p)}\n`;
    if (p.images.length > 0) out += pruneTable(p, Number.POSITIVE_INFINITY);
  }
  return out;
}

