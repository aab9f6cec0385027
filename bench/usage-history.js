#!/usr/bin/env node
// Benchmark: what the recent usage history (0022_usage_history) adds to storing usage reports,
// at the store alone — no gRPC, no simulator — so the figure is the database work and nothing
// else. A migrated SQLite store (the built controller's openStore), A agents × C containers;
// every round each agent stores one usage report of all its containers (applyUsage, as the
// agent link does), 30 s of reading time after the previous round. First `--fill` rounds with a
// 30 s history interval (every round appends: the rings fill up to their 60 points), then the
// measured `--rounds` with the default 60 s interval, so every other round appends a point to
// every (full) ring and drops its oldest, and the others leave the rings alone. Measured per
// round: this process's CPU (SQLite runs in it, as in the controller), and at the end the
// database file. BENCH_CONTROLLER_DIST=<another checkout>/packages/controller/dist runs the same
// rounds on that build's store (e.g. before the history existed: the interval is then ignored).
//
//   node bench/usage-history.js [--agents 50] [--containers 100] [--fill 62] [--rounds 8] [--store postgres]
// --store postgres: a private PostgreSQL cluster (bench/lib/private-postgres.js); CPU is then this
// process's plus the cluster's (its backends do the work), and the size is the database's.
// (about 1–3 minutes at the defaults; the result also goes to bench/results/usage-history.json)
'use strict';
const { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { parseArgs } = require('node:util');

const { values } = parseArgs({ options: { agents: { type: 'string' }, containers: { type: 'string' }, rounds: { type: 'string' }, fill: { type: 'string' }, store: { type: 'string' } } });
const STORE = values.store ?? 'sqlite';
if (STORE !== 'sqlite' && STORE !== 'postgres') throw new Error('--store must be sqlite or postgres');
const FILL = Number(values.fill ?? 62);
const A = Number(values.agents ?? 50);
const C = Number(values.containers ?? 100);
const ROUNDS = Number(values.rounds ?? 8);
const dist = process.env.BENCH_CONTROLLER_DIST || resolve(__dirname, '../packages/controller/dist');
const { openStore } = require(join(dist, 'store/open-store.js'));

const MiB = 1048576;
const T0 = Date.parse('2026-12-07T00:00:00Z');

function report(agentId, at, round) {
  const rows = [];
  for (let i = 0; i < C; i++) {
    rows.push({
      agentId, containerId: `${agentId.slice(4)}${String(i).padStart(4, '0')}`.padEnd(64, 'f'), takenAt: new Date(at), receivedAt: new Date(at),
      cpuPercent: (i * 7 + round * 13) % 100, cpuPercentOfQuota: null, cpuLimitCores: 0, memoryBytes: (20 + ((i + round) % 200)) * MiB, memoryLimitBytes: 0,
      pids: 3, pidsLimit: 0, writableBytes: 65536, logBytes: 4096 * round, blkioReadBytes: round * MiB, blkioWriteBytes: round * 2 * MiB, blkioReadOps: 0, blkioWriteOps: 0,
      netRxBytes: 0, netTxBytes: 0, netRxPackets: 0, netTxPackets: 0, netRxDropped: 0, netTxDropped: 0, netRxBytesPerSec: 100, netTxBytesPerSec: 50, tcpConnections: 2, sockets: 3,
    });
  }
  return rows;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bk-usage-history-'));
  const path = join(dir, 'bulkhead.db');
  let pg;
  if (STORE === 'postgres') {
    const { startPrivatePostgres, processTree } = require('./lib/private-postgres');
    pg = await startPrivatePostgres();
    pg.cpuSeconds = () => processTree(pg.postmasterPid).reduce((a, p) => { try { return a + require('./lib/fleet-sim').cpuSeconds(p); } catch { return a; } }, 0);
  }
  const store = await openStore(pg ? { kind: 'postgres', connectionString: pg.url } : { kind: 'sqlite', path });
  const out = { benchmark: 'usage-history', dist, store: STORE, agents: A, containers: A * C, rounds: [] };
  try {
    const agents = Array.from({ length: A }, (_, i) => `agt_${String(i).padStart(8, '0')}`);
    const f0 = performance.now();
    for (let r = 0; r < FILL; r++) {
      for (const a of agents) await store.usage.applyUsage(a, report(a, T0 + r * 30_000, r), [], { historyIntervalMs: 30_000 });
    }
    out.fillS = Math.round((performance.now() - f0) / 1000);
    for (let r = FILL; r < FILL + ROUNDS; r++) {
      const at = T0 + r * 30_000;
      const c0 = process.cpuUsage();
      const p0 = pg ? pg.cpuSeconds() : 0;
      const w0 = performance.now();
      for (const a of agents) await store.usage.applyUsage(a, report(a, at, r), [], { historyIntervalMs: 60_000 });
      const cpu = process.cpuUsage(c0);
      const pgMs = pg ? Math.round((pg.cpuSeconds() - p0) * 1000) : 0;
      out.rounds.push({
        round: r, newInterval: r % 2 === 0, cpuMs: Math.round((cpu.user + cpu.system) / 1000) + pgMs, postgresCpuMs: pg ? pgMs : undefined, wallMs: Math.round(performance.now() - w0),
      });
    }
    const h = store.usage.getUsageHistory ? await store.usage.getUsageHistory(agents[0], report(agents[0], T0, 0)[0].containerId) : undefined;
    out.historyPointsOfOneContainer = h ? h.length : null;
    if (pg) {
      const { Client } = require('pg');
      const c = new Client({ connectionString: pg.url });
      await c.connect();
      const q = await c.query("select pg_database_size(current_database()) as db, coalesce(pg_total_relation_size(to_regclass('container_usage_history')), 0) as history");
      await c.end();
      out.postgresDatabaseMb = Math.round(Number(q.rows[0].db) / MiB);
      out.postgresHistoryTableMb = Math.round(Number(q.rows[0].history) / MiB);
    } else {
      const size = (f) => { try { return statSync(join(dir, f)).size; } catch { return 0; } };
      out.sqliteFileMb = Math.round(size('bulkhead.db') / MiB);
      out.sqliteWalMb = Math.round(size('bulkhead.db-wal') / MiB);
    }
  } finally {
    await store.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  // Without a fill, the first round creates every row: left out.
  const steady = FILL > 0 ? out.rounds : out.rounds.slice(1);
  const mean = (xs) => Math.round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
  out.steadyCpuMsPerRound = { appending: mean(steady.filter((x) => x.newInterval).map((x) => x.cpuMs)), notAppending: mean(steady.filter((x) => !x.newInterval).map((x) => x.cpuMs)) };
  out.loadAverage = require('node:os').loadavg().map((x) => Math.round(x * 100) / 100);
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(join(__dirname, 'results', 'usage-history.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(JSON.stringify(out, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
