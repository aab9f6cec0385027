// Manual actions, controller side, over the real link and the real API: the
// Command the agent receives, each way an answer maps to HTTP (200, 404,
// 409, 502, 504), roles and project scopes, the pending map cleaned when a
// stream ends, alerts and metrics, and `bulkhead action` exit codes.
import t from 'tap';
import { ERRORS } from '@bulkhead/shared';
import { bearer } from '../api/fixtures/api-server';
import { send } from '../policy/fixtures/policy-api';
import { container } from '../policy/fixtures/fleet';
import { connectFakeAgent, startLinkStack, waitFor } from './fixtures/link-stack';
import { main as opsCli } from '../../../cli/src/main';

const PROBLEM_CT = /^application\/problem\+json/;

const web = container('web', { project: 'shop' });
const db = container('db', { project: 'billing' });
const gone = container('gone', { state: 'exited' });

function post(api: Parameters<typeof send>[0], key: string, path: string, body: unknown) {
  return send(api, 'POST', path, { body: JSON.stringify(body), headers: { ...bearer(key), 'content-type': 'application/json' } });
}

t.test('manual actions through the API and the agent link', async (t) => {
  const s = await startLinkStack(t);
  const agent = await connectFakeAgent(t, s, 'host-a', [web, db, gone]);
  const url = (ref: string, agentId = agent.agentId) => `/v1/containers/${agentId}/${ref}/actions`;

  t.test('pause: the agent gets a Command and its result is the answer', async (t) => {
    const before = Date.now();
    const res = await post(s.api, s.keys.operator, url('web'), { action: 'pause' });
    t.equal(res.status, 200, res.text);
    t.match(String(res.headers['content-type']), /^application\/json/);
    t.match(res.json, { agentId: agent.agentId, containerId: web.id, containerName: '/web', action: 'pause', ok: true, detail: 'pause done', state: 'running', durationMs: 12.5 });
    const body = res.json as { id: string; requestedBy: string; at: string };
    t.match(body.id, /^cmd_[0-9a-f]{24}$/);
    t.match(body.requestedBy, /operator-key/, 'who asked');
    const cmd = agent.commands.at(-1)!;
    t.equal(cmd.id, body.id, 'same id on the wire');
    t.equal(cmd.containerId, web.id, 'the full id, resolved from the name');
    t.equal(cmd.action, 'pause');
    t.equal(cmd.stopTimeoutSeconds, 0);
    t.match(cmd.requestedBy, /operator-key/);
    t.ok(Number(cmd.deadlineMs) >= before + 1500 && Number(cmd.deadlineMs) <= Date.now() + 1500, 'deadline = now + the wait');
    await waitFor('alert', () => s.alerts.some((a) => a.type === 'action' && a.action === 'pause'));
    t.match(s.alerts.find((a) => a.action === 'pause'), { type: 'action', result: 'ok', agentId: agent.agentId, containerId: web.id, containerName: '/web', project: 'shop', severity: 'info', ruleId: 'manual.pause' });
  });

  t.test('stop carries its timeout; the wait grows with it', async (t) => {
    agent.respond = async (cmd) => {
      await new Promise((r) => setTimeout(r, 2000)); // longer than the 1.5 s default wait
      return { id: cmd.id, ok: true, error: '', detail: 'stop timeout 3s', durationMs: 2000, state: 'exited' };
    };
    const res = await post(s.api, s.keys.operator, url(web.id.slice(0, 12)), { action: 'stop', stopTimeoutSeconds: 3 });
    t.equal(res.status, 200, res.text);
    t.match(res.json, { action: 'stop', state: 'exited' });
    t.equal(agent.commands.at(-1)!.stopTimeoutSeconds, 3);
    agent.respond = async (cmd) => ({ id: cmd.id, ok: true, error: '', detail: '', durationMs: 1, state: 'exited' });
    const dflt = await post(s.api, s.keys.operator, url('web'), { action: 'stop' });
    t.equal(dflt.status, 200);
    t.equal(agent.commands.at(-1)!.stopTimeoutSeconds, 10, 'docker stop default');
  });

  t.test('failures map to problems with registry codes', async (t) => {
    const cases: Array<[string, number, string, RegExp]> = [
      ['BK_ERR_ACTION_FAILED: Cannot pause container: OCI runtime error', 502, 'BK_ERR_ACTION_FAILED', /OCI runtime error.*container state: running/],
      ['BK_ERR_CONFLICT: cannot kill a paused container: unpause it first', 409, 'BK_ERR_CONFLICT', /unpause it first/],
      ['BK_ERR_NOT_FOUND: no container 3f2a on this host', 404, 'BK_ERR_NOT_FOUND', /no container/],
      ['something without a code', 502, 'BK_ERR_ACTION_FAILED', /something without a code/],
    ];
    for (const [error, status, code, detail] of cases) {
      agent.respond = (cmd) => ({ id: cmd.id, ok: false, error, detail: '', durationMs: 3, state: 'running' });
      const res = await post(s.api, s.keys.operator, url('web'), { action: 'kill' });
      t.equal(res.status, status, `${error} → ${status}`);
      t.match(String(res.headers['content-type']), PROBLEM_CT);
      t.match(res.json, { code, status, type: `urn:bulkhead:error:${code}`, detail });
    }
    await waitFor('action_failed alert', () => s.alerts.some((a) => a.type === 'action_failed' && a.action === 'kill'));
    t.equal(s.alerts.filter((a) => a.type === 'action_failed').length, 2, 'engine failures alert; refusals (409/404) do not');
  });

  t.test('no answer in time: 504 unconfirmed, and a late answer is harmless', async (t) => {
    let late: (() => void) | undefined;
    agent.respond = (cmd) =>
      new Promise((resolve) => {
        late = () => resolve({ id: cmd.id, ok: true, error: '', detail: 'too late', durationMs: 1, state: 'paused' });
      });
    const started = Date.now();
    const res = await post(s.api, s.keys.operator, url('web'), { action: 'pause' });
    t.equal(res.status, 504);
    t.match(res.json, { code: 'BK_ERR_ACTION_UNCONFIRMED', detail: /did not answer within 1\.5s.*may or may not/ });
    t.ok(Date.now() - started >= 1400, 'waited for the deadline');
    late!();
    await waitFor('late result logged', () => s.logs().includes('command result for no pending command'));
    agent.respond = (cmd) => ({ id: cmd.id, ok: true, error: '', detail: '', durationMs: 1, state: 'running' });
    const next = await post(s.api, s.keys.operator, url('web'), { action: 'unpause' });
    t.equal(next.status, 200, 'the link carries on after a late answer');
  });

  t.test('requests the API refuses before asking the agent', async (t) => {
    agent.respond = (cmd) => ({ id: cmd.id, ok: true, error: '', detail: '', durationMs: 1, state: 'running' });
    const sent = agent.commands.length;
    const refused: Array<[string, string, unknown, number, string]> = [
      ['viewer role', s.keys.viewer, { action: 'pause' }, 403, 'BK_ERR_FORBIDDEN'],
      ['unknown action', s.keys.operator, { action: 'explode' }, 400, 'BK_ERR_BAD_REQUEST'],
      ['timeout out of range', s.keys.operator, { action: 'stop', stopTimeoutSeconds: 99 }, 400, 'BK_ERR_BAD_REQUEST'],
      ['timeout with pause', s.keys.operator, { action: 'pause', stopTimeoutSeconds: 5 }, 400, 'BK_ERR_BAD_REQUEST'],
      ['extra field', s.keys.operator, { action: 'pause', force: true }, 400, 'BK_ERR_BAD_REQUEST'],
    ];
    for (const [what, key, body, status, code] of refused) {
      const res = await post(s.api, key, url('web'), body);
      t.equal(res.status, status, what);
      t.match(res.json, { code }, what);
    }
    const noKey = await send(s.api, 'POST', url('web'), { body: '{"action":"pause"}', headers: { 'content-type': 'application/json' } });
    t.equal(noKey.status, 401);
    t.match(await post(s.api, s.keys.operator, url('nope'), { action: 'pause' }), { status: 404, json: { code: 'BK_ERR_NOT_FOUND', detail: /no container "nope"/ } });
    t.match(await post(s.api, s.keys.operator, url('web', 'agt_unknown'), { action: 'pause' }), { status: 404, json: { code: 'BK_ERR_NOT_FOUND' } });
    t.equal(agent.commands.length, sent, 'none of them reached the agent');
  });

  t.test('a key limited to projects acts only on their containers', async (t) => {
    const other = await post(s.api, s.keys.scoped, url('db'), { action: 'pause' });
    t.equal(other.status, 404, 'another project looks absent');
    t.match(other.json, { code: 'BK_ERR_NOT_FOUND' });
    const own = await post(s.api, s.keys.scoped, url('web'), { action: 'pause' });
    t.equal(own.status, 200, own.text);
  });

  t.test('bulkhead action: output and exit codes', async (t) => {
    const io = (key: string) => {
      const out: string[] = [];
      const err: string[] = [];
      return {
        out,
        err,
        io: { out: (x: string) => void out.push(x), err: (x: string) => void err.push(x), env: { BULKHEAD_API: s.api.url, BULKHEAD_CA: s.api.caFile, BULKHEAD_API_KEY: key }, now: () => new Date() },
      };
    };
    agent.respond = (cmd) => ({ id: cmd.id, ok: true, error: '', detail: 'disconnected from 2/2 network(s): a, b', durationMs: 30, state: 'running' });
    const a = io(s.keys.operator);
    t.equal(await opsCli(['action', agent.agentId, 'web', 'quarantine'], a.io), 0, a.err.join(''));
    t.match(a.out.join(''), /Container:\s+web \([0-9a-f]{12}\) on agt_/);
    t.match(a.out.join(''), /Action:\s+quarantine: quarantined/);
    t.match(a.out.join(''), /Detail:\s+disconnected from 2\/2 network\(s\): a, b/);

    const j = io(s.keys.operator);
    t.equal(await opsCli(['--json', 'action', agent.agentId, 'web', 'stop', '--timeout', '4'], j.io), 0);
    t.match(JSON.parse(j.out.join('')), { action: 'stop', ok: true });
    t.equal(agent.commands.at(-1)!.stopTimeoutSeconds, 4);

    agent.respond = (cmd) => ({ id: cmd.id, ok: false, error: 'BK_ERR_ACTION_FAILED: boom', detail: '', durationMs: 1, state: 'running' });
    const f = io(s.keys.operator);
    t.equal(await opsCli(['action', agent.agentId, 'web', 'kill'], f.io), 1, 'failed → 1');
    t.match(f.err.join(''), /BK_ERR_ACTION_FAILED: kill on agent agt_\w+: boom .*\(HTTP 502\)/);

    const v = io(s.keys.viewer);
    t.equal(await opsCli(['action', agent.agentId, 'web', 'kill'], v.io), 1, 'forbidden → 1');
    t.match(v.err.join(''), /BK_ERR_FORBIDDEN/);

    for (const argv of [
      ['action', agent.agentId, 'web', 'explode'],
      ['action', agent.agentId, 'web', 'pause', '--timeout', '3'],
      ['action', agent.agentId, 'web', 'stop', '--timeout', '21'],
      ['action', agent.agentId, 'web'],
    ]) {
      const u = io(s.keys.operator);
      t.equal(await opsCli(argv, u.io), 2, `usage: ${argv.slice(3).join(' ')}`);
    }
  });

  t.test('the stream ends while a command is pending: 504, then offline: 409', async (t) => {
    agent.respond = () => 'ignore';
    const pending = post(s.api, s.keys.operator, url('web'), { action: 'pause' });
    await waitFor('command sent', () => agent.commands.length > 0 && agent.commands.at(-1)!.action === 'pause');
    agent.close();
    const res = await pending;
    t.equal(res.status, 504);
    t.match(res.json, { code: 'BK_ERR_ACTION_UNCONFIRMED', detail: /closed .*before it answered/ });
    await waitFor('agent offline', () => s.grpc.link.connectedAgents().length === 0);
    const off = await post(s.api, s.keys.operator, url('web'), { action: 'pause' });
    t.equal(off.status, 409);
    t.match(off.json, { code: 'BK_ERR_AGENT_OFFLINE', detail: /not connected/ });
    t.equal(ERRORS.BK_ERR_AGENT_OFFLINE.status, 409);
  });

  t.test('metrics counted what happened', async (t) => {
    const { body } = await s.metrics.render();
    t.match(body, /bulkhead_controller_manual_actions_total\{action="pause",outcome="ok"\} [1-9]/);
    t.match(body, /bulkhead_controller_manual_actions_total\{action="kill",outcome="failed"\} [1-9]/);
    t.match(body, /bulkhead_controller_manual_actions_total\{action="kill",outcome="refused"\} 2/);
    t.match(body, /bulkhead_controller_manual_actions_total\{action="pause",outcome="unconfirmed"\} [1-9]/);
    t.match(body, /bulkhead_controller_manual_actions_total\{action="pause",outcome="offline"\} 1/);
    t.match(body, /bulkhead_controller_agent_streams_opened_total 1/);
    t.match(body, /bulkhead_controller_agent_streams_closed_total\{reason="\w+"\} 1/);
    t.match(body, /bulkhead_controller_agents_connected 0/);
    t.match(body, /bulkhead_controller_containers\{state="running"\} 2/);
    t.match(body, /bulkhead_controller_containers\{state="exited"\} 1/);
    t.match(body, /bulkhead_controller_api_request_duration_seconds_count\{method="POST",route="\/v1\/containers\/:agent\/:id\/actions",status="200"\} [1-9]/);
    t.match(body, /bulkhead_controller_api_request_duration_seconds_count\{method="POST",route="\/v1\/containers\/:agent\/:id\/actions",status="403"\} [1-9]/);
  });
});

t.test('a removed container cannot be acted on', async (t) => {
  const s = await startLinkStack(t);
  const agent = await connectFakeAgent(t, s, 'host-b', [web]);
  await s.store.removeContainer(agent.agentId, web.id, new Date());
  const res = await post(s.api, s.keys.admin, `/v1/containers/${agent.agentId}/${web.id}/actions`, { action: 'kill' });
  t.equal(res.status, 409);
  t.match(res.json, { code: 'BK_ERR_CONFLICT', detail: /was removed/ });
  t.equal(agent.commands.length, 0);
});
