#!/usr/bin/env node
// Probe: what a running node process allocates, by function, over a window — including
// objects already collected (V8's sampling heap profiler with includeObjectsCollectedByMajorGC
// and …MinorGC), so the allocation RATE is seen, not what is retained. The process must run
// with --inspect=HOST:PORT; wait-seconds count from when it first answers there. Needs a node with a global WebSocket (22+).
//
//   node bench/probes/alloc-sample.js 127.0.0.1:9339 [wait-seconds=0] [window-seconds=40]
//
// Prints JSON: total sampled bytes and MB/s over the window, and the top 25 functions by
// bytes allocated (self), with their script.
'use strict';
const [target = '127.0.0.1:9339', waitS = '0', windowS = '40'] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  let list;
  for (;;) { // wait for the process to listen, then the settle time
    try { list = await (await fetch(`http://${target}/json/list`)).json(); break; } catch { await sleep(1000); }
  }
  await sleep(Number(waitS) * 1000);
  const ws = new WebSocket(list[0].webSocketDebuggerUrl);
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
  let id = 0;
  const pending = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
  };
  const call = (method, params = {}) => new Promise((res) => { const i = ++id; pending.set(i, res); ws.send(JSON.stringify({ id: i, method, params })); });
  await call('HeapProfiler.enable');
  const t0 = Date.now();
  await call('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await sleep(Number(windowS) * 1000);
  const { result } = await call('HeapProfiler.stopSampling');
  const seconds = (Date.now() - t0) / 1000;
  const byFn = new Map();
  let total = 0;
  const walk = (n) => {
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|packages)\//, '$1/')}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(result.profile.head);
  const top = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([fn, b]) => ({ fn, mb: +(b / 1048576).toFixed(2), mbPerS: +(b / 1048576 / seconds).toFixed(3) }));
  console.log(JSON.stringify({ probe: 'alloc-sample', date: new Date().toISOString(), seconds, totalMb: +(total / 1048576).toFixed(1), mbPerS: +(total / 1048576 / seconds).toFixed(2), top }, null, 2));
  ws.close();
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
