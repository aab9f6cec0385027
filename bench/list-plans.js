#!/usr/bin/env node
// Benchmark tool: the query plan and cost of every container-list query the API can send
// (GET /v1/containers filters agent, state, image, label, project, rule, q × every sort,
// ascending and descending, first page and a page after a cursor), on SQLite or on a private
// PostgreSQL cluster, with a fleet's worth of rows seeded through the store
// (lib/seed-store.js). The SQL is the store's own: every statement listContainers sends is
// captured at kysely's executor and its key query (the first) is explained as sent —
// EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL — and each call is
// timed in-process (median of --reps), which is the database work a request pays without
// HTTP, JSON or waiting for a core. Plans that sort every match ("USE TEMP B-TREE FOR ORDER
// BY", "Sort") or read the whole table or index are flagged.
//
//   node bench/list-plans.js                        # SQLite, 100 agents × 100 containers
//   node bench/list-plans.js --store postgres
//   node bench/list-plans.js --only 'sort=-cpu'     # combinations whose name contains this
//
// Bounded: a few hundred small queries; everything it starts is stopped; no network.
'use strict';
const { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { parseArgs } = require('node:util');
const { seedStore, RULES } = require('./lib/seed-store');
const { startPrivatePostgres } = require('./lib/private-postgres');
const { loadAverage } = require('./lib/fleet-sim');

const REPO = resolve(__dirname, '..');
const { values: o } = parseArgs({
  options: {
    store: { type: 'string', default: 'sqlite' },
    agents: { type: 'string', default: '100' },
    containers: { type: 'string', default: '100' },
    violations: { type: 'string', default: '20000' },
    reps: { type: 'string', default: '7' },
    only: { type: 'string' },
    analyze: { type: 'boolean' },
    root: { type: 'string', default: REPO },
    out: { type: 'string' },
    help: { type: 'boolean' },
  },
});
if (o.help) {
  process.stdout.write(readFileSync(__filename, 'utf8').split('\n').slice(1, 18).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const ROOT = resolve(o.root);
const log = (...a) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);

// The executor of the build being measured: every compiled statement passes through it.
const kysely = require(require.resolve('kysely', { paths: [join(ROOT, 'packages/controller')] }));
const captured = [];
let capturing = false;
for (const proto of [Object.getPrototypeOf(kysely.DefaultQueryExecutor.prototype), kysely.DefaultQueryExecutor.prototype]) {
  if (!Object.prototype.hasOwnProperty.call(proto, 'executeQuery') || proto.__bkPatched) continue;
  const orig = proto.executeQuery;
  proto.__bkPatched = true;
  proto.executeQuery = function (compiled, ...rest) {
    if (capturing) captured.push({ sql: compiled.sql, parameters: [...compiled.parameters] });
    return orig.call(this, compiled, ...rest);
  };
}

function combinations(fleet) {
  const filters = {
    none: {},
    agent: { agentId: fleet.agents[37] },
    'state=running': { state: 'running' },
    'state=exited': { state: 'exited' },
    'image=redis': { image: 'redis' },
    'image=no-such': { image: 'no-such-image' },
    'label=env=staging': { labels: ['env=staging'] },
    'label=team=payments': { labels: ['team=payments'] },
    'project=payments': { project: 'payments' },
    [`rule=${RULES[5]}`]: { rule: RULES[5] },
    'q=sim-42-': { search: 'sim-42-' },
    'label+project': { labels: ['env=staging'], project: 'search' },
    // GET /v1/containers?state=running&label=team=payments&image=redis (api-at-scale's filtered list): its
    // image substring is misestimated on PostgreSQL (16 rows for 1,253).
    'state+label+image': { state: 'running', labels: ['team=payments'], image: 'redis' },
  };
  const sorts = [undefined, 'agent', 'name', 'state', 'image', 'cpu', 'memory'];
  const out = [];
  for (const [fname, f] of Object.entries(filters)) {
    for (const s of sorts) {
      for (const desc of s === undefined ? [false] : [false, true]) {
        if (s === 'agent' && !desc) continue; // the default order
        const sort = s === undefined ? undefined : { field: s, desc };
        const name = `${fname} sort=${s === undefined ? '(default)' : (desc ? '-' : '') + s}`;
        if (o.only && !name.includes(o.only)) continue;
        out.push({ name, q: { ...f, sort, limit: 101 } });
      }
    }
  }
  return out;
}

function flags(planText, pg) {
  const f = [];
  if (pg) {
    if (/\bSort\b/.test(planText) && !/Incremental Sort/.test(planText)) f.push('sort');
    if (/Seq Scan on containers/.test(planText)) f.push('seq-scan');
  } else {
    if (/USE TEMP B-TREE FOR (?:RIGHT PART OF )?ORDER BY/.test(planText)) f.push('sort');
    if (/SCAN containers(?! USING)/.test(planText) || /SCAN c\b/.test(planText)) f.push('scan-table');
  }
  return f;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bk-list-plans-'));
  let pg;
  const out = { startedAt: new Date().toISOString(), store: o.store, root: ROOT, agents: Number(o.agents), containers: Number(o.containers), violations: Number(o.violations), load: [loadAverage()], results: [] };
  try {
    if (o.store === 'postgres') pg = await startPrivatePostgres({});
    const { openStore, storeConfigFor } = require(join(ROOT, 'packages/controller/dist/store/open-store.js'));
    const store = await openStore(storeConfigFor(join(dir, 'ctl'), pg?.url));
    await store.migrate();
    log(`seeding ${o.agents} × ${o.containers} containers, ${o.violations} violations`);
    const fleet = await seedStore(store, { agents: Number(o.agents), containers: Number(o.containers), violations: Number(o.violations), log });
    if (o.analyze && !pg) {
      // What `PRAGMA optimize` does on a store whose tables grew: statistics for the planner.
      const t = Date.now();
      await kysely.sql`analyze`.execute(store.db);
      log(`ANALYZE: ${Date.now() - t} ms`);
    }
    let explainer;
    if (pg) {
      const { Client } = require('pg');
      const c = new Client({ connectionString: pg.url });
      await c.connect();
      await c.query('VACUUM ANALYZE');
      await c.query('set max_parallel_workers_per_gather = 0');
      explainer = { explain: async (s) => (await c.query(`explain (analyze, buffers) ${s.sql}`, s.parameters)).rows.map((r) => r['QUERY PLAN']), close: () => c.end() };
    } else {
      const Sqlite = require(require.resolve('better-sqlite3', { paths: [join(ROOT, 'packages/controller')] }));
      const db = new Sqlite(join(dir, 'ctl', 'bulkhead.db'), { readonly: true, fileMustExist: true });
      explainer = { explain: async (s) => db.prepare(`explain query plan ${s.sql}`).all(...s.parameters.map((p) => (typeof p === 'boolean' ? Number(p) : p))).map((r) => `${'  '.repeat(Math.max(0, r.parent === 0 ? 0 : 1))}${r.detail}`), close: () => db.close() };
    }
    const reps = Number(o.reps);
    for (const combo of combinations(fleet)) {
      for (const page of ['first', 'after cursor']) {
        const q = { ...combo.q };
        if (page === 'after cursor') {
          const first = await store.listContainers(q);
          if (first.length < 101) continue;
          const last = first[99];
          q.after = { agentId: last.agentId, name: last.name, id: last.id, sortValue: last.sortValue };
        }
        const times = [];
        let rows = 0;
        let stmts;
        for (let i = 0; i < reps; i++) {
          captured.length = 0;
          capturing = true;
          const t = process.hrtime.bigint();
          rows = (await store.listContainers(q)).length;
          times.push(Number(process.hrtime.bigint() - t) / 1e6);
          capturing = false;
          stmts = captured.slice();
        }
        times.sort((a, b) => a - b);
        // On PostgreSQL an image filter first resolves the matching references (a `with recursive`
        // statement); when none matches that is the only statement, and the one explained.
        const keyQuery = stmts.find((s) => /^select/i.test(s.sql)) ?? stmts.find((s) => /^with/i.test(s.sql));
        let plan;
        try {
          plan = await explainer.explain(keyQuery);
        } catch (e) {
          plan = [`explain failed: ${e.message}`];
        }
        const resolve = keyQuery !== stmts.find((s) => /^with/i.test(s.sql)) ? stmts.find((s) => /^with/i.test(s.sql)) : undefined;
        const r = { name: `${combo.name}, ${page} page`, ...(resolve ? { resolveSql: resolve.sql } : {}), medianMs: Math.round(times[Math.floor(times.length / 2)] * 10) / 10, maxMs: Math.round(times[times.length - 1] * 10) / 10, rows, flags: flags(plan.join('\n'), !!pg), sql: keyQuery.sql, parameters: keyQuery.parameters, plan };
        out.results.push(r);
        log(`${r.name}: median ${r.medianMs} ms, ${rows} rows ${r.flags.length ? '[' + r.flags.join(',') + ']' : ''}\n    ${plan.join('\n    ')}`);
      }
    }
    await explainer.close();
    await store.close();
  } finally {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  out.load.push(loadAverage());
  out.finishedAt = new Date().toISOString();
  const file = o.out ?? join(REPO, `bench/results/list-plans-${o.store}.json`);
  mkdirSync(join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  const slow = [...out.results].sort((a, b) => b.medianMs - a.medianMs).slice(0, 15);
  log(`slowest:\n  ${slow.map((r) => `${r.medianMs} ms  ${r.name} ${r.flags.join(',')}`).join('\n  ')}`);
  log(`load ${out.load.map((l) => l.join('/')).join(' → ')}; results in ${file}`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
