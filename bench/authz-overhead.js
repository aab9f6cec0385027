#!/usr/bin/env node
// Benchmark: what Bulkhead's Docker authorization plugin adds to `docker
// create` — the ratio of Docker API createContainer latency with and without
// the plugin, p50 and p99 over N creates each (default 200), same run.
//
// Method (also in BENCHMARKS.md): this script starts TWO private engines with
// scripts/engine.sh — PLAIN, and AUTHZ with
// `--authorization-plugin=<unique name>` — and, BEFORE the AUTHZ engine, the
// real AuthzPlugin (packages/agent/dist/authz) on
// /run/docker/plugins/<name>.sock, in a process of its own
// (bench/lib/authz-plugin-process.js) started with the agent's production node
// flags and environment (bench/lib/agent-runtime.js: those of the systemd unit).
// The plugin's answer depends on a mode this script sets over IPC between
// requests (not timed), so three variants share one engine and one plugin
// connection:
//   bare      AuthzPlugin's `preempt` hook answers {"Allow":true} before
//             the request is parsed — dockerd's plugin round trip (two calls
//             per API request, AuthZReq and AuthZRes) over Bulkhead's plugin
//             transport (authz/plugin-http.ts) and nothing else;
//   allow     AuthzPlugin (protocol, envelope parsing) with an evaluate that
//             allows everything — adds Bulkhead's plugin server;
//   bulkhead  AuthzPlugin + AuthzDecider with the DEFAULT policy, every rule
//             the benchmark's creates do NOT break switched to enforce mode
//             (the rest stay in monitor mode, so each create is fully
//             evaluated, its monitor findings reported, and it is allowed) —
//             what an agent adds.
// Each create is a Docker API createContainer (`--network none`, busybox,
// limits, read-only rootfs, non-root user), timed with process.hrtime around
// the call; the container is then removed (not timed). The four variants
// (plain engine, bare, allow, bulkhead) take turns create by create, the
// order rotating, so drift and background load hit all alike. Warm-up: 20
// creates per variant, not recorded.
//
// Bounded: N creates per variant; everything it starts it stops (engines in a
// finally, then the plugin, whose socket it removes).
//
// Second phase, the command users type: the `docker create` CLI (same flags,
// its own DOCKER_CONFIG), timed around the whole process, plain engine vs.
// bare vs. Bulkhead, BENCH_AUTHZ_CLI_N times each (default 100; 0 skips it),
// same rotation. The CLI's own start-up is part of what a user waits for, so
// this ratio is smaller than the API-level one; both are reported.
//
// Env: BENCH_AUTHZ_N (200); BENCH_AUTHZ_CLI_N (100); BENCH_AUTHZ_AA=1 starts the second engine
// WITHOUT the plugin (an A/A control: how much two identical engines differ).
'use strict';
const { execFile, fork } = require('node:child_process');
const { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync, createWriteStream } = require('node:fs');
const { join, resolve } = require('node:path');
const Docker = require('dockerode');

const ROOT = resolve(__dirname, '..');
const { createLogger, DEFAULT_POLICY_YAML } = require(join(ROOT, 'packages/shared/dist/index.js'));
const { parseAuthzRequest, DOCKER_PLUGIN_DIR } = require(join(ROOT, 'packages/agent/dist/authz/plugin-server.js'));
const { AGENT_NODE_FLAGS, agentEnv } = require('./lib/agent-runtime');
const { AuthzDecider } = require(join(ROOT, 'packages/agent/dist/authz/authz-decider.js'));
const { PolicyHolder } = require(join(ROOT, 'packages/agent/dist/policy/policy-holder.js'));

