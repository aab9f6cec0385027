// Owns `bulkhead violations`: the record of findings and actions the agents
// reported, filtered, newest first.
import { Option, type Command } from 'commander';
import { parseDuration } from '@bulkhead/shared';
import type { ViolationListParams } from '../client';
import type { ViolationDto } from '../../api/routes/violations';
import { formatTable } from '../table';
import { ago } from '../render';
import { toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';

const PAGE = 500;

export function registerViolationCommands(program: Command, ctx: CommandContext): void {
  program
    .command('violations')
    .description('findings the agents reported and what was done about them, newest first')
    .option('--agent <id>', 'only this agent')
    .option('--container <ref>', 'only this container: id, id prefix or name')
    .option('--rule <id>', 'only this rule id')
    .addOption(new Option('--severity <level>', 'only this severity').choices(['low', 'medium', 'high', 'critical']))
    .addOption(new Option('--mode <mode>', 'only findings of rules in this mode').choices(['monitor', 'enforce']))
    .option('--since <when>', 'only since a duration ago (30m, 2h, 7d) or an ISO 8601 time')
    .option('--limit <n>', 'show at most N (default: 100)', parsePositiveInt)
    .addHelpText(
      'after',
      '\nOUTCOME is "denied" (refused at the Docker API), the action and its result (e.g. "kill ok 41ms"),\n"recorded" (monitor mode) or "exempted".\n' +
        '\nExamples:\n  bulkhead violations --since 1h\n  bulkhead violations --rule host.privileged --mode enforce\n  bulkhead violations --agent agt_3f9c2a7b1d0e4f5a6b7c --container web --limit 20\n  bulkhead --json violations --severity critical --since 2026-01-01T00:00:00Z\n',
    )
    .action(async (o: { agent?: string; container?: string; rule?: string; severity?: string; mode?: string; since?: string; limit?: number }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const since = o.since === undefined ? undefined : parseSince(ctx, o.since);
      const max = o.limit ?? 100;
      const filter: ViolationListParams = { agent: o.agent, container: o.container, rule: o.rule, severity: o.severity, mode: o.mode, since };
      const items: ViolationDto[] = [];
      let offset: number | null = 0;
      while (offset !== null && items.length < max) {
        const page = await api.listViolations({ ...filter, offset, limit: Math.min(PAGE, max - items.length) });
        items.push(...page.items);
        offset = page.nextOffset;
      }
      ctx.out(json ? toJson({ items }) : renderViolations(items, ctx.now()));
    });
}

/** "30m" → that long before now; otherwise an ISO 8601 time. */
function parseSince(ctx: CommandContext, s: string): string {
  if (/^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$/.test(s)) return new Date(ctx.now().getTime() - parseDuration(s, '--since')).toISOString();
  const t = Date.parse(s);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(s)) throw ctx.usageError(`--since "${s}": expected a duration (30m, 2h, 7d) or an ISO 8601 time`);
  return new Date(t).toISOString();
}

export function renderViolations(items: ViolationDto[], now: Date): string {
  if (items.length === 0) return 'no violations\n';
  return formatTable(
    ['TIME', 'AGENT', 'CONTAINER', 'RULE', 'SEVERITY', 'MODE', 'SOURCE', 'OUTCOME', 'MESSAGE'],
    items.map((v) => [
      ago(v.at, now),
      v.agentId,
      (v.containerName.startsWith('/') ? v.containerName.slice(1) : v.containerName) || v.containerId.slice(0, 12),
      v.ruleId,
      v.severity,
      v.mode,
      v.source,
      outcome(v),
      v.message,
    ]),
  );
}

function outcome(v: ViolationDto): string {
  if (v.exemptedBy !== '') return 'exempted';
  if (v.denied) return 'denied';
  if (v.action) {
    const ms = v.action.durationMs > 0 ? ` ${Math.round(v.action.durationMs)}ms` : '';
    return `${v.action.type} ${v.action.result}${ms}`;
  }
  return 'recorded';
}
