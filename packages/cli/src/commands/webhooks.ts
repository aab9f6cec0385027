// Owns `bulkhead webhooks …` and `bulkhead deliveries …`: managing webhook
// endpoints, reading their delivery log (every attempt: status code,
// latency, error, next try) and redelivering dead-lettered deliveries.
// Secrets are printed only by `add` and `rotate-secret`, once.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseDuration } from '@bulkhead/client';
import type { ApiClient } from '../client';
import type { Delivery as DeliveryDto, DeliveryPage as DeliveryPageDto, Webhook as WebhookDto, WebhookList as WebhookListDto, WebhookWithSecret as WebhookWithSecretDto } from '@bulkhead/client';
import { ALERT_TYPES, SEVERITIES } from '@bulkhead/client';
import { formatKeyValues, formatTable } from '../table';
import { ago } from '../render';
import { readInputFile, toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';

const FILTER_TYPES = ALERT_TYPES.filter((t) => t !== 'test');
const collect = (v: string, acc: string[]): string[] => [...acc, v];
/** A repeatable option restricted to `choices` (commander's own choices() parser does not accumulate). */
export const collectChoice = (choices: readonly string[]) => (v: string, acc: string[]): string[] => {
  if (!choices.includes(v)) throw new InvalidArgumentError(`Allowed choices are ${choices.join(', ')}.`);
  return [...acc, v];
};

/** Thin typed calls over ApiClient.requestJson. */
export const webhooksApi = {
  list: (api: ApiClient) => api.getJson<WebhookListDto>('/v1/webhooks'),
  get: (api: ApiClient, id: string) => api.getJson<WebhookDto>(`/v1/webhooks/${encodeURIComponent(id)}`),
  create: (api: ApiClient, body: object) => api.requestJson<WebhookWithSecretDto>('POST', '/v1/webhooks', { body: JSON.stringify(body) }),
  update: (api: ApiClient, id: string, body: object) => api.requestJson<WebhookDto>('PATCH', `/v1/webhooks/${encodeURIComponent(id)}`, { body: JSON.stringify(body) }),
  remove: (api: ApiClient, id: string) => api.requestJson<undefined>('DELETE', `/v1/webhooks/${encodeURIComponent(id)}`, {}),
  rotate: (api: ApiClient, id: string, body: object) => api.requestJson<WebhookWithSecretDto>('POST', `/v1/webhooks/${encodeURIComponent(id)}/rotate-secret`, { body: JSON.stringify(body) }),
  test: (api: ApiClient, id: string, body: object) => api.requestJson<DeliveryDto>('POST', `/v1/webhooks/${encodeURIComponent(id)}/test`, { body: JSON.stringify(body) }),
  deliveries: (api: ApiClient, id: string, q: URLSearchParams) => api.getJson<DeliveryPageDto>(`/v1/webhooks/${encodeURIComponent(id)}/deliveries`, q),
  redeliver: (api: ApiClient, id: string) => api.requestJson<DeliveryDto>('POST', `/v1/deliveries/${encodeURIComponent(id)}/redeliver`, {}),
};

interface FilterFlags {
  name?: string;
  format?: string;
  minSeverity?: string;
  type: string[];
  project: string[];
  header: string[];
}

export function registerWebhookCommands(program: Command, ctx: CommandContext): void {
  const webhooks = program
    .command('webhooks')
    .description('webhook endpoints alerts are pushed to, and their delivery log (default: list)')
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead webhooks add --url https://siem.example/hooks/bulkhead --min-severity high\n  bulkhead webhooks add --url https://hooks.slack.com/services/T0/B0/XXXX --format slack --type violation --type action_failed\n  bulkhead webhooks deliveries wh_5f2c9a1b3d4e6f70\n',
    );

  webhooks
    .command('list', { isDefault: true })
    .description('list webhook endpoints with their filters and delivery counts')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const body = await webhooksApi.list(api);
      ctx.out(json ? toJson(body) : renderWebhookTable(body.items));
    });

  const filterOptions = (c: Command): Command =>
    c
      .option('--name <text>', 'a label for people')
      .addOption(new Option('--format <format>', 'payload format: json (Standard Webhooks envelope) or slack (incoming webhook)').choices(['json', 'slack']))
      .addOption(new Option('--min-severity <level>', 'only alerts at least this severe').choices([...SEVERITIES]))
      .addOption(new Option('--type <type>', 'only these alert types; repeatable').choices(FILTER_TYPES).argParser(collectChoice(FILTER_TYPES)).default([] as string[], 'all'))
      .option('--project <name>', 'only alerts of these projects; repeatable', collect, [] as string[])
      .option('--header <header>', 'extra request header "Name: value"; repeatable', collect, [] as string[]);

  filterOptions(
    webhooks
      .command('add')
      .description('create a webhook endpoint; prints its signing secret once')
      .requiredOption('--url <url>', 'http:// or https:// URL to POST alerts to'),
  )
    .option('--secret-file <file>', 'use this whsec_… secret (file, or - for stdin) instead of a generated one')
    .option('--disabled', 'create it disabled')
    .option('--allow-unsafe-target', 'allow a URL that resolves to a link-local or cloud metadata address')
    .addHelpText(
      'after',
      '\nThe signing secret (whsec_…) is printed once; store it in the receiver. Verify deliveries with any\nStandard Webhooks library, e.g. new Webhook(secret).verify(body, headers).\n' +
        '\nExamples:\n  bulkhead webhooks add --url https://siem.example/hooks/bulkhead --min-severity high --header "Authorization: Bearer $SIEM_TOKEN"\n  bulkhead webhooks add --url https://hooks.slack.com/services/T0/B0/XXXX --format slack --project payments\n',
    )
    .action(async (o: FilterFlags & { url: string; secretFile?: string; disabled?: boolean; allowUnsafeTarget?: boolean }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const body: Record<string, unknown> = { url: o.url, ...filterBody(ctx, o) };
      if (o.secretFile !== undefined) body['secret'] = readInputFile(ctx, o.secretFile, 'secret file').trim();
      if (o.disabled) body['enabled'] = false;
      if (o.allowUnsafeTarget) body['allowUnsafeTarget'] = true;
      const created = await webhooksApi.create(api, body);
      ctx.out(json ? toJson(created) : renderWebhook(created, ctx.now()) + `Secret:            ${created.secret}\n\nThe secret is shown only now. Receivers verify webhook-signature with it.\n`);
    });

  webhooks
    .command('get')
    .description('show one webhook endpoint (never its secret)')
    .argument('<id>', 'webhook id (wh_…)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const body = await webhooksApi.get(api, id);
      ctx.out(json ? toJson(body) : renderWebhook(body, ctx.now()));
    });

  filterOptions(webhooks.command('update').description('change a webhook endpoint; only the given settings change').argument('<id>', 'webhook id (wh_…)'))
    .option('--url <url>', 'new URL')
    .option('--all-types', 'clear the type filter (every type)')
    .option('--all-projects', 'clear the project filter (every project)')
    .option('--clear-headers', 'remove every extra header')
    .option('--enable', 'enable it (also clears a disable reason such as 410 Gone)')
    .option('--disable', 'disable it: no new deliveries; queued ones wait')
    .option('--allow-unsafe-target', 'allow link-local / metadata targets')
    .option('--disallow-unsafe-target', 'refuse link-local / metadata targets again')
    .addHelpText(
      'after',
      '\n--type, --project and --header replace the whole list when given.\n\nExamples:\n  bulkhead webhooks update wh_5f2c9a1b3d4e6f70 --min-severity critical\n  bulkhead webhooks update wh_5f2c9a1b3d4e6f70 --enable\n  bulkhead webhooks update wh_5f2c9a1b3d4e6f70 --type violation --type authz_denied\n',
    )
    .action(
      async (
        id: string,
        o: FilterFlags & { url?: string; allTypes?: boolean; allProjects?: boolean; clearHeaders?: boolean; enable?: boolean; disable?: boolean; allowUnsafeTarget?: boolean; disallowUnsafeTarget?: boolean },
        cmd: Command,
      ) => {
        const { api, json } = ctx.client(cmd);
        if (o.enable && o.disable) throw ctx.usageError('--enable and --disable contradict each other');
        if (o.allowUnsafeTarget && o.disallowUnsafeTarget) throw ctx.usageError('--allow-unsafe-target and --disallow-unsafe-target contradict each other');
        if (o.allTypes && o.type.length > 0) throw ctx.usageError('--all-types and --type contradict each other');
        if (o.allProjects && o.project.length > 0) throw ctx.usageError('--all-projects and --project contradict each other');
        if (o.clearHeaders && o.header.length > 0) throw ctx.usageError('--clear-headers and --header contradict each other');
        const body: Record<string, unknown> = filterBody(ctx, o);
        if (o.url !== undefined) body['url'] = o.url;
        if (o.allTypes) body['types'] = [];
        if (o.allProjects) body['projects'] = [];
        if (o.clearHeaders) body['headers'] = {};
        if (o.enable) body['enabled'] = true;
        if (o.disable) body['enabled'] = false;
        if (o.allowUnsafeTarget) body['allowUnsafeTarget'] = true;
        if (o.disallowUnsafeTarget) body['allowUnsafeTarget'] = false;
        if (Object.keys(body).length === 0) throw ctx.usageError('nothing to change; see bulkhead webhooks update --help');
        const updated = await webhooksApi.update(api, id, body);
        ctx.out(json ? toJson(updated) : renderWebhook(updated, ctx.now()));
      },
    );

  webhooks
    .command('remove')
    .description('delete a webhook endpoint and its delivery log (queued deliveries are dropped)')
    .argument('<id>', 'webhook id (wh_…)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      await webhooksApi.remove(api, id);
      ctx.out(json ? toJson({ id, removed: true }) : `removed ${id}\n`);
    });

  webhooks
    .command('rotate-secret')
    .description('replace the signing secret; the old one keeps signing during a grace period')
    .argument('<id>', 'webhook id (wh_…)')
    .option('--grace <duration>', 'how long deliveries also carry a signature with the old secret (0s: none)', '24h')
    .option('--secret-file <file>', 'use this whsec_… secret (file, or - for stdin) instead of a generated one')
    .addHelpText('after', '\nDuring the grace period webhook-signature carries two "v1," signatures, so receivers can switch\nsecrets without dropping a message.\n\nExample:\n  bulkhead webhooks rotate-secret wh_5f2c9a1b3d4e6f70 --grace 2h\n')
    .action(async (id: string, o: { grace: string; secretFile?: string }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      try {
        parseDuration(o.grace, '--grace');
      } catch (e) {
        throw ctx.usageError((e as Error).message);
      }
      const body: Record<string, unknown> = { grace: o.grace };
      if (o.secretFile !== undefined) body['secret'] = readInputFile(ctx, o.secretFile, 'secret file').trim();
      const r = await webhooksApi.rotate(api, id, body);
      const until = r.previousSecretExpiresAt === null ? 'the old secret stopped signing now' : `the old secret also signs until ${r.previousSecretExpiresAt}`;
      ctx.out(json ? toJson(r) : `New secret:  ${r.secret}\n(shown only now; ${until})\n`);
    });

  webhooks
    .command('test')
    .description('send a test alert to one endpoint through the outbox and show the first attempt')
    .argument('<id>', 'webhook id (wh_…)')
    .option('--no-wait', 'queue it and return without waiting for the first attempt')
    .option('--message <text>', 'text of the test alert')
    .addHelpText('after', '\nExamples:\n  bulkhead webhooks test wh_5f2c9a1b3d4e6f70\n  bulkhead --json webhooks test wh_5f2c9a1b3d4e6f70 | jq -e \'.status == "delivered"\'\n')
    .action(async (id: string, o: { wait: boolean; message?: string }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const d = await webhooksApi.test(api, id, { wait: o.wait, ...(o.message !== undefined ? { message: o.message } : {}) });
      ctx.out(json ? toJson(d) : renderDeliveries([d], ctx.now()));
    });

  webhooks
    .command('deliveries')
    .description("an endpoint's delivery log, newest first: every attempt with status code, latency, error and next try")
    .argument('<id>', 'webhook id (wh_…)')
    .addOption(new Option('--status <status>', 'only deliveries in this state').choices(['pending', 'delivered', 'dead']))
    .option('--limit <n>', 'at most N deliveries (default: 20)', parsePositiveInt)
    .addHelpText('after', '\nExamples:\n  bulkhead webhooks deliveries wh_5f2c9a1b3d4e6f70\n  bulkhead webhooks deliveries wh_5f2c9a1b3d4e6f70 --status dead\n')
    .action(async (id: string, o: { status?: string; limit?: number }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const q = new URLSearchParams({ limit: String(Math.min(o.limit ?? 20, 1000)) });
      if (o.status !== undefined) q.set('status', o.status);
      const page = await webhooksApi.deliveries(api, id, q);
      ctx.out(json ? toJson(page) : renderDeliveries(page.items, ctx.now()));
    });

  const deliveries = program.command('deliveries').description('webhook deliveries');
  deliveries
    .command('redeliver')
    .description('send a dead-lettered delivery again (same webhook-id, fresh retry schedule)')
    .argument('<id>', 'delivery id (msg_…), from `bulkhead webhooks deliveries`')
    .addHelpText('after', '\nExample:\n  bulkhead deliveries redeliver msg_01JD8X2V7K3M4N5P6Q7R8S9T0V\n')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const d = await webhooksApi.redeliver(api, id);
      ctx.out(json ? toJson(d) : `requeued ${d.id} (webhook ${d.webhookId}); follow it with: bulkhead webhooks deliveries ${d.webhookId}\n`);
    });
}

