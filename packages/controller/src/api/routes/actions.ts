// Owns POST /v1/containers/:agent/:id/actions: an operator pauses,
// unpauses, kills, stops, quarantines (disconnects from every network) or
// releases a container through its agent, and gets the agent's result —
// 200 only when the agent carried it out. Needs the operator role (declared
// in the route config, enforced by src/auth); a credential limited to
// projects acts only on their containers — others answer 404, as if absent.
// A key may be limited to some of the actions ("containers.pause", …, or
// "containers.actions" for all of them): the one in the body is checked here.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { Store } from '../../store/store';
import { ContainerParamsSchema, type ContainerParams } from '../dto';
import { resolveContainer } from './containers';
import { visibleProjects } from '../../auth/project-scope';
import { describePrincipal } from '../../auth/principal';
import { authorizeSubAction } from '../../auth/api-security';
import { auditTarget } from '../../audit/audit-hooks';
import { MANUAL_ACTIONS, MAX_STOP_TIMEOUT_SECONDS, type ManualActions } from '../../commands/manual-actions';
import { strictInput } from './strict-input';

export const ContainerActionBodySchema = Type.Object(
  {
    action: Type.Union(MANUAL_ACTIONS.map((a) => Type.Literal(a)), {
      description: 'pause | unpause | kill | stop | quarantine (disconnect from every network, remembered by the agent) | release (reconnect what quarantine disconnected)',
    }),
    stopTimeoutSeconds: Type.Optional(
      Type.Integer({ minimum: 0, maximum: MAX_STOP_TIMEOUT_SECONDS, description: 'stop only: seconds between SIGTERM and SIGKILL (default 10)' }),
    ),
  },
  { additionalProperties: false },
);
export type ContainerActionBody = Static<typeof ContainerActionBodySchema>;

export const ContainerActionResultSchema = Type.Object({
  /** Command id ("cmd_…"), also in the controller's and the agent's logs. */
  id: Type.String(),
  agentId: Type.String(),
  containerId: Type.String(),
  containerName: Type.String(),
  action: Type.String(),
  ok: Type.Boolean(),
  /** What the agent did, e.g. "disconnected from 2 network(s): a, b". */
  detail: Type.String(),
  durationMs: Type.Number(),
  /** The container's state on the engine afterwards. */
  state: Type.String(),
  requestedBy: Type.String(),
  at: Type.String({ format: 'date-time' }),
});
export type ContainerActionResultDto = Static<typeof ContainerActionResultSchema>;

/** The route's own action name: it grants every manual action. */
export const CONTAINER_ACTIONS = 'containers.actions';
/** One action name per manual action, for keys limited to some of them: "containers.pause", … */
export const containerSubAction = (a: string): string => `containers.${a}`;

export interface ActionRoutesOptions {
  store: Store;
  /** Undefined when the controller has no agent link (API-only tests): the route answers 503. */
  actions: ManualActions | undefined;
}

export function registerActionRoutes(app: FastifyInstance, opts: ActionRoutesOptions): void {
  app.post<{ Params: ContainerParams; Body: ContainerActionBody }>(
    '/containers/:agent/:id/actions',
    {
      config: { role: 'operator', action: CONTAINER_ACTIONS, subActions: MANUAL_ACTIONS.map(containerSubAction) },
      preValidation: strictInput({ body: ContainerActionBodySchema }),
      schema: { params: ContainerParamsSchema, body: ContainerActionBodySchema, response: { 200: ContainerActionResultSchema } },
    },
    async (req): Promise<ContainerActionResultDto> => {
      // Which action was asked is in the audit trail, refused or not (the route's name covers all six).
      auditTarget(req, { manualAction: containerSubAction(req.body.action) });
      authorizeSubAction(req.auth!, CONTAINER_ACTIONS, containerSubAction(req.body.action));
      if (!opts.actions) throw new BulkheadError('BK_ERR_NOT_READY', 'manual actions need the agent link; this server has none');
      const container = await resolveContainer(opts.store, req.params.agent, req.params.id, visibleProjects(req));
      return opts.actions.run({
        container,
        action: req.body.action,
        stopTimeoutSeconds: req.body.stopTimeoutSeconds,
        requestedBy: requester(req),
      });
    },
  );
}

function requester(req: FastifyRequest): string {
  return req.auth ? describePrincipal(req.auth) : 'unknown';
}
