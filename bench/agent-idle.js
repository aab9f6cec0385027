#!/usr/bin/env node
// Benchmark: the agent's idle footprint with N running containers (default
// 200): resident memory (VmRSS) and CPU share of one core, read from
// /proc/<pid> of the real agent process while it is connected to a real
// controller and watching a private dockerd. Baseline in the same run: a bare
// `node -e 'setInterval(()=>{},1e6)'` process's RSS, on the agent's node binary.
//
// Bounded: N containers (sleep), a settle period, then a fixed sampling
// window (BENCH_IDLE_WINDOW_S, default 30 s); everything is removed after.
// Also over the window, from the agent's /metrics: V8 collections by kind and
// the event loop's largest delay; optionally (BENCH_IDLE_AUTHZ_MS) authorization
// request latency and (BENCH_IDLE_AGENT_STDOUT) the heap trim's pauses.
// BENCHMARKS.md "agent-idle" lists every knob.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, mkdirSync } = require('node:fs');
const http = require('node:http');
const { tmpdir, loadavg } = require('node:os');
const { join, resolve } = require('node:path');
const Docker = require('dockerode');

const ROOT = resolve(__dirname, '..');
const N = Number(process.env.BENCH_IDLE_N ?? 200);
const WINDOW_S = Number(process.env.BENCH_IDLE_WINDOW_S ?? 30);
const SETTLE_S = Number(process.env.BENCH_IDLE_SETTLE_S ?? 15);
const CTL = join(ROOT, 'packages/controller/dist/cli/main.js');
// BENCH_AGENT_SCRIPT runs another agent entry point (e.g. a bundle), for comparisons.
const AGENT = process.env.BENCH_AGENT_SCRIPT || join(ROOT, 'packages/agent/dist/cli/main.js');
const IMAGE = 'bulkhead-test/busybox:1';
// The agent runs with the node flags and environment of the systemd unit
// (bench/lib/agent-runtime.js), so the bench measures what is deployed;
// BENCH_AGENT_NODE_FLAGS overrides the flags, BENCH_AGENT_NODE the agent's node
// binary (the controller stays on this one), for comparisons.
const { AGENT_NODE, AGENT_NODE_FLAGS, UNIT_ENV, agentEnv } = require('./lib/agent-runtime');
// Extra `bulkhead-agent run` flags, for comparisons (e.g. "--usage-interval 0").
const AGENT_EXTRA_ARGS = (process.env.BENCH_IDLE_AGENT_ARGS ?? '').split(' ').filter(Boolean);
const CLK_TCK = 100; // getconf CLK_TCK on Linux x86_64
// Optional: an authorization request (GET /_ping, decided without the engine) to the agent's
// plugin socket every BENCH_IDLE_AUTHZ_MS during the window, answered latency reported: what a
// docker command waits while the agent's JavaScript is paused (a full GC, a usage tick).
const AUTHZ_MS = Number(process.env.BENCH_IDLE_AUTHZ_MS ?? 0);
// Optional: the agent's stdout to this file (e.g. with BENCH_IDLE_AGENT_ARGS="--log-level debug",
// whose "idle heap trimmed" lines give each trim's pause; or V8's --trace-gc output).
const AGENT_STDOUT = process.env.BENCH_IDLE_AGENT_STDOUT ?? '';

function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}
function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]); // utime + stime
}
// Resident memory of a process by mapping (BENCH_IDLE_SMAPS=1): the node
// binary's pages, the heap (anonymous), shared libraries — to see where RSS
// goes, compared with the bare node process of the same run.
function smapsMb(pid) {
  const out = {};
  let name = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) { name = `${head[2] || '[anonymous]'} ${head[1]}`; continue; }
    const m = /^Rss:\s+(\d+) kB/.exec(line);
    if (m && name) out[name] = (out[name] ?? 0) + Number(m[1]) / 1024;
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v >= 0.1).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +v.toFixed(1)]));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The agent's own Prometheus figures (default address): V8's collections by kind so far, and
// the event loop's largest delay since the previous scrape (prom-client resets its histogram on
// every scrape; 100 ms resolution, so a pause shorter than that may show only in part).
async function agentMetrics() {
  const text = await (await fetch('http://127.0.0.1:9465/metrics')).text();
  const gc = {};
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_count\{kind="(\w+)"\} (\d+)/gm)) gc[m[1]] = Number(m[2]);
  const lagMax = /^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text);
  return { gc, lagMaxMs: lagMax ? Number(lagMax[1]) * 1000 : null };
}

