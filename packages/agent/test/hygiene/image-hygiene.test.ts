// Image hygiene with a fake engine: statuses (in use, used, never used,
// dangling), idle days from container times and remembered uses, and the
// scoped prune (include/exclude globs, dangling, labels, dry run, images of
// stopped containers kept, partial untagging) with its records.
import t from 'tap';
import type Dockerode from 'dockerode';
import { imageHygieneReport, type HygieneDocker } from '../../src/hygiene/image-hygiene';
import { globToRegExp, pruneImages } from '../../src/hygiene/image-prune';

const DAY = 86_400_000;
const NOW = Date.parse('2026-11-28T12:00:00Z');
const ago = (days: number): string => new Date(NOW - days * DAY).toISOString();
const secsAgo = (days: number): number => Math.floor((NOW - days * DAY) / 1000);

interface Img { id: string; tags: string[]; createdDaysAgo: number; lastTagDaysAgo?: number; labels?: Record<string, string>; size?: number }
interface Ctr { id: string; image: string; state: string; createdDaysAgo: number; finishedDaysAgo?: number; name: string }

function fake(images: Img[], containers: Ctr[]): HygieneDocker & { removed: string[] } {
  const removed: string[] = [];
  const alive = new Map(images.map((i) => [i.id, { ...i, tags: [...i.tags] }]));
  return {
    removed,
    listImages: async () => [...alive.values()].map((i) => ({ Id: i.id, RepoTags: i.tags.length ? i.tags : ['<none>:<none>'], Created: secsAgo(i.createdDaysAgo), Size: i.size ?? 1000, Labels: i.labels ?? null }) as unknown as Dockerode.ImageInfo),
    listContainers: async () => containers.map((c) => ({ Id: c.id, ImageID: c.image, State: c.state, Created: secsAgo(c.createdDaysAgo), Names: [`/${c.name}`] }) as unknown as Dockerode.ContainerInfo),
    getContainer: (id: string) => ({
      inspect: async () => {
        const c = containers.find((x) => x.id === id)!;
        if (c.name === 'vanishing') throw new Error('gone');
        return { Created: ago(c.createdDaysAgo), State: { StartedAt: ago(c.createdDaysAgo), FinishedAt: c.finishedDaysAgo === undefined ? '0001-01-01T00:00:00Z' : ago(c.finishedDaysAgo) } } as unknown as Dockerode.ContainerInspectInfo;
      },
    }),
    getImage: (name: string) => ({
      inspect: async () => {
        const i = alive.get(name);
        if (!i) throw new Error('no such image');
        return { Id: i.id, Metadata: { LastTagTime: i.lastTagDaysAgo === undefined ? '0001-01-01T00:00:00Z' : ago(i.lastTagDaysAgo) } } as unknown as Dockerode.ImageInspectInfo;
      },
      remove: async () => {
        removed.push(name);
        if (name === 'locked:1') throw new Error('conflict: unable to remove repository reference');
        const byId = alive.get(name);
        if (byId) {
          alive.delete(name);
          return [{ Deleted: name }];
        }
        for (const i of alive.values()) {
          const k = i.tags.indexOf(name);
          if (k < 0) continue;
          i.tags.splice(k, 1);
          if (i.tags.length === 0) {
            alive.delete(i.id);
            return [{ Untagged: name }, { Deleted: i.id }];
          }
          return [{ Untagged: name }];
        }
        throw new Error(`no such image ${name}`);
      },
    }),
  };
}

const IMAGES: Img[] = [
  { id: 'sha256:running', tags: ['web:1'], createdDaysAgo: 400 },
  { id: 'sha256:stopped-old', tags: ['batch:1'], createdDaysAgo: 300 },
  { id: 'sha256:stopped-new', tags: ['job:2'], createdDaysAgo: 300 },
  { id: 'sha256:never-old', tags: ['tool:old', 'tool:legacy'], createdDaysAgo: 100, labels: { team: 'ops' } },
  { id: 'sha256:never-pulled-recently', tags: ['base:1'], createdDaysAgo: 500, lastTagDaysAgo: 2 },
  { id: 'sha256:dangling', tags: [], createdDaysAgo: 60, size: 5000 },
  { id: 'sha256:remembered', tags: ['cron:1'], createdDaysAgo: 200 },
  { id: 'sha256:locked', tags: ['locked:1'], createdDaysAgo: 90 },
];
const CONTAINERS: Ctr[] = [
  { id: 'c1', image: 'sha256:running', state: 'running', createdDaysAgo: 10, name: 'web' },
  { id: 'c2', image: 'sha256:stopped-old', state: 'exited', createdDaysAgo: 90, finishedDaysAgo: 45, name: 'batch' },
  { id: 'c3', image: 'sha256:stopped-new', state: 'exited', createdDaysAgo: 90, finishedDaysAgo: 3, name: 'job' },
  { id: 'c4', image: 'sha256:stopped-new', state: 'created', createdDaysAgo: 1, name: 'vanishing' },
];

