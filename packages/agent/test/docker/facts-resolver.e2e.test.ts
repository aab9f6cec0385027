// A `local` volume whose `device` is a RELATIVE path binds the host path
// relative to dockerd's working directory: shown on a REAL private dockerd
// (no authorization plugin), and localVolumeHostPath must name the same
// directory a container then sees. Only this file's containers and volumes
// are touched: the engine may be shared with other test files.
import t from 'tap';
import Docker from 'dockerode';
import { existsSync, mkdtempSync, readlinkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { evaluate, parsePolicy } from '@bulkhead/shared';
import { useEngine, LABEL_ARGS, removeLabelledContainers } from '../../../../test/helpers/engine';
import { toContainerFacts } from '../../src/docker/container-facts';
import { FactsResolver, localVolumeHostPath } from '../../src/docker/facts-resolver';

const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;

t.test('a relative volume device binds a path relative to dockerd\'s working directory', async (t) => {
  const engine = await useEngine(t);
  const docker = new Docker({ socketPath: engine.socketPath });
  t.teardown(() => removeLabelledContainers(engine));

  // scripts/engine.sh keeps dockerd.pid beside docker.sock; an engine
  // started otherwise is taken to run in "/", as under systemd.
  let cwd = '/';
  try {
    const pid = readFileSync(join(dirname(engine.socketPath), 'dockerd.pid'), 'utf8').trim();
    cwd = readlinkSync(`/proc/${pid}/cwd`);
    t.comment(`dockerd ${pid} runs in ${cwd}`);
  } catch (err) {
    t.comment(`dockerd's working directory unknown (${String(err)}); assuming /`);
  }

  const dir = mkdtempSync('/tmp/bk-reldev-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'marker'), `marker-${uniq}\n`);
  const rel = posix.relative(cwd, dir);
  t.notOk(rel.startsWith('/'), `the device is relative: ${rel}`);
  // ".." stops at "/", for the kernel and for posix.resolve alike.
  const climbing = `${'../'.repeat(12)}${dir.slice(1)}`;

  const volumes: string[] = [];
  t.teardown(async () => {
    for (const v of volumes) await engine.docker(['volume', 'rm', '-f', v]);
  });

  await t.test('docker volume create --opt device=<relative>', async (t) => {
    const name = `bk-reldev-${uniq}`;
    volumes.push(name);
    await engine.dockerOk(['volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${rel}`, name]);
    const out = await engine.dockerOk(['run', '--rm', '--network', 'none', ...LABEL_ARGS, '-v', `${name}:/v`, engine.image, 'sh', '-c', 'cat /v/marker; touch /v/from-container']);
    t.equal(out, `marker-${uniq}`, 'the container sees the directory');
    t.ok(existsSync(join(dir, 'from-container')), 'and writes land in it on the host');

    const info = await docker.getVolume(name).inspect();
    t.equal(localVolumeHostPath(info.Driver, info.Options ?? {}, cwd), dir, 'resolved against dockerd\'s working directory');
    if (cwd === '/') t.equal(localVolumeHostPath(info.Driver, info.Options ?? {}), dir, 'the default working directory "/" is this engine\'s');
  });

  await t.test('--mount volume-opt=device=<relative with ..>', async (t) => {
    const name = `bk-reldev2-${uniq}`;
    volumes.push(name);
    const out = await engine.dockerOk([
      'run', '--rm', '--network', 'none', ...LABEL_ARGS,
      '--mount', `type=volume,src=${name},dst=/v,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=${climbing}`,
      engine.image, 'cat', '/v/marker',
    ]);
    t.equal(out, `marker-${uniq}`, 'dockerd climbed to / and down to the directory');
    const info = await docker.getVolume(name).inspect();
    t.equal(info.Options?.['device'], climbing, 'dockerd keeps the device as given');
    t.equal(localVolumeHostPath(info.Driver, info.Options ?? {}, cwd), dir);
  });

  await t.test('the resolver reports that host path for a container mounting the volume, and the host-path rules judge it', async (t) => {
    if (cwd !== '/') {
      // The resolver assumes dockerd runs in "/" (as under systemd); this engine does not.
      t.comment(`skipped: dockerd runs in ${cwd}, not /`);
      return;
    }
    const name = volumes[0]!;
    const id = await engine.dockerOk(['create', '--network', 'none', ...LABEL_ARGS, '-v', `${name}:/v`, engine.image, 'true']);
    const facts = toContainerFacts(await docker.getContainer(id).inspect());
    const { facts: resolved, failures } = await new FactsResolver({ docker }).resolve(facts);
    t.same(failures, []);
    t.equal(resolved.mounts.find((m) => m.destination === '/v')?.hostPath, dir);
    const policy = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: t }
spec:
  rules:
    - id: mounts
      description: the test directory counts as sensitive
      severity: high
      mode: enforce
      action: { type: kill }
      check: { type: sensitive-mounts, addPaths: ['${dir}'] }
`);
    const f = evaluate(policy, { container: resolved }, { now: new Date() });
    t.match(f[0]?.evidence[0]?.detail, new RegExp(`volume ${name} \\(host path ${dir}\\)`), 'flagged through the volume');
  });
});
