#!/usr/bin/env node
// A fleet reconnecting to its controller (a replica failover, a controller restart): how long
// until every agent's stream is back and caught up, with the inventory unchanged (the
// controller holds each agent's state hash: no snapshot is sent) and with every inventory
// changed while disconnected (a full snapshot each: what every reconnect cost before the
// state hash, issue 16).
//
//   node bench/fleet-reconnect.js [--agents N] [--containers M] [--store sqlite|postgres]
//
// Phases: enroll N agents (bench/lib/fleet-sim.js: each its own join token, key and mutual-TLS
// stream through the agent's real ControllerLink), connect all (full snapshots), wait until a
// heartbeat carried each agent's hash to the store, then twice: stop every link, reconnect all
// and time it (the controller acknowledges in order and only once stored, so "caught up" means
// the snapshot, when one is sent, is stored). Traffic goes to 127.0.0.1 only; everything
// started is stopped.
'use strict';
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir, cpus } = require('node:os');
const { join } = require('node:path');
const { parseArgs } = require('node:util');
const { startController, apiClient, Fleet, cpuSeconds, loadAverage } = require('./lib/fleet-sim');
const { startPrivatePostgres } = require('./lib/private-postgres');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

async function main() {
  const { values } = parseArgs({ options: { agents: { type: 'string' }, containers: { type: 'string' }, store: { type: 'string' } } });
  const agents = Number(values.agents ?? 300);
  const containers = Number(values.containers ?? 50);
  const storeKind = values.store ?? 'sqlite';
  const dir = mkdtempSync(join(tmpdir(), 'bk-fleet-reconnect-'));
  const cleanups = [];
  const result = { benchmark: 'fleet-reconnect', date: new Date().toISOString(), node: process.version, agents, containers, store: storeKind, loadAverageAtStart: loadAverage() };
  try {
    let databaseUrl;
    if (storeKind === 'postgres') {
      const pg = await startPrivatePostgres({ cpus: `0-${cpus().length - 1}` });
      cleanups.unshift(() => pg.stop());
      databaseUrl = pg.url;
    }
    const controller = await startController({ dir, databaseUrl, heartbeatInterval: '2s' });
    cleanups.unshift(() => controller.stop());
    const api = apiClient({ port: controller.apiPort, ca: controller.ca, apiKey: controller.adminApiKey, maxSockets: 8 });
    cleanups.unshift(() => api.close());
    const fleet = new Fleet({ controller, api, agents, containers, stateDir: join(dir, 'agents') });
    cleanups.unshift(() => fleet.stop());
    await fleet.enrollAll();
    log(`enrolled ${agents} agents`);

    const connect = async (label) => {
      for (const h of fleet.hosts) {
        h.snapshotAt = undefined;
        h.snapshotSeq = 0;
      }
      const cpu0 = cpuSeconds(controller.pid);
      const snap = await fleet.connectAll({ timeoutMs: 600_000 });
      const sent = fleet.hosts.reduce((a, h) => a + h.link.snapshots.sent, 0);
      const skipped = fleet.hosts.reduce((a, h) => a + h.link.snapshots.skipped, 0);
      const r = { allMs: snap.allMs === undefined ? null : Math.round(snap.allMs), p50Ms: Math.round(snap.p50Ms ?? NaN), pending: snap.pending, snapshotsSent: sent, snapshotsSkipped: skipped, controllerCpuS: Math.round((cpuSeconds(controller.pid) - cpu0) * 10) / 10, loadAverage: loadAverage() };
      log(`${label}: all caught up after ${r.allMs} ms (p50 ${r.p50Ms}); snapshots sent ${sent}, skipped ${skipped}; controller CPU ${r.controllerCpuS} s`);
      return r;
    };
    const disconnectAll = async () => {
      if (!(await fleet.drained(120_000))) throw new Error('the fleet did not drain');
      await sleep(5000); // a heartbeat (2 s) carries each agent's hash; the last-seen flush (≤ 1 s) stores it
      fleet.stop();
      await sleep(3000); // every stream closed and marked offline
    };

    result.firstConnect = await connect('first connect (full snapshots)');
    await disconnectAll();
    result.reconnectUnchanged = await connect('reconnect, inventories unchanged');
    await disconnectAll();
    // Every inventory changes while disconnected (no delta can be sent): one label on one container.
    for (const h of fleet.hosts) {
      const c = h.inventory.random();
      if (c) h.inventory.items.set(c.id, { ...c, labels: { ...c.labels, 'bench.reconnect': 'changed' } });
    }
    result.reconnectChanged = await connect('reconnect, every inventory changed while away');
    console.log(JSON.stringify(result, null, 2));
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