function filterBody(ctx: CommandContext, o: FilterFlags): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.name !== undefined) body['name'] = o.name;
  if (o.format !== undefined) body['format'] = o.format;
  if (o.minSeverity !== undefined) body['minSeverity'] = o.minSeverity;
  if (o.type.length > 0) body['types'] = o.type;
  if (o.project.length > 0) body['projects'] = o.project;
  if (o.header.length > 0) {
    const headers: Record<string, string> = {};
    for (const h of o.header) {
      const i = h.indexOf(':');
      if (i <= 0) throw ctx.usageError(`--header "${h}": expected "Name: value"`);
      headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
    }
    body['headers'] = headers;
  }
  return body;
}

function filterText(w: WebhookDto): string {
  const parts = [`>=${w.minSeverity}`];
  if (w.types.length > 0) parts.push(`types=${w.types.join(',')}`);
  if (w.projects.length > 0) parts.push(`projects=${w.projects.join(',')}`);
  return parts.join(' ');
}

export function renderWebhookTable(items: WebhookDto[]): string {
  if (items.length === 0) return 'no webhooks\n';
  return formatTable(
    ['ID', 'NAME', 'FORMAT', 'URL', 'FILTER', 'ENABLED', 'PENDING', 'DELIVERED', 'DEAD'],
    items.map((w) => [w.id, w.name || '-', w.format, w.url, filterText(w), w.enabled ? 'yes' : w.disabledReason ? 'no (410)' : 'no', String(w.stats.pending), String(w.stats.delivered), String(w.stats.dead)]),
  );
}

