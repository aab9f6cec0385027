#!/usr/bin/env node
// Probe: CPU per read of a kept-open cgroup file, async fs.read (thread pool)
// against a synchronous pread (readSync at offset 0) — why cgroup/cgroup-files.ts
// reads the hot files synchronously. Reads the host's own cgroup v1 root files
// (v2: pass paths as arguments). Prints µs of CPU (user + system) per read.
'use strict';
const fs = require('node:fs');
const files = (process.argv.length > 2 ? process.argv.slice(2) : [
  '/sys/fs/cgroup/cpuacct/cpuacct.usage', '/sys/fs/cgroup/memory/memory.usage_in_bytes',
  '/sys/fs/cgroup/pids/pids.current', '/sys/fs/cgroup/cpuacct/cpuacct.stat',
]).filter((f) => fs.existsSync(f));
if (files.length === 0) throw new Error('no readable cgroup files; pass some as arguments');
const fds = files.map((f) => fs.openSync(f, 'r'));
const N = 20_000;
const buf = Buffer.allocUnsafe(512);
const asyncRead = (fd) => new Promise((res, rej) => fs.read(fd, Buffer.allocUnsafe(512), 0, 512, 0, (e, n) => (e ? rej(e) : res(n))));
const perRead = (c) => ((c.user + c.system) / (N * fds.length)).toFixed(2);
(async () => {
  for (let round = 1; round <= 2; round++) {
    let c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) await Promise.all(fds.map(asyncRead));
    const a = perRead(process.cpuUsage(c0));
    c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) for (const fd of fds) fs.readSync(fd, buf, 0, 512, 0);
    const s = perRead(process.cpuUsage(c0));
    console.log(JSON.stringify({ round, files: files.length, asyncReadUs: Number(a), syncPreadUs: Number(s) }));
  }
  for (const fd of fds) fs.closeSync(fd);
})();
