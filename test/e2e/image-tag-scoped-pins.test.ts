// End to end, tag pins per rule scope: a real controller process, two real agent processes,
// each the authorization plugin of its own private dockerd (two simulated hosts, labelled
// env=prod and env=staging). Tags move by `docker tag` / `docker commit` (no registry is
// reachable here, so a digest is the image id, as for any image without a repo digest).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { TEST_IMAGE, TEST_IMAGE_USER1000 } from '../helpers/engine';
import { apiRequest, waitFor } from '../helpers/processes';
import { startController, tempRoot } from './stack';
import { authzHost as host } from './authz-host';

interface ImageTag { ref: string; moved: boolean; digests: Array<{ digest: string; containers: Array<{ name: string }> }> }

// A rule with a scope has pins of its own: what ran in ITS scope. The rule pins release tags on
// hosts labelled env=prod. The staging host runs bk-e2e/shop:v1 first as one image (the fleet's
// first digest, which a rule without a scope would pin); the prod host then runs v1 as another
// image — allowed, it is the first seen in prod and becomes the prod pin. Staging moving the tag
// again trips nothing; on the prod host, v1 retagged to other content is refused at the Docker
// API with the rule, the tag, the pinned digest and the new one.
t.test('scoped pins: a tag moving in another scope trips nothing; in scope it is refused', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s' });
  t.teardown(() => ctl.stop());
  const ref = 'bk-e2e/shop:v1';
  const key = 'docker.io/bk-e2e/shop:v1';
  const put = await apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e-scoped-pins }
spec:
  rules:
    - id: images.prod-releases-pinned
      description: release tags never change image once seen in prod
      severity: high
      mode: enforce
      action: { type: alert }
      scope: { hostLabels: { env: prod } }
      check: { type: image-tag-pinned, tags: ["v*"], repositories: ["docker.io/bk-e2e/*"] }
`, 'application/yaml');
  t.equal(put.status, 200, JSON.stringify(put.body));
  const prod = await host(t, ctl, root.dir, 'prod-1', ['--host-label', 'env=prod']);
  const staging = await host(t, ctl, root.dir, 'staging-1', ['--host-label', 'env=staging']);
  for (const h of [prod, staging]) {
    await waitFor('policy applied', async () => {
      const r = await ctl.get<{ policy: { version: number; applied: boolean } | null; status: string }>(`/v1/agents/${h.agent.agentId}`);
      return r.body.status === 'online' && r.body.policy?.version === put.body.version && r.body.policy.applied;
    }, 30_000);
  }
  const idOf = async (h: typeof prod, r: string) => (await h.docker(['image', 'inspect', '-f', '{{.Id}}', r])).stdout.trim();
  const runs = async (h: typeof prod, name: string) => {
    const r = await h.docker(['run', '-d', '--network', 'none', '--name', name, ref, 'sleep', '600']);
    t.equal(r.code, 0, `${name} runs: ${r.stderr}`);
    await waitFor(`the controller saw ${name}`, async () => {
      const tag = await ctl.get<ImageTag>(`/v1/images/${encodeURIComponent(key)}`);
      return tag.status === 200 && tag.body.digests.some((d) => d.containers.some((c) => c.name === name));
    });
  };

  // Staging first: v1 is the user1000 image there.
  t.equal((await staging.docker(['tag', TEST_IMAGE_USER1000, ref])).code, 0);
  const stagingFirst = await idOf(staging, ref);
  await runs(staging, 'shop-staging-1');
  // Prod: v1 is other content, and it is the first v1 seen in prod → allowed, and pinned.
  t.equal((await prod.docker(['tag', TEST_IMAGE, ref])).code, 0);
  const prodPin = await idOf(prod, ref);
  t.not(prodPin, stagingFirst);
  await runs(prod, 'shop-prod-1');

  // Staging moves v1 again, to a third image: outside the rule's scope, nothing is refused.
  const src = `bk-shop-src-${randomBytes(3).toString('hex')}`;
  t.equal((await staging.docker(['create', '--network', 'none', '--name', src, TEST_IMAGE, 'true'])).code, 0);
  const commit = await staging.docker(['commit', '-c', 'LABEL bk.variant=third', src, ref]);
  t.equal(commit.code, 0, commit.stderr);
  t.equal((await staging.docker(['rm', src])).code, 0);
  const third = await idOf(staging, ref);
  t.not(third, prodPin);
  t.not(third, stagingFirst);
  await runs(staging, 'shop-staging-2');

  // Prod: v1 as its pin still runs; v1 retagged to the staging image is refused once the pin is
  // at the agent (a create that passes before is removed unstarted: it counts for nothing).
  await runs(prod, 'shop-prod-2');
  t.equal((await prod.docker(['tag', TEST_IMAGE_USER1000, ref])).code, 0);
  const moved = await idOf(prod, ref);
  t.not(moved, prodPin);
  const denied = await waitFor('the create on the prod host refused', async () => {
    const name = `shop-prod-try-${randomBytes(2).toString('hex')}`;
    const r = await prod.docker(['create', '--network', 'none', '--name', name, ref, 'sleep', '600']);
    if (r.code === 0) await prod.docker(['rm', '-f', name]);
    return r.code !== 0 ? r : undefined;
  }, 20_000);
  t.match(denied.stderr, /authorization denied by plugin/);
  t.match(denied.stderr, 'images.prod-releases-pinned');
  t.match(denied.stderr, `tag ${key} is pinned to ${prodPin} (the digest first seen in the scope of rule images.prod-releases-pinned), but this image is ${moved}: the tag was re-pushed`);
  // And staging still runs whatever v1 is there.
  await runs(staging, 'shop-staging-3');
});
