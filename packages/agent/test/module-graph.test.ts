// What the agent daemon must not load: each costs RSS the agent's memory
// budget has no room for (BENCHMARKS.md agent-idle). A fresh `node` loads the
// BUILT agent (what `bulkhead-agent run` loads) and lists what ended up in
// require.cache.
//
// TypeBox: the agent never validates check parameters — the controller did
// (policyFromTrustedBundle). The child also takes a controller bundle through
// the PolicyHolder and compiles the policy.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLICY_YAML, parsePolicy } from '@bulkhead/shared';

const AGENT_DIST = join(__dirname, '../dist');
const SHARED_DIST = join(__dirname, '../../shared/dist');

/** The require.cache keys under @sinclair/typebox after the child ran `extra` (more requires) too. */
function typeboxModulesLoaded(t: tap.Test, extra = ''): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'bk-no-typebox-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = `
    require(${JSON.stringify(join(AGENT_DIST, 'agent.js'))});
    const shared = require(${JSON.stringify(join(SHARED_DIST, 'index.js'))});
    const { PolicyHolder, bundleSha256 } = require(${JSON.stringify(join(AGENT_DIST, 'policy/policy-holder.js'))});
    const holder = PolicyHolder.open({ stateDir: process.env.BK_DIR, logger: shared.createLogger({ name: 'no-typebox', level: 'silent' }) });
    const policyJson = process.env.BK_POLICY_JSON;
    const r = holder.apply({ version: 1, policyJson, scansJson: '[]', sha256: bundleSha256(policyJson, '[]') });
    if (!r.applied) throw new Error('bundle refused: ' + r.error);
    shared.compilePolicy(holder.state.policy);
    shared.usageWindowMs(holder.state.policy);
    ${extra}
    process.stdout.write(JSON.stringify(Object.keys(require.cache).filter((k) => k.includes('@sinclair/typebox'))));
  `;
  const policyJson = JSON.stringify(parsePolicy(DEFAULT_POLICY_YAML));
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, BK_DIR: dir, BK_POLICY_JSON: policyJson }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

t.test('the agent loads, applies a controller bundle and compiles it without TypeBox', async (t) => {
  t.ok(existsSync(join(AGENT_DIST, 'agent.js')) && existsSync(join(SHARED_DIST, 'index.js')), 'built output present (run `npm run build` first)');
  const loaded = typeboxModulesLoaded(t);
  t.equal(loaded.length, 0, 'no @sinclair/typebox module in require.cache', { found: loaded.slice(0, 5) });
});

t.test('the probe sees TypeBox when full validation does load it', async (t) => {
  // Guards the test above against passing vacuously (a renamed package, a broken filter).
  const loaded = typeboxModulesLoaded(t, 'shared.policyFromJson(JSON.parse(policyJson));');
  t.ok(loaded.length > 0, `policyFromJson loads TypeBox (${loaded.length} modules)`);
});

// The modules `bulkhead-agent run` loads: the CLI entry point (main.js, all its
// commands registered) and the daemon with its docker client and metrics.
const DAEMON_GRAPH = ['cli/main.js', 'agent.js', 'docker/client.js', 'metrics/agent-metrics.js'];

function modulesLoaded(files: string[]): string[] {
  const script = `
    for (const f of ${JSON.stringify(files.map((f) => join(AGENT_DIST, f)))}) require(f);
    process.stdout.write(JSON.stringify(Object.keys(require.cache)));
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

t.test('the daemon does not load the one-shot audit, the build-context packer or OpenTelemetry', async (t) => {
  const loaded = modulesLoaded(DAEMON_GRAPH);
  t.ok(loaded.some((k) => k.endsWith('/dist/cli/audit-command.js')), 'the audit command is registered (its module is loaded)');
  const cis = loaded.filter((k) => /\/dist\/cis\/(section-|cis-report|cis-format)/.test(k));
  t.same(cis, [], 'no CIS check module (they load when `audit` runs, or in the audit child)');
  t.same(loaded.filter((k) => k.includes('/dist/lockdown/fixes.js')), [], 'no lockdown fix module');
  t.same(loaded.filter((k) => /\/node_modules\/(tar-stream|bl|ssh2)\//.test(k)), [], "no module of tar-fs's or ssh2's dependencies");
  t.equal(loaded.filter((k) => k.includes('/node_modules/@opentelemetry/api/')).length, 1, '@opentelemetry/api: one stand-in, not its 51 modules');
});

t.test('the probe sees the CIS checks when the audit runs', async (t) => {
  // Guards the test above against passing vacuously (a renamed directory, a broken filter).
  const loaded = modulesLoaded([...DAEMON_GRAPH, 'cis/cis-report.js']);
  t.ok(loaded.some((k) => k.includes('/dist/cis/section-5-runtime.js')), 'cis-report loads the sections');
});

t.test('the daemon loads @sigstore/* only when an image has a Sigstore bundle', async (t) => {
  const loaded = modulesLoaded([...DAEMON_GRAPH, 'signatures/verifier.js']);
  t.ok(loaded.some((k) => k.endsWith('/dist/signatures/verifier.js')), 'the verifier is loaded');
  t.same(loaded.filter((k) => k.includes('/node_modules/@sigstore/')), [], 'no @sigstore module (≈10 MB RSS) at start');
  // Guard against a vacuous pass: bundles.ts does load them.
  const withBundles = modulesLoaded([...DAEMON_GRAPH, 'signatures/bundles.js']);
  t.ok(withBundles.some((k) => k.includes('/node_modules/@sigstore/verify/')), 'bundles.js loads @sigstore/verify');
});
