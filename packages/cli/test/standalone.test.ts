// Ops can install the `bulkhead` CLI on a laptop without the controller: the
// CLI's dependency closure in package-lock.json holds none of the server's
// packages (native SQLite, the PostgreSQL driver, fastify, kysely, gRPC, the
// controller itself), and the built CLI — `--help` and a real command against a
// real controller API — runs with a hook that throws on loading any of them.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startApi } from '../../controller/test/api/fixtures/api-server';
import { seed } from '../../controller/test/api/fixtures/seed';

const ROOT = resolve(__dirname, '../../..');
const BIN = join(ROOT, 'packages/cli/dist/main.js');
const HOOK = join(__dirname, 'fixtures/forbid-server-modules.js');
const FORBIDDEN = ['better-sqlite3', 'pg', 'fastify', 'kysely', '@grpc/grpc-js', '@grpc/proto-loader', '@bulkhead/controller', '@bulkhead/shared'];

interface LockPackage {
  name?: string;
  link?: boolean;
  resolved?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/** Package names npm installs for the workspace at `start` (e.g. "packages/cli"), following package-lock.json's node_modules resolution. */
function lockClosure(lock: { packages: Record<string, LockPackage> }, start: string): Set<string> {
  const names = new Set<string>();
  const seen = new Set<string>();
  const visit = (key: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    let entry = lock.packages[key];
    if (!entry) throw new Error(`package-lock.json has no entry ${key}`);
    if (entry.link && entry.resolved) {
      key = entry.resolved;
      entry = lock.packages[key];
      if (!entry) throw new Error(`package-lock.json has no entry ${key}`);
    }
    const deps = {
      ...entry.dependencies,
      ...entry.optionalDependencies,
      ...Object.fromEntries(Object.entries(entry.peerDependencies ?? {}).filter(([n]) => entry!.peerDependenciesMeta?.[n]?.optional !== true)),
    };
    for (const dep of Object.keys(deps)) {
      names.add(dep);
      // Node's lookup: <key>/node_modules/<dep>, then each parent's node_modules, then the root's.
      let dir = key;
      let found: string | undefined;
      for (;;) {
        const candidate = `${dir === '' ? '' : `${dir}/`}node_modules/${dep}`;
        if (lock.packages[candidate]) {
          found = candidate;
          break;
        }
        if (dir === '') break;
        const i = dir.lastIndexOf('/node_modules/');
        dir = i >= 0 ? dir.slice(0, i) : '';
      }
      if (found === undefined) {
        if (entry.optionalDependencies?.[dep] !== undefined) continue;
        throw new Error(`${dep} (needed by ${key}) is not in package-lock.json`);
      }
      visit(found);
    }
  };
  visit(start);
  return names;
}

t.test("package-lock.json: the CLI's dependency closure has no server package", async (t) => {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
  t.same(Object.keys(lock.packages['packages/cli']?.dependencies ?? {}).sort(), ['@bulkhead/client', 'commander'], 'the CLI depends on the client and commander only');
  const cli = lockClosure(lock, 'packages/cli');
  t.ok(cli.has('@bulkhead/client') && cli.has('commander'), `closure: ${[...cli].sort().join(', ')}`);
  for (const m of FORBIDDEN) t.notOk(cli.has(m), `${m} is not installed with the CLI`);
  // The same walk finds them for the controller: the check can fail.
  const controller = lockClosure(lock, 'packages/controller');
  for (const m of ['better-sqlite3', 'pg', 'fastify', 'kysely', '@grpc/grpc-js', '@bulkhead/shared']) t.ok(controller.has(m), `the controller does pull in ${m}`);
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  loaded: string[];
}

function runHooked(t: { testdirName: string }, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = join(t.testdirName, `loaded-${Math.random().toString(36).slice(2)}.json`);
  return new Promise((done) => {
    execFile(process.execPath, ['--require', HOOK, ...args], { env: { PATH: process.env['PATH'] ?? '', BK_LOADED_MODULES_FILE: out, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const loaded = existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as string[]) : [];
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr, loaded });
    });
  });
}

t.test('the hook refuses a server module (control)', async (t) => {
  t.testdir({});
  const r = await runHooked(t, ['-e', "require('fastify')"]);
  t.not(r.code, 0);
  t.match(r.stderr, /forbidden module loaded by the CLI: fastify/);
  const p = await runHooked(t, ['-e', `require(${JSON.stringify(join(ROOT, 'packages/shared/dist/index.js'))})`]);
  t.not(p.code, 0);
  t.match(p.stderr, /forbidden module loaded by the CLI: .*packages\/shared/);
});

t.test('the built CLI runs without loading any server module', { skip: existsSync(BIN) ? false : 'build first: npx tsc -b' }, async (t) => {
  t.testdir({});
  const help = await runHooked(t, [BIN, '--help']);
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /Usage: bulkhead/);
  t.ok(help.loaded.some((f) => f.includes(`${join('node_modules', 'commander')}`)), 'commander was loaded (the hook saw the modules)');

  const api = await startApi();
  t.teardown(() => api.close());
  await seed(api.store);
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: api.apiKey };
  const agents = await runHooked(t, [BIN, '--json', 'agents'], env);
  t.equal(agents.code, 0, agents.stderr);
  t.same((JSON.parse(agents.stdout) as { items: Array<{ id: string }> }).items.map((a) => a.id).sort(), ['agt_alpha', 'agt_beta'], 'a real answer from the real API');
  const containers = await runHooked(t, [BIN, 'containers', '--state', 'running'], env);
  t.equal(containers.code, 0, containers.stderr);
  t.match(containers.stdout, /^AGENT\s+CONTAINER ID/);
  t.ok(containers.loaded.some((f) => f.includes(join('packages', 'client', 'dist'))), '@bulkhead/client was loaded');
  for (const f of [...help.loaded, ...agents.loaded, ...containers.loaded]) {
    if (/[/\\](packages[/\\](controller|shared)|node_modules[/\\](better-sqlite3|pg|fastify|kysely|@grpc))[/\\]/.test(f)) t.fail(`loaded ${f}`);
  }
});
