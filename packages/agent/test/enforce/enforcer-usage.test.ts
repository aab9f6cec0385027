// The enforcer's usage door: a usage breach handed over by the usage monitor
// is evaluated with its usage by the one evaluator and acted on like any
// other finding (source "usage"); without usage the same rule finds nothing.
import t from 'tap';
import { createLogger, parsePolicy, type UsageFacts, type ViolationReport } from '@bulkhead/shared';
import type Dockerode from 'dockerode';
import { Enforcer } from '../../src/enforce/enforcer';
import type { EnforcerDocker } from '../../src/enforce/enforcer-options';
import type { Facts } from '../../src/docker/container-facts';
import type { PolicyState } from '../../src/policy/policy-holder';

const logger = createLogger({ name: 'enforcer-usage-test', level: 'silent' });

const POLICY = parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
    - id: cpu
      description: cpu hog
      severity: medium
      mode: enforce
      action: { type: pause }
      scope: { containerLabels: { rule: cpu } }
      check: { type: cpu-usage, abovePercent: 80, forSeconds: 10 }
    - id: pids
      description: fork bomb
      severity: high
      mode: monitor
      action: { type: pause }
      scope: { containerLabels: { rule: pids } }
      check: { type: pids-usage, above: 100 }
`, 'unit.yaml');

function facts(rule: string): Facts {
  return {
    id: `c${rule}`.padEnd(64, '0'), name: `ctr-${rule}`, imageRef: 'img:1', imageId: 'sha256:i', imageDigest: '', labels: { rule }, state: 'running',
    user: '1000', privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
    securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 5e8, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0, restartPolicy: 'no',
    restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 1, startedAtMs: 1000, finishedAtMs: 0, exitCode: 0, pid: 7, devices: [], imageUser: '',
    restartCount: 0, secretHits: [], project: '',
  };
}

const hot = (cpuPercent: number, pids = 1): UsageFacts => ({
  points: [0, 5000, 10_000].map((dt, i) => ({ at: 1_000_000 + dt, cpuPercent: i === 0 ? null : cpuPercent, cpuLimitCores: 0.5, memoryBytes: 1, memoryLimitBytes: 0, pids, pidsLimit: 0 })),
});

function setup() {
  const calls: string[] = [];
  const reports: ViolationReport[] = [];
  const inventory = new Map<string, Facts>();
  const docker: EnforcerDocker = {
    getContainer: (id) => ({
      kill: async () => void calls.push(`kill ${id}`),
      stop: async () => void calls.push(`stop ${id}`),
      pause: async () => {
        calls.push(`pause ${id}`);
        const f = inventory.get(id);
        if (f) inventory.set(id, { ...f, state: 'paused' });
      },
      update: async () => void calls.push(`update ${id}`),
      inspect: async () => {
        const f = inventory.get(id)!;
        return { Id: f.id, Name: `/${f.name}`, Config: { Labels: f.labels, Image: f.imageRef }, State: { Status: f.state, StartedAt: new Date(f.startedAtMs).toISOString() }, HostConfig: { NanoCpus: f.nanoCpus }, NetworkSettings: { Networks: {} }, Mounts: [] } as unknown as Dockerode.ContainerInspectInfo;
      },
    }),
    getNetwork: () => ({ disconnect: async () => undefined }),
    getExec: () => ({ inspect: async () => Promise.reject(new Error('no execs here')) }),
  };
  const state: PolicyState = { policy: POLICY, scans: new Map(), version: 3, source: 'bundle', sha256: 's', projectLabel: 'bulkhead.project' };
  const enforcer = new Enforcer({
    docker, logger, policy: () => state,
    containers: { inventory: () => [...inventory.values()], get: (id) => inventory.get(id) },
    onViolation: (r) => reports.push(r),
  });
  const add = (f: Facts) => inventory.set(f.id, f);
  return { enforcer, calls, reports, add };
}

t.test('a breach handed over with its usage is enforced and recorded with source usage', async (t) => {
  const { enforcer, calls, reports, add } = setup();
  const f = facts('cpu');
  add(f);
  enforcer.onUpsert(f, 'start', Date.now());
  await enforcer.idle();
  t.same(calls, [], 'no usage, no finding: an event alone never trips a usage rule');
  enforcer.onUsage(f, hot(30));
  await enforcer.idle();
  t.same(calls, [], 'usage below the threshold: nothing');
  enforcer.onUsage(f, hot(50));
  await enforcer.idle();
  t.same(calls, [`pause ${f.id}`], 'paused');
  t.equal(reports.length, 1);
  t.match(reports[0], { ruleId: 'cpu', source: 'usage', mode: 'enforce', policyVersion: 3, action: { type: 'pause', result: 'ok' } });
  t.match(JSON.parse(reports[0]!.evidenceJson!)[0].detail, /CPU at 100 % of its CPU quota \(0.5 CPUs\) for 10 s/);
  enforcer.onUsage(f, hot(50));
  await enforcer.idle();
  t.equal(calls.length, 1, 'the run it paused is not acted on again');
});

t.test('monitor mode: recorded once, no action', async (t) => {
  const { enforcer, calls, reports, add } = setup();
  const f = facts('pids');
  add(f);
  enforcer.onUsage(f, hot(0, 500));
  enforcer.onUsage(f, hot(0, 600));
  await enforcer.idle();
  t.same(calls, []);
  t.equal(reports.length, 1, 'once per container, rule and policy');
  t.match(reports[0], { ruleId: 'pids', source: 'usage', mode: 'monitor', action: { type: 'none', result: 'skipped' } });
});

t.test('an event queued behind a usage breach keeps its usage', async (t) => {
  const { enforcer, calls, add } = setup();
  const f = facts('cpu');
  add(f);
  // The first job is in flight; the usage job waits, then an event replaces it as the pending one.
  enforcer.onUpsert(f, 'start', Date.now());
  enforcer.onUsage(f, hot(50));
  enforcer.onUpsert(f, 'update', Date.now());
  await enforcer.idle();
  t.same(calls, [`pause ${f.id}`], 'the usage breach was still judged');
});
