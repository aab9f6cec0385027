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
// enforce mode (as in authz-overhead: 2 rules stay in monitor mode and report
// a finding per create); the image inspect comes from a fake engine that
// answers at once (the decider caches it for 30 s anyway), and the inventory
// holds INVENTORY running containers (neighbours for the network rule).
// Creates run in blocks of BLOCK; with --compare, the two builds' blocks
// alternate (order flipped every block), so load drift hits both alike, and
// the paired per-block differences are reported. Per build:
//   decideP50us        parseAuthzRequest + decide() until the decision (what
//                      AuthzDecisionReport.decisionMs measures), median, creates
//                      back to back (hot caches);
//   decideColdP50us    the same, one create every GAP ms (--gap-ms, default 5):
//                      caches cold, as between real creates — the figure a
//                      `docker create` waits for; decideColdShippedPolicyP50us
//                      with the default policy as shipped (all rules monitor);
//   cpuPerCreateUs     CPU time (user + system) per create, including what is
//                      deferred after the answer (reports) — on a shared
//                      machine wall time mostly measures waiting for a core;
//   httpCpuPerCreateUs the real AuthzPlugin over a unix socket, AuthZReq +
//                      AuthZRes per create, keep-alive client in this process;
//                      httpDeciderShareUs = minus an allow-all plugin (the
//                      protocol's own cost), paired by block.
//
// Usage: npm run build && node bench/authz-decider.js [--n 5000] [--runs 5] [--block 250] [--cold 400] [--gap-ms 5] [--inventory 50]
//        node bench/authz-decider.js --compare /other/checkout   (built; its node_modules reachable, e.g. NODE_PATH)
'use strict';
const { join, resolve } = require('node:path');
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const http = require('node:http');

