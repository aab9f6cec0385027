// The prune policy inside the periodic host audit: the child reads the
// agent's image memory from its file (and skips the prune when it cannot),
// the prune respects that memory, the scheduler logs one line per image, the
// wire message carries the bounded record, and the agent flushes its memory
// before each run and hands the child the policy.
import t from 'tap';
import type Dockerode from 'dockerode';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { HostAuditScheduler, agentHostAudit } from '../../src/cis/audit-scheduler';
import { childAuditOptions, type HostAuditChildRequest } from '../../src/cis/host-audit-child';
import { hostPrune, type HostAuditResult } from '../../src/cis/host-audit';
import { resolveHostAuditOptions } from '../../src/cis/host-audit-options';
import { toAuditReportMessage } from '../../src/cis/audit-message';
import type { HygieneDocker } from '../../src/hygiene/image-hygiene';
import type { ImagePrunePolicy } from '../../src/hygiene/prune-policy';

const DAY = 86_400_000;
const NOW = Date.parse('2026-11-28T12:00:00Z');
const POLICY: ImagePrunePolicy = { olderThanDays: 30, include: ['app/*'], exclude: [], dangling: undefined, labels: undefined, dryRun: false };

/** Images created 100 days ago, no containers; remove() untags/deletes. */
function fakeEngine(tags: string[], o: { listFails?: boolean; refuse?: string } = {}): HygieneDocker & { removed: string[] } {
  const removed: string[] = [];
  const alive = new Set(tags);
  return {
    removed,
    listImages: async () => {
      if (o.listFails) throw new Error('connect ENOENT /run/docker.sock');
      return [...alive].map((tag) => ({ Id: `sha256:${tag}`, RepoTags: [tag], Created: Math.floor((NOW - 100 * DAY) / 1000), Size: 1000, Labels: null }) as unknown as Dockerode.ImageInfo);
    },
    listContainers: async () => [],
    getContainer: () => ({ inspect: async () => Promise.reject(new Error('none')) }),
    getImage: (name: string) => ({
      inspect: async () => ({ Id: name, Metadata: { LastTagTime: '0001-01-01T00:00:00Z' } }) as unknown as Dockerode.ImageInspectInfo,
      remove: async () => {
        if (name === o.refuse) throw new Error('conflict: unable to delete');
        removed.push(name);
        alive.delete(name);
        return [{ Untagged: name }, { Deleted: `sha256:${name}` }];
      },
    }),
  };
}

t.test('hostPrune: in scope and idle → removed; a remembered use keeps an image; engine errors are reported, not thrown', async (t) => {
  const now = () => new Date(NOW);
  const engine = fakeEngine(['app/old:1', 'app/remembered:1', 'other/old:1']);
  const r = await hostPrune(engine, POLICY, new Map([['sha256:app/remembered:1', NOW - 2 * DAY]]), now);
  if (!('removed' in r)) throw new Error(r.error);
  t.same(r.removed.map((x) => [x.tags, x.deleted, x.reason]), [[['app/old:1'], true, 'never used by a container, idle 100.0 days']]);
  t.same(engine.removed, ['app/old:1'], 'the remembered image stays; out of scope stays');
  t.equal(r.reclaimedBytes, 1000);
  const forgetful = fakeEngine(['app/remembered:1']);
  const r2 = await hostPrune(forgetful, POLICY, undefined, now);
  t.same(forgetful.removed, ['app/remembered:1'], 'without the memory it would have gone — which is why the agent keeps one');
  t.ok('removed' in r2);
  t.same(await hostPrune(fakeEngine([], { listFails: true }), POLICY, undefined, now), { error: 'connect ENOENT /run/docker.sock' });
});

t.test('childAuditOptions: the memory read from its file; unreadable → no prune, and why', async (t) => {
  const dir = t.testdir();
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ version: 1, writtenAt: '', images: { 'sha256:a': NOW } }));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, 'not json');
  const req = (hygiene: HostAuditChildRequest['options']['hygiene'], prune: ImagePrunePolicy | undefined = POLICY): HostAuditChildRequest => ({
    dockerHost: 'unix:///x.sock', options: { hostRoot: '/', ...(hygiene !== undefined ? { hygiene } : {}), ...(prune ? { prune } : {}) },
  });
  const ok = childAuditOptions(req({ unusedDays: 7, lastUsedPath: good }));
  t.same(ok.options.hygiene, { unusedDays: 7, lastUsed: new Map([['sha256:a', NOW]]) });
  t.same(ok.options.prune, POLICY);
  t.equal(ok.memoryError, undefined);
  const missing = childAuditOptions(req({ unusedDays: 7, lastUsedPath: join(dir, 'none.json') }));
  t.same(missing.options.hygiene, { unusedDays: 7, lastUsed: new Map() }, 'no file yet: an empty memory');
  const broken = childAuditOptions(req({ unusedDays: 7, lastUsedPath: bad }));
  t.match(broken.memoryError, /is not JSON/);
  t.equal(broken.options.prune, undefined, 'no prune without the memory');
  t.same(broken.options.hygiene, { unusedDays: 7 }, 'the hygiene summary still runs');
  t.same(childAuditOptions(req({ unusedDays: 3 })).options.hygiene, { unusedDays: 3 }, 'no memory path: as before');
  t.equal(childAuditOptions(req(false)).options.hygiene, false);
  t.notOk('hygiene' in childAuditOptions(req(undefined)).options);
});

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  const raw: string[] = [];
  return {
    logger: createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void raw.push(s) } }),
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const result = (prune: HostAuditResult['prune']): HostAuditResult => ({
  cis: { dockerbenchsecurity: '1.6.0', start: 0, tests: [], checks: 0, score: 0, end: 0, benchmark: '', generator: '', summary: { pass: 1, warn: 0, info: 0, note: 0, percent: 100 } },
  lockdown: [],
  fixes: [],
  ...(prune !== undefined ? { prune } : {}),
  message: { takenAtMs: 1, cisJson: '{}', lockdownJson: '[]', score: 100, fixesJson: '[]', hygieneJson: '', pruneJson: '' },
});

