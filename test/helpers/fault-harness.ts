// Pieces the fault tests (test/faults/) share: a real HTTP webhook receiver on loopback that
// can be taken down and brought back on the same port, a container churn driven through the
// Docker API (the CLI costs a process per call: too slow for 20 containers a second on two
// cores), and paged reads of the controller's API.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { apiGet, apiRequest } from './processes';
import { FILE_LABEL, TEST_IMAGE, TEST_LABEL } from './engine';

// ---- webhook receiver --------------------------------------------------------------------

export interface ReceivedWebhook {
  webhookId: string;
  alertId: string;
  type: string;
  containerId: string | null;
  ruleId: string | null;
  at: number;
}

/**
 * A webhook receiver: answers 204 to every POST while up and records it. `down()` closes the
 * listening socket and every open connection (connection refused, as a crashed receiver);
 * `up()` listens on the same port again.
 */
export class WebhookReceiver {
  /** Every request received (re-sends included), in arrival order. */
  readonly received: ReceivedWebhook[] = [];
  /** First arrival per webhook-id (the delivery id; the same on every retry). */
  readonly byWebhookId = new Map<string, ReceivedWebhook>();
  /** Requests whose webhook-id had already been received (at-least-once re-sends). */
  redeliveries = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private waiters: Array<() => void> = [];

  private constructor(public port: number) {}

  static async start(): Promise<WebhookReceiver> {
    const r = new WebhookReceiver(0);
    await r.up();
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  get isUp(): boolean {
    return this.server !== undefined;
  }

  /** Distinct alert ids received. */
  alertIds(): Set<string> {
    return new Set([...this.byWebhookId.values()].map((w) => w.alertId));
  }

  up(): Promise<void> {
    const server = createServer((req, res) => this.onRequest(req, res));
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        const addr = server.address();
        if (addr && typeof addr === 'object') this.port = addr.port;
        this.server = server;
        resolve();
      });
    });
  }

  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Resolves once `pred` holds, checked on every request; rejects after `timeoutMs`. */
  async waitUntil(what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`webhook receiver: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const webhookId = String(req.headers['webhook-id'] ?? '');
      let data: Record<string, unknown> = {};
      try {
        data = ((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data?: Record<string, unknown> }).data ?? {}) as Record<string, unknown>;
      } catch {
        /* recorded with empty data: the test's counts will show it */
      }
      const w: ReceivedWebhook = {
        webhookId,
        alertId: String(data['id'] ?? ''),
        type: String(data['type'] ?? ''),
        containerId: (data['containerId'] as string | null) ?? null,
        ruleId: (data['ruleId'] as string | null) ?? null,
        at: Date.now(),
      };
      this.received.push(w);
      if (this.byWebhookId.has(webhookId)) this.redeliveries++;
      else this.byWebhookId.set(webhookId, w);
      res.writeHead(204).end();
      const ws = this.waiters;
      this.waiters = [];
      ws.forEach((f) => f());
    });
  }
}

// ---- controller API ----------------------------------------------------------------------

export interface Api {
  apiBase: string;
  caPem: string;
  adminKey: string;
}

/** Every item of a paged list (`?limit=1000&offset=…`). */
export async function listAll<T>(api: Api, path: string): Promise<T[]> {
  const out: T[] = [];
  let offset = 0;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await apiGet<{ items: T[]; nextOffset: number | null }>(api.apiBase, `${path}${sep}limit=1000&offset=${offset}`, api.caPem, api.adminKey);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(...r.body.items);
    if (r.body.nextOffset === null) return out;
    offset = r.body.nextOffset;
  }
}

export async function putPolicy(api: Api, yaml: string): Promise<number> {
  const r = await apiRequest<{ version: number }>(api.apiBase, 'PUT', '/v1/policies', api.caPem, api.adminKey, yaml, 'application/yaml');
  if (r.status !== 200) throw new Error(`PUT /v1/policies: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.version;
}

