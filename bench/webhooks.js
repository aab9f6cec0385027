#!/usr/bin/env node
// Benchmark: alerts per second delivered and signed end to end from the
// durable outbox to a local webhook receiver, and delivery lag (alert raised
// → request received) p50/p99.
//
// Method (also in BENCHMARKS.md): the compiled alerting code (dist/) over a
// real SQLite store in a temp dir — AlertService writes each alert and its
// outbox delivery in one transaction, DeliveryDispatcher's workers lease due
// deliveries, sign them (Standard Webhooks HMAC-SHA256) and POST them over
// keep-alive HTTP. The receiver is a separate Node process on 127.0.0.1
// that verifies every signature with node:crypto and answers 204, so it
// competes for the same 2 cores as a co-located receiver would.
//
//   drain:  BENCH_WEBHOOK_N alerts (default 20000) are raised with workers
//           stopped, then workers start; alerts/s = N / time to the last receipt.
//   paced:  alerts raised at BENCH_WEBHOOK_RATES per second (default
//           1000,2000,3000), BENCH_WEBHOOK_SECONDS each (default 10), workers
//           running; reports the delivered rate and lag p50/p99/max.
//
// Bounded: fixed counts and durations, 127.0.0.1 only; everything is in a
// temp dir that is removed.
'use strict';
const { spawn } = require('node:child_process');
const { mkdtempSync, rmSync, writeFileSync, mkdirSync } = require('node:fs');
const { tmpdir, loadavg } = require('node:os');
const { join, resolve } = require('node:path');

const ROOT = resolve(__dirname, '..');
const DIST = join(ROOT, 'packages/controller/dist');
const { openStore } = require(join(DIST, 'store/open-store.js'));
const { Alerting } = require(join(DIST, 'alerts/alerting.js'));
const { createLogger } = require(join(ROOT, 'packages/shared/dist/index.js'));

const N = Number(process.env.BENCH_WEBHOOK_N ?? 20000);
const RATES = (process.env.BENCH_WEBHOOK_RATES ?? '1000,2000,3000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_WEBHOOK_SECONDS ?? 10);
const WORKERS = Number(process.env.BENCH_WEBHOOK_WORKERS ?? 4);
const BATCH = Number(process.env.BENCH_WEBHOOK_BATCH ?? 16);

const now = () => performance.timeOrigin + performance.now();

// ---- receiver (child process) -------------------------------------------------
const RECEIVER = `
const http = require('node:http');
const { createHmac, timingSafeEqual } = require('node:crypto');
let key = null;
let times = [];
let bad = 0;
const server = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const t = performance.timeOrigin + performance.now();
    const body = Buffer.concat(chunks);
    const id = req.headers['webhook-id'];
    const ts = req.headers['webhook-timestamp'];
    const expected = Buffer.from('v1,' + createHmac('sha256', key).update(id + '.' + ts + '.').update(body).digest('base64'));
    const ok = String(req.headers['webhook-signature'] || '').split(' ').some((s) => { const b = Buffer.from(s); return b.length === expected.length && timingSafeEqual(b, expected); });
    if (!ok) bad++;
    // The alert id is the JSON's data.id; a regex is enough and cheaper than a parse.
    const m = /"data":\\{"id":"([^"]+)"/.exec(body.toString('latin1'));
    times.push(m ? m[1] : '?', t);
    res.writeHead(204);
    res.end();
  });
});
process.on('message', (m) => {
  if (m.cmd === 'key') { key = Buffer.from(m.secret.slice(6), 'base64'); process.send({ ok: true }); }
  if (m.cmd === 'take') { const out = times; times = []; const u = process.cpuUsage(); process.send({ times: out, bad, cpuUs: u.user + u.system }); }
  if (m.cmd === 'exit') process.exit(0);
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
`;

function startReceiver() {
  const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = [];
  child.on('message', (m) => pending.shift()?.(m));
  const ask = (msg) => new Promise((res) => { pending.push(res); if (msg) child.send(msg); });
  return { child, ask };
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v) => Math.round(v * 10) / 10;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]) };
}

