// End to end, tags that move: a real controller process, two real agent processes, each the
// authorization plugin of its own private dockerd (two simulated hosts). Host A runs
// bk-e2e/web:v1; the tag is then moved to other content on host B (`docker tag` of another
// image: no registry is reachable, so the digest is the image id, as for any image without a
// repo digest). With `image-tag-pinned` enforced, host B's dockerd refuses the create at the
// Docker API; with the rule in monitor, it runs, and the controller raises ONE image_tag_moved
// alert naming both digests and both hosts, shown by `bulkhead images --moved`.
// Second test: scans uploaded (`bulkhead scans upload`) for images no host ran yet judge their
// first create at the Docker API (vulnerabilities, a report older than maxAgeDays).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { TEST_IMAGE, TEST_IMAGE_USER1000 } from '../helpers/engine';
import { OPS_BIN, apiRequest, run, waitFor } from '../helpers/processes';
import { startController, tempRoot } from './stack';
import { authzHost as host } from './authz-host';
import { buildOciImage, pullInto, pushImage, startRegistry } from '../helpers/registry';

// Three stacks with real dockerds and a registry: 172 s once with other work on the two cores,
// against tap's default of 180 s per file.
t.setTimeout(360_000);

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

interface Alert { type: string; agentId: string | null; host: string | null; image: string | null; message: string; containerName: string | null }
interface ImageTag { ref: string; moved: boolean; digests: Array<{ digest: string; hosts: Array<{ agentId: string; hostname: string }>; containers: Array<{ name: string }> }> }

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

// The same move through a real registry (Debian's docker-registry 2.8 on loopback): v1 pushed
// with skopeo and run on host A (pulled, so it runs as its manifest digest), the tag re-pushed
// with other content, pulled and run on host B → one image_tag_moved alert naming both MANIFEST
// digests and both hosts.
t.test('through a registry: push v1, run it, re-push the tag, run it on a second host → one alert', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const reg = await startRegistry({ t });
  const dir = t.testdir();
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s' });
  t.teardown(() => ctl.stop());
  const put = await apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e-tags-registry }
spec:
  rules:
    - id: images.release-tags-pinned
      description: release tags never change image once seen
      severity: high
      mode: monitor
      action: { type: alert }
      check: { type: image-tag-pinned, tags: ["v*"], repositories: ["${reg.addr}/shop/*"] }
