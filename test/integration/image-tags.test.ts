// Tags that move, with real pieces: the controller's gRPC server on 127.0.0.1:0
// with real TLS, a real store (SQLite, and PostgreSQL in a private cluster), its
// AlertService, PolicyService and TagTracker as controller.ts wires them, its
// HTTPS API through fastify's inject; two agents enrolled for real, each with
// its real ControllerLink and PolicyHolder — only the Docker side is an
// in-memory inventory.
//
// Host h1 runs registry.example.com/shop/web:v1 as digest A; the tag is then
// re-pushed and h2 runs it as digest B → ONE image_tag_moved alert naming both
// digests and both hosts, however often the containers are reported again; the
// API and `bulkhead images` show both digests with their hosts and containers.
// An `image-tag-pinned` rule gets the pin (v1 → A) to both agents, and the
// agents' evaluator refuses a create of v1 as B while allowing A and a tag it has
// no pin for.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { createLogger, type ContainerFacts, type ContainerFacts__Output } from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import type { Store } from '../../packages/controller/src/store/store';
import { startGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { createApiServer } from '../../packages/controller/src/api/server';
import { generateApiKey } from '../../packages/controller/src/api/api-keys';
import { PolicyService } from '../../packages/controller/src/policy/policy-service';
import { AlertService } from '../../packages/controller/src/alerts/alert-service';
import { TagTracker } from '../../packages/controller/src/images/tag-tracker';
import type { ImageTagDto } from '../../packages/controller/src/api/routes/images';
import { renderImageTable } from '../../packages/cli/src/commands/images';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink } from '../../packages/agent/src/link/controller-link';
import { PolicyHolder } from '../../packages/agent/src/policy/policy-holder';
import { evaluateFacts, isBlocking } from '../../packages/agent/src/policy/policy-evaluation';
import { waitFor } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { FakeInventory } from '../helpers/fake-inventory';

const silent = createLogger({ name: 'test', level: 'silent' });


const REPO = 'registry.example.com/shop/web';
const A = 'sha256:' + 'a'.repeat(64);
const B = 'sha256:' + 'b'.repeat(64);
const IMG_A = 'sha256:' + '1'.repeat(64);
const IMG_B = 'sha256:' + '2'.repeat(64);

function running(id: string, name: string, imageRef: string, digest: string, imageId: string): ContainerFacts {
  return { id: id.padEnd(64, '0'), name, imageRef, imageDigest: `${REPO}@${digest}`, imageId, state: 'running', labels: {} };
}

const POLICY = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: pinned-releases }
spec:
  rules:
    - id: images.release-tags-pinned
      description: release tags never change digest once seen
      severity: high
      mode: enforce
      action: { type: alert }
      check: { type: image-tag-pinned, tags: ["v*"], repositories: ["registry.example.com/*"] }
