// Raw HTTP/1.1 over a unix socket, byte for byte: the differential test
// controls the request target, the headers, the framing (Content-Length or
// chunked) and the body exactly, which no HTTP client library lets it do
// (they normalise targets, refuse odd ones and pick the framing themselves).
import { connect } from 'node:net';

export interface RawRequestSpec {
  method: string;
  /** Sent as is on the request line ("foo:/v1.41/containers/create" included). */
  target: string;
  /** Extra header lines, in order, sent as given. */
  headers?: readonly [string, string][];
  /** Omitted: no body and no framing header. */
  body?: Buffer;
  /** Send the body with Transfer-Encoding: chunked in these chunk sizes (rest in one chunk). */
  chunks?: readonly number[];
  /** `Content-Type` value; null = no Content-Type header. */
  contentType?: string | null;
}

/** The exact bytes of a request. Always `Connection: close`: one request per connection, read to EOF. */
export function renderRequest(spec: RawRequestSpec): Buffer {
  const lines = [`${spec.method} ${spec.target} HTTP/1.1`, 'Host: docker'];
  for (const [k, v] of spec.headers ?? []) lines.push(`${k}: ${v}`);
  if (spec.contentType !== null && spec.contentType !== undefined) lines.push(`Content-Type: ${spec.contentType}`);
  lines.push('Connection: close');
  const body = spec.body;
  if (body === undefined) return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  if (spec.chunks === undefined) {
    lines.push(`Content-Length: ${body.length}`);
    return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
  }
  lines.push('Transfer-Encoding: chunked');
  const parts: Buffer[] = [Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1')];
  let off = 0;
  for (const size of [...spec.chunks, Number.MAX_SAFE_INTEGER]) {
    if (off >= body.length) break;
    const piece = body.subarray(off, Math.min(body.length, off + Math.max(1, size)));
    off += piece.length;
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`, 'latin1'), piece, Buffer.from('\r\n', 'latin1'));
  }
  parts.push(Buffer.from('0\r\n\r\n', 'latin1'));
  return Buffer.concat(parts);
}

export interface RawResponse {
  /** 0 when no status line came back (connection closed, or timed out). */
  status: number;
  /** Header names lower-cased; the last value wins. */
  headers: Record<string, string>;
  /** De-chunked when the response was chunked; otherwise everything after the head. */
  body: Buffer;
  timedOut: boolean;
}

/** Writes `bytes` to the socket and reads until the server closes (or `timeoutMs`). */
export function sendRaw(socketPath: string, bytes: Buffer, timeoutMs = 20_000): Promise<RawResponse> {
  return new Promise((resolve) => {
    const sock = connect(socketPath);
    const got: Buffer[] = [];
    let timedOut = false;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(parseResponse(Buffer.concat(got), timedOut));
    };
    const timer = setTimeout(() => {
      timedOut = true;
      finish();
    }, timeoutMs);
    // write, not end: a half-closed connection makes Go's server cancel the request's
    // context (dockerd then answers 500 "context canceled" to some routes).
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (b: Buffer) => {
      got.push(b);
      // A response framed by Content-Length (or chunked) is complete before the server
      // closes: dockerd keeps some connections open for seconds despite `Connection: close`.
      if (complete(Buffer.concat(got))) finish();
    });
    sock.on('error', finish);
    sock.on('close', finish);
  });
}

function complete(raw: Buffer): boolean {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const head = raw.subarray(0, end).toString('latin1').toLowerCase();
  const len = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (len) return raw.length - (end + 4) >= Number(len[1]);
  if (/\r\ntransfer-encoding:\s*chunked/.test(head)) return raw.subarray(end + 4).includes('\r\n0\r\n\r\n') || raw.subarray(end + 4, end + 9).toString('latin1') === '0\r\n\r\n';
  // 204/304 have no body.
  return /^http\/1\.[01] (204|304)/.test(head);
}

function parseResponse(raw: Buffer, timedOut: boolean): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return { status: 0, headers: {}, body: raw, timedOut };
  const head = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = raw.subarray(end + 4);
  if ((headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked') body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: m ? Number(m[1]) : 0, headers, body, timedOut };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  while (off < b.length) {
    const eol = b.indexOf('\r\n', off);
    if (eol === -1) break;
    const size = parseInt(b.subarray(off, eol).toString('latin1').split(';')[0]!, 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    off = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/**
 * The output of an attached, non-TTY exec or container: dockerd's
 * multiplexed stream (8-byte frame headers: stream, 0, 0, 0, big-endian size).
 */
export function demux(b: Buffer): { stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  let off = 0;
  while (off + 8 <= b.length) {
    const kind = b[off]!;
    const size = b.readUInt32BE(off + 4);
    const payload = b.subarray(off + 8, off + 8 + size).toString('utf8');
    if (kind === 2) stderr += payload;
    else stdout += payload;
    off += 8 + size;
  }
  return { stdout, stderr };
}

/** The JSON body of a response, or undefined. */
export function jsonOf(r: RawResponse): unknown {
  try {
    return JSON.parse(r.body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The request as it reads on a terminal: UTF-8 text with CR/LF and control
 * bytes escaped, runs of padding collapsed, then cut at `max` characters.
 * Non-ASCII key letters (ſ U+017F, K U+212A) are shown as themselves and
 * named at the end, since they look like s and K.
 */
export function showRequest(bytes: Buffer, max = 4000): string {
  const text = bytes.toString('utf8');
  let s = text
    .replace(/ {64,}|x{64,}|\t{64,}|\n{64,}/g, (run) => `[${run.length} × ${JSON.stringify(run[0])}]`)
    .replace(/\r/g, '\\r')
    .replace(/\n/g, '\\n\n')
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  if (s.length > max) s = `${s.slice(0, max)}… [${s.length - max} more characters]`;
  const odd = [...new Set([...text].filter((c) => c.charCodeAt(0) > 0x7e))].slice(0, 8);
  if (odd.length > 0) s += `\n  (non-ASCII: ${odd.map((c) => `${c} U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`).join(', ')})`;
  return s;
}
