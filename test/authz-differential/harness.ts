// One engine's side of the differential test: a private dockerd of a given
// version started with the RECORDER as its authorization plugin (it allows
// everything, so dockerd acts on every raw request), the real Bulkhead plugin
// (AuthzPlugin + AuthzDecider, on its own unix socket, with a real dockerode
// client and container watcher on the same engine) that each recorded
// envelope is forwarded to, the fixtures the routes act on, and runVariant():
// send one variant's raw bytes, collect dockerd's envelopes and Bulkhead's
// verdicts, inspect what dockerd stored, judge it, clean up.
//
// Nothing here re-implements dockerd's plugin envelope: the plugin under test
// gets, byte for byte, what dockerd sent the recorder.
import { request } from 'node:http';
import { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider } from '../../packages/agent/src/authz/authz-decider';
import { AuthzPlugin } from '../../packages/agent/src/authz/plugin-server';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import { toContainerFacts, type Facts } from '../../packages/agent/src/docker/container-facts';
import { ContainerWatcher } from '../../packages/agent/src/docker/watcher';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { startPrivateEngine, TEST_IMAGE, TEST_IMAGE_USER1000, type EngineVersion, type PrivateEngine } from '../helpers/engine';
import { build, buildExecStart, START_DANGERS, type BuildCtx, type Danger, type Variant } from './corpus';
import { judgeContainer, judgeExec, judgeVolume, type ExecInspect, type Judgement, type OracleCtx, type VolumeInspect } from './oracle';
import { demux, jsonOf, renderRequest, sendRaw, type RawRequestSpec, type RawResponse } from './raw-http';
import { RecorderPlugin, type Envelope, type Verdict } from './recorder-plugin';

export const PROJECT_LABEL = 'bulkhead.project';
export const ROUTE_LABEL = 'bkd.route';
const MiB = 1024 * 1024;

/** The enforce policy: host safety (kill), plus a memory rule and a network rule scoped to the update and connect routes' containers. */
export function policyYaml(engineSocket: string): string {
  const rule = (id: string, check: string, extra = ''): string =>
    `    - { id: ${id}, description: ${id}, severity: critical, mode: enforce, action: { type: kill }, ${extra}check: ${check} }`;
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: differential }
spec:
  projectLabel: ${PROJECT_LABEL}
  rules:
