// docs/api.md documents every field of the identity-and-access and audit
// wire shapes (test/docs.test.ts does the same for src/api/dto.ts).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { TObject } from '@sinclair/typebox';
import { ApiKeyCreateSchema, ApiKeyListSchema, ApiKeySchema } from '../../src/api/routes/keys';
import { TokenRequestSchema, TokenSchema, WhoAmISchema } from '../../src/api/routes/auth';
import { JoinTokenCreateSchema, JoinTokenListQuerySchema, JoinTokenPageSchema, JoinTokenSchema } from '../../src/api/routes/join-tokens';
import { AuditEntrySchema, AuditListQuerySchema, AuditPageSchema, AuditVerifySchema } from '../../src/api/routes/audit-log';

const doc = readFileSync(resolve(__dirname, '../../../../docs/api.md'), 'utf8');

/** The text under the first heading equal to `title`, up to the next heading of the same or a higher level. */
function section(title: string): string | undefined {
  const lines = doc.split('\n');
  const i = lines.findIndex((l) => /^#{2,4} /.test(l) && l.replace(/^#+ /, '').trim() === title);
  if (i < 0) return undefined;
  const level = /^#+/.exec(lines[i]!)![0].length;
  const end = lines.findIndex((l, j) => j > i && /^#+ /.test(l) && /^#+/.exec(l)![0].length <= level);
  return lines.slice(i, end < 0 ? lines.length : end).join('\n');
}

const shapes: Array<[string, TObject]> = [
  ['ApiKey', ApiKeySchema],
  ['ApiKeyList', ApiKeyListSchema],
  ['`POST /v1/keys`', ApiKeyCreateSchema],
  ['Token', TokenSchema],
  ['`POST /v1/auth/token`', TokenRequestSchema],
  ['WhoAmI', WhoAmISchema],
  ['JoinToken', JoinTokenSchema],
  ['JoinTokenPage', JoinTokenPageSchema],
  ['`POST /v1/join-tokens`', JoinTokenCreateSchema],
  ['`GET /v1/join-tokens`', JoinTokenListQuerySchema],
  ['AuditEntry', AuditEntrySchema],
  ['AuditPage', AuditPageSchema],
  ['AuditVerify', AuditVerifySchema],
  ['`GET /v1/audit-log`', AuditListQuerySchema],
];

t.test('every field is documented under its heading', async (t) => {
  for (const [title, schema] of shapes) {
    const sec = section(title);
    if (sec === undefined) {
      t.fail(`docs/api.md has a "${title}" heading`);
      continue;
    }
    for (const field of Object.keys(schema.properties)) t.ok(sec.includes(`\`${field}\``), `${title}: \`${field}\``);
  }
  const withSecret = section('ApiKey') ?? '';
  t.ok(withSecret.includes('`key`'), 'the once-shown key field');
});
