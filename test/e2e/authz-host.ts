// A simulated host for end-to-end tests of the authorization door: a private dockerd whose
// authorization plugin is a real agent process enrolled at a real controller.
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ENGINE_SCRIPT, runDocker } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import { enrollAgent, type ControllerHandle } from './stack';

export function engineScript(cmd: 'start' | 'stop', dir: string, dockerdArgs = ''): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('bash', [ENGINE_SCRIPT, cmd, dir], { stdio: 'ignore', env: { ...process.env, BULKHEAD_ENGINE_DOCKERD_ARGS: dockerdArgs } });
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

/** A host: a private dockerd whose authorization plugin is a real agent enrolled at `ctl`. */
export async function authzHost(t: Test, ctl: ControllerHandle, root: string, name: string, agentArgs: string[] = []) {
  const pluginName = `bk-tags-${process.pid}-${randomBytes(3).toString('hex')}`;
  const pluginSocket = `/run/docker/plugins/${pluginName}.sock`;
  const engineDir = mkdtempSync('/tmp/bkt-');
  const dockerHost = `unix://${engineDir}/docker.sock`;
  const agent = await enrollAgent(ctl, root, name, dockerHost, ['--authz-socket', pluginSocket, ...agentArgs]);
  agent.start();
  await waitFor(`${name}: plugin socket`, async () => existsSync(pluginSocket), 20_000);
  t.equal(await engineScript('start', engineDir, `--authorization-plugin=${pluginName}`), 0, `${name}: engine with the plugin started`);
  t.teardown(async () => {
    await agent.stop();
    rmSync(pluginSocket, { force: true });
  });
  t.teardown(async () => {
    await engineScript('stop', engineDir);
    rmSync(engineDir, { recursive: true, force: true });
  });
  return { agent, dockerHost, docker: (args: string[]) => runDocker(dockerHost, args) };
}