${[
  rule('host.privileged', '{ type: privileged }'),
  rule('host.sensitive-mounts', '{ type: sensitive-mounts }'),
  rule('host.docker-socket', `{ type: docker-socket, socketPaths: [/var/run/docker.sock, /run/docker.sock, /run/containerd/containerd.sock, ${engineSocket}] }`),
  rule('host.root-user', '{ type: root-user }'),
  rule('host.capabilities', '{ type: capabilities }'),
  rule('host.namespaces', '{ type: host-namespaces }'),
  // A glob allowlist (tun devices): where an unclean device path could slip through.
  rule('host.devices', "{ type: devices, allowed: ['/dev/net/*'] }"),
  rule('host.seccomp', '{ type: seccomp-apparmor }'),
  rule('quota.memory', '{ type: resource-limits, maxMemory: 256m, requireMemory: false, requireCpu: false, requirePids: false }', `scope: { containerLabels: { ${ROUTE_LABEL}: update } }, `),
  rule('net.project-sharing', '{ type: project-network-sharing }', `scope: { containerLabels: { ${ROUTE_LABEL}: connect } }, `),
].join('\n')}
`;
}

export interface Gate {
  /** Which request of the variant: "request" (the one that stores), "start" (exec start, or the start the harness sends). */
  step: string;
  method: string;
  uri: string;
  /** dockerd passed a body on to the plugin. */
  bodySent: boolean;
  /** Bulkhead's verdict; undefined if forwarding failed. */
  verdict: Verdict | undefined;
  envelope: Envelope;
}

export interface Outcome {
  variant: Variant;
  engine: EngineVersion;
  request: Buffer;
  notes: string[];
  status: number;
  response: string;
  /** dockerd stored (or, for start, acted on) something. */
  acted: boolean;
  judgement: Judgement;
  gates: Gate[];
  /** The uid the process ran as, when the harness ran it. */
  uid?: number;
  /** Stored forbidden and the plugin allowed the request that stored it. */
  fail: boolean;
  /** For a failure: what the later judged step (start) answered, when there is one. */
  backstop?: string;
  /** The plugin refused a request whose stored result is compliant (a control or a harmless spelling). */
  overDenied: boolean;
  /** Time the variant took, setup and clean-up included. */
  ms: number;
}

export interface Harness {
  version: EngineVersion;
  engine: PrivateEngine;
  docker: Dockerode;
  api: string;
  run(v: Variant): Promise<Outcome>;
  /** Plugin statistics (fail-open count …). */
  pluginStats(): AuthzPlugin['stats'];
  stop(): Promise<void>;
}

function post(socketPath: string, path: string, body: Buffer): Promise<Verdict> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const j = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Allow?: boolean; Msg?: string };
          resolve({ allow: j.Allow === true, msg: j.Msg ?? '' });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const uniq = (): string => `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`;

export async function startHarness(version: EngineVersion, t: tap.Test): Promise<Harness> {
  const logger = createLogger({ name: `authz-differential-${version}`, level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
  const id = uniq();
  const pluginDir = mkdtempSync('/tmp/bkd-');
  let state: PolicyState = { policy: undefined, scans: new Map(), version: 1, source: 'bundle', sha256: 'differential', projectLabel: PROJECT_LABEL };
  let docker: Dockerode | undefined;
  let watcher: ContainerWatcher | undefined;
  const decider = new AuthzDecider({
    policy: () => state,
    containers: { get: (cid) => watcher?.get(cid), inventory: () => watcher?.inventory() ?? [] },
    docker: {
      getImage: (ref) => docker!.getImage(ref),
      getContainer: (cid) => docker!.getContainer(cid),
      getVolume: (name) => docker!.getVolume(name),
      getNetwork: (nid) => docker!.getNetwork(nid),
      getExec: (eid: string) => docker!.getExec(eid),
    },
    logger,
  });
  const plugin = await AuthzPlugin.start({ socketPath: `${pluginDir}/bulkhead.sock`, evaluate: (req) => decider.decide(req), logger });
  const recorderName = `bkd-rec-${id}`;
  const recorder = await RecorderPlugin.start(recorderName, (raw) => post(plugin.socketPath, '/AuthZPlugin.AuthZReq', raw));
  let engine: PrivateEngine | undefined;
  const stop = async (): Promise<void> => {
    await watcher?.stop();
    // The fixtures (engine.sh stop would remove them too, with the engine's whole state).
    if (docker) {
      const d = docker;
      const mine = { label: [`bkd.harness=${id}`] };
      for (const c of await d.listContainers({ all: true, filters: mine }).catch(() => [])) await d.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
      for (const n of await d.listNetworks({ filters: mine }).catch(() => [])) await d.getNetwork(n.Id).remove().catch(() => undefined);
      for (const v of (await d.listVolumes({ filters: mine }).catch(() => ({ Volumes: [] }))).Volumes ?? []) await d.getVolume(v.Name).remove().catch(() => undefined);
    }
    await engine?.stop();
    await recorder.stop();
    await plugin.stop();
    rmSync(pluginDir, { recursive: true, force: true });
  };
  // The recorder must answer for as long as the engine lives (stopping it goes through it).
  t.teardown(stop);
  engine = await startPrivateEngine({ version, dockerdArgs: [`--authorization-plugin=${recorderName}`], t });
  const d = createDockerClient({ dockerHost: engine.dockerHost });
  docker = d;
  watcher = await ContainerWatcher.start({ docker: d, logger, reconcileIntervalMs: 0 });
  state = { ...state, policy: parsePolicy(policyYaml(engine.socketPath), 'differential.yaml') };
  const api = '1.41';
  const sock = engine.socketPath;
  const dockerdCwd = readlinkSync(`/proc/${engine.dockerdPid}/cwd`);

  // ---- fixtures
  const baseLabels = { 'bulkhead.test': '1', 'bkd.harness': id };
  const safeDir = mkdtempSync('/tmp/bkd-safe-');
  t.teardown(() => rmSync(safeDir, { recursive: true, force: true }));
  const images = {
    user: await d.getImage(TEST_IMAGE_USER1000).inspect(),
    root: await d.getImage(TEST_IMAGE).inspect(),
  };
  const create = async (name: string, opts: Partial<Dockerode.ContainerCreateOptions> & { HostConfig?: Dockerode.HostConfig }): Promise<{ id: string; name: string }> => {
    const c = await d.createContainer({
      name, Image: TEST_IMAGE_USER1000, Cmd: ['id', '-u'], ...opts,
      Labels: { ...baseLabels, ...(opts.Labels ?? {}) },
      HostConfig: { NetworkMode: 'none', ...(opts.HostConfig ?? {}) },
    });
    return { id: c.id, name };
  };
  const execTarget = await create(`bkd-exec-${id}`, { Cmd: ['sleep', '3600'] });
  await d.getContainer(execTarget.id).start();
  const net = async (name: string): Promise<{ id: string; name: string }> => {
    const n = await d.createNetwork({ Name: name, Internal: true, Labels: baseLabels });
    return { id: n.id, name };
  };
  const netA = await net(`bkd-a-${id}`);
  const netOther = await net(`bkd-other-${id}`);
  const netMine = await net(`bkd-mine-${id}`);
  // The neighbour of another project on netOther: connecting a project-"a" container there breaks the network rule.
  const nbOther = await create(`bkd-nb-${id}`, { Cmd: ['sleep', '3600'], Labels: { [PROJECT_LABEL]: 'other' }, HostConfig: { NetworkMode: netOther.name } });
  await d.getContainer(nbOther.id).start();
  // Dangerous containers for the start route, created once (the recorder allows their creation).
  const startHost: Record<string, Dockerode.HostConfig> = {
    privileged: { Privileged: true },
    'bind-root': { Binds: ['/:/host:ro'] },
    'socket-bind': { Binds: [`${sock}:/var/run/docker.sock`] },
    'cap-sys-admin': { CapAdd: ['SYS_ADMIN'] },
    'pid-host': { PidMode: 'host' },
    device: { Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/bkd', CgroupPermissions: 'rwm' }] },
  };
  const startTargets = new Map<Danger, { id: string; name: string }>();
  for (const danger of START_DANGERS) {
    startTargets.set(danger, await create(`bkd-start-${danger}-${id}`, { Cmd: ['true'], HostConfig: { NetworkMode: 'none', ...startHost[danger] } }));
  }
  const template: Facts = toContainerFacts(await d.getContainer(execTarget.id).inspect(), images.user);
  const nbFacts = toContainerFacts(await d.getContainer(nbOther.id).inspect(), images.user);
  // The watcher must know the neighbour before a connect is judged (the decider reads neighbours from it).
  for (let i = 0; i < 50 && !watcher.get(nbOther.id); i++) await new Promise((r) => setTimeout(r, 100));
  const oracle: OracleCtx = { state, dockerdCwd, inventory: () => [nbFacts] };

  const inspectImage = async (ref: string): Promise<Dockerode.ImageInspectInfo | undefined> => d.getImage(ref).inspect().catch(() => undefined);
  const inspectContainer = async (ref: string): Promise<Dockerode.ContainerInspectInfo | undefined> => d.getContainer(ref).inspect().catch(() => undefined);
  const send = (spec: RawRequestSpec): { bytes: Buffer; res: Promise<RawResponse> } => {
    const bytes = renderRequest(spec);
    return { bytes, res: sendRaw(sock, bytes) };
  };
  const gatesOf = (envs: Envelope[], step: string): Gate[] =>
    envs.map((e) => ({ step, method: e.method, uri: e.uri, bodySent: e.body !== undefined, verdict: e.verdict, envelope: e }));
  const plainTarget = (path: string): string => `/v${api}${path}`;

  /** Starts a stored container through the recorder (tag `${tag}-start`), waits for it, and reads the uid it printed. */
  const startAndReadUid = async (tag: string, cid: string): Promise<{ gates: Gate[]; uid?: number }> => {
    const r = await send({ method: 'POST', target: plainTarget(`/containers/${cid}/start`), headers: [['X-Bk-Diff', `${tag}-start`]] }).res;
    const gates = gatesOf(recorder.take(`${tag}-start`), 'start');
    if (r.status !== 204) return { gates };
    const c = d.getContainer(cid);
    await Promise.race([c.wait({ condition: 'not-running' }), new Promise((res) => setTimeout(res, 10_000))]);
    const logs = (await c.logs({ stdout: true, stderr: true })) as unknown as Buffer;
    const out = demux(Buffer.isBuffer(logs) ? logs : Buffer.from(String(logs))).stdout.trim();
    return { gates, ...(/^\d+$/.test(out) ? { uid: Number(out) } : {}) };
  };

  const run = async (v: Variant): Promise<Outcome> => {
    const t0 = performance.now();
    const tag = `v${v.index}-${id}`;
    const ctx: BuildCtx = {
      engine: version, api, engineSocket: sock, image: TEST_IMAGE_USER1000, rootImage: TEST_IMAGE, missingImage: `bkd-missing/none:${id}`, tag,
      name: `bkd-${tag}`, labels: { ...baseLabels, 'bkd.variant': String(v.index) }, safeDir,
    };
    const cleanup: (() => Promise<unknown>)[] = [];
    let judgement: Judgement = { findings: [], gaps: [] };
    let acted = false;
    let uid: number | undefined;
    const later: Gate[] = [];
    // Per route: the object the request acts on.
    if (v.route === 'exec') ctx.container = execTarget;
    if (v.route === 'start') ctx.container = startTargets.get(v.danger)!;
    // A fresh container for the routes that change it: the watcher the plugin reads
    // must never see a state the previous variant left behind (in production a refused
    // request changes nothing; here the recorder let it through).
    if (v.route === 'legacy-start' || v.route === 'connect' || v.route === 'update') {
      const c = v.route === 'connect'
        ? await create(`bkd-c-${tag}`, { Labels: { [ROUTE_LABEL]: 'connect', [PROJECT_LABEL]: 'a' }, HostConfig: { NetworkMode: netA.name } })
        : v.route === 'update'
          ? await create(`bkd-u-${tag}`, { Labels: { [ROUTE_LABEL]: 'update' }, HostConfig: { NetworkMode: 'none', Memory: 64 * MiB, MemorySwap: -1 } })
          : await create(`bkd-l-${tag}`, {});
      ctx.container = c;
      cleanup.push(() => d.getContainer(c.id).remove({ force: true, v: true }));
      if (v.route === 'connect') ctx.network = v.danger === 'shared-network' ? netOther : netMine;
    }
    const built = build(v, ctx);
    const sent = send(built.spec);
    const res = await sent.res;
    if (process.env['BK_DIFF_DEBUG']) console.error(`#${v.index} request answered after ${Math.round(performance.now() - t0)} ms: ${res.status} timedOut=${res.timedOut}`);
    const gates = gatesOf(recorder.take(tag), 'request');
    const body = jsonOf(res) as Record<string, unknown> | undefined;
    try {
      switch (v.route) {
        case 'create': {
          const cid = typeof body?.['Id'] === 'string' ? body['Id'] : (await inspectContainer(ctx.name))?.Id;
          if (!cid) break;
          acted = true;
          cleanup.push(() => d.getContainer(cid).remove({ force: true, v: true }));
          const info = (await inspectContainer(cid))!;
          const image = await inspectImage(info.Image);
          judgement = judgeContainer(oracle, info, image);
          // Run it when the uid it runs as matters (a user other than the image's, or the image decides)
          // or when it is a failure (to learn whether the start, the later judged step, would stop it).
          const firstAllowed = gates[0]?.verdict?.allow !== false;
          if (info.Config.User !== (image?.Config?.User ?? '') || v.danger === 'root-user' || (judgement.findings.length > 0 && firstAllowed)) {
            const s = await startAndReadUid(tag, cid);
            later.push(...s.gates);
            uid = s.uid;
            if (uid !== undefined) judgement = judgeContainer(oracle, info, await inspectImage(info.Image), uid);
          }
          break;
        }
        case 'exec': {
          const eid = typeof body?.['Id'] === 'string' ? body['Id'] : undefined;
          if (!eid) break;
          acted = true;
          const ex = (await d.getExec(eid).inspect()) as unknown as ExecInspect;
          // Start it (same target form), through the recorder: the later judged step, and the uid it runs as.
          let st = await send({ ...buildExecStart(v, { ...ctx, tag: `${tag}-start` }, eid) }).res;
          later.push(...gatesOf(recorder.take(`${tag}-start`), 'start'));
          if (st.status !== 200) {
            st = await send({ method: 'POST', target: plainTarget(`/exec/${eid}/start`), headers: [['X-Bk-Diff', `${tag}-start2`]], body: Buffer.from('{"Detach":false,"Tty":false}'), contentType: 'application/json' }).res;
            later.push(...gatesOf(recorder.take(`${tag}-start2`), 'start (plain target)'));
          }
          const out = demux(st.body).stdout.trim();
          if (st.status === 200 && /^\d+$/.test(out)) uid = Number(out);
          const info = (await inspectContainer(execTarget.id))!;
          judgement = judgeExec(oracle, info, images.user, ex, uid);
          break;
        }
        case 'update': {
          const info = (await inspectContainer(ctx.container!.id))!;
          acted = res.status === 200;
          judgement = judgeContainer(oracle, info, images.user);
          break;
        }
        case 'volume': {
          const name = typeof body?.['Name'] === 'string' ? body['Name'] : ctx.name;
          const vol = (await d.getVolume(name).inspect().catch(() => undefined)) as VolumeInspect | undefined;
          if (!vol) break;
          acted = true;
          cleanup.push(() => d.getVolume(name).remove({ force: true }));
          judgement = judgeVolume(oracle, vol, template);
          break;
        }
        case 'connect': {
          const info = (await inspectContainer(ctx.container!.id))!;
          acted = Object.keys(info.NetworkSettings.Networks ?? {}).length > 1;
          judgement = judgeContainer(oracle, info, images.user);
          break;
        }
        case 'start': {
          // dockerd acted if it started the container, or tried to and the runtime refused.
          acted = res.status === 204 || (res.status === 500 && /OCI runtime|runc|caps|shim|device|mount/i.test(res.body.toString('utf8')));
          const info = (await inspectContainer(ctx.container!.id))!;
          judgement = judgeContainer(oracle, info, images.user);
          break;
        }
        case 'legacy-start': {
          const info = (await inspectContainer(ctx.container!.id))!;
          judgement = judgeContainer(oracle, info, images.user);
          acted = judgement.findings.length > 0 || res.status === 204;
          break;
        }
      }
    } finally {
      if (process.env['BK_DIFF_DEBUG']) console.error(`#${v.index} judged after ${Math.round(performance.now() - t0)} ms`);
      for (const c of cleanup) await c().catch(() => undefined);
      if (process.env['BK_DIFF_DEBUG']) console.error(`#${v.index} cleaned up after ${Math.round(performance.now() - t0)} ms`);
    }
    const forbidden = judgement.findings.length > 0 && acted;
    const first = gates[0];
    const allowed = !first || first.verdict === undefined || first.verdict.allow;
    const fail = forbidden && allowed;
    const out: Outcome = {
      variant: v, engine: version, request: sent.bytes, notes: built.notes, status: res.status,
      response: res.body.toString('utf8').slice(0, 300).trim(), acted, judgement, gates: [...gates, ...later], fail,
      overDenied: !forbidden && acted && first?.verdict?.allow === false,
      ms: performance.now() - t0,
      ...(uid !== undefined ? { uid } : {}),
    };
    if (fail) {
      const back = later.find((g) => g.step.startsWith('start'));
      out.backstop = back ? (back.verdict?.allow === false ? `the later ${back.method} ${back.uri} was DENIED` : `the later ${back.method} ${back.uri} was allowed too`) : 'no later judged step';
    }
    return out;
  };

  return { version, engine, docker: d, api, run, pluginStats: () => plugin.stats, stop };
}
