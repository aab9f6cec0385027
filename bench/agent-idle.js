#!/usr/bin/env node
// Benchmark: the agent's idle footprint with N running containers (default
// 200): resident memory (VmRSS) and CPU share of one core, read from
// /proc/<pid> of the real agent process while it is connected to a real
// controller and watching a private dockerd. Baseline in the same run: a bare
// `node -e 'setInterval(()=>{},1e6)'` process's RSS, on the agent's node binary.
//
// Bounded: N containers (sleep), a settle period, then a fixed sampling
// window (BENCH_IDLE_WINDOW_S, default 30 s); everything is removed after.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } = require('node:fs');
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
    const agent = spawn(AGENT_NODE, [...AGENT_NODE_FLAGS, AGENT, 'run', '--state-dir', join(dir, 'agent'), '--docker-host', host, '--authz-socket', join(dir, 'agent', 'authz.sock'), ...AGENT_EXTRA_ARGS], { stdio: ['ignore', 'ignore', 'inherit'], env });
    children.push(agent);
    const bare = spawn(AGENT_NODE, ['-e', 'setInterval(()=>{},1e6)'], { stdio: 'ignore' });
    children.push(bare);

    await sleep(SETTLE_S * 1000); // settle: initial sync, snapshot, first reconcile, GC
    const rss = [];
    const t0 = cpuTicks(agent.pid);
    const w0 = Date.now();
    for (let s = 0; s < WINDOW_S; s++) {
      rss.push(rssMb(agent.pid));
      await sleep(1000);
    }
    const cpuPct = ((cpuTicks(agent.pid) - t0) / CLK_TCK) / ((Date.now() - w0) / 1000) * 100;
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
