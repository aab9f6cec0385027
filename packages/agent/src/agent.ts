// Owns the running agent: the Docker watcher feeding the controller link.
import type { ContainerDelta, ContainerFacts, HostFacts, Logger } from '@bulkhead/shared';
import { createDockerClient, describeDockerHost } from './docker/client';
import { collectHostFacts } from './docker/host-facts';
import { ContainerWatcher } from './docker/watcher';
import { ControllerLink, type LinkInventory } from './link/controller-link';
import { loadCredentials } from './state/agent-state';
import type { AgentOptions } from './agent-options';

/** Host facts change rarely; re-read them at most this often (on reconnect). */
const HOST_FACTS_TTL_MS = 5 * 60_000;

export class Agent {
  private constructor(
    readonly watcher: ContainerWatcher,
    readonly link: ControllerLink,
    private readonly logger: Logger,
  ) {}

  static async start(opts: AgentOptions, logger: Logger): Promise<Agent> {
    const credentials = loadCredentials(opts.stateDir);
    const docker = createDockerClient(opts.dockerHost ? { dockerHost: opts.dockerHost } : {});
    logger.info({ agentId: credentials.identity.agentId, docker: describeDockerHost(opts.dockerHost), controller: opts.controller ?? credentials.identity.controller }, 'agent starting');
    const watcher = await ContainerWatcher.start({ docker, logger: logger.child({ component: 'watcher' }), reconcileIntervalMs: opts.reconcileIntervalMs });

    let cached: { at: number; facts: HostFacts } | undefined;
    const hostFacts = async (): Promise<HostFacts> => {
      if (!cached || Date.now() - cached.at > HOST_FACTS_TTL_MS) {
        cached = { at: Date.now(), facts: await collectHostFacts(docker, { labels: opts.hostLabels }) };
      }
      return cached.facts;
    };
    const link = new ControllerLink({
      credentials,
      inventory: watcherInventory(watcher),
      hostFacts,
      logger: logger.child({ component: 'link' }),
      ...(opts.controller ? { controller: opts.controller } : {}),
    });
    link.start();
    return new Agent(watcher, link, logger);
  }

  async stop(): Promise<void> {
    this.link.stop();
    await this.watcher.stop();
    this.logger.info('agent stopped');
  }
}

/** Adapts the watcher's events to the deltas the link sends. */
export function watcherInventory(watcher: ContainerWatcher): LinkInventory {
  return {
    inventory: () => watcher.inventory(),
    subscribe(listener: (d: ContainerDelta) => void) {
      const onUpsert = (facts: ContainerFacts, eventAction: string, eventTimeMs: number, changed: boolean): void => {
        // Replayed or duplicate events that changed nothing are not worth a message.
        if (changed) listener({ kind: 'UPSERT', containerId: facts.id ?? '', container: facts, eventAction, eventTimeMs });
      };
      const onRemove = (id: string, eventAction: string, eventTimeMs: number): void =>
        listener({ kind: 'REMOVE', containerId: id, eventAction, eventTimeMs });
      watcher.on('upsert', onUpsert);
      watcher.on('remove', onRemove);
      return () => {
        watcher.off('upsert', onUpsert);
        watcher.off('remove', onRemove);
      };
    },
  };
}
