// Fault: the agent is SIGKILLed mid-enforcement — right after a burst of containers that break
// an enforce-mode rule was started, while it is killing them — and more are started while it
// is down. After each restart every container started meanwhile must be evaluated and acted
// on: no breaking container left running, each with its kill violation at the controller
// (once), and every container in the controller's inventory as the engine has it.
// Reaction path only (no authorization plugin here; kill-agent-authz.test.ts covers the plugin).
import t from 'tap';
import { recordFault } from '../helpers/fault-report';
import { FILE_LABEL, removeLabelledContainers, useEngine } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import {
  engineContainers, listAll, putPolicy, runContainer, testLabels,
  type ControllerContainer, type ControllerViolation,
  rootPolicy,
} from '../helpers/fault-harness';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';

const ROUNDS = 3;
const BURST = 6;
const WHILE_DOWN = 4;

const POLICY = rootPolicy('faults-kill-agent', 'enforce');

t.test('agent SIGKILLed mid-enforcement', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined));
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const version = await putPolicy(ctl, POLICY);
  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost, ['--reconcile-interval', '2s']);
  agent.start();
  t.teardown(() => agent.stop());
  const policyApplied = () => waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ status: string; policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
  }, 30_000);
  await policyApplied();

  const created: Array<{ id: string; name: string; bad: boolean; round: number; whileDown: boolean }> = [];
  const run = async (name: string, bad: boolean, round: number, whileDown: boolean): Promise<void> => {
    created.push({ id: await runContainer(engine.socketPath, name, testLabels({ fault: bad ? 'bad' : 'ok' })), name, bad, round, whileDown });
  };
  const judge = async (subset: typeof created) => {
    const eng = new Map((await engineContainers(engine.socketPath, FILE_LABEL)).map((c) => [c.id, c.state]));
    const inv = new Map((await listAll<ControllerContainer>(ctl, `/v1/containers?agent=${agent.agentId}`)).filter((c) => !c.removed).map((c) => [c.id, c.state]));
    const kills = new Map<string, number>();
    for (const v of await listAll<ControllerViolation>(ctl, `/v1/violations?agent=${agent.agentId}&rule=faults.root`)) {
      if (v.action?.type === 'kill') kills.set(v.containerId, (kills.get(v.containerId) ?? 0) + 1);
    }
    const problems: string[] = [];
    for (const c of subset) {
      const st = eng.get(c.id);
      if (inv.get(c.id) !== st) problems.push(`${c.name}: engine ${st ?? 'missing'}, controller ${inv.get(c.id) ?? 'missing'}`);
      if (c.bad && st === 'running') problems.push(`${c.name}: breaks the rule and is running`);
      if (c.bad && !kills.has(c.id)) problems.push(`${c.name}: no kill violation at the controller`);
    }
    const dups = [...kills.values()].filter((n) => n > 1).reduce((s, n) => s + n - 1, 0);
    return { problems, dups };
  };

  const recoverMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // A burst, and the kill while the agent is busy with it.
    const burst = Array.from({ length: BURST }, (_, i) => run(`ka-${process.pid}-r${round}-burst-${i}`, true, round, false));
    await Promise.race([Promise.all(burst), new Promise((r) => setTimeout(r, 150))]);
    await agent.stop('SIGKILL');
    await Promise.all(burst);
    // Down: more containers, breaking and not.
    for (let i = 0; i < WHILE_DOWN; i++) await run(`ka-${process.pid}-r${round}-down-${i}`, i % 2 === 0 || i === WHILE_DOWN - 1, round, true);
    await run(`ka-${process.pid}-r${round}-down-ok`, false, round, true);
    const restartAt = Date.now();
    agent.start();
    const subset = created.filter((c) => c.round === round);
    let last = await judge(subset);
    await waitFor(`round ${round}: everything evaluated`, async () => ((last = await judge(subset)).problems.length === 0 ? true : undefined), 30_000, 250).catch(() => undefined);
    recoverMs.push(Date.now() - restartAt);
    t.same(last.problems, [], `round ${round + 1}: every container started around the kill evaluated, acted on and reported (${Date.now() - restartAt} ms after the restart)`);
  }
  const final = await judge(created);
  t.equal(final.dups, 0, 'no container has two kill violations');
  const bad = created.filter((c) => c.bad);
  const lostNames = new Set(final.problems.map((p) => p.split(':')[0]));
  t.comment(`${created.length} containers (${bad.length} breaking, ${created.filter((c) => c.whileDown).length} started while the agent was down); recovery ${recoverMs.join(', ')} ms`);
  recordFault({
    fault: `agent SIGKILL x${ROUNDS} mid-enforcement (reaction path)`,
    injected: ROUNDS,
    items: 'containers started around the kill (breaking: killed + violation; all: inventory)',
    produced: created.length,
    delivered: created.length - lostNames.size,
    lost: lostNames.size,
    duplicates: final.dups,
    recoverMs: final.problems.length === 0 ? Math.max(...recoverMs) : null,
    note: `${bad.length} breaking, ${created.filter((c) => c.whileDown).length} started while the agent was down`,
  });
});