const N = Number(process.env.BENCH_AUTHZ_N ?? 200);
const CLI_N = Number(process.env.BENCH_AUTHZ_CLI_N ?? 100);
const CLI_VARIANTS = ['plain', 'bare', 'bulkhead'];
// A/A control: the second engine WITHOUT the plugin flag, so every variant but
// `plain` measures engine B with no plugin — how far two identical engines differ.
const AA_CONTROL = process.env.BENCH_AUTHZ_AA === '1';
const WARMUP = 20;
const ENGINE = join(ROOT, 'scripts/engine.sh');
const IMAGE = 'bulkhead-test/busybox:user1000';
const VARIANTS = ['plain', 'bare', 'allow', 'bulkhead'];

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v) => Math.round(v * 100) / 100;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]), mean: r(s.reduce((a, b) => a + b, 0) / s.length) };
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
const ratio = (a, b) => Math.round((a / b) * 1000) / 1000;
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** The create request every variant sends (what `docker create` sends for a hardened service, minus the CLI's defaults). */
function createBody(i) {
  return {
    Image: IMAGE,
    Cmd: ['sleep', '600'],
    Env: ['APP_MODE=bench', `BENCH_I=${i}`],
    Labels: { 'bulkhead.bench': 'authz-overhead', 'bulkhead.project': 'bench' },
    HostConfig: {
      NetworkMode: 'none',
      Memory: 64 * 1024 * 1024,
      NanoCpus: 500_000_000,
      PidsLimit: 64,
      ReadonlyRootfs: true,
      SecurityOpt: ['no-new-privileges'],
      CapDrop: ['ALL'],
    },
  };
}

/** The same create as createBody, as `docker create` flags. */
function createArgs(i) {
  return [
    'create', '--network', 'none', '--memory', '64m', '--cpus', '0.5', '--pids-limit', '64', '--read-only',
    '--security-opt', 'no-new-privileges', '--cap-drop', 'ALL', '-e', 'APP_MODE=bench', '-e', `BENCH_I=${i}`,
    '--label', 'bulkhead.bench=authz-overhead', '--label', 'bulkhead.project=bench', IMAGE, 'sleep', '600',
  ];
}

/** Runs the docker CLI against one engine; resolves with its stdout (throws with stderr on failure). */
function dockerCli(sock, args, configDir) {
  return new Promise((res, rej) => {
    execFile('docker', ['--host', `unix://${sock}`, ...args], { env: { PATH: process.env.PATH, DOCKER_CONFIG: configDir }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return rej(new Error(`docker ${args[0]}: ${stderr.trim() || err.message}`));
      res(stdout.trim());
    });
  });
}

/** scripts/engine.sh, asynchronously: the in-process plugin must keep answering dockerd meanwhile. */
function engine(cmd, dir, extraArgs) {
  return new Promise((res, rej) => {
    const child = execFile('bash', [ENGINE, cmd, dir], {
      env: { ...process.env, BULKHEAD_ENGINE_DOCKERD_ARGS: extraArgs ?? '' },
      timeout: 180_000,
    }, (err, stdout) => {
      if (err) return rej(err);
      const m = /DOCKER_HOST=unix:\/\/(\S+)/.exec(stdout);
      res(m ? m[1] : undefined);
    });
    child.stderr.pipe(process.stderr);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The default policy with every rule NOT in `broken` switched to enforce. */
function enforcedDefaultPolicy(broken) {
  let id;
  const enforced = [];
  const text = DEFAULT_POLICY_YAML.split('\n').map((line) => {
    const m = /^\s+- id: (\S+)/.exec(line);
    if (m) id = m[1];
    if (/^\s+mode: monitor\s*$/.test(line) && id && !broken.has(id)) {
      enforced.push(id);
      return line.replace('monitor', 'enforce');
    }
    return line;
  }).join('\n');
  return { text, enforced };
}

/** The plugin process (bench/lib/authz-plugin-process.js); ask() sends one message and waits for its answer. */
function startPluginProcess() {
  const child = fork(join(__dirname, 'lib', 'authz-plugin-process.js'), [], { execArgv: AGENT_NODE_FLAGS, env: agentEnv(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let pending;
  let exited;
  child.on('message', (m) => {
    const p = pending;
    pending = undefined;
    if (!p) return;
    if (m.type === 'error') p.reject(new Error(`plugin process: ${m.message}`));
    else if (m.type !== p.type) p.reject(new Error(`plugin process answered ${m.type}, expected ${p.type}`));
    else p.resolve(m);
  });
  child.on('exit', (code, signal) => {
    exited = `plugin process exited (${signal ?? code})`;
    if (pending) pending.reject(new Error(exited));
    pending = undefined;
  });
  const ask = (msg, type) => new Promise((resolve, reject) => {
    if (exited) return reject(new Error(exited));
    pending = { type, resolve, reject };
    child.send(msg);
  });
  const stop = async () => {
    if (exited) return;
    const gone = new Promise((r) => child.once('exit', r));
    await Promise.race([ask({ type: 'stop' }, 'stopped').catch(() => undefined), sleep(10_000)]);
    if (!exited) child.kill('SIGKILL');
    await gone;
  };
  return { ask, stop };
}

async function main() {
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  const dir = mkdtempSync('/tmp/bkaz-');
  const plainDir = join(dir, 'p');
  const authzDir = join(dir, 'a');
  const pluginName = `bk-bench-authz-${process.pid}`;
  const socketPath = join(DOCKER_PLUGIN_DIR, `${pluginName}.sock`);
  const logger = createLogger({ name: 'bench-authz', level: process.env.BENCH_LOG_LEVEL ?? 'info', destination: createWriteStream('/dev/null') });
  const started = [];
  let plugin;
  let stoppedOk = true;
  try {
    // 1. The plain engine; on it, find which default-policy rules the benchmark's create breaks.
    const plainSock = await engine('start', plainDir);
    started.push(plainDir);
    const plain = new Docker({ socketPath: plainSock });
    writeFileSync(join(dir, 'default-monitor.yaml'), DEFAULT_POLICY_YAML);
    const probeHolder = PolicyHolder.open({ stateDir: join(dir, 'probe'), logger, localPolicyPath: join(dir, 'default-monitor.yaml') });
    // A monitor-only policy answers at once and judges the request for its
    // report afterwards: wait for that report, not for the answer.
    let gotFindings;
    const probeFindings = new Promise((res) => { gotFindings = res; });
    const probe = new AuthzDecider({
      policy: () => probeHolder.state, containers: { get: () => undefined, inventory: () => [] }, docker: plain, logger,
      onDecision: (d) => gotFindings(d.findings.map((f) => f.ruleId)),
    });
    const envelope = (body) => JSON.stringify({
      RequestMethod: 'POST', RequestUri: '/v1.41/containers/create', RequestBody: Buffer.from(JSON.stringify(body)).toString('base64'),
    });
    const d0 = await probe.decide(parseAuthzRequest(envelope(createBody(0))));
    if (!d0.allow) throw new Error(`probe: the default policy in monitor mode denied the create: ${d0.msg}`);
    const broken = new Set(await Promise.race([probeFindings, sleep(10_000).then(() => { throw new Error('probe: no decision report within 10 s'); })]));
    const { text, enforced } = enforcedDefaultPolicy(broken);
    writeFileSync(join(dir, 'default-enforce.yaml'), text);
    const rules = PolicyHolder.open({ stateDir: join(dir, 'enforce-check'), logger, localPolicyPath: join(dir, 'default-enforce.yaml') }).state.policy.spec.rules;

    // 2. The plugin, BEFORE the engine that uses it, as the agent runs it: a
    // process of its own with the unit's node flags. Its docker client points at that engine.
    const authzSock = join(authzDir, 'docker.sock');
    plugin = startPluginProcess();
    await plugin.ask({ type: 'start', socketPath, policyPath: join(dir, 'default-enforce.yaml'), stateDir: join(dir, 'state'), dockerSock: authzSock }, 'started');
    let mode = 'allow';
    const setMode = async (m) => {
      if (m === mode) return;
      await plugin.ask({ type: 'mode', mode: m }, 'mode');
      mode = m;
    };

    // 3. The engine with the plugin.
    started.push(authzDir);
    const authzSockGot = await engine('start', authzDir, AA_CONTROL ? '' : `--authorization-plugin=${pluginName}`);
    if (authzSockGot !== authzSock) throw new Error(`unexpected engine socket ${authzSockGot}`);
    const authz = new Docker({ socketPath: authzSock });

    const clients = { plain, bare: authz, allow: authz, bulkhead: authz };
    const times = Object.fromEntries(VARIANTS.map((v) => [v, []]));
    const failures = Object.fromEntries(VARIANTS.map((v) => [v, []]));
    let seq = 0;
    const one = async (variant, record) => {
      await setMode(variant === 'plain' ? 'allow' : variant);
      const docker = clients[variant];
      const body = createBody(seq++);
      const t0 = nowMs();
      let c;
      try {
        c = await docker.createContainer(body);
      } catch (err) {
        failures[variant].push(err.message);
        if (record) times[variant].push(NaN);
        return;
      }
      const dt = nowMs() - t0;
      if (record) {
        times[variant].push(dt);
      }
      await c.remove({ force: true }).catch((err) => failures[variant].push(`remove: ${err.message}`));
    };

    for (let i = 0; i < WARMUP; i++) for (const v of VARIANTS) await one(v, false);
    // Counters from here on: the warm-up's decisions are dropped.
    const statsBefore = (await plugin.ask({ type: 'stats', reset: true }, 'stats')).plugin;
    const t0 = Date.now();
    for (let i = 0; i < N; i++) {
      // Rotate the order so no variant always follows the same one.
      for (let k = 0; k < VARIANTS.length; k++) await one(VARIANTS[(i + k) % VARIANTS.length], true);
      if ((i + 1) % 50 === 0) process.stderr.write(`authz-overhead: ${i + 1}/${N} rounds (${Math.round((Date.now() - t0) / 1000)} s)\n`);
    }
    await setMode('allow');

    // Phase 2: the docker CLI, the command a user runs.
    const cliTimes = Object.fromEntries(CLI_VARIANTS.map((v) => [v, []]));
    const cliFailures = Object.fromEntries(CLI_VARIANTS.map((v) => [v, []]));
    const cliSocks = { plain: plainSock, bare: authzSock, bulkhead: authzSock };
    const configDir = join(dir, 'docker-config');
    mkdirSync(configDir, { recursive: true });
    const cliOne = async (variant, record) => {
      await setMode(variant === 'plain' ? 'allow' : variant);
      const t = nowMs();
      let id;
      try {
        id = await dockerCli(cliSocks[variant], createArgs(seq++), configDir);
      } catch (err) {
        cliFailures[variant].push(err.message);
        if (record) cliTimes[variant].push(NaN);
        return;
      }
      if (record) cliTimes[variant].push(nowMs() - t);
      await clients[variant].getContainer(id).remove({ force: true }).catch((err) => cliFailures[variant].push(`remove: ${err.message}`));
    };
    if (CLI_N > 0) {
      for (let i = 0; i < 5; i++) for (const v of CLI_VARIANTS) await cliOne(v, false);
      for (let i = 0; i < CLI_N; i++) {
        for (let k = 0; k < CLI_VARIANTS.length; k++) await cliOne(CLI_VARIANTS[(i + k) % CLI_VARIANTS.length], true);
        if ((i + 1) % 50 === 0) process.stderr.write(`authz-overhead: CLI ${i + 1}/${CLI_N} rounds\n`);
      }
    }
    await setMode('allow');

    const { plugin: statsAfter, decisions } = await plugin.ask({ type: 'stats' }, 'stats');
    const ok = (xs) => xs.filter((x) => !Number.isNaN(x));
    const s = Object.fromEntries(VARIANTS.map((v) => [v, summary(ok(times[v]))]));
    // Round i ran all four variants back to back: per-round differences
    // cancel drift, and resampling rounds (bootstrap) gives an interval.
    const paired = (a, b, from = times) => {
      const d = ok(from[a].map((x, i) => x - from[b][i]));
      return Math.round(median(d) * 100) / 100;
    };
    const bootstrap = (a, b, p, from = times) => {
      let seed = 7;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
      const rs = [];
      const n = from[a].length;
      for (let k = 0; k < 2000; k++) {
        const xa = [];
        const xb = [];
        for (let j = 0; j < n; j++) {
          const i = Math.floor(rnd() * n);
          xa.push(from[a][i]);
          xb.push(from[b][i]);
        }
        const sa = ok(xa).sort((x, y) => x - y);
        const sb = ok(xb).sort((x, y) => x - y);
        rs.push(pct(sa, p) / pct(sb, p));
      }
      rs.sort((x, y) => x - y);
      return [Math.round(pct(rs, 2.5) * 1000) / 1000, Math.round(pct(rs, 97.5) * 1000) / 1000];
    };
    const result = {
      benchmark: 'authz-overhead',
      date: new Date().toISOString(),
      node: process.version,
      pluginProcessNodeFlags: AGENT_NODE_FLAGS,
      createsPerVariant: N,
      ...(AA_CONTROL ? { aaControl: 'second engine started WITHOUT the plugin: bare/allow/bulkhead measure a plain engine B' } : {}),
      loadavgBefore: loadBefore,
      loadavgAfter: readFileSync('/proc/loadavg', 'utf8').trim(),
      policy: {
        name: 'default (DEFAULT_POLICY_YAML)',
        rules: rules.length,
        enforce: enforced,
        monitorBecauseTheCreateBreaksThem: [...broken],
      },
      createMs: s,
      createMsDeciles: Object.fromEntries(VARIANTS.map((v) => {
        const so = ok(times[v]).sort((a, b) => a - b);
        return [v, [10, 20, 30, 40, 50, 60, 70, 80, 90].map((p) => Math.round(pct(so, p) * 10) / 10)];
      })),
      ratioToPlain: {
        bulkhead: { p50: ratio(s.bulkhead.p50, s.plain.p50), p99: ratio(s.bulkhead.p99, s.plain.p99), mean: ratio(s.bulkhead.mean, s.plain.mean) },
        allow: { p50: ratio(s.allow.p50, s.plain.p50), p99: ratio(s.allow.p99, s.plain.p99), mean: ratio(s.allow.mean, s.plain.mean) },
        bare: { p50: ratio(s.bare.p50, s.plain.p50), p99: ratio(s.bare.p99, s.plain.p99), mean: ratio(s.bare.mean, s.plain.mean) },
      },
      ratioToPlain95ciBootstrap: {
        bulkhead: { p50: bootstrap('bulkhead', 'plain', 50), p99: bootstrap('bulkhead', 'plain', 99) },
        bare: { p50: bootstrap('bare', 'plain', 50), p99: bootstrap('bare', 'plain', 99) },
      },
      pairedMedianDifferenceMs: {
        bulkheadMinusPlain: paired('bulkhead', 'plain'),
        bareMinusPlain: paired('bare', 'plain'),
        allowMinusBare: paired('allow', 'bare'),
        bulkheadMinusAllow: paired('bulkhead', 'allow'),
        bulkheadMinusBare: paired('bulkhead', 'bare'),
      },
      addedMsP50: {
        pluginRoundTrip: Math.round((s.bare.p50 - s.plain.p50) * 100) / 100,
        authzPluginServer: Math.round((s.allow.p50 - s.bare.p50) * 100) / 100,
        policyEvaluation: Math.round((s.bulkhead.p50 - s.allow.p50) * 100) / 100,
      },
      deciderDecisionMs: decisions.decisionMs.length ? summary(decisions.decisionMs) : undefined,
      pluginStats: {
        requests: statsAfter.requests - statsBefore.requests,
        denied: statsAfter.denied - statsBefore.denied,
        failOpen: statsAfter.failOpen - statsBefore.failOpen,
        deciderDenied: decisions.denied,
      },
      dockerCli: CLI_N > 0 ? (() => {
        const cs = Object.fromEntries(CLI_VARIANTS.map((v) => [v, summary(ok(cliTimes[v]))]));
        return {
          what: '`docker create` CLI with the same flags, timed around the whole command (process start to exit)',
          createsPerVariant: CLI_N,
          createMs: cs,
          ratioToPlain: {
            bulkhead: { p50: ratio(cs.bulkhead.p50, cs.plain.p50), p99: ratio(cs.bulkhead.p99, cs.plain.p99) },
            bare: { p50: ratio(cs.bare.p50, cs.plain.p50), p99: ratio(cs.bare.p99, cs.plain.p99) },
          },
          ratioToPlain95ciBootstrap: {
            bulkhead: { p50: bootstrap('bulkhead', 'plain', 50, cliTimes), p99: bootstrap('bulkhead', 'plain', 99, cliTimes) },
          },
          pairedMedianDifferenceMs: { bulkheadMinusPlain: paired('bulkhead', 'plain', cliTimes), bulkheadMinusBare: paired('bulkhead', 'bare', cliTimes) },
          failures: Object.fromEntries(CLI_VARIANTS.map((v) => [v, cliFailures[v].length])),
          failureExamples: CLI_VARIANTS.flatMap((v) => cliFailures[v].slice(0, 2).map((m) => `${v}: ${m}`)),
        };
      })() : undefined,
      failures: Object.fromEntries(VARIANTS.map((v) => [v, failures[v].length])),
      failureExamples: VARIANTS.flatMap((v) => failures[v].slice(0, 2).map((m) => `${v}: ${m}`)),
    };
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'authz-overhead.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    // Engines first (stopping one runs `docker rm -f` through its plugin), then the plugin.
    for (const d of started.reverse()) {
      try {
        await engine('stop', d);
      } catch (err) {
        stoppedOk = false;
        console.error(`engine.sh stop ${d} failed: ${err.message}`);
      }
    }
    if (plugin) await plugin.stop();
    rmSync(socketPath, { force: true });
    if (stoppedOk) rmSync(dir, { recursive: true, force: true });
    else console.error(`left ${dir} in place (an engine did not stop cleanly)`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
