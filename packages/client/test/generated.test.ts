// The committed API types (src/generated/openapi.ts) are exactly what
// openapi-typescript makes of the controller's live OpenAPI document: a route or
// schema changed without `npm run gen:api` fails here, so neither the CLI nor the
// console can drift from the API. Needs the controller built (npx tsc -b).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const script = join(__dirname, '../../../scripts/gen-api.mjs');

t.test('generated API types match the live OpenAPI document', async (t) => {
  const gen = (await import(pathToFileURL(script).href)) as {
    GENERATED_FILE: string;
    openApiDocument: () => Promise<{ paths: Record<string, unknown> }>;
    generate: (doc: unknown) => Promise<string>;
  };
  const doc = await gen.openApiDocument();
  t.ok(Object.keys(doc.paths).length >= 30, `${Object.keys(doc.paths).length} paths in the document`);
  const fresh = await gen.generate(doc);
  const committed = readFileSync(gen.GENERATED_FILE, 'utf8');
  t.ok(fresh.includes('"/v1/containers/{agent}/{id}/actions"'), 'the generator saw the routes');
  if (fresh !== committed) {
    const a = committed.split('\n');
    const b = fresh.split('\n');
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    t.fail(`packages/client/src/generated/openapi.ts is stale: run \`npm run gen:api\` (first difference at line ${i + 1}: committed ${JSON.stringify(a[i])}, now ${JSON.stringify(b[i])})`);
  } else {
    t.pass('packages/client/src/generated/openapi.ts is up to date');
  }
  // Every path of the document has its type (and nothing else does).
  const typed = [...committed.matchAll(/^    "(\/[^"]*)": \{$/gm)].map((m) => m[1]);
  t.same(typed.sort(), Object.keys(doc.paths).sort(), 'one type per documented path');
});
