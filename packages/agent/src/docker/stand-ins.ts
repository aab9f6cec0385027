// Owns which of dockerode's dependencies the agent keeps unloaded (the
// technique: standIn in @bulkhead/shared). Imported by docker/client.ts before
// dockerode loads.
//
// - docker-modem's `./ssh` helper, and with it `ssh2`, for `ssh://` docker
//   hosts: ssh2 instantiates a WebAssembly poly1305 module with a 16 MB linear
//   memory and costs about 14 MB RSS (measured: `node -e "require('ssh2')"`
//   41 → 56 MB). The agent never talks ssh to the engine (parseDockerHost
//   accepts unix, tcp, http and https only).
// - `tar-fs` (with tar-stream, readable-stream, bl, pump, …), which dockerode
//   requires at load to pack build contexts for `docker build`; the agent
//   never builds images (measured: `require('tar-fs')` +0.58 MB of V8 heap).
import { BulkheadError, standIn, unavailableModule } from '@bulkhead/shared';

/** Installs the stand-ins once; returns whether each is in place. */
export function keepUnusedDockerModulesUnloaded(): { ssh: boolean; tarFs: boolean } {
  return {
    ssh: standIn(['dockerode', 'docker-modem', './ssh'], function sshUnsupported(): never {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'ssh:// docker hosts are not supported by the agent (use unix://, tcp:// or https://)');
    }),
    tarFs: standIn(['dockerode', 'tar-fs'], unavailableModule('tar-fs', 'the agent never builds images')),
  };
}

keepUnusedDockerModulesUnloaded();
