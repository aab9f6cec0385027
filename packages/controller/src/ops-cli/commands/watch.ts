// Owns `bulkhead watch`: the fleet's live events (GET /v1/events) printed as they happen,
// one line each (or one JSON object per line with --json). A dropped connection is resumed
// where it left off (Last-Event-ID), so no event is lost or printed twice; a refused
// credential ends the command.
import { Option, type Command } from 'commander';
import { ApiError } from '../client';
import type { SseEvent } from '@bulkhead/client';
import type { CommandContext } from './context';
import { parsePositiveInt } from './policy';

const RECONNECT_MS = 3_000;

export function registerWatchCommand(program: Command, ctx: CommandContext): void {
  program
    .command('watch')
    .description("print the fleet's events live as they happen (containers, violations, actions, alerts, agents online/offline), in your key's project scope")
    .addOption(new Option('--type <prefix>', 'only events whose type starts with this (container, alert.violation, agent …); repeatable').argParser(collect).default([] as string[], 'all'))
    .option('--since-id <id>', 'start after this event id (from an earlier watch) instead of now', parseEventId)
    .option('--count <n>', 'exit after N events', parsePositiveInt)
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead watch\n  bulkhead watch --type alert.violation --type agent\n  bulkhead --json watch --since-id 1200 --count 50\n',
    )
    .action(async (o: { type: string[]; sinceId?: string; count?: number }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      let last = o.sinceId;
      let seen = 0;
      const done = new AbortController();
      for (;;) {
        let ended: string | undefined;
        try {
          await api.streamEvents({
            ...(last !== undefined ? { lastEventId: last } : {}),
            signal: done.signal,
            onEvent: (e) => {
              if (e.event === 'stream.end') {
                ended = (JSON.parse(e.data) as { reason?: string }).reason ?? 'ended';
                return;
              }
              if (e.id !== undefined) last = e.id;
              if (o.type.length > 0 && !o.type.some((t) => e.event.startsWith(t))) return;
              if (done.signal.aborted) return;
              ctx.out(json ? e.data + '\n' : renderEvent(e));
              if (o.count !== undefined && ++seen >= o.count) done.abort();
            },
          });
        } catch (err) {
          if (err instanceof ApiError) throw err;
          if (done.signal.aborted) return;
          ctx.err(`event stream lost (${(err as Error).message}); resuming in ${RECONNECT_MS / 1000}s\n`);
        }
        if (done.signal.aborted) return;
        if (ended === 'credential') throw new ApiError(401, 'BK_ERR_UNAUTHENTICATED', 'the event stream ended: the credential no longer holds (revoked or expired)');
        if (ended !== undefined && ended !== 'shutdown') ctx.err(`event stream ended (${ended}); resuming\n`);
        await new Promise((r) => setTimeout(r, RECONNECT_MS));
      }
    });
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function parseEventId(v: string): string {
  if (!/^[0-9]{1,15}$/.test(v)) throw new Error(`"${v}" is not an event id`);
  return v;
}

/** "2026-12-06T19:40:01.123Z  #1201  container.updated  payments  web running (busybox:1)". */
export function renderEvent(e: SseEvent): string {
  let d: Record<string, unknown> = {};
  try {
    d = JSON.parse(e.data) as Record<string, unknown>;
  } catch {
    return `${e.event} ${e.data}\n`;
  }
  const s = (k: string): string => (typeof d[k] === 'string' ? (d[k] as string) : '');
  let what: string;
  if (e.event.startsWith('container.')) {
    const name = s('name').replace(/^\//, '') || s('containerId').slice(0, 12);
    what = e.event === 'container.snapshot' ? `${String(d['containers'])} containers on ${s('agentId')}` : `${name} ${s('state')}${s('image') ? ` (${s('image')})` : ''} on ${s('agentId')}`;
  } else if (e.event.startsWith('alert.')) {
    what = `[${s('severity')}] ${s('message')}`;
  } else {
    what = s('message') || s('hostname') || s('agentId');
  }
  return `${s('at')}  #${e.id ?? '-'}  ${e.event}  ${s('project') || '-'}  ${what}\n`;
}