t.test('scheduler: one log line per pruned image, failures at error; a prune that did not run is logged', async (t) => {
  const runs: Array<HostAuditResult['prune']> = [
    {
      at: NOW, dryRun: false, olderThanDays: 30, skipped: [], reclaimedBytes: 1000,
      removed: [
        { id: 'sha256:a', tags: ['app/a:1'], sizeBytes: 1000, reason: 'never used by a container, idle 40.0 days', untagged: ['app/a:1'], deleted: true, deletedIds: ['sha256:a'] },
        { id: 'sha256:b', tags: ['app/b:1'], sizeBytes: 5, reason: 'r', untagged: ['app/b:1'], deleted: false, deletedIds: [], error: 'conflict' },
      ],
    },
    { at: NOW, dryRun: true, olderThanDays: 30, skipped: [], reclaimedBytes: 0, removed: [{ id: 'sha256:c', tags: ['app/c:1'], sizeBytes: 7, reason: 'r', untagged: ['app/c:1'], deleted: true, deletedIds: [] }] },
    { error: 'not run: the image last-use memory /s/image-last-used.json is not JSON' },
  ];
  for (const prune of runs) {
    const { logger, lines } = capture();
    const s = new HostAuditScheduler({ intervalMs: 60_000, logger, onReport: () => undefined, run: async () => result(prune) });
    await s.runNow();
    await s.stop();
    const log = lines();
    if (prune && 'removed' in prune && !prune.dryRun) {
      t.match(log.find((l) => l['msg'] === 'image pruned'), { level: 30, image: 'sha256:a', tags: ['app/a:1'], untagged: ['app/a:1'], deleted: true, sizeBytes: 1000, reason: /never used/, dryRun: false });
      t.match(log.find((l) => l['msg'] === 'image prune failed'), { level: 50, image: 'sha256:b', error: 'conflict' });
      t.match(log.find((l) => l['msg'] === 'host audit done'), { prune: { removed: 1, failed: 1, reclaimedBytes: 1000, dryRun: false } });
    } else if (prune && 'removed' in prune) {
      t.match(log.find((l) => l['msg'] === 'image prune dry run: would remove'), { level: 30, image: 'sha256:c', dryRun: true });
      t.notOk(log.some((l) => l['msg'] === 'image pruned'), 'a dry run removes nothing');
    } else {
      t.match(log.find((l) => l['msg'] === 'image prune did not run'), { level: 50, err: /not JSON/ });
    }
  }
});

t.test('the wire message carries the record; none when the policy is off', async (t) => {
  const cis = result(undefined).cis;
  t.equal(toAuditReportMessage({ cis, lockdown: [], takenAtMs: 1 }).pruneJson, '');
  t.same(JSON.parse(toAuditReportMessage({ cis, lockdown: [], prune: { error: 'x' }, takenAtMs: 1 }).pruneJson!), { error: 'x' });
});

t.test('agentHostAudit: flushes the memory before each run; the child gets its path and the policy', async (t) => {
  const dir = t.testdir();
  const echo = join(dir, 'echo.js');
  writeFileSync(echo, 'process.on("message", (m) => process.send({ ok: true, result: { echo: m } }, () => process.exit(0)));');
  let flushed = 0;
  const audit = resolveHostAuditOptions({ imagePrune: true, imagePruneInclude: ['app/*'], imageUnusedDays: '9' });
  const a = agentHostAudit(audit, 'unix:///nonexistent/bk.sock', { lastUsed: { path: '/state/image-last-used.json', flush: () => void flushed++ }, entry: echo, timeoutMs: 30_000 });
  const r = (await a.run()) as unknown as { echo: HostAuditChildRequest };
  t.equal(flushed, 1, 'flushed before the child starts');
  t.same(r.echo.options.hygiene, { unusedDays: 9, lastUsedPath: '/state/image-last-used.json' });
  t.strictSame(r.echo.options.prune, { olderThanDays: 9, include: ['app/*'], exclude: [], dryRun: false }, 'JSON over IPC: unset scope stays unset');
  const off = agentHostAudit(resolveHostAuditOptions(), 'unix:///nonexistent/bk.sock', { entry: echo });
  const r2 = (await off.run()) as unknown as { echo: HostAuditChildRequest };
  t.same(r2.echo.options.hygiene, { unusedDays: 30 }, 'no memory given: no path');
  t.notOk('prune' in r2.echo.options, 'policy off: no prune in the request');
});
