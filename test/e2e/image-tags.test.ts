// End to end, tags that move: a real controller process, two real agent processes, each the
// authorization plugin of its own private dockerd (two simulated hosts). Host A runs
// bk-e2e/web:v1; the tag is then moved to other content on host B (`docker tag` of another
// image: no registry is reachable, so the digest is the image id, as for any image without a
// repo digest). With `image-tag-pinned` enforced, host B's dockerd refuses the create at the
// Docker API; with the rule in monitor, it runs, and the controller raises ONE image_tag_moved
// alert naming both digests and both hosts, shown by `bulkhead images --moved`.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { ENGINE_SCRIPT, runDocker, TEST_IMAGE, TEST_IMAGE_USER1000 } from '../helpers/engine';
import { OPS_BIN, apiRequest, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot, type ControllerHandle } from './stack';

const REF = 'bk-e2e/web:v1';
const KEY = 'docker.io/bk-e2e/web:v1';

function policy(mode: 'monitor' | 'enforce'): string {
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e-tags-${mode} }
spec:
  rules:
    - id: images.release-tags-pinned
      description: release tags never change image once seen
      severity: high
      mode: ${mode}
      action: { type: alert }
      check: { type: image-tag-pinned, tags: ["v*"], repositories: ["docker.io/bk-e2e/*"] }
`;
}

function engineScript(cmd: 'start' | 'stop', dir: string, dockerdArgs = ''): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('bash', [ENGINE_SCRIPT, cmd, dir], { stdio: 'ignore', env: { ...process.env, BULKHEAD_ENGINE_DOCKERD_ARGS: dockerdArgs } });
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

interface Alert { type: string; agentId: string | null; host: string | null; image: string | null; message: string; containerName: string | null }
interface ImageTag { ref: string; moved: boolean; digests: Array<{ digest: string; hosts: Array<{ agentId: string; hostname: string }>; containers: Array<{ name: string }> }> }

/** A host: a private dockerd whose authorization plugin is a real agent enrolled at `ctl`. */
async function host(t: Test, ctl: ControllerHandle, root: string, name: string) {
  const pluginName = `bk-tags-${process.pid}-${randomBytes(3).toString('hex')}`;
  const pluginSocket = `/run/docker/plugins/${pluginName}.sock`;
  const engineDir = mkdtempSync('/tmp/bkt-');
  const dockerHost = `unix://${engineDir}/docker.sock`;
  const agent = await enrollAgent(ctl, root, name, dockerHost, ['--authz-socket', pluginSocket]);
  agent.start();
  await waitFor(`${name}: plugin socket`, async () => existsSync(pluginSocket), 20_000);
  t.equal(await engineScript('start', engineDir, `--authorization-plugin=${pluginName}`), 0, `${name}: engine with the plugin started`);
  t.teardown(async () => {
    await agent.stop();
    rmSync(pluginSocket, { force: true });
  });
  t.teardown(async () => {
    await engineScript('stop', engineDir);
    rmSync(engineDir, { recursive: true, force: true });
  });
  return { agent, docker: (args: string[]) => runDocker(dockerHost, args) };
}

