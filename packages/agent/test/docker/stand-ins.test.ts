import t from 'tap';
import { createRequire } from 'node:module';
import { isBulkheadError } from '@bulkhead/shared';
import { createDockerClient } from '../../src/docker/client';
import { keepUnusedDockerModulesUnloaded } from '../../src/docker/stand-ins';

// The agent's dockerode must not drag ssh2 (and its 16 MB WebAssembly memory) or tar-fs in.
t.test('loading the docker client leaves ssh2 and tar-fs unloaded', async (t) => {
  createDockerClient({ dockerHost: 'unix:///tmp/bk-nonexistent.sock' });
  for (const pkg of ['ssh2', 'tar-stream', 'bl']) {
    t.same(Object.keys(require.cache).filter((k) => k.includes(`/node_modules/${pkg}/`)), [], `no module of ${pkg} in the require cache`);
  }
  t.equal(Object.keys(require.cache).filter((k) => k.includes('/node_modules/tar-fs/')).length, 1, 'one cache entry for tar-fs: the stand-in');
  t.same(keepUnusedDockerModulesUnloaded(), { ssh: true, tarFs: true }, 'the stand-ins are in place (idempotent)');
});

const fromDockerode = createRequire(require.resolve('dockerode'));

t.test('the ssh stand-in refuses ssh with a clear error instead of loading ssh2', async (t) => {
  const fromModem = createRequire(fromDockerode.resolve('docker-modem'));
  const ssh = fromModem('./ssh') as (opt: unknown) => unknown;
  let thrown: unknown;
  try {
    ssh({});
  } catch (err) {
    thrown = err;
  }
  t.ok(isBulkheadError(thrown), 'a BulkheadError');
  if (isBulkheadError(thrown)) {
    t.equal(thrown.code, 'BK_ERR_CONFIG_INVALID');
    t.match(thrown.message, /ssh:\/\/ docker hosts are not supported/);
  }
});

t.test('the tar-fs stand-in names itself when used', async (t) => {
  const tar = fromDockerode('tar-fs') as { pack: unknown };
  t.throws(() => tar.pack, /tar-fs is not loaded in this process \(the agent never builds images\); "pack" was used/);
});
