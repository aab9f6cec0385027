// Owns `bulkhead keys …`: API keys — list, show, create (the key is printed
// once), revoke. Needs an admin credential; a new key never exceeds the
// creator's own role, projects or expiry (the controller refuses with 403).
import { Option, type Command } from 'commander';
import { parseDuration } from '@bulkhead/client';
import type { ApiClient } from '../client';
import type { ApiKey as ApiKeyDto, ApiKeyList as ApiKeyListDto, ApiKeyWithSecret as ApiKeyWithSecretDto } from '@bulkhead/client';
import { ROLES } from '@bulkhead/client';
import { formatKeyValues, formatTable } from '../table';
import { ago } from '../render';
import { toJson, type CommandContext } from './context';

export const keysApi = {
  list: (api: ApiClient) => api.getJson<ApiKeyListDto>('/v1/keys'),
  get: (api: ApiClient, id: string) => api.getJson<ApiKeyDto>(`/v1/keys/${encodeURIComponent(id)}`),
  create: (api: ApiClient, body: object) => api.requestJson<ApiKeyWithSecretDto>('POST', '/v1/keys', { body: JSON.stringify(body) }),
  revoke: (api: ApiClient, id: string) => api.requestJson<ApiKeyDto>('DELETE', `/v1/keys/${encodeURIComponent(id)}`, {}),
};

const collect = (v: string, acc: string[]): string[] => [...acc, v];

export function registerKeyCommands(program: Command, ctx: CommandContext): void {
  const keys = program
    .command('keys')
    .description('API keys: one per person or job, each with a role, optional projects and expiry (default: list)')
    .addHelpText('after', '\nExamples:\n  bulkhead keys\n  bulkhead keys create ci-deploy --role operator --project payments --expires 90d\n  bulkhead keys revoke ak_5f2c9a1b3d4e6f70\n');

  keys
    .command('list', { isDefault: true })
    .description('list API keys (never their secrets)')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const body = await keysApi.list(api);
      ctx.out(json ? toJson(body) : renderKeyTable(body.items, ctx.now()));
    });

  keys
    .command('get')
    .description('show one API key')
    .argument('<id>', 'key id (ak_…)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const k = await keysApi.get(api, id);
      ctx.out(json ? toJson(k) : renderKey(k, ctx.now()));
    });

  keys
    .command('create')
    .description('create an API key; prints it once')
    .argument('<name>', 'who or what uses it, e.g. "ci-deploy" or "alice"')
    .addOption(new Option('--role <role>', 'viewer (read), operator (act on containers, webhooks) or admin').choices([...ROLES]).makeOptionMandatory())
    .option('--project <name>', 'limit the key to this project; repeatable (default: every project)', collect, [] as string[])
    .option('--expires <duration>', 'expire after this long, e.g. 30d or 12h (default: never)')
    .option('--only <action>', 'limit the key to this API action, e.g. scans.upload (POST /v1/scans) or containers.pause (one manual container action); repeatable; every other route answers 403 (default: every route its role allows)', collect, [] as string[])
    .addHelpText(
      'after',
      '\nThe key (bk_…) is printed only now; the controller keeps only its hash.\n' +
        '\nExamples:\n  bulkhead keys create grafana --role viewer\n  bulkhead keys create ci-payments --role operator --project payments --expires 90d\n' +
        '  bulkhead keys create ci-scan-upload --role operator --only scans.upload --expires 365d\n',
    )
    .action(async (name: string, o: { role: string; project: string[]; expires?: string; only: string[] }, cmd: Command) => {
      if (o.expires !== undefined) {
        try {
          parseDuration(o.expires, '--expires');
        } catch (e) {
          throw ctx.usageError((e as Error).message);
        }
      }
      const { api, json } = ctx.client(cmd);
      const body: Record<string, unknown> = { name, role: o.role };
      if (o.project.length > 0) body['projects'] = o.project;
      if (o.expires !== undefined) body['expiresIn'] = o.expires;
      if (o.only.length > 0) body['actions'] = o.only;
      const k = await keysApi.create(api, body);
      ctx.out(json ? toJson(k) : renderKey(k, ctx.now()) + `Key:         ${k.key}\n\nThe key is shown only now. Give it to its user as BULKHEAD_API_KEY.\n`);
    });

  keys
    .command('revoke')
    .description('revoke an API key; its tokens stop working at once')
    .argument('<id>', 'key id (ak_…)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const k = await keysApi.revoke(api, id);
      ctx.out(json ? toJson(k) : `revoked ${k.id} (${k.name}) at ${k.revokedAt ?? '?'}\n`);
    });
}

export function renderKeyTable(items: ApiKeyDto[], now: Date): string {
  if (items.length === 0) return 'no API keys\n';
  return formatTable(
    ['ID', 'NAME', 'ROLE', 'PROJECTS', 'STATUS', 'EXPIRES', 'LAST USED', 'CREATED BY'],
    items.map((k) => [k.id, k.name, k.role, k.projects.join(',') || '(all)', k.status, k.expiresAt === null ? 'never' : k.expiresAt.slice(0, 10), k.lastUsedAt === null ? 'never' : ago(k.lastUsedAt, now), k.createdBy || '-']),
  );
}

export function renderKey(k: ApiKeyDto, now: Date): string {
  return formatKeyValues([
    ['ID', k.id],
    ['Name', k.name],
    ['Role', k.role],
    ['Projects', k.projects.join(', ') || '(all)'],
    ...((k.actions ?? []).length > 0 ? ([['Only', (k.actions ?? []).join(', ')]] as Array<[string, string]>) : []),
    ['Status', k.status],
    ['Expires', k.expiresAt === null ? 'never' : `${k.expiresAt} (${ago(k.expiresAt, now)})`],
    ['Last used', k.lastUsedAt === null ? 'never' : `${k.lastUsedAt} (${ago(k.lastUsedAt, now)})`],
    ['Created', `${k.createdAt} by ${k.createdBy || '-'}`],
    ...(k.revokedAt !== null ? ([['Revoked', k.revokedAt]] as Array<[string, string]>) : []),
  ]);
}
