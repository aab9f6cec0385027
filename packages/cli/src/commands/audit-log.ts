// Owns `bulkhead audit-log` (list, default) and `bulkhead audit-log verify`:
// the audit trail, newest first, and checking its hash chain (exit 1 when
// it is broken). Needs an admin credential not limited to projects.
import { Option, type Command } from 'commander';
import type { AuditEntry as AuditEntryDto, AuditPage as AuditPageDto, AuditVerify as AuditVerifyDto } from '@bulkhead/client';
import { describeVerifyResult } from '@bulkhead/client';
import { formatTable } from '../table';
import { ago } from '../render';
import { toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';

const PAGE = 500;

/** The command reported its own failure; the CLI exits with `exitCode` without printing more. */
export class CommandFailed extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'CommandFailed';
  }
}

export function registerAuditLogCommands(program: Command, ctx: CommandContext): void {
  const audit = program
    .command('audit-log')
    .description('the hash-chained audit trail: every change and every refused credential (default: list)')
    .addHelpText('after', '\nExamples:\n  bulkhead audit-log --limit 20\n  bulkhead audit-log --status 401 --since 24h\n  bulkhead audit-log verify\n');

  audit
    .command('list', { isDefault: true })
    .description('audit entries, newest first')
    .option('--limit <n>', 'at most N entries (default: 50)', parsePositiveInt)
    .option('--actor <key-id>', 'only calls made with this key (or its tokens)')
    .option('--action <name>', 'only this action, e.g. keys.create or policies.apply')
    .addOption(new Option('--method <method>', 'only this HTTP method').choices(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']))
    .option('--status <code>', 'only answers with this HTTP status, e.g. 401', parsePositiveInt)
    .option('--since <when>', 'since a duration ago (30m, 2h, 7d) or an ISO 8601 time')
    .action(async (o: { limit?: number; actor?: string; action?: string; method?: string; status?: number; since?: string }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const q = new URLSearchParams();
      if (o.actor !== undefined) q.set('actor', o.actor);
      if (o.action !== undefined) q.set('action', o.action);
      if (o.method !== undefined) q.set('method', o.method);
      if (o.status !== undefined) q.set('status', String(o.status));
      if (o.since !== undefined) q.set('since', o.since);
      const max = o.limit ?? 50;
      const items: AuditEntryDto[] = [];
      let offset: number | null = 0;
      while (offset !== null && items.length < max) {
        const page: AuditPageDto = await api.getJson<AuditPageDto>('/v1/audit-log', new URLSearchParams([...q, ['offset', String(offset)], ['limit', String(Math.min(PAGE, max - items.length))]]));
        items.push(...page.items);
        offset = page.nextOffset;
      }
      ctx.out(json ? toJson({ items }) : renderAuditTable(items, ctx.now()));
    });

  audit
    .command('verify')
    .description("check the audit trail's hash chain; exit 1 when it is broken")
    .addHelpText('after', '\nOffline, on the controller host: bulkhead-controller audit-log verify --data-dir DIR\n')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const r = await api.getJson<AuditVerifyDto>('/v1/audit-log/verify');
      ctx.out(json ? toJson(r) : describeVerifyResult(r));
      if (!r.ok) throw new CommandFailed(1);
    });
}

export function renderAuditTable(items: AuditEntryDto[], now: Date): string {
  if (items.length === 0) return 'no audit entries\n';
  return formatTable(
    ['SEQ', 'TIME', 'ACTOR', 'ACTION', 'METHOD', 'PATH', 'STATUS', 'FROM', 'TARGET'],
    items.map((e) => [
      String(e.seq),
      ago(e.at, now),
      e.actorKind === 'anonymous' ? 'anonymous' : `${e.actorName} (${e.actorId})${e.actorKind === 'token' ? ' via token' : ''}`,
      e.action,
      e.method,
      e.path,
      e.code !== '' ? `${e.status} ${e.code}` : String(e.status),
      e.clientIp,
      Object.entries(e.target).map(([k, v]) => `${k}=${v}`).join(' ') || '-',
    ]),
  );
}
