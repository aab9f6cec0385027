// The stack the authz-bypass e2e tests attack (test/e2e/authz-bypass-*.test.ts):
// a real controller, a real enrolled agent process serving the Docker
// authorization plugin, and a PRIVATE dockerd started with
// `--authorization-plugin=<that plugin>` — with a policy of host-safety rules
// in enforce mode applied through the controller, as an operator would.
//
//   for (const version of engineVersions()) {
//     t.test(`dockerd ${version}`, async (t) => {
//       const s = await startBypassStack(t, { version });
//       const r = await s.raw('POST', '/v1.41/containers/create?name=x', '{"Image":…}}');
//       expectRefused(t, s, r, ['hs.sensitive-mounts'], 'a stray } after the body');
//       t.equal(await s.container('x'), undefined, 'and nothing was created');
//     });
//   }
//
// The agent's --docker-host is a symlink made once the engine is up: the
// plugin must answer before the engine starts (dockerd asks it about every
// request, the engine's own start-up included), and the engine's socket
// path is only known once it runs. The agent waits for the engine itself.
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { removeLabelledContainers, startPrivateEngine, TEST_IMAGE, TEST_IMAGE_USER1000, type DockerResult, type PrivateEngine, type PrivateEngineOptions } from './engine';
import { CHECK_TYPES } from '../../packages/shared/src/policy/checks/index';
import { apiRequest, waitFor } from './processes';
import { rawDocker, type RawResponse } from './raw-docker';
import { enrollAgent, startController, tempRoot, type AgentHandle, type ControllerHandle } from '../e2e/stack';

export type EngineVersion = '20.10' | '26.1';

/**
 * The engine versions to attack: 20.10, and 26.1 wherever test/helpers/engine.ts
 * can start it (`startPrivateEngine({ version: '26.1' })`; an engine that cannot
 * be had then FAILS the test, engine.ts's rule). Several request forms dockerd
 * honours differ by version. BULKHEAD_AUTHZ_BYPASS_ENGINES="20.10"
 * (comma-separated) narrows the list for a quick local run.
 */
export function engineVersions(): EngineVersion[] {
  const all: EngineVersion[] = ['20.10'];
  if (engineHelperSupportsVersions()) all.push('26.1');
  const only = process.env['BULKHEAD_AUTHZ_BYPASS_ENGINES'];
  if (!only) return all;
  const wanted = new Set(only.split(',').map((v) => v.trim()));
  return all.filter((v) => wanted.has(v));
}

/** Whether engine.ts's PrivateEngineOptions has a `version` field (26.1 support landed after these tests were written). */
export function engineHelperSupportsVersions(): boolean {
  const src = readFileSync(resolve(__dirname, 'engine.ts'), 'utf8');
  const at = src.indexOf('interface PrivateEngineOptions');
  if (at === -1) return false;
  const body = src.slice(at, src.indexOf('\n}', at));
  return /^\s*version\??\s*:/m.test(body);
}

/** The API version the raw requests use: both engines serve it (20.10's own, 26.1 serves 1.24-1.45). */
export const API = 'v1.41';
export const POLICY_NAME = 'authz-bypass';
/** Containers whose memory the quota rule judges (update requests are judged by it). */
export const QUOTA_LABEL = 'bkab.quota';

/**
 * Host-safety rules, all in enforce mode with a kill action: what the
 * attacker is up against. Plus one quota rule (memory at most 256 MiB) for
 * containers labelled bkab.quota=1, so that update requests have a rule to break.
 */
export function hostSafetyPolicy(x: { engineSocket: string; mode?: 'enforce' | 'monitor'; privateCgroupns?: boolean }): string {
  const mode = x.mode ?? 'enforce';
  const rule = (id: string, check: string, extra = '') =>
    `    - id: ${id}\n      description: ${id}\n      severity: critical\n      mode: ${mode}\n      action: { type: kill }\n${extra}      check: ${check}\n`;
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: ${POLICY_NAME} }
spec:
  rules:
