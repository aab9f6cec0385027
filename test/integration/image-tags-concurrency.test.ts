// Many agents' snapshots record image-tag sightings at once (bench/fleet-sim: 245 PostgreSQL
// deadlocks at 100 agents, each closing a stream). Two writers touching the same shared
// image_tags rows in opposite orders, on a real PostgreSQL: every call must succeed.
import t from 'tap';
import { openStore } from '../../packages/controller/src/store/open-store';
import type { TagSighting } from '../../packages/controller/src/images/image-tag-store';
import { usePostgres } from '../helpers/postgres';

const TAGS = 40;
const ROUNDS = 15;

const sightings = (agentId: string): TagSighting[] =>
  Array.from({ length: TAGS }, (_, i) => ({
    agentId, containerId: `${agentId}-c${i}`, containerName: `/c${i}`,
    repository: 'registry.example.com/shop/web', tag: `v${i}`,
    digest: `sha256:${i.toString(16).padStart(64, '0')}`, imageId: `sha256:${(i + 1000).toString(16).padStart(64, '0')}`,
  }));

t.test('concurrent sightings of the same tags in opposite orders do not deadlock (PostgreSQL)', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const store = await openStore({ kind: 'postgres', connectionString: (await pg.createDatabase()).url });
  t.teardown(() => store.close());
  const tags = store.imageTags!;
  t.ok(tags, 'the store tracks image tags');
  const a = sightings('agent-a');
  const b = sightings('agent-b').reverse();
  t.equal((await tags.recordSightings(a, new Date(1_000_000))).length, TAGS, 'first sightings: one new digest per tag');
  const failures: string[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const at = new Date(1_000_000 + round * 1000);
    const results = await Promise.allSettled([tags.recordSightings(a, at), tags.recordSightings(b, at)]);
    for (const r of results) if (r.status === 'rejected') failures.push(String((r.reason as Error)?.message ?? r.reason));
  }
  t.same(failures, [], `${ROUNDS} rounds of two writers: no call failed`);
  const listed = await tags.listTags({ search: 'registry.example.com/shop/web', limit: 100 });
  t.equal(listed.length, TAGS, 'one record per tag, none duplicated');
});
