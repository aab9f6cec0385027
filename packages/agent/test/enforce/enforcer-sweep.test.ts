// The enforcer's sweep skips containers whose last evaluation settled on
// inputs that have not changed — and only those: new facts, a new policy
// state, new host facts, other signature verdicts, a hold change, a changed
// neighbour (when a rule read neighbours), the clock (a dated exemption, a
// scan's age), a failed or taken action, a partial secret scan, and usage or
// exec judgements all lead to a real evaluation.
import t from 'tap';
import { createLogger, parsePolicy, type HostFacts__Output, type SignatureVerdict, type ViolationReport } from '@bulkhead/shared';
import { Enforcer } from '../../src/enforce/enforcer';
import type { EnforcerDocker } from '../../src/enforce/enforcer-options';
import { EnforcementHolds } from '../../src/enforce/holds';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';
import type { SignatureGate } from '../../src/signatures/signature-gate';
import { withSecretsAndProject } from '../../src/secrets/secret-scan';

const logger = createLogger({ name: 'enforcer-sweep-test', level: 'silent' });
const NOW = Date.parse('2026-12-07T12:00:00Z');

const policyOf = (rules: string) => parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: sweep }
spec:
  rules:${rules}
`, 'sweep.yaml');

const rule = (id: string, mode: string, action: string, check: string, extra = '') => `
    - id: ${id}
      description: ${id}
      severity: high
      mode: ${mode}
      action: ${action}
      scope: { containerLabels: { rule: ${id} } }
      check: ${check}${extra}`;

const POLICY = policyOf(
  rule('mon', 'monitor', '{ type: kill }', '{ type: privileged }')
  + rule('kill', 'enforce', '{ type: kill }', '{ type: privileged }')
  + rule('dated', 'enforce', '{ type: kill }', '{ type: privileged }', `
      exemptions: [ { who: ops, why: migration, until: "2026-12-07T12:01:00Z" } ]`)
  + rule('forever', 'enforce', '{ type: kill }', '{ type: privileged }', `
      exemptions: [ { who: ops, why: lab host } ]`)
  + rule('net', 'monitor', '{ type: alert }', '{ type: project-network-sharing }')
  + rule('aged', 'monitor', '{ type: alert }', '{ type: not-scanned, maxAgeDays: 30 }')
  + rule('secret', 'monitor', '{ type: alert }', '{ type: secrets }'),
);

const state = (version = 1, scans: PolicyState['scans'] = new Map()): PolicyState =>
  ({ policy: POLICY, scans, version, source: 'bundle', sha256: `s${version}`, projectLabel: 'bulkhead.project' });

let n = 0;
function facts(ruleId: string, over: Partial<Facts> = {}): Facts {
  n++;
  return {
    id: `${ruleId}-${n}`.padEnd(64, '0'), name: `ctr-${ruleId}-${n}`, imageRef: 'img:1', imageId: 'sha256:i', imageDigest: 'sha256:d', labels: { rule: ruleId }, state: 'running',
    user: '1000', privileged: true, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
    securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0, restartPolicy: 'no',
    restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 1, startedAtMs: 1000, finishedAtMs: 0, exitCode: 0, pid: n, devices: [], imageUser: '',
    restartCount: 0, secretHits: [], project: '', ...over,
  };
}

interface Options {
  failKill?: boolean;
  holds?: EnforcementHolds;
  secretsComplete?: () => boolean;
  gate?: SignatureGate;
}

function setup(o: Options = {}) {
  let clock = NOW;
  let policy = state();
  let host: HostFacts__Output | undefined = { hostname: 'h1' } as unknown as HostFacts__Output;
  const inventory = new Map<string, Facts>();
  const ops: string[] = [];
  const reports: ViolationReport[] = [];
  let evaluations = 0;
  const docker: EnforcerDocker = {
    getContainer: (id) => ({
      kill: async () => {
        ops.push(`kill:${id.slice(0, 8)}`);
        if (o.failKill) throw Object.assign(new Error('cannot kill'), { statusCode: 500 });
        inventory.delete(id);
      },
      stop: async () => undefined,
      pause: async () => {
        ops.push(`pause:${id.slice(0, 8)}`);
      },
      update: async () => undefined,
      inspect: async () => {
        const f = inventory.get(id);
        if (!f) throw Object.assign(new Error('gone'), { statusCode: 404 });
        // What a re-inspect gives: the same container as a new object.
        return { Id: f.id, Name: `/${f.name}`, Image: f.imageId, Created: new Date(1).toISOString(), Config: { Image: f.imageRef, Labels: f.labels, User: f.user, Env: [], Cmd: [] },
          State: { Status: f.state, StartedAt: new Date(f.startedAtMs).toISOString(), Pid: f.pid }, HostConfig: { Privileged: f.privileged, NetworkMode: f.networkMode },
          NetworkSettings: { Networks: Object.fromEntries(f.networks.map((x) => [x.name, { NetworkID: x.networkId, IPAddress: x.ipAddress }])) }, Mounts: [] } as never;
      },
    }),
    getNetwork: () => ({ disconnect: async () => undefined }),
    getExec: () => ({ inspect: async () => Promise.reject(new Error('no execs')) }),
  };
  const secrets = o.secretsComplete ? {
    enrichNow: (f: Facts, label: string) => ({ facts: withSecretsAndProject(f, [], label), complete: o.secretsComplete!() }),
    scan: async () => [],
  } : undefined;
  const enforcer = new Enforcer({
    docker, logger, policy: () => policy, now: () => clock,
    containers: { inventory: () => [...inventory.values()], get: (id) => inventory.get(id) },
    onViolation: (r) => reports.push(r),
    onEvaluation: () => evaluations++,
    hostFacts: () => host,
    ...(o.holds ? { holds: o.holds } : {}),
    ...(secrets ? { secrets } : {}),
    ...(o.gate ? { signatures: o.gate } : {}),
  });
  const add = async (f: Facts) => {
    inventory.set(f.id, f);
    enforcer.onUpsert(f, 'start', clock, true);
    await enforcer.idle();
  };
  const sweep = async () => {
    const before = evaluations;
    enforcer.evaluateAll();
    await enforcer.idle();
    return evaluations - before;
  };
  return {
    enforcer, inventory, ops, reports, add, sweep,
    setPolicy: (p: PolicyState) => (policy = p),
    setHost: (h: HostFacts__Output | undefined) => (host = h),
    tick: (ms: number) => (clock += ms),
  };
}

t.test('an unchanged container is judged once, then skipped by every sweep; nothing it would report is lost', async (t) => {
  const s = setup();
  const a = facts('mon');
  const b = facts('forever'); // exempted without an end date: no clock read
  const c = facts('none');    // no rule in scope: no findings
  for (const f of [a, b, c]) await s.add(f);
  t.equal(s.reports.length, 2, 'the monitor finding and the exempted one, reported once each');
  t.equal(await s.sweep(), 0, 'the first sweep evaluates nothing');
  t.equal(await s.sweep(), 0);
  t.equal(s.enforcer.skippedUnchanged, 6);
  t.equal(s.reports.length, 2);
  t.same(s.ops, []);
});

t.test('new facts, policy state, host facts or a removed neighbour make a sweep judge again', async (t) => {
  const s = setup();
  const a = facts('mon');
  await s.add(a);
  t.equal(await s.sweep(), 0);
  // A re-inspect replaces the facts object, even with the same content.
  s.inventory.set(a.id, { ...a });
  t.equal(await s.sweep(), 1, 'new facts object: judged');
  t.equal(await s.sweep(), 0);
  s.setPolicy(state(2));
  t.equal(await s.sweep(), 1, 'new policy state: judged (and reported under the new version)');
  t.equal(s.reports.at(-1)!.policyVersion, 2);
  s.setPolicy(state(2, new Map([['sha256:d', { digest: 'sha256:d', scannedAt: '2026-12-01T00:00:00Z' } as never]])));
  t.equal(await s.sweep(), 1, 'new scans (a new state object): judged');
  s.setHost({ hostname: 'h1', kernel: 'new' } as unknown as HostFacts__Output);
  t.equal(await s.sweep(), 1, 'new host facts: judged');
  t.equal(await s.sweep(), 0);
});

t.test('a failed action is retried by every sweep (and counted toward escalation)', async (t) => {
  const s = setup({ failKill: true });
  const k = facts('kill');
  await s.add(k);
  t.equal(s.ops.length, 1);
  t.equal(await s.sweep(), 1, 'the failure is not settled');
  t.equal(await s.sweep(), 1);
  t.same(s.ops.map((o) => o.split(':')[0]), ['kill', 'kill', 'kill']);
  t.equal(await s.sweep(), 1, 'the cap reached: escalated');
  t.same(s.ops.map((o) => o.split(':')[0]), ['kill', 'kill', 'kill', 'pause']);
  t.equal(s.enforcer.skippedUnchanged, 0);
});

t.test('a dated exemption is checked on every sweep, so its end is enforced on the first sweep after it', async (t) => {
  const s = setup();
  const d = facts('dated');
  await s.add(d);
  t.same(s.ops, [], 'exempted until 12:01');
  t.equal(await s.sweep(), 1, 'the clock was read: judged again');
  s.tick(30_000);
  t.equal(await s.sweep(), 1);
  t.same(s.ops, []);
  s.tick(31_000);
  await s.sweep();
  t.same(s.ops, [`kill:${d.id.slice(0, 8)}`], 'exemption over: killed by the sweep');
});

t.test('a scan age rule reads the clock: judged on every sweep; without a scan it does not', async (t) => {
  const s = setup();
  const g = facts('aged');
  await s.add(g);
  t.equal(await s.sweep(), 0, 'no scan on record: the finding does not depend on time');
  s.setPolicy({ ...state(2, new Map([['sha256:d', { digest: 'sha256:d', scannedAt: '2026-11-10T12:00:00Z', critical: 0, high: 0, medium: 0, low: 0 } as never]])) });
  t.equal(await s.sweep(), 1);
  t.equal(await s.sweep(), 1, 'a scan whose age is judged: never settled');
  const before = s.reports.length;
  s.tick(3.5 * 86_400_000); // the scan is now 30.5 days old
  await s.sweep();
  t.equal(s.reports.length, before + 1, 'the aged scan is reported by a sweep');
  const last = s.reports.at(-1)!;
  t.match(`${last.message ?? ''}${last.evidenceJson ?? ''}`, /days old/);
});

t.test('network rules read neighbours: judged again when another container changes or goes', async (t) => {
  const s = setup();
  const net = [{ name: 'shared', networkId: 'n1', ipAddress: '' }];
  const a = facts('net', { networks: net, networkMode: 'shared', labels: { rule: 'net', 'bulkhead.project': 'a' } });
  await s.add(a);
  t.equal(await s.sweep(), 0, 'no neighbour yet; nothing changed');
  const b = facts('other', { networks: net, networkMode: 'shared', labels: { 'bulkhead.project': 'b' } });
  await s.add(b);
  const before = s.reports.length;
  t.equal(await s.sweep(), 1, 'a neighbour came: the container reading neighbours is judged (the other one was settled)');
  t.equal(s.reports.length, before + 1, 'the sharing is found');
  t.equal(await s.sweep(), 0);
  s.inventory.delete(b.id);
  s.enforcer.onRemove(b.id);
  t.equal(await s.sweep(), 1, 'a neighbour went: judged again');
  s.enforcer.onUpsert(a, 'reconcile', NOW, false);
  await s.enforcer.idle();
  t.equal(await s.sweep(), 0, 'an upsert with nothing changed leaves it settled');
});

t.test('a hold change makes sweeps judge again', async (t) => {
  const holds = EnforcementHolds.inMemory();
  const s = setup({ holds });
  await s.add(facts('mon'));
  t.equal(await s.sweep(), 0);
  holds.add('x'.padEnd(64, '0'), 'x', 'pause', { rules: ['r'], at: new Date(NOW).toISOString(), by: 'policy v1' });
  t.equal(await s.sweep(), 1);
  holds.release('x'.padEnd(64, '0'), 'pause');
  t.equal(await s.sweep(), 1);
  t.equal(await s.sweep(), 0);
});

t.test('a partial secret scan is not settled; a complete one is', async (t) => {
  let complete = false;
  const s = setup({ secretsComplete: () => complete });
  await s.add(facts('secret'));
  t.equal(await s.sweep(), 1, 'env hits unknown: judged again (and the scan asked again)');
  complete = true;
  t.equal(await s.sweep(), 1);
  t.equal(await s.sweep(), 0);
});

t.test('usage breaches are always judged, and the sweep after one judges again once', async (t) => {
  const s = setup();
  const a = facts('mon');
  await s.add(a);
  const evals = await s.sweep();
  t.equal(evals, 0);
  let seen = 0;
  const st = state();
  const e2 = new Enforcer({
    docker: {} as EnforcerDocker, logger, policy: () => st, now: () => NOW,
    containers: { inventory: () => [a], get: () => a }, onViolation: () => undefined, onEvaluation: () => seen++,
  });
  e2.onUpsert(a, 'start', NOW, true);
  await e2.idle();
  e2.onUsage(a, { points: [] } as never);
  await e2.idle();
  e2.onUsage(a, { points: [] } as never);
  await e2.idle();
  t.equal(seen, 3, 'each usage breach is evaluated');
  e2.evaluateAll();
  await e2.idle();
  t.equal(seen, 4, 'the sweep after a usage judgement is not skipped');
  e2.evaluateAll();
  await e2.idle();
  t.equal(seen, 4, 'the next one is');
});

t.test('signature verdicts: the same cached verdicts skip; a new or deferred verdict is judged', async (t) => {
  const cached: SignatureVerdict = { status: 'verified', checkedAt: '2026-12-07T11:00:00Z' } as never;
  let verdicts = new Map<string, SignatureVerdict>([['k', cached]]);
  let resolves = 0;
  const gate = {
    relevant: () => true,
    resolve: async () => {
      resolves++;
      return verdicts;
    },
  } as unknown as SignatureGate;
  const s = setup({ gate });
  await s.add(facts('mon'));
  t.equal(await s.sweep(), 0, 'same verdict objects: not evaluated');
  t.equal(resolves, 2, 'but the gate was asked (verdicts expire)');
  verdicts = new Map<string, SignatureVerdict>([['k', { ...cached, checkedAt: '2026-12-07T12:00:00Z' } as never]]);
  t.equal(await s.sweep(), 1, 're-verified: judged');
  t.equal(await s.sweep(), 0);
  verdicts = new Map();
  t.equal(await s.sweep(), 1, 'no verdict needed any more: judged');
  const asked = resolves;
  t.equal(await s.sweep(), 0);
  t.equal(resolves, asked, 'none needed and no dated exemption on a signature rule: not even queued');
});
