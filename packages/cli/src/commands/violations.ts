// Owns `bulkhead violations`: the record of findings and actions the agents
// reported, filtered, newest first (`list`, the default), and operators
// acknowledging them (`ack`, `unack`).
import { Option, type Command } from 'commander';
import { parseDuration } from '@bulkhead/client';
import type { ViolationListParams } from '../client';
import type { Violation as ViolationDto } from '@bulkhead/client';
import { formatKeyValues, formatTable } from '../table';
import { ago } from '../render';
import { toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';

const PAGE = 500;

export function registerViolationCommands(program: Command, ctx: CommandContext): void {
  const violations = program
    .command('violations')
    .description('findings the agents reported and what was done about them (default: list); acknowledge them')
    .addHelpText(
      'after',
      '\nFilters (--agent, --container, --rule, --severity, --mode, --since, --acknowledged, --unacknowledged, --limit):\n  bulkhead violations list --help\n' +
        '\nExamples:\n  bulkhead violations --since 1h --unacknowledged\n  bulkhead violations ack 7c9e6679-7425-40de-944b-e07fc1f90ae7 --comment "INC-1234: fix in next release"\n',
    );

  violations
    .command('list', { isDefault: true })
    .description('findings the agents reported and what was done about them, newest first')
    .option('--agent <id>', 'only this agent')
    .option('--container <ref>', 'only this container: id, id prefix or name')
    .option('--rule <id>', 'only this rule id')
    .addOption(new Option('--severity <level>', 'only this severity').choices(['low', 'medium', 'high', 'critical']))
    .addOption(new Option('--mode <mode>', 'only findings of rules in this mode').choices(['monitor', 'enforce']))
    .option('--since <when>', 'only since a duration ago (30m, 2h, 7d) or an ISO 8601 time')
    .addOption(new Option('--acknowledged', 'only violations an operator acknowledged').conflicts('unacknowledged'))
    .option('--unacknowledged', 'only violations nobody acknowledged yet')
    .option('--limit <n>', 'show at most N (default: 100)', parsePositiveInt)
    .addHelpText(
      'after',
      '\nOUTCOME is "denied" (refused at the Docker API), the action and its result (e.g. "kill ok 41ms"),\n"recorded" (monitor mode) or "exempted". ACK is who acknowledged it and when ("-": nobody yet).\n' +
        '\nExamples:\n  bulkhead violations --since 1h\n  bulkhead violations --rule host.privileged --mode enforce --unacknowledged\n  bulkhead violations --agent agt_3f9c2a7b1d0e4f5a6b7c --container web --limit 20\n  bulkhead --json violations --severity critical --since 2026-01-01T00:00:00Z\n',
    )
    .action(
      async (
        o: { agent?: string; container?: string; rule?: string; severity?: ViolationListParams['severity']; mode?: ViolationListParams['mode']; since?: string; acknowledged?: boolean; unacknowledged?: boolean; limit?: number },
        cmd: Command,
      ) => {
        const { api, json } = ctx.client(cmd);
        const since = o.since === undefined ? undefined : parseSince(ctx, o.since);
        const max = o.limit ?? 100;
        const acknowledged = o.acknowledged === true ? true : o.unacknowledged === true ? false : undefined;
        const filter: ViolationListParams = { agent: o.agent, container: o.container, rule: o.rule, severity: o.severity, mode: o.mode, since, acknowledged };
        const items: ViolationDto[] = [];
        // By cursor: violations reported while paging do not shift the pages (nextOffset from a controller without cursors).
        let at: { cursor?: string; offset?: number } | null = {};
        while (at !== null && items.length < max) {
          const page = await api.listViolations({ ...filter, ...at, limit: Math.min(PAGE, max - items.length) });
          items.push(...page.items);
          at = typeof page.nextCursor === 'string' ? { cursor: page.nextCursor } : page.nextOffset !== null && page.nextOffset !== undefined ? { offset: page.nextOffset } : null;
        }
        ctx.out(json ? toJson({ items }) : renderViolations(items, ctx.now()));
      },
    );

  violations
    .command('ack')
    .description('acknowledge a violation: records your key, the time and a comment (operator role)')
    .argument('<id>', 'violation id (the ID column of `bulkhead violations`)')
    .option('--comment <text>', 'why, e.g. a ticket reference (at most 1024 characters)')
    .addHelpText(
      'after',
      '\nThe first acknowledgement is kept: acknowledging again fails (exit 1, BK_ERR_CONFLICT, naming who\n' +
        'acknowledged) until `bulkhead violations unack` clears it. Both are recorded in the audit log.\n' +
        '\nExamples:\n  bulkhead violations ack 7c9e6679-7425-40de-944b-e07fc1f90ae7 --comment "INC-1234: fix in next release"\n' +
        "  bulkhead --json violations --unacknowledged --rule image.no-latest | jq -r '.items[].id' | xargs -n1 bulkhead violations ack --comment 'accepted risk'\n",
    )
    .action(async (id: string, o: { comment?: string }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const v = await api.acknowledgeViolation(id, o.comment);
      ctx.out(json ? toJson(v) : renderAck(v));
    });

  violations
    .command('unack')
    .description('clear the acknowledgement of a violation (operator role)')
    .argument('<id>', 'violation id')
    .addHelpText('after', '\nFails (exit 1, BK_ERR_CONFLICT) when the violation is not acknowledged.\n\nExample:\n  bulkhead violations unack 7c9e6679-7425-40de-944b-e07fc1f90ae7\n')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const v = await api.unacknowledgeViolation(id);
      ctx.out(json ? toJson(v) : `cleared the acknowledgement of violation ${v.id}\n`);
    });
}

function renderAck(v: ViolationDto): string {
  const a = v.acknowledgement;
  return formatKeyValues([
    ['Violation', v.id],
    ['Rule', `${v.ruleId} (${v.severity})`],
    ['Container', `${containerLabel(v)} on ${v.agentId}`],
    ['Acknowledged', a ? `by ${a.byName} (${a.byKeyId}) at ${a.at}` : 'no'],
    ['Comment', a && a.comment !== '' ? a.comment : '-'],
  ]);
}

function containerLabel(v: ViolationDto): string {
  return (v.containerName.startsWith('/') ? v.containerName.slice(1) : v.containerName) || v.containerId.slice(0, 12) || '-';
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
    ['ID', 'TIME', 'AGENT', 'CONTAINER', 'RULE', 'SEVERITY', 'MODE', 'SOURCE', 'OUTCOME', 'ACK', 'MESSAGE'],
    items.map((v) => [
      v.id,
      ago(v.at, now),
      v.agentId,
      containerLabel(v),
      v.ruleId,
      v.severity,
      v.mode,
      v.source,
      outcome(v),
      v.acknowledgement ? `${v.acknowledgement.byName} ${ago(v.acknowledgement.at, now)}` : '-',
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
