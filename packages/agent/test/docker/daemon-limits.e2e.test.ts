// The create-time host limits (log rotation, nofile ulimit) judged at the
// authorization door against what a REAL dockerd then does with the same
// request bytes: private engines (20.10, and 26.1 where this machine has
// it) started with and without default log-opts and default ulimits. For
// each request: the door's decision (AuthzDecider, with host facts the
// agent collected from that dockerd), dockerd's stored config (inspect →
// toContainerFacts → the one evaluator, as the reaction judges it), and
// the limits the container really runs with (`ulimit -n` inside) must
// agree.
import { request } from 'node:http';
import t from 'tap';
import Docker from 'dockerode';
import { createLogger, effectiveLogConfig, effectiveUlimits, evaluate, parsePolicy, type HostFacts__Output } from '@bulkhead/shared';
import { availableEngineVersions, startPrivateEngine, TEST_IMAGE, TEST_LABEL, FILE_LABEL } from '../../../../test/helpers/engine';
import { AuthzDecider } from '../../src/authz/authz-decider';
import { parseAuthzRequest } from '../../src/authz/plugin-server';
import { createRequestToFacts, type ContainerCreateBody } from '../../src/authz/create-request';
import { decodeCreate } from '../../src/authz/docker-types';
import { toContainerFacts } from '../../src/docker/container-facts';
import { collectHostFacts } from '../../src/docker/host-facts';
import type { PolicyState } from '../../src/policy/policy-holder';

const logger = createLogger({ name: 'daemon-limits-e2e', level: 'silent' });
const [fileKey, fileValue] = FILE_LABEL.split('=') as [string, string];
const LABELS = { [TEST_LABEL.split('=')[0]!]: '1', [fileKey]: fileValue };
const NOW = new Date();

const POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: limits-e2e }
spec:
  rules:
    - id: limits.log-rotation
      description: logs rotate
      severity: medium
      mode: enforce
      action: { type: alert }
      check: { type: log-rotation }
    - id: limits.nofile
      description: nofile at most 4096
      severity: medium
      mode: enforce
      action: { type: alert }
      check: { type: ulimits, max: { nofile: 4096 } }
`, 'limits-e2e.yaml');
const STATE: PolicyState = { policy: POLICY, scans: new Map(), version: 1, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' };

const IO_POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: io-e2e }
spec:
  rules:
    - id: limits.blkio
      description: disk writes throttled
      severity: low
      mode: enforce
      action: { type: alert }
      check: { type: blkio-limits, require: [write-bps] }
    - id: limits.storage
      description: writable layer capped where possible
      severity: low
      mode: enforce
      action: { type: alert }
      check: { type: storage-size, unsupportedIsViolation: true }
`, 'io-e2e.yaml');

const DEFAULTS = ['--log-opt', 'max-size=10m', '--log-opt', 'max-file=2', '--default-ulimit', 'nofile=1024:2048'];

interface Case {
  name: string;
  /** The raw body (keys as a client may spell them). */
  body: (base: Record<string, unknown>) => Record<string, unknown>;
  /** Rules the door refuses with, with and without the daemon's defaults. */
  withDefaults: string[];
  without: string[];
}

const hc = (extra: Record<string, unknown>) => (b: Record<string, unknown>) => ({ ...b, HostConfig: { NetworkMode: 'none', ...extra } });

const CASES: Case[] = [
  { name: 'bare create', body: hc({}), withDefaults: [], without: ['limits.log-rotation', 'limits.nofile'] },
  {
    name: 'the default driver named, max-file only', body: hc({ LogConfig: { Type: 'json-file', Config: { 'max-file': '3' } } }),
    withDefaults: [], without: ['limits.log-rotation', 'limits.nofile'],
  },
  {
    name: 'own max-size and nofile', body: hc({ LogConfig: { Type: 'json-file', Config: { 'max-size': '1m' } }, Ulimits: [{ Name: 'nofile', Soft: 100, Hard: 200 }] }),
    withDefaults: [], without: [],
  },
  {
    name: 'local driver, nofile hard above the maximum', body: hc({ LogConfig: { Type: 'local', Config: {} }, Ulimits: [{ Name: 'nofile', Soft: 100, Hard: 8192 }] }),
    withDefaults: ['limits.nofile'], without: ['limits.nofile'],
  },
  {
    // Go's decoder matches keys case-insensitively: dockerd reads this LogConfig.
    name: 'lower-case keys', body: (b) => ({ ...b, hostconfig: { networkmode: 'none', logconfig: { type: 'json-file', config: { 'max-file': '4' } }, ulimits: [{ name: 'nofile', soft: 50, hard: 60 }] } }),
    withDefaults: [], without: ['limits.log-rotation'],
  },
];

