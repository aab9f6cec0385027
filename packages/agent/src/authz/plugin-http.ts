// Owns the HTTP/1.1 transport of the authorization plugin socket: requests
// in, one response per request, in order, on dockerd's kept-alive
// connection. plugin-server.ts owns what the requests mean.
//
// Written by hand, on purpose. Node's `http` server is the obvious library,
// and was used first; but dockerd makes two plugin calls around EVERY API
// request it serves, and each call through `http` (IncomingMessage and
// ServerResponse streams, header objects, events) cost about 0.1-0.15 ms on
// the reference machine — measured with bench/authz-overhead.js, a plugin
// answering Allow without reading the request added 0.41-0.53 ms to a
// `docker create` through `http` and 0.22 ms through this server. That
// difference alone was a third of the 10 % overhead budget. No maintained
// npm library offers a leaner HTTP/1.1 server (the fast ones are native
// uWebSockets bindings, not published to npm).
//
// Scope, kept small because only dockerd (root; the socket is 0600) talks to
// it: request line + headers up to maxHeaderBytes; bodies framed by
// Content-Length or `Transfer-Encoding: chunked`; pipelined requests answered
// in order; `Connection: close` and HTTP/1.0 honoured. Anything malformed is
// answered 400 (431 for oversized headers, 501 for other transfer codings)
// and the connection closed — the same stance as Node's parser, which is
// stricter than dockerd's Go client ever needs.
import { createServer, type Server, type Socket } from 'node:net';

export interface PluginHttpRequest {
  method: string;
  /** The request target as sent, e.g. "/AuthZPlugin.AuthZReq". */
  url: string;
  /** The body (at most maxBodyBytes of it; see tooBig). */
  body: Buffer;
  /** The body was larger than maxBodyBytes: `body` is empty and `size` says how large it was. */
  tooBig: boolean;
  size: number;
}

export interface PluginHttpResponse {
  status: number;
  /** JSON text; sent as application/vnd.docker.plugins.v1+json. */
  body: string;
}

export type PluginHttpHandler = (req: PluginHttpRequest) => PluginHttpResponse | Promise<PluginHttpResponse>;

export interface PluginHttpOptions {
  /** Request line + headers. Default 16 KiB (dockerd sends < 1 KiB). */
  maxHeaderBytes?: number;
  /** Larger bodies are read and dropped (the request is still answered, with tooBig set). Default 8 MiB. */
  maxBodyBytes?: number;
  /** A connection with no traffic for this long is closed. Default 120 s (dockerd keeps its own idle connections 90 s). */
  idleTimeoutMs?: number;
  /** Protocol errors (malformed requests) and handler failures, for logging. */
  onError?: (err: Error) => void;
}

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';
const REASONS: Record<number, string> = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 501: 'Not Implemented' };
const CRLF = 0x0d0a;
const INTERNAL_ERROR: PluginHttpResponse = { status: 500, body: JSON.stringify({ Err: 'internal error in the plugin' }) };

/** A request the parser refuses: answered with `status` and the connection closed. */
class ProtocolError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

type Phase = 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailer';

interface Partial {
  method: string;
  url: string;
  close: boolean;
  chunks: Buffer[];
  size: number;
  /** Content-Length left, or the current chunk's bytes left. */
  remaining: number;
  /** Chunks read so far (chunked bodies). */
  nChunks: number;
}

/**
 * Chunks one request may have. dockerd never sends chunked plugin requests
 * (its Go client sets Content-Length); the bound keeps a sender of one-byte
 * chunks from costing a parse and a Buffer view per byte.
 */
export const MAX_CHUNKS = 1024;

/** One connection: parses what arrives, answers requests one at a time, in order. */
class Connection {
  private buf: Buffer = Buffer.alloc(0);
  private phase: Phase = 'head';
  private cur: Partial | undefined;
  private readonly queue: { req: PluginHttpRequest; close: boolean }[] = [];
  private busy = false;
  private closing = false;
  /** The response refusing a malformed request, sent once the requests before it are answered. */
  private refusal: string | undefined;
  /** The client half-closed: end our side once everything it sent is answered. */
  private endWhenIdle = false;

