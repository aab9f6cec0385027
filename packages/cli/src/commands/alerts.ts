// Owns `bulkhead alerts`: the alert history, newest first; repeats grouped
// into one alert show their count.
import { Option, type Command } from 'commander';
import { parseDuration } from '@bulkhead/client';
import type { Alert as AlertDto, AlertPage as AlertPageDto } from '@bulkhead/client';
import { ALERT_TYPES, SEVERITIES } from '@bulkhead/client';
import { formatTable } from '../table';
import { ago } from '../render';
import { toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';
import { collectChoice } from './webhooks';

const PAGE = 500;

export function registerAlertCommands(program: Command, ctx: CommandContext): void {
  program
    .command('alerts')
    .description('alerts raised by the controller (violations, actions, denials, lockdown findings, agents offline …), newest first')
    .addOption(new Option('--type <type>', 'only these types; repeatable').choices([...ALERT_TYPES]).argParser(collectChoice(ALERT_TYPES)).default([] as string[], 'all'))
    .addOption(new Option('--severity <level>', 'at least this severe').choices([...SEVERITIES]))
    .option('--since <when>', 'seen since a duration ago (30m, 2h, 7d) or an ISO 8601 time')
    .option('--agent <id>', 'only this agent')
    .option('--container <ref>', 'only this container: id prefix or name')
    .option('--project <name>', 'only this project')
    .option('--limit <n>', 'show at most N (default: 100)', parsePositiveInt)
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead alerts --since 1h\n  bulkhead alerts --severity high --type action_failed --type agent_offline\n  bulkhead --json alerts --agent agt_3f9c2a7b1d0e4f5a6b7c --container web\n',
    )
    .action(async (o: { type: string[]; severity?: string; since?: string; agent?: string; container?: string; project?: string; limit?: number }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const q = new URLSearchParams();
      for (const t of o.type) q.append('type', t);
      if (o.severity !== undefined) q.set('severity', o.severity);
      if (o.since !== undefined) q.set('since', checkSince(ctx, o.since));
      if (o.agent !== undefined) q.set('agent', o.agent);
      if (o.container !== undefined) q.set('container', o.container);
      if (o.project !== undefined) q.set('project', o.project);
      const max = o.limit ?? 100;
      const items: AlertDto[] = [];
      let offset: number | null = 0;
      while (offset !== null && items.length < max) {
        const page: AlertPageDto = await api.getJson<AlertPageDto>('/v1/alerts', new URLSearchParams([...q, ['offset', String(offset)], ['limit', String(Math.min(PAGE, max - items.length))]]));
        items.push(...page.items);
        offset = page.nextOffset;
      }
      ctx.out(json ? toJson({ items }) : renderAlerts(items, ctx.now()));
    });
}

function checkSince(ctx: CommandContext, s: string): string {
  if (/^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$/.test(s)) {
    parseDuration(s.trim(), '--since');
    return s.trim();
  }
  const t = Date.parse(s);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(s)) throw ctx.usageError(`--since "${s}": expected a duration (30m, 2h, 7d) or an ISO 8601 time`);
  return new Date(t).toISOString();
}

export function renderAlerts(items: AlertDto[], now: Date): string {
  if (items.length === 0) return 'no alerts\n';
  return formatTable(
    ['LAST SEEN', 'SEVERITY', 'TYPE', 'COUNT', 'HOST', 'CONTAINER', 'RULE', 'MESSAGE'],
    items.map((a) => [
      ago(a.lastSeenAt, now),
      a.severity,
      a.type,
      String(a.count),
      a.host ?? a.agentId ?? '-',
      (a.containerName?.replace(/^\//, '') || a.containerId?.slice(0, 12)) ?? '-',
      a.ruleId ?? '-',
      a.message,
    ]),
  );
}
