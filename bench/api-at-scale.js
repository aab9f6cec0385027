#!/usr/bin/env node
// Benchmark: the HTTPS API's list and lookup latency with a fleet's worth of rows in the
// store (issue 16's "API p99 ≤ 100 ms at 2,000 agents × 100 containers"), on SQLite or on
// a private PostgreSQL cluster, without the fleet itself.
//
// The store is SEEDED DIRECTLY through the store's own write path (insertAgent,
// replaceContainers, removeContainer, insertViolation: the same calls the agent link
// makes), not through agents on the wire: that is bench/fleet-sim.js's job, and takes an
// hour at this size on a shared machine. Then the built controller runs as a real process
// (`serve`) on that database and sequential GETs over one keep-alive HTTPS connection time
// each query: p50/p90/p99/max and the controller's CPU per request.
//
// With --before DIR (a build of an older commit: DIR/packages/controller/dist), the
// database is seeded with that build's store and its controller is measured first; then
// this checkout's controller starts on the same database (running any new migration: its
// time is reported) and is measured. Before and after therefore see the very same rows.
//
//   node bench/api-at-scale.js                                   # SQLite, 2,000 × 100
//   node bench/api-at-scale.js --store postgres                  # private PostgreSQL
//   node bench/api-at-scale.js --before /tmp/base --store sqlite # before → after
//   node bench/api-at-scale.js --agents 100 --containers 20 --samples 20   # quick
//   node bench/api-at-scale.js --only "cpu|memory|q=|summary"     # only the queries whose name matches
//
// Bounded: every query has a sample count and a time budget; everything it started is
// stopped. Traffic goes to 127.0.0.1 only.
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { parseArgs } = require('node:util');
const { apiClient, prng, summary, cpuSeconds, loadAverage } = require('./lib/fleet-sim');
const { startPrivatePostgres, processTree } = require('./lib/private-postgres');
const { Client } = require('pg');

/** Runs SQL on the bench database as its owner; returns the rows. */
async function pgQuery(url, text) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

const REPO = resolve(__dirname, '..');

const { values: o } = parseArgs({
  options: {
    store: { type: 'string', default: 'sqlite' },
    agents: { type: 'string', default: '2000' },
    containers: { type: 'string', default: '100' },
    violations: { type: 'string', default: '100000' },
    samples: { type: 'string', default: '100' },
    'budget-s': { type: 'string', default: '60' },
    'settle-s': { type: 'string', default: '10' },
    before: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string', default: join(REPO, 'bench/results/api-at-scale.json') },
    help: { type: 'boolean' },
  },
});
if (o.help) {
  process.stdout.write(readFileSync(__filename, 'utf8').split('\n').slice(1, 25).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const N = Number(o.agents);
const M = Number(o.containers);
const V = Number(o.violations);
const SAMPLES = Number(o.samples);
const BUDGET_MS = Number(o['budget-s']) * 1000;

const { RULES, seedStore } = require('./lib/seed-store');

const log = (...a) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);

/** Seeds N agents × M containers (90 % running, 10 % exited, 1 % then removed) and V violations. */
const seed = (store) => seedStore(store, { agents: N, containers: M, violations: V, log });

function serve(root, dataDir, databaseUrl) {
  const ctl = join(root, 'packages/controller/dist/cli/main.js');
  const env = { ...process.env, BULKHEAD_LOG_LEVEL: 'info' };
  if (databaseUrl) env.BULKHEAD_DATABASE_URL = databaseUrl;
  else delete env.BULKHEAD_DATABASE_URL;
  const child = spawn('setpriv', ['--pdeathsig=TERM', '--', process.execPath, ctl, 'serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics'], {
    stdio: ['ignore', 'pipe', 'pipe'], env,
  });
  const lines = [];
  const t0 = Date.now();
  return new Promise((res, rej) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`controller not ready in 600 s:\n${lines.slice(-20).join('\n')}`)); }, 600_000);
    let buf = '';
    const feed = (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (lines.length > 200) lines.shift();
        try {
          const l = JSON.parse(line);
          if (l.msg === 'controller ready') {
            clearTimeout(timer);
            const exited = new Promise((r) => child.once('exit', r));
            res({
              pid: child.pid, apiPort: l.apiPort, startMs: Date.now() - t0, lines,
              async stop() {
                if (child.exitCode !== null || child.signalCode !== null) return;
                child.kill('SIGTERM');
                const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
                await exited;
                clearTimeout(t);
              },
            });
          }
        } catch { /* not JSON */ }
      }
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.once('exit', (code, sig) => { clearTimeout(timer); rej(new Error(`controller exited (${code ?? sig}):\n${lines.slice(-20).join('\n')}`)); });
  });
}

