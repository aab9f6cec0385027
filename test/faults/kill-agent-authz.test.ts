// Fault: the agent serving dockerd's authorization plugin is SIGKILLed. docs/authz.md says what
// dockerd does then ("When something goes wrong"):
//   - the agent restarts: requests arriving meanwhile stall and go through once the plugin is
//     back, if that is within dockerd's ~30 s retry window — and are then judged as usual;
//   - the agent stays down: dockerd refuses every API request (reads included) after its
//     retries, "plugin <name> failed with error: …" — ~30 s when the socket file is gone,
//     ~15 s when a killed agent left it behind ("connect: connection refused"; measured here).
// Real agent and controller processes, a private dockerd with --authorization-plugin. A
// SIGKILLed agent leaves its socket file behind (dockerd then gets "connection refused"
// instead of "no such file"); the restarted agent must replace it.
import t from 'tap';
import { existsSync, rmSync, symlinkSync } from 'node:fs';
import { recordFault } from '../helpers/fault-report';
import { TEST_IMAGE, startPrivateEngine, type PrivateEngine } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import { dockerApi, listAll, putPolicy, runContainer, testLabels, type ControllerContainer, rootPolicy } from '../helpers/fault-harness';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';

const SHORT_OUTAGES = 3;
const SHORT_DOWN_MS = 2_000;

const POLICY = rootPolicy('faults-kill-agent-authz', 'enforce');

