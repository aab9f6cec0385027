// The simulated fleet of bench/lib/fleet-sim.js spread over several child
// processes (bench/lib/fleet-sim-worker.js), each owning a slice of the agents.
// Enrollment happens here (Fleet.enrollAll: join tokens through the API, the real
// Enroll RPC); the enrolled credentials go to the children, which open the links.
// This process keeps a view of every link (state, controller address, seq, acked)
// updated from the children's status messages every 20 ms, and the wall-clock
// moment (Date.now(), the same clock in every process) each connection was caught
// up (everything up to its snapshot acknowledged, i.e. stored).
//
// Why: one Node process hosting 1,000 agents ran out of CPU and stalled for
// seconds during a fleet connect or a failover, so the figures measured the
// simulator (BENCHMARKS.md, failover).
'use strict';
const { fork } = require('node:child_process');
const { join } = require('node:path');
const { Fleet, loadAverage } = require('./fleet-sim');

const STATES = ['connecting', 'connected', 'backoff', 'stopped'];

class ProcFleet {
  /**
   * `procs` children; the rest as Fleet (controller, api, agents, containers, stateDir, spool,
   * linkOptions). `controllersFor(idx)` gives each host's controller list (default: the one).
   */
  constructor({ procs, controllersFor, nice = 0, cpus, ...fleetOpts }) {
    this.procs = Math.max(1, procs);
    /**
     * The children's nice value. The scheduler shares a busy machine's cores per process, so
     * P children at the controller's priority get P shares to its one: on a loaded 2-core
     * machine 8 children took 45-64 % of a core while the controller got 8-13 % (BENCHMARKS.md).
     * A positive value lets the controller have its share first.
     */
    this.nice = nice;
    /** taskset CPU list for every child ("1"), or undefined. */
    this.cpus = cpus;
    this.fleetOpts = fleetOpts;
    this.enroller = new Fleet(fleetOpts);
    this.controllersFor = controllersFor ?? (() => [fleetOpts.controller.grpcAddress]);
    this.children = [];
    /** idx → { idx, hostname, agentId, child, link: { state, controllerAddress, seq, acked }, caughtUp: [[addr, atMs]] } */
    this.hosts = [];
    this.rid = 0;
    this.waiting = new Map();
    /** Per child: the largest event-loop delay it reported, ms, and its CPU seconds. */
    this.childStats = [];
    /** Per child: its latest counts, live containers and link errors (status messages). */
    this.childCounts = [];
  }

  async enrollAll() {
    await this.enroller.enrollAll();
    this.hosts = this.enroller.hosts.map((h) => ({
      idx: h.idx, hostname: h.hostname, agentId: h.agentId, credentials: h.credentials,
      link: { state: 'connecting', controllerAddress: undefined, seq: 0, acked: 0 }, caughtUp: [], states: [],
    }));
  }

