// The test-engine harness itself: a real private dockerd, never the host's default engine.
import { dirname } from 'node:path';
import t from 'tap';
import {
  FILE_LABEL,
  LABEL_ARGS,
  TEST_IMAGE,
  TEST_IMAGE_USER1000,
  checkDockerHost,
  removeLabelledContainers,
  runDocker,
  startPrivateEngine,
  useEngine,
} from './helpers/engine';
import { existsSync } from 'node:fs';

t.test('refuses the host default engine', async (t) => {
  for (const h of ['/var/run/docker.sock', 'unix:///var/run/docker.sock', 'unix:///run/docker.sock', ' unix:///var/run/../run/docker.sock ']) {
    t.throws(() => checkDockerHost(h), /default Docker engine/, h);
  }
  t.throws(() => checkDockerHost('tcp://127.0.0.1:2375'), /unix socket/);
  t.throws(() => checkDockerHost('unix://relative.sock'), /bad docker host/);
  t.same(checkDockerHost('/tmp/bk-x/docker.sock'), { dockerHost: 'unix:///tmp/bk-x/docker.sock', socketPath: '/tmp/bk-x/docker.sock' });
});

t.test('useEngine() refuses BULKHEAD_TEST_DOCKER_HOST=/var/run/docker.sock', async (t) => {
  const saved = process.env['BULKHEAD_TEST_DOCKER_HOST'];
  t.teardown(() => {
    if (saved === undefined) delete process.env['BULKHEAD_TEST_DOCKER_HOST'];
    else process.env['BULKHEAD_TEST_DOCKER_HOST'] = saved;
  });
  process.env['BULKHEAD_TEST_DOCKER_HOST'] = 'unix:///var/run/docker.sock';
  await t.rejects(useEngine(t), /default Docker engine/);
});

t.test('a private engine runs busybox containers', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine));
  t.equal(engine.image, TEST_IMAGE);
  t.match(engine.dockerHost, /^unix:\/\/\//);
  t.equal(engine.dockerHost, `unix://${engine.socketPath}`);

  const hi = await engine.docker(['run', '--rm', '--network', 'none', TEST_IMAGE, 'sh', '-c', 'echo hi']);
  t.equal(hi.code, 0, hi.stderr);
  t.equal(hi.stdout.trim(), 'hi');

  // The data-root is the engine's own (engine.sh layout: DIR/docker.sock, DIR/data).
  const info = await engine.dockerOk(['info', '--format', '{{json .DockerRootDir}}']);
  const root = JSON.parse(info) as string;
  t.not(root, '/var/lib/docker', 'not the host default data-root');
  t.equal(root, `${dirname(engine.socketPath)}/data`, 'data-root beside the private socket');

  const uid = await engine.dockerOk(['run', '--rm', '--network', 'none', TEST_IMAGE_USER1000, 'id', '-u']);
  t.equal(uid, '1000', 'the user1000 image runs as uid 1000');

  const failed = await engine.docker(['run', '--rm', '--network', 'none', TEST_IMAGE, 'sh', '-c', 'echo oops >&2; exit 3']);
  t.equal(failed.code, 3, 'docker() reports the exit code instead of throwing');
  t.match(failed.stderr, /oops/);
  await t.rejects(engine.dockerOk(['inspect', 'no-such-container-bk']), /exited 1/);

  const piped = await engine.docker(['run', '--rm', '-i', '--network', 'none', TEST_IMAGE, 'cat'], { input: 'from stdin' });
  t.equal(piped.stdout, 'from stdin', 'input is piped to the CLI');

  const slow = await runDocker(engine.dockerHost, ['run', '--rm', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE, 'sleep', '30'], { timeoutMs: 300 });
  t.equal(slow.code, 124, 'timeoutMs kills a hung CLI');
});

t.test('labelled containers are cleaned up', async (t) => {
  const engine = await useEngine(t);
  const again = await useEngine();
  t.equal(again.dockerHost, engine.dockerHost, 'one engine per test process');

  for (let i = 0; i < 2; i++) {
    await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE, 'sleep', '300']);
  }
  await engine.dockerOk(['create', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE]);
  const listed = async () => (await engine.dockerOk(['ps', '-aq', '--filter', `label=${FILE_LABEL}`])).split('\n').filter(Boolean);
  t.equal((await listed()).length, 3);
  t.equal(await removeLabelledContainers(engine), 3, 'removes running and created containers');
  t.same(await listed(), []);
  t.equal(await removeLabelledContainers(engine), 0, 'nothing left to remove');
});

t.test('startPrivateEngine() passes dockerd flags and stops cleanly', async (t) => {
  const engine = await startPrivateEngine({ dockerdArgs: ['--label=bulkhead.engine=dedicated'], t });
  t.equal(engine.private, true);
  t.equal(engine.dockerHost, `unix://${engine.dir}/docker.sock`);
  const labels = await engine.dockerOk(['info', '--format', '{{json .Labels}}']);
  t.match(labels, /bulkhead\.engine=dedicated/, 'dockerd got the extra flag');
  const hi = await engine.dockerOk(['run', '--rm', '--network', 'none', engine.image, 'echo', 'hi']);
  t.equal(hi, 'hi');
  await engine.stop();
  await engine.stop(); // idempotent
  t.notOk(existsSync(engine.dir), 'its dir is gone');
  const after = await engine.docker(['version'], { timeoutMs: 10_000 });
  t.not(after.code, 0, 'the engine no longer answers');
});
