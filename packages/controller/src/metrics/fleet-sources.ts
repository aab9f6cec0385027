// Owns where the controller's scrape-time fleet gauges come from: live
// streams from the agent link, agents by status and containers by state
// from the store (one GROUP BY where the store offers it).
import type { Store } from '../store/store';
import type { FleetSources } from './controller-metrics';

export function fleetSources(store: Store, link: { connectedAgents(): string[] }): FleetSources {
  return {
    connectedAgents: () => link.connectedAgents().length,
    agentsByStatus: async () => countBy(await store.listAgents(), (a) => a.status),
    containersByState: async () =>
      store.countContainersByState ? store.countContainersByState() : countBy(await store.listContainers({}), (c) => c.state),
  };
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}
