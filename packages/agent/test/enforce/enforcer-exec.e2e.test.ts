// The reaction door against `docker exec` on a REAL engine: a root or
// privileged exec into a container that is neither — one the authorization
// plugin did not stop — is recorded (source `exec`, naming the exec) and the
// container is killed under an enforce-mode kill rule; an exec as a non-root
// user changes nothing; health-check execs of a container no exec rule
// covers cost no exec inspect.
//
// The engine may be shared with other test files: every rule is scoped to
// this file's container label, so nothing else is ever touched.
import t, { type Test } from 'tap';
import type Dockerode from 'dockerode';
import { createLogger, evaluate, parsePolicy, type ViolationReport } from '@bulkhead/shared';
import { useEngine, LABEL_ARGS, FILE_LABEL, removeLabelledContainers, type Engine } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { ContainerWatcher, type ExecStartEvent } from '../../src/docker/watcher';
import { Enforcer } from '../../src/enforce/enforcer';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';

const logger = createLogger({ name: 'enforcer-exec-e2e', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const [fileKey, fileValue] = FILE_LABEL.split('=') as [string, string];
const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;

// Containers run the USER 1000 image, so they break neither rule themselves;
// the label `bk.exec=judged` puts them in both rules' scope.
const rule = (id: string, check: string) => `
    - id: e2e.${id}
      description: ${id}
      severity: critical
      mode: enforce
      action: { type: kill }
      scope: { containerLabels: { "${fileKey}": "${fileValue}", bk.exec: judged } }
      check: { type: ${check} }`;

const POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: enforcer-exec-e2e }
spec:
  rules:${rule('exec-root', 'root-user')}${rule('exec-priv', 'privileged')}
`, 'enforcer-exec-e2e.yaml');

/**
 * Whether the evaluator reads "+0" as uid 0, as runc does (isRootUser in
 * @bulkhead/shared is being taught that); until then the "+0" case is todo.
 */
const READS_USERS_AS_RUNC = evaluate(POLICY, { container: { user: '+0', labels: { [fileKey]: fileValue, 'bk.exec': 'judged' } } as unknown as Facts }, { now: new Date() })
  .some((f) => f.ruleId === 'e2e.exec-root');

t.test('execs against a real engine', async (t) => {
  const engine: Engine = await useEngine(t);
  const real = createDockerClient({ dockerHost: engine.dockerHost });
  // The real client, with its exec inspects counted (the cost the enforcer adds per exec).
  const execInspects: string[] = [];
  const docker = Object.assign(Object.create(real) as typeof real, {
    getExec: (id: string): Dockerode.Exec => {
      execInspects.push(id);
      return real.getExec(id);
    },
  });
  const state: PolicyState = { policy: POLICY, scans: new Map(), version: 7, source: 'bundle', sha256: 'e2e', projectLabel: 'bulkhead.project' };
  const reports: ViolationReport[] = [];
  const execs: ExecStartEvent[] = [];
  let wake: (() => void) | undefined;
  const watcher = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
  const enforcer = new Enforcer({ docker, logger, policy: () => state, containers: watcher, onViolation: (r) => {
    reports.push(r);
    wake?.();
  } });
  const detach = enforcer.attach(watcher);
  watcher.on('exec', (x) => {
    execs.push(x);
    wake?.();
  });
  t.teardown(async () => {
    detach();
    await enforcer.stop();
    await watcher.stop();
    await removeLabelledContainers(engine);
  });

  const waitFor = async <T>(what: string, probe: () => T | undefined, ms = 20_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; reports ${JSON.stringify(reports.map((r) => [r.containerName, r.ruleId, r.source, r.action?.type, r.action?.result]))}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
  };
  const running = async (name: string): Promise<boolean> =>
    (JSON.parse(await engine.dockerOk(['inspect', name]))[0] as { State: { Running: boolean } }).State.Running;
  /** A running USER 1000 container in the rules' scope; resolves once the enforcer has judged its start. */
  const judged = async (name: string, extra: string[] = [], label = 'judged'): Promise<string> => {
    const id = await engine.dockerOk(['run', '-d', '--name', name, '--network', 'none', ...LABEL_ARGS, '--label', `bk.exec=${label}`, ...extra, engine.imageUser1000, 'sleep', '300']);
    await waitFor(`${name} in the inventory`, () => (watcher.get(id)?.state === 'running' ? true : undefined));
    await enforcer.idle();
    return id;
  };
  /** Runs `docker exec` (it may fail: a privileged exec cannot start in every sandbox) and waits until the enforcer has judged it. */
  const dockerExec = async (id: string, args: string[]): Promise<ExecStartEvent> => {
    const from = execs.length;
    await engine.docker(['exec', ...args]);
    const x = await waitFor(`exec_start in ${id.slice(0, 12)}`, () => execs.slice(from).find((e) => e.containerId === id));
    await enforcer.idle();
    return x;
  };
  const execReports = (id: string): ViolationReport[] => reports.filter((r) => r.containerId === id);

  const killedByExec = async (t: Test, name: string, args: (id: string) => string[], ruleId: string, user: string): Promise<void> => {
    const id = await judged(name);
    t.same(execReports(id), [], 'the container itself breaks no rule');
    const x = await dockerExec(id, args(id));
    const r = await waitFor('exec report', () => execReports(id).find((v) => v.source === 'exec'));
    t.same([r.ruleId, r.source, r.mode, r.action?.type, r.action?.result, r.policyVersion], [ruleId, 'exec', 'enforce', 'kill', 'ok', 7], 'recorded as an exec finding, acted on with the rule\'s action');
    const evidence = JSON.parse(r.evidenceJson ?? '[]') as Array<{ location: string; detail: string }>;
    t.equal(evidence[0]?.location, 'exec');
    t.match(evidence[0]?.detail ?? '', `docker exec ${x.execId} ${user}`, 'the evidence names the exec id and its user');
    t.match(r.message, x.execId);
    t.equal(await running(name), false, 'the container was killed');
    t.ok(execInspects.includes(x.execId), 'judged on the exec as dockerd recorded it');
  };

  await t.test('docker exec -u 0 → root-user broken → killed', (t) =>
    killedByExec(t, `bk-exec-u0-${uniq}`, (id) => ['-u', '0', id, 'id'], 'e2e.exec-root', 'as user "0"'));

  await t.test('docker exec -u +0 → root to runc, so killed', READS_USERS_AS_RUNC ? {} : { todo: 'isRootUser does not read "+0" as uid 0 yet' }, (t) =>
    killedByExec(t, `bk-exec-plus0-${uniq}`, (id) => ['-u', '+0', id, 'id'], 'e2e.exec-root', 'as user "+0"'));

  // dockerd records the container's user on an exec that names none.
  await t.test('docker exec --privileged (as the container\'s user 1000) → privileged broken → killed', (t) =>
    killedByExec(t, `bk-exec-priv-${uniq}`, (id) => ['--privileged', id, 'true'], 'e2e.exec-priv', 'as user "1000" (privileged)'));

  await t.test('an exec as a non-root user changes nothing', async (t) => {
    const name = `bk-exec-user-${uniq}`;
    const id = await judged(name);
    const a = await dockerExec(id, ['-u', '1000', id, 'id']);
    const b = await dockerExec(id, [id, 'id']);
    const c = await dockerExec(id, ['-u', 'nobody', id, 'id']);
    t.ok([a, b, c].every((x) => execInspects.includes(x.execId)), 'each exec was inspected and judged');
    t.same(execReports(id), [], 'nothing recorded');
    t.equal(await running(name), true, 'still running');
  });

  await t.test('health-check execs of a container no exec rule covers cost no exec inspect', async (t) => {
    const id = await judged(`bk-exec-hc-${uniq}`, ['--health-cmd', 'true', '--health-interval', '1s'], 'other');
    const mine = (): ExecStartEvent[] => execs.filter((x) => x.containerId === id);
    await waitFor('three health-check execs', () => (mine().length >= 3 ? true : undefined), 15_000);
    await enforcer.idle();
    t.same(mine().filter((x) => execInspects.includes(x.execId)), [], `none of ${mine().length} execs inspected`);
    t.same(execReports(id), []);
  });
});