function rawCreate(socketPath: string, name: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'POST', path: `/containers/create?name=${name}`, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function decider(docker: Docker, host: HostFacts__Output | undefined): AuthzDecider {
  return new AuthzDecider({ policy: () => STATE, containers: { get: () => undefined, inventory: () => [] }, docker, logger, hostFacts: () => host });
}

async function ask(d: AuthzDecider, body: string): Promise<{ allow: boolean; msg?: string }> {
  const req = parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: '/v1.41/containers/create', RequestBody: Buffer.from(body).toString('base64') }));
  return (await d.decide(req)) as { allow: boolean; msg?: string };
}

const refusedBy = (msg: string | undefined): string[] => [...(msg ?? '').matchAll(/\[(limits\.[a-z-]+)\]/g)].map((m) => m[1]!).sort();

const versions = availableEngineVersions();
if (versions.length === 0) t.comment('no engine available');

for (const version of versions) {
  for (const withDefaults of [true, false]) {
    t.test(`dockerd ${version} ${withDefaults ? 'with' : 'without'} default log-opts and ulimits: the door decides what dockerd stores and runs`, async (t) => {
      const engine = await startPrivateEngine({ version, t, dockerdArgs: withDefaults ? DEFAULTS : [] });
      const docker = new Docker({ socketPath: engine.socketPath });
      const host = await collectHostFacts(docker, { daemon: { dockerSocketPath: engine.socketPath } });
      const dd = host.daemonDefaults!;
      t.equal(dd.configKnown, true, `dockerd found by its socket (${dd.unknownReason})`);
      t.equal(dd.logDriver, 'json-file');
      t.same(dd.logOpts, withDefaults ? { 'max-size': '10m', 'max-file': '2' } : {}, 'default log-opts from the command line');
      t.same(dd.ulimits, withDefaults ? [{ name: 'nofile', soft: 1024, hard: 2048 }] : [], 'default ulimits from the command line');
      t.ok(dd.storageDriver !== '', `storage driver ${dd.storageDriver} (${dd.storageNote})`);
      const door = decider(docker, host);

      let n = 0;
      for (const c of CASES) {
        const name = `bk-lim-${process.pid}-${n++}`;
        const body = JSON.stringify(c.body({ Image: TEST_IMAGE, Cmd: ['sh', '-c', 'ulimit -Sn; ulimit -Hn'], Labels: LABELS }));
        const expected = withDefaults ? c.withDefaults : c.without;

        // The door.
        const d = await ask(door, body);
        t.same(refusedBy(d.msg), [...expected].sort(), `${c.name}: the door refuses with ${expected.join(', ') || 'nothing'}`);
        if (!d.allow) t.comment(d.msg);

        // dockerd, with the same bytes.
        const r = await rawCreate(engine.socketPath, name, body);
        t.equal(r.status, 201, `${c.name}: dockerd creates it (${r.text.trim()})`);
        const id = (JSON.parse(r.text) as { Id: string }).Id;
        const inspect = await docker.getContainer(id).inspect();
        const stored = toContainerFacts(inspect);
        const reaction = evaluate(POLICY, { container: stored, host }, { now: NOW }).map((f) => f.ruleId).sort();
        t.same(reaction, [...expected].sort(), `${c.name}: the reaction (inspect) finds the same`);

        // The request's log config, merged as the check merges it, is what dockerd stored.
        const decoded = decodeCreate(Buffer.from(body));
        if (!decoded.ok) throw new Error(decoded.error);
        const reqFacts = createRequestToFacts(decoded.body.body as ContainerCreateBody, name).facts;
        const eff = effectiveLogConfig(reqFacts, host);
        const lc = inspect.HostConfig.LogConfig as { Type: string; Config: Record<string, string> };
        t.same(eff && { driver: eff.driver, opts: eff.opts }, { driver: lc.Type, opts: lc.Config }, `${c.name}: merged log config = inspect's ${JSON.stringify(lc)}`);

        // The limits the container runs with.
        await docker.getContainer(id).start();
        await docker.getContainer(id).wait();
        const logs = (await docker.getContainer(id).logs({ stdout: true, stderr: true })).toString('utf8').replace(/[\x00-\x08]/g, '');
        const [soft, hard] = logs.split(/\s+/).filter((x) => /^\d+$/.test(x)).map(Number);
        const u = effectiveUlimits(reqFacts, host).list.filter((x) => x.name.toUpperCase() === 'NOFILE').at(-1);
        if (u) t.same([soft, hard], [u.soft, u.hard], `${c.name}: the container runs with nofile ${u.soft}:${u.hard}`);
        else t.comment(`${c.name}: no nofile ulimit set: the container inherited ${soft}:${hard}`);
        await docker.getContainer(id).remove({ force: true });
      }

      if (!withDefaults) {
        // Block-IO throttles: the door reads the request as inspect reads the stored container.
        const io = new AuthzDecider({ policy: () => ({ ...STATE, policy: IO_POLICY }), containers: { get: () => undefined, inventory: () => [] }, docker, logger, hostFacts: () => host });
        const throttled = JSON.stringify({ Image: TEST_IMAGE, Labels: LABELS, HostConfig: { NetworkMode: 'none', BlkioDeviceWriteBps: [{ Path: '/dev/null', Rate: 1048576 }], BlkioWeight: 300 } });
        const weighted = JSON.stringify({ Image: TEST_IMAGE, Labels: LABELS, HostConfig: { NetworkMode: 'none', BlkioWeight: 300 } });
        for (const [what, body, blkio] of [['write-bps throttle', throttled, false], ['a weight only', weighted, true]] as const) {
          const d = await ask(io, body);
          const r = await rawCreate(engine.socketPath, `bk-lim-io-${process.pid}-${n++}`, body);
          t.equal(r.status, 201, `${what}: dockerd creates it (${r.text.trim()})`);
          const stored = toContainerFacts(await docker.getContainer((JSON.parse(r.text) as { Id: string }).Id).inspect());
          const reaction = evaluate(IO_POLICY, { container: stored, host }, { now: NOW }).map((f) => f.ruleId);
          t.equal(refusedBy(d.msg).includes('limits.blkio'), blkio, `${what}: the door ${blkio ? 'refuses' : 'allows'} (blkio)`);
          t.equal(reaction.includes('limits.blkio'), blkio, `${what}: the reaction agrees`);
        }
        // Storage size: what host facts say the driver supports is what dockerd accepts.
        const sized = JSON.stringify({ Image: TEST_IMAGE, Labels: LABELS, HostConfig: { NetworkMode: 'none', StorageOpt: { size: '1G' } } });
        const r = await rawCreate(engine.socketPath, `bk-lim-sz-${process.pid}`, sized);
        t.equal(r.status === 201, dd.storageSizeSupported === true, `storage driver ${dd.storageDriver} (${dd.storageNote}): dockerd ${r.status === 201 ? 'accepts' : `refuses (${r.text.trim()})`} --storage-opt size`);
        const bareIo = await ask(io, JSON.stringify({ Image: TEST_IMAGE, HostConfig: { NetworkMode: 'none' } }));
        if (dd.storageSizeSupported === false) t.match(bareIo.msg, new RegExp(`no writable-layer size limit: not supported by storage driver ${dd.storageDriver}`), 'unsupported, and the rule counts it: the evidence says so');
      }

      // The same door where dockerd's command line cannot be read: a request
      // that leaves the defaults to dockerd cannot be judged and is refused;
      // one that decides for itself is judged as before.
      const blind = await collectHostFacts(docker, { daemon: { dockerSocketPath: engine.socketPath, procRoot: '/nonexistent-proc' } });
      t.equal(blind.daemonDefaults!.configKnown, false);
      const bare = await ask(decider(docker, blind), JSON.stringify({ Image: TEST_IMAGE, HostConfig: { NetworkMode: 'none' } }));
      t.equal(bare.allow, false, 'defaults unknown: a bare create is refused (fail-closed)');
      t.match(bare.msg, /cannot tell whether the logs rotate: the request sets no max-size for json-file and dockerd's default log-opts are unknown \(the dockerd behind .* was not found/);
      t.match(bare.msg, /cannot tell the nofile ulimit/);
      const own = await ask(decider(docker, blind), JSON.stringify({
        Image: TEST_IMAGE, HostConfig: { NetworkMode: 'none', LogConfig: { Type: 'json-file', Config: { 'max-size': '1m' } }, Ulimits: [{ Name: 'nofile', Soft: 10, Hard: 20 }] },
      }));
      t.equal(own.allow, true, 'defaults unknown: a create that sets its own max-size and nofile is allowed');
    });
  }
}
