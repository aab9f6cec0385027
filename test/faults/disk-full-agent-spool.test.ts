// Fault: the file system under the agent's state directory (its spool, the persisted policy
// bundle, its credentials) is full. The agent's state directory is a small tmpfs mounted by
// the test; each round fills it, pushes a new policy, takes the controller away and produces
// violation reports (denied requests on the real agent's plugin socket, as dockerd sends
// them), then frees the space, restarts the agent and brings the controller back.
//
// Expected: the agent stays up and keeps answering the plugin while the disk is full; it says
// so (an error naming the spool file and ENOSPC; the policy is in force but not persisted);
// once space is back everything it was given is spooled, survives its restart and reaches the
// controller — nothing lost; after the restart it enforces the last policy it could persist
// (never a truncated file).
import t from 'tap';
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
import { alive, denyPrivilegedPolicy, fillFs, freeSpace, isRoot, mountTmpfs, pluginCreate } from '../helpers/fault-inject';
import { recordFault } from '../helpers/fault-report';

const DOCKER_HOST = process.env['BULKHEAD_TEST_DOCKER_HOST'];
const ROUNDS = 3;
const PER_PHASE = 6;

interface Violation {
  id: string;
  containerName: string;
  denied: boolean;
}

t.test('disk full under the agent state directory', { skip: !DOCKER_HOST ? 'needs BULKHEAD_TEST_DOCKER_HOST' : !isRoot() ? 'needs root (mount)' : false }, async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const stateDir = join(root.dir, 'agent');
  mountTmpfs(t, stateDir, '2m');

  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const put = (yaml: string) => apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, yaml, 'application/yaml');
  t.equal((await put(denyPrivilegedPolicy('disk-full', 'v1'))).status, 200);

  // No host audit: its report file comes and goes in the state directory, freeing space at random.
  const agent = await enrollAgent(ctl, root.dir, 'agent', DOCKER_HOST!, ['--audit-interval', '0']);
  const socket = join(stateDir, 'authz.sock');
  agent.start();
  t.teardown(() => agent.stop());
  const policyStatus = async () => (await ctl.get<{ policy: { version: number; applied: boolean } | null; status: string }>(`/v1/agents/${agent.agentId}`)).body;
  await waitFor('agent online with the policy', async () => (await policyStatus()).policy?.applied, 30_000);

  const names: string[] = [];
  let lost = 0;
  let worstRecover = 0;
  let pluginWorstMs = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    // 1. Full disk; a new policy arrives: in force, not persisted (and said so). The agent is
    //    let settle first: the acknowledgements of the last round shrink the spool file when
    //    it is rewritten, which would free space right after the fill. Filled twice for that.
    await new Promise((r) => setTimeout(r, 1500));
    const filler = fillFs(stateDir);
    await new Promise((r) => setTimeout(r, 300));
    const filler2 = fillFs(stateDir);
    const version = (await put(denyPrivilegedPolicy('disk-full', `v${round + 1}`))).body.version;
    await waitFor(`policy v${version} applied while the disk is full`, async () => {
      const p = (await policyStatus()).policy;
      return p?.version === version && p.applied;
    }, 20_000);
    await agent.daemon.waitForLog((l) => l['msg'] === 'could not persist the policy bundle; it is in force but will not survive a restart' && JSON.stringify(l).includes('ENOSPC'), 10_000);

    // 2. Controller away, reports made: spooled in memory only, the failure said.
    await ctl.stop();
    for (let i = 0; i < PER_PHASE; i++) {
      const name = `fb-full-r${round}-${i}`;
      const a = await pluginCreate(socket, name);
      t.equal(a.allow, false, `${name}: refused while the disk is full (${a.msg.slice(0, 60)})`);
      pluginWorstMs = Math.max(pluginWorstMs, a.ms);
      names.push(name);
    }
    const failed = await agent.daemon.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('spool: write failed') && JSON.stringify(l).includes('ENOSPC'), 10_000);
    t.match(JSON.stringify(failed), /violations\.jsonl/, 'the error names the spool file');
    t.ok(alive(agent.daemon.child.pid), 'the agent is up with a full disk');

    // 3. Space back; more reports: the spool is rewritten whole.
    freeSpace(filler);
    freeSpace(filler2);
    const rewritten = agent.daemon.lines.length;
    for (let i = 0; i < PER_PHASE; i++) {
      const name = `fb-free-r${round}-${i}`;
      t.equal((await pluginCreate(socket, name)).allow, false);
      names.push(name);
    }
    await waitFor('spool rewritten', async () => agent.daemon.lines.slice(rewritten).some((l) => l['msg'] === 'spool: writable again; rewrote the spool file'), 10_000);

    // 4. Agent restart (the controller comes back meanwhile): what it spooled survives, and
    //    the last persisted policy is enforced until the controller sends the newer one.
    await agent.stop();
    await ctl.restart();
    const back = Date.now();
    agent.start();
    const loaded = await agent.daemon.waitForLog((l) => l['msg'] === 'persisted policy bundle loaded' || /persisted policy bundle is/.test(String(l['msg'])), 20_000);
    t.equal(loaded['msg'], 'persisted policy bundle loaded', `round ${round}: the persisted policy is whole (${String(loaded['msg'])})`);
    const recovered = await agent.daemon.waitForLog((l) => l['msg'] === 'spool: recovered unsent violation reports', 20_000);
    t.ok(Number(recovered['pending']) >= 2 * PER_PHASE, `round ${round}: ${String(recovered['pending'])} unsent reports recovered from the spool`);
    t.notOk(agent.daemon.lines.some((l) => l['msg'] === 'spool: ignoring damaged lines; the intact reports are kept'), 'no damaged spool line');

    // 5. Everything arrives.
    const want = new Set(names);
    const got = await waitFor(`round ${round}: all ${want.size} reports at the controller`, async () => {
      const items = (await ctl.get<{ items: Violation[] }>('/v1/violations?limit=500')).body.items;
      const seen = new Set(items.filter((v) => want.has(v.containerName)).map((v) => v.containerName));
      return seen.size === want.size ? seen : undefined;
    }, 45_000).catch(async () => new Set((await ctl.get<{ items: Violation[] }>('/v1/violations?limit=500')).body.items.map((v) => v.containerName)));
    worstRecover = Math.max(worstRecover, Date.now() - back);
    lost = names.filter((n) => !got.has(n)).length;
    t.equal(lost, 0, `round ${round}: no report lost`);
  }
  t.same(readdirSync(stateDir).filter((f) => f.includes('.tmp-')), [], 'no temporary files left in the state directory');
  const all = (await ctl.get<{ items: Violation[] }>('/v1/violations?limit=500')).body.items.filter((v) => v.containerName.startsWith('fb-'));
  const dup = all.length - new Set(all.map((v) => v.containerName)).size;
  t.equal(dup, 0, 'each report stored once');
  recordFault({
    fault: 'agent state dir full (2 MiB tmpfs): policy push + reports while full, then agent and controller restart',
    injected: ROUNDS,
    produced: names.length,
    delivered: names.length - lost,
    lost,
    recoverMs: worstRecover,
    items: 'violation reports (plugin denials)',
    duplicates: dup,
    note: `plugin answered every request while full (slowest ${pluginWorstMs} ms)`,
  });
});
