#!/usr/bin/env node
// The authz decider alone, no engine: what Bulkhead adds to one `docker
// create` inside the plugin process, split into its parts. The end-to-end
// figure (docker create with / without the plugin) is bench/authz-overhead.js;
// this one isolates the part Bulkhead controls, precisely enough to compare
// two builds on a busy machine.
//
// Method: the envelope is the one dockerd 20.10 sends for `docker create`
// of a hardened service by the docker CLI 28 (captured from a real engine:
// the CLI's full JSON body, base64 in RequestBody, plus RequestHeaders); the
// policy is the default one with every rule the create does not break in
// enforce mode (as in authz-overhead); the image inspect comes from a fake
// engine that answers at once (the decider caches it for 30 s anyway), and the
// inventory holds INVENTORY running containers (neighbours for the network
// rule). Phases, each WARMUP + N operations, median of RUNS runs:
//   decide   parseAuthzRequest + decide() until the decision (what
//            AuthzDecisionReport.decisionMs measures);
//   cpu      the same plus everything deferred after the answer
//            (setImmediate reporting), as CPU time (user + system) per
//            create — on a shared machine wall time mostly measures waiting;
//   http     the real AuthzPlugin over a unix socket (keep-alive client in
//            this process): AuthZReq + AuthZRes round trips per create, with
//            `evaluate` = the decider, and with `evaluate` = allow-all (the
//            protocol's own cost); the CPU difference is the decider's share.
//
// Usage: npm run build && node bench/authz-decider.js [--n 5000] [--runs 5] [--inventory 50]
//        BENCH_ROOT=/copy/of/an/older/tree node bench/authz-decider.js   (same bench, other build)
'use strict';
const { join, resolve } = require('node:path');
const { mkdtempSync, rmSync } = require('node:fs');
const http = require('node:http');

// BENCH_ROOT: another tree's built packages (e.g. a copy of a previous build) to compare against.
const ROOT = resolve(process.env.BENCH_ROOT ?? resolve(__dirname, '..'));
const { createLogger, DEFAULT_POLICY_YAML, parsePolicy } = require(join(ROOT, 'packages/shared/dist/index.js'));
const { AuthzPlugin, parseAuthzRequest } = require(join(ROOT, 'packages/agent/dist/authz/plugin-server.js'));
const { AuthzDecider } = require(join(ROOT, 'packages/agent/dist/authz/authz-decider.js'));

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = arg('n', 5000);
const RUNS = arg('runs', 5);
const INVENTORY = arg('inventory', 50);
const WARMUP = Math.min(2000, N);

const IMAGE = 'bulkhead-test/busybox:user1000';
const IMAGE_ID = `sha256:${'a1'.repeat(32)}`;

/** The body the docker CLI 28 sends for: docker create --name … --network none --memory 64m --cpus 0.5 --pids-limit 64 --read-only --security-opt no-new-privileges --cap-drop ALL --user 1000 -e APP_MODE=x --label bulkhead.project=bench IMAGE sleep 600 */
const CLI_BODY = '{"Hostname":"","Domainname":"","User":"1000","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["APP_MODE=x"],"Cmd":["sleep","600"],"Image":"bulkhead-test/busybox:user1000","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"bulkhead.project":"bench"},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"none","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":["ALL"],"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":67108864,"NanoCpus":500000000,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":64,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}\n';

function reqEnvelope(i) {
  return JSON.stringify({
    RequestMethod: 'POST',
    RequestUri: `/v1.41/containers/create?name=bench-${i}`,
    RequestBody: Buffer.from(CLI_BODY).toString('base64'),
    RequestHeaders: { 'Content-Length': String(CLI_BODY.length), 'Content-Type': 'application/json', 'User-Agent': 'Docker-Client/28.2.2 (linux)' },
  });
}

