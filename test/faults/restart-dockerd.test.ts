// Fault: dockerd is restarted (SIGTERM, then started again with the same command line, its
// containerd left running — what `systemctl restart docker` does) twice, with containers
// running and more being started throughout. Without live-restore dockerd stops every
// container on the way down and starts the `--restart always` ones again on the way up, by
// itself: no API request, so only the agent's reaction path can judge them.
// Afterwards nothing may be left unevaluated: no container that breaks the enforce-mode rule
// is running, each has a violation at the controller, and the controller's inventory equals
// the engine's. A private engine: the shared one must not be restarted under other tests.
import t from 'tap';
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { recordFault } from '../helpers/fault-report';
import { FILE_LABEL, startPrivateEngine } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import {
  dockerApi, engineContainers, listAll, putPolicy, runContainer, testLabels,
  type ControllerContainer, type ControllerViolation,
  rootPolicy,
} from '../helpers/fault-harness';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';

const RESTARTS = 2;

const POLICY = rootPolicy('faults-restart-dockerd', 'enforce');

/** Stops dockerd as systemd would (SIGTERM, wait) and starts it again with the same command line. */
async function restartDockerd(dir: string, socketPath: string): Promise<{ downMs: number; pid: number }> {
  const pid = Number(readFileSync(`${dir}/dockerd.pid`, 'utf8').trim());
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const env = Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const t0 = Date.now();
  process.kill(pid, 'SIGTERM');
  await waitFor('dockerd exited', async () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, 60_000, 50);
  const log = openSync(`${dir}/dockerd.log`, 'a');
  const child = spawn(argv[0]!, argv.slice(1), { env, detached: true, stdio: ['ignore', log, log] });
  child.unref();
  await waitFor('dockerd answers again', async () => (await dockerApi(socketPath, 'GET', '/_ping', undefined, 2_000).catch(() => undefined))?.status === 200, 60_000, 100);
  return { downMs: Date.now() - t0, pid: child.pid ?? 0 };
}

t.test('dockerd restarted with containers running and starting', async (t) => {
  const engine = await startPrivateEngine({ t });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const version = await putPolicy(ctl, POLICY);
  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost, ['--reconcile-interval', '2s']);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ status: string; policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
  }, 30_000);

  // Running before the first restart: `always` containers, good and breaking (the agent kills
  // the breaking ones at once; dockerd starts them again at its next start).
  const created: Array<{ id: string; name: string; bad: boolean }> = [];
  for (let i = 0; i < 8; i++) {
    const bad = i % 2 === 0;
    const name = `rd-${process.pid}-always-${i}`;
    created.push({ id: await runContainer(engine.socketPath, name, testLabels({ fault: bad ? 'bad' : 'ok' }), ['sleep', '600'], { restartAlways: true, stopTimeout: 1 }), name, bad });
  }

  // Started throughout: one every 250 ms, retried while dockerd is away.
  let stop = false;
  let n = 0;
  let refusedWhileDown = 0;
  const starter = (async () => {
    while (!stop) {
      const bad = n % 2 === 0;
      const name = `rd-${process.pid}-run-${n++}`;
      for (;;) {
        try {
          created.push({ id: await runContainer(engine.socketPath, name, testLabels({ fault: bad ? 'bad' : 'ok' }), ['sleep', '600'], { stopTimeout: 1 }), name, bad });
          break;
        } catch (e) {
          refusedWhileDown++;
          // A create that reached dockerd before it stopped leaves a container by that name: start it.
          if (/Conflict|already in use/.test(String(e))) {
            const r = await dockerApi(engine.socketPath, 'POST', `/containers/${name}/start`).catch(() => undefined);
            if (r && (r.status === 204 || r.status === 304)) {
              const ins = JSON.parse((await dockerApi(engine.socketPath, 'GET', `/containers/${name}/json`)).body) as { Id: string };
              created.push({ id: ins.Id, name, bad });
              break;
            }
          }
          if (stop) break;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();

  const downMs: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    await new Promise((r) => setTimeout(r, 3_000));
    downMs.push((await restartDockerd(engine.dir, engine.socketPath)).downMs);
  }
  await new Promise((r) => setTimeout(r, 1_500));
  stop = true;
  await starter;
  const stoppedAt = Date.now();
  t.comment(`${created.length} containers created; dockerd away ${downMs.join(', ')} ms; ${refusedWhileDown} create/start attempts failed while it was`);

  const judge = async () => {
    const eng = await engineContainers(engine.socketPath, FILE_LABEL);
    const engById = new Map(eng.map((c) => [c.id, c]));
    const mine = (await listAll<ControllerContainer>(ctl, `/v1/containers?agent=${agent.agentId}`)).filter((c) => !c.removed);
    const ctlById = new Map(mine.map((c) => [c.id, c.state]));
    const violations = await listAll<ControllerViolation>(ctl, `/v1/violations?agent=${agent.agentId}&rule=faults.root`);
    const violated = new Set(violations.filter((v) => v.action?.type === 'kill').map((v) => v.containerId));
    const problems: string[] = [];
    for (const c of created) {
      const e = engById.get(c.id);
      if (!e) {
        problems.push(`${c.name}: gone from the engine`);
        continue;
      }
      if (ctlById.get(c.id) !== e.state) problems.push(`${c.name}: engine ${e.state}, controller ${ctlById.get(c.id) ?? 'missing'}`);
      if (c.bad && e.state === 'running') problems.push(`${c.name}: breaks the rule and is running`);
      if (c.bad && !violated.has(c.id)) problems.push(`${c.name}: no kill violation at the controller`);
      // Compliant `always` containers come back with dockerd; others stay stopped (no live-restore).
      if (!c.bad && c.name.includes('always') && e.state !== 'running') problems.push(`${c.name}: compliant, restart always, but ${e.state}`);
    }
    for (const id of ctlById.keys()) if (!engById.has(id)) problems.push(`${id.slice(0, 12)}: at the controller, not in the engine`);
    return problems;
  };
  let problems: string[] = [];
  await waitFor('every container evaluated and reported', async () => ((problems = await judge()).length === 0 ? true : undefined), 45_000, 500).catch(() => undefined);
  const recoverMs = Date.now() - stoppedAt;
  t.same(problems, [], 'every container evaluated, acted on when it breaks the rule, and reported as the engine has it');
  const restartedBad = created.filter((c) => c.bad && c.name.includes('always'));
  t.ok(restartedBad.length > 0, 'breaking `always` containers were started again by dockerd itself');

  const lost = new Set(problems.map((p) => p.split(':')[0])).size;
  recordFault({
    fault: `dockerd restart x${RESTARTS} with containers running and starting`,
    injected: RESTARTS,
    items: 'containers (breaking ones: killed + violation; all: state at the controller)',
    produced: created.length,
    delivered: created.length - lost,
    lost,
    recoverMs: problems.length === 0 ? recoverMs : null,
    note: `dockerd away ${Math.max(...downMs)} ms at worst; ${restartedBad.length} breaking restart-always containers started again by dockerd`,
  });
});