// One authorization request on the plugin socket; resolves with its latency in ms.
const PING = JSON.stringify({ RequestMethod: 'GET', RequestUri: '/_ping', RequestHeaders: { 'User-Agent': 'Docker-Client/28.2.2 (linux)' } });
function authzPing(socketPath) {
  const t0 = process.hrtime.bigint();
  return new Promise((res, rej) => {
    const r = http.request({ socketPath, path: '/AuthZPlugin.AuthZReq', method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(PING) } }, (resp) => {
      const ch = [];
      resp.on('data', (d) => ch.push(d));
      resp.on('end', () => {
        const body = JSON.parse(Buffer.concat(ch).toString());
        if (body.Allow !== true) rej(new Error(`authz ping refused: ${JSON.stringify(body)}`));
        else res(Number(process.hrtime.bigint() - t0) / 1e6);
      });
    });
    r.on('error', rej);
    r.end(PING);
  });
}

async function main() {
  const host = process.env.DOCKER_HOST ?? '';
  if (!host.startsWith('unix://') || /\/(var\/)?run\/docker\.sock$/.test(host)) throw new Error('set DOCKER_HOST to a PRIVATE engine');
  const docker = new Docker({ socketPath: host.slice('unix://'.length) });
  const dir = mkdtempSync(join(tmpdir(), 'bk-idle-'));
  const children = [];
  try {
    // Containers first, in parallel batches.
    for (let i = 0; i < N; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, N - i) }, async () => {
        const c = await docker.createContainer({ Image: IMAGE, Cmd: ['sleep', '3600'], Labels: { 'bulkhead.bench': 'agent-idle' }, HostConfig: { NetworkMode: 'none' } });
        await c.start();
      }));
    }
    const init = JSON.parse(execFileSync(process.execPath, [CTL, 'init', '--data-dir', join(dir, 'ctl'), '--json']).toString());
    const ctl = spawn(process.execPath, [CTL, 'serve', '--data-dir', join(dir, 'ctl'), '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(ctl);
    const grpcPort = await new Promise((res) => {
      let buf = '';
      ctl.stdout.on('data', (d) => {
        buf += d;
        const m = /"grpcPort":(\d+)/.exec(buf);
        if (m) res(Number(m[1]));
      });
    });
    const token = execFileSync(process.execPath, [CTL, 'token', 'create', '--data-dir', join(dir, 'ctl')], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    execFileSync(process.execPath, [AGENT, 'enroll', '--controller', `127.0.0.1:${grpcPort}`, '--token', token, '--ca-fingerprint', init.caFingerprint, '--state-dir', join(dir, 'agent')]);
    const env = agentEnv();
    const authzSocket = join(dir, 'agent', 'authz.sock');
    const agentOut = AGENT_STDOUT ? openSync(AGENT_STDOUT, 'w') : 'ignore';
    const agent = spawn(AGENT_NODE, [...AGENT_NODE_FLAGS, AGENT, 'run', '--state-dir', join(dir, 'agent'), '--docker-host', host, '--authz-socket', authzSocket, ...AGENT_EXTRA_ARGS], { stdio: ['ignore', agentOut, 'inherit'], env });
    children.push(agent);
    const bare = spawn(AGENT_NODE, ['-e', 'setInterval(()=>{},1e6)'], { stdio: 'ignore' });
    children.push(bare);

    await sleep(SETTLE_S * 1000); // settle: initial sync, snapshot, first reconcile, GC
    const rss = [];
    const m0 = await agentMetrics().catch(() => undefined);
    const t0 = cpuTicks(agent.pid);
    const w0 = Date.now();
    const latencies = [];
    let pinging = AUTHZ_MS > 0;
    const pinger = (async () => {
      while (pinging) {
        latencies.push(await authzPing(authzSocket));
        await sleep(AUTHZ_MS);
      }
    })();
    for (let s = 0; s < WINDOW_S; s++) {
      rss.push(rssMb(agent.pid));
      await sleep(1000);
    }
    const cpuPct = ((cpuTicks(agent.pid) - t0) / CLK_TCK) / ((Date.now() - w0) / 1000) * 100;
    const w1 = Date.now();
    pinging = false;
    await pinger;
    const m1 = await agentMetrics().catch(() => undefined);
    const sorted = [...rss].sort((a, b) => a - b);
    const result = {
      benchmark: 'agent-idle',
      date: new Date().toISOString(),
      node: process.version,
      agentNode: execFileSync(AGENT_NODE, ['-p', 'process.version']).toString().trim(),
      runningContainers: N,
      agentNodeFlags: AGENT_NODE_FLAGS,
      agentEnv: Object.fromEntries(Object.keys(UNIT_ENV).map((k) => [k, env[k]])),
      agentExtraArgs: AGENT_EXTRA_ARGS,
      settleSeconds: SETTLE_S,
      windowSeconds: WINDOW_S,
      agentRssMb: { p50: +sorted[Math.floor(sorted.length / 2)].toFixed(1), max: +sorted[sorted.length - 1].toFixed(1) },
      bareNodeRssMb: +rssMb(bare.pid).toFixed(1),
      agentCpuPercentOfOneCore: +cpuPct.toFixed(2),
      // The machine's 1/5/15-minute load average at the end of the window: CPU
      // figures from a shared machine mean little without it.
      loadAverage: loadavg().map((l) => +l.toFixed(2)),
    };
    if (m0 && m1) {
      // V8 collections during the window, per kind (minor = scavenges: with --max-semi-space-size=1,
      // about one per MB allocated), and the event loop's largest delay over the window.
      result.gcDuringWindow = Object.fromEntries(Object.keys(m1.gc).map((k) => [k, m1.gc[k] - (m0.gc[k] ?? 0)]));
      result.eventLoopLagMaxMs = m1.lagMaxMs === null ? null : +m1.lagMaxMs.toFixed(1);
    }
    if (latencies.length > 0) {
      const l = [...latencies].sort((a, b) => a - b);
      const q = (p) => +l[Math.min(l.length - 1, Math.floor(p * l.length))].toFixed(2);
      result.authzPingMs = { every: AUTHZ_MS, n: l.length, p50: q(0.5), p99: q(0.99), max: +l[l.length - 1].toFixed(2) };
    }
    if (AGENT_STDOUT) {
      // The idle heap trim's own figures, from its debug lines within the window.
      const trims = [];
      for (const line of readFileSync(AGENT_STDOUT, 'utf8').split('\n')) {
        if (!line.includes('idle heap trimmed')) continue;
        try {
          const j = JSON.parse(line);
          if (j.time >= w0 && j.time <= w1) trims.push(j.durationMs);
        } catch { /* not a log line */ }
      }
      result.heapTrims = { n: trims.length, maxMs: trims.length ? Math.max(...trims) : null, durationsMs: trims };
    }
    if (process.env.BENCH_IDLE_SMAPS === '1') {
      result.smapsMb = { agent: smapsMb(agent.pid), bareNode: smapsMb(bare.pid) };
      // V8's own view, from the agent's Prometheus endpoint (default address).
      const text = await (await fetch('http://127.0.0.1:9465/metrics')).text();
      result.v8HeapMb = {};
      for (const m of text.matchAll(/^nodejs_heap_space_size_(total|used)_bytes\{space="(\w+)"\} (\d+)/gm)) {
        (result.v8HeapMb[m[2]] ??= {})[m[1]] = +(Number(m[3]) / 1048576).toFixed(1);
      }
    }
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'agent-idle.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    for (const c of children) c.kill('SIGTERM');
    const old = await docker.listContainers({ all: true, filters: { label: ['bulkhead.bench=agent-idle'] } });
    for (let i = 0; i < old.length; i += 20) {
      await Promise.all(old.slice(i, i + 20).map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