  constructor(private readonly socket: Socket, private readonly handler: PluginHttpHandler, private readonly o: Required<Omit<PluginHttpOptions, 'onError'>> & Pick<PluginHttpOptions, 'onError'>) {
    socket.setNoDelay(true);
    socket.setTimeout(o.idleTimeoutMs, () => socket.destroy());
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEnd());
    socket.on('error', () => socket.destroy());
  }

  private onData(d: Buffer): void {
    if (this.closing) return;
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    try {
      this.parse();
    } catch (err) {
      const e = err instanceof ProtocolError ? err : new ProtocolError(400, (err as Error).message);
      this.report(e);
      this.fail(e.status, e.message);
    }
  }

  /** The client finished sending (half-close): answer what it sent, then close. */
  private onEnd(): void {
    this.closing = true;
    this.endWhenIdle = true;
    this.settle();
  }

  /** onError must never break the connection (or the process). */
  private report(err: Error): void {
    try {
      this.o.onError?.(err);
    } catch {
      // a logger failing is not the client's problem
    }
  }

  /** Consumes as much of `buf` as forms requests. Throws ProtocolError. */
  private parse(): void {
    // Nothing after a `Connection: close` request is read, even in the same packet.
    while (!this.closing) {
      switch (this.phase) {
        case 'head': {
          const end = this.buf.indexOf('\r\n\r\n');
          if (end === -1) {
            // +3: up to three bytes of the blank line may already be here; they do not count.
            if (this.buf.length > this.o.maxHeaderBytes + 3) throw new ProtocolError(431, `request head larger than ${this.o.maxHeaderBytes} bytes`);
            return;
          }
          if (end > this.o.maxHeaderBytes) throw new ProtocolError(431, `request head larger than ${this.o.maxHeaderBytes} bytes`);
          const head = this.buf.toString('latin1', 0, end);
          this.buf = this.buf.subarray(end + 4);
          this.startRequest(head);
          break;
        }
        case 'body': {
          if (!this.take()) return;
          this.finishRequest();
          break;
        }
        case 'chunk-size': {
          const eol = this.buf.indexOf('\r\n');
          if (eol === -1) {
            if (this.buf.length > 1024) throw new ProtocolError(400, 'chunk size line too long');
            return;
          }
          const line = this.buf.toString('latin1', 0, eol);
          this.buf = this.buf.subarray(eol + 2);
          const hex = line.split(';', 1)[0]!.trim();
          if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) throw new ProtocolError(400, `bad chunk size "${line.slice(0, 20)}"`);
          const n = parseInt(hex, 16);
          if (n !== 0 && ++this.cur!.nChunks > MAX_CHUNKS) throw new ProtocolError(400, `more than ${MAX_CHUNKS} chunks in one request`);
          if (n === 0) {
            this.phase = 'trailer';
          } else {
            this.cur!.remaining = n;
            this.phase = 'chunk-data';
          }
          break;
        }
        case 'chunk-data': {
          if (!this.take()) return;
          this.phase = 'chunk-end';
          break;
        }
        case 'chunk-end': {
          if (this.buf.length < 2) return;
          if (this.buf.readUInt16BE(0) !== CRLF) throw new ProtocolError(400, 'chunk not followed by CRLF');
          this.buf = this.buf.subarray(2);
          this.phase = 'chunk-size';
          break;
        }
        case 'trailer': {
          // Trailer fields (ignored) up to an empty line.
          const eol = this.buf.indexOf('\r\n');
          if (eol === -1) {
            if (this.buf.length > this.o.maxHeaderBytes) throw new ProtocolError(431, 'chunked trailer too large');
            return;
          }
          this.buf = this.buf.subarray(eol + 2);
          if (eol === 0) this.finishRequest();
          break;
        }
      }
    }
  }

  private startRequest(head: string): void {
    const lines = head.split('\r\n');
    const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0]!);
    if (!m) throw new ProtocolError(400, `bad request line "${lines[0]!.slice(0, 60)}"`);
    let length: number | undefined;
    let chunked = false;
    let connection = '';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) throw new ProtocolError(400, `bad header line "${line.slice(0, 60)}"`);
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value)) throw new ProtocolError(400, `bad Content-Length "${value.slice(0, 20)}"`);
        const n = Number(value);
        if (length !== undefined && length !== n) throw new ProtocolError(400, 'conflicting Content-Length headers');
        length = n;
      } else if (name === 'transfer-encoding') {
        if (value.toLowerCase() !== 'chunked') throw new ProtocolError(501, `transfer coding "${value.slice(0, 20)}" not supported`);
        chunked = true;
      } else if (name === 'connection') {
        connection = value.toLowerCase();
      }
    }
    // RFC 9112 6.1: with both, Transfer-Encoding wins — but a sender doing that is suspect; refuse like Node does.
    if (chunked && length !== undefined) throw new ProtocolError(400, 'both Content-Length and Transfer-Encoding');
    const http10 = m[3] === '0';
    const close = connection.split(',').some((t) => t.trim() === 'close') || (http10 && !connection.includes('keep-alive'));
    this.cur = { method: m[1]!, url: m[2]!, close, chunks: [], size: 0, remaining: length ?? 0, nChunks: 0 };
    if (chunked) this.phase = 'chunk-size';
    else if ((length ?? 0) > 0) this.phase = 'body';
    else this.finishRequest();
  }

  /** Moves up to `remaining` bytes of buf into the current body. True when all arrived. */
  private take(): boolean {
    const cur = this.cur!;
    const n = Math.min(cur.remaining, this.buf.length);
    if (n > 0) {
      if (cur.size + n <= this.o.maxBodyBytes) cur.chunks.push(this.buf.subarray(0, n));
      else cur.chunks.length = 0; // too big: keep counting, stop keeping
      cur.size += n;
      cur.remaining -= n;
      this.buf = this.buf.subarray(n);
    }
    return cur.remaining === 0;
  }

  private finishRequest(): void {
    const c = this.cur!;
    this.cur = undefined;
    this.phase = 'head';
    const tooBig = c.size > this.o.maxBodyBytes;
    const body = tooBig || c.chunks.length === 0 ? Buffer.alloc(0) : c.chunks.length === 1 ? c.chunks[0]! : Buffer.concat(c.chunks);
    this.queue.push({ req: { method: c.method, url: c.url, body, tooBig, size: c.size }, close: c.close });
    if (c.close) this.closing = true; // nothing after this request is read
    this.next();
  }

  /** Answers queued requests one at a time, so responses leave in request order. */
  private next(): void {
    while (!this.busy && this.queue.length > 0) {
      const { req, close } = this.queue.shift()!;
      let r: PluginHttpResponse | Promise<PluginHttpResponse>;
      try {
        r = this.handler(req);
      } catch (err) {
        this.report(err as Error);
        r = INTERNAL_ERROR;
      }
      if (r instanceof Promise) {
        this.busy = true;
        r.then(
          (res) => this.respond(res, close),
          (err: unknown) => {
            this.report(err as Error);
            this.respond(INTERNAL_ERROR, close);
          },
        ).finally(() => {
          this.busy = false;
          this.next();
        });
        return;
      }
      this.respond(r, close);
    }
    this.settle();
  }

  /** Idle again: send a pending refusal, or end a half-closed connection. */
  private settle(): void {
    if (this.busy || this.queue.length > 0) return;
    if (this.refusal !== undefined) this.sendRefusal();
    else if (this.endWhenIdle && !this.socket.destroyed) this.socket.end();
  }

  private respond(res: PluginHttpResponse, close: boolean): void {
    if (this.socket.destroyed) return;
    const head = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? 'Status'}\r\nContent-Type: ${CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(res.body)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;
    this.socket.write(head + res.body);
    if (close) this.socket.end();
  }

  /** Refuses what cannot be parsed, after answering what came before it. */
  private fail(status: number, message: string): void {
    this.closing = true;
    const body = JSON.stringify({ Err: message });
    this.refusal = `HTTP/1.1 ${status} ${REASONS[status]!}\r\nContent-Type: ${CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
    // Requests queued before it are answered first (settle() sends it once idle).
    this.settle();
  }

  private sendRefusal(): void {
    const r = this.refusal;
    this.refusal = undefined;
    if (r !== undefined && !this.socket.destroyed) this.socket.end(r);
  }
}

/** A server speaking just enough HTTP/1.1 for dockerd's plugin calls (see the top of this file). */
export function createPluginHttpServer(handler: PluginHttpHandler, opts: PluginHttpOptions = {}): Server & { closeAllConnections(): void } {
  const o = {
    maxHeaderBytes: opts.maxHeaderBytes ?? 16 * 1024,
    maxBodyBytes: opts.maxBodyBytes ?? 8 * 1024 * 1024,
    idleTimeoutMs: opts.idleTimeoutMs ?? 120_000,
    onError: opts.onError,
  };
  const sockets = new Set<Socket>();
  // allowHalfOpen: a client that ends its side after sending still gets its answers (see onEnd).
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    new Connection(socket, handler, o);
  }) as Server & { closeAllConnections(): void };
  server.closeAllConnections = () => {
    for (const s of sockets) s.destroy();
  };
  return server;
}
