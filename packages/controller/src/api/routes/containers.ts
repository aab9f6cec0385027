// Owns /v1/containers: the fleet's container inventory, filtered and paged,
// single containers addressed by id, id prefix or name, and their recent usage history.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { BulkheadError } from '@bulkhead/shared';
import { CONTAINER_SORT_FIELDS, type ContainerPosition, type ContainerRecord, type ContainerSort, type ContainerSortField, type Store } from '../../store/store';
import { checkCursorOrOffset, decodeCursor, encodeCursor } from '../cursor';
import {
  ContainerListQuerySchema, ContainerPageSchema, ContainerParamsSchema, ContainerSchema, ContainerUsageHistorySchema, cursorPageReply, toContainerDto,
  type ContainerDto, type ContainerListQuery, type ContainerPageDto, type ContainerParams, type ContainerUsageHistoryDto,
} from '../dto';
import { USAGE_HISTORY_DEFAULT_INTERVAL_MS, USAGE_HISTORY_POINTS } from '../../store/usage-history';
import { containerProject, visibleProjects } from '../../auth/project-scope';
import { usageKey, type ContainerUsageRecord } from '../../store/usage-store';
import { strictInput } from './strict-input';
import { storedFactsJson } from '../../store/stored-facts';

/** Shortest id prefix accepted, as `docker ps` prints it. */
export const MIN_ID_PREFIX = 12;

export function registerContainerRoutes(app: FastifyInstance, opts: { store: Store; now?: () => Date; usageHistoryIntervalMs?: number }): void {
  const { store } = opts;
  const now = opts.now ?? (() => new Date());
  const intervalMs = opts.usageHistoryIntervalMs ?? USAGE_HISTORY_DEFAULT_INTERVAL_MS;

  app.get<{ Querystring: ContainerListQuery }>(
    '/containers',
    { config: { role: 'viewer' }, preValidation: strictInput({ querystring: ContainerListQuerySchema }), schema: { querystring: ContainerListQuerySchema, response: { 200: ContainerPageSchema } } },
    async (req, reply): Promise<ContainerPageDto | string> => {
      const q = req.query;
      checkCursorOrOffset(q);
      const sort = parseSort(q.sort);
      const after = q.cursor !== undefined ? decodeContainerCursor(q.cursor, sort) : undefined;
      // One row more than asked tells whether another page exists.
      const rows = await store.listContainers({
        agentId: q.agent,
        state: q.state,
        image: q.image,
        labels: q.label,
        includeRemoved: q.include_removed,
        projects: visibleProjects(req), // project scoping, in SQL so paging stays right
        project: q.project,
        rule: q.rule,
        search: q.q,
        sort,
        limit: q.limit + 1,
        offset: q.offset,
        after,
      });
      const page = rows.slice(0, q.limit);
      const usage = await usageOf(store, page);
      const cursorOf = new Map(page.map((c) => [usageKey(c.agentId, c.id), c.sortValue]));
      return withStoredFacts(reply, cursorPageReply(page.map((c) => toContainerDto(c, usage.get(usageKey(c.agentId, c.id)))), rows.length, q, (c) => {
        if (sort === undefined) return encodeCursor('containers', [c.agentId, c.name, c.id]);
        // The value the row was ordered by (for cpu/memory the usage of that statement, not the page's later read).
        const value = cursorOf.get(usageKey(c.agentId, c.id)) ?? '';
        return encodeCursor('containers', [sortName(sort), value, c.agentId, c.name, c.id]);
      }));
    },
  );

  app.get<{ Params: ContainerParams }>(
    '/containers/:agent/:id',
    { config: { role: 'viewer' }, schema: { params: ContainerParamsSchema, response: { 200: ContainerSchema } } },
    async (req): Promise<ContainerDto> => {
      const c = await resolveContainer(store, req.params.agent, req.params.id, visibleProjects(req));
      return toContainerDto(c, (await usageOf(store, [c])).get(usageKey(c.agentId, c.id)));
    },
  );

  // The recent history behind the console's usage chart; found and scoped exactly like the container.
  app.get<{ Params: ContainerParams }>(
    '/containers/:agent/:id/usage',
    {
      config: { role: 'viewer' },
      schema: {
        params: ContainerParamsSchema,
        response: { 200: ContainerUsageHistorySchema },
        description:
          "Requires the viewer role (or higher); a key limited to projects sees only its projects' containers (404 otherwise, like GET /v1/containers/{agent}/{id}). " +
          'The recent usage history the controller keeps: at most one point per interval (default 60 s), the last 60, oldest first; empty for a container that is not running or was removed.',
      },
    },
    async (req): Promise<ContainerUsageHistoryDto> => {
      const c = await resolveContainer(store, req.params.agent, req.params.id, visibleProjects(req));
      const windowMs = intervalMs * USAGE_HISTORY_POINTS;
      const since = now().getTime() - windowMs;
      const points = c.removed || !store.usage ? [] : (await store.usage.getUsageHistory(c.agentId, c.id)).filter((p) => p.at.getTime() >= since);
      return {
        agentId: c.agentId,
        containerId: c.id,
        intervalSeconds: Math.round(intervalMs / 1000),
        windowSeconds: Math.round(windowMs / 1000),
        points: points.map((p) => ({ ...p, at: p.at.toISOString() })),
      };
    },
  );
}

const EMPTY_FACTS = '"facts":{}';

