// The enforcer's decisions with a scripted engine: which action, how often,
// and — above all — no loops: stale facts of a run already acted on, the cap
// with one escalation to pause, once-only reports, coalesced events.
import t from 'tap';
import { createLogger, parsePolicy, type ViolationReport } from '@bulkhead/shared';
import { Enforcer, mergeLimitUpdates } from '../../src/enforce/enforcer';
import { limitPlan, quarantinePlan } from '../../src/enforce/actions';
import type { ActionTiming, EnforcerDocker } from '../../src/enforce/enforcer-options';
import type { PolicyState } from '../../src/policy/policy-holder';
import type Dockerode from 'dockerode';
import type { Facts } from '../../src/docker/container-facts';
import type { SecretHit } from '../../src/secrets/secret-scan';
import { withSecretsAndProject } from '../../src/secrets/secret-scan';
import { EnforcementHolds } from '../../src/enforce/holds';

const logger = createLogger({ name: 'enforcer-test', level: 'silent' });

const rule = (id: string, action: string, check: string, extra = '') => `
    - id: ${id}
      description: ${id}
      severity: high
      mode: ${id.startsWith('mon.') ? 'monitor' : 'enforce'}
      action: ${action}
      scope: { containerLabels: { rule: ${id} } }
      check: ${check}${extra}`;

const POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:${rule('kill', '{ type: kill }', '{ type: privileged }')}${rule('stop', '{ type: stop, stopTimeoutSeconds: 3 }', '{ type: privileged }')}${rule('pause', '{ type: pause }', '{ type: privileged }')}${rule('quarantine', '{ type: quarantine }', '{ type: privileged }')}${rule('limit', '{ type: limit, limits: { memory: 128m, cpus: 0.5, pids: 64 } }', '{ type: resource-limits, maxMemory: 256m, requireCpu: false, requirePids: false }')}${rule('alert', '{ type: alert }', '{ type: privileged }')}${rule('mon.priv', '{ type: kill }', '{ type: privileged }')}${rule('secret', '{ type: stop }', '{ type: secrets }')}
`, 'unit.yaml');

const st = (version = 1): PolicyState => ({ policy: POLICY, scans: new Map(), version, source: 'bundle', sha256: `s${version}`, projectLabel: 'bulkhead.project' });

let n = 0;
function facts(ruleId: string, over: Partial<Facts> = {}): Facts {
  n++;
  return {
    id: `c${ruleId}`.padEnd(64, '0'), name: `ctr-${ruleId}`, imageRef: 'img:1', imageId: 'sha256:i', imageDigest: '', labels: { rule: ruleId }, state: 'running',
    user: '1000', privileged: true, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
    securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0, restartPolicy: 'no',
    restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 1, startedAtMs: 1000, finishedAtMs: 0, exitCode: 0, pid: n, devices: [], imageUser: '',
    restartCount: 0, secretHits: [], project: '', ...over,
  };
}

interface Call { op: string; id: string; opts?: unknown }

/** The inspect a real engine would return for these facts (what toContainerFacts reads). */
function toInspect(f: Facts): Dockerode.ContainerInspectInfo {
  return {
    Id: f.id, Name: `/${f.name}`, Image: f.imageId, Created: new Date(f.createdAtMs).toISOString(),
    Config: { Image: f.imageRef, Labels: f.labels, User: f.user, Env: [], Cmd: f.command },
    State: { Status: f.state, StartedAt: new Date(f.startedAtMs).toISOString(), Pid: f.pid },
    HostConfig: {
      Privileged: f.privileged, NetworkMode: f.networkMode, Memory: f.memoryLimitBytes, NanoCpus: f.nanoCpus, CpuQuota: f.cpuQuota,
      CpuPeriod: f.cpuPeriod, PidsLimit: f.pidsLimit, RestartPolicy: { Name: f.restartPolicy, MaximumRetryCount: 0 },
    },
    NetworkSettings: { Networks: Object.fromEntries(f.networks.map((n) => [n.name, { NetworkID: n.networkId, IPAddress: n.ipAddress }])) },
    Mounts: [],
  } as unknown as Dockerode.ContainerInspectInfo;
}

function setup(opts: { failKill?: boolean; holdKill?: boolean; maxActions?: number; secrets?: boolean; holds?: EnforcementHolds; memory?: Array<{ containerId: string; networks: unknown[] }> } = {}) {
  const calls: Call[] = [];
  const reports: Array<{ r: ViolationReport; timing?: ActionTiming }> = [];
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  let policy = st();
  // What the fake engine holds; actions change it the way dockerd would.
  const inventory = new Map<string, Facts>();
  const change = (id: string, over: Partial<Facts>) => {
    const f = inventory.get(id);
    if (f) inventory.set(id, { ...f, ...over });
  };
  const docker: EnforcerDocker = {
    getContainer: (id) => ({
      kill: async () => {
        calls.push({ op: 'kill', id });
        if (opts.holdKill) await held;
        if (opts.failKill) throw Object.assign(new Error('(HTTP code 500) server error - cannot kill'), { statusCode: 500, json: { message: 'cannot kill: boom' } });
        change(id, { state: 'exited' });
      },
      stop: async (o) => {
        calls.push({ op: 'stop', id, opts: o });
        change(id, { state: 'exited' });
      },
      pause: async () => {
        calls.push({ op: 'pause', id });
        change(id, { state: 'paused' });
      },
      update: async (o) => {
        calls.push({ op: 'update', id, opts: o });
        const u = o as { Memory?: number; PidsLimit?: number; NanoCpus?: number };
        const f = inventory.get(id)!;
        change(id, { memoryLimitBytes: u.Memory ?? f.memoryLimitBytes, pidsLimit: u.PidsLimit ?? f.pidsLimit, nanoCpus: u.NanoCpus ?? f.nanoCpus });
      },
      inspect: async () => {
        calls.push({ op: 'inspect', id });
        const f = inventory.get(id);
        if (!f) throw Object.assign(new Error('no such container'), { statusCode: 404 });
        return toInspect(f);
      },
    }),
    getNetwork: (nid) => ({
      disconnect: async (o) => {
        const id = (o as { Container: string }).Container;
        calls.push({ op: `disconnect:${nid}`, id, opts: o });
        const f = inventory.get(id)!;
        change(id, { networks: f.networks.filter((n) => n.networkId !== nid && n.name !== nid) });
      },
    }),
    getExec: () => ({ inspect: async () => Promise.reject(new Error('no execs here')) }),
  };
  const scanned = new Map<string, SecretHit[]>();
  const secrets = opts.secrets ? {
    enrichNow: (f: Facts, label: string) => {
      const hits = scanned.get(f.id);
      return { facts: withSecretsAndProject(f, hits ?? [], label), complete: hits !== undefined };
    },
    scan: async (f: Facts) => {
      const hits = [{ location: 'env:DB_URL', detector: 'database-url-credentials' }];
      scanned.set(f.id, hits);
      return hits;
    },
  } : undefined;
  const enforcer = new Enforcer({
    docker, logger, policy: () => policy,
    containers: { inventory: () => [...inventory.values()], get: (id) => inventory.get(id) },
    onViolation: (r, timing) => reports.push({ r, ...(timing ? { timing } : {}) }),
    ...(opts.maxActions ? { maxActions: opts.maxActions } : {}),
    ...(secrets ? { secrets } : {}),
    ...(opts.holds ? { holds: opts.holds } : {}),
    ...(opts.memory ? { quarantineMemory: { remember: (r: { containerId: string; networks: unknown[] }) => (opts.memory!.push(r), r as never) } } : {}),
  });
  const engineCalls = () => calls.filter((c) => c.op !== 'inspect');
  const ops = () => engineCalls().map((c) => c.op);
  /** A watcher upsert; `engine: false` = stale facts the engine no longer holds. */
  const upsert = async (f: Facts, action = 'start', timeMs = Date.now(), engine = true) => {
    if (engine) inventory.set(f.id, f);
    enforcer.onUpsert(f, action, timeMs, true);
    await enforcer.idle();
  };
  return { enforcer, calls, ops, engineCalls, reports, upsert, release, inventory, setPolicy: (p: PolicyState) => (policy = p) };
}

t.test('each action type does its engine call once', async (t) => {
  const { ops, engineCalls, reports, upsert } = setup();
  await upsert(facts('kill'));
  await upsert(facts('stop'));
  await upsert(facts('pause'));
  await upsert(facts('quarantine', { networkMode: 'netA', networks: [{ name: 'netA', networkId: 'idA', ipAddress: '' }, { name: 'netB', networkId: '', ipAddress: '' }] }));
  await upsert(facts('limit', { privileged: false, memoryLimitBytes: 1024 ** 3 }));
  await upsert(facts('alert'));
  t.same(ops(), ['kill', 'stop', 'pause', 'disconnect:idA', 'disconnect:netB', 'update']);
  t.same(engineCalls()[1]!.opts, { t: 3 });
  t.same(engineCalls()[3]!.opts, { Container: facts('quarantine').id, Force: true });
  t.same(engineCalls()[5]!.opts, { Memory: 128 * 1024 ** 2, MemorySwap: 128 * 1024 ** 2, NanoCpus: 5e8, PidsLimit: 64 });
  const byRule = new Map(reports.map(({ r }) => [r.ruleId, r]));
  t.same(byRule.get('kill')!.action, { type: 'kill', result: 'ok', error: '', durationMs: byRule.get('kill')!.action!.durationMs, detail: byRule.get('kill')!.action!.detail });
  t.equal(byRule.get('kill')!.source, 'reaction');
  t.equal(byRule.get('alert')!.action!.type, 'alert');
  t.equal(byRule.get('alert')!.action!.result, 'ok');
  t.match(byRule.get('quarantine')!.action!.detail, /disconnected from 2\/2 network\(s\): netA, netB/);
  const timed = reports.find(({ r }) => r.ruleId === 'kill')!.timing!;
  t.ok(timed.startDelayMs >= 0 && timed.startDelayMs < 50, `the engine call is issued at once (${timed.startDelayMs.toFixed(3)} ms)`);
});

t.test('no loops: stale facts of a run already killed are ignored; a restart is a new run', async (t) => {
  const { ops, upsert } = setup();
  const f = facts('kill');
  await upsert(f);
  await upsert(f, 'kill', Date.now(), false); // the watcher inspected before the kill landed
  await upsert(f, 'reconcile', Date.now() - 5000, false);
  t.equal(ops().length, 1);
  await upsert({ ...f, state: 'exited' }, 'die');
  await upsert({ ...f, startedAtMs: 2000 }, 'start');
  t.equal(ops().length, 2, 'the restarted run is acted on');
});

t.test('cap: after maxActions, one escalation to pause, then hands off', async (t) => {
  const { ops, reports, upsert } = setup({ maxActions: 3 });
  for (let run = 1; run <= 6; run++) await upsert(facts('kill', { startedAtMs: run * 1000 }));
  t.same(ops(), ['kill', 'kill', 'kill', 'pause']);
  const esc = reports.filter(({ r }) => r.action?.result === 'escalated');
  t.equal(esc.length, 1);
  t.equal(esc[0]!.r.action!.type, 'pause');
  t.match(esc[0]!.r.action!.detail, /3 actions within 600s: escalated to pause/);
  const skipped = reports.filter(({ r }) => r.action?.result === 'skipped');
  t.equal(skipped.length, 1, 'later runs reported once, not acted on');
});

t.test('pause: an operator unpause is a new decision; a paused or exited container is left alone', async (t) => {
  const { ops, upsert } = setup();
  const f = facts('pause');
  await upsert(f);
  await upsert({ ...f, state: 'paused' }, 'pause');
  await upsert(f, 'reconcile', Date.now() - 10_000, false);
  t.equal(ops().length, 1);
  await upsert(f, 'unpause', Date.now() + 10); // an operator unpaused it
  t.equal(ops().length, 2);
  await upsert({ ...facts('kill'), state: 'exited' }, 'die');
  await upsert({ ...facts('kill'), state: 'restarting' }, 'die');
  t.equal(ops().length, 2);
});

t.test('monitor and alert findings are reported once per container, rule and policy version', async (t) => {
  const { ops, reports, upsert, enforcer, setPolicy } = setup();
  const f = facts('mon.priv');
  await upsert(f);
  await upsert(f, 'update');
  enforcer.evaluateAll();
  await enforcer.idle();
  t.equal(ops().length, 0);
  t.equal(reports.length, 1);
  t.same(reports[0]!.r.action, { type: 'none', result: 'skipped', detail: 'monitor mode (in enforce mode: kill)', error: '', durationMs: 0 });
  setPolicy(st(2));
  enforcer.evaluateAll();
  await enforcer.idle();
  t.equal(reports.length, 2, 'reported again under a new policy version');
  t.equal(reports[1]!.r.source, 'reconcile');
  t.equal(reports[1]!.r.policyVersion, 2);
  enforcer.onRemove(f.id);
  t.equal(enforcer.history(f.id), undefined);
});

t.test('quarantine and limit act only while something is left to change', async (t) => {
  const { ops, engineCalls, reports, upsert } = setup();
  const q = facts('quarantine', { networkMode: 'none', networks: [{ name: 'none', networkId: 'x', ipAddress: '' }] });
  await upsert(q);
  await upsert(q, 'update');
  t.equal(ops().length, 0, 'network none: nothing to disconnect');
  t.equal(reports.length, 1);
  t.match(reports[0]!.r.action!.detail, /no networks left/);
  const l = facts('limit', { privileged: false, memoryLimitBytes: 1024 ** 3, nanoCpus: 4e8, pidsLimit: 10 });
  await upsert(l);
  t.same(engineCalls().at(-1)!.opts, { Memory: 128 * 1024 ** 2, MemorySwap: 128 * 1024 ** 2 }, 'only the quota that is too loose');
  const host = facts('quarantine', { id: 'h'.padEnd(64, '0'), networkMode: 'host', networks: [{ name: 'host', networkId: 'h', ipAddress: '' }] });
  await upsert(host);
  t.equal(engineCalls().at(-1)!.op, 'pause', 'cannot be isolated: paused instead');
  t.equal(reports.at(-1)!.r.action!.result, 'escalated');
});

t.test('holds: what a plain API call could undo is remembered (pause, escalation, quarantine with its networks, limit); kill/stop are not', async (t) => {
  const holds = EnforcementHolds.inMemory();
  const memory: Array<{ containerId: string; networks: unknown[] }> = [];
  const { upsert } = setup({ holds, memory, maxActions: 3 });
  const p = facts('pause');
  await upsert(p);
  t.same(holds.get(p.id, 'pause') && [holds.get(p.id, 'pause')!.rules, holds.get(p.id, 'pause')!.escalated, holds.get(p.id, 'pause')!.by], [['pause'], undefined, 'policy v1']);
  const q = facts('quarantine', { networkMode: 'netA', networks: [{ name: 'netA', networkId: 'idA', ipAddress: '' }] });
  await upsert(q);
  t.same(holds.get(q.id, 'quarantine')?.rules, ['quarantine']);
  t.same(memory.map((m) => [m.containerId, m.networks]), [[q.id, [{ name: 'netA', networkId: 'idA', aliases: [], ipamConfig: null }]]], 'the networks are remembered for `bulkhead action … release`');
  const none = facts('quarantine', { id: 'n'.padEnd(64, '0'), networkMode: 'none', networks: [] });
  await upsert(none);
  t.same(holds.get(none.id, 'quarantine')?.rules, ['quarantine'], 'already off every network: held all the same');
  const l = facts('limit', { privileged: false, memoryLimitBytes: 1024 ** 3 });
  await upsert(l);
  t.same(holds.get(l.id, 'limit')?.rules, ['limit']);
  const k = facts('kill');
  for (let run = 1; run <= 4; run++) await upsert({ ...k, startedAtMs: run * 1000 });
  t.same(holds.get(k.id, 'pause') && [holds.get(k.id, 'pause')!.rules, holds.get(k.id, 'pause')!.escalated], [['kill'], true], 'the escalation pause is held, marked escalated');
  t.equal(holds.size, 5, 'a kill or stop alone holds nothing (the start is judged on the container)');
});

t.test('limit plan and quarantine plan', async (t) => {
  const f = facts('x', { cpuQuota: 200_000, cpuPeriod: 100_000 });
  t.same(limitPlan(f, { cpus: 0.5 }), { CpuPeriod: 100_000, CpuQuota: 50_000 }, 'quota-limited containers get a quota, not NanoCpus');
  t.equal(limitPlan(facts('x', { memoryLimitBytes: 1 }), { memory: '1g' }), undefined);
  t.equal(limitPlan(f, undefined), undefined);
  t.same(quarantinePlan(facts('x', { networkMode: 'container:abc' })).kind, 'impossible');
  t.same(mergeLimitUpdates([{ Memory: 5, PidsLimit: 9 }, undefined, { Memory: 3 }]), { Memory: 3, PidsLimit: 9 });
  t.equal(mergeLimitUpdates([undefined]), undefined);
});

t.test('events during an action coalesce into one re-evaluation of the newest facts', async (t) => {
  const { ops, upsert, enforcer, release } = setup({ holdKill: true });
  const f = facts('kill');
  const first = upsert(f);
  enforcer.onUpsert({ ...f, state: 'running' }, 'kill', Date.now(), false);
  enforcer.onUpsert({ ...f, state: 'exited' }, 'die', Date.now(), true);
  enforcer.onUpsert({ ...f, state: 'exited' }, 'stop', Date.now(), true);
  release();
  await first;
  t.same(ops(), ['kill']);
});

t.test('a failed action is recorded with the engine error', async (t) => {
  const { reports, upsert } = setup({ failKill: true });
  await upsert(facts('kill'));
  t.equal(reports[0]!.r.action!.result, 'failed');
  t.equal(reports[0]!.r.action!.error, 'cannot kill: boom');
});

t.test('env secrets: evaluated at once on what is known, again after the scan', async (t) => {
  const { ops, reports, upsert, enforcer } = setup({ secrets: true });
  await upsert(facts('secret', { privileged: false }));
  await enforcer.idle();
  await new Promise((r) => setImmediate(r));
  await enforcer.idle();
  t.same(ops(), ['stop']);
  t.match(reports[0]!.r.evidenceJson, /env:DB_URL/);
});

t.test('options are validated', async (t) => {
  const base = { docker: {} as EnforcerDocker, logger, policy: st, containers: { inventory: () => [], get: () => undefined }, onViolation: () => undefined };
  t.throws(() => new Enforcer({ ...base, maxActions: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => new Enforcer({ ...base, actionWindowMs: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => new Enforcer({ ...base, actionConcurrency: 1.5 }), { code: 'BK_ERR_CONFIG_INVALID' });
});
