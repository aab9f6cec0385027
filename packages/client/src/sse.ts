// Owns reading a text/event-stream (the WHATWG server-sent events format) as GET
// /v1/events writes it: events are blocks of `field: value` lines ended by a blank line;
// `id`, `event`, `data` (several data lines join with "\n"), `retry`; lines starting with
// ":" are comments (the heartbeat). Hand-written: ~40 lines against the spec, and the
// maintained npm parsers are either browser EventSource polyfills (their own HTTP client,
// which cannot take our CA) or add a dependency for this loop.

export interface SseEvent {
  /** The `id:` of the event, when it had one (GET /v1/events: the event's seq). */
  id: string | undefined;
  /** `event:`; "message" when absent. */
  event: string;
  data: string;
}

export class SseParser {
  private buf = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  /** Comment lines seen (heartbeats). */
  comments = 0;

  /** Feeds decoded text; returns the events completed by it. */
  push(text: string): SseEvent[] {
    this.buf += text;
    const out: SseEvent[] = [];
    let nl: number;
    while ((nl = this.buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + (this.buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (this.data.length > 0 || this.event !== '') out.push({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
        this.data = [];
        this.event = '';
        continue;
      }
      if (line.startsWith(':')) {
        this.comments++;
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.data.push(value);
      else if (field === 'event') this.event = value;
      else if (field === 'id' && !value.includes('\0')) this.id = value;
    }
    return out;
  }
}