t.test('report: statuses, last use, idle days, stale lists', async (t) => {
  const r = await imageHygieneReport({ docker: fake(IMAGES, CONTAINERS), unusedDays: 30, now: () => NOW, lastUsed: new Map([['sha256:remembered', NOW - 5 * DAY]]) });
  const e = new Map(r.images.map((i) => [i.id, i]));
  t.same([e.get('sha256:running')!.status, e.get('sha256:running')!.idleDays, e.get('sha256:running')!.stale], ['in-use', 0, false]);
  t.same(e.get('sha256:running')!.containers, { running: 1, total: 1, names: ['web'] });
  t.same([e.get('sha256:stopped-old')!.status, e.get('sha256:stopped-old')!.idleDays, e.get('sha256:stopped-old')!.stale], ['used', 45, true], 'finished 45 days ago');
  t.same([e.get('sha256:stopped-new')!.status, e.get('sha256:stopped-new')!.stale], ['used', false]);
  t.equal(e.get('sha256:stopped-new')!.idleDays, 1, "a container removed meanwhile still counts by its list entry's Created");
  t.same([e.get('sha256:never-old')!.status, e.get('sha256:never-old')!.idleDays, e.get('sha256:never-old')!.lastUsedAtMs], ['never-used', 100, null]);
  t.same([e.get('sha256:never-pulled-recently')!.idleDays, e.get('sha256:never-pulled-recently')!.stale], [2, false], 'LastTagTime (pull) counts as arrival');
  t.same([e.get('sha256:dangling')!.status, e.get('sha256:dangling')!.tags], ['dangling', []]);
  t.same([e.get('sha256:remembered')!.status, e.get('sha256:remembered')!.idleDays], ['used', 5], 'remembered use from the agent');
  t.same(r.unused, ['sha256:stopped-old']);
  t.same(r.neverUsed.sort(), ['sha256:locked', 'sha256:never-old']);
  t.same(r.dangling, ['sha256:dangling']);
  t.equal(r.staleBytes, 1000 + 1000 + 5000 + 1000);
  t.same(r.images.slice(0, 3).map((i) => i.id), ['sha256:never-old', 'sha256:locked', 'sha256:dangling'], 'longest idle first');
});

t.test('prune: scoped by globs, dangling and labels; dry run; records; never images of stopped containers', async (t) => {
  const docker = fake(IMAGES, CONTAINERS);
  const dry = await pruneImages({ docker, olderThanDays: 30, dryRun: true, now: () => NOW });
  t.equal(dry.dryRun, true);
  t.same(docker.removed, [], 'dry run removes nothing');
  t.same(dry.removed.map((r) => [r.id, r.untagged, r.deleted]).sort(), [
    ['sha256:dangling', [], true],
    ['sha256:locked', ['locked:1'], true],
    ['sha256:never-old', ['tool:old', 'tool:legacy'], true],
    ['sha256:remembered', ['cron:1'], true],
  ], 'no include: every stale image, dangling too (no remembered uses given this time)');
  t.same(dry.skipped.map((s) => [s.id, s.why]), [['sha256:stopped-old', 'used by stopped container(s) batch']]);
  t.equal(dry.reclaimedBytes, 8000);

  const scoped = await pruneImages({ docker, olderThanDays: 30, include: ['tool:*'], exclude: ['*:legacy'], now: () => NOW });
  t.same(scoped.removed.map((r) => [r.id, r.untagged, r.deleted, r.deletedIds]), [['sha256:never-old', ['tool:old'], false, []]], 'only the matching tag; the image stays with tool:legacy');
  t.match(scoped.removed[0]!.reason, /^never used by a container, idle 100\.0 days$/);
  t.same(docker.removed, ['tool:old']);
  t.equal(scoped.reclaimedBytes, 0);

  const labelled = await pruneImages({ docker, olderThanDays: 30, labels: { team: 'ops' }, dangling: true, now: () => NOW });
  t.same(labelled.removed.map((r) => [r.id, r.untagged, r.deleted, r.deletedIds]), [['sha256:never-old', ['tool:legacy'], true, ['sha256:never-old']]]);
  const star = await pruneImages({ docker, olderThanDays: 30, labels: { team: '*' }, now: () => NOW });
  t.same(star.removed, [], 'the labelled image is gone; nothing else has the label');

  const rest = await pruneImages({ docker, olderThanDays: 30, now: () => NOW, lastUsed: new Map([['sha256:remembered', NOW - DAY]]) });
  t.same(rest.removed.map((r) => [r.id, r.deleted, r.error ?? '']).sort(), [
    ['sha256:dangling', true, ''],
    ['sha256:locked', false, 'conflict: unable to remove repository reference'],
  ], 'a refusal by dockerd is recorded, not thrown');
  t.equal(rest.reclaimedBytes, 5000);
  t.same(rest.removed.find((r) => r.id === 'sha256:dangling')!.deletedIds, ['sha256:dangling']);
  const noDangling = await pruneImages({ docker: fake(IMAGES, []), olderThanDays: 30, include: ['*'], now: () => NOW });
  t.notOk(noDangling.removed.some((r) => r.id === 'sha256:dangling'), 'with an include scope, dangling images only when asked');
  await t.rejects(pruneImages({ docker, olderThanDays: -1 }), /olderThanDays/);
  await t.rejects(pruneImages({ docker, olderThanDays: Number.NaN }), /olderThanDays/);
});

t.test('globs', async (t) => {
  t.ok(globToRegExp('registry.example.com/team/*').test('registry.example.com/team/app:1'));
  t.notOk(globToRegExp('registry.example.com/team/*').test('registryXexample.com/team/app:1'), 'dots are literal');
  t.ok(globToRegExp('*:pr-?').test('app:pr-7'));
  t.notOk(globToRegExp('*:pr-?').test('app:pr-77'));
  t.ok(globToRegExp('a+b(c)').test('a+b(c)'));
});
