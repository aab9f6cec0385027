import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, BulkheadError, parseErrorString, isBulkheadError } from '../src/errors/registry';

t.test('every error code is documented in docs/errors.md', async (t) => {
  const doc = readFileSync(join(__dirname, '../../../docs/errors.md'), 'utf8');
  for (const code of Object.keys(ERRORS)) t.match(doc, `\`${code}\``, `${code} documented`);
});

t.test('BulkheadError carries code, status, cause and round-trips through its string form', async (t) => {
  const cause = new Error('boom');
  const e = new BulkheadError('BK_ERR_TOKEN_USED', undefined, { cause });
  t.equal(e.status, 401);
  t.equal(e.message, ERRORS.BK_ERR_TOKEN_USED.message);
  t.equal(e.cause, cause);
  t.ok(isBulkheadError(e));
  t.notOk(isBulkheadError(cause));
  t.same(parseErrorString(e.toString()), { code: 'BK_ERR_TOKEN_USED', message: e.message });
  t.equal(parseErrorString('BK_ERR_NOPE: x'), undefined);
  t.equal(parseErrorString('plain text'), undefined);
});
