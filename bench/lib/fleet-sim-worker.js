// One child process of a ProcFleet (bench/lib/fleet-sim-procs.js): owns a slice of
// the simulated agents — each the agent's own ControllerLink over its own
// mutual-TLS stream, exactly as in Fleet (bench/lib/fleet-sim.js), which it
// reuses — and talks to the parent over the IPC channel:
//   parent → worker: init, connect, churn, stopChurn, pick, drained, report, stop
//   worker → parent: ready, status (every 20 ms: the links' states that changed, "caught up" events
//                    with wall-clock times, this process's event-loop delay), answers
// Why processes: at 1,000 agents one Node process hosting every simulated agent ran
// out of CPU and its event loop stalled for seconds (BENCHMARKS.md, failover), so the
// figures measured the simulator, not the controller.
'use strict';
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { Fleet } = require('./fleet-sim');

const STATES = ['connecting', 'connected', 'backoff', 'stopped'];
let fleet;
let stopChurn;
let ticks = 0;
/** Per host: the address and seq of the connection whose caught-up moment was reported. */
const reported = new Map();
/** Per host: the link tuple last sent to the parent. */
const lastSent = new Map();
const events = [];
const ran = {};
const delay = monitorEventLoopDelay({ resolution: 20 });
delay.enable();

function send(m) {
  if (process.connected) process.send(m);
}

function statusLoop() {
  const timer = setInterval(() => {
    if (!fleet) return;
    const now = Date.now();
    const links = [];
    const transitions = [];
    for (const h of fleet.hosts) {
      const l = h.link;
      if (!l) continue;
      const addr = l.controllerAddress;
      // A connection is caught up once everything sent up to its snapshot (or up to the
      // welcome, when the snapshot was skipped) is acknowledged: the controller stores first.
      if (l.state === 'connected') {
        const key = reported.get(h.idx);
        if (!key || key.conn !== h.connections) {
          if (l.acked >= h.snapshotSeq) {
            reported.set(h.idx, { conn: h.connections });
            events.push([h.idx, addr, now]);
          }
        }
      }
      // Only links that changed since the last status (the parent keeps the rest): 250 links
      // 50 times a second were a tenth of this process's CPU in a failover (BENCHMARKS.md).
      const st = STATES.indexOf(l.state);
      const last = lastSent.get(h.idx);
      if (!last || last[1] !== st || last[2] !== addr || last[3] !== l.seq || last[4] !== l.acked) {
        const t = [h.idx, st, addr, l.seq, l.acked];
        lastSent.set(h.idx, t);
        links.push(t);
      }
      if (h.stateLog?.length) for (const [st, at, a] of h.stateLog.splice(0)) transitions.push([h.idx, st, at, a]);
    }
    const live = fleet.liveContainers();
    send({ t: 'status', at: now, links, events: events.splice(0), transitions, loopDelayMaxMs: Math.round(delay.max / 1e6), cpu: process.cpuUsage(), counts: fleet.counts, live, ...(++ticks % 25 === 0 ? { linkErrors: fleet.linkErrors } : {}) });
    delay.reset();
  }, 20);
  timer.unref();
}

process.on('message', async (m) => {
  try {
    switch (m.t) {
      case 'init': {
        fleet = new Fleet({
          controller: { grpcAddress: m.controllers[0] }, api: undefined, agents: m.hosts.length, containers: m.containers,
          stateDir: m.stateDir, seed: m.seed, spool: m.spool, linkOptions: m.linkOptions ?? {},
          onCommand: async (h, cmd) => {
            ran[cmd.id] = (ran[cmd.id] ?? 0) + 1;
            return { id: cmd.id, ok: true, detail: `paused by ${cmd.requestedBy}`, durationMs: 1, state: 'paused' };
          },
        });
        fleet.hosts = m.hosts.map((x) => {
          return fleet.host(x.idx, x.hostname, x.credentials);
        });
        send({ t: 'ready' });
        statusLoop();
        break;
      }
      case 'connect': {
        // "Caught up" is reported once per connection (Fleet counts them in h.connections).
        void fleet.connectAll({ timeoutMs: m.timeoutMs, rampPerS: m.rampPerS ?? 0 }).then((r) => send({ t: 'connected', r }));
        break;
      }
      case 'churn':
        stopChurn?.();
        stopChurn = fleet.startChurn(m.rates);
        break;
      case 'stopChurn':
        stopChurn?.();
        stopChurn = undefined;
        break;
      case 'pick': {
        const h = fleet.hosts.find((x) => x.idx === m.idx);
        send({ t: 'answer', rid: m.rid, value: h?.inventory.random()?.id });
        break;
      }
      case 'drained':
        send({ t: 'answer', rid: m.rid, value: await fleet.drained(m.timeoutMs) });
        break;
      case 'report':
        send({ t: 'answer', rid: m.rid, value: { counts: fleet.counts, linkErrors: fleet.linkErrors, violationIds: fleet.violationIds, started: fleet.started, stopped: fleet.stopped, ran } });
        break;
      case 'stop':
        stopChurn?.();
        fleet?.stop();
        send({ t: 'answer', rid: m.rid, value: true });
        setTimeout(() => process.exit(0), 200).unref();
        break;
      default:
        throw new Error(`unknown message ${m.t}`);
    }
  } catch (e) {
    send({ t: 'error', rid: m.rid, message: e.stack ?? String(e) });
  }
});
process.on('disconnect', () => process.exit(0));
