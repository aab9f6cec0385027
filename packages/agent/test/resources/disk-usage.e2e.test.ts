// DiskUsageReader against containers of a REAL private dockerd: the overlay2
// upper dir and LogPath from inspect, a 60 MiB file and stdout logs seen within
// two reads (json-file and `local` drivers), a file growing in place seen on
// the next read, and the data root's filesystem naming the container that grew it.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { useEngine, startPrivateEngine, LABEL_ARGS, removeLabelledContainers, type Engine, type EngineVersion } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { DiskUsageReader } from '../../src/resources/disk-usage';
import { DiskUsageHistory, readDataRootUsage } from '../../src/resources/data-root-usage';
import type { ResourceTarget } from '../../src/resources/types';

const MiB = 1024 * 1024;

function du(path: string): number {
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split('\t')[0]);
}

async function waitForLog(engine: Engine, id: string, marker: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const r = await engine.docker(['logs', id]);
    if (r.stdout.includes(marker)) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`container ${id} never logged ${marker}`);
}

// Both engine versions the tests know (Debian 12's 20.10, the shared test engine; trixie's 26.1):
// where dockerd keeps upper dirs and log files is what this reads.
for (const version of ['20.10', '26.1'] as EngineVersion[]) t.test(`writable layer and logs of real containers (Docker ${version})`, async (t) => {
  const engine = version === '20.10' ? await useEngine(t) : await startPrivateEngine({ version, t });
  t.teardown(() => removeLabelledContainers(engine));
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const script = (count: number) =>
    `mkdir -p /var/lib/app && dd if=/dev/zero of=/big bs=1M count=${count} conv=fsync 2>/dev/null && dd if=/dev/zero of=/var/lib/app/db bs=1M count=1 conv=fsync 2>/dev/null; `
    + 'i=0; while [ $i -lt 300 ]; do echo "log line $i: some text to fill the log file"; i=$((i+1)); done; echo READY; sleep 300';
  const jsonId = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, engine.image, 'sh', '-c', script(60)]);
  const localId = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--log-driver', 'local', engine.image, 'sh', '-c', script(60)]);
  const rotId = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--log-opt', 'max-size=2k', '--log-opt', 'max-file=4', '--log-opt', 'compress=true', engine.image, 'sh', '-c', script(1)]);
  const quietId = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, engine.image, 'sleep', '300']);
  await Promise.all([jsonId, localId, rotId].map((id) => waitForLog(engine, id, 'READY')));

  const targets: ResourceTarget[] = await Promise.all([jsonId, localId, quietId, rotId].map(async (id) => {
    const i = await docker.getContainer(id).inspect();
    return {
      id: i.Id, pid: i.State.Pid, graphDriver: i.GraphDriver.Name, upperDir: (i.GraphDriver.Data as Record<string, string> | undefined)?.['UpperDir'],
      logPath: i.LogPath, logDriver: i.HostConfig.LogConfig?.Type,
    };
  }));
  const [json, local, quiet, rot] = targets as [ResourceTarget, ResourceTarget, ResourceTarget, ResourceTarget];
  t.equal(json.graphDriver, 'overlay2', 'the test engine runs overlay2');
  t.ok(json.upperDir && json.logPath, 'inspect gives UpperDir and LogPath');
  t.equal(local.logPath, '', '`local` driver: no LogPath (found under the data root instead)');
  t.equal(local.logDriver, 'local');

  const reader = new DiskUsageReader();
  t.teardown(() => reader.close());
  const first = await reader.read(targets, Date.now());
  const second = await reader.read(targets, Date.now());
  for (const [name, tg] of [['json-file', json], ['local', local]] as const) {
    const u = first.get(tg.id)!.writableBytes !== null ? first.get(tg.id)! : second.get(tg.id)!;
    t.ok(u.writableBytes! >= 60 * MiB && u.writableBytes! < 70 * MiB, `${name}: writable ${(u.writableBytes! / MiB).toFixed(1)} MiB ≥ 60 MiB within two reads`);
    t.ok(u.logBytes! > 0, `${name}: log ${u.logBytes} bytes`);
    t.equal(second.get(tg.id)!.writableBytes, du(tg.upperDir!), `${name}: as du of the upper dir`);
  }
  t.equal(second.get(json.id)!.logBytes, du(json.logPath!), 'json-file log as du');
  const q = second.get(quiet.id)!;
  t.ok(q.writableBytes !== null && q.writableBytes < 1 * MiB, `the quiet container's layer is small (${q.writableBytes})`);
  t.ok(q.logBytes !== null && q.logBytes === 0, 'and its log empty');

  // Rotated and compressed json-file logs (compression runs after rotation: read until stable).
  const rotFiles = () => execFileSync('sh', ['-c', `ls ${rot.logPath}*`], { encoding: 'utf8' }).trim().split('\n');
  let rotBytes = second.get(rot.id)!.logBytes;
  for (let i = 0; i < 10; i++) {
    const expected = rotFiles().reduce((sum, f) => sum + du(f), 0);
    if (rotBytes === expected) break;
    await new Promise((res) => setTimeout(res, 300));
    rotBytes = (await reader.read(targets, Date.now())).get(rot.id)!.logBytes;
  }
  t.ok(rotFiles().some((f) => f.endsWith('.gz')), `dockerd rotated and compressed (${rotFiles().map((f) => f.slice(f.lastIndexOf('/') + 1)).join(' ')})`);
  t.equal(rotBytes, rotFiles().reduce((sum, f) => sum + du(f), 0), 'current + rotated + compressed log files, as du');

  // Growth in place: /var/lib/app/db (a directory already walked, whose mtime does not move).
  const history = new DiskUsageHistory({ windowMs: 60_000 });
  history.record(Date.now(), second);
  const before = second.get(json.id)!.writableBytes!;
  await engine.dockerOk(['exec', json.id, 'sh', '-c', 'dd if=/dev/zero bs=1M count=80 2>/dev/null >> /var/lib/app/db']);
  const third = await reader.read(targets, Date.now());
  const grown = third.get(json.id)!.writableBytes! - before;
  t.ok(grown >= 80 * MiB, `a file growing by 80 MiB in place is seen on the next read (+${(grown / MiB).toFixed(1)} MiB)`);
  history.record(Date.now() + 1, third);

  const dataRoot = (await docker.info() as { DockerRootDir: string }).DockerRootDir;
  const [fs] = await readDataRootUsage({ dataRoot, history, topN: 3, now: Date.now() + 1 });
  t.same(fs!.roles, ['data-root', 'logs']);
  t.equal(fs!.topContainers[0]?.id, json.id, 'the writer is the container that grew the data root most');
  t.ok(fs!.topContainers[0]!.grownBytes >= 80 * MiB);

  // Gone: removed containers read as nulls, without throwing.
  await engine.dockerOk(['rm', '-f', json.id, local.id]);
  const after = await reader.read(targets, Date.now());
  t.same(after.get(json.id), { writableBytes: null, logBytes: null }, 'json-file container removed: nulls');
  t.same(after.get(local.id), { writableBytes: null, logBytes: null }, 'local container removed: nulls');
  reader.forget(json.id);
  reader.forget(local.id);
  reader.forget(rot.id);
  t.equal(reader.size, 1, 'only the quiet container is still known');
});
