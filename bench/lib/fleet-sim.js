// Owns the simulated fleet: N agents in this process, each enrolled over the
// real Enroll RPC with its own join token (minted through the controller's
// API), its own key and certificate, and each on its own mutual-TLS AgentLink
// stream. The stream is the agent's own ControllerLink (@bulkhead/agent), so
// the simulator speaks exactly the wire contract the agent speaks (hello →
// welcome → snapshot → deltas, heartbeats, violation reports, policy status)
// and cannot drift from it; only the Docker side is synthetic: M containers
// per agent held in memory, changed by a churn schedule.
//
// Used by bench/fleet-sim.js (figures in BENCHMARKS.md) and
// test/integration/fleet-sim.test.ts (CI, small size). Needs the built
// packages (`npx tsc -b`): it loads @bulkhead/agent from dist.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { createHash, randomBytes } = require('node:crypto');
const { EventEmitter } = require('node:events');
const { readFileSync, mkdirSync, copyFileSync } = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const { join, resolve } = require('node:path');
const { ControllerLink, enroll } = require('@bulkhead/agent');
const { ReportSpool } = require('@bulkhead/agent/dist/link/report-spool');
const { createLogger } = require('@bulkhead/shared');

const ROOT = resolve(__dirname, '../..');
// BENCH_CONTROLLER_BIN: another checkout's built controller, for a before/after pair with the same simulator.
const CTL = process.env.BENCH_CONTROLLER_BIN || join(ROOT, 'packages/controller/dist/cli/main.js');

// ---------------------------------------------------------------- controller

/**
 * The built controller as a real process on loopback (`init`, then `serve`).
 * `databaseUrl` selects PostgreSQL (through BULKHEAD_DATABASE_URL, never argv:
 * the password would show in the process list); otherwise SQLite in `dir`.
 * `cpus` ("0", "1", "0,1") pins it with taskset.
 */
/**
 * What a second replica needs from the first one's data directory
 * (docs/cli.md#several-active-replicas); the store is the shared database.
 */
const REPLICA_FILES = ['ca.key', 'ca.crt', 'server.key', 'server.crt', 'token-signing.key'];

/**
 * Starts `serve` as a real process. `replicaOf` (a started controller on the same
 * PostgreSQL `databaseUrl`) makes this one another active replica of it: its data
 * directory holds copies of REPLICA_FILES only, and no `init` runs.
 */
