// Owns /v1/alerts: the alert history (grouped repeats shown once with their
// count), newest first, filtered and paged.
import type { FastifyInstance } from 'fastify';
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import { AlertListQuerySchema, AlertPageSchema, toAlertDto, type AlertListQuery, type AlertPageDto } from '../../alerts/alert-dto';
import { alertingOf, type AlertRoutesOptions } from './webhooks';
import { visibleProjects } from '../../auth/project-scope';
import { pageReply } from '../dto';
import { strictInput } from './strict-input';

export function registerAlertRoutes(app: FastifyInstance, opts: AlertRoutesOptions & { now?: () => Date }): void {
  const now = opts.now ?? (() => new Date());

  app.get<{ Querystring: AlertListQuery }>(
    '/alerts',
    { config: { role: 'viewer' }, preValidation: strictInput({ querystring: AlertListQuerySchema }), schema: { querystring: AlertListQuerySchema, response: { 200: AlertPageSchema } } },
    async (req): Promise<AlertPageDto> => {
      const a = alertingOf(opts);
      const q = req.query;
      const rows = await a.store.listAlerts({
        types: q.type,
        minSeverity: q.severity,
        since: q.since !== undefined ? parseSince(q.since, now()) : undefined,
        agentId: q.agent,
        container: q.container,
        project: q.project,
        projects: visibleProjects(req), // project scoping: fleet alerts (no project) are hidden from scoped keys
        limit: q.limit + 1,
        offset: q.offset,
      });
      return pageReply(rows.slice(0, q.limit).map(toAlertDto), rows.length, q);
    },
  );
}

/** The furthest back a `since` duration may reach: 10 years, well past any retention. */
export const MAX_SINCE_DAYS = 3650;

/** "2026-11-28T16:00:00Z" or a duration back from now ("15m", "24h", "7d", at most 3650d). */
export function parseSince(s: string, now: Date): Date {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/.test(s.trim())) {
    const ms = parseDuration(s, 'since');
    if (!(ms <= MAX_SINCE_DAYS * 86_400_000)) {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', `since: "${s}" reaches back more than ${MAX_SINCE_DAYS}d; give a duration from 0 to ${MAX_SINCE_DAYS}d or an ISO 8601 time`);
    }
    return new Date(now.getTime() - ms);
  }
  const t = Date.parse(s);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(s)) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `since: "${s}" is neither an ISO 8601 time nor a duration like 15m, 24h or 7d`);
  }
  return new Date(t);
}
