#!/usr/bin/env node
// Benchmark: time from `docker start` returning to the container showing as
// running in the controller's HTTPS API, over N containers (default 100).
//
// Method (also in BENCHMARKS.md): a private dockerd (DOCKER_HOST), the built
// controller and agent as real processes on loopback. For each container,
// sequentially: create it (not timed), call the Docker API start (timed: the
// baseline), then poll GET /v1/containers/{agent}/{id} every 2 ms over one
// keep-alive HTTPS connection until it reports "running" (timed from the
// moment start returned). Reports p50/p90/p99/max and the ratio to the bare
// start call measured in the same run. Bounded: N containers, 10 s per
// container at most; everything it starts it removes.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } = require('node:fs');
const https = require('node:https');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const Docker = require('dockerode');

const ROOT = resolve(__dirname, '..');
const N = Number(process.env.BENCH_N ?? 100);
const CTL = join(ROOT, 'packages/controller/dist/cli/main.js');
const AGENT = join(ROOT, 'packages/agent/dist/cli/main.js');
const IMAGE = 'bulkhead-test/busybox:1';
const LABEL = 'bulkhead.bench=start-to-visible';

function dockerHost() {
  const h = process.env.DOCKER_HOST ?? '';
  if (!h.startsWith('unix://') || /\/(var\/)?run\/docker\.sock$/.test(h)) {
    throw new Error('set DOCKER_HOST to a PRIVATE engine socket (scripts/bench.sh starts one)');
  }
  return h;
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v) => Math.round(v * 100) / 100;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]), mean: r(s.reduce((a, b) => a + b, 0) / s.length) };
}

function daemon(bin, args, onLine) {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BULKHEAD_LOG_LEVEL: 'info' } });
  let buf = '';
  const feed = (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try { onLine(JSON.parse(line)); } catch { /* not JSON */ }
    }
  };
  child.stdout.on('data', feed);
  child.stderr.on('data', feed);
  return child;
}

async function main() {
  const host = dockerHost();
  const docker = new Docker({ socketPath: host.slice('unix://'.length) });
  const dir = mkdtempSync(join(tmpdir(), 'bk-bench-'));
  const children = [];
  const cleanup = async () => {
    for (const c of children) c.kill('SIGTERM');
    const old = await docker.listContainers({ all: true, filters: { label: [LABEL] } });
    await Promise.all(old.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const init = JSON.parse(execFileSync(process.execPath, [CTL, 'init', '--data-dir', join(dir, 'ctl'), '--json']).toString());
    const ca = readFileSync(init.caCert);
    const ready = new Promise((res) => {
      children.push(daemon(CTL, ['serve', '--data-dir', join(dir, 'ctl'), '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0'], (l) => {
        if (l.msg === 'controller ready') res(l);
      }));
    });
    const { grpcPort, apiPort } = await ready;
    const token = execFileSync(process.execPath, [CTL, 'token', 'create', '--data-dir', join(dir, 'ctl')], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    const enrolled = execFileSync(process.execPath, [AGENT, 'enroll', '--controller', `127.0.0.1:${grpcPort}`, '--token', token, '--ca-fingerprint', init.caFingerprint, '--state-dir', join(dir, 'agent')]).toString();
    const agentId = /enrolled as (agt_[0-9a-f]+)/.exec(enrolled)[1];
    const connected = new Promise((res) => {
      children.push(daemon(AGENT, ['run', '--state-dir', join(dir, 'agent'), '--docker-host', host, '--authz-socket', join(dir, 'agent', 'authz.sock')], (l) => {
        if (l.msg === 'connected to controller') res();
      }));
    });
    await connected;

    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
    const get = (path) => new Promise((res, rej) => {
      const req = https.request({ host: '127.0.0.1', servername: 'localhost', port: apiPort, path, agent, headers: { authorization: `Bearer ${init.adminApiKey}` } }, (r) => {
        let body = '';
        r.on('data', (d) => (body += d));
        r.on('end', () => res({ status: r.statusCode, body }));
      });
      req.on('error', rej);
      req.end();
    });

    const startMs = [];
    const visibleMs = [];
    for (let i = 0; i < N; i++) {
      const c = await docker.createContainer({ Image: IMAGE, Cmd: ['sleep', '600'], Labels: { 'bulkhead.bench': 'start-to-visible' }, HostConfig: { NetworkMode: 'none' } });
      const t0 = process.hrtime.bigint();
      await c.start();
      const t1 = process.hrtime.bigint();
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await get(`/v1/containers/${agentId}/${c.id}`);
        if (r.status === 200 && JSON.parse(r.body).state === 'running') break;
        if (Date.now() > deadline) throw new Error(`container ${c.id} not visible as running within 10 s`);
        await new Promise((res) => setTimeout(res, 2));
      }
      const t2 = process.hrtime.bigint();
      startMs.push(Number(t1 - t0) / 1e6);
      visibleMs.push(Number(t2 - t1) / 1e6);
    }
    agent.destroy();
    const result = {
      benchmark: 'start-to-visible',
      date: new Date().toISOString(),
      node: process.version,
      containers: N,
      dockerStartMs: summary(startMs),
      startReturnToVisibleMs: summary(visibleMs),
    };
    result.ratioP50 = Math.round((result.startReturnToVisibleMs.p50 / result.dockerStartMs.p50) * 100) / 100;
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'start-to-visible.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
