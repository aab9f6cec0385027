// The agents every view names containers by (hostname for agent id), loaded once per view and
// refreshed when an agent comes or goes.
import { allAgents, type Agent } from './api';
import { useLiveData } from './live';

export function useAgents(): { agents: Agent[]; byId: Map<string, Agent>; error: Error | undefined; loading: boolean } {
  const r = useLiveData(allAgents, [], (e) => e.type.startsWith('agent.'), 500);
  const agents = r.data ?? [];
  return { agents, byId: new Map(agents.map((a) => [a.id, a])), error: r.error, loading: r.loading };
}

export function hostOf(byId: Map<string, Agent>, agentId: string | null | undefined): string {
  if (!agentId) return '—';
  return byId.get(agentId)?.hostname ?? agentId;
}
