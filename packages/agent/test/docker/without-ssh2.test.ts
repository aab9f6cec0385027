import t from 'tap';
import { createRequire } from 'node:module';
import { isBulkheadError } from '@bulkhead/shared';
import { createDockerClient } from '../../src/docker/client';
import { keepSsh2Unloaded } from '../../src/docker/without-ssh2';

// The agent's dockerode must not drag ssh2 (and its 16 MB WebAssembly memory) in.
t.test('loading the docker client leaves ssh2 unloaded', async (t) => {
  createDockerClient({ dockerHost: 'unix:///tmp/bk-nonexistent.sock' });
  const loaded = Object.keys(require.cache).filter((k) => /[\\/]node_modules[\\/]ssh2[\\/]/.test(k));
  t.same(loaded, [], 'no module of ssh2 in the require cache');
  t.equal(keepSsh2Unloaded(), true, 'the stand-in is in place (idempotent)');
});

t.test('the stand-in refuses ssh with a clear error instead of loading ssh2', async (t) => {
  const fromDockerode = createRequire(require.resolve('dockerode'));
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
