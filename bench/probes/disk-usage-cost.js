#!/usr/bin/env node
// Probe: CPU and wall time of DiskUsageReader.read() (packages/agent/dist) for
// N targets (default 200), each with a small writable-layer tree like a
// typical container's upper dir (a few directories, ~30 files, one 1 MiB
// file) and a json-file log with one rotated file — in a temp dir, no engine.
//
// Prints, as JSON lines:
// - cold: the first read(s) walking every tree (within the entry budget);
// - quiet: a read when nothing changed (the per-tick cost at steady state:
//   one log stat, the watched-dir and largest-file re-stats per target);
// - busy: a read when 10 % of the targets wrote a new file in their layer's
//   root and appended to their log (rescans of those trees);
// each as µs of CPU (process.cpuUsage: user + system, libuv pool threads
// included) and ms of wall per read, and as a share of one core at a 5 s tick.
// Usage: npm run build; node bench/probes/disk-usage-cost.js [N] [reads]
'use strict';
const { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { DiskUsageReader } = require(resolve(__dirname, '../../packages/agent/dist/resources/disk-usage.js'));

const N = Number(process.argv[2] ?? 200);
const READS = Number(process.argv[3] ?? 20);
const TICK_MS = 5000;

function makeTree(root, i) {
  const up = join(root, `overlay2/l${i}/diff`);
  for (const d of ['etc', 'tmp', 'root', 'var/log/app', 'var/lib/app/data', 'run']) mkdirSync(join(up, d), { recursive: true });
  for (let f = 0; f < 6; f++) {
    writeFileSync(join(up, 'etc', `conf${f}`), 'x'.repeat(200));
    writeFileSync(join(up, 'var/log/app', `log${f}`), 'y'.repeat(3000));
    writeFileSync(join(up, 'var/lib/app/data', `d${f}`), 'z'.repeat(10_000));
    writeFileSync(join(up, 'tmp', `t${f}`), 'w');
    writeFileSync(join(up, 'run', `p${f}`), String(f));
  }
  writeFileSync(join(up, 'var/lib/app/data/big'), Buffer.alloc(1024 * 1024, 1));
  const id = `${i}`.padStart(64, '0');
  const cdir = join(root, 'containers', id);
  mkdirSync(cdir, { recursive: true });
  writeFileSync(join(cdir, `${id}-json.log`), 'l'.repeat(5000));
  writeFileSync(join(cdir, `${id}-json.log.1`), 'l'.repeat(20000));
  return { id, pid: 0, graphDriver: 'overlay2', upperDir: up, logPath: join(cdir, `${id}-json.log`), logDriver: 'json-file' };
}

async function measure(reader, targets, now, before) {
  if (before) before();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const m = await reader.read(targets, now);
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return { cpuUs: c.user + c.system, wallMs, known: [...m.values()].filter((u) => u.writableBytes !== null).length };
}

function summary(name, runs) {
  const cpu = runs.map((r) => r.cpuUs).sort((a, b) => a - b);
  const wall = runs.map((r) => r.wallMs).sort((a, b) => a - b);
  const median = (a) => a[Math.floor(a.length / 2)];
  return {
    phase: name, targets: N, reads: runs.length,
    cpuMsPerRead: Number((median(cpu) / 1000).toFixed(2)), cpuMsMax: Number((cpu[cpu.length - 1] / 1000).toFixed(2)),
    wallMsPerRead: Number(median(wall).toFixed(1)), wallMsMax: Number(wall[wall.length - 1].toFixed(1)),
    percentOfCoreAt5s: Number(((median(cpu) / 1000 / TICK_MS) * 100).toFixed(3)),
    knownAfter: runs[runs.length - 1].known,
  };
}

(async () => {
  const root = mkdtempSync(join(tmpdir(), 'bk-disk-bench-'));
  try {
    const targets = Array.from({ length: N }, (_, i) => makeTree(root, i));
    const reader = new DiskUsageReader({ dataRoot: root, ...JSON.parse(process.env.BK_DISK_OPTS || "{}") });
    let now = 0;
    const cold = [];
    do cold.push(await measure(reader, targets, (now += TICK_MS)));
    while (cold[cold.length - 1].known < N && cold.length < 50);
    console.log(JSON.stringify(summary('cold (first walks)', cold)));
    const quiet = [];
    for (let i = 0; i < READS; i++) quiet.push(await measure(reader, targets, (now += TICK_MS)));
    console.log(JSON.stringify(summary('quiet (nothing changed)', quiet)));
    const busy = [];
    for (let i = 0; i < READS; i++) {
      busy.push(await measure(reader, targets, (now += TICK_MS), () => {
        for (let k = 0; k < N / 10; k++) {
          const tg = targets[(i * 7 + k * 10) % N];
          writeFileSync(join(tg.upperDir, `new-${i}`), 'n'.repeat(4096));
          appendFileSync(tg.logPath, 'more log\n');
        }
      }));
    }
    console.log(JSON.stringify(summary('busy (10 % of layers changed per read)', busy)));
    reader.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
})();
