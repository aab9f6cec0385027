// Brings up a real controller (and optionally agents) as processes for e2e
// tests: init a data dir, serve on loopback port 0, enroll agents.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_BIN, CONTROLLER_BIN, Daemon, apiGet, readText, run, waitFor, type ApiResponse } from '../helpers/processes';

export interface ControllerHandle {
  dataDir: string;
  daemon: Daemon;
  grpcAddr: string;
  apiBase: string;
  caPem: string;
  caFile: string;
  caFingerprint: string;
  adminKey: string;
  /** The Prometheus metrics port (serve --metrics-listen 127.0.0.1:0); it changes on restart. */
  readonly metricsPort: number;
  get<T = unknown>(path: string, key?: string | null): Promise<ApiResponse<T>>;
  token(ttl?: string): Promise<string>;
  /** Stops the controller, runs `whileDown`, starts it again on the same ports. */
  restart(whileDown?: () => Promise<void>): Promise<void>;
  /** When the last restart's process that became ready was spawned, and how many spawns it took (a failed bind is retried). */
  readonly lastLaunch: { spawnedAt: number; attempts: number } | undefined;
  stop(): Promise<void>;
}

export interface StackOptions {
  heartbeatInterval?: string;
  offlineAfter?: string;
  /** Extra environment for every controller command (init, serve, token create), e.g. BULKHEAD_DATABASE_URL. */
  env?: NodeJS.ProcessEnv;
  /** Extra `init` arguments. */
  initArgs?: string[];
  /** Extra `serve` arguments (after the stack's own). */
  serveArgs?: string[];
}

export async function startController(root: string, opts: StackOptions = {}): Promise<ControllerHandle> {
  const dataDir = join(root, 'controller');
  const env = opts.env ?? {};
  const init = await run(CONTROLLER_BIN, ['init', '--data-dir', dataDir, '--json', ...(opts.initArgs ?? [])], env);
  if (init.code !== 0) throw new Error(`init failed: ${init.stderr}`);
  const info = JSON.parse(init.stdout) as { caFingerprint: string; adminApiKey: string; caCert: string };
  const caPem = readText(info.caCert);

  let grpcListen = '127.0.0.1:0';
  let apiListen = '127.0.0.1:0';
  const extra = [
    // Port 0: parallel test files never fight over the default 127.0.0.1:9464.
    '--metrics-listen', '127.0.0.1:0',
    ...(opts.heartbeatInterval ? ['--heartbeat-interval', opts.heartbeatInterval] : []),
    ...(opts.offlineAfter ? ['--offline-after', opts.offlineAfter] : []),
    ...(opts.serveArgs ?? []),
  ];
  let lastLaunch: { spawnedAt: number; attempts: number } | undefined;
  let attempts = 0;
  const launch = async (): Promise<{ daemon: Daemon; grpcPort: number; apiPort: number; metricsPort: number }> => {
    attempts++;
    lastLaunch = { spawnedAt: Date.now(), attempts };
    const daemon = Daemon.start('controller', CONTROLLER_BIN, ['serve', '--data-dir', dataDir, '--grpc-listen', grpcListen, '--api-listen', apiListen, ...extra], env);
    const ready = await Promise.race([
      daemon.waitForLog((l) => l['msg'] === 'controller ready'),
      daemon.exited.then((c) => {
        throw new Error(`controller exited with ${c}: ${daemon.raw}`);
      }),
    ]).catch((err: unknown) => {
      // Not ready in time: do not leave it running behind the next attempt.
      daemon.child.kill('SIGKILL');
      throw err;
    });
    return { daemon, grpcPort: ready['grpcPort'] as number, apiPort: ready['apiPort'] as number, metricsPort: ready['metricsPort'] as number };
  };
  let cur = await launch();
  // Restarts reuse the same ports, as a real controller would.
  grpcListen = `127.0.0.1:${cur.grpcPort}`;
  apiListen = `127.0.0.1:${cur.apiPort}`;
  const apiBase = `https://127.0.0.1:${cur.apiPort}`;

  const handle: ControllerHandle = {
    dataDir,
    get daemon() {
      return cur.daemon;
    },
    grpcAddr: grpcListen,
    apiBase,
    caPem,
    caFile: info.caCert,
    caFingerprint: info.caFingerprint,
    adminKey: info.adminApiKey,
    get metricsPort() {
      return cur.metricsPort;
    },
    get: (path, key) => apiGet(apiBase, path, caPem, key === null ? undefined : (key ?? info.adminApiKey)),
    async token(ttl = '5m') {
      const r = await run(CONTROLLER_BIN, ['token', 'create', '--data-dir', dataDir, '--ttl', ttl], env);
      if (r.code !== 0) throw new Error(`token create failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    get lastLaunch() {
      return lastLaunch;
    },
    async restart(whileDown) {
      await cur.daemon.stop();
      await whileDown?.();
      attempts = 0;
      // The port may linger briefly after exit; retry the bind.
      cur = await waitFor('controller restart', async () => launch().catch(() => undefined), 45_000, 200);
    },
    async stop() {
      await cur.daemon.stop();
    },
  };
  return handle;
}

export interface AgentHandle {
  stateDir: string;
  agentId: string;
  daemon: Daemon;
  start(): void;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function enrollAgent(ctl: ControllerHandle, root: string, name: string, dockerHost: string, extraRunArgs: string[] = []): Promise<AgentHandle> {
  const stateDir = join(root, name);
  const token = await ctl.token();
  const r = await run(AGENT_BIN, ['enroll', '--controller', ctl.grpcAddr, '--token', token, '--ca-fingerprint', ctl.caFingerprint, '--state-dir', stateDir]);
  if (r.code !== 0) throw new Error(`enroll failed (${r.code}): ${r.stderr}`);
  const agentId = /enrolled as (agt_[0-9a-f]+)/.exec(r.stdout)?.[1];
  if (!agentId) throw new Error(`enroll printed no agent id: ${r.stdout}`);
  let daemon: Daemon | undefined;
  const handle: AgentHandle = {
    stateDir,
    agentId,
    get daemon() {
      if (!daemon) throw new Error('agent not started');
      return daemon;
    },
    start() {
      // Metrics on port 0 (the port is in the "metrics listening" log line); extraRunArgs may override.
      daemon = Daemon.start(name, AGENT_BIN, ['run', '--state-dir', stateDir, '--docker-host', dockerHost, '--reconcile-interval', '5s', '--authz-socket', join(stateDir, 'authz.sock'), '--metrics-listen', '127.0.0.1:0', ...extraRunArgs]);
    },
    async stop(signal) {
      await daemon?.stop(signal);
    },
  };
  return handle;
}

export function tempRoot(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'bk-e2e-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
