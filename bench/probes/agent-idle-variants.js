#!/usr/bin/env node
// Probe: several agent variants (node binary, node flags, environment) idle side by side
// against the same N running containers and one controller, so RSS differences between
// flag sets are measured at the same time, under the same load, rather than minutes apart.
// Faster than one bench/agent-idle.js run per variant for bisecting; the figures to record
// are still bench/agent-idle.js's (one agent at a time, as deployed). Variants start
// together, so the first minute is busier than for a lone agent.
//
//   DOCKER_HOST=unix:///tmp/eng/docker.sock node bench/probes/agent-idle-variants.js variants.json
//
// variants.json: [{ "name": "n24", "node": "/path/to/node", "flags": ["--max-semi-space-size=1"],
//                   "env": { "MALLOC_ARENA_MAX": "1" } }, …]
// "node" defaults to this node, "flags" to the unit's (bench/lib/agent-runtime.js), "env" adds
// to the unit's Environment=, "args" (optional) adds agent arguments (e.g. ["--heap-trim-interval", "0"]),
// "script" (optional) another agent entry point (e.g. another checkout's packages/agent/dist/cli/main.js, to
// compare builds side by side), "stdout" (optional) a file for the agent's stdout (V8's --trace-gc / --trace-memory-reducer print there). BENCH_IDLE_N, BENCH_IDLE_SETTLE_S (default 60) and
// BENCH_IDLE_WINDOW_S (default 15) as in bench/agent-idle.js. Prints, per variant: RSS p50 and
// max, CPU share of one core, resident MB by mapping class and V8's heap spaces (used/total).
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync, openSync, readFileSync, rmSync } = require('node:fs');
const { loadavg, tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const Docker = require('dockerode');
const { AGENT_NODE_FLAGS, UNIT_ENV } = require('../lib/agent-runtime');

const ROOT = resolve(__dirname, '..', '..');
const CTL = join(ROOT, 'packages/controller/dist/cli/main.js');
const AGENT = join(ROOT, 'packages/agent/dist/cli/main.js');
const N = Number(process.env.BENCH_IDLE_N ?? 200);
const SETTLE_S = Number(process.env.BENCH_IDLE_SETTLE_S ?? 60);
const WINDOW_S = Number(process.env.BENCH_IDLE_WINDOW_S ?? 15);
const LABEL = 'bulkhead.bench=agent-idle-variants';
const variants = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssMb = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}
// Resident MB by class: the node binary, shared libraries, [heap] (malloc's main arena),
// anonymous (V8's heap, other malloc arenas, stacks), each by permissions.
function smapsMb(pid) {
  const out = {};
  let name = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const file = head[2] || '[anonymous]';
      name = `${/\/node$/.test(file) ? 'node' : file.includes('.so') ? 'libs' : file} ${head[1]}`;
      continue;
    }
    const m = /^Rss:\s+(\d+) kB/.exec(line);
    if (m && name) out[name] = (out[name] ?? 0) + Number(m[1]) / 1024;
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v >= 0.5).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +v.toFixed(1)]));
}

async function main() {
  const host = process.env.DOCKER_HOST ?? '';
  if (!host.startsWith('unix://') || /\/(var\/)?run\/docker\.sock$/.test(host)) throw new Error('set DOCKER_HOST to a PRIVATE engine');
  const docker = new Docker({ socketPath: host.slice('unix://'.length) });
  const dir = mkdtempSync(join(tmpdir(), 'bk-idlev-'));
  const children = [];
  try {
    for (let i = 0; i < N; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, N - i) }, async () => {
        const c = await docker.createContainer({ Image: 'bulkhead-test/busybox:1', Cmd: ['sleep', '3600'], Labels: { [LABEL.split('=')[0]]: LABEL.split('=')[1] }, HostConfig: { NetworkMode: 'none' } });
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
    const agents = [];
    for (const [i, v] of variants.entries()) {
      const stateDir = join(dir, `agent${i}`);
      const token = execFileSync(process.execPath, [CTL, 'token', 'create', '--data-dir', join(dir, 'ctl')], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
      execFileSync(process.execPath, [AGENT, 'enroll', '--controller', `127.0.0.1:${grpcPort}`, '--token', token, '--ca-fingerprint', init.caFingerprint, '--state-dir', stateDir]);
      const metricsPort = 19_465 + i;
      const p = spawn(v.node ?? process.execPath, [...(v.flags ?? AGENT_NODE_FLAGS), v.script ?? AGENT, 'run', '--state-dir', stateDir, '--docker-host', host, '--authz-socket', join(stateDir, 'authz.sock'), '--metrics-listen', `127.0.0.1:${metricsPort}`, ...(v.args ?? [])], { stdio: ['ignore', v.stdout ? openSync(v.stdout, 'w') : 'ignore', 'inherit'], env: { ...UNIT_ENV, ...process.env, ...(v.env ?? {}) } });
      children.push(p);
      agents.push({ v, p, metricsPort });
    }
    await sleep(SETTLE_S * 1000);
    const t0 = agents.map((a) => cpuTicks(a.p.pid));
    const w0 = Date.now();
    const samples = agents.map(() => []);
    for (let s = 0; s < WINDOW_S; s++) {
      agents.forEach((a, k) => samples[k].push(rssMb(a.p.pid)));
      await sleep(1000);
    }
    const seconds = (Date.now() - w0) / 1000;
    const results = [];
    for (const [k, a] of agents.entries()) {
      const sorted = samples[k].sort((x, y) => x - y);
      const heap = {};
      const text = await (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();
      for (const m of text.matchAll(/^nodejs_heap_space_size_(total|used)_bytes\{space="(\w+)"\} (\d+)/gm)) {
        if (Number(m[3]) >= 50_000) (heap[m[2]] ??= {})[m[1]] = +(Number(m[3]) / 1048576).toFixed(1);
      }
      results.push({
        name: a.v.name,
        ...(a.v.script ? { script: a.v.script } : {}),
        node: execFileSync(a.v.node ?? process.execPath, ['-p', 'process.version']).toString().trim(),
        flags: a.v.flags ?? AGENT_NODE_FLAGS,
        env: a.v.env ?? {},
        rssMb: { p50: +sorted[sorted.length >> 1].toFixed(1), max: +sorted[sorted.length - 1].toFixed(1) },
        cpuPercentOfOneCore: +((((cpuTicks(a.p.pid) - t0[k]) / 100) / seconds) * 100).toFixed(2),
        smapsMb: smapsMb(a.p.pid),
        v8HeapMb: heap,
      });
    }
    console.log(JSON.stringify({ probe: 'agent-idle-variants', date: new Date().toISOString(), runningContainers: N, settleSeconds: SETTLE_S, windowSeconds: WINDOW_S, loadAverage: loadavg().map((l) => +l.toFixed(2)), results }, null, 2));
  } finally {
    for (const c of children) c.kill('SIGTERM');
    const old = await docker.listContainers({ all: true, filters: { label: [LABEL] } });
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