`;

async function scenario(t: Test, openTheStore: (dir: string) => Promise<Store>): Promise<void> {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openTheStore(dir);
  t.teardown(() => store.close());
  const alerts = new AlertService({ store: store.alerts!, logger: silent });
  const policy = await PolicyService.create({ store, logger: silent });
  const tags = new TagTracker({ store, logger: silent, alerts, notifyDelayMs: 50, onNewDigest: () => void policy.refreshTagPins() });
  t.teardown(() => tags.close());
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, policy, link: { heartbeatIntervalMs: 200, offlineAfterMs: 5000, alerts, tags } });
  t.teardown(() => server.shutdown());
  const app = await createApiServer({ store, tls: pki.server, logger: silent, policy });
  await app.ready();
  t.teardown(() => app.close());
  const key = generateApiKey('images-test', 'viewer');
  await store.insertApiKey(key.record);
  const admin = generateApiKey('images-admin', 'admin');
  await store.insertApiKey(admin.record);
  const get = async (url: string, k = key.plaintext) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${k}` } });

  const put = await app.inject({ method: 'PUT', url: '/v1/policies', headers: { authorization: `Bearer ${admin.plaintext}`, 'content-type': 'application/yaml' }, payload: POLICY });
  t.equal(put.statusCode, 200, put.body);

  // Two hosts, each a real enrolled agent with its real policy holder.
  const agents: Array<{ id: string; inv: FakeInventory; holder: PolicyHolder }> = [];
  for (const hostname of ['h1', 'h2']) {
    const { token } = await createJoinToken(store, 60_000, new Date());
    const creds = await enroll({ controller: `127.0.0.1:${server.port}`, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, hostname), hostname });
    const holder = PolicyHolder.open({ stateDir: join(dir, hostname), logger: process.env.DEBUG_TAGS ? createLogger({ name: hostname, level: 'debug' }) : silent });
    const inv = new FakeInventory();
    const link = new ControllerLink({
      credentials: creds, inventory: inv, hostFacts: async () => ({ hostname, osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '26.1', cgroupVersion: 2 }),
      logger: silent, minBackoffMs: 50, maxBackoffMs: 300,
      onPolicy: (b) => {
        const r = holder.apply(b);
        return { version: b.version, applied: r.applied, error: r.error ?? '' };
      },
    });
    link.start();
    t.teardown(() => link.stop());
    agents.push({ id: creds.identity.agentId, inv, holder });
  }
  const [h1, h2] = agents as [typeof agents[0], typeof agents[0]];
  await waitFor('both agents hold the pinning policy', async () => h1.holder.state.policy?.metadata.name === 'pinned-releases' && h2.holder.state.policy?.metadata.name === 'pinned-releases');

  // Before any host ran v1, no agent has a pin for it: a create of either digest is allowed.
  const create = (digest: string, imageId: string, ref = `${REPO}:v1`): ContainerFacts__Output =>
    ({ ...running('', 'new', ref, digest, imageId), id: '' }) as unknown as ContainerFacts__Output;
  const judged = (a: typeof h1, f: ContainerFacts__Output) => evaluateFacts(a.holder.state, f, undefined, undefined, new Date()).filter(isBlocking);
  t.same(judged(h2, create(B, IMG_B)), [], 'first seen: no pin, no denial');

  // h1 runs v1 as A.
  h1.inv.upsert(running('c1', 'web-1', `${REPO}:v1`, A, IMG_A));
  const pinKey = `${REPO}:v1`;
  await waitFor('the pin reaches both agents', async () => h1.holder.state.tagPins?.get(pinKey) === A && h2.holder.state.tagPins?.get(pinKey) === A);
  t.same(judged(h2, create(A, IMG_A)), [], 'the pinned digest is allowed');
  const denied = judged(h2, create(B, IMG_B));
  t.equal(denied.length, 1, 'the tag as another digest is refused at the authz door');
  t.equal(denied[0]?.ruleId, 'images.release-tags-pinned');
  t.match(denied[0]?.evidence[0]?.detail, `tag ${pinKey} is pinned to ${A} (the digest first seen), but this image is ${B}`);
  t.same(judged(h2, create(B, IMG_B, `${REPO}:latest`)), [], 'a tag no rule pins is not judged');
  t.same(judged(h2, create(B, IMG_B, `${REPO}:v2`)), [], 'a pinned-pattern tag without a pin yet (first seen) is allowed');
  t.same(judged(h2, create(B, IMG_B, `${REPO}@${B}`)), [], 'a ref by digest names no tag that could move');
  t.equal((await store.alerts!.listAlerts({ types: ['image_tag_moved'] })).length, 0, 'one digest: no move');

  // The tag is re-pushed: h2 (a host without the rule in force, or before it) runs v1 as B.
  h2.inv.upsert(running('c2', 'web-2', `${REPO}:v1`, B, IMG_B));
  const moved = await waitFor('the image_tag_moved alert', async () => {
    const l = await store.alerts!.listAlerts({ types: ['image_tag_moved'] });
    return l.length > 0 ? l : undefined;
  });
  t.equal(moved.length, 1);
  const alert = moved[0]!;
  t.equal(alert.severity, 'high');
  t.equal(alert.image, pinKey);
  t.equal(alert.agentId, h2.id);
  t.equal(alert.host, 'h2');
  t.equal(alert.containerName, 'web-2');
  t.match(alert.message, `image tag ${pinKey} moved: it now runs as ${B} on h2 (${h2.id}) (container web-2); it ran as ${A} (first seen `);
  t.match(alert.message, ` on h1 (${h1.id})) before`);

  // Reported again and again (a reconnect's snapshot, more containers of either digest): no further alert.
  h2.inv.upsert({ ...running('c2', 'web-2', `${REPO}:v1`, B, IMG_B), state: 'paused' });
  h1.inv.upsert(running('c3', 'web-3', `${REPO}:v1`, A, IMG_A));
  h2.inv.upsert(running('c4', 'web-4', `${REPO}:v1`, B, IMG_B));
  await waitFor('the later containers recorded', async () => {
    const r = await get(`/v1/images/${encodeURIComponent(pinKey)}`);
    const d = JSON.parse(r.body) as ImageTagDto;
    return r.statusCode === 200 && d.digests.every((x) => x.containers.length === 2);
  });
  await alerts.flush();
  t.equal((await store.alerts!.listAlerts({ types: ['image_tag_moved'] })).length, 1, 'one alert per move, not per container report');
  t.equal(h2.holder.state.tagPins?.get(pinKey), A, 'the pin stays the first digest');

  // The API: the tag with both digests, hosts and containers per digest.
  const one = await get(`/v1/images/${encodeURIComponent(pinKey)}`);
  t.equal(one.statusCode, 200, one.body);
  const dto = JSON.parse(one.body) as ImageTagDto;
  t.match(dto, { ref: pinKey, repository: REPO, tag: 'v1', moved: true });
  t.same(dto.digests.map((d) => d.digest), [A, B], 'oldest first');
  t.same(dto.digests.map((d) => d.hosts.map((h) => h.hostname)), [['h1'], ['h2']]);
  t.same(dto.digests.map((d) => d.containers.map((c) => c.name).sort()), [['web-1', 'web-3'], ['web-2', 'web-4']]);
  t.equal(dto.digests[0]?.imageId, IMG_A);

  const list = await get('/v1/images?moved=true');
  t.equal(list.statusCode, 200, list.body);
  const page = JSON.parse(list.body) as { items: ImageTagDto[]; nextOffset: number | null };
  t.same(page.items.map((i) => i.ref), [pinKey]);
  t.equal(page.nextOffset, null);
  const table = renderImageTable(page.items, new Date());
  t.match(table, /^TAG\s+MOVED\s+DIGEST\s+FIRST SEEN\s+LAST SEEN\s+HOSTS\s+CONTAINERS$/m);
  t.match(table, new RegExp(`^${pinKey.replace(/[.]/g, '\\.')}\\s+yes\\s+sha256:aaaaaaaaaaaa\\s+\\S+ ago\\s+\\S+ ago\\s+h1\\s+2$`, 'm'));
  t.match(table, /^\s+sha256:bbbbbbbbbbbb\s+\S+ ago\s+\S+ ago\s+h2\s+2$/m);

  // A dry-run uses the pins the policy would send: the containers running v1 as B are hits.
  const dry = await app.inject({ method: 'POST', url: '/v1/policies:dry-run', headers: { authorization: `Bearer ${admin.plaintext}`, 'content-type': 'application/yaml' }, payload: POLICY });
  t.equal(dry.statusCode, 200, dry.body);
  const hits = (JSON.parse(dry.body) as { rules: Array<{ ruleId: string; hits: Array<{ containerName: string }> }> }).rules[0]!.hits.map((h) => h.containerName).sort();
  t.same(hits, ['web-2', 'web-4'], 'dry-run: the moved containers, not the pinned ones');

  // Unknown tags, refs that name no tag, and a project-scoped key.
  t.equal((await get(`/v1/images/${encodeURIComponent(`${REPO}:v9`)}`)).statusCode, 404);
  t.equal((await get(`/v1/images/${encodeURIComponent(`${REPO}@${A}`)}`)).statusCode, 400);
  const scoped = generateApiKey('scoped', 'viewer', { projects: ['shop'] });
  await store.insertApiKey(scoped.record);
  t.equal((await get('/v1/images', scoped.plaintext)).statusCode, 403, 'fleet-wide: a project-scoped key is refused');
  t.equal((await app.inject({ method: 'GET', url: '/v1/images' })).statusCode, 401);
}

t.test('tags that move: SQLite', async (t) => {
  await scenario(t, (dir) => openStore({ kind: 'sqlite', path: join(dir, 'bulkhead.db') }));
});

t.test('tags that move: PostgreSQL', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  await scenario(t, async () => openStore({ kind: 'postgres', connectionString: (await pg.createDatabase()).url }));
});
