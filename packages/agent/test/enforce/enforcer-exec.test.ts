// The reaction door's handling of execs, with a scripted engine (the real
// engine is enforcer-exec.e2e.test.ts): which execs are inspected at all
// (cost: health checks start one per interval), which findings an exec adds,
// what the report says, and what happens when the exec cannot be read.
import t from 'tap';
import { createLogger, evaluate, parsePolicy, type Policy, type ViolationReport } from '@bulkhead/shared';
import type Dockerode from 'dockerode';
import { Enforcer } from '../../src/enforce/enforcer';
import type { EnforcerDocker } from '../../src/enforce/enforcer-options';
import { addedByExec, asExecFinding, eventCommand, execFacts, execRecordOf } from '../../src/enforce/exec-facts';
import type { ExecStartEvent } from '../../src/docker/event-stream';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';

const rule = (id: string, check: string, mode: 'enforce' | 'monitor', action = '{ type: kill }', scope = '{ containerLabels: { exec: judged } }') => `
    - id: ${id}
      description: ${id}
      severity: high
      mode: ${mode}
      action: ${action}
      scope: ${scope}
      check: { type: ${check} }`;

const policyOf = (rules: string): Policy => parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: exec-unit }
spec:
  rules:${rules}
`, 'exec-unit.yaml');

const ENFORCE = policyOf(rule('root', 'root-user', 'enforce') + rule('priv', 'privileged', 'enforce'));
const MONITOR = policyOf(rule('root', 'root-user', 'monitor'));
// Rules no exec can break (an exec changes only user and privilege).
const NO_EXEC_RULE = policyOf(rule('ro', 'read-only-rootfs', 'monitor') + rule('caps', 'capabilities', 'monitor'));

const state = (policy: Policy | undefined, version = 1): PolicyState =>
  ({ policy, scans: new Map(), version, source: 'bundle', sha256: `s${version}`, projectLabel: 'bulkhead.project' }) as PolicyState;

const ID = 'c'.repeat(64);
function facts(over: Partial<Facts> = {}): Facts {
  return {
    id: ID, name: 'app', imageRef: 'img:1', imageId: 'sha256:i', imageDigest: '', labels: { exec: 'judged' }, state: 'running',
    user: '1000', privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
    securityOpt: [], readOnlyRootfs: true, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0, restartPolicy: 'no',
    restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 1, startedAtMs: 1000, finishedAtMs: 0, exitCode: 0, pid: 7, devices: [], imageUser: '',
    restartCount: 0, secretHits: [], project: '', ...over,
  };
}

/** What `GET /exec/{id}/json` answers (dockerd leaves `user` out when none was given). */
function execInfo(id: string, p: { user?: string; privileged?: boolean; argv?: string[] }): Dockerode.ExecInspectInfo {
  const [entrypoint, ...args] = p.argv ?? ['sh'];
  return {
    ID: id, Running: true, ExitCode: null, CanRemove: false, DetachKeys: '', OpenStdin: false, OpenStderr: true, OpenStdout: true, ContainerID: ID, Pid: 9,
    ProcessConfig: { tty: false, entrypoint: entrypoint!, arguments: args, privileged: p.privileged ?? false, ...(p.user !== undefined ? { user: p.user } : {}) },
  } as Dockerode.ExecInspectInfo;
}

function setup(policy: Policy | undefined, container: Facts = facts()) {
  const ops: string[] = [];
  const inspected: string[] = [];
  const reports: ViolationReport[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const execs = new Map<string, Dockerode.ExecInspectInfo>();
  const inventory = new Map([[container.id, container]]);
  const docker: EnforcerDocker = {
    getContainer: (id) => ({
      kill: async () => {
        ops.push(`kill:${id}`);
        inventory.set(id, { ...inventory.get(id)!, state: 'exited' });
      },
      stop: async () => void ops.push(`stop:${id}`),
      pause: async () => void ops.push(`pause:${id}`),
      update: async () => void ops.push(`update:${id}`),
      inspect: async () => {
        throw new Error('not used');
      },
    }),
    getNetwork: () => ({ disconnect: async () => undefined }),
    getExec: (id) => ({
      inspect: async () => {
        inspected.push(id);
        const info = execs.get(id);
        if (!info) throw Object.assign(new Error('(HTTP code 404) no such exec'), { statusCode: 404 });
        return info;
      },
    }),
  };
  const logger = createLogger({ name: 'exec-unit', level: 'debug', destination: { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) } });
  const st = state(policy);
  const enforcer = new Enforcer({
    docker, logger, policy: () => st,
    containers: { inventory: () => [...inventory.values()], get: (id) => inventory.get(id) },
    onViolation: (r) => reports.push(r),
  });
  let n = 0;
  /** The watcher's `exec` event for an exec the engine holds as `p` (none: gone already), then waits. */
  const exec = async (p?: { user?: string; privileged?: boolean; argv?: string[] }, command = 'sh'): Promise<string> => {
    const id = `e${++n}`.padEnd(64, '0');
    if (p) execs.set(id, execInfo(id, p));
    const ev: ExecStartEvent = { containerId: container.id, execId: id, command, timeMs: Date.now() };
    enforcer.onExec(ev);
    await enforcer.idle();
    return id;
  };
  return { enforcer, ops, inspected, reports, logs, exec };
}

/**
 * Whether the evaluator reads "+0" as uid 0, as runc does (isRootUser in
 * @bulkhead/shared is being taught that); until then the "+0" cases are todo.
 */
const READS_USERS_AS_RUNC = evaluate(ENFORCE, { container: facts({ user: '+0' }) }, { now: new Date(), scans: new Map() }).some((f) => f.ruleId === 'root');
const runcTodo = READS_USERS_AS_RUNC ? {} : { todo: 'isRootUser does not read "+0" as uid 0 yet' };

t.test('a root exec in a non-root container: reported as source exec and acted on (kill)', async (t) => {
  const { ops, reports, exec, logs } = setup(ENFORCE);
  const id = await exec({ user: '0', argv: ['sh', '-c', 'id'] });
  t.same(ops, [`kill:${ID}`], 'the rule\'s action, once');
  t.equal(reports.length, 1);
  const r = reports[0]!;
  t.same([r.ruleId, r.source, r.mode, r.action?.type, r.action?.result, r.containerId], ['root', 'exec', 'enforce', 'kill', 'ok', ID]);
  t.match(r.message, new RegExp(`^root: docker exec ${id} as user "0": sh -c id: container app: `), 'the message names the exec first');
  const evidence = JSON.parse(r.evidenceJson ?? '[]') as Array<{ location: string; detail: string }>;
  t.same(evidence[0], { location: 'exec', detail: `docker exec ${id} as user "0": sh -c id` }, 'the exec is the first evidence');
  t.match(evidence[1], { location: 'user', detail: /"0", which is root/ }, 'then what the rule found');
  t.ok(logs.some((l) => l['msg'] === 'enforcer: a docker exec breaks rules its container does not' && l['execId'] === id && l['user'] === '0'), 'logged with the exec id and user');
});

t.test('"+0" is root to runc, so it is root here too', runcTodo, async (t) => {
  const { ops, reports, exec } = setup(ENFORCE);
  await exec({ user: '+0' });
  t.same(ops, [`kill:${ID}`]);
  t.same(reports.map((r) => [r.ruleId, r.source]), [['root', 'exec']]);
});

t.test('a privileged exec: the privileged rule, and nothing the container already breaks', async (t) => {
  // The container runs as root already (user 0): only `priv` is new.
  const { ops, reports, exec } = setup(policyOf(rule('root', 'root-user', 'monitor') + rule('priv', 'privileged', 'enforce', '{ type: pause }')), facts({ user: '0' }));
  await exec({ privileged: true, argv: ['true'] });
  t.same(reports.map((r) => [r.ruleId, r.source, r.action?.type]), [['priv', 'exec', 'pause']]);
  t.same(ops, [`pause:${ID}`]);
});

t.test('an exec as a non-root user, or as the container\'s own user, changes nothing', async (t) => {
  const { ops, reports, inspected, exec } = setup(ENFORCE);
  await exec({ user: '1000' });
  await exec({ user: 'nobody:nogroup' });
  await exec({}); // no --user: the container's (1000)
  t.equal(inspected.length, 3, 'each was inspected (some exec could have broken a rule)');
  t.same(reports, []);
  t.same(ops, []);
});

t.test('cost: no exec inspect when no exec can add a finding', async (t) => {
  await t.test('no policy in force', async (t) => {
    const { inspected, exec } = setup(undefined);
    await exec({ user: '0', privileged: true });
    t.same(inspected, []);
  });
  await t.test('the policy has no rule an exec can break', async (t) => {
    const { inspected, reports, exec } = setup(NO_EXEC_RULE);
    await exec({ user: '0', privileged: true });
    t.same(inspected, []);
    t.same(reports, []);
  });
  await t.test('the container is out of the rules\' scope', async (t) => {
    const { inspected, exec } = setup(ENFORCE, facts({ labels: { exec: 'other' } }));
    await exec({ user: '0', privileged: true });
    t.same(inspected, []);
  });
  await t.test('the container already breaks every rule an exec could', async (t) => {
    const { inspected, exec } = setup(policyOf(rule('root', 'root-user', 'monitor') + rule('priv', 'privileged', 'monitor')), facts({ user: 'root', privileged: true }));
    await exec({ user: '0', privileged: true });
    t.same(inspected, []);
  });
});

t.test('monitor mode: every escalating exec is recorded, none acted on', async (t) => {
  const { ops, reports, exec } = setup(MONITOR);
  const a = await exec({ user: 'root' });
  const b = await exec({ user: '0:0' });
  t.same(ops, []);
  t.same(reports.map((r) => [r.ruleId, r.source, r.action?.type, r.action?.result]), [['root', 'exec', 'none', 'skipped'], ['root', 'exec', 'none', 'skipped']]);
  t.match(reports[0]!.message, a);
  t.match(reports[1]!.message, b);
});

t.test('an exec gone before it could be inspected is logged as not judged', async (t) => {
  const { ops, reports, inspected, logs, exec } = setup(ENFORCE);
  const id = await exec(undefined, 'mysql --password=hunter2secret');
  t.same(inspected, [id], 'one inspect, answered 404');
  t.same(reports, []);
  t.same(ops, []);
  const line = logs.find((l) => l['execId'] === id);
  t.match(line, { level: 40, containerId: ID, msg: /exec gone before it could be inspected.*could not be judged/ });
  t.notMatch(String(line?.['command']), /hunter2secret/, 'the command from the event is logged with its secret redacted');
});

t.test('an exec in a container the inventory does not hold is logged as not judged', async (t) => {
  const { inspected, reports, logs, enforcer } = setup(ENFORCE);
  enforcer.onExec({ containerId: 'f'.repeat(64), execId: 'x1', command: 'sh', timeMs: Date.now() });
  await enforcer.idle();
  t.same(inspected, []);
  t.same(reports, []);
  t.ok(logs.some((l) => l['execId'] === 'x1' && /could not be judged/.test(String(l['msg']))));
});

t.test('exec-facts', async (t) => {
  const c = facts({ user: '1000', privileged: false });
  t.match(execFacts(c, { user: '', privileged: false }), { user: '1000', privileged: false }, 'no --user: the container\'s user');
  t.match(execFacts(c, { user: '+0', privileged: true }), { user: '+0', privileged: true }, 'the exec\'s user as given (the evaluator decides what is root)');
  t.match(execFacts(facts({ privileged: true }), { user: '', privileged: false }), { privileged: true }, 'a privileged container stays privileged');

  const rec = execRecordOf(execInfo('E', { argv: ['mysql', '--password', 'hunter2secret'], privileged: true }));
  t.same([rec.id, rec.user, rec.privileged], ['E', '', true], 'no user in the inspect: ""');
  t.notOk(rec.command.join(' ').includes('hunter2secret'), `command redacted: ${rec.command.join(' ')}`);
  t.notMatch(eventCommand({ containerId: 'C', execId: 'E', command: 'psql postgres://u:pw1234567@db/x', timeMs: 0 }), /pw1234567/);

  const f = { ruleId: 'r', severity: 'high' as const, mode: 'enforce' as const, action: { type: 'kill' as const }, message: 'r: container app: x', evidence: [{ location: 'user', detail: 'x' }] };
  t.same(addedByExec([f], [f, { ...f, ruleId: 's' }]).map((x) => x.ruleId), ['s'], 'by rule');
  const ef = asExecFinding(f, { id: 'E', user: '', privileged: true, command: ['true'] }, facts({ user: '' }));
  t.equal(ef.message, 'r: docker exec E as the container\'s (image\'s) user (privileged): true: container app: x');
  t.equal(ef.evidence.length, 2);
});