async function collect(rx, raisedAt, expected, timeoutMs) {
  const received = new Map();
  let bad = 0;
  let rxCpuUs = 0;
  const deadline = Date.now() + timeoutMs;
  while (received.size < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const m = await rx.ask({ cmd: 'take' });
    bad = m.bad;
    rxCpuUs = m.cpuUs;
    for (let i = 0; i < m.times.length; i += 2) if (!received.has(m.times[i])) received.set(m.times[i], m.times[i + 1]);
  }
  const lags = [];
  let last = 0;
  for (const [id, t] of received) {
    const r0 = raisedAt.get(id);
    if (r0 !== undefined) lags.push(t - r0);
    if (t > last) last = t;
  }
  return { received: received.size, bad, lags, last, rxCpuUs };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bk-bench-webhooks-'));
  const rx = startReceiver();
  const logger = createLogger({ name: 'bench', level: 'warn' });
  const result = { benchmark: 'webhooks', date: new Date().toISOString(), node: process.version, workers: WORKERS, batchSize: BATCH, loadAverage1mAtStart: Math.round(loadavg()[0] * 100) / 100 };
  try {
    const { port } = await rx.ask();
    const url = `http://127.0.0.1:${port}/hook`;

    // ---- drain: a pre-filled outbox ----
    {
      const store = await openStore({ kind: 'sqlite', path: join(dir, 'drain.db') });
      const queueing = Alerting.start({ store: store.alerts, logger, deliver: false });
      const { secret } = await queueing.webhooks.create({ url });
      await rx.ask({ cmd: 'key', secret });
      const raisedAt = new Map();
      const t0 = now();
      const rs = await Promise.all(Array.from({ length: N }, (_, i) => queueing.alerts.raise({ type: 'violation', severity: 'high', message: `finding ${i}`, ruleId: `rule-${i}`, agentId: 'agt_bench', containerId: `c${i}` })));
      const queuedMs = now() - t0;
      for (const r of rs) raisedAt.set(r.alertId, t0);
      const rx0 = (await rx.ask({ cmd: 'take' })).cpuUs;
      const cpu0 = process.cpuUsage();
      const start = now();
      const alerting = Alerting.start({ store: store.alerts, logger, options: { workers: WORKERS, batchSize: BATCH } });
      const got = await collect(rx, new Map(), N, 120_000);
      const secs = (got.last - start) / 1000;
      const cpu = process.cpuUsage(cpu0);
      result.drain = {
        alerts: N,
        raiseAndQueueAlertsPerSec: Math.round(N / (queuedMs / 1000)),
        delivered: got.received,
        badSignatures: got.bad,
        seconds: Math.round(secs * 100) / 100,
        deliveredAlertsPerSec: Math.round(got.received / secs),
        // Load-independent: CPU time spent per delivered alert (the sender includes claiming,
        // signing, POSTing and recording; the receiver parses and verifies).
        senderCpuUsPerAlert: Math.round((cpu.user + cpu.system) / got.received),
        receiverCpuUsPerAlert: Math.round((got.rxCpuUs - rx0) / got.received),
      };
      console.error(`drain: ${JSON.stringify(result.drain)}`);
      await alerting.stop();
      await store.close();
    }

    // ---- paced: raise at a fixed rate while workers deliver ----
    result.paced = [];
    for (const rate of RATES) {
      const store = await openStore({ kind: 'sqlite', path: join(dir, `paced-${rate}.db`) });
      const alerting = Alerting.start({ store: store.alerts, logger, options: { workers: WORKERS, batchSize: BATCH } });
      const { secret } = await alerting.webhooks.create({ url });
      await rx.ask({ cmd: 'key', secret });
      const raisedAt = new Map();
      const total = rate * SECONDS;
      const t0 = now();
      let sent = 0;
      const raises = [];
      while (sent < total) {
        const due = Math.min(total, Math.floor(((now() - t0) / 1000) * rate));
        for (; sent < due; sent++) {
          const at = now();
          raises.push(alerting.alerts.raise({ type: 'violation', severity: 'high', message: `paced ${sent}`, ruleId: `rule-${sent}`, agentId: 'agt_bench', containerId: `p${sent}` }).then((r) => raisedAt.set(r.alertId, at)));
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      await Promise.all(raises);
      const got = await collect(rx, raisedAt, total, 60_000);
      const secs = (got.last - t0) / 1000;
      const entry = { offeredPerSec: rate, alerts: total, delivered: got.received, badSignatures: got.bad, deliveredAlertsPerSec: Math.round(got.received / secs), lagMs: summary(got.lags) };
      result.paced.push(entry);
      console.error(`paced ${rate}/s: ${JSON.stringify(entry)}`);
      await alerting.stop();
      await store.close();
    }
    // Other work on the machine skews throughput; the CPU-per-alert figures above do not depend on it.
    result.loadAverage1mAtEnd = Math.round(loadavg()[0] * 100) / 100;
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'webhooks.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    rx.child.send({ cmd: 'exit' });
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
