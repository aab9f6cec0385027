// The `bulkhead` CLI driven end to end against a running controller
// (Controller.start on a data directory made by `bulkhead-controller init`):
// login and the 0600 token cache, commands running on the cached token,
// keys, join tokens, agent revocation, the audit trail and its
// verification, logout — with the exit codes scripts rely on.
import t from 'tap';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createLogger } from '@bulkhead/shared';
import { main as controllerCli } from '../../src/cli/main';
import { main as ops, type OpsCliIo } from '../../../cli/src/main';
import { Controller } from '../../src/controller';
import { resolveControllerOptions } from '../../src/controller-options';
import { tokenCachePath } from '../../../cli/src/commands/login';
import { enroll } from '../../../agent/src/enroll/enroll';

type Env = Record<string, string | undefined>;

async function run(argv: string[], env: Env): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Partial<OpsCliIo> = { out: (s) => void (out += s), err: (s) => void (err += s), env, now: () => new Date() };
  const code = await ops(argv, io);
  return { code, out, err };
}

t.test('bulkhead CLI against a running controller', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'ctl');
  let initOut = '';
  t.equal(await controllerCli(['init', '--data-dir', dataDir, '--json'], { out: (s) => void (initOut += s), err: () => undefined }), 0);
  const init = JSON.parse(initOut) as { adminApiKey: string; caCert: string; caFingerprint: string; tokenSigningKeyFile: string };
  t.equal(statSync(init.tokenSigningKeyFile).mode & 0o777, 0o600, 'init creates the token signing key 0600');

  const controller = await Controller.start(
    resolveControllerOptions({ dataDir, grpcListen: '127.0.0.1:0', apiListen: '127.0.0.1:0', metricsListen: false, tokenMaxTtl: '30m' }),
    createLogger({ name: 'ctl', level: 'silent' }),
  );
  t.teardown(() => controller.stop());
  const api = `https://127.0.0.1:${controller.apiPort}`;
  const cfg = join(dir, 'cfg');
  const withKey: Env = { BULKHEAD_API: api, BULKHEAD_CA: init.caCert, BULKHEAD_API_KEY: init.adminApiKey, XDG_CONFIG_HOME: cfg };
  const cachedOnly: Env = { XDG_CONFIG_HOME: cfg };

  // ---- login -------------------------------------------------------------------------------
  const noLogin = await run(['agents'], cachedOnly);
  t.equal(noLogin.code, 2, 'no API, no key, no login: usage error');
  const login = await run(['login', '--ttl', '2h'], withKey);
  t.equal(login.code, 0, login.err);
  t.match(login.out, /Logged in to https:\/\/127\.0\.0\.1:\d+ as admin \(ak_[0-9a-f]{16}\), role admin\./);
  const cachePath = tokenCachePath(cachedOnly);
  t.equal(cachePath, join(cfg, 'bulkhead', 'token.json'));
  t.equal(statSync(cachePath).mode & 0o777, 0o600, 'token cache 0600');
  t.equal(statSync(join(cfg, 'bulkhead')).mode & 0o777, 0o700, 'its directory 0700');
  const cache = JSON.parse(readFileSync(cachePath, 'utf8')) as { token: string; expiresAt: string; api: string; ca: string };
  t.match(cache.token, /^bkt_/);
  const ttl = Date.parse(cache.expiresAt) - Date.now();
  t.ok(ttl <= 30 * 60_000 && ttl > 29 * 60_000, 'a requested 2h is capped by --token-max-ttl 30m');
  t.notMatch(login.out, cache.token, 'the token is not printed');

  const agents = await run(['agents'], cachedOnly);
  t.equal(agents.code, 0, `the cached token, API URL and CA are used: ${agents.err}`);
  const who = await run(['whoami'], cachedOnly);
  t.equal(who.code, 0, who.err);
  t.match(who.out, /^Credential:\s+token tok_[0-9a-f]+ of key ak_/m);
  t.match(who.out, /^Projects:\s+\(all\)$/m);
  const otherApi = await run(['--api', 'https://127.0.0.1:1', 'agents'], cachedOnly);
  t.equal(otherApi.code, 2, 'the cached token is never sent to another API URL');
  t.match(otherApi.err, /no API key/);

  // ---- keys --------------------------------------------------------------------------------
  const created = await run(['--json', 'keys', 'create', 'ci-payments', '--role', 'operator', '--project', 'payments', '--expires', '30d'], cachedOnly);
  t.equal(created.code, 0, created.err);
  const ci = JSON.parse(created.out) as { id: string; key: string; projects: string[]; expiresAt: string };
  t.same(ci.projects, ['payments']);
  const human = await run(['keys', 'create', 'grafana', '--role', 'viewer'], cachedOnly);
  t.equal(human.code, 0, human.err);
  t.match(human.out, /^Key:\s+bk_ak_[0-9a-f]{16}_[0-9a-f]{64}$/m);
  t.match(human.out, /shown only now/);
  const list = await run(['keys'], cachedOnly);
  t.equal(list.code, 0);
  t.match(list.out, /^ID\s+NAME\s+ROLE\s+PROJECTS\s+STATUS\s+EXPIRES\s+LAST USED\s+CREATED BY$/m);
  t.match(list.out, new RegExp(`^${ci.id}\\s+ci-payments\\s+operator\\s+payments\\s+active\\s+\\d{4}-\\d{2}-\\d{2}\\s+never\\s+ak_`, 'm'));
  t.notMatch(list.out, /bk_ak_/, 'no secrets listed');
  const get = await run(['keys', 'get', ci.id], cachedOnly);
  t.match(get.out, /^Projects:\s+payments$/m);

  // Escalation through the CLI: the operator key cannot mint an admin key (API error → exit 1).
  const esc = await run(['keys', 'create', 'sneaky', '--role', 'admin'], { ...withKey, BULKHEAD_API_KEY: ci.key });
  t.equal(esc.code, 1);
  t.match(esc.err, /BK_ERR_FORBIDDEN: POST \/v1\/keys needs the admin role or higher.*\(HTTP 403\)/);
  t.equal((await run(['keys', 'create', 'x'], cachedOnly)).code, 2, '--role is required');
  t.equal((await run(['keys', 'create', 'x', '--role', 'root'], cachedOnly)).code, 2, 'unknown role');
  t.equal((await run(['keys', 'create', 'x', '--role', 'viewer', '--expires', 'soon'], cachedOnly)).code, 2, 'bad duration');

  // ---- join tokens and agent revocation ----------------------------------------------------
  const tok = await run(['tokens', 'create', '--ttl', '30m', '--description', 'rack 4'], cachedOnly);
  t.equal(tok.code, 0, tok.err);
  const joinToken = tok.out.trim();
  t.match(joinToken, /^bkj_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/, 'stdout is the token alone');
  t.match(tok.err, new RegExp(`--ca-fingerprint ${init.caFingerprint}`));
  const spare = JSON.parse((await run(['--json', 'tokens', 'create'], cachedOnly)).out) as { id: string };
  const tokens = await run(['tokens'], cachedOnly);
  t.match(tokens.out, /^ID\s+STATUS\s+CREATED\s+EXPIRES\s+USED BY\s+DESCRIPTION$/m);
  t.match(tokens.out, /rack 4/);
  t.notMatch(tokens.out, /bkj_/);
  t.equal((await run(['tokens', 'revoke', spare.id], cachedOnly)).code, 0);
  t.match((await run(['tokens', '--status', 'revoked'], cachedOnly)).out, new RegExp(spare.id));

  const creds = await enroll({ controller: `127.0.0.1:${controller.grpc.port}`, token: joinToken, caFingerprint: init.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'web-07' });
  const agentId = creds.identity.agentId;
  const revoke = await run(['agents', 'revoke', agentId], cachedOnly);
  t.equal(revoke.code, 0, revoke.err);
  t.match(revoke.out, new RegExp(`revoked ${agentId} \\(web-07\\)`));
  t.equal((await controller.store.getAgent(agentId))?.status, 'revoked');
  const used = await run(['tokens', 'revoke', joinToken.split('_')[1]!], cachedOnly);
  t.equal(used.code, 1, 'a used join token cannot be revoked');
  t.match(used.err, /BK_ERR_CONFLICT/);
  t.equal((await run(['agents', 'revoke', 'agt_nope'], cachedOnly)).code, 1);

  // ---- audit trail ---------------------------------------------------------------------------
  const log = await run(['audit-log', '--limit', '5'], cachedOnly);
  t.equal(log.code, 0, log.err);
  t.match(log.out, /^SEQ\s+TIME\s+ACTOR\s+ACTION\s+METHOD\s+PATH\s+STATUS\s+FROM\s+TARGET$/m);
  t.match(log.out, /agents\.revoke/);
  t.equal(log.out.trim().split('\n').length, 6, 'header + 5');
  const logJson = JSON.parse((await run(['--json', 'audit-log', '--action', 'keys.create'], cachedOnly)).out) as { items: Array<{ status: number; actorKind: string }> };
  t.same(logJson.items.map((e) => [e.status, e.actorKind]), [[403, 'key'], [201, 'token'], [201, 'token']], 'who created keys, and the refused attempt');
  const verified = await run(['audit-log', 'verify'], cachedOnly);
  t.equal(verified.code, 0, verified.err);
  t.match(verified.out, /^audit chain OK/);

  // Tamper with the controller's database: both verifiers say where, and exit 1.
  const db = new BetterSqlite3(join(dataDir, 'bulkhead.db'));
  db.prepare("UPDATE audit_log SET actor_name = 'someone-else' WHERE seq = 2").run();
  db.close();
  const broken = await run(['audit-log', 'verify'], cachedOnly);
  t.equal(broken.code, 1);
  t.match(broken.out, /BROKEN at seq 2/);
  let offline = '';
  t.equal(await controllerCli(['audit-log', 'verify', '--data-dir', dataDir], { out: (s) => void (offline += s), err: () => undefined }), 1);
  t.match(offline, /BROKEN at seq 2/);

  // ---- revoking the logged-in key ends the cached token at once ----------------------------
  t.equal((await run(['keys', 'revoke', ci.id], cachedOnly)).code, 0);
  const ciLogin = await run(['login'], { ...withKey, BULKHEAD_API_KEY: ci.key, XDG_CONFIG_HOME: join(dir, 'cfg2') });
  t.equal(ciLogin.code, 1, 'a revoked key cannot log in');
  t.match(ciLogin.err, /BK_ERR_UNAUTHENTICATED/);

  // ---- logout, expired cache, connection errors ---------------------------------------------
  const out = await run(['logout'], cachedOnly);
  t.equal(out.code, 0);
  t.match(out.out, /logged out: removed .*token\.json \(the token stays valid until/);
  t.equal((await run(['logout'], cachedOnly)).out, 'not logged in\n');
  t.equal((await run(['agents'], cachedOnly)).code, 2, 'after logout: usage error');

  t.equal((await run(['login', '--ttl', '1m'], withKey)).code, 0);
  const stale = JSON.parse(readFileSync(cachePath, 'utf8')) as Record<string, unknown>;
  writeFileSync(cachePath, JSON.stringify({ ...stale, expiresAt: new Date(Date.now() - 1000).toISOString() }), { mode: 0o600 });
  const expired = await run(['agents'], cachedOnly);
  t.equal(expired.code, 2);
  t.match(expired.err, /login token for .* expired at .*run `bulkhead login` again/);
  t.equal((await run(['agents'], { ...cachedOnly, BULKHEAD_API_KEY: init.adminApiKey })).code, 0, 'an explicit key wins over the cache');

  const down = await run(['login'], { ...withKey, BULKHEAD_API: 'https://127.0.0.1:1' });
  t.equal(down.code, 3, 'cannot connect: 3');
});
