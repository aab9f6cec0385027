// Owns GET /v1/events: the fleet's events as server-sent events (text/event-stream), in
// the caller's project scope, resumable with Last-Event-ID (the header browsers send when
// they reconnect, or ?lastEventId= for a first connection that resumes). The stream itself
// is src/events/event-hub.ts.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { EventHub } from '../../events/event-hub';
import type { Authenticator } from '../../auth/authenticator';
import { visibleProjects } from '../../auth/project-scope';

export const EventsQuerySchema = Type.Object(
  {
    /** Resume after this event id (as the Last-Event-ID header; the header wins when both are sent). */
    lastEventId: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
  },
  { additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuerySchema>;

const ID_RE = /^[0-9]{1,15}$/;

export function registerEventRoutes(app: FastifyInstance, opts: { hub: EventHub | undefined; authenticator: Authenticator; now: () => Date }): void {
  app.get<{ Querystring: EventsQuery }>(
    '/events',
    // No automatic HEAD twin: a HEAD would run this handler, take a stream slot and hang.
    { config: { role: 'viewer' }, schema: { querystring: EventsQuerySchema }, exposeHeadRoute: false },
    async (req, reply) => {
      const hub = opts.hub;
      if (!hub) throw new BulkheadError('BK_ERR_NOT_READY', 'this controller keeps no event stream');
      const header = req.headers['last-event-id'];
      const raw = typeof header === 'string' && header !== '' ? header.trim() : req.query.lastEventId;
      if (raw !== undefined && !ID_RE.test(raw)) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'Last-Event-ID must be an event id (a decimal number)');
      const after = raw === undefined ? undefined : Number(raw);
      const principal = req.auth!;
      // Slots are taken before anything is awaited (a burst cannot overshoot), per controller
      // and per key (one credential cannot take every slot). Refusals for load are answered
      // 503/429 with Retry-After and logged at info by the error handler, not as failures.
      const slot = hub.reserve(principal.keyId);
      if (slot === 'controller') {
        reply.header('retry-after', '5');
        throw new BulkheadError('BK_ERR_NOT_READY', `this controller serves ${hub.maxClients} event streams already; try another replica or later`);
      }
      if (slot === 'key') {
        reply.header('retry-after', '5');
        throw new BulkheadError('BK_ERR_RATE_LIMITED', `API key ${principal.keyId} has ${hub.maxClientsPerKey} event streams open on this controller already (its sessions and tokens included); close one, or retry later`);
      }
      const release = slot;
      reply.raw.on('close', release);
      const res = reply.raw;
      // Hijacked: fastify sends nothing more, so the headers set so far (security headers,
      // cache-control) are written here with the stream's own.
      reply.hijack();
      const headers: Record<string, string | number | string[]> = {};
      for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = v as string | number | string[];
      res.writeHead(200, {
        ...headers,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // nginx and friends buffer responses unless told not to.
        'x-accel-buffering': 'no',
      });
      let closed = false;
      // The status and headers leave with the first chunk (Node sends a header only with the
      // first write), and that chunk is written only once the hub has fixed where "from now on"
      // starts: a caller that sees the 200 and then acts sees its own action's event.
      let started = false;
      const start = (): void => {
        if (started) return;
        started = true;
        res.write(`retry: 3000\n: bulkhead fleet events\n\n`);
      };
      const unsubscribe = await hub.subscribe(
        {
          projects: visibleProjects(req),
          keyId: principal.keyId,
          ...(principal.session ? { sessionIdHash: principal.session.idHash } : {}),
          write: (chunk) => {
            start();
            void res.write(chunk);
          },
          buffered: () => res.writableLength + (res.socket?.writableLength ?? 0),
          end: (reason) => {
            closed = true;
            if (reason === 'slow') {
              // Its buffers are full: writing more would wait on it. Drop the connection.
              res.destroy();
              return;
            }
            start();
            res.end(`event: stream.end\ndata: ${JSON.stringify({ reason })}\n\n`);
          },
          stillValid: () => opts.authenticator.stillValid(principal, opts.now()),
        },
        after,
      );
      if (!res.destroyed && !closed) start();
      // Drained below its bound: the hub writes more right away instead of at its next poll.
      res.on('drain', () => hub.wake());
      res.on('close', () => {
        if (!closed) unsubscribe();
      });
      if (res.destroyed) unsubscribe();
    },
  );
}
