// Owns /v1/agents: the enrolled hosts and what they last reported, and
// revoking one (admin; its live stream is closed at once and its
// certificate refused at every later hello).
import type { FastifyInstance } from 'fastify';
import { BulkheadError } from '@bulkhead/shared';
import type { AgentPosition, Store } from '../../store/store';
import {
  AgentListQuerySchema, AgentListSchema, AgentParamsSchema, AgentSchema, toAgentDto, type AgentDto, type AgentListDto, type AgentListQuery, type AgentParams,
} from '../dto';
import { decodeCursor, encodeCursor } from '../cursor';
import { strictInput } from './strict-input';

/** What revocation needs of the agent link (grpc/agent-link-service.ts). */
export interface AgentRevoker {
  /** Closes the agent's live stream, if any, with BK_ERR_AGENT_REVOKED; true when one was open. */
  revoke(agentId: string): boolean;
}

export function registerAgentRoutes(app: FastifyInstance, opts: { store: Store; link?: AgentRevoker; now?: () => Date }): void {
  const { store } = opts;
  const now = opts.now ?? (() => new Date());

  // Agents are fleet-level: project-scoped credentials may read them too.
  // Paged by cursor (hostname, then id), so a page costs the same at 20 agents or 20,000.
  app.get<{ Querystring: AgentListQuery }>(
    '/agents',
    { config: { role: 'viewer' }, preValidation: strictInput({ querystring: AgentListQuerySchema }), schema: { querystring: AgentListQuerySchema, response: { 200: AgentListSchema } } },
    async (req): Promise<AgentListDto> => {
      const q = req.query;
      let after: AgentPosition | undefined;
      if (q.cursor !== undefined) {
        const [hostname, id] = decodeCursor('agents', q.cursor, ['string', 'string']) as string[];
        after = { hostname: hostname!, id: id! };
      }
      const rows = await store.listAgents({ limit: q.limit + 1, after });
      const page = rows.slice(0, q.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toAgentDto),
        limit: q.limit,
        nextCursor: rows.length > q.limit && last ? encodeCursor('agents', [last.hostname, last.id]) : null,
      };
    },
  );

  app.get<{ Params: AgentParams }>(
    '/agents/:id',
    { config: { role: 'viewer' }, schema: { params: AgentParamsSchema, response: { 200: AgentSchema } } },
    async (req): Promise<AgentDto> => {
      const agent = await store.getAgent(req.params.id);
      if (!agent) throw new BulkheadError('BK_ERR_NOT_FOUND', `agent "${req.params.id}" not found`);
      return toAgentDto(agent);
    },
  );

  // Identity and access. The store first, so a reconnect racing
  // this call is refused at its hello; then the live stream, at once.
  // Revoking a revoked agent changes nothing and answers the same.
  app.post<{ Params: AgentParams }>(
    '/agents/:id/revoke',
    { config: { role: 'admin', fleetWide: true, action: 'agents.revoke' }, schema: { params: AgentParamsSchema, response: { 200: AgentSchema } } },
    async (req): Promise<AgentDto> => {
      const id = req.params.id;
      if (!(await store.getAgent(id))) throw new BulkheadError('BK_ERR_NOT_FOUND', `agent "${id}" not found`);
      await store.setAgentStatus(id, 'revoked', now());
      const closed = opts.link?.revoke(id) ?? false;
      req.log.warn({ agentId: id, streamClosed: closed, by: req.auth?.keyId }, 'agent revoked');
      // Its usage and history go with it (the containers' rows stay, as history). A failure
      // leaves rows no list shows as live; the revocation itself is already stored.
      await store.usage?.forgetAgent(id).catch((err: unknown) => req.log.warn({ agentId: id, err: (err as Error).message }, "forgetting a revoked agent's usage failed"));
      return toAgentDto((await store.getAgent(id))!);
    },
  );
}
