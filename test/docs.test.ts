// docs/cli.md and docs/api.md must keep up with the code:
// - every command, subcommand, argument, long flag, environment variable and quoted default
//   that the built CLIs print in `--help` appears in docs/cli.md (leaf commands under their
//   own heading, their flags within that heading's section);
// - every route the API server registers appears in docs/api.md under its own heading, and
//   every field of the wire shapes in dto.ts appears in the section describing it.
// The CLIs are run from dist/ (as shipped): after changing a CLI, rebuild (`npx tsc -b`).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { TObject } from '@sinclair/typebox';
import { createCa, createLogger, issueServerCert } from '@bulkhead/shared';
import { createApiServer } from '../packages/controller/src/api/server';
import {
  AgentListSchema, AgentSchema, ContainerListQuerySchema, ContainerPageSchema, ContainerSchema, ContainerUsageHistorySchema, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
  ProblemSchema, UsagePointSchema,
} from '../packages/controller/src/api/dto';
import type { Store } from '../packages/controller/src/store/store';
import {
  DryRunResultSchema, PolicyErrorSchema, PolicyGetQuerySchema, PolicyPutQuerySchema, PolicySchema, PolicyVersionListSchema, PolicyVersionSchema,
} from '../packages/controller/src/api/routes/policies';
import { ViolationListQuerySchema, ViolationPageSchema, ViolationSchema } from '../packages/controller/src/api/routes/violations';
import { ScanSchema } from '../packages/controller/src/api/routes/scans';
import { SessionLoginSchema, SessionSchema } from '../packages/controller/src/api/routes/session';
import { SummaryQuerySchema, SummarySchema } from '../packages/controller/src/api/routes/summary';
import { EventsQuerySchema } from '../packages/controller/src/api/routes/events';
import { ImageListQuerySchema, ImageTagPageSchema, ImageTagSchema } from '../packages/controller/src/api/routes/images';
import { parseRouteTree } from './helpers/route-tree';

const execFileAsync = promisify(execFile);
const ROOT = resolve(__dirname, '..');
const CLI_DOC = join(ROOT, 'docs/cli.md');
const API_DOC = join(ROOT, 'docs/api.md');

const CLIS = [
  { name: 'bulkhead-controller', main: join(ROOT, 'packages/controller/dist/cli/main.js') },
  { name: 'bulkhead-agent', main: join(ROOT, 'packages/agent/dist/cli/main.js') },
  { name: 'bulkhead', main: join(ROOT, 'packages/cli/dist/main.js') },
];

// ---- markdown -------------------------------------------------------------------------------

interface Heading {
  line: number;
  level: number;
  text: string;
}