`, 'application/yaml');
  t.equal(put.status, 200, JSON.stringify(put.body));
  const a = await host(t, ctl, root.dir, 'reg-host-a');
  const b = await host(t, ctl, root.dir, 'reg-host-b');
  const ref = reg.ref('shop/web', 'v1');
  const key = `${reg.addr}/shop/web:v1`;

  const v1 = await buildOciImage(dir, { variant: 'v1' });
  const d1 = await pushImage(reg, v1, 'shop/web:v1');
  t.same((await pullInto(a.dockerHost, ref)).filter((d) => d.endsWith(d1)).length, 1, 'host A pulled v1: its repo digest');
  t.equal((await a.docker(['run', '-d', '--network', 'none', '--name', 'reg-web-a', ref, 'sleep', '600'])).code, 0, 'host A runs v1');
  await waitFor('the controller saw v1 as its manifest digest', async () => {
    const r = await ctl.get<ImageTag>(`/v1/images/${encodeURIComponent(key)}`);
    return r.status === 200 && r.body.digests[0]?.digest === d1;
  });

  const v2 = await buildOciImage(dir, { variant: 'v2' });
  const d2 = await pushImage(reg, v2, 'shop/web:v1');
  t.not(d2, d1, 'the tag was re-pushed with other content');
  t.same((await pullInto(b.dockerHost, ref)).filter((d) => d.endsWith(d2)).length, 1, 'host B pulled the re-pushed tag');
  t.equal((await b.docker(['run', '-d', '--network', 'none', '--name', 'reg-web-b', ref, 'sleep', '600'])).code, 0, 'host B runs it (monitor)');
  const alerts = await waitFor('image_tag_moved alert', async () => {
    const items = (await ctl.get<{ items: Alert[] }>('/v1/alerts?type=image_tag_moved')).body.items;
    return items.length > 0 ? items : undefined;
  });
  t.equal(alerts.length, 1, 'one alert');
  t.match(alerts[0], { type: 'image_tag_moved', agentId: b.agent.agentId, image: key, containerName: 'reg-web-b' });
  t.match(alerts[0]!.message, `it now runs as ${d2} on `);
  t.match(alerts[0]!.message, `it ran as ${d1} (first seen `);
  const one = await ctl.get<ImageTag>(`/v1/images/${encodeURIComponent(key)}`);
  t.same(one.body.digests.map((d) => [d.digest, d.hosts.map((h) => h.agentId)]), [[d1, [a.agent.agentId]], [d2, [b.agent.agentId]]], 'each manifest digest on its host');
});

// Scanning at the registry, end to end: reports uploaded with `bulkhead scans upload` for
// images no host has run judge the first create of those images at the Docker API, through the
// bundle the controller pushes to the agent process. (Images here have no registry, so the
// reports name their image ids, as Trivy does for a local image.)
t.test('a scan uploaded before any host runs the image judges its first create', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s' });
  t.teardown(() => ctl.stop());
  const h = await host(t, ctl, root.dir, 'host-s');
  const cliEnv = { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey, XDG_CONFIG_HOME: join(root.dir, 'cli-cfg') };

  // Three new images (distinct ids) no container has run.
  const src = `bk-scan-src-${randomBytes(3).toString('hex')}`;
  t.equal((await h.docker(['create', '--network', 'none', '--name', src, TEST_IMAGE, 'true'])).code, 0);
  const ids: Record<string, string> = {};
  for (const name of ['vulnerable', 'stale', 'clean']) {
    const c = await h.docker(['commit', '-c', `LABEL bk.scan=${name}`, src, `bk-scan/${name}:1`]);
    t.equal(c.code, 0, c.stderr);
    ids[name] = c.stdout.trim();
  }
  t.equal((await h.docker(['rm', src])).code, 0);
  const report = (imageId: string, name: string, createdAt: string, vulns: object[]) => JSON.stringify({
    SchemaVersion: 2, CreatedAt: createdAt, ArtifactName: name, ArtifactType: 'container_image',
    Metadata: { ImageID: imageId, RepoDigests: [] },
    Results: [{ Target: name, Class: 'os-pkgs', Vulnerabilities: vulns }],
  });
  const now = new Date().toISOString();
  const reports: Array<[string, string]> = [
    ['vulnerable', report(ids['vulnerable']!, 'bk-scan/vulnerable:1', now, [{ VulnerabilityID: 'CVE-2099-0001', PkgName: 'busybox', InstalledVersion: '1.0', FixedVersion: '1.1', Severity: 'CRITICAL' }])],
    ['stale', report(ids['stale']!, 'bk-scan/stale:1', '2020-01-01T00:00:00Z', [])],
    ['clean', report(ids['clean']!, 'bk-scan/clean:1', now, [])],
  ];
  for (const [name, json] of reports) {
    const file = join(root.dir, `${name}.json`);
    writeFileSync(file, json);
    const up = await run(OPS_BIN, ['scans', 'upload', file], cliEnv);
    t.equal(up.code, 0, `${name}: ${up.stderr}`);
    t.match(up.stdout, `stored trivy scan of ${ids[name]}`);
  }
  const got = await run(OPS_BIN, ['scans', 'get', ids['stale']!], cliEnv);
  t.match(got.stdout, /^Scanned:\s+2020-01-01T00:00:00\.000Z \(\d{4}(\.\d+)? days old\)$/m, 'the report\'s age is shown');
  t.same((await ctl.get<{ items: unknown[] }>('/v1/containers')).body.items, [], 'no host runs anything');

  const put = await apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e-scans }
spec:
  rules:
    - { id: images.vulnerabilities, description: no criticals, severity: high, mode: enforce, action: { type: alert }, check: { type: vulnerabilities, maxCritical: 0 } }
    - { id: images.not-scanned, description: a scan younger than 30 days, severity: medium, mode: enforce, action: { type: alert }, check: { type: not-scanned, maxAgeDays: 30 } }
`, 'application/yaml');
  t.equal(put.status, 200, JSON.stringify(put.body));
  await waitFor('policy applied', async () => {
    const r = await ctl.get<{ policy: { version: number; applied: boolean } | null }>(`/v1/agents/${h.agent.agentId}`);
    return r.body.policy?.version === put.body.version && r.body.policy.applied;
  }, 30_000);

  const vulnerable = await h.docker(['run', '-d', '--network', 'none', 'bk-scan/vulnerable:1', 'sleep', '60']);
  t.not(vulnerable.code, 0);
  t.match(vulnerable.stderr, /authorization denied by plugin.*images\.vulnerabilities/s);
  t.match(vulnerable.stderr, /1 critical vulnerabilities \(max 0\): CVE-2099-0001/);
  const stale = await h.docker(['run', '-d', '--network', 'none', 'bk-scan/stale:1', 'sleep', '60']);
  t.not(stale.code, 0);
  t.match(stale.stderr, /images\.not-scanned/);
  t.match(stale.stderr, /days old \(max 30\)/);
  const clean = await h.docker(['run', '-d', '--network', 'none', 'bk-scan/clean:1', 'sleep', '60']);
  t.equal(clean.code, 0, `a fresh clean scan admits it: ${clean.stderr}`);
});
