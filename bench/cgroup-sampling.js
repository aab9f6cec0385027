#!/usr/bin/env node
// Benchmark: agent-side CPU to sample N running containers (default 200)
// every 5 s from cgroup files (the built CgroupReader + UsageSampler from
// packages/agent/dist), next to the cost of ONE `docker stats --no-stream`
// for the same containers, measured in the same run.
//
// Method:
// 1. N `sleep` containers (--network none, label bulkhead.bench=cgroup-sampling)
//    on the engine at DOCKER_HOST, which must be a PRIVATE engine (never
//    /var/run/docker.sock).
// 2. Baseline: this process idle for BENCH_CGROUP_IDLE_S (default 10 s), after
//    a 5 s settle, and again after the sampler stopped; the lower is kept.
// 3. Sampler: UsageSampler ticking every BENCH_CGROUP_INTERVAL_MS (default
//    5000) over all N for BENCH_CGROUP_WINDOW_S (default 60 s); CPU from
//    process.cpuUsage() (user + system, every thread: libuv pool and GC
//    helpers included) over the window, as a share of one core, next to the
//    idle baseline; tick wall times from `tick` events.
// 4. `docker stats --no-stream <N ids>` once (BENCH_CGROUP_STATS_RUNS times,
//    default 1): wall time, the CLI's CPU (a shell's cutime+cstime after
//    waiting for it), and dockerd's + containerd's CPU over the call (from
//    /proc/<pid>/stat), i.e. what polling the engine would cost the host.
// 5. BENCH_CGROUP_RESOURCES=1 (or --resources): the sampler also measures what
//    the agent measures by default beyond the cgroup — writable layer and log
//    sizes (the disk source, once per tick for all), the network namespace's
//    counters and sockets (per container), block IO (cgroup detail files) —
//    through the agent's own createResourceSources (packages/agent/dist/
//    resources/sources.js), with ResourceTargets from inspect as the watcher
//    builds them. Each container then writes 1 MiB into its writable layer and
//    a log line before it sleeps, so there is something to measure. The
//    result says which sources ran (`resources`). Disk and network are read
//    every BENCH_CGROUP_RESOURCE_EVERY ticks (default 4: the agent's default
//    --usage-resource-interval 20s at 5 s ticks). A comma list
//    (BENCH_CGROUP_RESOURCES=disk,net or blkio) runs only those.
// Bounded: every wait has a timeout; all containers are removed at the end.
'use strict';
const { spawn } = require('node:child_process');
const { readFileSync, writeFileSync, mkdirSync, existsSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');
const Docker = require('dockerode');

const ROOT = resolve(__dirname, '..');
const DIST = join(ROOT, 'packages/agent/dist');
const N = Number(process.env.BENCH_CGROUP_N ?? 200);
const IDLE_S = Number(process.env.BENCH_CGROUP_IDLE_S ?? 10);
const WINDOW_S = Number(process.env.BENCH_CGROUP_WINDOW_S ?? 60);
const INTERVAL_MS = Number(process.env.BENCH_CGROUP_INTERVAL_MS ?? 5000);
const STATS_RUNS = Number(process.env.BENCH_CGROUP_STATS_RUNS ?? 1);
// "1" (or --resources) = all three; or a comma list of disk, net, blkio to tell their costs apart.
const RES_ENV = process.argv.includes('--resources') ? '1' : process.env.BENCH_CGROUP_RESOURCES ?? '';
const RES = RES_ENV === '1' || RES_ENV === 'all' ? { disk: true, net: true, blkio: true } : { disk: /\bdisk\b/.test(RES_ENV), net: /\bnet\b/.test(RES_ENV), blkio: /\bblkio\b/.test(RES_ENV) };
const RESOURCES = RES.disk || RES.net || RES.blkio;
/** Disk and network every this many ticks: the agent's default --usage-resource-interval 20s at 5 s ticks is 4. */
const RESOURCE_EVERY = Number(process.env.BENCH_CGROUP_RESOURCE_EVERY ?? 4);
const IMAGE = 'bulkhead-test/busybox:1';
const LABEL = 'bulkhead.bench=cgroup-sampling';
const CLK_TCK = 100; // getconf CLK_TCK on Linux x86_64

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function procCpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK; // utime + stime
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** `docker stats --no-stream` once: wall ms and the CLI's CPU seconds (a shell's cutime+cstime). */
function dockerStatsOnce(host, ids) {
  return new Promise((resolvePromise, reject) => {
    const started = process.hrtime.bigint();
    // The shell waits for docker, then prints its own stat: fields 16/17 (cutime/cstime) hold docker's CPU.
    const sh = spawn('sh', ['-c', 'docker -H "$BK_HOST" stats --no-stream --format "{{.ID}} {{.CPUPerc}}" "$@" >/dev/null; rc=$?; cat /proc/$$/stat; exit $rc', 'sh', ...ids], {
      env: { ...process.env, BK_HOST: host },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => sh.kill('SIGKILL'), 180_000);
    sh.stdout.on('data', (d) => (out += d));
    sh.stderr.on('data', (d) => (err += d));
    sh.on('close', (code) => {
      clearTimeout(timer);
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) {
        reject(new Error(`docker stats exited ${code}: ${err.trim()}`));
        return;
      }
      const rest = out.slice(out.lastIndexOf(')') + 2).trim().split(' ');
      resolvePromise({ wallMs, cliCpuSeconds: (Number(rest[13]) + Number(rest[14])) / CLK_TCK });
    });
  });
}

