// Owns one memory saving: keeping `ssh2` out of the agent.
//
// docker-modem (under dockerode) requires its `./ssh` helper — and with it
// `ssh2` — at load time, for `ssh://` docker hosts. ssh2 instantiates a
// WebAssembly poly1305 module with a 16 MB linear memory and costs the agent
// about 14 MB RSS (measured: `node -e "require('ssh2')"` 41 → 56 MB). The
// agent never talks ssh to the engine (parseDockerHost accepts unix, tcp,
// http and https only), so before dockerode loads we put a stand-in for that
// one helper into the module cache. Hand-written because no option of
// dockerode or docker-modem skips the require; if docker-modem ever moves or
// renames the file, resolution fails and we simply load the real one.
import Module, { createRequire } from 'node:module';
import { BulkheadError } from '@bulkhead/shared';

/** Installs the stand-in once; returns whether it is in place. */
export function keepSsh2Unloaded(): boolean {
  let sshPath: string;
  try {
    const fromDockerode = createRequire(require.resolve('dockerode'));
    const fromModem = createRequire(fromDockerode.resolve('docker-modem'));
    sshPath = fromModem.resolve('./ssh');
  } catch {
    return false;
  }
  const cache = require.cache;
  if (cache[sshPath] !== undefined) return true;
  const stub = new Module(sshPath);
  stub.filename = sshPath;
  stub.loaded = true;
  stub.exports = function sshUnsupported(): never {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'ssh:// docker hosts are not supported by the agent (use unix://, tcp:// or https://)');
  };
  cache[sshPath] = stub;
  return true;
}

keepSsh2Unloaded();
