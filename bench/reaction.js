#!/usr/bin/env node
// Benchmark: reaction latency — a container that breaks an enforced rule
// starts; how long until Bulkhead's enforcement action (pause, kill) has
// completed? Compared with the FLOOR measured in the same run: a bare
// dockerode subscriber with no policy that calls pause/kill directly on the
// `start` event.
//
// Method (also in BENCHMARKS.md): a private dockerd (DOCKER_HOST). In this
// one process:
//   - an OBSERVER: its own event subscription (type=container, event=start);
//     t0 = process.hrtime when a container's `start` event arrives on it;
//   - BULKHEAD: the real agent pieces — ContainerWatcher, Enforcer (with the
//     agent's SecretScanner, as `bulkhead-agent run` wires it) and a
//     PolicyHolder loaded from a local policy file with one rule in
//     `mode: enforce` (check resource-limits, requiring a memory limit,
//     scoped by container label, action pause — and a second holder with
//     action kill); t1 = process.hrtime when the enforcer's onViolation
//     callback reports the action done (result ok), i.e. right after the
//     Docker API call returned;
//   - FLOOR: a plain dockerode event subscriber (type=container,
//     event=start) that calls pause()/kill() for its containers with no
//     policy; t1 = process.hrtime when that call's promise resolves.
// Latency = t1 − t0, the same clock and the same end point for both.
// Containers run one at a time (create, start, wait for the action, remove;
// only t1 − t0 is timed), alternating floor/Bulkhead container by container,
// and pause/kill round by round, so drift and background load hit both
// sides alike. The watcher's docker client adds a label filter to its event
// subscription and listing, so the agent never inspects the floor's
// containers (its inspect would contend with the floor's pause for the
// container lock in dockerd); the floor likewise ignores Bulkhead's.
//
// Bounded: BENCH_N containers per side and action (default 200), 10 s per
// container at most; everything it creates it removes.
//
// Env: BENCH_N (200), BENCH_REACTION_ACTIONS ("pause,kill"),
//      BENCH_REACTION_GAP_MS (pause between containers, default 50),
//      BENCH_LOG_LEVEL (agent log level, default info; lines go to /dev/null).
'use strict';
const { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const Docker = require('dockerode');

const ROOT = resolve(__dirname, '..');
const { createLogger } = require(join(ROOT, 'packages/shared/dist/index.js'));
const { ContainerWatcher } = require(join(ROOT, 'packages/agent/dist/docker/watcher.js'));
const { Enforcer } = require(join(ROOT, 'packages/agent/dist/enforce/enforcer.js'));
const { PolicyHolder } = require(join(ROOT, 'packages/agent/dist/policy/policy-holder.js'));
const { SecretScanner } = require(join(ROOT, 'packages/agent/dist/secrets/secret-scanner.js'));

const N = Number(process.env.BENCH_N ?? 200);
const ACTIONS = (process.env.BENCH_REACTION_ACTIONS ?? 'pause,kill').split(',').map((s) => s.trim()).filter(Boolean);
const GAP_MS = Number(process.env.BENCH_REACTION_GAP_MS ?? 50);
const TIMEOUT_MS = 10_000;
const IMAGE = 'bulkhead-test/busybox:1';
const LABEL = 'bulkhead.bench';
const SIDE_LABEL = 'bulkhead.bench.side';

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
  if (xs.length === 0) return { n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const r = (v) => Math.round(v * 100) / 100;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]), mean: r(s.reduce((a, b) => a + b, 0) / s.length) };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function policyYaml(action) {
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata:
  name: bench-reaction-${action}
spec:
  rules:
    - id: bench.reaction-${action}
      description: Benchmark containers must have a memory limit (they do not).
      severity: high
      mode: enforce
      action: { type: ${action} }
      scope:
        containerLabels: { "${SIDE_LABEL}": bulkhead }
      check: { type: resource-limits, requireMemory: true, requireCpu: false, requirePids: false }
`;
}

/** Newline-delimited JSON from a docker event stream. */
function onEvents(stream, cb) {
  let buf = '';
  stream.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim() === '') continue;
      try { cb(JSON.parse(line)); } catch { /* not JSON */ }
    }
  });
}

/** The agent's docker client, with its event subscription and listing scoped to the Bulkhead side's containers. */
function scopedDocker(docker) {
  const label = `${SIDE_LABEL}=bulkhead`;
  return new Proxy(docker, {
    get(target, prop) {
      if (prop === 'getEvents') {
        return (opts = {}) => target.getEvents({ ...opts, filters: { ...(opts.filters ?? {}), label: [label] } });
      }
      if (prop === 'listContainers') {
        return (opts = {}) => target.listContainers({ ...opts, filters: { ...(opts.filters ?? {}), label: [label] } });
      }
      const v = target[prop];
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function main() {
  const host = dockerHost();
  const socketPath = host.slice('unix://'.length);
  const docker = new Docker({ socketPath });
  const dir = mkdtempSync(join(tmpdir(), 'bk-reaction-'));
  const streams = [];
  let watcher;
  let enforcer;
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();

  /** Per container id: { side, action, t0, t1, timing, error, resolve } */
  const pending = new Map();
  const settle = (rec) => {
    if (rec.t0 !== undefined && (rec.t1 !== undefined || rec.error)) rec.resolve();
  };

  try {
    const logger = createLogger({ name: 'bench-reaction', level: process.env.BENCH_LOG_LEVEL ?? 'info', destination: require('node:fs').createWriteStream('/dev/null') });

    // Policy holders, one per action (local policy files, as `--policy-file`).
    const holders = {};
    for (const a of ACTIONS) {
      const file = join(dir, `policy-${a}.yaml`);
      writeFileSync(file, policyYaml(a));
      holders[a] = PolicyHolder.open({ stateDir: join(dir, `state-${a}`), logger, localPolicyPath: file });
      if (holders[a].state.source !== 'local') throw new Error(`policy for ${a} did not load`);
    }
    let currentAction = ACTIONS[0];

    // Observer: t0.
    const observer = await docker.getEvents({ filters: { type: ['container'], event: ['start'], label: [LABEL] } });
    streams.push(observer);
    onEvents(observer, (ev) => {
      const t = nowMs();
      const rec = pending.get(ev.id ?? ev.Actor?.ID);
      if (rec && rec.t0 === undefined) {
        rec.t0 = t;
        settle(rec);
      }
    });

    // Floor: a bare subscriber, no policy.
    const floorDocker = new Docker({ socketPath });
    const floor = await floorDocker.getEvents({ filters: { type: ['container'], event: ['start'] } });
    streams.push(floor);
    onEvents(floor, (ev) => {
      if (ev.Action !== 'start' || ev.Actor?.Attributes?.[SIDE_LABEL] !== 'floor') return;
      const id = ev.Actor.ID;
      const action = ev.Actor.Attributes['bulkhead.bench.action'];
      const c = floorDocker.getContainer(id);
      (action === 'kill' ? c.kill() : c.pause()).then(
        () => {
          const t = nowMs();
          const rec = pending.get(id);
          if (rec && rec.t1 === undefined) { rec.t1 = t; settle(rec); }
        },
        (err) => {
          const rec = pending.get(id);
          if (rec) { rec.error = `floor ${action}: ${err.message}`; settle(rec); }
        },
      );
    });

    // Bulkhead: the agent's watcher + enforcer, as `bulkhead-agent run` wires them.
    const agentDocker = scopedDocker(new Docker({ socketPath }));
    watcher = await ContainerWatcher.start({ docker: agentDocker, logger: logger.child({ component: 'watcher' }) });
    const secrets = new SecretScanner({ docker: agentDocker, logger: logger.child({ component: 'secrets' }) });
    const otherReports = [];
    enforcer = new Enforcer({
      docker: agentDocker,
      policy: () => holders[currentAction].state,
      containers: watcher,
      logger: logger.child({ component: 'enforce' }),
      secrets,
      onViolation: (report, timing) => {
        const t = nowMs();
        const rec = pending.get(report.containerId);
        if (rec && rec.t1 === undefined && report.action?.type === rec.action && report.action.result === 'ok') {
          rec.t1 = t;
          rec.timing = timing;
          settle(rec);
        } else if (rec && report.action?.result !== 'ok') {
          otherReports.push({ side: rec.side, action: report.action });
        }
      },
    });
    enforcer.attach(watcher);

    const results = {};
    for (const a of ACTIONS) {
      results[a] = { floor: [], bulkhead: [], failures: { floor: [], bulkhead: [] }, bulkheadTiming: { sinceEventMs: [], sinceReceiptMs: [], startDelayMs: [] }, startCallMs: { floor: [], bulkhead: [] } };
    }

    const one = async (side, action) => {
      const c = await docker.createContainer({
        Image: IMAGE,
        Cmd: ['sleep', '600'],
        Labels: { [LABEL]: 'reaction', [SIDE_LABEL]: side, 'bulkhead.bench.action': action },
        HostConfig: { NetworkMode: 'none' },
      });
      const rec = { side, action };
      const done = new Promise((res) => (rec.resolve = res));
      pending.set(c.id, rec);
      let timer;
      try {
        const s0 = nowMs();
        await c.start();
        results[action].startCallMs[side].push(nowMs() - s0);
        const ok = await Promise.race([done.then(() => true), new Promise((res) => (timer = setTimeout(() => res(false), TIMEOUT_MS)))]);
        clearTimeout(timer);
        if (!ok || rec.error) {
          results[action].failures[side].push(rec.error ?? `no ${action} within ${TIMEOUT_MS} ms (t0 ${rec.t0 !== undefined}, t1 ${rec.t1 !== undefined})`);
          return;
        }
        results[action][side].push(rec.t1 - rec.t0);
        if (rec.timing) {
          for (const k of Object.keys(results[action].bulkheadTiming)) results[action].bulkheadTiming[k].push(rec.timing[k]);
        }
        // Not timed: check the action really happened.
        const st = (await c.inspect()).State;
        const happened = action === 'pause' ? st.Paused === true : st.Running === false;
        if (!happened) results[action].failures[side].push(`${action} reported done but state is ${st.Status}`);
      } finally {
        clearTimeout(timer);
        await enforcer.idle();
        await c.remove({ force: true }).catch(() => undefined);
        pending.delete(c.id);
        await sleep(GAP_MS);
      }
    };

    // Warm-up (not recorded): one container per side and action.
    for (const a of ACTIONS) {
      currentAction = a;
      for (const side of ['floor', 'bulkhead']) {
        await one(side, a);
        results[a][side].length = 0;
        results[a].failures[side].length = 0;
        results[a].startCallMs[side].length = 0;
        for (const k of Object.keys(results[a].bulkheadTiming)) results[a].bulkheadTiming[k].length = 0;
      }
    }

    // Rounds of 10 per side per action: actions rotate per round, sides alternate per container.
    const ROUND = 10;
    const t0 = Date.now();
    for (let r = 0; r * ROUND < N; r++) {
      const order = r % 2 === 0 ? ACTIONS : [...ACTIONS].reverse();
      for (const a of order) {
        currentAction = a;
        const count = Math.min(ROUND, N - r * ROUND);
        for (let i = 0; i < count; i++) {
          const sides = (r + i) % 2 === 0 ? ['floor', 'bulkhead'] : ['bulkhead', 'floor'];
          for (const side of sides) await one(side, a);
        }
      }
      process.stderr.write(`reaction: round ${r + 1}/${Math.ceil(N / ROUND)} (${Math.round((Date.now() - t0) / 1000)} s)\n`);
    }

    const result = {
      benchmark: 'reaction',
      date: new Date().toISOString(),
      node: process.version,
      containersPerSideAndAction: N,
      loadavgBefore: loadBefore,
      loadavgAfter: readFileSync('/proc/loadavg', 'utf8').trim(),
      method: 't0 = start event received on an observer event subscription (process.hrtime); t1 = action call returned (floor: pause()/kill() resolved; Bulkhead: Enforcer onViolation with result ok)',
    };
    for (const a of ACTIONS) {
      const r = results[a];
      const f = summary(r.floor);
      const b = summary(r.bulkhead);
      result[a] = {
        floorMs: f,
        bulkheadMs: b,
        p99DifferenceMs: f.n && b.n ? Math.round((b.p99 - f.p99) * 100) / 100 : undefined,
        p50DifferenceMs: f.n && b.n ? Math.round((b.p50 - f.p50) * 100) / 100 : undefined,
        // The k-th floor and Bulkhead containers ran back to back (no failures = aligned).
        pairedMedianDifferenceMs: r.floor.length === r.bulkhead.length && r.floor.length > 0
          ? Math.round(summary(r.bulkhead.map((x, k) => x - r.floor[k])).p50 * 100) / 100 : undefined,
        bulkheadBreakdownMs: {
          dockerdEventTimeToDone: summary(r.bulkheadTiming.sinceEventMs),
          receiptToDone: summary(r.bulkheadTiming.sinceReceiptMs),
          receiptToCall: summary(r.bulkheadTiming.startDelayMs),
        },
        dockerStartCallMs: { floor: summary(r.startCallMs.floor), bulkhead: summary(r.startCallMs.bulkhead) },
        failures: { floor: r.failures.floor.length, bulkhead: r.failures.bulkhead.length, examples: [...r.failures.floor, ...r.failures.bulkhead].slice(0, 5) },
      };
    }
    if (otherReports.length > 0) result.unexpectedReports = otherReports.slice(0, 10);
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'reaction.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await enforcer?.stop();
    await watcher?.stop();
    for (const s of streams) s.destroy?.();
    const old = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=reaction`] } });
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
