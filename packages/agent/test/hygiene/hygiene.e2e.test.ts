// Image hygiene against a REAL engine: an extra test image imported and
// left unused is reported, a dry run records without removing, the scoped
// prune removes it (and a dangling image made by re-importing the tag),
// and images outside the scope — the shared test images — are untouched.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useEngine, LABEL_ARGS, removeLabelledContainers } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { imageHygieneReport } from '../../src/hygiene/image-hygiene';
import { pruneImages } from '../../src/hygiene/image-prune';

t.test('unused test image: reported, dry-run, pruned; dangling image pruned by label scope', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine));
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const repo = `bulkhead-test/hygiene-${uniq}`;
  const dir = mkdtempSync(join(tmpdir(), 'bk-hyg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tarOf = (content: string): Buffer => {
    writeFileSync(join(dir, 'file.txt'), content);
    const r = spawnSync('tar', ['-C', dir, '-c', '.']);
    if (r.status !== 0) throw new Error(`tar failed: ${r.stderr.toString()}`);
    return r.stdout;
  };
  const importImage = (tag: string, content: string): Promise<string> =>
    engine.dockerOk(['import', '--change', `LABEL bulkhead.test.hygiene=${uniq}`, '-', tag], { input: tarOf(content) });
  const unusedId = await importImage(`${repo}:unused`, 'one');
  const usedId = await importImage(`${repo}:used`, 'two');
  t.teardown(async () => {
    await engine.docker(['rmi', '-f', `${repo}:unused`, `${repo}:used`, `${repo}:again`]);
  });
  // A stopped container made from :used keeps it from being pruned.
  await engine.dockerOk(['create', '--network', 'none', ...LABEL_ARGS, `${repo}:used`, 'x']);

  const report = await imageHygieneReport({ docker, unusedDays: 0 });
  const mine = report.images.filter((i) => i.labels['bulkhead.test.hygiene'] === uniq);
  const unused = mine.find((i) => i.id === unusedId)!;
  t.same([unused.status, unused.stale, unused.tags, unused.lastUsedAtMs], ['never-used', true, [`${repo}:unused`], null], 'the unused image is reported');
  t.ok(report.neverUsed.includes(unusedId));
  const used = mine.find((i) => i.id === usedId)!;
  t.equal(used.status, 'used', 'a stopped container used it');
  t.equal(used.containers.total, 1);
  t.ok(report.images.some((i) => i.tags.includes(engine.image)), 'the shared test image is listed too');

  const scope = { include: [`${repo}:*`], olderThanDays: 0 };
  const dry = await pruneImages({ docker, ...scope, dryRun: true });
  t.same(dry.removed.map((r) => [r.id, r.untagged, r.deleted]), [[unusedId, [`${repo}:unused`], true]]);
  t.same(dry.skipped.filter((s) => s.id === usedId).length, 1, 'the image of a stopped container is skipped');
  t.equal((await engine.docker(['image', 'inspect', `${repo}:unused`])).code, 0, 'dry run: still there');

  const pruned = await pruneImages({ docker, ...scope });
  t.same(pruned.removed.map((r) => [r.id, r.deleted, r.error]), [[unusedId, true, undefined]]);
  t.ok(pruned.removed[0]!.deletedIds.includes(unusedId), "dockerd's Deleted records are kept");
  t.not((await engine.docker(['image', 'inspect', `${repo}:unused`])).code, 0, 'removed');
  t.equal((await engine.docker(['image', 'inspect', engine.image])).code, 0, 'out of scope: untouched');

  // Re-importing a tag leaves the previous image dangling.
  const first = await importImage(`${repo}:again`, 'three');
  await importImage(`${repo}:again`, 'four');
  const r2 = await imageHygieneReport({ docker, unusedDays: 0 });
  t.equal(r2.images.find((i) => i.id === first)?.status, 'dangling');
  const noDangling = await pruneImages({ docker, olderThanDays: 0, include: [`${repo}:nothing`] });
  t.same(noDangling.removed, [], 'an include scope leaves dangling images alone unless asked');
  const dangling = await pruneImages({ docker, olderThanDays: 0, include: [`${repo}:nothing`], dangling: true, labels: { 'bulkhead.test.hygiene': uniq } });
  t.same(dangling.removed.map((r) => [r.id, r.tags, r.deleted]), [[first, [], true]]);
  t.not((await engine.docker(['image', 'inspect', first])).code, 0, 'the dangling image is gone');
});