export async function createWebhook(api: Api, url: string): Promise<string> {
  const r = await apiRequest<{ endpoint?: { id: string }; id?: string }>(api.apiBase, 'POST', '/v1/webhooks', api.caPem, api.adminKey, JSON.stringify({ url, allowUnsafeTarget: true, name: 'faults' }));
  if (r.status !== 201 && r.status !== 200) throw new Error(`POST /v1/webhooks: ${r.status} ${JSON.stringify(r.body)}`);
  const id = r.body.endpoint?.id ?? r.body.id;
  if (!id) throw new Error(`POST /v1/webhooks: no id in ${JSON.stringify(r.body)}`);
  return id;
}

export interface ControllerContainer {
  id: string;
  name: string;
  state: string;
  removed: boolean;
  agentId: string;
}

export interface ControllerViolation {
  id: string;
  ruleId: string;
  containerId: string;
  containerName: string;
  source: string;
  denied: boolean;
  action: { type: string; result: string; error: string } | null;
}

export interface ControllerAlert {
  id: string;
  type: string;
  containerId: string | null;
  ruleId: string | null;
  count: number;
}

// ---- Docker API over the engine's unix socket ------------------------------------------

export interface DockerApiResult {
  status: number;
  body: string;
}

export function dockerApi(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<DockerApiResult> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(
      { socketPath, method, path, headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`docker ${method} ${path} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** The labels of LABEL_ARGS as a Docker API map. */
export function testLabels(extra: Record<string, string> = {}): Record<string, string> {
  const [k1, v1] = TEST_LABEL.split('=') as [string, string];
  const [k2, v2] = FILE_LABEL.split('=') as [string, string];
  return { [k1]: v1, [k2]: v2, ...extra };
}

/** Creates and starts a busybox container (`--network none`); returns its id, or throws with dockerd's answer. */
export interface RunExtra {
  /** `--restart always`. */
  restartAlways?: boolean;
  /** `--stop-timeout` in seconds (busybox `sleep` as PID 1 ignores SIGTERM: dockerd waits this long). */
  stopTimeout?: number;
}

export async function runContainer(socketPath: string, name: string, labels: Record<string, string>, cmd: string[] = ['sleep', '600'], extra: RunExtra = {}): Promise<string> {
  const c = await dockerApi(socketPath, 'POST', `/containers/create?name=${encodeURIComponent(name)}`, {
    Image: TEST_IMAGE,
    Cmd: cmd,
    Labels: labels,
    ...(extra.stopTimeout !== undefined ? { StopTimeout: extra.stopTimeout } : {}),
    HostConfig: { NetworkMode: 'none', ...(extra.restartAlways ? { RestartPolicy: { Name: 'always' } } : {}) },
  });
  if (c.status !== 201) throw new Error(`create ${name}: ${c.status} ${c.body}`);
  const id = (JSON.parse(c.body) as { Id: string }).Id;
  const s = await dockerApi(socketPath, 'POST', `/containers/${id}/start`);
  if (s.status !== 204 && s.status !== 304) throw new Error(`start ${name}: ${s.status} ${s.body}`);
  return id;
}

export async function removeContainer(socketPath: string, id: string): Promise<void> {
  const r = await dockerApi(socketPath, 'DELETE', `/containers/${id}?force=1&v=1`);
  if (r.status !== 204 && r.status !== 404) throw new Error(`rm ${id}: ${r.status} ${r.body}`);
}

export interface EngineContainer {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
}

/** `docker ps -a --filter label=…` through the API. */
export async function engineContainers(socketPath: string, label = FILE_LABEL): Promise<EngineContainer[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
  const r = await dockerApi(socketPath, 'GET', `/containers/json?all=1&filters=${filters}`);
  if (r.status !== 200) throw new Error(`ps: ${r.status} ${r.body}`);
  return (JSON.parse(r.body) as Array<{ Id: string; Names: string[]; State: string; Labels: Record<string, string> }>).map((c) => ({
    id: c.Id,
    name: (c.Names[0] ?? '').replace(/^\//, ''),
    state: c.State,
    labels: c.Labels ?? {},
  }));
}

export interface ChurnOptions {
  socketPath: string;
  /** Containers started per second (target). */
  ratePerSec: number;
  /** How long each container lives before the churn removes it. */
  lifetimeMs: number;
  /** Every n-th container breaks the test policy (label fault=bad). */
  badEvery: number;
  /** Name prefix (unique per test). */
  prefix: string;
  /** Containers started at once at most. */
  concurrency?: number;
}

export interface ChurnStats {
  started: Array<{ id: string; name: string; bad: boolean; startedAt: number }>;
  removed: number;
  failed: string[];
  elapsedMs: number;
}

/**
 * Starts `ratePerSec` containers a second and removes each after `lifetimeMs`, until
 * `stop()`; containers younger than their lifetime at stop are left running (the engine's
 * inventory at the end is not empty). Create/start errors are collected, not thrown.
 */
export function churn(o: ChurnOptions): { stop(): Promise<ChurnStats> } {
  const stats: ChurnStats = { started: [], removed: 0, failed: [], elapsedMs: 0 };
  const begin = Date.now();
  const inFlight = new Set<Promise<void>>();
  const removals = new Set<Promise<void>>();
  const timers = new Set<NodeJS.Timeout>();
  let n = 0;
  let stopped = false;
  const max = o.concurrency ?? 12;
  const tick = setInterval(() => {
    if (stopped) return;
    // Catch up to the target count (timers slip on a busy machine), within the concurrency cap.
    const due = Math.floor(((Date.now() - begin) / 1000) * o.ratePerSec);
    while (n < due && inFlight.size < max) {
      const i = n++;
      const bad = i % o.badEvery === 0;
      const name = `${o.prefix}-${i}`;
      const p = runContainer(o.socketPath, name, testLabels(bad ? { fault: 'bad' } : { fault: 'ok' }))
        .then((id) => {
          stats.started.push({ id, name, bad, startedAt: Date.now() });
          const timer = setTimeout(() => {
            timers.delete(timer);
            if (stopped) return;
            const r = removeContainer(o.socketPath, id).then(
              () => void stats.removed++,
              (e: unknown) => void stats.failed.push(String(e)),
            );
            removals.add(r);
            void r.finally(() => removals.delete(r));
          }, o.lifetimeMs);
          timers.add(timer);
        })
        .catch((e: unknown) => void stats.failed.push(String(e)))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  }, 10);
  return {
    async stop() {
      stopped = true;
      clearInterval(tick);
      for (const t of timers) clearTimeout(t);
      await Promise.all([...inFlight, ...removals]);
      stats.elapsedMs = Date.now() - begin;
      return stats;
    },
  };
}

/**
 * The fault tests' policy: containers labelled fault=bad must not run as root; in enforce mode
 * they are killed, in monitor mode only reported (and alerted).
 */
export function rootPolicy(name: string, mode: 'enforce' | 'monitor'): string {
  // Scoped to this test file's containers too: test files run two at a time on one shared engine,
  // and another file's enforcing agent must not kill (and so take the violation of) this file's
  // fault=bad containers before this file's agent gets to them.
  const [fileKey, fileValue] = FILE_LABEL.split('=') as [string, string];
  const [description, action] = mode === 'enforce'
    ? ['Containers labelled fault=bad must not run as root.', 'kill']
    : ['Containers labelled fault=bad should not run as root (reported, not acted on).', 'alert'];
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: ${name} }
spec:
  rules:
    - id: faults.root
      description: ${description}
      severity: high
      mode: ${mode}
      action: { type: ${action} }
      scope: { containerLabels: { fault: bad, ${JSON.stringify(fileKey)}: ${JSON.stringify(fileValue)} } }
      check: { type: root-user }
`;
}