export function renderWebhook(w: WebhookDto, now: Date): string {
  const pairs: Array<[string, string]> = [
    ['ID', w.id],
    ['Name', w.name || '-'],
    ['URL', w.url],
    ['Format', w.format],
    ['Min severity', w.minSeverity],
    ['Types', w.types.join(', ') || '(all)'],
    ['Projects', w.projects.join(', ') || '(all)'],
    ['Headers', w.headerNames.join(', ') || '-'],
    ['Enabled', w.enabled ? 'yes' : `no${w.disabledReason ? ` — ${w.disabledReason}` : ''}`],
    ['Unsafe targets', w.allowUnsafeTarget ? 'allowed' : 'refused'],
    ['Old secret signs', w.previousSecretExpiresAt === null ? '-' : `until ${w.previousSecretExpiresAt} (${ago(w.previousSecretExpiresAt, now)})`],
    ['Deliveries', `${w.stats.pending} pending, ${w.stats.delivered} delivered, ${w.stats.dead} dead`],
    ['Created', `${w.createdAt} (${ago(w.createdAt, now)})`],
  ];
  return formatKeyValues(pairs.map(([k, v]) => [k.padEnd(16).trimEnd(), v]));
}

/** One row per attempt (a delivery not yet attempted gets one row). */
export function renderDeliveries(items: DeliveryDto[], now: Date): string {
  if (items.length === 0) return 'no deliveries\n';
  const rows: string[][] = [];
  for (const d of items) {
    const next = d.nextAttemptAt === null ? '-' : ago(d.nextAttemptAt, now);
    const status = d.status === 'dead' && d.deadReason ? `dead` : d.status;
    if (d.attemptLog.length === 0) {
      rows.push([d.id, d.alertType ?? '-', status, '-', '-', '-', '-', 'not attempted yet', next]);
      continue;
    }
    d.attemptLog.forEach((a, i) => {
      const last = i === d.attemptLog.length - 1;
      rows.push([
        i === 0 ? d.id : '',
        i === 0 ? (d.alertType ?? '-') : '',
        last ? status : '',
        String(a.attempt),
        ago(a.at, now),
        a.statusCode === null ? '-' : String(a.statusCode),
        `${a.latencyMs}ms`,
        a.error ?? a.outcome,
        last ? next : a.nextAttemptAt === null ? '-' : ago(a.nextAttemptAt, now),
      ]);
    });
  }
  const table = formatTable(['DELIVERY', 'ALERT', 'STATUS', 'ATTEMPT', 'TIME', 'CODE', 'LATENCY', 'RESULT', 'NEXT TRY'], rows);
  const dead = items.filter((d) => d.status === 'dead' && d.deadReason).map((d) => `${d.id}: ${d.deadReason}`);
  return dead.length === 0 ? table : table + '\nDead-lettered (bulkhead deliveries redeliver ID):\n' + dead.map((l) => `  ${l}\n`).join('');
}
