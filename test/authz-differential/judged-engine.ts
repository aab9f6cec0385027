// A private dockerd whose authorization plugin is Bulkhead's own decider, for the
// attacker tests of this folder: the real dockerd judges what it acts on, the
// decider judges what it allows. One setup, shared, so each test says only what
// it tries.
import type { Test } from 'tap';
import type { Logger } from '@bulkhead/shared';
import { AuthzDecider, type AuthzDecisionReport } from '../../packages/agent/src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../packages/agent/src/authz/plugin-server';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { startPrivateEngine, type EngineVersion, type PrivateEngine } from '../helpers/engine';

export interface JudgedEngine {
  engine: PrivateEngine;
  /** The plugin's name as dockerd knows it (its denials say "authorization denied by plugin <name>"). */
  pluginName: string;
  decider: AuthzDecider;
  /** The plugin server (its `stats`, e.g. failOpen). */
  plugin: AuthzPlugin;
}

/**
 * Starts the decider (policy read through `policy()` at each decision, so a test switches
 * monitor/enforce by changing what it returns), its plugin on a socket named `<prefix>-…`
 * in dockerd's plugin folder, and a private engine of `version` using it. Torn down with `t`.
 */
export interface JudgedEngineOptions {
  /** Run the engine in this network namespace (startPrivateEngine's `netns`: swarm mode). */
  netns?: string;
  /** The decider's reports (what the agent forwards to the controller). */
  onDecision?: (report: AuthzDecisionReport) => void;
}

export async function startJudgedEngine(t: Test, version: EngineVersion, prefix: string, policy: () => PolicyState, logger: Logger, opts: JudgedEngineOptions = {}): Promise<JudgedEngine> {
  let docker: ReturnType<typeof createDockerClient> | undefined;
  const decider = new AuthzDecider({
    policy,
    containers: { get: () => undefined, inventory: () => [] },
    // As the agent's (the whole dockerode client): volumes and networks are looked up too.
    docker: {
      getImage: (ref) => docker!.getImage(ref), getContainer: (id) => docker!.getContainer(id), getExec: (id: string) => docker!.getExec(id),
      getVolume: (name) => docker!.getVolume(name), getNetwork: (id) => docker!.getNetwork(id),
    },
    logger,
    ...(opts.onDecision ? { onDecision: opts.onDecision } : {}),
  });
  const pluginName = `${prefix}-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const plugin = await AuthzPlugin.start({ socketPath: `${DOCKER_PLUGIN_DIR}/${pluginName}.sock`, evaluate: (req) => decider.decide(req), onResponse: (res) => decider.responded(res), logger, failClosed: () => decider.enforcing() });
  t.teardown(() => plugin.stop());
  const engine = await startPrivateEngine({ version, dockerdArgs: [`--authorization-plugin=${pluginName}`], ...(opts.netns ? { netns: opts.netns } : {}), t });
  docker = createDockerClient({ dockerHost: engine.dockerHost });
  return { engine, pluginName, decider, plugin };
}