/**
 * CPU seconds of the PostgreSQL cluster, 0 without one: every live process of it, plus what
 * its exited children (parallel workers, closed backends) used, which the postmaster reaped
 * into its cutime/cstime; so a worker that exits between two readings is still counted.
 */
function pgCpu(pg) {
  if (!pg) return 0;
  const stat = readFileSync(`/proc/${pg.postmasterPid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let s = (Number(f[13]) + Number(f[14])) / 100;
  for (const pid of processTree(pg.postmasterPid)) {
    try { s += cpuSeconds(pid); } catch { /* gone */ }
  }
  return s;
}

async function measure(ctl, api, fleet, pg) {
  const rnd = prng(3);
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const results = {};
  const time = async (name, path, check = (r) => r.status === 200) => {
    if (o.only !== undefined && !new RegExp(o.only).test(name)) return;
    const lat = [];
    const cpu0 = cpuSeconds(ctl.pid);
    const pg0 = pgCpu(pg);
    const load0 = loadAverage()[0];
    const deadline = Date.now() + BUDGET_MS;
    let items;
    for (let i = 0; i < SAMPLES && Date.now() < deadline; i++) {
      const p = typeof path === 'function' ? path() : path;
      const t = process.hrtime.bigint();
      const r = await api.get(p);
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (!check(r)) throw new Error(`${p}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
      items = r.json?.items?.length;
    }
    const cpuMs = ((cpuSeconds(ctl.pid) - cpu0) * 1000) / lat.length;
    const pgMs = ((pgCpu(pg) - pg0) * 1000) / lat.length;
    const sorted = [...lat].sort((x, y) => x - y);
    const p95 = Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)] * 100) / 100;
    results[name] = { ...summary(lat), p95, cpuMsPerRequest: Math.round(cpuMs * 10) / 10, ...(pg ? { pgCpuMsPerRequest: Math.round(pgMs * 10) / 10 } : {}), items, load: [load0, loadAverage()[0]] };
    log(`${name}: p50 ${results[name].p50} ms, p95 ${results[name].p95} ms, p99 ${results[name].p99} ms (n ${lat.length}, ${items} items, ${results[name].cpuMsPerRequest} ms CPU/req${pg ? ` + PostgreSQL ${results[name].pgCpuMsPerRequest} ms` : ''}, load ${results[name].load.join('→')})`);
  };
  // Warm-up: the first queries after a start read pages from disk.
  for (let i = 0; i < 5; i++) await api.get('/v1/containers?state=running&label=team=payments&image=redis&limit=100');

  await time('containers: state+label+image, first page', '/v1/containers?state=running&label=team=payments&image=redis&limit=100');
  // Deep pages of the same filter: following nextCursor when the server gives one, else nextOffset.
  if (o.only === undefined || new RegExp(o.only).test('containers: state+label+image, every page in turn')) {
    const lat = [];
    const cpu0 = cpuSeconds(ctl.pid);
    const load0 = loadAverage()[0];
    const base = '/v1/containers?state=running&label=team=payments&image=redis&limit=100';
    let next = base;
    let pages = 0;
    let seen = 0;
    const ids = new Set();
    const deadline = Date.now() + BUDGET_MS * 2;
    while (next && Date.now() < deadline) {
      const t = process.hrtime.bigint();
      const r = await api.get(next);
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (r.status !== 200) throw new Error(`${next}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
      pages++;
      for (const c of r.json.items) ids.add(`${c.agentId}/${c.id}`);
      seen += r.json.items.length;
      next = r.json.nextCursor ? `${base}&cursor=${encodeURIComponent(r.json.nextCursor)}` : r.json.nextOffset !== null ? `${base}&offset=${r.json.nextOffset}` : undefined;
    }
    const name = 'containers: state+label+image, every page in turn';
    results[name] = { ...summary(lat), cpuMsPerRequest: Math.round((((cpuSeconds(ctl.pid) - cpu0) * 1000) / lat.length) * 10) / 10, pages, rows: seen, distinct: ids.size, complete: !next, load: [load0, loadAverage()[0]] };
    log(`${name}: p50 ${results[name].p50} ms, p99 ${results[name].p99} ms (${pages} pages, ${seen} rows, ${ids.size} distinct, complete ${!next})`);
  }
  await time('containers: one agent, running', () => `/v1/containers?agent=${pick(fleet.agents)}&state=running`);
  await time('containers: label only (env=staging)', '/v1/containers?label=env=staging&limit=100');
  await time('containers: state=exited', '/v1/containers?state=exited&limit=100');
  await time('containers: no filter', '/v1/containers?limit=100');
  await time('containers: image matching nothing (worst case)', '/v1/containers?image=no-such-image&limit=100');
  await time('violations: newest 100', '/v1/violations?limit=100');
  await time('violations: severity+agent', () => `/v1/violations?severity=high&agent=${pick(fleet.agents)}&limit=100`);
  await time('violations: severity=critical', '/v1/violations?severity=critical&limit=100');
  await time('one container', () => { const c = pick(fleet.sampleContainers); return `/v1/containers/${c.agentId}/${c.id}`; });
  await time('agents: first page (default)', '/v1/agents');
  await time('agents: limit=1000', '/v1/agents?limit=1000', (r) => r.status === 200 || r.status === 400);

  // The console's container view and overview (a build without them answers 400/404: skipped).
  if ((await api.get('/v1/summary')).status === 200) {
    const firstRule = RULES[5];
    await time('console: sort=-cpu (busiest first)', '/v1/containers?sort=-cpu&limit=100');
    await time('console: sort=-memory, one project', '/v1/containers?sort=-memory&project=payments&limit=100');
    await time('console: sort=name', '/v1/containers?sort=name&limit=100');
    await time('console: sort=image, state=running', '/v1/containers?sort=image&state=running&limit=100');
    await time('console: sort=-state', '/v1/containers?sort=-state&limit=100');
    await time('console: q=free text (name substring)', () => `/v1/containers?q=sim-${Math.floor(rnd() * N)}-&limit=100`);
    // Free text's other shapes: an image most containers run (many matches: the page fills
    // early), an id prefix, a text nothing matches (nothing stops a walk), two characters
    // (below the trigram index's 3: a walk).
    await time('console: q=image many run (nginx)', '/v1/containers?q=nginx&limit=100');
    await time('console: q=id prefix (8 chars)', () => `/v1/containers?q=${pick(fleet.sampleContainers).id.slice(0, 8)}&limit=100`);
    await time('console: q=matching nothing', '/v1/containers?q=no-such-container&limit=100');
    await time('console: q=2 characters (walk)', '/v1/containers?q=q7&limit=100');
    await time(`console: rule=${firstRule} (breaks rule X)`, `/v1/containers?rule=${firstRule}&limit=100`);
    await time(`console: rule=${firstRule}, sort=-cpu`, `/v1/containers?rule=${firstRule}&sort=-cpu&limit=100`);
    await time('console: state=exited, sort=-cpu (no exited container has a reading)', '/v1/containers?state=exited&sort=-cpu&limit=100');
    await time('console: label=team=payments, sort=-memory', '/v1/containers?label=team=payments&sort=-memory&limit=100');
    await time('console: label+project+sort=name', '/v1/containers?label=env=staging&project=search&sort=name&limit=100');
    // A deep page of a sorted list: the cursor after 20 pages of 100.
    let cursor;
    for (let i = 0; i < 20; i++) {
      const r = await api.get(`/v1/containers?sort=image&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      cursor = r.json?.nextCursor;
      if (!cursor) break;
    }
    if (cursor) await time('console: sort=image, page 21 (cursor)', `/v1/containers?sort=image&limit=100&cursor=${encodeURIComponent(cursor)}`);
    await time('console: summary (overview)', '/v1/summary');
  }
  return results;
}

