#!/usr/bin/env node
// Summarises one or more `node --cpu-prof` profiles over a wall-clock window (e.g. a failover's
// takeover: failover-sim's `failover.killedAtWall` plus `msToAllBack`). V8 stamps samples with
// the monotonic clock (CLOCK_MONOTONIC, µs), the same clock as process.hrtime, so a wall-clock
// time is mapped with this machine's offset between the two, taken when this script runs (right
// for profiles taken since the last clock step).
//
//   node bench/lib/cpuprofile-window.js --from WALL_MS --to WALL_MS [--top 40] FILE.cpuprofile…
//
// Prints samples' time in the window (each sample counts its delta), the top functions by self
// time, and by inclusive time (a function counted once per sample even when recursive).
'use strict';
const fs = require('node:fs');
const { parseArgs } = require('node:util');

const { values, positionals } = parseArgs({
  options: { from: { type: 'string' }, to: { type: 'string' }, top: { type: 'string' } },
  allowPositionals: true,
});
const offsetMs = Date.now() - Number(process.hrtime.bigint() / 1000n) / 1000; // wall = mono + offset
const fromMono = values.from ? (Number(values.from) - offsetMs) * 1000 : -Infinity;
const toMono = values.to ? (Number(values.to) - offsetMs) * 1000 : Infinity;
const top = Number(values.top ?? 40);

const self = new Map();
const incl = new Map();
let total = 0;
let idle = 0;
for (const file of positionals) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => {
    const f = n.callFrame;
    const url = f.url ? f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/packages\//, '') : '';
    return `${f.functionName || '(anon)'} ${url}${url ? ':' + (f.lineNumber + 1) : ''}`;
  };
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (t < fromMono || t > toMono) continue;
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000; // ms this sample stands for
    const n = byId.get(p.samples[i]);
    const nm = name(n);
    if (nm.startsWith('(idle)')) { idle += dt; continue; }
    total += dt;
    self.set(nm, (self.get(nm) ?? 0) + dt);
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const k = name(byId.get(id));
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
    }
  }
}
const fmt = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `${v.toFixed(0).padStart(7)} ms ${(100 * v / total).toFixed(1).padStart(5)} %  ${k}`).join('\n');
console.log(`busy ${total.toFixed(0)} ms, idle ${idle.toFixed(0)} ms in the window`);
console.log('--- self ---\n' + fmt(self));
console.log('--- inclusive ---\n' + fmt(incl));
