// Raw HTTP/1.1 requests to a Docker engine's unix socket, byte for byte as
// given: for tests that must send what no client library would (a request
// target like `foo:/v1.41/containers/create`, a body with a stray `}` after
// the object, keys in another case, a 1 MiB padding) and see exactly what
// dockerd answers.
//
//   const r = await rawDocker(engine.socketPath, { method: 'POST', target: '/v1.41/containers/create?name=x', body: '{"Image":"busybox"}}' });
//   r.status; r.text; r.json();
//
// One connection per request (`Connection: close`); the body is sent with a
// Content-Length unless `chunked` is set. Bodies are sent as given (a string
// as UTF-8), never re-encoded.
import { connect } from 'node:net';

export interface RawRequest {
  method: string;
  /** The request target exactly as it goes on the request line. */
  target: string;
  body?: string | Buffer;
  /** Default "application/json" when there is a body; null = no Content-Type header. */
  contentType?: string | null;
  /** More header lines (name → value), sent after the default ones. */
  headers?: Record<string, string>;
  /** Send the body with `Transfer-Encoding: chunked` (one chunk) instead of a Content-Length. */
  chunked?: boolean;
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
}

export interface RawResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The body (de-chunked), as text. */
  text: string;
  /** The body parsed as JSON (throws when it is not). */
  json<T = unknown>(): T;
  /** dockerd's error message (`{"message": …}`), or the text. */
  message: string;
}

export async function rawDocker(socketPath: string, req: RawRequest): Promise<RawResponse> {
  // dockerd answers a request it refuses without reading a large body, then
  // closes; a write into the closed socket (EPIPE) makes Node drop the
  // answer already received. The body goes out in slices, stopping once an
  // answer has arrived; should the race still be lost, the request is sent
  // again (dockerd refused it without acting on it).
  for (let attempt = 1; ; attempt++) {
    try {
      return await rawOnce(socketPath, req);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (attempt >= 6 || (code !== 'EPIPE' && code !== 'ECONNRESET')) throw err;
      // Under CI load the race was lost three times in a row once: back off a little.
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

const SLICE = 64 * 1024;

function rawOnce(socketPath: string, req: RawRequest): Promise<RawResponse> {
  const body = req.body === undefined ? undefined : typeof req.body === 'string' ? Buffer.from(req.body, 'utf8') : req.body;
  let head = `${req.method} ${req.target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: bulkhead-raw-test\r\nConnection: close\r\n`;
  const contentType = req.contentType === undefined ? (body ? 'application/json' : null) : req.contentType;
  if (contentType !== null) head += `Content-Type: ${contentType}\r\n`;
  if (body && req.chunked) head += 'Transfer-Encoding: chunked\r\n';
  else if (body || req.method === 'POST') head += `Content-Length: ${body?.length ?? 0}\r\n`;
  for (const [k, v] of Object.entries(req.headers ?? {})) head += `${k}: ${v}\r\n`;
  head += '\r\n';
  const payload = body && req.chunked
    ? Buffer.concat([Buffer.from(head), Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')])
    : Buffer.concat([Buffer.from(head), body ?? Buffer.alloc(0)]);

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const s = connect(socketPath);
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      const parsed = chunks.length > 0 ? parseResponse(Buffer.concat(chunks)) : undefined;
      if (parsed) resolve(parsed);
      else reject(err ?? new Error(`no HTTP response from ${socketPath} to ${req.method} ${req.target}`));
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${req.timeoutMs ?? 30_000} ms to ${req.method} ${req.target}`)), req.timeoutMs ?? 30_000);
    // Not end(): Go's server cancels a request's context when the client half-closes.
    const send = (off: number): void => {
      if (settled || chunks.length > 0 || off >= payload.length) return;
      s.write(payload.subarray(off, off + SLICE), (err) => {
        if (!err) setImmediate(() => send(off + SLICE));
      });
    };
    s.on('connect', () => send(0));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      // Done once the answer is complete: after refusing a large body unread,
      // dockerd may wait for the rest of it before it closes.
      if (isComplete(Buffer.concat(chunks))) finish();
    });
    s.on('end', () => finish());
    s.on('close', () => finish());
    s.on('error', (e) => finish(e));
  });
}

/** Whether `raw` holds a whole response framed by Content-Length or chunking (or one without a body). */
function isComplete(raw: Buffer): boolean {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const head = raw.toString('latin1', 0, end);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
  if (status === 204 || status === 304) return true;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) return raw.length - (end + 4) >= Number(cl[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return raw.subarray(end + 4).includes('\r\n0\r\n\r\n') || raw.subarray(end + 4).toString('latin1').startsWith('0\r\n\r\n');
  return false;
}

/** Parses a complete HTTP/1.1 response; undefined when it is not one (yet). */
function parseResponse(raw: Buffer): RawResponse | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const lines = raw.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(end + 4);
  if ((headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked') {
    const out: Buffer[] = [];
    for (;;) {
      const eol = rest.indexOf('\r\n');
      if (eol === -1) break;
      const n = parseInt(rest.toString('latin1', 0, eol).split(';')[0]!, 16);
      if (!(n > 0)) break;
      out.push(rest.subarray(eol + 2, eol + 2 + n));
      rest = rest.subarray(eol + 2 + n + 2);
    }
    rest = Buffer.concat(out);
  } else if (headers['content-length'] !== undefined) {
    rest = rest.subarray(0, Number(headers['content-length']));
  }
  const text = rest.toString('utf8');
  let message = text.trim();
  try {
    const j = JSON.parse(text) as { message?: unknown };
    if (typeof j?.message === 'string') message = j.message;
  } catch {
    // not JSON
  }
  return { status: Number(m[1]), headers, text, message, json: <T>() => JSON.parse(text) as T };
}