const ROOT = resolve(__dirname, '..');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = arg('n', 5000);
const RUNS = arg('runs', 5);
const INVENTORY = arg('inventory', 50);
const BLOCK = arg('block', 250);
const GAP = arg('gap-ms', 5);
const COLD = arg('cold', 400);
const WARMUP = Math.min(2000, N);
const ci = args.indexOf('--compare');
const COMPARE = ci >= 0 ? args[ci + 1] : undefined;

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
function enforcedDefaultPolicy(yaml, broken) {
  let id;
  return yaml.split('\n').map((line) => {
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

/** One build's modules: this tree's, or (--compare) another tree's built packages. */
function load(root) {
  const shared = require(join(root, 'packages/shared/dist/index.js'));
  return {
    root,
    ...shared,
    ...require(join(root, 'packages/agent/dist/authz/plugin-server.js')),
    AuthzDecider: require(join(root, 'packages/agent/dist/authz/authz-decider.js')).AuthzDecider,
  };
}

/** A decider of build `m` under the benchmark's policy, and a counter of its reports. */
async function makeDecider(m, containers) {
  const logger = m.createLogger({ name: 'bench-authz-decider', level: 'silent' });
  const mkState = (policy) => ({ policy, scans: new Map(), version: 1, source: 'local', sha256: 'x', projectLabel: 'bulkhead.project' });
  // Which default rules does this create break? (monitor mode: reported, not denied)
  let broken;
  const probe = new m.AuthzDecider({ policy: () => mkState(m.parsePolicy(m.DEFAULT_POLICY_YAML)), containers, docker, logger, onDecision: (d) => { broken = d.findings.map((f) => f.ruleId); } });
  const d0 = await probe.decide(m.parseAuthzRequest(reqEnvelope(0)));
  if (!d0.allow) throw new Error(`probe denied: ${d0.msg}`);
  // The report comes after the answer (with a monitor-only policy, the whole judgement does).
  for (let i = 0; i < 200 && broken === undefined; i++) await new Promise((r) => setTimeout(r, 5));
  if (broken === undefined) throw new Error('probe: no report of the create\'s monitor findings');
  const state = mkState(m.parsePolicy(enforcedDefaultPolicy(m.DEFAULT_POLICY_YAML, new Set(broken))));
  const counter = { reports: 0 };
  const decider = new m.AuthzDecider({ policy: () => state, containers, docker, logger, onDecision: () => { counter.reports++; } });
  // The default policy as shipped: every rule in monitor mode, as every install starts.
  const shippedState = mkState(m.parsePolicy(m.DEFAULT_POLICY_YAML));
  const shipped = new m.AuthzDecider({ policy: () => shippedState, containers, docker, logger, onDecision: () => { counter.reports++; } });
  return { m, logger, decider, shipped, state, broken, counter };
}

async function main() {
  const roots = [ROOT, ...(COMPARE ? [resolve(COMPARE)] : [])];
  const inv = inventory();
  const containers = { get: (id) => inv.find((f) => f.id === id), inventory: () => inv };
  const variants = [];
  for (const [i, root] of roots.entries()) variants.push({ name: i === 0 ? 'this' : 'compare', ...(await makeDecider(load(root), containers)) });
  const envelopes = Array.from({ length: 64 }, (_, i) => Buffer.from(reqEnvelope(i)));

  const once = async (v, i, decider = v.decider) => {
    const d = decider.decide(v.m.parseAuthzRequest(envelopes[i & 63]));
    const r = typeof d.then === 'function' ? await d : d;
    if (!r.allow) throw new Error(`denied: ${r.msg}`);
  };

  // In-process: blocks of BLOCK creates per variant, variants alternating
  // (order flipped every block) so load drift hits both alike.
  for (const v of variants) for (let i = 0; i < WARMUP; i++) await once(v, i);
  await flush();
  const blocks = Math.max(4, Math.round((N * RUNS) / BLOCK));
  for (const v of variants) Object.assign(v, { decide: [], cpu: [] });
  for (let b = 0; b < blocks; b++) {
    for (const v of b % 2 ? [...variants].reverse() : variants) {
      const lat = [];
      for (let i = 0; i < BLOCK; i++) {
        const t0 = performance.now();
        await once(v, i);
        lat.push(performance.now() - t0);
      }
      await flush();
      v.decide.push(median(lat));
      // CPU (user + system) per create including the deferred reporting: on
      // a shared machine wall time mostly measures waiting for a core.
      const c0 = process.cpuUsage();
      for (let i = 0; i < BLOCK; i++) {
        await once(v, i);
        await flush();
      }
      v.cpu.push(cpuMs(process.cpuUsage(c0)) / BLOCK);
    }
  }

  // Cold: one create every GAP ms, as creates come in real life (dockerd and
  // other processes run in between and evict the caches): what a create
  // actually waits for. Builds alternate create by create.
  for (const v of variants) {
    v.cold = [];
    v.coldShipped = [];
    for (let i = 0; i < 200; i++) await once(v, i, v.shipped);
  }
  await flush();
  for (let i = 0; i < COLD; i++) {
    for (const v of i % 2 ? [...variants].reverse() : variants) {
      for (const [list, decider] of [[v.cold, v.decider], [v.coldShipped, v.shipped]]) {
        await new Promise((r) => setTimeout(r, GAP));
        const t0 = performance.now();
        await once(v, i, decider);
        list.push(performance.now() - t0);
      }
    }
  }

  // Over HTTP: the real AuthzPlugin of each build on its own socket, plus an
  // allow-all plugin (the protocol's own cost), AuthZReq + AuthZRes per create.
  const dir = mkdtempSync('/tmp/bk-azd-');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const reqBodies = Array.from({ length: 64 }, (_, i) => reqEnvelope(i));
  const resBodies = Array.from({ length: 64 }, (_, i) => resEnvelope(i));
  const servers = [];
  try {
    const allowAll = { name: 'allow-all', http: [] };
    for (const [k, v] of [...variants, allowAll].entries()) {
      const m = v.m ?? variants[0].m;
      const plugin = await m.AuthzPlugin.start({ socketPath: join(dir, `p${k}.sock`), logger: variants[0].logger, evaluate: v.decider ? (req) => v.decider.decide(req) : () => ({ allow: true }) });
      servers.push(plugin);
      v.plugin = plugin;
      v.http = [];
    }
    const post = (socketPath, path, body) => new Promise((res, rej) => {
      const r = http.request({ socketPath, path, method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (resp) => {
        const ch = [];
        resp.on('data', (c) => ch.push(c));
        resp.on('end', () => res(Buffer.concat(ch).toString()));
      });
      r.on('error', rej);
      r.end(body);
    });
    const httpCreate = async (v, i) => {
      const a = await post(v.plugin.socketPath, '/AuthZPlugin.AuthZReq', reqBodies[i & 63]);
      if (!a.includes('"Allow":true')) throw new Error(`denied over http: ${a}`);
      await post(v.plugin.socketPath, '/AuthZPlugin.AuthZRes', resBodies[i & 63]);
    };
    const hv = [...variants, allowAll];
    for (const v of hv) for (let i = 0; i < 200; i++) await httpCreate(v, i);
    const hblocks = Math.max(4, Math.round(blocks / 2));
    for (let b = 0; b < hblocks; b++) {
      for (const v of b % 2 ? [...hv].reverse() : hv) {
        const c0 = process.cpuUsage();
        for (let i = 0; i < BLOCK; i++) await httpCreate(v, i);
        await flush();
        v.http.push(cpuMs(process.cpuUsage(c0)) / BLOCK);
      }
    }
    const httpFigures = Object.fromEntries(hv.map((v) => [v.name, us(median(v.http))]));
    const out = {
      bench: 'authz-decider',
      node: process.version,
      loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
      creates: blocks * BLOCK,
      block: BLOCK,
      inventory: INVENTORY,
      rules: variants[0].state.policy.spec.rules.length,
      enforcedRules: variants[0].state.policy.spec.rules.filter((r) => r.mode === 'enforce').length,
      brokenInMonitor: variants[0].broken,
      builds: Object.fromEntries(variants.map((v) => [v.name, {
        root: v.root,
        decideP50us: us(median(v.decide)),
        decideColdP50us: us(median(v.cold)),
        decideColdShippedPolicyP50us: us(median(v.coldShipped)),
        cpuPerCreateUs: us(median(v.cpu)),
        // Over HTTP the client runs in this process too: compare with allow-all, not the absolute figure.
        httpCpuPerCreateUs: httpFigures[v.name],
        httpDeciderShareUs: us(median(v.http.map((x, i) => x - allowAll.http[i]))),
        reports: v.counter.reports,
      }])),
      httpAllowAllCpuPerCreateUs: httpFigures['allow-all'],
      ...(variants.length === 2 ? {
        // Paired by block (same moment, same load): this build minus the other.
        pairedDiffUs: {
          decideP50: us(median(variants[0].decide.map((x, i) => x - variants[1].decide[i]))),
          decideColdP50: us(median(variants[0].cold.map((x, i) => x - variants[1].cold[i]))),
          decideColdShippedPolicyP50: us(median(variants[0].coldShipped.map((x, i) => x - variants[1].coldShipped[i]))),
          cpuPerCreate: us(median(variants[0].cpu.map((x, i) => x - variants[1].cpu[i]))),
          httpCpuPerCreate: us(median(variants[0].http.map((x, i) => x - variants[1].http[i]))),
        },
      } : {}),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    agent.destroy();
    for (const p of servers) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