/** PostgreSQL's plans for the list queries as the store sends them (EXPLAIN ANALYZE). */
async function explain(pg) {
  const label = `exists (select 1 from container_labels l where l.agent_id = c.agent_id and l.container_id = c.id and l.key = 'team' and l.value = 'payments')`;
  // Since h-pgquery the store resolves the image substring to the matching references first
  // (KyselyStore.imageRefsMatching) and filters by `image_ref in (…)`: both forms are explained.
  const refs = (await pgQuery(pg.url, `select distinct image_ref from containers where lower(image_ref) like '%redis%'`)).map((r) => `'${r.image_ref.replace(/'/g, "''")}'`);
  const queries = {
    'containers: state+label+image, keys of the first page (substring, before)':
      `select c.agent_id, c.name, c.id from containers c where c.state = 'running' and lower(c.image_ref) like '%redis%' escape '\\' and c.removed = 0 and ${label} order by c.agent_id, c.name, c.id limit 101`,
    'containers: state+label+image, keys of the first page (resolved references, after)':
      `select c.agent_id, c.name, c.id from containers c where c.state = 'running' and c.image_ref in (${refs.join(', ') || "''"}) and c.removed = 0 and ${label} order by c.agent_id, c.name, c.id limit 101`,
    'containers: image matching nothing':
      `select c.agent_id, c.name, c.id from containers c where lower(c.image_ref) like '%no-such-image%' escape '\\' and c.removed = 0 order by c.agent_id, c.name, c.id limit 101`,
    'violations: newest 100': 'select * from violations order by at desc, id desc limit 101',
  };
  const plans = {};
  for (const [name, q] of Object.entries(queries)) {
    const rows = await pgQuery(pg.url, `explain (analyze, buffers) ${q}`).catch((e) => [{ 'QUERY PLAN': `failed: ${e.message}` }]);
    plans[name] = rows.map((r) => r['QUERY PLAN']);
    log(`plan, ${name}:\n  ${plans[name].join('\n  ')}`);
  }
  return plans;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bk-api-at-scale-'));
  const dataDir = join(dir, 'ctl');
  let pg;
  const out = { startedAt: new Date().toISOString(), store: o.store, agents: N, containers: M, violations: V, samples: SAMPLES, node: process.version, runs: {} };
  try {
    if (o.store === 'postgres') {
      // Durability settings at PostgreSQL's defaults; only reads are timed.
      pg = await startPrivatePostgres({});
      out.postgres = pg.version;
    }
    const builds = o.before ? [{ name: 'before', root: resolve(o.before) }, { name: 'after', root: REPO }] : [{ name: 'after', root: REPO }];
    const first = builds[0].root;
    const env = { ...process.env };
    if (pg) env.BULKHEAD_DATABASE_URL = pg.url;
    else delete env.BULKHEAD_DATABASE_URL;
    const init = JSON.parse(execFileSync(process.execPath, [join(first, 'packages/controller/dist/cli/main.js'), 'init', '--data-dir', dataDir, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString());
    const { openStore, storeConfigFor } = require(join(first, 'packages/controller/dist/store/open-store.js'));
    const store = await openStore(storeConfigFor(dataDir, pg?.url));
    await store.migrate();
    log(`seeding ${N} agents × ${M} containers and ${V} violations through the store (${builds[0].name} build)`);
    const fleet = await seed(store);
    await store.close();
    out.seed = { containersMs: fleet.containersMs, violationsMs: fleet.violationsMs };
    log(`seeded: containers ${fleet.containersMs} ms, violations ${fleet.violationsMs} ms`);
    if (pg) await pgQuery(pg.url, 'VACUUM ANALYZE').catch((e) => log(`vacuum: ${e.message}`));
    for (const b of builds) {
      const ctl = await serve(b.root, dataDir, pg?.url);
      log(`${b.name}: controller ready in ${ctl.startMs} ms (pid ${ctl.pid}); settling ${o['settle-s']} s (its start-up jobs)`);
      await new Promise((r) => setTimeout(r, Number(o['settle-s']) * 1000));
      const api = apiClient({ port: ctl.apiPort, ca: readFileSync(init.caCert), apiKey: init.adminApiKey, maxSockets: 1 });
      try {
        if (pg && b.name === 'after' && builds.length > 1) await pgQuery(pg.url, 'ANALYZE');
        out.runs[b.name] = { startMs: ctl.startMs, queries: await measure(ctl, api, fleet, pg) };
        if (pg) out.runs[b.name].plans = await explain(pg);
      } finally {
        await ctl.stop();
      }
    }
  } finally {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  out.finishedAt = new Date().toISOString();
  mkdirSync(join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(o.out, JSON.stringify(out, null, 2) + '\n');
  log(`results in ${o.out}`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
