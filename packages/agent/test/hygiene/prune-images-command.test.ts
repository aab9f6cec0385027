// `bulkhead-agent prune-images` with a fake engine: the text and JSON
// output, --dry-run, the scope flags, the agent's memory respected (and an
// unreadable one refused), and the exit codes (4 when a removal failed, 1
// engine unreachable, 2 bad arguments) through the real `main`.
import t from 'tap';
import type Dockerode from 'dockerode';
import { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../src/cli/main';
import { PruneFailedError, registerPruneImagesCommand, type PruneImagesJson } from '../../src/cli/prune-images-command';
import type { HygieneDocker } from '../../src/hygiene/image-hygiene';

const DAY = 86_400_000;
const NOW = Date.now();

interface Img { tag: string; days: number; size?: number; labels?: Record<string, string> }

function fakeEngine(images: Img[], o: { refuse?: string; containers?: Array<{ image: string; state: string }> } = {}): HygieneDocker & { removed: string[]; hosts: string[] } {
  const removed: string[] = [];
  const alive = new Map(images.map((i) => [i.tag, i]));
  return {
    removed,
    hosts: [],
    listImages: async () =>
      [...alive.values()].map((i) => ({ Id: `sha256:${i.tag}`, RepoTags: [i.tag], Created: Math.floor((NOW - i.days * DAY) / 1000), Size: i.size ?? 1024, Labels: i.labels ?? null }) as unknown as Dockerode.ImageInfo),
    listContainers: async () =>
      (o.containers ?? []).map((c, k) => ({ Id: `c${k}`, ImageID: `sha256:${c.image}`, State: c.state, Created: Math.floor((NOW - 200 * DAY) / 1000), Names: [`/c${k}`] }) as unknown as Dockerode.ContainerInfo),
    getContainer: () => ({ inspect: async () => ({ Created: '0001-01-01T00:00:00Z', State: {} }) as unknown as Dockerode.ContainerInspectInfo }),
    getImage: (name: string) => ({
      inspect: async () => ({ Id: name, Metadata: { LastTagTime: '0001-01-01T00:00:00Z' } }) as unknown as Dockerode.ImageInspectInfo,
      remove: async () => {
        if (name === o.refuse) throw new Error('conflict: unable to remove repository reference');
        removed.push(name);
        alive.delete(name);
        return [{ Untagged: name }, { Deleted: `sha256:${name}` }];
      },
    }),
  };
}

async function runCmd(argv: string[], engine: HygieneDocker & { hosts: string[] }): Promise<{ out: string; err: string; error?: unknown }> {
  let out = '';
  let err = '';
  const program = new Command('bulkhead-agent').exitOverride().configureOutput({ writeOut: (s) => void (out += s), writeErr: (s) => void (err += s) });
  registerPruneImagesCommand(program, { out: (s) => void (out += s), err: (s) => void (err += s) }, (host) => {
    engine.hosts.push(host);
    return engine;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return { out, err };
  } catch (error) {
    return { out, err, error };
  }
}

const IMAGES: Img[] = [
  { tag: 'ci/old:1', days: 90, size: 3 * 1024 * 1024 },
  { tag: 'ci/recent:1', days: 2 },
  { tag: 'ci/remembered:1', days: 90 },
  { tag: 'ci/app:stable', days: 90 },
  { tag: 'base/os:1', days: 400 },
  { tag: 'ci/stopped:1', days: 90 },
  { tag: 'ci/labelled:1', days: 90, labels: { temporary: 'yes' } },
];

t.test('dry run, then the real thing: scope, memory, records', async (t) => {
  const state = t.testdir();
  writeFileSync(join(state, 'image-last-used.json'), JSON.stringify({ version: 1, writtenAt: '', images: { 'sha256:ci/remembered:1': NOW - 3 * DAY } }));
  const engine = fakeEngine(IMAGES, { containers: [{ image: 'ci/stopped:1', state: 'exited' }] });
  const scope = ['--state-dir', state, '--older-than', '30', '--include', 'ci/*', '--exclude', '*:stable', '--docker-host', 'unix:///fake.sock'];

  const dry = await runCmd(['prune-images', ...scope, '--dry-run'], engine);
  t.equal(dry.error, undefined, dry.err);
  t.same(engine.removed, [], 'a dry run removes nothing');
  t.same(engine.hosts, ['unix:///fake.sock']);
  t.match(dry.out, /^Scope: tags ci\/\*; not \*:stable; no dangling images; idle ≥ 30 day\(s\); dry run$/m);
  t.match(dry.out, new RegExp(`^Remembered uses: 1 image\\(s\\) \\(${state.replace(/[/.]/g, '\\$&')}/image-last-used\\.json\\)$`, 'm'));
  t.match(dry.out, /^RESULT\s+IMAGE\s+TAGS\s+SIZE\s+WHY$/m);
  t.match(dry.out, /^would delete\s+ci\/old:1\s+ci\/old:1\s+3\.0 MiB\s+never used by a container, idle 90\.0 days$/m);
  t.match(dry.out, /^would delete\s+ci\/labelled:/m);
  t.notMatch(dry.out, /^would .*(remembered|app:stable|recent|base\/os)/m, 'remembered, excluded, recent and out-of-scope images are not listed');
  t.match(dry.out, /^Dry run: would remove 2 image\(s\) \(2 deleted, 0 untagged only\), reclaiming 3\.0 MiB; nothing was removed; 1 stale image\(s\) kept: made from stopped containers$/m);

  const labelled = await runCmd(['prune-images', ...scope, '--label', 'temporary', '--json'], engine);
  t.equal(labelled.error, undefined, labelled.err);
  const doc = JSON.parse(labelled.out) as PruneImagesJson;
  t.same(engine.removed, ['ci/labelled:1'], 'only the labelled image');
  t.match(doc, { dryRun: false, olderThanDays: 30, counts: { removed: 1, deleted: 1, failed: 0, skipped: 0 }, reclaimedBytes: 1024, scope: { include: ['ci/*'], exclude: ['*:stable'], dangling: false, labels: { temporary: '*' } } });
  t.same(doc.images.map((i) => i.untagged), [['ci/labelled:1']]);
  t.same(doc.lastUsed, { path: join(state, 'image-last-used.json'), images: 1 });

  const real = await runCmd(['prune-images', ...scope], engine);
  t.equal(real.error, undefined, real.err);
  t.same(engine.removed, ['ci/labelled:1', 'ci/old:1']);
  t.match(real.out, /^deleted\s+ci\/old:1/m);
  t.match(real.out, /^Pruned 1 image\(s\) \(1 deleted, 0 untagged only\), reclaimed 3\.0 MiB; 0 failed; 1 stale image\(s\) kept/m);
  const nothing = await runCmd(['prune-images', ...scope], engine);
  t.match(nothing.out, /^Pruned 0 image\(s\)/m);
  t.notMatch(nothing.out, /^RESULT/m, 'no table when nothing qualified');
});

t.test('a refused removal: recorded, exit 4 after the output', async (t) => {
  const state = t.testdir();
  const engine = fakeEngine([{ tag: 'ci/a:1', days: 90 }, { tag: 'ci/b:1', days: 90 }], { refuse: 'ci/b:1' });
  const r = await runCmd(['prune-images', '--state-dir', state, '--include', 'ci/*'], engine);
  t.ok(r.error instanceof PruneFailedError);
  t.equal((r.error as PruneFailedError).exitCode, 4);
  t.match(r.out, /^failed\s+ci\/b:1\s+ci\/b:1\s+1\.0 KiB\s+conflict: unable to remove repository reference$/m);
  t.match(r.out, /^deleted\s+ci\/a:1/m);
  t.match(r.out, /1 failed/);
  t.equal(r.err, 'prune-images: 1 removal(s) failed\n');
  t.same(engine.removed, ['ci/a:1'], 'the rest is done');
});

t.test('exit codes through main: bad arguments 2, engine unreachable 1, unreadable memory 1', async (t) => {
  const state = t.testdir();
  const io = () => {
    const o = { out: '', err: '' };
    return { o, io: { out: (s: string) => void (o.out += s), err: (s: string) => void (o.err += s) } };
  };
  const a = io();
  t.equal(await main(['prune-images', '--older-than', 'soon', '--state-dir', state], a.io), 2);
  t.match(a.o.err, /BK_ERR_CONFIG_INVALID.*older-than must be a number of days/);
  const b = io();
  t.equal(await main(['prune-images', '--dangling', 'sometimes', '--state-dir', state], b.io), 2, 'bad on/off value');
  const c = io();
  t.equal(await main(['prune-images', '--docker-host', 'unix:///nonexistent/bk-prune.sock', '--state-dir', state], c.io), 1);
  t.match(c.o.err, /BK_ERR_DOCKER_UNAVAILABLE.*cannot prune images on the engine at unix:\/\/\/nonexistent\/bk-prune\.sock/);
  writeFileSync(join(state, 'image-last-used.json'), '{ broken');
  const d = io();
  t.equal(await main(['prune-images', '--docker-host', 'unix:///nonexistent/bk-prune.sock', '--state-dir', state], d.io), 1);
  t.match(d.o.err, /image last-use memory .* is not JSON/, 'an unreadable memory is never taken for "nothing was used"');
  const e = io();
  t.equal(await main(['prune-images', '--help'], e.io), 0);
  t.match(e.o.out, /Exit status: 0 done; 4 some removal failed/);
});
