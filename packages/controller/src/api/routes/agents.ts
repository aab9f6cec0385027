// Owns /v1/agents: the enrolled hosts and what they last reported.
import type { FastifyInstance } from 'fastify';
import { BulkheadError } from '@bulkhead/shared';
import type { Store } from '../../store/store';
import { AgentListSchema, AgentParamsSchema, AgentSchema, toAgentDto, type AgentDto, type AgentListDto, type AgentParams } from '../dto';

export function registerAgentRoutes(app: FastifyInstance, opts: { store: Store }): void {
  const { store } = opts;

  app.get('/agents', { schema: { response: { 200: AgentListSchema } } }, async (): Promise<AgentListDto> => {
    const agents = await store.listAgents();
    return { items: agents.map(toAgentDto) };
  });

  app.get<{ Params: AgentParams }>(
    '/agents/:id',
    { schema: { params: AgentParamsSchema, response: { 200: AgentSchema } } },
    async (req): Promise<AgentDto> => {
      const agent = await store.getAgent(req.params.id);
      if (!agent) throw new BulkheadError('BK_ERR_NOT_FOUND', `agent "${req.params.id}" not found`);
      return toAgentDto(agent);
    },
  );
}