  /** Starts the children and hands each its slice (host i to child i % procs). */
  async startChildren() {
    const slices = Array.from({ length: this.procs }, () => []);
    for (const h of this.hosts) slices[h.idx % this.procs].push(h);
    await Promise.all(slices.map(async (slice, ci) => {
      // BENCH_SIM_CPU_PROF=DIR: each child under node --cpu-prof (written to DIR when it exits).
      const execArgv = [...process.execArgv, ...(process.env.BENCH_SIM_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_SIM_CPU_PROF] : [])];
      // cpus: started through taskset (the IPC channel's descriptor survives its exec).
      const pin = this.cpus ? { execPath: 'taskset', execArgv: ['-c', String(this.cpus), process.execPath, ...execArgv] } : { execArgv };
      const child = fork(join(__dirname, 'fleet-sim-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', ...pin });
      if (this.nice) require('node:os').setPriority(child.pid, this.nice);
      const stat = { loopDelayMaxMs: 0, cpuS: 0, hosts: slice.length };
      this.childStats.push(stat);
      const cc = { counts: {}, live: 0, linkErrors: {} };
      this.childCounts.push(cc);
      this.children.push(child);
      for (const h of slice) h.child = child;
      const byIdx = new Map(slice.map((h) => [h.idx, h]));
      let ready;
      const readyP = new Promise((res, rej) => {
        ready = res;
        child.once('exit', (code, sig) => rej(new Error(`fleet-sim child ${ci} exited (${code ?? sig})`)));
      });
      child.on('message', (m) => {
        if (m.t === 'ready') ready();
        else if (m.t === 'status') {
          for (const [idx, st, addr, seq, acked] of m.links) {
            const h = byIdx.get(idx);
            h.link.state = STATES[st];
            h.link.controllerAddress = addr;
            h.link.seq = seq;
            h.link.acked = acked;
          }
          for (const [idx, addr, at] of m.events) byIdx.get(idx).caughtUp.push([addr, at]);
          for (const [idx, st, at, addr] of m.transitions ?? []) byIdx.get(idx).states.push([st, at, addr]);
          stat.loopDelayMaxMs = Math.max(stat.loopDelayMaxMs, m.loopDelayMaxMs);
          cc.counts = m.counts;
          cc.live = m.live;
          if (m.linkErrors) cc.linkErrors = m.linkErrors;
          stat.cpuS = (m.cpu.user + m.cpu.system) / 1e6;
        } else if (m.t === 'answer' || m.t === 'error') {
          const w = this.waiting.get(m.rid);
          if (!w) return;
          this.waiting.delete(m.rid);
          if (m.t === 'error') w.rej(new Error(m.message));
          else w.res(m.value);
        } else if (m.t === 'error') process.stderr.write(`fleet-sim child ${ci}: ${m.message}\n`);
      });
      child.send({
        t: 'init', controllers: [this.fleetOpts.controller.grpcAddress], containers: this.fleetOpts.containers, stateDir: this.fleetOpts.stateDir,
        seed: 1 + ci, spool: this.fleetOpts.spool ?? false, linkOptions: this.fleetOpts.linkOptions,
        hosts: slice.map((h) => ({
          idx: h.idx, hostname: h.hostname,
          credentials: { ...h.credentials, identity: { ...h.credentials.identity, controller: this.controllersFor(h.idx)[0], controllers: this.controllersFor(h.idx) } },
        })),
      });
      await readyP;
    }));
  }

  ask(child, m, timeoutMs = 120_000) {
    const rid = ++this.rid;
    return new Promise((res, rej) => {
      const timer = setTimeout(() => {
        this.waiting.delete(rid);
        rej(new Error(`fleet-sim child did not answer ${m.t} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(rid, { res: (v) => (clearTimeout(timer), res(v)), rej: (e) => (clearTimeout(timer), rej(e)) });
      child.send({ ...m, rid });
    });
  }

  /**
   * Opens every link at once in every child; resolves when every host's first connection
   * was caught up (its snapshot stored), or at `timeoutMs` with how many are missing.
   * Times in ms from this call.
   */
  async connectAll({ timeoutMs = 600_000, rampPerS = 0 } = {}) {
    if (!this.children.length) await this.startChildren();
    const t0 = Date.now();
    // A ramp is shared out: each child starts its slice at its share of the rate.
    for (const c of this.children) c.send({ t: 'connect', timeoutMs, rampPerS: rampPerS / this.children.length });
    const deadline = t0 + timeoutMs;
    while (Date.now() < deadline && this.hosts.some((h) => h.caughtUp.length === 0)) await new Promise((r) => setTimeout(r, 20));
    const times = this.hosts.filter((h) => h.caughtUp.length).map((h) => h.caughtUp[0][1] - t0).sort((a, b) => a - b);
    const pending = this.hosts.length - times.length;
    const states = {};
    for (const h of this.hosts) if (!h.caughtUp.length) states[h.link.state] = (states[h.link.state] ?? 0) + 1;
    const at = (q) => (times.length ? times[Math.min(times.length - 1, Math.ceil(q * this.hosts.length) - 1)] : undefined);
    return { allMs: pending === 0 ? times.at(-1) : undefined, firstMs: times[0], p50Ms: at(0.5), p99Ms: pending <= this.hosts.length * 0.01 ? at(0.99) : undefined, stored: times.length, pending, pendingLinks: states };
  }

  /** Fleet's counts, summed over the children (as of their last status, ≤ 20 ms old). */
  get counts() {
    const out = { starts: 0, stops: 0, violations: 0, violationsSkipped: 0, reconnects: 0, linkDowns: 0 };
    for (const c of this.childCounts) for (const [k, v] of Object.entries(c.counts)) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  /** Link errors by reason, summed (as of the children's last full status, ≤ 0.5 s old). */
  get linkErrors() {
    const out = {};
    for (const c of this.childCounts) for (const [k, v] of Object.entries(c.linkErrors)) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  connected() {
    return this.hosts.filter((h) => h.link.state === 'connected').length;
  }

  liveContainers() {
    return this.childCounts.reduce((a, c) => a + c.live, 0);
  }

  /** Fleet-wide churn rates, split evenly over the children. */
  startChurn({ startsPerS = 0, stopsPerS = 0, violationsPerS = 0, usageReportMs = 0, usageChangingPct = 20 }) {
    const n = this.children.length;
    const share = (x) => x / n;
    // Usage is per host (an interval and a share of its containers), not a fleet-wide rate: passed on as is.
    for (const c of this.children) c.send({ t: 'churn', rates: { startsPerS: share(startsPerS), stopsPerS: share(stopsPerS), violationsPerS: share(violationsPerS), usageReportMs, usageChangingPct } });
    return () => {
      for (const c of this.children) if (c.connected) c.send({ t: 'stopChurn' });
    };
  }

  /** A random container id of host `h` (from its child). */
  pick(h) {
    return this.ask(h.child, { t: 'pick', idx: h.idx }, 30_000);
  }

  async drained(timeoutMs = 60_000) {
    const r = await Promise.all(this.children.map((c) => this.ask(c, { t: 'drained', timeoutMs }, timeoutMs + 30_000)));
    return r.every(Boolean);
  }

  /** Every child's counts, link errors, reported violation ids and commands run, merged. */
  async report() {
    const rs = await Promise.all(this.children.map((c) => this.ask(c, { t: 'report' })));
    const out = { counts: {}, linkErrors: {}, violationIds: [], started: [], stopped: [], ran: new Map() };
    for (const r of rs) {
      for (const [k, v] of Object.entries(r.counts)) out.counts[k] = (out.counts[k] ?? 0) + v;
      for (const [k, v] of Object.entries(r.linkErrors)) out.linkErrors[k] = (out.linkErrors[k] ?? 0) + v;
      out.violationIds.push(...r.violationIds);
      out.started.push(...r.started);
      out.stopped.push(...r.stopped);
      for (const [id, n] of Object.entries(r.ran)) out.ran.set(id, (out.ran.get(id) ?? 0) + n);
    }
    out.children = this.childStats;
    return out;
  }

  async stop() {
    await Promise.all(this.children.map(async (c) => {
      if (!c.connected) return;
      const exited = new Promise((r) => c.once('exit', r));
      await this.ask(c, { t: 'stop' }, 10_000).catch(() => undefined);
      const t = setTimeout(() => c.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }));
  }
}

module.exports = { ProcFleet, loadAverage };