function resEnvelope(i) {
  const out = `{"Id":"${'b2'.repeat(32)}","Warnings":[]}\n`;
  return JSON.stringify({
    RequestMethod: 'POST',
    RequestUri: `/v1.41/containers/create?name=bench-${i}`,
    RequestBody: Buffer.from(CLI_BODY).toString('base64'),
    RequestHeaders: { 'Content-Length': String(CLI_BODY.length), 'Content-Type': 'application/json', 'User-Agent': 'Docker-Client/28.2.2 (linux)' },
    ResponseStatusCode: 201,
    ResponseBody: Buffer.from(out).toString('base64'),
    ResponseHeaders: { 'Api-Version': '1.41', 'Content-Type': 'application/json', Docker_experimental: 'false', Ostype: 'linux', Server: 'Docker/20.10.24+dfsg1 (linux)' },
  });
}

const image = {
  Id: IMAGE_ID,
  RepoTags: [IMAGE],
  RepoDigests: [],
  Config: { User: '1000', Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'], Entrypoint: null, Labels: null, Volumes: null },
};
const notFound = () => Object.assign(new Error('no such container'), { statusCode: 404 });
const docker = {
  getImage: () => ({ inspect: async () => image }),
  getContainer: () => ({ inspect: async () => { throw notFound(); } }),
  getVolume: () => ({ inspect: async () => { throw notFound(); } }),
  getNetwork: () => ({ inspect: async () => { throw notFound(); } }),
};

/** INVENTORY running containers of other projects on their own networks. */
function inventory() {
  const out = [];
  for (let i = 0; i < INVENTORY; i++) {
    out.push({
      id: `${(i + 1).toString(16).padStart(4, '0')}${'c3'.repeat(30)}`, name: `svc-${i}`, imageRef: IMAGE, imageId: IMAGE_ID, imageDigest: '',
      labels: { 'bulkhead.project': `p${i % 7}` }, state: 'running', user: '1000', privileged: false, mounts: [], networkMode: `p${i % 7}-net`,
      networks: [{ name: `p${i % 7}-net`, networkId: `${'d4'.repeat(31)}${(i % 7).toString(16).padStart(2, '0')}`, ipAddress: '' }],
      pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: ['ALL'], securityOpt: ['no-new-privileges'], readOnlyRootfs: true,
      memoryLimitBytes: 67108864, nanoCpus: 5e8, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 64, restartPolicy: 'no', restartMaxRetries: 0,
      envNames: ['APP_MODE'], command: ['sleep', '600'], createdAtMs: 1, startedAtMs: 2, finishedAtMs: 0, exitCode: 0, pid: 100 + i, devices: [],
      imageUser: '1000', restartCount: 0, secretHits: [], project: `p${i % 7}`,
    });
  }
  return out;
}

/** The default policy with every rule NOT in `broken` switched to enforce (as bench/authz-overhead.js). */
function enforcedDefaultPolicy(broken) {
  let id;
  return DEFAULT_POLICY_YAML.split('\n').map((line) => {
    const m = /^\s+- id: (\S+)/.exec(line);
    if (m) id = m[1];
    if (/^\s+mode: monitor\s*$/.test(line) && id && !broken.has(id)) return line.replace('monitor', 'enforce');
    return line;
  }).join('\n');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const flush = () => new Promise((r) => setImmediate(r));
const us = (ms) => Math.round(ms * 1000 * 10) / 10;
const cpuMs = (u) => (u.user + u.system) / 1000;

async function main() {
  const logger = createLogger({ name: 'bench-authz-decider', level: 'silent' });
  const inv = inventory();
  const containers = { get: (id) => inv.find((f) => f.id === id), inventory: () => inv };
  const mkState = (policy) => ({ policy, scans: new Map(), version: 1, source: 'local', sha256: 'x', projectLabel: 'bulkhead.project' });

  // Which default rules does this create break? (monitor mode: reported, not denied)
  let broken = [];
  const probe = new AuthzDecider({ policy: () => mkState(parsePolicy(DEFAULT_POLICY_YAML)), containers, docker, logger, onDecision: (d) => { broken = d.findings.map((f) => f.ruleId); } });
  const d0 = await probe.decide(parseAuthzRequest(reqEnvelope(0)));
  await flush();
  if (!d0.allow) throw new Error(`probe denied: ${d0.msg}`);
  const state = mkState(parsePolicy(enforcedDefaultPolicy(new Set(broken))));
  const enforcedRules = state.policy.spec.rules.filter((r) => r.mode === 'enforce').length;

  let reports = 0;
  const decider = new AuthzDecider({ policy: () => state, containers, docker, logger, onDecision: () => { reports++; } });
  const envelopes = Array.from({ length: 64 }, (_, i) => Buffer.from(reqEnvelope(i)));

  const once = async (i) => {
    const d = decider.decide(parseAuthzRequest(envelopes[i & 63]));
    const r = typeof d.then === 'function' ? await d : d;
    if (!r.allow) throw new Error(`denied: ${r.msg}`);
  };

  // decide: per-operation latency (request parsed → decision), median per run
  const decideRuns = [];
  const totalRuns = [];
  for (let run = 0; run < RUNS; run++) {
    for (let i = 0; i < WARMUP; i++) await once(i);
    await flush();
    const lat = [];
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      await once(i);
      lat.push(performance.now() - t0);
      if ((i & 255) === 255) await flush();
    }
    await flush();
    decideRuns.push(median(lat));
    // total: CPU time of N sequential creates including the deferred work, per create
    // (CPU, not wall time: on a shared machine wall time mostly measures waiting for a core)
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) {
      await once(i);
      await flush();
    }
    totalRuns.push(cpuMs(process.cpuUsage(c0)) / N);
  }

  // http: the real plugin server, AuthZReq + AuthZRes per create
  const dir = mkdtempSync('/tmp/bk-azd-');
  let mode = 'decider';
  const plugin = await AuthzPlugin.start({ socketPath: join(dir, 'p.sock'), logger, evaluate: (req) => (mode === 'decider' ? decider.decide(req) : { allow: true }) });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (path, body) => new Promise((res, rej) => {
    const r = http.request({ socketPath: plugin.socketPath, path, method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (resp) => {
      const ch = [];
      resp.on('data', (c) => ch.push(c));
      resp.on('end', () => res(Buffer.concat(ch).toString()));
    });
    r.on('error', rej);
    r.end(body);
  });
  const reqBodies = Array.from({ length: 64 }, (_, i) => reqEnvelope(i));
  const resBodies = Array.from({ length: 64 }, (_, i) => resEnvelope(i));
  const httpCreate = async (i) => {
    const a = await post('/AuthZPlugin.AuthZReq', reqBodies[i & 63]);
    if (!a.includes('"Allow":true')) throw new Error(`denied over http: ${a}`);
    await post('/AuthZPlugin.AuthZRes', resBodies[i & 63]);
  };
  const httpN = Math.max(200, Math.floor(N / 5));
  const httpRuns = { decider: [], allow: [] };
  const httpCpu = { decider: [], allow: [] };
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const m of run % 2 ? ['allow', 'decider'] : ['decider', 'allow']) {
        mode = m;
        for (let i = 0; i < 200; i++) await httpCreate(i);
        const lat = [];
        const c0 = process.cpuUsage();
        for (let i = 0; i < httpN; i++) {
          const t0 = performance.now();
          await httpCreate(i);
          lat.push(performance.now() - t0);
        }
        await flush();
        httpCpu[m].push(cpuMs(process.cpuUsage(c0)) / httpN);
        httpRuns[m].push(median(lat));
      }
    }
  } finally {
    agent.destroy();
    await plugin.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const result = {
    bench: 'authz-decider',
    node: process.version,
    loadavg: require('node:fs').readFileSync('/proc/loadavg', 'utf8').trim(),
    n: N,
    runs: RUNS,
    inventory: INVENTORY,
    rules: state.policy.spec.rules.length,
    enforcedRules,
    brokenInMonitor: broken,
    reports,
    decideP50us: us(median(decideRuns)),
    decideRunsUs: decideRuns.map(us),
    cpuPerCreateUs: us(median(totalRuns)),
    cpuRunsUs: totalRuns.map(us),
    // Over HTTP the client is in this process too: compare the two, not the absolute figures.
    httpWallP50us: { decider: us(median(httpRuns.decider)), allowAll: us(median(httpRuns.allow)) },
    httpCpuPerCreateUs: { decider: us(median(httpCpu.decider)), allowAll: us(median(httpCpu.allow)), deciderShare: us(median(httpCpu.decider) - median(httpCpu.allow)) },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
