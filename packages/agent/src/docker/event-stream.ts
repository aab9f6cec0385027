// Owns reading dockerd's /events stream: splitting it into JSON lines,
// parsing them without losing the nanosecond timestamp, and deciding which
// events can change a container's facts and which start an exec.
//
// The stream is newline-delimited JSON (Go's json.Encoder), but TCP chunks
// follow no line boundaries: a chunk may hold several events, part of one,
// or split a multi-byte UTF-8 character. The parser keeps the unfinished
// tail between chunks and decodes bytes with a StringDecoder.
import { StringDecoder } from 'node:string_decoder';

/** One event as dockerd sends it (API ≥ 1.22 shape), timeNano kept exact. */
export interface DockerEvent {
  type: string;
  action: string;
  actorId: string;
  attributes: Record<string, string>;
  /** Seconds since the epoch. */
  time: number;
  /**
   * Nanoseconds since the epoch, exact. JSON.parse would round it: 1.7e18
   * is beyond 2^53, and an inexact `since` could skip an event on replay.
   */
  timeNano: bigint;
}

/** Lines longer than this are not events; drop them rather than buffer without bound. */
export const MAX_EVENT_LINE_BYTES = 1024 * 1024;

export interface EventLineParserHandlers {
  onEvent(ev: DockerEvent): void;
  /** A line that is not an event (logged by the caller, then skipped). */
  onBadLine?(line: string, err: unknown): void;
}

/** Incremental newline-delimited JSON parser for the /events stream. */
export class EventLineParser {
  private decoder = new StringDecoder('utf8');
  private tail = '';

  constructor(private readonly handlers: EventLineParserHandlers) {}

  /** Feeds one chunk; calls onEvent for every complete line in it. */
  push(chunk: Buffer | string): void {
    const text = this.tail + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const lines = text.split('\n');
    this.tail = lines.pop()!;
    for (const line of lines) this.line(line);
    if (this.tail.length > MAX_EVENT_LINE_BYTES) {
      this.handlers.onBadLine?.(this.tail.slice(0, 200), new Error(`line longer than ${MAX_EVENT_LINE_BYTES} bytes`));
      this.tail = '';
    }
  }

  /** Flushes a final line without a newline (the stream ended). */
  end(): void {
    const rest = this.tail + this.decoder.end();
    this.tail = '';
    this.line(rest);
  }

  private line(raw: string): void {
    const line = raw.trim();
    if (line === '') return;
    let ev: DockerEvent | undefined;
    try {
      ev = parseEventLine(line);
    } catch (err) {
      this.handlers.onBadLine?.(line.slice(0, 200), err);
      return;
    }
    if (ev) this.handlers.onEvent(ev);
    else this.handlers.onBadLine?.(line.slice(0, 200), new Error('not a docker event'));
  }
}

/** Parses one JSON line; undefined when it is JSON but not an event. Throws on bad JSON. */
export function parseEventLine(line: string): DockerEvent | undefined {
  const o = JSON.parse(line) as unknown;
  if (typeof o !== 'object' || o === null) return undefined;
  const r = o as Record<string, unknown>;
  const actor = (typeof r['Actor'] === 'object' && r['Actor'] !== null ? r['Actor'] : {}) as Record<string, unknown>;
  const type = typeof r['Type'] === 'string' ? r['Type'] : '';
  const action = typeof r['Action'] === 'string' ? r['Action'] : typeof r['status'] === 'string' ? r['status'] : '';
  if (type === '' || action === '') return undefined;
  const attrs: Record<string, string> = {};
  const a = actor['Attributes'];
  if (typeof a === 'object' && a !== null) {
    for (const [k, v] of Object.entries(a)) if (typeof v === 'string') attrs[k] = v;
  }
  const time = typeof r['time'] === 'number' ? r['time'] : 0;
  // Read timeNano from the text, not from the rounded number.
  const m = /"timeNano"\s*:\s*(\d+)/.exec(line);
  const timeNano = m ? BigInt(m[1]!) : BigInt(time) * 1_000_000_000n;
  const actorId = typeof actor['ID'] === 'string' ? actor['ID'] : typeof r['id'] === 'string' ? r['id'] : '';
  return { type, action, actorId, attributes: attrs, time, timeNano };
}

/** dockerd's `since`/`until` format for an exact instant: "seconds.nanoseconds". */
export function formatSince(timeNano: bigint): string {
  const s = timeNano / 1_000_000_000n;
  const ns = timeNano % 1_000_000_000n;
  return `${s}.${ns.toString().padStart(9, '0')}`;
}

/**
 * Container actions after which inspect can show different facts.
 * `kill` is absent on purpose: the signal may be ignored, and a kill that
 * ends the container is followed by `die`. exec_*, attach, top, resize &c.
 * change nothing we report (an exec_start is judged on its own, see
 * execStartEvent).
 */
export const FACT_CHANGING_ACTIONS: ReadonlySet<string> = new Set([
  'create', 'start', 'restart', 'die', 'stop', 'pause', 'unpause', 'rename', 'update', 'destroy', 'oom', 'health_status',
]);

/** The container an event concerns and the action to report, or undefined to ignore it. */
export function relevantContainerEvent(ev: DockerEvent): { containerId: string; action: string } | undefined {
  if (ev.type === 'container') {
    // "health_status: healthy" carries its result after a colon.
    const action = ev.action.split(':')[0]!.trim();
    if (!FACT_CHANGING_ACTIONS.has(action) || ev.actorId === '') return undefined;
    return { containerId: ev.actorId, action };
  }
  if (ev.type === 'network' && (ev.action === 'connect' || ev.action === 'disconnect')) {
    const id = ev.attributes['container'];
    if (id === undefined || id === '') return undefined;
    return { containerId: id, action: `network_${ev.action}` };
  }
  return undefined;
}

/** A process started in a running container (`docker exec`, or a health check). */
export interface ExecStartEvent {
  containerId: string;
  execId: string;
  /**
   * The command as dockerd writes it into the action ("exec_start: sh -c id"
   * → "sh -c id"): entrypoint and arguments joined by spaces, so not
   * splittable back into arguments. May hold secrets; redact before it
   * leaves the host.
   */
  command: string;
  /** dockerd's event time, ms. */
  timeMs: number;
}

/**
 * An exec_start event's container, exec id and command, or undefined for
 * any other event. dockerd writes the command into the action itself, and
 * the attributes carry only execID (plus the container's image, name and
 * labels): who the process runs as, and whether privileged, takes an
 * inspect of the exec.
 */
export function execStartEvent(ev: DockerEvent): ExecStartEvent | undefined {
  if (ev.type !== 'container' || ev.actorId === '') return undefined;
  const colon = ev.action.indexOf(':');
  if ((colon === -1 ? ev.action : ev.action.slice(0, colon)).trim() !== 'exec_start') return undefined;
  const execId = ev.attributes['execID'] ?? '';
  if (execId === '') return undefined;
  return {
    containerId: ev.actorId,
    execId,
    command: colon === -1 ? '' : ev.action.slice(colon + 1).trim(),
    timeMs: Number(ev.timeNano / 1_000_000n),
  };
}
