#!/usr/bin/env node
// Benchmark: two active controller replicas on one PostgreSQL, one SIGKILLed
// under load. N simulated agents × M containers (bench/lib/fleet-sim.js: real
// join tokens, real Enroll RPC, one mutual-TLS AgentLink stream per agent
// through the agent's own ControllerLink, given both replicas' addresses) —
// half of them list replica A first, half replica B, so each replica holds
// about half the fleet.
//
// Phases (BENCHMARKS.md "fleet-sim", failover):
//   1. enroll N agents through A; open every link; wait until every snapshot
//      is stored (acknowledged);
//   2. churn and violation reports start; after a steady spell, a stream of
//      manual `pause` actions, each sent through replica B's API for a
//      container of an agent held by A (forwarded to A while A lives, then
//      served by B once the agent moved), runs across the kill;
//   3. A is SIGKILLed; for each of A's agents: ms from the kill until its link
//      is connected to B and B acknowledged its new snapshot (stored);
//   4. verify: every violation the simulated agents reported is stored once
//      (by id, in the database); every action's answer against what the
//      simulated agents ran: an action answered "done" that no agent ran is
//      lost, one run twice (by command id) is doubled, one answered "not
//      carried out" (BK_ERR_AGENT_OFFLINE) that an agent ran contradicts its
//      answer; `agent_offline` alerts raised (none is right: every agent was
//      served all along); "raising an alert failed" lines in B's log.
// Bounded: every phase has a deadline; it stops everything it started.
// Traffic goes to 127.0.0.1 and a unix socket only.
'use strict';
const { mkdtempSync, rmSync, mkdirSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { parseArgs } = require('node:util');
const { performance } = require('node:perf_hooks');
const { Client } = require('pg');
const { startController, apiClient, summary, loadAverage, cpuSeconds } = require('./lib/fleet-sim');
const { ProcFleet } = require('./lib/fleet-sim-procs');
const { startPrivatePostgres, processTree } = require('./lib/private-postgres');

const HELP = `usage: node bench/failover-sim.js [options]
  --agents N              simulated agents (default 200; BENCH_FAILOVER_AGENTS)
  --containers M          containers per agent (default 20; BENCH_FAILOVER_CONTAINERS)
  --violations-per-s X    violation reports per second, fleet-wide (default 20)
  --actions-per-s X       manual pause actions per second through replica B (default 5)
  --heartbeat-interval D  controllers' heartbeat interval (default 2s)
  --offline-after D       controllers' offline-after (default 12s)
  --timeout S             give up waiting for A's agents after S seconds (default 120)
  --procs P               simulator child processes, each owning a slice of the agents
                          (default: one per 250 agents)
  --controller-cpus LIST  pin both controllers (taskset), e.g. 0
  --sim-cpus LIST         pin the simulator (its children and this process) and PostgreSQL, e.g. 1:
                          with --controller-cpus 0, B has a core to itself (as on a host of its own)
  --out FILE              result JSON (default bench/results/failover-sim.json)
environment:
  BENCH_B_CPU_PROF=DIR     run replica B with node --cpu-prof (written to DIR when B stops)
  BENCH_SIM_CPU_PROF=DIR   run each simulator child with node --cpu-prof (written to DIR when it exits)
  BENCH_DIAG_DIR=DIR      diagnostics: both controllers' log lines (a.jsonl, b.jsonl), pg_stat_activity
                          every 250 ms (pg.jsonl; gaps between samples show this process's event loop
                          stalls) and the phase starts (phase.jsonl), each line with ms since start
`;

function options() {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string' }, containers: { type: 'string' }, 'violations-per-s': { type: 'string' },
      'actions-per-s': { type: 'string' }, 'heartbeat-interval': { type: 'string' }, 'offline-after': { type: 'string' },
      timeout: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' }, procs: { type: 'string' }, 'controller-cpus': { type: 'string' }, 'sim-cpus': { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (v, d, name) => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: want a number ≥ 0, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    agents: num(values.agents ?? process.env.BENCH_FAILOVER_AGENTS, 200, 'agents'),
    containers: num(values.containers ?? process.env.BENCH_FAILOVER_CONTAINERS, 20, 'containers'),
    violationsPerS: num(values['violations-per-s'], 20, 'violations-per-s'),
    actionsPerS: num(values['actions-per-s'], 5, 'actions-per-s'),
    heartbeatInterval: values['heartbeat-interval'] ?? '2s',
    offlineAfter: values['offline-after'] ?? '12s',
    timeoutS: num(values.timeout, 120, 'timeout'),
    procs: values.procs !== undefined ? Math.max(1, num(values.procs, 1, 'procs')) : undefined,
    controllerCpus: values['controller-cpus'],
    simCpus: values['sim-cpus'],
    out: values.out ?? join(__dirname, 'results', 'failover-sim.json'),
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The kernel's TCP counters that say a connect was not taken at once (Linux, machine-wide):
 * ListenOverflows — a connection dropped because a listener's accept queue was full (the
 * client retransmits its SYN 1 s later, then 3 s, 7 s…); TCPSynRetrans — SYNs sent again.
 * Undefined where /proc/net/netstat is not there.
 */
function tcpCounters() {
  try {
    const lines = require('node:fs').readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/);
    const get = (n) => Number(values[names.indexOf(n)]);
    return { listenOverflows: get('ListenOverflows'), synRetrans: get('TCPSynRetrans') };
  } catch {
    return undefined;
  }
}
/** The machine's CPU time (all cores), busy and in all, in seconds, from /proc/stat; undefined elsewhere. */
function machineCpu() {
  try {
    const f = require('node:fs').readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    const total = f.reduce((x, y) => x + y, 0);
    return { busy: (total - f[3] - f[4]) / 100, total: total / 100 }; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** CPU seconds of every process of the PostgreSQL tree, by pid (backends come and go). */
function treeCpu(rootPid) {
  const out = new Map();
  for (const pid of processTree(rootPid)) {
    try { out.set(pid, cpuSeconds(pid)); } catch { /* gone */ }
  }
  return out;
}
/** CPU used between two treeCpu readings: processes alive at both, plus those started since (an exited one's last part is missed). */
const treeDelta = (a, b) => [...b].reduce((sum, [pid, s]) => sum + s - (a.get(pid) ?? 0), 0);

const tcpDelta = (a, b) => (a && b ? { listenOverflows: b.listenOverflows - a.listenOverflows, synRetrans: b.synRetrans - a.synRetrans } : undefined);

async function main() {
  const o = options();
  o.procs ??= Math.max(1, Math.ceil(o.agents / 250));
  const dir = mkdtempSync(join(tmpdir(), 'bk-failover-sim-'));
  const stops = [];
  const result = { benchmark: 'failover-sim', date: new Date().toISOString(), node: process.version, options: { ...o, out: undefined } };
  const bLines = { alertFailed: 0, errors: 0 };
  let fleet;
  try {
    const pg = await startPrivatePostgres();
    stops.push(() => pg.stop());
    result.postgres = pg.version;
    if (o.simCpus) {
      // PostgreSQL's backends fork from the postmaster after this, so they inherit its CPUs.
      const { execFileSync } = require('node:child_process');
      for (const pid of [process.pid, ...processTree(pg.postmasterPid)]) execFileSync('taskset', ['-a', '-p', '-c', o.simCpus, String(pid)], { stdio: 'ignore' });
    }
    const DIAG = process.env.BENCH_DIAG_DIR;
    const diagT0 = performance.now();
    const diagLog = (f, o) => { if (DIAG) require('node:fs').appendFileSync(join(DIAG, f), JSON.stringify({ t: Math.round(performance.now() - diagT0), ...o }) + '\n'); };
    if (DIAG) {
      const dc = new Client({ connectionString: pg.url });
      await dc.connect();
      let on = true;
      stops.push(async () => { on = false; await dc.end().catch(() => {}); });
      (async () => {
        while (on) {
          try {
            const r = await dc.query(`select state, coalesce(wait_event_type,'') wt, coalesce(wait_event,'') we, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) q, count(*)::int n, max(extract(epoch from now()-query_start))::float maxs from pg_stat_activity where backend_type='client backend' and pid <> pg_backend_pid() group by 1,2,3,4 order by n desc`);
            diagLog('pg.jsonl', { rows: r.rows });
          } catch (e) { diagLog('pg.jsonl', { err: e.message }); }
          await sleep(250);
        }
      })();
    }
    const a = await startController({ dir: join(dir, 'a'), databaseUrl: pg.url, cpus: o.controllerCpus, heartbeatInterval: o.heartbeatInterval, offlineAfter: o.offlineAfter, onLine: (l) => diagLog('a.jsonl', l) });
    stops.push(() => a.stop());
    const b = await startController({
      dir: join(dir, 'b'), databaseUrl: pg.url, cpus: o.controllerCpus,
      nodeArgs: process.env.BENCH_B_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_B_CPU_PROF] : [], heartbeatInterval: o.heartbeatInterval, offlineAfter: o.offlineAfter, replicaOf: a,
      onLine: (l) => {
        diagLog('b.jsonl', l);
        if (l.msg === 'raising an alert failed') bLines.alertFailed += 1;
        if (l.level >= 50) bLines.errors += 1;
      },
    });
    stops.push(() => b.stop());
    const apiA = apiClient({ port: a.apiPort, ca: a.ca, apiKey: a.adminApiKey });
    const apiB = apiClient({ port: b.apiPort, ca: b.ca, apiKey: a.adminApiKey, maxSockets: 16 });

    // The simulated agents run in o.procs child processes (bench/lib/fleet-sim-procs.js); each
    // runs every command it gets (a pause) and counts it by command id (run twice is a finding).
    // Half the fleet lists A first, half B first: each replica holds about half.
    fleet = new ProcFleet({
      procs: o.procs, cpus: o.simCpus, controller: a, api: apiA, agents: o.agents, containers: o.containers, stateDir: join(dir, 'agents'), spool: true,
      // Host i runs in child i % procs: alternate A-first and B-first by i / procs, so every child
      // holds about as many of A's agents as of B's. (By i % 2, with 4 children, two of them held
      // all of A's agents: the takeover's client-side TLS handshakes and stream set-ups — as much
      // CPU per agent as B's side — queued in two event loops, and each child's agents were
      // welcomed together at the end of its own queue, at a time set by its share of A's agents.)
      controllersFor: (idx) => (Math.floor(idx / o.procs) % 2 === 0 ? [a.grpcAddress, b.grpcAddress] : [b.grpcAddress, a.grpcAddress]),
    });
    stops.push(() => fleet.stop());
    result.procs = o.procs;
    const t0 = performance.now();
    await fleet.enrollAll();
    result.enrollMs = Math.round(performance.now() - t0);
    diagLog('phase.jsonl', { phase: 'connect' });
    const tcpAtConnect = tcpCounters();
    const connect = await fleet.connectAll({ timeoutMs: o.timeoutS * 1000 });
    result.connect = connect;
    result.connect.tcp = tcpDelta(tcpAtConnect, tcpCounters());
    if (connect.pending > 0) throw new Error(`${connect.pending} snapshots not stored within ${o.timeoutS} s`);
    await sleep(100); // one more status from every child
    const onA = fleet.hosts.filter((h) => h.link.controllerAddress === a.grpcAddress);
    result.agentsOnA = onA.length;
    result.agentsOnB = fleet.hosts.length - onA.length;

    const stopChurn = fleet.startChurn({ startsPerS: o.agents / 60, stopsPerS: o.agents / 60, violationsPerS: o.violationsPerS });
    stops.push(stopChurn);
    await sleep(5_000);

    // Manual actions through B for containers of A's agents, across the kill.
    const actions = [];
    let actionsOn = true;
    let killedAt;
    /** Times are from the kill (negative before it). */
    const killAt = () => killedAt ?? performance.now();
    const actionLoop = (async () => {
      const gap = o.actionsPerS > 0 ? 1000 / o.actionsPerS : Infinity;
      const inflight = [];
      while (actionsOn && Number.isFinite(gap)) {
        const h = onA[Math.floor(Math.random() * onA.length)];
        const cid = await fleet.pick(h).catch(() => undefined);
        const c = cid ? { id: cid } : undefined;
        if (c) {
          const rec = { agentId: h.agentId, containerId: c.id, sentAt: performance.now() - killAt() };
          actions.push(rec);
          inflight.push(apiB.post(`/v1/containers/${h.agentId}/${c.id}/actions`, { action: 'pause' }).then((r) => {
            rec.status = r.status;
            rec.ms = performance.now() - killAt() - rec.sentAt;
            if (r.status === 200) rec.commandId = r.json?.id;
            else rec.code = r.json?.code ?? String(r.body).slice(0, 120);
          }, (e) => { rec.status = 0; rec.code = e.code ?? e.message; }));
        }
        await sleep(gap);
      }
      await Promise.all(inflight);
    })();
    // B's CPU rate while it serves its half of the fleet under the same churn, just before the
    // kill: the takeover's CPU (bCpuTakeoverS) includes this steady work for its whole length.
    const bCpuSpell = cpuSeconds(b.pid);
    const spellT0 = performance.now();
    await sleep(3_000);
    const bCpuSteadyPerS = Math.round(((cpuSeconds(b.pid) - bCpuSpell) / ((performance.now() - spellT0) / 1000)) * 1000) / 1000;

    // The kill: every stream A held breaks at once.
    const offlineBefore = await countAlerts(pg.url, 'agent_offline');
    const tcpAtKill = tcpCounters();
    killedAt = performance.now();
    const killedAtWall = Date.now(); // the children report wall-clock times
    // B's own CPU over the takeover (utime + stime): what the machine's load does not change much.
    const bCpuAtKill = cpuSeconds(b.pid);
    // Where the machine's CPU went over the takeover: B, the simulator (children and this process), PostgreSQL, the rest.
    const cpuAtKill = { machine: machineCpu(), children: fleet.childStats.map((c) => c.cpuS), self: process.cpuUsage(), pg: treeCpu(pg.postmasterPid) };
    diagLog('phase.jsonl', { phase: 'kill' });
    process.kill(a.pid, 'SIGKILL');
    // When the kernel had torn A down (its sockets closed): the agents cannot notice before.
    const aExited = a.exitedAt.then((at) => at - killedAtWall);
    // Back: a connection to B caught up (everything up to its snapshot acknowledged, i.e. stored).
    const back = new Map();
    const deadline = killedAt + o.timeoutS * 1000;
    while (back.size < onA.length && performance.now() < deadline) {
      for (const h of onA) {
        if (back.has(h)) continue;
        const e = h.caughtUp.find(([addr, at]) => addr === b.grpcAddress && at >= killedAtWall);
        if (e) back.set(h, e[1] - killedAtWall);
      }
      await sleep(20);
    }
    const bCpuTakeoverS = Math.round((cpuSeconds(b.pid) - bCpuAtKill) * 100) / 100;
    const takeoverS = (performance.now() - killedAt) / 1000;
    const machineEnd = machineCpu();
    const r2 = (x) => Math.round(x * 100) / 100;
    const selfCpu = process.cpuUsage(cpuAtKill.self);
    const cpuAccount = {
      seconds: r2(takeoverS),
      bCpuS: bCpuTakeoverS,
      simChildrenCpuS: fleet.childStats.map((c, i) => r2(c.cpuS - cpuAtKill.children[i])),
      simParentCpuS: r2((selfCpu.user + selfCpu.system) / 1e6),
      postgresCpuS: r2(treeDelta(cpuAtKill.pg, treeCpu(pg.postmasterPid))),
      ...(cpuAtKill.machine && machineEnd ? { machineBusyCpuS: r2(machineEnd.busy - cpuAtKill.machine.busy), machineCpuS: r2(machineEnd.total - cpuAtKill.machine.total) } : {}),
    };
    if (cpuAccount.machineBusyCpuS !== undefined) {
      cpuAccount.otherCpuS = r2(cpuAccount.machineBusyCpuS - cpuAccount.bCpuS - cpuAccount.simChildrenCpuS.reduce((x, y) => x + y, 0) - cpuAccount.simParentCpuS - cpuAccount.postgresCpuS);
    }
    const tcpTakeover = tcpDelta(tcpAtKill, tcpCounters());
    const times = [...back.values()].sort((x, y) => x - y);
    result.failover = {
      agentsOnA: onA.length, back: back.size, missing: onA.length - back.size,
      /** Wall-clock ms (Date.now) of the kill, to cut the takeover out of a --cpu-prof profile (bench/lib/cpuprofile-window.js). */
      killedAtWall,
      msToAllBack: back.size === onA.length ? Math.round(times.at(-1)) : undefined,
      ms: summary(times), targetMs: 5000,
      /** CPU seconds replica B used from the kill until the last agent was back (or the timeout). */
      bCpuTakeoverS,
      /** B's CPU seconds per second over the 3 s before the kill (its half of the fleet, churn, actions). */
      bCpuSteadyPerS,
      /** Machine-wide TCP counters over the takeover: connects to B dropped on a full accept queue, SYNs retransmitted. */
      tcp: tcpTakeover,
      /**
       * CPU seconds from the kill until the last agent was back: B, each simulator child, this
       * process, PostgreSQL, the machine busy and in all (cores × seconds), and the rest (other
       * processes on the machine, kernel work not charged to these). Busy near all = the machine
       * was the bound.
       */
      cpu: cpuAccount,
    };
    result.failover.phases = phases(onA, killedAtWall, b.grpcAddress, back);
    result.failover.aExitedMs = await aExited;
    // Per simulator child: when its agents of A noticed the drop and started the good attempt
    // (a child late as a whole is the simulator, all late alike is the controllers or the machine).
    result.failover.perChild = fleet.children.map((c, ci) => {
      const mine = onA.filter((h) => h.child === c);
      const p = phases(mine, killedAtWall, b.grpcAddress, back);
      return { child: ci, agentsOfA: mine.length, dropNoticedMs: p.dropNoticedMs, goodAttemptStartMs: p.goodAttemptStartMs, connectToWelcomeMs: p.connectToWelcomeMs };
    });
    await sleep(5_000); // actions and reports keep going on B alone
    actionsOn = false;
    await actionLoop;
    stopChurn();
    const drained = await fleet.drained(60_000);
    const rep = await fleet.report();
    const ran = rep.ran;

    // Verify.
    const reported = rep.violationIds.map((v) => v.id);
    const stored = await storedViolations(pg.url, reported);
    const byOutcome = {};
    let lost = 0;
    let doubled = 0;
    let contradicted = 0;
    const doneIds = new Set();
    for (const r of actions) {
      const key = r.status === 200 ? 'done' : `${r.status} ${r.code}`;
      byOutcome[key] = (byOutcome[key] ?? 0) + 1;
      if (r.status === 200) {
        doneIds.add(r.commandId);
        if (!(ran.get(r.commandId) >= 1)) lost += 1;
      }
    }
    for (const n of ran.values()) if (n > 1) doubled += 1;
    // A command an agent ran must have been answered "done" or "unconfirmed" to its caller
    // ("unconfirmed" answers carry no command id): runs beyond those were answered
    // "not carried out".
    const unconfirmed = actions.filter((r) => r.code === 'BK_ERR_ACTION_UNCONFIRMED').length;
    const runsNotAnsweredDone = [...ran.keys()].filter((id) => !doneIds.has(id)).length;
    contradicted = Math.max(0, runsNotAnsweredDone - unconfirmed);
    const duringFailover = actions.filter((r) => r.sentAt >= 0 && r.sentAt <= (result.failover.msToAllBack ?? o.timeoutS * 1000));
    result.actions = {
      sent: actions.length, byOutcome, agentRuns: ran.size, lost, ranTwice: doubled, ranThoughAnsweredNotCarriedOut: contradicted,
      sentDuringFailover: duringFailover.length,
      answerMsDuringFailover: summary(duringFailover.filter((r) => r.ms !== undefined).map((r) => r.ms).sort((x, y) => x - y)),
    };
    result.violations = { reported: reported.length, stored, lost: reported.length - stored, drained };
    result.alerts = { agentOfflineRaised: (await countAlerts(pg.url, 'agent_offline')) - offlineBefore, raiseFailedLinesOnB: bLines.alertFailed, errorLinesOnB: bLines.errors };
    result.loadAverage = loadAverage();
    result.reconnects = rep.counts.reconnects;
    result.linkErrors = rep.linkErrors;
    // Each simulator child's largest event-loop delay (ms) and CPU seconds: a starved simulator shows here.
    result.simulatorChildren = rep.children;
  } catch (e) {
    // A run that breaks still reports how far it got.
    result.error = e.message;
    result.loadAverage = loadAverage();
    if (fleet) result.simulatorChildren = fleet.childStats;
  } finally {
    for (const s of stops.reverse()) {
      try { await s(); } catch { /* best effort */ }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  if (result.error) throw new Error(result.error);
}

/**
 * Where each of A's agents spent its way back (ms from the kill, wall clock as the
 * simulator children saw it): the stream drop noticed (the link in back-off), the
 * attempt that succeeded started (connecting to B: the back-off wait is before it),
 * welcomed (TLS + hello + welcome done), caught up (snapshot acknowledged). Plus how
 * many attempts it took, and per 250 ms after the kill how many agents started
 * their good attempt and how many were caught up (a histogram of arrivals vs service).
 */
function phases(onA, killedAtWall, bAddr, back) {
  const rows = [];
  for (const h of onA) {
    const caught = back.get(h);
    if (caught === undefined) continue;
    const after = h.states.filter(([, at]) => at >= killedAtWall).map(([st, at, addr]) => [st, at - killedAtWall, addr]);
    const drop = after.find(([st]) => st === 'backoff');
    const welcomed = after.find(([st, , addr]) => st === 'connected' && addr === bAddr);
    const lastConnecting = after.filter(([st, at]) => st === 'connecting' && (!welcomed || at <= welcomed[1])).at(-1);
    rows.push({
      drop: drop?.[1], start: lastConnecting?.[1], welcomed: welcomed?.[1], caught,
      attempts: after.filter(([st, at]) => st === 'connecting' && (!welcomed || at <= welcomed[1])).length,
    });
  }
  const s = (f) => summary(rows.map(f).filter((x) => Number.isFinite(x)));
  const hist = {};
  for (const r of rows) {
    for (const [k, v] of [['drop', r.drop], ['start', r.start], ['caught', r.caught]]) {
      if (!Number.isFinite(v)) continue;
      const bucket = Math.floor(v / 250) * 250;
      hist[bucket] ??= { drop: 0, start: 0, caught: 0 };
      hist[bucket][k] += 1;
    }
  }
  const attempts = {};
  for (const r of rows) attempts[r.attempts] = (attempts[r.attempts] ?? 0) + 1;
  return {
    dropNoticedMs: s((r) => r.drop),
    backoffWaitMs: s((r) => r.start - r.drop),
    goodAttemptStartMs: s((r) => r.start),
    connectToWelcomeMs: s((r) => r.welcomed - r.start),
    welcomeToCaughtUpMs: s((r) => r.caught - r.welcomed),
    attemptsToB: attempts,
    histogram250ms: hist,
  };
}

async function withDb(url, fn) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function storedViolations(url, ids) {
  return withDb(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM violations WHERE id = ANY($1)', [ids])).rows[0].n));
}

function countAlerts(url, type) {
  return withDb(url, async (c) => Number((await c.query('SELECT coalesce(sum(count), 0) AS n FROM alerts WHERE type = $1', [type])).rows[0].n));
}

main().catch((e) => {
  process.stderr.write(`failover-sim: ${e.stack ?? e}\n`);
  process.exit(1);
});
