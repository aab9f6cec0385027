// End to end, image hygiene (move 1) with real processes on a
// PRIVATE dockerd (images are removed here; the shared engine's test image
// is never at risk):
// - four images that "arrived" long ago (the busybox test image re-labelled,
//   created 2020-01-01, `docker load`ed under bk-prune/… names): one unused,
//   one a running container uses, one used by a container that was created
//   and removed while the agent watched (so only the agent's memory knows),
//   one outside the prune scope;
// - the agent remembers that use in STATE_DIR/image-last-used.json (0600),
//   across its restart;
// - `bulkhead-agent prune-images --dry-run` lists what it would remove and
//   removes nothing; it respects the memory;
// - the agent restarted with --image-prune --image-prune-older-than 1
//   --image-prune-include 'bk-prune/old*' removes exactly the unused,
//   in-scope tag at its first audit, logs it, and the controller stores the
//   record: GET /v1/agents/{id}/audit (`prune`), ?format=prune, `bulkhead
//   audit HOST`. The test image and every other tag stay.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { LABEL_ARGS, startPrivateEngine, type Engine } from '../helpers/engine';
import { AGENT_BIN, Daemon, OPS_BIN, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from './stack';

const OLD = 'bk-prune/old:1';
const REMEMBERED = 'bk-prune/old-remembered:1';
const RUNNING = 'bk-prune/old-running:1';
const KEEP = 'bk-prune/keep:1';
const SCOPE = ['--older-than', '1', '--include', 'bk-prune/old*'];

interface PruneDoc {
  dryRun: boolean;
  counts: { removed: number; deleted: number; failed: number };
  reclaimedBytes: number;
  images: Array<{ id: string; tags: string[]; untagged: string[]; deleted: boolean; reason: string; error?: string }>;
}

/**
 * Loads copies of the test image, one per name, each with its own id (a
 * label) and a creation time of 2020-01-01. `docker load` sets no
 * LastTagTime, so dockerd itself says these arrived years ago — which
 * `docker tag` or `docker import` (both stamp "now") cannot produce.
 */
async function loadOldImages(engine: Engine, dir: string, names: string[]): Promise<void> {
  const x = join(dir, 'x');
  mkdirSync(x, { recursive: true });
  const saved = join(dir, 'base.tar');
  await engine.dockerOk(['save', '-o', saved, engine.image]);
  const untar = spawnSync('tar', ['-C', x, '-xf', saved]);
  if (untar.status !== 0) throw new Error(`tar -x: ${untar.stderr.toString()}`);
  const [base] = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8')) as Array<{ Config: string; Layers: string[] }>;
  const config = JSON.parse(readFileSync(join(x, base!.Config), 'utf8')) as { created: string; config?: { Labels?: Record<string, string> | null } };
  const manifest = names.map((name) => {
    const c = { ...config, created: '2020-01-01T00:00:00Z', config: { ...config.config, Labels: { ...(config.config?.Labels ?? {}), 'bk.prune.name': name } } };
    const text = JSON.stringify(c);
    const file = `${createHash('sha256').update(text).digest('hex')}.json`;
    writeFileSync(join(x, file), text);
    return { Config: file, RepoTags: [name], Layers: base!.Layers };
  });
  writeFileSync(join(x, 'manifest.json'), JSON.stringify(manifest));
  rmSync(join(x, 'repositories'), { force: true }); // would tag the base image again
  const tarred = join(dir, 'old.tar');
  const tar = spawnSync('tar', ['-C', x, '-cf', tarred, ...readdirSync(x)]);
  if (tar.status !== 0) throw new Error(`tar -c: ${tar.stderr.toString()}`);
  await engine.dockerOk(['load', '-i', tarred]);
}

t.test('image hygiene: remembered uses, dry run, the scoped prune policy, the record at the controller', async (t) => {
  const engine = await startPrivateEngine({ t });
  const root = tempRoot();
  t.teardown(root.cleanup);
  await loadOldImages(engine, join(root.dir, 'images'), [OLD, REMEMBERED, RUNNING, KEEP]);
  const exists = async (ref: string): Promise<boolean> => (await engine.docker(['image', 'inspect', ref])).code === 0;
  const idOf = (ref: string): Promise<string> => engine.dockerOk(['image', 'inspect', '-f', '{{.Id}}', ref]);
  const times = await engine.dockerOk(['image', 'inspect', '-f', '{{.Created}} {{.Metadata.LastTagTime}}', OLD]);
  t.match(times, /^2020-01-01T00:00:00Z 0001-01-01/, `the premise: dockerd says the image arrived in 2020 (${times})`);
  const rememberedId = await idOf(REMEMBERED);
  const oldId = await idOf(OLD);

  const ctl = await startController(root.dir, { heartbeatInterval: '500ms' });
  t.teardown(() => ctl.stop());
  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost, ['--audit-interval', '1h']);
  agent.start();
  t.teardown(() => agent.stop());
  await agent.daemon.waitForLog((l) => l['msg'] === 'host audit done', 90_000);

  // ---- a use only the agent sees: create, then remove ------------------------------------------
  const runningName = `bk-prune-running-${process.pid}`;
  await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', runningName, RUNNING, 'sleep', '600']);
  const gone = `bk-prune-gone-${process.pid}`;
  await engine.dockerOk(['create', '--network', 'none', ...LABEL_ARGS, '--name', gone, REMEMBERED, 'true']);
  const containers = (removed: boolean) => async () => {
    const r = await ctl.get<{ items: Array<{ name: string; removed: boolean }> }>(`/v1/containers?agent=${agent.agentId}&include_removed=true&image=old-remembered`);
    return r.body.items.some((c) => c.name.endsWith(gone) && c.removed === removed) ? true : undefined;
  };
  await waitFor('the agent reported the container', containers(false), 30_000, 200);
  await engine.dockerOk(['rm', gone]);
  await waitFor('the agent reported its removal', containers(true), 30_000, 200);
  t.equal((await engine.docker(['ps', '-a', '-q', '--filter', `ancestor=${REMEMBERED}`])).stdout.trim(), '', 'dockerd no longer knows any container of it');
  await agent.stop();

  const memoryFile = join(agent.stateDir, 'image-last-used.json');
  t.equal(statSync(memoryFile).mode & 0o777, 0o600, 'the memory file is 0600');
  const memory = JSON.parse(readFileSync(memoryFile, 'utf8')) as { version: number; images: Record<string, number> };
  t.equal(memory.version, 1);
  t.ok(memory.images[rememberedId]! > Date.now() - 10 * 60_000, 'the removed container\'s image is remembered as used just now');
  t.equal(memory.images[oldId], undefined, 'the unused image is not');

  // ---- the one-shot command: dry run ----------------------------------------------------------------
  const dry = await run(AGENT_BIN, ['prune-images', '--docker-host', engine.dockerHost, '--state-dir', agent.stateDir, ...SCOPE, '--dry-run', '--json']);
  t.equal(dry.code, 0, dry.stderr);
  const dryDoc = JSON.parse(dry.stdout) as PruneDoc & { lastUsed: { images: number } };
  t.equal(dryDoc.dryRun, true);
  t.same(dryDoc.images.map((i) => i.untagged), [[OLD]], 'only the unused, in-scope tag: not the remembered one, not the running one');
  t.ok(dryDoc.lastUsed.images >= 2, 'the agent\'s memory was read');
  const forgetful = await run(AGENT_BIN, ['prune-images', '--docker-host', engine.dockerHost, '--state-dir', join(root.dir, 'no-state'), ...SCOPE, '--dry-run', '--json']);
  t.equal(forgetful.code, 0, forgetful.stderr);
  t.same((JSON.parse(forgetful.stdout) as PruneDoc).images.map((i) => i.untagged[0]).sort(), [OLD, REMEMBERED].sort(), 'without the memory the remembered image would have gone');
  const dryText = await run(AGENT_BIN, ['prune-images', '--docker-host', engine.dockerHost, '--state-dir', agent.stateDir, ...SCOPE, '--dry-run']);
  t.equal(dryText.code, 0, dryText.stderr);
  t.match(dryText.stdout, /^would delete\s+[0-9a-f]{12}\s+bk-prune\/old:1\s/m);
  t.match(dryText.stdout, /^Dry run: would remove 1 image\(s\)/m);
  for (const ref of [OLD, REMEMBERED, RUNNING, KEEP, engine.image]) t.ok(await exists(ref), `dry run: ${ref} still there`);
  const usage = await run(AGENT_BIN, ['prune-images', '--docker-host', engine.dockerHost, '--older-than', 'a while']);
  t.equal(usage.code, 2, 'bad arguments: exit 2');
  const down = await run(AGENT_BIN, ['prune-images', '--docker-host', `unix://${join(root.dir, 'none.sock')}`, '--state-dir', agent.stateDir]);
  t.equal(down.code, 1, 'no engine: exit 1');
  t.match(down.stderr, /BK_ERR_DOCKER_UNAVAILABLE/);

  // ---- the prune policy in the running agent ---------------------------------------------------------
  const pruner = Daemon.start('agent1-prune', AGENT_BIN, [
    'run', '--state-dir', agent.stateDir, '--docker-host', engine.dockerHost, '--reconcile-interval', '5s',
    '--authz-socket', join(agent.stateDir, 'authz.sock'), '--metrics-listen', '127.0.0.1:0',
    '--audit-interval', '1h', '--image-prune', '--image-prune-older-than', '1', '--image-prune-include', 'bk-prune/old*',
  ]);
  t.teardown(() => pruner.stop());
  const pruned = await pruner.waitForLog((l) => l['msg'] === 'image pruned', 90_000);
  t.match(pruned, { image: oldId, tags: [OLD], untagged: [OLD], deleted: true, dryRun: false, reason: /never used by a container, idle \d+\.\d days/ }, 'one log line per removed image');
  const done = await pruner.waitForLog((l) => l['msg'] === 'host audit done', 60_000);
  t.match(done, { prune: { removed: 1, failed: 0, dryRun: false } });
  t.equal(pruner.lines.filter((l) => l['msg'] === 'image pruned').length, 1, 'exactly one image removed');
  t.notOk(await exists(OLD), 'the unused, in-scope tag is gone');
  t.ok(await exists(REMEMBERED), 'the image only the agent knew was used stays');
  t.ok(await exists(RUNNING), 'the image a running container uses stays');
  t.ok(await exists(KEEP), 'out of scope: stays');
  t.ok(await exists(engine.image), 'the base test image stays');

  // ---- the record at the controller ----------------------------------------------------------------------
  const auditPath = `/v1/agents/${agent.agentId}/audit`;
  const report = await waitFor('the report with the prune record', async () => {
    const r = await ctl.get<{ takenAt: string; hostname: string; prune: PruneDoc | null; summary: { prune?: { removed: number; deleted: number; reclaimedBytes: number } | null } }>(auditPath);
    return r.status === 200 && r.body.prune ? r.body : undefined;
  }, 60_000, 250);
  t.match(report.prune, { dryRun: false, counts: { removed: 1, deleted: 1, failed: 0 } });
  t.same(report.prune!.images.map((i) => [i.id, i.untagged, i.deleted]), [[oldId, [OLD], true]]);
  t.ok(report.prune!.reclaimedBytes > 0, 'bytes reclaimed');
  t.match(report.summary.prune, { removed: 1, deleted: 1 });
  const history = await ctl.get<{ items: Array<{ takenAt: string; prune: PruneDoc }> }>(`${auditPath}?format=prune`);
  t.equal(history.status, 200);
  t.same(history.body.items.map((i) => i.takenAt), [report.takenAt], 'queryable: every stored prune record');
  const env = { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey };
  const cli = await run(OPS_BIN, ['audit', report.hostname], env);
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, /^Pruned:\s+pruned 1 image\(s\) \(1 deleted\), [\d.]+ [KM]iB reclaimed$/m);
  t.match(cli.stdout, /^deleted\s+[0-9a-f]{12}\s+bk-prune\/old:1\s/m);
  const cliJson = await run(OPS_BIN, ['--json', 'audit', report.hostname], env);
  t.same((JSON.parse(cliJson.stdout) as { prune: unknown }).prune, report.prune, '--json: the raw record');
  await engine.docker(['rm', '-f', runningName]);
});