${[
    rule('hs.root-user', '{ type: root-user }'),
    rule('hs.privileged', '{ type: privileged }'),
    // Defaults: /, /etc, /proc, /sys, /var/lib/docker, the sockets … and their subpaths.
    rule('hs.sensitive-mounts', '{ type: sensitive-mounts }'),
    rule('hs.docker-socket', `{ type: docker-socket, socketPaths: [/var/run/docker.sock, /run/docker.sock, /run/containerd/containerd.sock, ${JSON.stringify(x.engineSocket)}] }`),
    rule('hs.capabilities', '{ type: capabilities }'),
    // Default namespaces: all the check knows (network, pid, ipc, uts, userns, cgroup).
    // An engine started with --default-cgroupns-mode=private (as on cgroup v2) makes a host
    // cgroup namespace an escalation on this cgroup v1 machine too: the check is told so.
    rule('hs.host-namespaces', x.privateCgroupns ? '{ type: host-namespaces, cgroupnsOnCgroupV1: true }' : '{ type: host-namespaces }'),
    rule('hs.seccomp-apparmor', '{ type: seccomp-apparmor }'),
    // What dockerd masks or makes read-only in /proc and /sys (--security-opt systempaths=unconfined
    // undoes it): a check type of its own since it was found unread (a catalogue without it cannot
    // refuse that attack, and its test says so).
    ...(CHECK_TYPES.includes('system-paths') ? [rule('hs.system-paths', '{ type: system-paths }')] : []),
    rule('hs.devices', "{ type: devices, allowed: ['/dev/net/*'] }"),
    rule('quota.memory', '{ type: resource-limits, requireMemory: true, requireCpu: false, requirePids: false, maxMemory: 256m }', `      scope: { containerLabels: { ${QUOTA_LABEL}: '1' } }\n`),
  ].join('')}`;
}

export interface Violation {
  id: string;
  ruleId: string;
  containerId: string;
  containerName: string;
  mode: string;
  source: string;
  denied: boolean;
  action: { type: string; result: string; error: string; durationMs: number } | null;
  message: string;
}

export interface ContainerInspect {
  Id: string;
  Name: string;
  Config: { User: string; Image: string };
  State: { Status: string; Running: boolean; StartedAt: string; ExitCode: number; Pid: number };
  HostConfig: Record<string, unknown> & { Binds: string[] | null; Memory: number; Privileged: boolean };
  ExecIDs: string[] | null;
}

export interface ExecInspect {
  ID: string;
  Running: boolean;
  ExitCode: number | null;
  Pid: number;
  ProcessConfig: { user: string; privileged: boolean };
}

export interface BypassStack {
  version: EngineVersion;
  /** The exact server version (e.g. "20.10.24+dfsg1"). */
  serverVersion: string;
  engine: PrivateEngine;
  ctl: ControllerHandle;
  agent: AgentHandle;
  /** The plugin's name, as in dockerd's "authorization denied by plugin NAME: …" (unused with authz: false). */
  plugin: string;
  /** Policy version in force at the agent. */
  policyVersion: number;
  /** An empty host directory: a harmless bind-mount and volume source. */
  safeDir: string;
  /** Unique per stack, for container and volume names. */
  uniq: string;
  /** A name for this stack: `bkab-<uniq>-<what>`. */
  name(what: string): string;
  raw(method: string, target: string, body?: string | Buffer | object, extra?: { chunked?: boolean; contentType?: string | null }): Promise<RawResponse>;
  docker(args: string[]): Promise<DockerResult>;
  dockerOk(args: string[]): Promise<string>;
  /** Inspect, or undefined when dockerd has no such container. */
  container(ref: string): Promise<ContainerInspect | undefined>;
  exec(id: string): Promise<ExecInspect | undefined>;
  /** Whether the engine has a (local) volume of that name. */
  volumeExists(name: string): Promise<boolean>;
  violations(): Promise<Violation[]>;
  /** Replaces the policy at the controller and waits until the agent applied it. */
  applyPolicy(yaml: string): Promise<number>;
  /** Log lines of the agent process (JSON). */
  agentLog(): Record<string, unknown>[];
}

export interface BypassStackOptions {
  version: EngineVersion;
  /** The policy (default hostSafetyPolicy in enforce mode). */
  policy?: (x: { engineSocket: string; privateCgroupns: boolean }) => string;
  /** Runs once the engine is up and BEFORE any policy is in force (nothing is judged yet). */
  beforePolicy?: (s: BypassStack) => Promise<void>;
  /**
   * false: reaction only — dockerd runs WITHOUT the plugin and the agent with
   * --no-authz, so whatever is asked for happens and only the reaction path
   * (engine events → enforcer) can act. Default true.
   */
  authz?: boolean;
  /** More dockerd flags (e.g. --default-cgroupns-mode=private). */
  dockerdArgs?: string[];
  /** More `bulkhead-agent run` flags (e.g. --registry-certs-dir). */
  agentArgs?: string[];
}

const LABELS = { 'bulkhead.test': '1' };

/** Starts controller, agent (plugin), engine, then applies the policy. Everything stops in `t`'s teardown. */
export async function startBypassStack(t: tap.Test, o: BypassStackOptions): Promise<BypassStack> {
  const uniq = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const root = tempRoot();
  t.teardown(root.cleanup);
  const safeDir = mkdtempSync('/tmp/bkab-safe-');
  t.teardown(() => rmSync(safeDir, { recursive: true, force: true }));
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms' });
  t.teardown(() => ctl.stop());

  const plugin = `bkab-${uniq}`;
  const authz = o.authz !== false;
  const pluginSocket = `/run/docker/plugins/${plugin}.sock`;
  const linkDir = mkdtempSync('/tmp/bkab-h-');
  const hostLink = `${linkDir}/docker.sock`;
  t.teardown(() => rmSync(linkDir, { recursive: true, force: true }));
  const agent = await enrollAgent(ctl, root.dir, 'agent', `unix://${hostLink}`, [
    ...(authz ? ['--authz-socket', pluginSocket] : ['--no-authz']), '--usage-interval', '0', '--audit-interval', '0', ...(o.agentArgs ?? []),
  ]);
  agent.start();
  // Teardowns run last-registered first: the engine (registered below) stops while the plugin still answers.
  t.teardown(async () => {
    await agent.stop();
    if (authz) rmSync(pluginSocket, { force: true });
  });
  if (authz) await waitFor('the agent serves the authorization plugin', async () => existsSync(pluginSocket), 30_000);

  // dockerd resolves a relative local-volume `device` against its working
  // directory, which is / under systemd. engine.sh starts the daemons from /
  // (older versions of it started them in the caller's directory, so the
  // test starts it from / too; the spawn happens synchronously).
  const cwd = process.cwd();
  const engineOptions: PrivateEngineOptions & { version?: string } = {
    dockerdArgs: [...(authz ? [`--authorization-plugin=${plugin}`] : []), ...(o.dockerdArgs ?? [])],
    t,
    ...(o.version === '20.10' ? {} : { version: o.version }),
  };
  let starting: Promise<PrivateEngine>;
  process.chdir('/');
  try {
    starting = startPrivateEngine(engineOptions);
  } finally {
    process.chdir(cwd);
  }
  const engine = await starting;
  symlinkSync(engine.socketPath, hostLink);
  const serverVersion = await engine.dockerOk(['version', '-f', '{{.Server.Version}}']);
  if (!serverVersion.startsWith(`${o.version}.`)) {
    throw new Error(`asked test/helpers/engine.ts for dockerd ${o.version}, got ${serverVersion}`);
  }

  const online = await waitFor('the agent online and watching the engine', async () => {
    const r = await ctl.get<{ status: string; host: { dockerVersion?: string } | null }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.host?.dockerVersion ? r.body : undefined;
  }, 60_000, 200);
  if (online.host?.dockerVersion !== serverVersion) throw new Error(`the agent watches dockerd ${online.host?.dockerVersion}, expected ${serverVersion}`);

  const raw: BypassStack['raw'] = (method, target, body, extra = {}) =>
    rawDocker(engine.socketPath, {
      method, target,
      ...(body === undefined ? {} : { body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
      ...extra,
    });
  const s: BypassStack = {
    version: o.version,
    serverVersion,
    engine,
    ctl,
    agent,
    plugin,
    policyVersion: 0,
    safeDir,
    uniq,
    name: (what) => `bkab-${uniq}-${what}`,
    raw,
    docker: (args) => engine.docker(args),
    dockerOk: (args) => engine.dockerOk(args),
    async container(ref) {
      const r = await raw('GET', `/${API}/containers/${encodeURIComponent(ref)}/json`);
      if (r.status === 404) return undefined;
      if (r.status !== 200) throw new Error(`inspect ${ref}: ${r.status} ${r.message}`);
      return r.json<ContainerInspect>();
    },
    async exec(id) {
      const r = await raw('GET', `/${API}/exec/${encodeURIComponent(id)}/json`);
      if (r.status === 404) return undefined;
      if (r.status !== 200) throw new Error(`exec inspect ${id}: ${r.status} ${r.message}`);
      return r.json<ExecInspect>();
    },
    volumeExists(name) {
      // On disk, not through the API: dockerd asks every plugin socket in
      // /run/docker/plugins about a volume it does not have, and a stale socket
      // there (another test's) costs 15 s per lookup.
      return Promise.resolve(existsSync(`${engine.dir}/data/volumes/${name}`));
    },
    async violations() {
      const r = await ctl.get<{ items: Violation[] }>('/v1/violations?limit=1000');
      if (r.status !== 200) throw new Error(`GET /v1/violations: ${r.status}`);
      return r.body.items;
    },
    async applyPolicy(yaml) {
      const put = await apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, yaml, 'application/yaml');
      if (put.status !== 200) throw new Error(`PUT /v1/policies: ${put.status} ${JSON.stringify(put.body)}`);
      const v = put.body.version;
      await waitFor(`the agent applied policy v${v}`, async () => {
        const r = await ctl.get<{ policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agent.agentId}`);
        return r.body.policy?.version === v && r.body.policy.applied;
      }, 30_000, 100);
      s.policyVersion = v;
      return v;
    },
    agentLog: () => agent.daemon.lines,
  };
  await o.beforePolicy?.(s);
  const privateCgroupns = (o.dockerdArgs ?? []).includes('--default-cgroupns-mode=private');
  await s.applyPolicy((o.policy ?? ((x) => hostSafetyPolicy(x)))({ engineSocket: engine.socketPath, privateCgroupns }));
  t.comment(`dockerd ${serverVersion} (cwd ${dockerdCwd(engine)}) ${authz ? `with plugin ${plugin}` : 'WITHOUT the plugin (reaction only)'}; policy "${POLICY_NAME}" v${s.policyVersion} in force`);
  // Containers are removed with the engine; this only keeps a failed run's leftovers small.
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined, () => undefined));
  return s;
}

/**
 * Sockets in /run/docker/plugins nobody answers on (left behind by a crashed
 * plugin, e.g. another test's). dockerd asks every plugin there about a
 * volume it does not have, and waits ~15 s for each dead one: a lookup of a
 * volume that does not exist yet then takes longer than any authz budget.
 */
export async function deadPluginSockets(): Promise<string[]> {
  let names: string[] = [];
  try {
    names = readdirSync(DOCKER_PLUGIN_DIR).filter((n) => n.endsWith('.sock'));
  } catch {
    return [];
  }
  const dead = await Promise.all(names.map((n) => new Promise<string | undefined>((res) => {
    const c = connect(`${DOCKER_PLUGIN_DIR}/${n}`);
    const done = (v: string | undefined): void => {
      clearTimeout(timer);
      c.destroy();
      res(v);
    };
    const timer = setTimeout(() => done(`${DOCKER_PLUGIN_DIR}/${n}`), 500);
    c.once('connect', () => done(undefined));
    c.once('error', () => done(`${DOCKER_PLUGIN_DIR}/${n}`));
  })));
  return dead.filter((d): d is string => d !== undefined);
}

const DOCKER_PLUGIN_DIR = '/run/docker/plugins';

/** dockerd's working directory (relative local-volume devices resolve against it). */
export function dockerdCwd(engine: PrivateEngine): string {
  try {
    return readlinkSync(`/proc/${readFileSync(`${engine.dir}/dockerd.pid`, 'utf8').trim()}/cwd`);
  } catch {
    return '?';
  }
}

// ---------------------------------------------------------------- request bodies

/** A create body: the busybox image, `sleep 300`, no network, test labels; `over` replaces top-level keys. */
export function createBody(over: Record<string, unknown> = {}, hostConfig: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Image: TEST_IMAGE,
    Cmd: ['sleep', '300'],
    Labels: LABELS,
    ...over,
    HostConfig: { NetworkMode: 'none', ...hostConfig },
  };
}

export { TEST_IMAGE, TEST_IMAGE_USER1000 };

/** A JSON object padded past dockerd's 1 MiB limit for passing bodies to plugins (an unknown key, which dockerd ignores). */
export function padded(body: Record<string, unknown>): string {
  return JSON.stringify({ ...body, BkabPadding: 'x'.repeat(1100 * 1024) });
}

// ---------------------------------------------------------------- assertions

/** What a refusal looks like: a raw response or a CLI result. */
export type Outcome = RawResponse | DockerResult;

function isRaw(o: Outcome): o is RawResponse {
  return (o as RawResponse).status !== undefined;
}

/** The text the plugin's refusal travels in (the API error message, or the CLI's stderr). */
export function outcomeText(o: Outcome): string {
  return isRaw(o) ? `${o.status} ${o.message}` : `exit ${o.code}: ${o.stderr.trim()}`;
}

export const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Asserts dockerd refused the request because the plugin denied it, and
 * that the denial names one of `rules` (the rule ids in brackets, as the
 * denial lists them). `rules: 'policy'` accepts any Bulkhead refusal naming
 * the policy: for requests whose body no plugin receives, so none can say
 * which rule it would break.
 */
export function expectRefused(t: tap.Test, s: BypassStack, o: Outcome, rules: readonly string[] | 'policy', what: string): boolean {
  const text = isRaw(o) ? o.message : o.stderr;
  const refusedByPlugin = isRaw(o) ? o.status === 403 : o.code !== 0;
  const prefix = new RegExp(`authorization denied by plugin ${escapeRe(s.plugin)}: `);
  const names = rules === 'policy'
    ? new RegExp(`policy "${escapeRe(POLICY_NAME)}"`)
    : new RegExp(`\\n- \\[(?:${rules.map(escapeRe).join('|')})\\]`);
  const ok = refusedByPlugin && prefix.test(text) && names.test(text);
  t.ok(ok, `${what}: refused by the plugin, naming ${rules === 'policy' ? `policy "${POLICY_NAME}"` : rules.join(' or ')}`, { got: outcomeText(o) });
  return ok;
}

/** Asserts dockerd did what was asked (2xx, or a CLI exit 0). */
export function expectAllowed(t: tap.Test, o: Outcome, what: string): boolean {
  const ok = isRaw(o) ? o.status >= 200 && o.status < 300 : o.code === 0;
  t.ok(ok, `${what}: allowed`, { got: outcomeText(o) });
  return ok;
}

/** The dangerous container must not exist; removes it when it does (a bypass that got through). */
export async function expectNotCreated(t: tap.Test, s: BypassStack, name: string, what: string): Promise<void> {
  const c = await s.container(name);
  t.equal(c === undefined ? 'not created' : `created (${c.State.Status}, HostConfig ${JSON.stringify(pick(c.HostConfig))}, User ${JSON.stringify(c.Config.User)})`, 'not created', `${what}: dockerd did not create it (inspect)`);
  if (c) await s.docker(['rm', '-f', '-v', c.Id]);
}

/** The container exists and was never started. */
export async function expectNeverStarted(t: tap.Test, s: BypassStack, ref: string, what: string): Promise<void> {
  const c = await s.container(ref);
  const started = c !== undefined && !c.State.StartedAt.startsWith('0001-');
  t.equal(c === undefined ? 'missing' : started ? `started at ${c.State.StartedAt} (${c.State.Status})` : 'never started', 'never started', `${what}: dockerd never started it (inspect)`);
}

/** Starts a created container (normal request) and checks it is still running a moment later. */
export async function expectRuns(t: tap.Test, s: BypassStack, ref: string, what: string, opts: { start?: boolean } = {}): Promise<ContainerInspect | undefined> {
  if (opts.start !== false) {
    const st = await s.raw('POST', `/${API}/containers/${encodeURIComponent(ref)}/start`);
    if (!expectAllowed(t, st, `${what}: start`)) return undefined;
  }
  // Long enough for the reaction path to have killed it if it judged it a violation.
  await sleep(400);
  const c = await s.container(ref);
  t.equal(c?.State.Status, 'running', `${what}: running (inspect)`);
  return c;
}

/** An exec never ran: refused before it was created (no id), or created and never started. */
export async function expectExecNeverRan(t: tap.Test, s: BypassStack, execId: string | undefined, what: string): Promise<void> {
  if (execId === undefined) {
    t.pass(`${what}: no exec was created`);
    return;
  }
  const e = await s.exec(execId);
  const ran = e !== undefined && (e.Running || e.Pid > 0 || e.ExitCode !== null);
  t.equal(ran ? `ran (pid ${e!.Pid}, exit ${e!.ExitCode}, user ${JSON.stringify(e!.ProcessConfig.user)}, privileged ${e!.ProcessConfig.privileged})` : 'never ran', 'never ran', `${what}: dockerd never ran the exec (exec inspect)`);
}

function pick(hc: Record<string, unknown>): Record<string, unknown> {
  const keys = ['Binds', 'Privileged', 'Devices', 'DeviceCgroupRules', 'SecurityOpt', 'CgroupnsMode', 'MaskedPaths', 'Mounts', 'NetworkMode'];
  return Object.fromEntries(keys.filter((k) => hc[k] !== undefined && hc[k] !== null && !(Array.isArray(hc[k]) && (hc[k] as unknown[]).length === 0 && k !== 'MaskedPaths')).map((k) => [k, hc[k]]));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
