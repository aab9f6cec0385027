// The agent's run path must not load TypeBox: it costs RSS the agent's memory
// budget has no room for (BENCHMARKS.md agent-idle), and the agent never
// validates check parameters — the controller did (policyFromTrustedBundle).
// A fresh `node` loads the BUILT agent (what `bulkhead-agent run` loads),
// takes a controller bundle through the PolicyHolder and compiles the policy,
// then lists what ended up in require.cache.
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