/**
 * A page of containers as the route's own serializer (ContainerPageSchema) writes it, with each
 * container's facts written as the JSON text the store read them from rather than serialized
 * again: the same bytes (the schema passes facts through as an open object, which
 * fast-json-stringify writes as JSON.stringify does, and the stored text is JSON.stringify's),
 * ~1 ms less of the controller's CPU a 100-container page (BENCHMARKS.md, "stored facts text").
 * The page is serialized with every item's facts `{}`; each `"facts":{}` in the result is an
 * item's own key, in item order (a string value cannot hold it: JSON escapes every `"` inside
 * one). Any item without stored text (not straight from the store): the page as it is, for
 * fastify to serialize.
 */
function withStoredFacts(reply: FastifyReply, page: ContainerPageDto): ContainerPageDto | string {
  const texts: string[] = [];
  for (const item of page.items) {
    const text = storedFactsJson(item.facts);
    if (text === undefined) return page;
    texts.push(text);
  }
  if (texts.length === 0) return page;
  const shell = reply.serialize({ ...page, items: page.items.map((item) => ({ ...item, facts: {} })) }) as string;
  const parts = shell.split(EMPTY_FACTS);
  if (parts.length !== texts.length + 1) return page;
  let out = parts[0]!;
  for (let i = 0; i < texts.length; i++) out += '"facts":' + texts[i]! + parts[i + 1]!;
  reply.type('application/json; charset=utf-8');
  return out;
}

/** `sort` as the query spells it ("-cpu"); undefined for the default order (agent, ascending). */
export function parseSort(s: string | undefined): ContainerSort | undefined {
  if (s === undefined) return undefined;
  const desc = s.startsWith('-');
  const field = (desc ? s.slice(1) : s) as ContainerSortField;
  if (!CONTAINER_SORT_FIELDS.includes(field)) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `querystring/sort must be one of ${CONTAINER_SORT_FIELDS.join(', ')}, optionally with a leading "-", got "${s}"`);
  }
  return field === 'agent' && !desc ? undefined : { field, desc };
}

function sortName(s: ContainerSort): string {
  return (s.desc ? '-' : '') + s.field;
}

/**
 * A containers cursor: [agent, name, id] in the default order; [sort, value, agent, name, id]
 * with a sort, which must be the sort of the request (a cursor is a position in one order).
 */
function decodeContainerCursor(cursor: string, sort: ContainerSort | undefined): ContainerPosition {
  if (sort === undefined) {
    const [agentId, name, id] = decodeCursor('containers', cursor, ['string', 'string', 'string']) as string[];
    return { agentId: agentId!, name: name!, id: id! };
  }
  const numeric = sort.field === 'cpu' || sort.field === 'memory';
  const [by, sortValue, agentId, name, id] = decodeCursor('containers', cursor, ['string', numeric ? 'number' : 'string', 'string', 'string', 'string']);
  if (by !== sortName(sort)) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `querystring/cursor was issued for sort=${String(by)}, not sort=${sortName(sort)}: repeat the sort of the request that returned it, or leave cursor out to start at the first page`);
  }
  return { agentId: agentId as string, name: name as string, id: id as string, sortValue };
}

/** Live usage of the live containers among `rows` (one query per agent). */
async function usageOf(store: Store, rows: readonly ContainerRecord[]): Promise<Map<string, ContainerUsageRecord>> {
  const live = rows.filter((c) => !c.removed);
  if (!store.usage || live.length === 0) return new Map();
  return store.usage.getUsage(live.map((c) => ({ agentId: c.agentId, containerId: c.id })));
}

/**
 * Finds one container of `agentId` by full id, unique id prefix (≥ 12 hex
 * digits) or name (with or without Docker's leading "/"). Live containers
 * win over removed ones that match the same reference. With `projects`
 * (a project-scoped caller), containers of other projects are not there at
 * all: not found, never "ambiguous".
 */
export async function resolveContainer(store: Store, agentId: string, ref: string, projects?: string[]): Promise<ContainerRecord> {
  const inScope = (c: ContainerRecord): boolean => projects === undefined || projects.includes(containerProject(c.facts));
  const exact = await store.getContainer(agentId, ref);
  if (exact && inScope(exact)) return exact;

  const lower = ref.toLowerCase();
  const idPrefix = new RegExp(`^[0-9a-f]{${MIN_ID_PREFIX},64}$`).test(lower) ? lower : undefined;
  const bare = ref.startsWith('/') ? ref.slice(1) : ref;
  const names = bare === '' ? [] : [bare, '/' + bare];
  let candidates = store.findContainers
    ? await store.findContainers(agentId, { idPrefix, names })
    : (await store.listContainers({ agentId, includeRemoved: true })).filter(
        (c) => (idPrefix !== undefined && c.id.startsWith(idPrefix)) || names.includes(c.name),
      );
  candidates = candidates.filter(inScope);

  if (candidates.length === 0) {
    if (!(await store.getAgent(agentId))) throw new BulkheadError('BK_ERR_NOT_FOUND', `agent "${agentId}" not found`);
    const hint = /^[0-9a-f]+$/i.test(ref) && ref.length < MIN_ID_PREFIX ? ` (id prefixes need at least ${MIN_ID_PREFIX} hex digits)` : '';
    throw new BulkheadError('BK_ERR_NOT_FOUND', `no container "${ref}" on agent "${agentId}"${hint}`);
  }
  const live = candidates.filter((c) => !c.removed);
  if (live.length > 0) candidates = live;
  if (candidates.length > 1) {
    const ids = candidates.slice(0, 5).map((c) => c.id.slice(0, MIN_ID_PREFIX)).join(', ');
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `"${ref}" matches ${candidates.length} containers on agent "${agentId}" (${ids}); give more of the id`);
  }
  return candidates[0]!;
}
