// docs/api.md documents every field of the alert/webhook wire shapes (the
// shared docs test covers api/dto.ts only), and docs/alerts.md every
// tuning variable the controller reads.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TObject } from '@sinclair/typebox';
import {
  AlertListQuerySchema, AlertPageSchema, AlertSchema, DeliveryAttemptSchema, DeliveryListQuerySchema, DeliveryPageSchema, DeliverySchema,
  RotateSecretSchema, WebhookCreateSchema, WebhookListSchema, WebhookSchema, WebhookStatsSchema, WebhookTestSchema,
} from '../../src/alerts/alert-dto';
import { alertOptionsFromEnv } from '../../src/alerts/alert-options';

const ROOT = resolve(__dirname, '../../../..');
const api = readFileSync(join(ROOT, 'docs/api.md'), 'utf8');
const alerts = readFileSync(join(ROOT, 'docs/alerts.md'), 'utf8');

/** From a heading whose text is exactly `title` to the next heading of the same or higher level. */
function section(doc: string, title: string): string {
  const lines = doc.split('\n');
  const i = lines.findIndex((l) => /^#{2,4} /.test(l) && l.replace(/^#+ /, '') === title);
  if (i < 0) return '';
  const level = /^#+/.exec(lines[i]!)![0].length;
  const end = lines.findIndex((l, j) => j > i && /^#+ /.test(l) && /^#+/.exec(l)![0].length <= level);
  return lines.slice(i, end < 0 ? undefined : end).join('\n');
}

t.test('every wire field is documented in docs/api.md', async (t) => {
  const shapes: Array<[string, TObject]> = [
    ['WebhookList', WebhookListSchema],
    ['Webhook', WebhookSchema],
    ['Webhook', WebhookStatsSchema],
    ['DeliveryPage', DeliveryPageSchema],
    ['Delivery', DeliverySchema],
    ['Delivery', DeliveryAttemptSchema],
    ['AlertPage', AlertPageSchema],
    ['Alert', AlertSchema],
    ['`POST /v1/webhooks`', WebhookCreateSchema],
    ['`POST /v1/webhooks/:id/rotate-secret`', RotateSecretSchema],
    ['`POST /v1/webhooks/:id/test`', WebhookTestSchema],
    ['`GET /v1/webhooks/:id/deliveries`', DeliveryListQuerySchema],
    ['`GET /v1/alerts`', AlertListQuerySchema],
  ];
  for (const [title, schema] of shapes) {
    const sec = section(api, title);
    t.ok(sec, `docs/api.md has a "${title}" section`);
    for (const field of Object.keys(schema.properties)) t.ok(sec.includes(`\`${field}\``), `${title}: \`${field}\` is documented`);
  }
});

t.test('every tuning variable is documented in docs/alerts.md', async (t) => {
  const probe: Record<string, string> = {};
  const seen = new Set<string>();
  const env = new Proxy(probe, { get: (_o, k: string) => (seen.add(k), undefined) });
  alertOptionsFromEnv(env);
  t.ok(seen.size >= 10);
  for (const k of seen) t.ok(alerts.includes(`\`${k}\``), `${k} is documented`);
});