/** ATX headings outside fenced code blocks. */
function headings(lines: string[]): Heading[] {
  const out: Heading[] = [];
  let fence = false;
  lines.forEach((l, i) => {
    if (/^\s*(```|~~~)/.test(l)) fence = !fence;
    if (fence) return;
    const m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(l);
    if (m) out.push({ line: i, level: m[1]!.length, text: m[2]! });
  });
  return out;
}

/** The text of the first heading matching `pick`, up to the next heading of the same or a higher level. */
function section(doc: string, pick: (h: Heading) => boolean): string | undefined {
  const lines = doc.split('\n');
  const hs = headings(lines);
  const i = hs.findIndex(pick);
  if (i < 0) return undefined;
  const h = hs[i]!;
  const next = hs.slice(i + 1).find((n) => n.level <= h.level);
  return lines.slice(h.line, next ? next.line : lines.length).join('\n');
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `--api` must not be satisfied by `--api-key`. */
function hasFlag(text: string, flag: string): boolean {
  return new RegExp(`${escapeRe(flag)}(?![\\w-])`).test(text);
}

// ---- commander help -------------------------------------------------------------------------

interface Help {
  commands: string[];
  /** Long flags, e.g. --data-dir. */
  options: string[];
  /** Argument names, e.g. id. */
  args: string[];
  /** Environment variables named in the Options section. */
  envs: string[];
  /** Non-empty quoted defaults in the Options section, e.g. 0.0.0.0:7443. */
  defaults: string[];
}

/** Entries (first line + indented continuation lines, joined) of a "Title:" section of commander help. */
function helpSection(text: string, title: string): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l === `${title}:`);
  if (start < 0) return [];
  const entries: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.trim() === '') break;
    if (/^ {2}\S/.test(l)) entries.push(l.trim());
    else if (entries.length > 0) entries[entries.length - 1] += ' ' + l.trim();
  }
  return entries;
}

function parseHelp(text: string): Help {
  const options = helpSection(text, 'Options');
  const flags = options.map((e) => /^(?:-\w, )?(--[a-z0-9][\w-]*)/i.exec(e)?.[1]).filter((f): f is string => f !== undefined);
  const blob = options.join('\n');
  return {
    commands: helpSection(text, 'Commands').map((e) => e.split(/\s+/)[0]!),
    options: flags,
    args: helpSection(text, 'Arguments').map((e) => e.split(/\s+/)[0]!),
    envs: [...blob.matchAll(/\benv: ([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!),
    defaults: [...blob.matchAll(/\(default: "([^"]+)"/g)].map((m) => m[1]!),
  };
}

async function runHelp(main: string, path: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [main, ...path, '--help'], { encoding: 'utf8', timeout: 60_000 });
    return stdout;
  } catch (e) {
    const err = e as Error & { code?: unknown; stderr?: string };
    throw new Error(`${main} ${[...path, '--help'].join(' ')} failed (${String(err.code)}): ${err.stderr ?? err.message}`);
  }
}

interface CommandNode {
  path: string[];
  help: Help;
}

/** Every command reachable from the CLI's top level (the `help` pseudo-command excluded); siblings run in parallel. */
async function walk(main: string, path: string[] = []): Promise<CommandNode[]> {
  const help = parseHelp(await runHelp(main, path));
  const children = await Promise.all(help.commands.filter((c) => c !== 'help').map((c) => walk(main, [...path, c])));
  return [{ path, help }, ...children.flat()];
}

t.test('helpers', async (t) => {
  const help = parseHelp(
    [
      'Usage: x serve [options] <id>',
      '',
      'Arguments:',
      '  id                 agent id',
      '',
      'Options:',
      '  -V, --version      output the version number',
      '  --api <url>        base URL [env: BULKHEAD_API]',
      '  --grpc-listen <a>  agent gRPC listen address (default:',
      '                     "0.0.0.0:7443", env: BULKHEAD_GRPC_LISTEN)',
      '  --san <names>      names (default: "")',
      '',
      'Commands:',
      '  init [options]     create things',
      '                     over two lines',
      '  help [command]     display help for command',
      '',
      'Connection settings (flag, or environment variable):',
      '  --not-an-option    ignored',
    ].join('\n'),
  );
  t.same(help.options, ['--version', '--api', '--grpc-listen', '--san']);
  t.same(help.commands, ['init', 'help']);
  t.same(help.args, ['id']);
  t.same(help.envs, ['BULKHEAD_API', 'BULKHEAD_GRPC_LISTEN']);
  t.same(help.defaults, ['0.0.0.0:7443']);
  t.ok(hasFlag('use `--api-key`, then --api.', '--api'));
  t.notOk(hasFlag('use `--api-key`', '--api'));
  const doc = '# A\n## B\ntext b\n```sh\n# not a heading\n```\n### C\ntext c\n## D\ntext d\n';
  t.equal(section(doc, (h) => h.text === 'B'), '## B\ntext b\n```sh\n# not a heading\n```\n### C\ntext c');
  t.equal(section(doc, (h) => h.text === 'C'), '### C\ntext c');
  t.equal(section(doc, (h) => h.text === 'nope'), undefined);
});

// ---- docs/cli.md ----------------------------------------------------------------------------

t.test('docs/cli.md documents every command and flag the CLIs print in --help', async (t) => {
  const doc = readFileSync(CLI_DOC, 'utf8');
  for (const cli of CLIS) {
    t.test(cli.name, async (t) => {
      t.ok(existsSync(cli.main), `${cli.main} exists (run \`npx tsc -b\`)`);
      const chapter = section(doc, (h) => h.level === 2 && h.text.includes(`\`${cli.name}\``));
      if (chapter === undefined) {
        t.fail(`docs/cli.md has no "## \`${cli.name}\`" chapter`);
        return;
      }
      const nodes = await walk(cli.main);
      t.ok(nodes.length > 1, `${cli.name} has subcommands`);
      for (const node of nodes) {
        const full = [cli.name, ...node.path].join(' ');
        const { help } = node;
        // Everything --help prints for this command is at least somewhere in the chapter.
        for (const f of help.options) t.ok(hasFlag(chapter, f), `${full}: ${f} is documented`);
        for (const e of help.envs) t.ok(chapter.includes(e), `${full}: ${e} is documented`);
        if (help.commands.includes('help')) t.ok(chapter.includes(`${full} help`), `\`${full} help\` is documented`);
        if (node.path.length === 0) continue;

        t.ok(chapter.includes(`\`${full}\``), `\`${full}\` is documented`);
        if (help.commands.length > 0) continue; // a group: its subcommands get the sections

        // A leaf command has its own heading; its flags, arguments, variables and defaults are in that section.
        const own = section(chapter, (h) => h.level > 2 && h.text.includes(`\`${full}\``));
        if (own === undefined) {
          t.fail(`docs/cli.md has no heading for \`${full}\``);
          continue;
        }
        for (const f of help.options.filter((o) => o !== '--help')) t.ok(hasFlag(own, f), `${full}: ${f} in its section`);
        for (const a of help.args) t.ok(own.includes(`<${a}>`), `${full}: <${a}> in its section`);
        for (const e of help.envs) t.ok(own.includes(e), `${full}: ${e} in its section`);
        for (const d of help.defaults) t.ok(own.includes(d), `${full}: default ${d} in its section`);
      }
    });
  }
});

// ---- docs/api.md ----------------------------------------------------------------------------

t.test('parseRouteTree', async (t) => {
  const tree = ['└── /', '    ├── healthz (GET, HEAD)', '    └── v1/', '        └── agents (GET)', '            └── /', '                └── :id (GET, HEAD)', ''].join('\n');
  t.same(parseRouteTree(tree), [
    { method: 'GET', url: '/healthz' },
    { method: 'HEAD', url: '/healthz' },
    { method: 'GET', url: '/v1/agents' },
    { method: 'GET', url: '/v1/agents/:id' },
    { method: 'HEAD', url: '/v1/agents/:id' },
  ]);
});

t.test('docs/api.md documents every route and every wire field', async (t) => {
  const doc = readFileSync(API_DOC, 'utf8');
  const ca = await createCa('Bulkhead Docs Test CA');
  const server = await issueServerCert({ ca, sans: ['localhost'] });
  // The routes never touch the store unless a request arrives; none does.
  const app = await createApiServer({ store: {} as unknown as Store, tls: server, logger: createLogger({ name: 'docs-test', level: 'silent' }) });
  t.teardown(() => app.close());
  await app.ready();

  const routes = parseRouteTree(app.printRoutes());
  t.ok(routes.length >= 4, `found the routes (${routes.map((r) => `${r.method} ${r.url}`).join(', ')})`);
  for (const r of routes) {
    // A literal colon inside a segment (POST /v1/policies:dry-run) is registered escaped as "::".
    const registered = r.url.replace(/([^/:]):(?!:)/g, '$1::');
    t.ok(app.hasRoute({ method: r.method as 'GET', url: registered }), `${r.method} ${r.url} parsed correctly`);
    if (r.method === 'HEAD') {
      t.match(doc, /\bHEAD\b/, `HEAD ${r.url}: HEAD is documented`);
      continue;
    }
    const label = `\`${r.method} ${r.url}\``;
    t.ok(
      section(doc, (h) => h.text.includes(label)),
      `${r.method} ${r.url} has its own heading in docs/api.md`,
    );
  }

  const shapes: Array<[string, TObject, (h: Heading) => boolean]> = [
    ['AgentList', AgentListSchema, (h) => h.text === 'AgentList'],
    ['Agent', AgentSchema, (h) => h.text === 'Agent'],
    ['ContainerPage', ContainerPageSchema, (h) => h.text === 'ContainerPage'],
    ['Container', ContainerSchema, (h) => h.text === 'Container'],
    ['ContainerUsageHistory', ContainerUsageHistorySchema, (h) => h.text === 'ContainerUsageHistory'],
    ['UsagePoint', UsagePointSchema, (h) => h.text === 'UsagePoint'],
    ['Problem', ProblemSchema, (h) => h.text === 'Errors'],
    ['GET /v1/containers query', ContainerListQuerySchema, (h) => h.text === '`GET /v1/containers`'],
    ['Policy', PolicySchema, (h) => h.text === 'Policy'],
    ['PolicyVersionList', PolicyVersionListSchema, (h) => h.text === 'PolicyVersionList'],
    ['PolicyVersion', PolicyVersionSchema, (h) => h.text === 'PolicyVersion'],
    ['PolicyError', PolicyErrorSchema, (h) => h.text === 'PolicyError'],
    ['DryRunResult', DryRunResultSchema, (h) => h.text === 'DryRunResult'],
    ['ViolationPage', ViolationPageSchema, (h) => h.text === 'ViolationPage'],
    ['Violation', ViolationSchema, (h) => h.text === 'Violation'],
    ['Scan', ScanSchema, (h) => h.text === 'Scan'],
    ['ImageTagPage', ImageTagPageSchema, (h) => h.text === 'ImageTagPage'],
    ['ImageTag', ImageTagSchema, (h) => h.text === 'ImageTag'],
    ['GET /v1/images query', ImageListQuerySchema, (h) => h.text === '`GET /v1/images`'],
    ['GET /v1/policies query', PolicyGetQuerySchema, (h) => h.text === '`GET /v1/policies`'],
    ['PUT /v1/policies query', PolicyPutQuerySchema, (h) => h.text === '`PUT /v1/policies`'],
    ['GET /v1/violations query', ViolationListQuerySchema, (h) => h.text === '`GET /v1/violations`'],
    ['Session', SessionSchema, (h) => h.text === 'Session'],
    ['Summary', SummarySchema, (h) => h.text === 'Summary'],
    ['GET /v1/summary query', SummaryQuerySchema, (h) => h.text === '`GET /v1/summary`'],
    ['POST /v1/session body', SessionLoginSchema, (h) => h.text === '`POST /v1/session`'],
    ['GET /v1/events query', EventsQuerySchema, (h) => h.text === '`GET /v1/events`'],
  ];
  for (const [name, schema, pick] of shapes) {
    const sec = section(doc, pick);
    if (sec === undefined) {
      t.fail(`docs/api.md has no section for ${name}`);
      continue;
    }
    for (const field of Object.keys(schema.properties)) t.ok(sec.includes(`\`${field}\``), `${name}: \`${field}\` is documented`);
  }
  const query = section(doc, (h) => h.text === '`GET /v1/containers`') ?? '';
  t.ok(query.includes(`\`${DEFAULT_PAGE_SIZE}\``), `default page size ${DEFAULT_PAGE_SIZE} is documented`);
  t.ok(query.includes(`1–${MAX_PAGE_SIZE}`), `maximum page size ${MAX_PAGE_SIZE} is documented`);
  t.ok(doc.includes('application/problem+json'), 'the error media type is documented');
  t.ok(doc.includes('errors.md'), 'docs/api.md links the error code list');
});
