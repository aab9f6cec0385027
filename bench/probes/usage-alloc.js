#!/usr/bin/env node
// Probe: what the agent's usage path (UsageMonitor → UsageSampler → CgroupReader → the
// evaluator's usage rules → UsageReportFilter) allocates per tick with N idle containers,
// without Docker: the real compiled classes over a cgroup v2 tree of plain files in a temp
// dir (cpu.stat, memory.current, memory.stat, pids.current and the limits, as the kernel
// writes them; the reader preads them exactly as it does real cgroup files), the default
// policy, and a usage report every 6 ticks as in the agent. For iterating on allocations:
// the whole agent's rate is bench/probes/alloc-sample.js against a running agent.
//
//   node --max-semi-space-size=1 bench/probes/usage-alloc.js [containers=200] [ticks=60]
//
// Ticks run back to back (not on the 5 s timer); the sampling heap profiler (node:inspector,
// collected objects included) counts what each tick allocates. Prints JSON: KB per tick,
// the MB/s that is at the agent's 5 s interval, and the top functions.
'use strict';
const { Session } = require('node:inspector');
const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { EventEmitter } = require('node:events');

const ROOT = resolve(__dirname, '..', '..');
const { parsePolicy } = require(join(ROOT, 'packages/shared/dist/index.js'));
const { DEFAULT_POLICY_YAML } = require(join(ROOT, 'packages/shared/dist/policy/default-policy.js'));
const { CgroupReader } = require(join(ROOT, 'packages/agent/dist/cgroup/cgroup-reader.js'));
const { UsageMonitor } = require(join(ROOT, 'packages/agent/dist/cgroup/usage-monitor.js'));

const N = Number(process.argv[2] ?? 200);
const TICKS = Number(process.argv[3] ?? 60);
const INTERVAL_MS = 5000;

const MEMORY_STAT = (i) => [
  'anon 1236992', 'file 73728', 'kernel 380928', 'kernel_stack 16384', 'pagetables 53248', 'sec_pagetables 0', 'percpu 0',
  'sock 0', 'vmalloc 0', 'shmem 0', 'zswap 0', 'zswapped 0', 'file_mapped 0', 'file_dirty 0', 'file_writeback 0', 'swapcached 0',
  'anon_thp 0', 'file_thp 0', 'shmem_thp 0', `inactive_anon ${1200000 + i}`, 'active_anon 36864', `inactive_file ${40960 + i}`,
  'active_file 32768', 'unevictable 0', 'slab_reclaimable 120000', 'slab_unreclaimable 150000', 'slab 270000', 'workingset_refault_anon 0',
  'workingset_refault_file 0', 'workingset_activate_anon 0', 'workingset_activate_file 0', 'workingset_restore_anon 0',
  'workingset_restore_file 0', 'workingset_nodereclaim 0', 'pgscan 0', 'pgsteal 0', 'pgscan_kswapd 0', 'pgscan_direct 0',
  'pgscan_khugepaged 0', 'pgsteal_kswapd 0', 'pgsteal_direct 0', 'pgsteal_khugepaged 0', 'pgfault 1234', 'pgmajfault 0',
  'pgrefill 0', 'pgactivate 0', 'pgdeactivate 0', 'pglazyfree 0', 'pglazyfreed 0', 'zswpin 0', 'zswpout 0', 'thp_fault_alloc 0',
  'thp_collapse_alloc 0', '',
].join('\n');

function fakeTree(dir, ids) {
  writeFileSync(join(dir, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
  for (const [i, id] of ids.entries()) {
    const d = join(dir, 'docker', id);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'cpu.stat'), `usage_usec ${123456 + i}\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n`);
    writeFileSync(join(d, 'memory.current'), `${1400000 + i * 10}\n`);
    writeFileSync(join(d, 'memory.stat'), MEMORY_STAT(i));
    writeFileSync(join(d, 'pids.current'), '1\n');
    writeFileSync(join(d, 'memory.max'), 'max\n');
    writeFileSync(join(d, 'pids.max'), 'max\n');
    writeFileSync(join(d, 'cpu.max'), 'max 100000\n');
  }
}

const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } };

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bk-usage-alloc-'));
  const ids = Array.from({ length: N }, (_, i) => (i.toString(16).padStart(8, '0') + 'a'.repeat(56)));
  fakeTree(dir, ids);
  const facts = new Map(ids.map((id, i) => [id, {
    id, name: `/idle-${i}`, imageRef: 'bulkhead-test/busybox:1', imageId: 'sha256:' + 'b'.repeat(64), imageDigest: '', labels: { 'bulkhead.bench': 'agent-idle' },
    state: 'running', user: '', privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '',
    capAdd: [], capDrop: [], securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
    restartPolicy: 'no', restartMaxRetries: 0, envNames: ['PATH'], command: ['sleep', '3600'], createdAtMs: 0, startedAtMs: 0, finishedAtMs: 0, exitCode: 0,
    pid: 1000 + i, devices: [], imageUser: '', restartCount: 0, secretHits: [], project: '',
  }]));
  const containers = Object.assign(new EventEmitter(), { inventory: () => [...facts.values()], get: (id) => facts.get(id) });
  const policy = parsePolicy(DEFAULT_POLICY_YAML);
  const state = { policy, scans: new Map(), version: 1, source: 'controller', sha256: '', projectLabel: 'bulkhead.project' };
  let now = Date.now();
  const reader = await CgroupReader.forHost({ cgroupRoot: dir, procRoot: join(dir, 'proc'), driver: 'cgroupfs', now: () => now });
  let sent = 0;
  const monitor = UsageMonitor.start({
    reader, containers, policy: () => state, logger: silent, onBreach: () => undefined,
    sendReport: () => { sent++; return true; }, interval: INTERVAL_MS, now: () => now,
  });
  await monitor.sampler.stop(); // ticks are driven below
  const tick = async (i) => {
    now += INTERVAL_MS;
    await monitor.sampler.tick();
    if (i % 6 === 5) monitor.report();
  };
  for (let i = 0; i < 30; i++) await tick(i); // warm-up: windows full, code optimized
  const session = new Session();
  session.connect();
  const post = (m, p = {}) => new Promise((res, rej) => session.post(m, p, (e, r) => (e ? rej(e) : res(r))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < TICKS; i++) await tick(i);
  const { profile } = await post('HeapProfiler.stopSampling');
  session.disconnect();
  await monitor.stop();
  rmSync(dir, { recursive: true, force: true });
  const byFn = new Map();
  let total = 0;
  const walk = (n) => {
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|packages)\//, '$1/')}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const perTick = total / TICKS;
  const top = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([fn, b]) => ({ fn, kbPerTick: +(b / TICKS / 1024).toFixed(1) }));
  console.log(JSON.stringify({
    probe: 'usage-alloc', node: process.version, containers: N, ticks: TICKS, reports: sent,
    kbPerTick: +(perTick / 1024).toFixed(1), mbPerSecondAt5s: +(perTick / 1048576 / (INTERVAL_MS / 1000)).toFixed(3), top,
  }, null, 2));
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
