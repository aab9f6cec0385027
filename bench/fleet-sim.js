#!/usr/bin/env node
// Benchmark: what one controller holds. N simulated agents × M containers
// (bench/lib/fleet-sim.js: real join tokens, real Enroll RPC, one mutual-TLS
// AgentLink stream per agent through the agent's own ControllerLink) against
// the built controller as a real process on loopback, on SQLite or on a
// private PostgreSQL cluster.
//
// Phases (also in BENCHMARKS.md "fleet-sim"):
//   1. enroll N agents (not timed as a figure; reported);
//   2. open every link at once; time until the controller acknowledged every
//      agent's snapshot (it acks only after storing);
//   3. settle, then a steady window with churn (default 1 % of containers per
//      minute, half starts, half stop+remove; violations per second): the
//      controller's CPU (utime+stime from /proc, share of one core) and RSS,
//      the PostgreSQL cluster's CPU, the simulator's own CPU, load average;
//   4. API latency, churn still running: sequential GETs over one keep-alive
//      HTTPS connection for the filtered container list, the violation list
//      and one container; p50/p90/p99;
//   5. verify: every link drained (all messages acknowledged) and the API's
//      container count equals the simulator's.
// Bounded: every phase has a deadline; it stops everything it started.
// Traffic goes to 127.0.0.1 only.
'use strict';
const { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, statSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { parseArgs } = require('node:util');
const { startController, apiClient, Fleet, summary, cpuSeconds, rssBytes, loadAverage } = require('./lib/fleet-sim');
const { ProcFleet } = require('./lib/fleet-sim-procs');
const { startPrivatePostgres, processTree } = require('./lib/private-postgres');

const HELP = `usage: node bench/fleet-sim.js [options]
  --agents N               simulated agents (default 100; BENCH_FLEET_AGENTS)
  --containers M           containers per agent (default 100; BENCH_FLEET_CONTAINERS)
  --store sqlite|postgres  controller store (default sqlite); postgres starts a private cluster
                           unless --database-url is given
  --database-url URL       an existing PostgreSQL database for the controller (loopback/socket only)
  --churn-pct-per-min P    containers changed per minute, % of the fleet (default 1): half
                           started (new), half stopped and removed
  --starts-per-s X         override the start rate (fleet-wide)
  --stops-per-s X          override the stop+remove rate
  --violations-per-s X     violation reports per second, fleet-wide (default 1)
  --usage-report-interval S  live usage reports: every S seconds each agent sends what moved (the
                           agent's own report filter: only changed containers, each at least once a
                           minute); default 0 = none (as in the figures before this option)
  --usage-changing-pct P   with usage: % of containers that move each report (default 20)
  --duration S             steady-state window in seconds (default 60)
  --settle S               wait after the last snapshot before measuring (default 10)
  --api-samples K          requests per API query (default 200)
  --controller-cpus LIST   pin the controller with taskset (e.g. 0); unset, it inherits this
                           process's affinity. A private PostgreSQL may always use every core
  --controller ADDR        use a running controller's gRPC address instead of starting one
                           (loopback only; needs --controller-api and --controller-data-dir)
  --controller-api ADDR    that controller's HTTPS API address
  --controller-data-dir D  its data dir (ca.crt, admin.apikey); --controller-pid for CPU/RSS
  --controller-pid PID
  --enroll-concurrency C   parallel enrollments (default 16)
  --connect-timeout S      give up waiting for the last snapshots after S seconds (default 600);
                           the run goes on and reports how many were missing
  --connect-rate R         open the links at R agents a second (default 0: all at once, a fleet
                           reconnecting to a restarted controller); a ramp is a fleet started
                           host by host, and lets the steady state be measured at sizes whose
                           all-at-once connect does not finish on this machine
  --sim-nice N             nice value of the --procs children (default 0); the scheduler shares
                           a busy machine per process, so P children at the controller's
                           priority get P shares to its one
  --out FILE               result JSON (default bench/results/fleet-sim.json)
  BENCH_CONTROLLER_BIN=FILE  start this build's controller (another checkout's
                           packages/controller/dist/cli/main.js) instead of this one's: before/after
  --procs P                run the simulated agents in P child processes (default 1: in this
                           one); at 1,000+ agents one process starves and the figures measure it
`;

function options() {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string' }, containers: { type: 'string' }, store: { type: 'string' }, 'database-url': { type: 'string' },
      'churn-pct-per-min': { type: 'string' }, 'usage-report-interval': { type: 'string' }, 'usage-changing-pct': { type: 'string' }, 'starts-per-s': { type: 'string' }, 'stops-per-s': { type: 'string' }, 'violations-per-s': { type: 'string' },
      duration: { type: 'string' }, settle: { type: 'string' }, 'api-samples': { type: 'string' }, 'controller-cpus': { type: 'string' },
      controller: { type: 'string' }, 'controller-api': { type: 'string' }, 'controller-data-dir': { type: 'string' }, 'controller-pid': { type: 'string' },
      'enroll-concurrency': { type: 'string' }, 'connect-timeout': { type: 'string' }, 'connect-rate': { type: 'string' }, 'sim-nice': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' }, procs: { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (v, d, name) => {
    const x = v === undefined ? d : Number(v);
    if (!Number.isFinite(x) || x < 0) throw new Error(`--${name} must be a non-negative number`);
    return x;
  };
  const agents = num(values.agents ?? process.env.BENCH_FLEET_AGENTS, 100, 'agents');
  const containers = num(values.containers ?? process.env.BENCH_FLEET_CONTAINERS, 100, 'containers');
  const churnPct = num(values['churn-pct-per-min'], 1, 'churn-pct-per-min');
  const perS = (agents * containers * churnPct) / 100 / 60 / 2;
  const store = values.store ?? 'sqlite';
  if (store !== 'sqlite' && store !== 'postgres') throw new Error('--store must be sqlite or postgres');
  for (const k of ['controller', 'controller-api']) {
    if (values[k] !== undefined && !/^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/.test(values[k])) throw new Error(`--${k} must be a loopback address (host:port)`);
  }
  if (values.controller !== undefined && (values['controller-api'] === undefined || values['controller-data-dir'] === undefined)) {
    throw new Error('--controller needs --controller-api and --controller-data-dir');
  }
  return {
    agents, containers, store, churnPct,
    databaseUrl: values['database-url'],
    startsPerS: num(values['starts-per-s'], perS, 'starts-per-s'),
    stopsPerS: num(values['stops-per-s'], perS, 'stops-per-s'),
    violationsPerS: num(values['violations-per-s'], 1, 'violations-per-s'),
    usageReportMs: num(values['usage-report-interval'], 0, 'usage-report-interval') * 1000,
    usageChangingPct: num(values['usage-changing-pct'], 20, 'usage-changing-pct'),
    durationS: num(values.duration, 60, 'duration'),
    settleS: num(values.settle, 10, 'settle'),
    apiSamples: num(values['api-samples'], 200, 'api-samples'),
    controllerCpus: values['controller-cpus'],
    external: values.controller === undefined ? undefined : {
      grpc: values.controller, api: values['controller-api'], dataDir: values['controller-data-dir'],
      pid: values['controller-pid'] === undefined ? undefined : Number(values['controller-pid']),
    },
    enrollConcurrency: num(values['enroll-concurrency'], 16, 'enroll-concurrency'),
    connectTimeoutS: num(values['connect-timeout'], 600, 'connect-timeout'),
    connectRate: num(values['connect-rate'], 0, 'connect-rate'),
    simNice: num(values['sim-nice'], 0, 'sim-nice'),
    out: values.out ?? join(__dirname, 'results', 'fleet-sim.json'),
    procs: Math.max(1, num(values.procs, 1, 'procs')),
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (b) => Math.round(b / 1048576);
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

/** The controller's warnings and errors, and its stream closes, by message (and reason). */
const controllerLog = {};
function countLine(l) {
  if (l.level < 40 && l.msg !== 'agent disconnected') return;
  const why = l.why ?? l.code ?? (typeof l.err === 'object' ? l.err?.message : l.err) ?? '';
  const k = `${l.msg}${why ? ` (${String(why).slice(0, 120)})` : ''}`;
  controllerLog[k] = (controllerLog[k] ?? 0) + 1;
}

async function main() {
  const o = options();
  const dir = mkdtempSync(join(tmpdir(), 'bk-fleet-sim-'));
  const cleanups = [];
  const result = {
    benchmark: 'fleet-sim', date: new Date().toISOString(), node: process.version, argv: process.argv.slice(2),
    agents: o.agents, containers: o.containers, totalContainers: o.agents * o.containers, store: o.store,
    churn: { pctPerMin: o.churnPct, startsPerS: o.startsPerS, stopsPerS: o.stopsPerS, violationsPerS: o.violationsPerS, usageReportS: o.usageReportMs / 1000, usageChangingPct: o.usageChangingPct },
    controllerBin: process.env.BENCH_CONTROLLER_BIN ?? null,
    loadAverageAtStart: loadAverage(),
  };
  let controller;
  try {
    let pgPids = () => [];
    if (o.external) {
      const [, apiPort] = o.external.api.split(/:(?=\d+$)/);
      controller = {
        pid: o.external.pid, grpcAddress: o.external.grpc, apiPort: Number(apiPort),
        ca: readFileSync(join(o.external.dataDir, 'ca.crt')), adminApiKey: readFileSync(join(o.external.dataDir, 'admin.apikey'), 'utf8').trim(),
        caFingerprint: require('@bulkhead/shared').certFingerprint(readFileSync(join(o.external.dataDir, 'ca.crt'), 'utf8')),
        stop: async () => undefined,
      };
    } else {
      let databaseUrl = o.databaseUrl;
      if (o.store === 'postgres' && !databaseUrl) {
        // Not pinned with the simulator: PostgreSQL may use every core.
        const pg = await startPrivatePostgres({ cpus: `0-${require('node:os').cpus().length - 1}` });
        cleanups.push(() => pg.stop());
        databaseUrl = pg.url;
        pgPids = () => processTree(pg.postmasterPid);
        result.postgresVersion = pg.version;
        log(`private PostgreSQL ${pg.version} in ${pg.dir}`);
      }
      controller = await startController({ dir, databaseUrl, cpus: o.controllerCpus, onLine: (l) => countLine(l) });
      cleanups.push(() => controller.stop());
      log(`controller pid ${controller.pid} grpc ${controller.grpcAddress} api ${controller.apiPort}`);
    }
    const api = apiClient({ port: controller.apiPort, ca: controller.ca, apiKey: controller.adminApiKey, maxSockets: 8 });
    cleanups.push(() => api.close());
    // --procs P > 1: the simulated agents run in P child processes (bench/lib/fleet-sim-procs.js).
    const procs = o.procs;
    result.procs = procs;
    const fleetOpts = { controller, api, agents: o.agents, containers: o.containers, stateDir: join(dir, 'agents'), enrollConcurrency: o.enrollConcurrency };
    const fleet = procs > 1 ? new ProcFleet({ procs, nice: o.simNice, ...fleetOpts }) : new Fleet(fleetOpts);
    result.simulatorNice = procs > 1 ? o.simNice : null;
    cleanups.push(() => fleet.stop());

    const procCpu = () => (controller.pid ? cpuSeconds(controller.pid) : NaN);
    const pgCpu = () => pgPids().reduce((a, p) => { try { return a + cpuSeconds(p); } catch { return a; } }, 0);

    let t = performance.now();
    await fleet.enrollAll();
    result.enrollS = Math.round((performance.now() - t) / 100) / 10;
    log(`enrolled ${o.agents} agents in ${result.enrollS} s`);

    // The simulator's own CPU (this process plus, with --procs, its children's last reports):
    // it shares the machine's cores with the controller, so the reading says how much it took.
    const simCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 + (procs > 1 ? fleet.childStats.reduce((a, c) => a + c.cpuS, 0) : 0); };
    const cpu0 = procCpu();
    const sim0 = simCpu();
    t = performance.now();
    result.connectRatePerS = o.connectRate || null; // null: all at once
    const snap = await fleet.connectAll({ timeoutMs: o.connectTimeoutS * 1000, rampPerS: o.connectRate });
    const r = (x) => (x === undefined ? null : Math.round(x));
    result.allSnapshotsStoredMs = r(snap.allMs);
    result.snapshotsStoredP50Ms = r(snap.p50Ms);
    result.snapshotsStoredP99Ms = r(snap.p99Ms);
    result.snapshotsStored = snap.stored;
    if (snap.pending > 0) result.snapshotsPendingAtTimeout = { count: snap.pending, links: snap.pendingLinks, linkErrors: { ...fleet.linkErrors } };
    log(`snapshots stored: ${snap.stored}/${o.agents}; all after ${result.allSnapshotsStoredMs} ms (p50 ${result.snapshotsStoredP50Ms}, p99 ${result.snapshotsStoredP99Ms})`);
    result.connectPhaseControllerCpuS = Math.round((procCpu() - cpu0) * 10) / 10;
    result.connectPhaseSimulatorCpuS = Math.round((simCpu() - sim0) * 10) / 10;
    result.rssAfterSnapshotsMb = controller.pid ? mb(rssBytes(controller.pid)) : null;
    result.reconnectsDuringConnect = fleet.counts.reconnects;
    result.loadAverageAfterSnapshots = loadAverage();

    const stopChurn = fleet.startChurn(o);
    cleanups.unshift(() => stopChurn());
    await sleep(o.settleS * 1000);

    // Steady window.
    const c0 = procCpu();
    const pg0 = pgCpu();
    const s0 = process.cpuUsage();
    const simAll0 = simCpu();
    const w0 = performance.now();
    const churn0 = { ...fleet.counts };
    const rss = [];
    result.loadAverageSteadyStart = loadAverage();
    while (performance.now() - w0 < o.durationS * 1000) {
      if (controller.pid) rss.push(rssBytes(controller.pid));
      await sleep(1000);
    }
    const wallS = (performance.now() - w0) / 1000;
    const s1 = process.cpuUsage(s0);
    result.steady = {
      windowS: Math.round(wallS),
      controllerCpuPctOfOneCore: controller.pid ? Math.round(((procCpu() - c0) / wallS) * 1000) / 10 : null,
      controllerRssMbMax: rss.length ? mb(Math.max(...rss)) : null,
      controllerRssMbLast: rss.length ? mb(rss[rss.length - 1]) : null,
      postgresCpuPctOfOneCore: o.store === 'postgres' && !o.databaseUrl ? Math.round(((pgCpu() - pg0) / wallS) * 1000) / 10 : null,
      simulatorCpuPctOfOneCore: Math.round(((s1.user + s1.system) / 1e6 / wallS) * 1000) / 10, // this process only (with --procs, the children: simulatorChildren)
      simulatorTotalCpuPctOfOneCore: Math.round(((simCpu() - simAll0) / wallS) * 1000) / 10, // this process and its children
      starts: fleet.counts.starts - churn0.starts,
      stops: fleet.counts.stops - churn0.stops,
      violations: fleet.counts.violations - churn0.violations,
      // With --usage-report-interval: usage reports and container entries the simulated agents sent in the window.
      usageReports: (fleet.counts.usageReports ?? 0) - (churn0.usageReports ?? 0),
      usageEntries: (fleet.counts.usageEntries ?? 0) - (churn0.usageEntries ?? 0),
      connectedAtEnd: fleet.connected(),
      reconnects: fleet.counts.reconnects - churn0.reconnects,
      loadAverageAtEnd: loadAverage(),
    };
    log('steady', JSON.stringify(result.steady));

    // API latency, churn running. One keep-alive connection, sequential.
    const one = apiClient({ port: controller.apiPort, ca: controller.ca, apiKey: controller.adminApiKey, maxSockets: 1 });
    cleanups.unshift(() => one.close());
    // A container picked from the simulator's inventory may be unknown to the controller for
    // a moment (churn removed it since, or its agent's start is not stored yet: an agent still
    // connecting when the connect phase timed out). That 404 is an answer, timed and counted
    // (notFound), not a failed run.
    let notFound = 0;
    const timed = async (path, { allow404 = false } = {}) => {
      const t0 = performance.now();
      const r = await one.get(path);
      const ms = performance.now() - t0;
      if (r.status === 404 && allow404) notFound += 1;
      else if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body.slice(0, 300)}`);
      return ms;
    };
    const hosts = fleet.hosts;
    const queries = {
      'GET /v1/containers?state=running&label=team=payments&image=redis&limit=100': () => '/v1/containers?state=running&label=team%3Dpayments&image=redis&limit=100',
      'GET /v1/containers?agent=<one>&state=running (one host)': (i) => `/v1/containers?agent=${hosts[i % hosts.length].agentId}&state=running`,
      'GET /v1/violations?limit=100': () => '/v1/violations?limit=100',
      'GET /v1/violations?severity=high&agent=<one>&limit=100': (i) => `/v1/violations?severity=high&agent=${hosts[i % hosts.length].agentId}&limit=100`,
      'GET /v1/containers/<agent>/<id>': async (i) => {
        const h = hosts[(i * 7919) % hosts.length];
        return `/v1/containers/${h.agentId}/${await fleet.pick(h)}`;
      },
    };
    result.api = {};
    result.loadAverageApiStart = loadAverage();
    const r0 = fleet.counts.reconnects;
    for (const [name, path] of Object.entries(queries)) {
      const xs = [];
      // At most `apiSamples` requests and, past 20, at most 90 s per query: a slow query must not
      // stretch the run by an hour.
      const until = performance.now() + 90_000;
      const q0 = procCpu();
      const qw0 = performance.now();
      notFound = 0;
      for (let i = 0; i < o.apiSamples && (i < 20 || performance.now() < until); i++) xs.push(await timed(await path(i), { allow404: name === 'GET /v1/containers/<agent>/<id>' }));
      result.api[name] = summary(xs);
      if (notFound > 0) result.api[name].notFound = notFound;
      // The controller's CPU per request, less its steady-state rate over the same wall time:
      // what a request costs, which machine load does not change (wall-clock latency it does).
      if (controller.pid && result.steady.controllerCpuPctOfOneCore !== null) {
        const cpuMs = (procCpu() - q0) * 1000 - ((performance.now() - qw0) * result.steady.controllerCpuPctOfOneCore) / 100;
        result.api[name].controllerCpuMsPerRequest = Math.round((cpuMs / xs.length) * 10) / 10;
      }
      log(name, JSON.stringify(result.api[name]));
    }
    result.reconnectsDuringApi = fleet.counts.reconnects - r0;
    stopChurn();

    // Verify: everything acknowledged, and the API shows exactly the simulator's live containers.
    const drained = await fleet.drained(120_000);
    if (procs > 1) await sleep(200); // the children's last status
    const live = fleet.liveContainers();
    let apiCount = 0;
    for (let offset = 0; ;) {
      const r = await api.get(`/v1/containers?limit=1000&offset=${offset}`);
      if (r.status !== 200) throw new Error(`GET /v1/containers: ${r.status}`);
      apiCount += r.json.items.length;
      if (r.json.nextOffset === null) break;
      offset = r.json.nextOffset;
    }
    result.verify = { drained, simulatorLiveContainers: live, apiLiveContainers: apiCount, reconnects: fleet.counts.reconnects, violationsReported: fleet.counts.violations };
    // SQLite: the database file and its WAL at the end (what the store holds, e.g. usage history rings).
    if (o.store === 'sqlite' && !o.external) {
      const size = (f) => { try { return statSync(join(dir, 'ctl', f)).size; } catch { return 0; } };
      result.sqliteFileMb = mb(size('bulkhead.db'));
      result.sqliteWalMb = mb(size('bulkhead.db-wal'));
    }
    log('verify', JSON.stringify(result.verify));
    result.loadAverageAtEnd = loadAverage();
    result.controllerLog = controllerLog;
    result.linkDowns = fleet.counts.linkDowns;
    result.linkErrors = fleet.linkErrors;
    if (procs > 1) result.simulatorChildren = fleet.childStats;
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
    if (!drained || live !== apiCount) process.exitCode = 1;
  } catch (err) {
    // Keep what was measured, and why it stopped (with the controller's last lines).
    result.error = err.message;
    result.controllerLastLines = controller?.lines?.slice(-40);
    result.controllerLog = controllerLog;
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
    throw err;
  } finally {
    for (const c of cleanups) {
      try { await c(); } catch (e) { log('cleanup:', e.message); }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