t.test('agent (authorization plugin) SIGKILLed: dockerd as docs/authz.md says', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const version = await putPolicy(ctl, POLICY);

  // The plugin must serve before the engine that uses it starts.
  const plugin = `bk-faults-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  const pluginSocket = `/run/docker/plugins/${plugin}.sock`;
  let engine: PrivateEngine | undefined;
  // The agent starts first (its plugin must serve before the engine that uses it starts) and
  // reaches the engine through a symlink pointed at the engine's socket once it runs; until
  // then it retries the engine, as it would at boot.
  const engineP = (async () => {
    await waitFor('plugin socket', async () => existsSync(pluginSocket), 30_000, 100);
    engine = await startPrivateEngine({ dockerdArgs: [`--authorization-plugin=${plugin}`], t });
    return engine;
  })();
  void engineP.catch(() => undefined);
  const link = `${root.dir}/docker.sock`;
  const agent = await enrollAgent(ctl, root.dir, 'agent', `unix://${link}`, ['--authz-socket', pluginSocket]);
  // Teardown runs last-registered first: the engine stops (through the plugin) before the agent.
  t.teardown(async () => {
    await agent.stop();
    rmSync(pluginSocket, { force: true });
  });
  agent.start();
  const e = await engineP;
  symlinkSync(e.socketPath, link);
  await waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ status: string; policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
  }, 45_000);
  const createBad = (name: string) =>
    dockerApi(e.socketPath, 'POST', `/containers/create?name=${name}`, { Image: TEST_IMAGE, Cmd: ['sleep', '600'], Labels: testLabels({ fault: 'bad' }), HostConfig: { NetworkMode: 'none' } }, 90_000);

  // Plugin up: the breaking create is refused, a compliant run allowed.
  const denied0 = await createBad(`kaa-${process.pid}-bad-0`);
  t.equal(denied0.status, 403, `breaking create refused with the plugin up: ${denied0.body.slice(0, 200)}`);
  t.match(denied0.body, new RegExp(`authorization denied by plugin ${plugin}`));
  await runContainer(e.socketPath, `kaa-${process.pid}-ok-0`, testLabels({ fault: 'ok' }));

  let produced = 0;
  let asDocumented = 0;
  const stallMs: number[] = [];
  const compliant: string[] = [];
  for (let i = 1; i <= SHORT_OUTAGES; i++) {
    await agent.stop('SIGKILL');
    t.ok(existsSync(pluginSocket), `outage ${i}: the killed agent left its socket file`);
    const t0 = Date.now();
    const good = runContainer(e.socketPath, `kaa-${process.pid}-ok-${i}`, testLabels({ fault: 'ok' })).then((id) => ({ id, ms: Date.now() - t0 }), (err: unknown) => ({ err: String(err), ms: Date.now() - t0 }));
    const bad = createBad(`kaa-${process.pid}-bad-${i}`).then((r) => ({ ...r, ms: Date.now() - t0 }));
    const read = dockerApi(e.socketPath, 'GET', '/containers/json', undefined, 90_000).then((r) => ({ ...r, ms: Date.now() - t0 }));
    produced += 3;
    await new Promise((r) => setTimeout(r, SHORT_DOWN_MS));
    agent.start();
    const [g, b, rd] = await Promise.all([good, bad, read]);
    const back = 'id' in g;
    if (back) compliant.push(g.id);
    t.ok(back, `outage ${i}: the compliant run stalled and went through (${g.ms} ms)${'err' in g ? `: ${g.err}` : ''}`);
    t.equal(b.status, 403, `outage ${i}: the breaking create stalled, then was judged and refused (${b.ms} ms)${b.status === 403 ? '' : `: ${b.status} ${b.body.trim().slice(0, 300)}`}`);
    // Answered past the plugin: 200, or an error of dockerd's own handler that does not name the
    // plugin (a list racing another test's remove on the shared engine; seen once in CI, Node 20
    // pass, unexplained then). A refusal by or failure of the plugin names it.
    const readPassed = rd.status === 200 || (rd.status >= 400 && !rd.body.includes(`plugin ${plugin}`));
    t.ok(readPassed, `outage ${i}: a read stalled and was answered past the plugin (${rd.ms} ms)${rd.status === 200 ? '' : `: ${rd.status} ${rd.body.trim().slice(0, 300)}`}`);
    asDocumented += (back ? 1 : 0) + (b.status === 403 ? 1 : 0) + (readPassed ? 1 : 0);
    stallMs.push(Math.max(g.ms, b.ms, rd.ms));
    t.ok(Math.min(g.ms, b.ms, rd.ms) >= SHORT_DOWN_MS - 200, `outage ${i}: nothing was answered while the plugin was away`);
  }

  // Down for good: after its retries dockerd refuses, reads included.
  await agent.stop('SIGKILL');
  const t1 = Date.now();
  const refused = await dockerApi(e.socketPath, 'GET', '/containers/json', undefined, 90_000);
  const refusedMs = Date.now() - t1;
  produced += 1;
  t.comment(`agent down: GET /containers/json answered ${refused.status} after ${refusedMs} ms: ${refused.body.trim().slice(0, 300)}`);
  const refusedOk = refused.status >= 500 && new RegExp(`plugin ${plugin} failed with error`).test(refused.body) && refusedMs >= 10_000 && refusedMs <= 45_000;
  t.ok(refusedOk, `a read is refused after dockerd's retries (15-30 s), naming the plugin (${refusedMs} ms)`);
  if (refusedOk) asDocumented += 1;
  const restartAt = Date.now();
  agent.start();
  await waitFor('requests served again', async () => (await dockerApi(e.socketPath, 'GET', '/_ping', undefined, 40_000)).status === 200, 45_000, 200);
  const recoverMs = Date.now() - restartAt;

  // Everything the outages let through is in the controller's inventory, and nothing that breaks the rule exists.
  await waitFor('compliant containers reported', async () => {
    const inv = new Set((await listAll<ControllerContainer>(ctl, `/v1/containers?agent=${agent.agentId}`)).filter((c) => !c.removed && c.state === 'running').map((c) => c.id));
    return compliant.every((id) => inv.has(id));
  }, 30_000, 250);
  const all = JSON.parse((await dockerApi(e.socketPath, 'GET', '/containers/json?all=1')).body) as Array<{ Labels: Record<string, string> }>;
  t.equal(all.filter((c) => c.Labels['fault'] === 'bad').length, 0, 'no breaking container was created during the outages');

  recordFault({
    fault: `agent SIGKILL: authorization plugin away (${SHORT_OUTAGES} x ${SHORT_DOWN_MS / 1000} s, then 1 x left down until dockerd refuses)`,
    injected: SHORT_OUTAGES + 1,
    items: 'Docker API requests sent while the plugin was away, answered as docs/authz.md says',
    produced,
    delivered: asDocumented,
    lost: produced - asDocumented,
    recoverMs,
    note: `short outages: requests stalled and were judged, answered ≤ ${Math.max(...stallMs)} ms after being sent; long outage: refused after ${Math.round(refusedMs / 100) / 10} s`,
  });
});