async function main() {
  const host = process.env.DOCKER_HOST ?? '';
  if (!host.startsWith('unix://') || /^unix:\/\/\/(var\/)?run\/docker\.sock$/.test(host)) {
    throw new Error('set DOCKER_HOST=unix:///…/docker.sock of a PRIVATE engine (scripts/engine.sh start DIR); refusing the host engine');
  }
  if (!existsSync(join(DIST, 'cgroup/usage-sampler.js'))) throw new Error('build first: npx tsc -b packages/agent');
  const { CgroupReader } = require(join(DIST, 'cgroup/cgroup-reader.js'));
  const { UsageSampler } = require(join(DIST, 'cgroup/usage-sampler.js'));
  const { loadDaemonConfig } = require(join(DIST, 'lockdown/daemon-config.js'));
  const { resourceTargetOf } = require(join(DIST, 'docker/watcher.js'));
  const { createResourceSources } = require(join(DIST, 'resources/sources.js'));
  const socketPath = host.slice('unix://'.length);
  const docker = new Docker({ socketPath });
  const daemon = await loadDaemonConfig({ docker, dockerSocketPath: socketPath });
  const ctdPidFile = join(dirname(socketPath), 'containerd.pid');
  const containerdPid = existsSync(ctdPidFile) ? Number(readFileSync(ctdPidFile, 'utf8').trim()) : undefined;

  const cleanup = async () => {
    const old = await docker.listContainers({ all: true, filters: { label: [LABEL] } });
    for (let i = 0; i < old.length; i += 20) {
      await Promise.all(old.slice(i, i + 20).map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    }
  };
  process.once('SIGINT', () => cleanup().finally(() => process.exit(130)));
  try {
    await cleanup();
    const t0 = Date.now();
    for (let i = 0; i < N; i += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, N - i) }, async () => {
          const c = await docker.createContainer({
            Image: IMAGE,
            Cmd: RESOURCES ? ['sh', '-c', 'head -c 1048576 /dev/zero > /data; echo started; exec sleep 3600'] : ['sleep', '3600'],
            Labels: { 'bulkhead.bench': 'cgroup-sampling' },
            HostConfig: { NetworkMode: 'none', NanoCpus: 100_000_000, Memory: 32 * 1024 * 1024, PidsLimit: 16 },
          });
          await c.start();
        }),
      );
    }
    const list = await docker.listContainers({ filters: { label: [LABEL], status: ['running'] } });
    if (list.length !== N) throw new Error(`expected ${N} running containers, got ${list.length}`);
    const containers = await Promise.all(list.map(async (c) => {
      const ins = await docker.getContainer(c.Id).inspect();
      const t = resourceTargetOf(ins);
      return { id: c.Id, name: ins.Name, pid: ins.State.Pid, state: 'running', graphDriver: t.graphDriver, upperDir: t.upperDir, logPath: t.logPath, logDriver: t.logDriver };
    }));
    const startSeconds = (Date.now() - t0) / 1000;

    // Baseline: this process doing nothing, after the creation work settled
    // (measured again after the sampler stops; the lower figure is kept).
    const idle = async () => {
      const a = process.cpuUsage();
      const b = process.hrtime.bigint();
      await sleep(IDLE_S * 1000);
      const d = process.cpuUsage(a);
      return ((d.user + d.system) / 1e6) / (Number(process.hrtime.bigint() - b) / 1e9) * 100;
    };
    await sleep(5000);
    const idleBefore = await idle();
    let u0;
    let w0;
    let u1;

    // Sampler.
    const reader = await CgroupReader.forHost({ driver: daemon.info?.CgroupDriver === 'systemd' ? 'systemd' : 'cgroupfs' });
    const tickMs = [];
    let samplesSeen = 0;
    const sources = RESOURCES ? await createResourceSources({ disk: RES.disk, net: RES.net }, { warn: (o, m) => console.error(m, o) }) : {};
    if ((RES.disk && !sources.disk) || (RES.net && !sources.net)) throw new Error('a requested resource source could not start (see above)');
    let measured = { writable: 0, blkio: 0, logs: 0, net: 0 };
    const sampler = new UsageSampler({ reader, containers: () => containers, interval: INTERVAL_MS, ...sources, blkio: RES.blkio, resourceEveryTicks: RESOURCE_EVERY });
    sampler.on('tick', (samples, info) => {
      tickMs.push(info.durationMs);
      samplesSeen += samples.length;
      measured = {
        writable: samples.filter((s) => s.writableBytes != null).length,
        blkio: samples.filter((s) => s.blkioReadBytes != null).length,
        logs: samples.filter((s) => s.logBytes != null).length,
        net: samples.filter((s) => s.tcpConnections != null).length,
      };
    });
    sampler.on('sampleError', (id, e) => console.error(`sample error ${id}: ${e.message}`));
    sampler.start();
    await sleep(INTERVAL_MS + 500); // first tick (locates every cgroup, reads limits) is warm-up
    const warmTicks = tickMs.length;
    u0 = process.cpuUsage();
    w0 = process.hrtime.bigint();
    await sleep(WINDOW_S * 1000);
    u1 = process.cpuUsage(u0);
    const windowS = Number(process.hrtime.bigint() - w0) / 1e9;
    await sampler.stop();
    reader.close();
    sources.disk?.close?.();
    const idleCpuPct = Math.min(idleBefore, await idle());
    const samplerCpuPct = ((u1.user + u1.system) / 1e6) / windowS * 100;
    const steadyTicks = tickMs.slice(warmTicks);
    const sortedTicks = [...steadyTicks].sort((a, b) => a - b);

    // docker stats one-shot, same containers.
    const stats = [];
    for (let r = 0; r < STATS_RUNS; r++) {
      const d0 = daemon.pid ? procCpuSeconds(daemon.pid) : NaN;
      const c0 = containerdPid ? procCpuSeconds(containerdPid) : NaN;
      const s = await dockerStatsOnce(host, containers.map((c) => c.id));
      stats.push({
        ...s,
        dockerdCpuSeconds: daemon.pid ? procCpuSeconds(daemon.pid) - d0 : null,
        containerdCpuSeconds: containerdPid ? procCpuSeconds(containerdPid) - c0 : null,
      });
      await sleep(2000);
    }
    // Mean over the runs of the host CPU one docker stats one-shot costs (CLI + dockerd + containerd).
    const statsHostCpuS = stats.reduce((n, st) => n + st.cliCpuSeconds + (st.dockerdCpuSeconds ?? 0) + (st.containerdCpuSeconds ?? 0), 0) / Math.max(1, stats.length);

    const result = {
      benchmark: 'cgroup-sampling',
      date: new Date().toISOString(),
      node: process.version,
      cgroupVersion: reader.version,
      // Beyond the cgroup (BENCH_CGROUP_RESOURCES=1): which sources ran, and how many containers each measured on the last tick.
      resources: RESOURCES ? { ...RES, everyTicks: RESOURCE_EVERY, measuredOnLastTick: measured } : false,
      runningContainers: N,
      containerStartSeconds: +startSeconds.toFixed(1),
      intervalMs: INTERVAL_MS,
      windowSeconds: +windowS.toFixed(1),
      ticks: steadyTicks.length,
      samplesPerTick: tickMs.length ? Math.round(samplesSeen / tickMs.length) : 0,
      sampler: {
        cpuPercentOfOneCore: +samplerCpuPct.toFixed(3),
        idleBaselineCpuPercent: +idleCpuPct.toFixed(3),
        cpuMsPerTick: steadyTicks.length ? +(((u1.user + u1.system) / 1e3) / steadyTicks.length).toFixed(1) : null,
        tickWallMs: sortedTicks.length ? { p50: +pct(sortedTicks, 50).toFixed(1), max: +sortedTicks[sortedTicks.length - 1].toFixed(1) } : null,
      },
      dockerStatsNoStream: {
        runs: stats.map((s) => ({
          wallMs: Math.round(s.wallMs),
          cliCpuSeconds: +s.cliCpuSeconds.toFixed(2),
          dockerdCpuSeconds: s.dockerdCpuSeconds === null ? null : +s.dockerdCpuSeconds.toFixed(2),
          containerdCpuSeconds: s.containerdCpuSeconds === null ? null : +s.containerdCpuSeconds.toFixed(2),
        })),
        hostCpuSecondsPerRun: +statsHostCpuS.toFixed(2),
        // If this one-shot were repeated every interval, as a share of one core:
        hostCpuPercentOfOneCoreAtInterval: +((statsHostCpuS / (INTERVAL_MS / 1000)) * 100).toFixed(1),
      },
    };
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    const suffix = RESOURCES ? `-${Object.keys(RES).filter((k) => RES[k]).join('-')}` : '';
    writeFileSync(join(__dirname, 'results', `cgroup-sampling${suffix}.json`), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
