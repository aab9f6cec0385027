// Regenerates docs/errors.md from the error registry (run after `tsc -b`).
// packages/shared/test/errors.test.ts fails when a code is missing from it.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { ERRORS } = createRequire(import.meta.url)(join(root, 'packages/shared/dist/errors/registry.js'));
let s = '# Error codes\n\nEvery error Bulkhead reports carries one of these stable codes. The REST API returns them in\n`application/problem+json` bodies (field `code`) with the HTTP status below; the agent link\ncarries them in the gRPC status details as `BK_ERR_X: message`; the CLIs print them on stderr.\n\n| code | HTTP | gRPC | meaning |\n|---|---|---|---|\n';
for (const [k, v] of Object.entries(ERRORS)) s += `| \`${k}\` | ${v.status} | ${v.grpc} | ${v.message} |\n`;
writeFileSync(join(root, 'docs/errors.md'), s);