t.test('a tag moved to other content: refused when pinned, one image_tag_moved alert when it runs', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s' });
  t.teardown(() => ctl.stop());
  const put = (yaml: string) => apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, yaml, 'application/yaml');
  const enforce = await put(policy('enforce'));
  t.equal(enforce.status, 200, JSON.stringify(enforce.body));

  const a = await host(t, ctl, root.dir, 'host-a');
  const b = await host(t, ctl, root.dir, 'host-b');
  const applied = async (version: number) => {
    for (const h of [a, b]) {
      await waitFor('policy applied', async () => {
        const r = await ctl.get<{ policy: { version: number; applied: boolean } | null; status: string }>(`/v1/agents/${h.agent.agentId}`);
        return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
      }, 30_000);
    }
  };
  await applied(enforce.body.version);

  const idOf = async (h: typeof a, ref: string) => (await h.docker(['image', 'inspect', '-f', '{{.Id}}', ref])).stdout.trim();
  t.equal((await a.docker(['tag', TEST_IMAGE, REF])).code, 0);
  t.equal((await b.docker(['tag', TEST_IMAGE_USER1000, REF])).code, 0, 'on host B the tag names other content');
  const idA = await idOf(a, REF);
  const idB = await idOf(b, REF);
  t.not(idA, idB);

  // Host A runs v1 first: allowed (no pin yet), and its image becomes the pin.
  const runA = await a.docker(['run', '-d', '--network', 'none', '--name', 'web-a', REF, 'sleep', '600']);
  t.equal(runA.code, 0, `first seen is allowed: ${runA.stderr}`);
  await waitFor('the controller saw v1 on host A', async () => {
    const r = await ctl.get<ImageTag>(`/v1/images/${encodeURIComponent(KEY)}`);
    return r.status === 200 && r.body.digests[0]?.digest === idA;
  });

  // Host B: its v1 is other content → refused at the Docker API once the pin arrived.
  // (Until the pin reaches host B a create passes; it is removed unstarted, which counts for nothing.)
  const denied = await waitFor('the create on host B refused', async () => {
    const name = `web-b-try-${randomBytes(2).toString('hex')}`;
    const r = await b.docker(['create', '--network', 'none', '--name', name, REF, 'sleep', '600']);
    if (r.code === 0) await b.docker(['rm', '-f', name]);
    return r.code !== 0 ? r : undefined;
  }, 20_000);
  t.match(denied.stderr, /authorization denied by plugin/);
  t.match(denied.stderr, /images\.release-tags-pinned/);
  t.match(denied.stderr, `tag ${KEY} is pinned to ${idA}`);
  t.equal((await ctl.get<{ items: Alert[] }>('/v1/alerts?type=image_tag_moved')).body.items.length, 0, 'a refused create moved nothing');

  // The rule in monitor: host B runs the moved tag → one alert with both digests and hosts.
  const monitor = await put(policy('monitor'));
  await applied(monitor.body.version);
  const runB = await b.docker(['run', '-d', '--network', 'none', '--name', 'web-b', REF, 'sleep', '600']);
  t.equal(runB.code, 0, `monitor mode lets it run: ${runB.stderr}`);
  const alerts = await waitFor('image_tag_moved alert', async () => {
    const items = (await ctl.get<{ items: Alert[] }>('/v1/alerts?type=image_tag_moved')).body.items;
    return items.length > 0 ? items : undefined;
  });
  t.equal(alerts.length, 1);
  // Both agents run on this machine, so they share a host name; the agent ids tell the hosts apart.
  t.match(alerts[0], { type: 'image_tag_moved', agentId: b.agent.agentId, image: KEY, containerName: 'web-b' });
  t.match(alerts[0]!.message, `image tag ${KEY} moved: it now runs as ${idB} on ${hostname()} (${b.agent.agentId}) (container web-b); it ran as ${idA} (first seen `);
  t.match(alerts[0]!.message, ` on ${hostname()} (${a.agent.agentId})) before`);

  // More containers of either image, restarts: still one alert.
  t.equal((await a.docker(['run', '-d', '--network', 'none', '--name', 'web-a2', REF, 'sleep', '600'])).code, 0);
  t.equal((await b.docker(['restart', '-t', '0', 'web-b'])).code, 0);
  await waitFor('web-a2 recorded', async () => {
    const r = await ctl.get<ImageTag>(`/v1/images/${encodeURIComponent(KEY)}`);
    return r.body.digests[0]?.containers.some((c) => c.name === 'web-a2');
  });
  t.equal((await ctl.get<{ items: Alert[] }>('/v1/alerts?type=image_tag_moved')).body.items.length, 1, 'one alert per move');

  // `bulkhead images --moved`, the CLI as a process.
  const cliEnv = { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey, XDG_CONFIG_HOME: join(root.dir, 'cli-cfg') };
  const cli = await run(OPS_BIN, ['images', '--moved'], cliEnv);
  t.equal(cli.code, 0, cli.stderr);
  const hn = hostname().replace(/[.]/g, '\\.');
  t.match(cli.stdout, new RegExp(`^docker\\.io/bk-e2e/web:v1\\s+yes\\s+${idA.slice(0, 19)}\\s+\\S+ ago\\s+\\S+ ago\\s+${hn}\\s+2$`, 'm'));
  t.match(cli.stdout, new RegExp(`^\\s+${idB.slice(0, 19)}\\s+\\S+ ago\\s+\\S+ ago\\s+${hn}\\s+1$`, 'm'));
  const one = JSON.parse((await run(OPS_BIN, ['--json', 'images', 'get', REF], cliEnv)).stdout) as ImageTag;
  t.same(one.digests.map((d) => [d.digest, d.hosts.map((h) => h.agentId)]), [[idA, [a.agent.agentId]], [idB, [b.agent.agentId]]], 'each digest on its host');
});