async function startController({ dir, databaseUrl, cpus, heartbeatInterval, offlineAfter, extraArgs = [], nodeArgs = [], logLevel = 'warn', onLine, replicaOf }) {
  const dataDir = join(dir, 'ctl');
  const env = { ...process.env, BULKHEAD_LOG_LEVEL: logLevel };
  if (databaseUrl) env.BULKHEAD_DATABASE_URL = databaseUrl;
  else delete env.BULKHEAD_DATABASE_URL;
  let init;
  if (replicaOf) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    for (const f of REPLICA_FILES) copyFileSync(join(replicaOf.dataDir, f), join(dataDir, f));
    init = { caCert: join(dataDir, 'ca.crt'), caFingerprint: replicaOf.caFingerprint, adminApiKey: replicaOf.adminApiKey };
  } else {
    init = JSON.parse(execFileSync(process.execPath, [CTL, 'init', '--data-dir', dataDir, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString());
  }
  const args = [CTL, 'serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics'];
  if (heartbeatInterval) args.push('--heartbeat-interval', heartbeatInterval);
  if (offlineAfter) args.push('--offline-after', offlineAfter);
  args.push(...extraArgs);
  // setpriv: the controller gets SIGTERM when this process dies (a test killed at its
  // timeout must not leave a controller behind). setpriv and taskset exec: the pid is node's.
  let argv = ['setpriv', '--pdeathsig=TERM', '--', process.execPath, ...nodeArgs, ...args];
  if (cpus !== undefined && cpus !== '') argv = ['taskset', '-c', String(cpus), ...argv];
  const cmd = argv.shift();
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, BULKHEAD_LOG_LEVEL: 'info' } });
  const lines = [];
  let ready;
  const readyP = new Promise((res, rej) => {
    ready = res;
    child.once('exit', (code, sig) => rej(new Error(`controller exited before it was ready (${code ?? sig}):\n${lines.slice(-20).join('\n')}`)));
  });
  let buf = '';
  const feed = (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line); // the last 300 lines, for a post-mortem
      if (lines.length > 300) lines.shift();
      try {
        const l = JSON.parse(line);
        if (l.msg === 'controller ready') ready(l);
        onLine?.(l);
      } catch { /* not JSON */ }
    }
  };
  child.stdout.on('data', feed);
  child.stderr.on('data', feed);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let readyLine;
  try {
    readyLine = await readyP;
  } finally {
    clearTimeout(timer);
  }
  const ca = readFileSync(init.caCert);
  let stopping = false;
  const exited = new Promise((res) => child.once('exit', res));
  // A controller that dies under load is a finding: say how, with its last words.
  child.once('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`controller exited unexpectedly (code ${code}, signal ${signal}); its last lines:\n${lines.slice(-40).join('\n')}\n`);
  });
  return {
    pid: child.pid,
    dataDir,
    replicaId: readyLine.replicaId,
    grpcAddress: `127.0.0.1:${readyLine.grpcPort}`,
    apiPort: readyLine.apiPort,
    ca,
    caFingerprint: init.caFingerprint,
    adminApiKey: init.adminApiKey,
    lines,
    /** Resolves with the wall-clock time (Date.now()) this process saw the controller exit (reaped). */
    exitedAt: exited.then(() => Date.now()),
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The controller's HTTPS API over keep-alive connections (bearer admin key). */
function apiClient({ port, ca, apiKey, maxSockets = 4 }) {
  const agent = new https.Agent({ keepAlive: true, maxSockets, ca });
  const request = (method, path, body) => new Promise((res, rej) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request({
      host: '127.0.0.1', servername: 'localhost', port, path, method, agent,
      headers: { authorization: `Bearer ${apiKey}`, ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
      timeout: 60_000,
    }, (r) => {
      const chunks = [];
      r.on('data', (d) => chunks.push(d));
      r.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        res({ status: r.statusCode, body: text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', rej);
    req.end(data);
  });
  return {
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body),
    /** Every item of a paged list (limit 1000 a page). */
    async all(path) {
      const items = [];
      for (let offset = 0; ;) {
        const sep = path.includes('?') ? '&' : '?';
        const r = await request('GET', `${path}${sep}limit=1000&offset=${offset}`);
        if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body.slice(0, 300)}`);
        items.push(...r.json.items);
        if (typeof r.json.nextOffset !== 'number') return items; // the last page (or an unpaged list)
        offset = r.json.nextOffset;
      }
    },
    close: () => agent.destroy(),
  };
}

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

/**
 * A TCP relay on 127.0.0.1 that opens each connection to `target` from the
 * next of `sources` loopback addresses (127.0.0.2 …) in turn, piping bytes
 * untouched (TLS stays end to end between the agent and the controller).
 *
 * Why: the controller admits at most 20 Enroll calls a minute per source
 * address (a defence against token guessing), and a real fleet enrolls from
 * as many addresses as it has hosts. Without the relay, 2,000 simulated hosts
 * on one address would take 100 minutes to enroll. Only enrollment goes
 * through it; the links connect directly.
 */
async function sourceSpreadingRelay(target, sources = 250) {
  const [host, port] = target.split(/:(?=\d+$)/);
  let next = 0;
  const sockets = new Set();
  const server = net.createServer((client) => {
    const localAddress = `127.0.${Math.floor(next / 254) % 256}.${(next % 254) + 2}`;
    next = (next + 1) % sources;
    const upstream = net.connect({ host, port: Number(port), localAddress });
    sockets.add(client);
    sockets.add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((res, rej) => server.once('error', rej).listen(0, '127.0.0.1', res));
  return {
    address: `127.0.0.1:${server.address().port}`,
    close: () => new Promise((res) => {
      for (const s of sockets) s.destroy();
      server.close(() => res());
    }),
  };
}

// ---------------------------------------------------------------- synthetic Docker side

const IMAGES = ['nginx:1.25', 'redis:7.2', 'postgres:16', 'registry.example.com/shop/api:2.14.1', 'registry.example.com/shop/web:2.14.1', 'busybox:1.36', 'grafana/grafana:10.4', 'prom/node-exporter:1.8'];
const TEAMS = ['payments', 'search', 'platform', 'data'];

/**
 * One container's facts, shaped like the agent's inspect-derived facts (labels,
 * mounts, networks, capabilities, env names): about what a real one weighs on
 * the wire and in the store.
 */
function containerFacts(hostIdx, n, rnd) {
  const id = randomBytes(32).toString('hex');
  const image = IMAGES[Math.floor(rnd() * IMAGES.length)];
  const team = TEAMS[(hostIdx + n) % TEAMS.length];
  const now = Date.now();
  return {
    id,
    name: `sim-${hostIdx}-${n}`,
    imageRef: image,
    // One image id per reference across the fleet, as when every host pulled the same tag:
    // a random id per container would look like a tag moving on every report.
    imageId: 'sha256:' + createHash('sha256').update(image).digest('hex'),
    imageDigest: '',
    labels: { team, app: `app-${n % 25}`, env: n % 3 === 0 ? 'staging' : 'prod', 'com.docker.compose.project': `stack-${hostIdx % 50}` },
    state: 'running',
    user: n % 4 === 0 ? '' : '1000',
    privileged: false,
    mounts: [{ type: 'volume', source: `vol-${hostIdx}-${n}`, destination: '/data', readOnly: false, propagation: '' }],
    networkMode: 'bridge',
    networks: [{ name: 'bridge', networkId: randomBytes(32).toString('hex'), ipAddress: `172.17.${Math.floor(n / 250)}.${(n % 250) + 2}` }],
    pidMode: '', ipcMode: 'private', utsMode: '', usernsMode: '',
    capAdd: [], capDrop: ['ALL'], securityOpt: ['no-new-privileges'],
    readOnlyRootfs: n % 2 === 0,
    memoryLimitBytes: 268435456, nanoCpus: 500000000, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 256,
    restartPolicy: 'unless-stopped', restartMaxRetries: 0,
    envNames: ['PATH', 'HOME', 'APP_ENV', 'LOG_LEVEL'],
    command: ['/docker-entrypoint.sh', 'serve', '--port', '8080'],
    createdAtMs: now - 3_600_000, startedAtMs: now - 3_000_000, finishedAtMs: 0, exitCode: 0,
    pid: 10_000 + n, devices: [], imageUser: '', restartCount: 0, secretHits: [], project: team,
  };
}

/** Deterministic, fast PRNG (mulberry32) so a run's fleet shape is reproducible from its seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The LinkInventory the agent's ControllerLink reads: a host's containers, in memory. */
class SimInventory {
  constructor(hostIdx, m, rnd) {
    this.hostIdx = hostIdx;
    this.rnd = rnd;
    this.items = new Map();
    this.next = 0;
    this.ee = new EventEmitter();
    for (let i = 0; i < m; i++) this.add();
  }
  add() {
    const c = containerFacts(this.hostIdx, this.next++, this.rnd);
    this.items.set(c.id, c);
    return c;
  }
  inventory() {
    return [...this.items.values()];
  }
  subscribe(l) {
    this.ee.on('d', l);
    return () => this.ee.off('d', l);
  }
  /** `docker run -d`: a new running container. */
  start() {
    const c = this.add();
    this.ee.emit('d', { kind: 'UPSERT', containerId: c.id, container: c, eventAction: 'start', eventTimeMs: Date.now() });
    return c;
  }
  /** `docker stop` then `docker rm`: an exited upsert, then a remove. */
  stop() {
    if (this.items.size === 0) return undefined;
    const keys = [...this.items.keys()];
    const id = keys[Math.floor(this.rnd() * keys.length)];
    const c = { ...this.items.get(id), state: 'exited', finishedAtMs: Date.now(), exitCode: 0, pid: 0 };
    this.ee.emit('d', { kind: 'UPSERT', containerId: id, container: c, eventAction: 'die', eventTimeMs: Date.now() });
    this.items.delete(id);
    this.ee.emit('d', { kind: 'REMOVE', containerId: id, eventAction: 'destroy', eventTimeMs: Date.now() });
    return c;
  }
  random() {
    if (this.items.size === 0) return undefined;
    const keys = [...this.items.keys()];
    return this.items.get(keys[Math.floor(this.rnd() * keys.length)]);
  }
}

// ---------------------------------------------------------------- fleet

const silent = createLogger({ name: 'fleet-sim', level: 'silent' });

/**
 * A simulated fleet against one controller. `enrollAll()` mints N join tokens
 * (POST /v1/join-tokens) and enrolls N agents over the Enroll RPC;
 * `connectAll()` opens every agent's link at once and resolves when the
 * controller has acknowledged every agent's snapshot (the controller acks a
 * message only after storing it); `startChurn()` applies the churn schedule.
 */
class Fleet {
  constructor({ controller, api, agents, containers, stateDir, seed = 1, logger = silent, enrollConcurrency = 16, onCommand, spool = false, linkOptions = {} }) {
    /**
     * Each simulated agent keeps the agent's own durable report spool (a file in its state
     * directory), so reports made on a dying stream or while disconnected are resent, as a real
     * agent's are. Off: reports are made only while connected and one on a dying stream is lost.
     */
    this.spool = spool;
    /** Runs a controller command on a simulated host: (host, command) → CommandResult. Unset: the link refuses commands. */
    this.onCommand = onCommand;
    this.controller = controller;
    this.api = api;
    this.n = agents;
    this.m = containers;
    this.stateDir = stateDir;
    this.rnd = prng(seed);
    this.logger = logger;
    this.enrollConcurrency = enrollConcurrency;
    /** Extra ControllerLink options for every simulated agent (e.g. minSilenceMs). */
    this.linkOptions = linkOptions;
    this.hosts = [];
    this.counts = { starts: 0, stops: 0, violations: 0, violationsSkipped: 0, reconnects: 0, linkDowns: 0 };
    /** Why links went down, by code and message: the simulated agents' view. */
    this.linkErrors = {};
    this.violationIds = [];
    /** "agentId/containerId" of every container churn started, and of every one it stopped and removed. */
    this.started = [];
    this.stopped = [];
  }

  async enrollAll() {
    const idx = Array.from({ length: this.n }, (_, i) => i);
    const tokens = await pool(idx, 8, async (i) => {
      const r = await this.api.post('/v1/join-tokens', { ttl: '1h', description: `fleet-sim host ${i}` });
      if (r.status !== 201 && r.status !== 200) throw new Error(`POST /v1/join-tokens: ${r.status} ${r.body.slice(0, 300)}`);
      return r.json.token;
    });
    const relay = this.n > 15 ? await sourceSpreadingRelay(this.controller.grpcAddress) : undefined;
    try {
      this.hosts = await pool(idx, this.enrollConcurrency, async (i) => {
        const hostname = `sim-${String(i).padStart(5, '0')}`;
        const dir = join(this.stateDir, hostname);
        mkdirSync(dir, { recursive: true });
        const credentials = await enroll({
          controller: relay?.address ?? this.controller.grpcAddress, token: tokens[i], caFingerprint: this.controller.caFingerprint, stateDir: dir, hostname, timeoutMs: 60_000,
        });
        // The link dials the controller itself, not the relay.
        credentials.identity.controller = this.controller.grpcAddress;
        return this.host(i, hostname, credentials);
      });
    } finally {
      await relay?.close();
    }
  }

  host(i, hostname, credentials) {
    return { idx: i, hostname, credentials, agentId: credentials.identity.agentId, inventory: new SimInventory(i, this.m, prng(i + 1)), link: undefined, snapshotSeq: 0, snapshotAt: undefined };
  }

  /**
   * Opens every link at once (a fleet reconnecting to a restarted controller).
   * Resolves with the ms until the controller acknowledged every snapshot
   * (and the first, median, 99th); after `timeoutMs`, with how many are missing.
   */
  /** `rampPerS` > 0: the links are started at that rate (agents a second) instead of all at once. */
  async connectAll({ timeoutMs = 600_000, rampPerS = 0 } = {}) {
    if (this.spool) {
      for (const h of this.hosts) h.spool ??= await ReportSpool.open({ path: join(this.stateDir, h.hostname, 'spool.jsonl'), logger: this.logger });
    }
    const t0 = performance.now();
    let pending = this.hosts.length;
    let done;
    const all = new Promise((res) => (done = res));
    const rampTimers = [];
    for (const [i, h] of this.hosts.entries()) {
      const link = new ControllerLink({
        credentials: h.credentials,
        inventory: h.inventory,
        hostFacts: async () => ({
          hostname: h.hostname, osPlatform: 'linux', osDistro: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0-sim', arch: 'x64',
          cpus: 8, memoryBytes: 32 * 2 ** 30, dockerVersion: '24.0.7', dockerApiVersion: '1.43', cgroupVersion: 2, cgroupDriver: 'systemd',
          labels: { fleet: 'sim', rack: `r${h.idx % 20}` },
        }),
        logger: this.logger,
        // The simulated agent applies every bundle, as a healthy agent does.
        onPolicy: (b) => ({ version: b.version, applied: true, error: '' }),
        ...(this.onCommand ? { onCommand: (cmd) => this.onCommand(h, cmd) } : {}),
        ...(h.spool ? { spool: h.spool } : {}),
        ...this.linkOptions,
      });
      h.link = link;
      let seenConnected = false;
      link.onState((s) => {
        // Wall-clock state changes (failover-sim's phase breakdown: dropped → connecting → welcomed).
        (h.stateLog ??= []).push([s, Date.now(), link.controllerAddress]);
        if (s === 'connected') {
          // Set in onWelcome right after the snapshot was written: its sequence number.
          h.snapshotSeq = link.seq;
          h.connections = (h.connections ?? 0) + 1;
          if (seenConnected) this.counts.reconnects += 1;
          seenConnected = true;
        } else if (s === 'backoff') {
          this.counts.linkDowns += 1;
          const why = `${link.error?.code ?? '?'}: ${(link.error?.message ?? '').slice(0, 100)}`;
          this.linkErrors[why] = (this.linkErrors[why] ?? 0) + 1;
        }
      });
      if (rampPerS > 0 && i > 0) rampTimers.push(setTimeout(() => link.state === 'stopped' || link.start(), (i / rampPerS) * 1000));
      else link.start();
    }
    // The controller acks a message only once stored, and in order.
    const poll = setInterval(() => {
      for (const h of this.hosts) {
        if (h.snapshotAt === undefined && h.link.state === 'connected' && h.snapshotSeq > 0 && h.link.acked >= h.snapshotSeq) {
          h.snapshotAt = performance.now() - t0;
          pending -= 1;
        }
      }
      if (pending === 0) done();
    }, 20);
    const timer = setTimeout(() => done(), timeoutMs);
    try {
      await all;
    } finally {
      clearInterval(poll);
      clearTimeout(timer);
      for (const t of rampTimers) clearTimeout(t);
    }
    const states = {};
    for (const h of this.hosts) if (h.snapshotAt === undefined) states[h.link.state] = (states[h.link.state] ?? 0) + 1;
    const times = this.hosts.map((h) => h.snapshotAt).filter((x) => x !== undefined).sort((a, b) => a - b);
    const at = (q) => (times.length ? times[Math.min(times.length - 1, Math.ceil(q * this.hosts.length) - 1)] : undefined);
    return {
      // undefined when some snapshot was not acknowledged within timeoutMs (`pending`, `pendingLinks` say which)
      allMs: pending === 0 ? times[times.length - 1] : undefined,
      firstMs: times[0], p50Ms: at(0.5), p99Ms: pending <= this.hosts.length * 0.01 ? at(0.99) : undefined,
      stored: times.length, pending, pendingLinks: states,
    };
  }

  connected() {
    return this.hosts.filter((h) => h.link?.state === 'connected').length;
  }

  /** Containers the simulated hosts run now. */
  liveContainers() {
    return this.hosts.reduce((a, h) => a + h.inventory.items.size, 0);
  }

  /** A random container id of host `h` (async like ProcFleet's). */
  async pick(h) {
    return h.inventory.random()?.id;
  }

  /**
   * Churn: `startsPerS` new containers, `stopsPerS` containers stopped and
   * removed, `violationsPerS` violation reports, fleet-wide, each on a random
   * host, spread over 50 ms ticks. Returns a stop function.
   */
  startChurn({ startsPerS = 0, stopsPerS = 0, violationsPerS = 0, usageReportMs = 0, usageChangingPct = 20 }) {
    const stopUsage = usageReportMs > 0 ? this.startUsage({ usageReportMs, usageChangingPct }) : () => {};
    const acc = { start: 0, stop: 0, violation: 0 };
    const tickMs = 50;
    let last = performance.now();
    const pick = () => this.hosts[Math.floor(this.rnd() * this.hosts.length)];
    const timer = setInterval(() => {
      const now = performance.now();
      const dt = (now - last) / 1000;
      last = now;
      acc.start += startsPerS * dt;
      acc.stop += stopsPerS * dt;
      acc.violation += violationsPerS * dt;
      for (; acc.start >= 1; acc.start -= 1) {
        const h = pick();
        if (h.link.state === 'connected') {
          this.started.push(`${h.agentId}/${h.inventory.start().id}`);
          this.counts.starts += 1;
        }
      }
      for (; acc.stop >= 1; acc.stop -= 1) {
        const h = pick();
        const c = h.link.state === 'connected' ? h.inventory.stop() : undefined;
        if (c) {
          this.stopped.push(`${h.agentId}/${c.id}`);
          this.counts.stops += 1;
        }
      }
      for (; acc.violation >= 1; acc.violation -= 1) this.reportViolation(pick());
    }, tickMs);
    return () => {
      clearInterval(timer);
      stopUsage();
    };
  }

  /**
   * Live usage as the agent reports it: every `usageReportMs` (each host at its own phase) the
   * host's running containers are "sampled" and passed through the agent's own
   * UsageReportFilter, so only what moved is sent (plus its 60 s heartbeat), as a real agent
   * does. Each tick `usageChangingPct` % of the containers move by more than the filter's CPU
   * step; the rest hold still. Not sent while disconnected; after a reconnect everything again.
   * Returns a stop function.
   */
  startUsage({ usageReportMs, usageChangingPct }) {
    const { UsageReportFilter, toUsageReportMessage } = require('@bulkhead/agent/dist/cgroup/usage-report');
    const MiB = 1048576;
    const timers = [];
    this.counts.usageReports ??= 0;
    this.counts.usageEntries ??= 0;
    for (const h of this.hosts) {
      const filter = new UsageReportFilter();
      const state = new Map();
      let conn;
      const tick = () => {
        if (h.link?.state !== 'connected') return;
        if (conn !== h.connections) {
          conn = h.connections;
          filter.reset();
        }
        const at = Date.now();
        const samples = [];
        for (const c of h.inventory.items.values()) {
          let u = state.get(c.id);
          if (!u) state.set(c.id, (u = { cpu: Math.round(this.rnd() * 50) / 100, mem: (20 + Math.floor(this.rnd() * 200)) * MiB, io: 0, log: 4096 }));
          if (this.rnd() * 100 < usageChangingPct) {
            u.cpu = Math.round(((u.cpu + 0.1 + this.rnd() * 0.3) % 1) * 100) / 100;
            u.io += Math.floor(this.rnd() * 8 * MiB);
            u.log += 4096;
          }
          samples.push({
            containerId: c.id, at, cpuCores: u.cpu, cpuPercentOfQuota: null, cpuLimitCores: 0, memoryBytes: u.mem, memoryLimitBytes: 0, memoryPercentOfLimit: null,
            pids: 3, pidsLimit: 0, writableBytes: 64 * 1024, logBytes: u.log, blkioReadBytes: u.io, blkioWriteBytes: u.io * 2, blkioReadOps: 0, blkioWriteOps: 0,
            netRxBytes: 0, netTxBytes: 0, netRxPackets: 0, netTxPackets: 0, netRxDropped: 0, netTxDropped: 0, netRxBytesPerSec: 100, netTxBytesPerSec: 50, tcpConnections: 2, sockets: 3,
          });
        }
        for (const id of state.keys()) if (!h.inventory.items.has(id)) state.delete(id);
        const delta = filter.next(samples);
        if (delta.updates.length === 0 && delta.removed.length === 0) return;
        if (h.link.sendUsage(toUsageReportMessage(delta, at))) {
          this.counts.usageReports += 1;
          this.counts.usageEntries += delta.updates.length;
        } else {
          filter.reset();
        }
      };
      const first = setTimeout(() => {
        tick();
        timers.push(setInterval(tick, usageReportMs));
      }, Math.floor(this.rnd() * usageReportMs));
      timers.push(first);
    }
    return () => {
      for (const x of timers) clearTimeout(x);
    };
  }

  /** One violation report on `h`'s link (without a spool, only while connected). */
  reportViolation(h) {
    const c = h.inventory.random();
    if (!c || (h.link.state !== 'connected' && !h.spool)) {
      this.counts.violationsSkipped += 1;
      return undefined;
    }
    const id = `sim-${randomBytes(12).toString('hex')}`;
    h.link.report({
      id, containerId: c.id, containerName: c.name, imageRef: c.imageRef, project: c.project,
      ruleId: 'no-privileged', severity: 'high', mode: 'enforce', source: 'reaction',
      message: `container ${c.name} is privileged`, evidenceJson: JSON.stringify([{ location: 'HostConfig.Privileged', detail: 'true' }]),
      denied: false, action: { type: 'stop', result: 'ok', error: '', durationMs: 12.5, detail: '' },
      atMs: Date.now(), policyVersion: 1, exemptedBy: '',
    });
    this.counts.violations += 1;
    this.violationIds.push({ id, agentId: h.agentId });
    return id;
  }

  /**
   * Waits until the controller acknowledged every message each link sent so far
   * (it acks only after storing). Reads ControllerLink's sequence counter, a
   * private field: checked, so a rename fails loudly instead of passing.
   */
  async drained(timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let behind = 0;
      for (const h of this.hosts) {
        const seq = h.link.seq;
        if (typeof seq !== 'number') throw new Error('ControllerLink has no numeric `seq` field any more; update bench/lib/fleet-sim.js');
        if (h.link.state !== 'connected' || h.link.acked < seq) behind += 1;
      }
      if (behind === 0) return true;
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  stop() {
    for (const h of this.hosts) h.link?.stop();
  }
}

// ---------------------------------------------------------------- measuring

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v) => Math.round(v * 100) / 100;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]) };
}

const CLK_TCK = 100; // USER_HZ on Linux

/** utime + stime of a process in seconds, from /proc/<pid>/stat. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function loadAverage() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

module.exports = { REPLICA_FILES, startController, apiClient, pool, Fleet, SimInventory, containerFacts, prng, summary, cpuSeconds, rssBytes, loadAverage };
