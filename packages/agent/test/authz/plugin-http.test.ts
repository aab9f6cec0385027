// The hand-written HTTP/1.1 transport of the authorization plugin socket,
// driven through raw unix-socket connections so each test controls the exact
// bytes and their split into writes: framing (Content-Length, chunked),
// keep-alive and close, pipelining in order, refusal of malformed input, body
// and head limits, handler failures, idle timeout and shutdown.
import t, { type Test } from 'tap';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPluginHttpServer, type PluginHttpHandler, type PluginHttpOptions, type PluginHttpRequest } from '../../src/authz/plugin-http';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';
/** Upper bound for any single wait, so a broken server fails a test instead of hanging it. */
const WAIT_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface RawResponse {
  status: number;
  reason: string;
  /** Lower-cased names; a repeated header keeps its last value. */
  headers: Record<string, string>;
  /** The head exactly as received, without the blank line. */
  head: string;
  body: string;
}

/** Splits received bytes into complete responses (framed by Content-Length, which this server always sends). */
function parseResponses(data: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) return out;
    const head = data.toString('latin1', at, end);
    const [statusLine, ...lines] = head.split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(statusLine!);
    if (!m) throw new Error(`unparseable status line ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    if (headers['content-length'] === undefined) throw new Error(`response without Content-Length: ${JSON.stringify(head)}`);
    const length = Number(headers['content-length']);
    if (data.length < end + 4 + length) return out;
    out.push({ status: Number(m[1]), reason: m[2]!, headers, head, body: data.toString('utf8', end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
}

/** A client socket that keeps every byte the server sends and notices when the server closes. */
class RawClient {
  data = Buffer.alloc(0);
  closed = false;
  private wake: (() => void)[] = [];

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    socket.on('error', () => undefined); // e.g. EPIPE when writing after the server closed; 'close' follows
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private notify(): void {
    for (const w of this.wake.splice(0)) w();
  }

  /** Waits until `done()` holds; rejects after WAIT_MS with `what` in the message. */
  private until(done: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; received ${JSON.stringify(this.data.toString('latin1'))}, closed=${this.closed}`)), ms);
      const check = () => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else {
          this.wake.push(check);
        }
      };
      check();
    });
  }

  write(bytes: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Writes `bytes` in pieces of `size` bytes with a pause between, so the server sees many small reads. */
  async writeSlowly(bytes: string | Buffer, size = 1, pauseMs = 1): Promise<void> {
    const b = Buffer.from(bytes);
    for (let i = 0; i < b.length; i += size) {
      await this.write(b.subarray(i, i + size));
      await sleep(pauseMs);
    }
  }

  responses(): RawResponse[] {
    return parseResponses(this.data);
  }

  /** The first `n` responses; rejects if the server closes or times out before they all arrived. */
  async read(n: number): Promise<RawResponse[]> {
    await this.until(() => this.responses().length >= n || this.closed, `${n} response(s)`);
    const got = this.responses();
    if (got.length < n) throw new Error(`server closed after ${got.length} of ${n} responses; received ${JSON.stringify(this.data.toString('latin1'))}`);
    return got.slice(0, n);
  }

  /** Resolves once the server has closed the connection. */
  waitClosed(ms = WAIT_MS): Promise<void> {
    return this.until(() => this.closed, 'the server to close the connection', ms);
  }
}

interface Harness {
  path: string;
  server: ReturnType<typeof createPluginHttpServer>;
  /** What onError received. */
  errors: Error[];
  /** Every request the handler was called with, in call order. */
  seen: PluginHttpRequest[];
  connect(): Promise<RawClient>;
}

/** Echoes what the handler received, so a response proves which request it answers. */
const echo = (req: PluginHttpRequest) => ({ status: 200, body: JSON.stringify({ method: req.method, url: req.url, body: req.body.toString(), tooBig: req.tooBig, size: req.size }) });

async function start(t: Test, handler: PluginHttpHandler = echo, opts: PluginHttpOptions = {}): Promise<Harness> {
  // Not t.testdir(): its name embeds the test's name, and a unix socket path
  // over 107 bytes is silently truncated by the kernel interface.
  const dir = mkdtempSync(join(tmpdir(), 'bk-http-'));
  const path = join(dir, 's.sock');
  const errors: Error[] = [];
  const seen: PluginHttpRequest[] = [];
  const server = createPluginHttpServer(
    (req) => {
      seen.push(req);
      return handler(req);
    },
    { onError: (e) => errors.push(e), ...opts },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  const clients: RawClient[] = [];
  t.teardown(async () => {
    for (const c of clients) c.socket.destroy();
    server.closeAllConnections();
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    path,
    server,
    errors,
    seen,
    async connect() {
      const c = await RawClient.connect(path);
      clients.push(c);
      return c;
    },
  };
}

const post = (url: string, body: string, extra = '') => `POST ${url} HTTP/1.1\r\nHost: docker\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
const chunkedRequest = 'POST /chunked HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n' + '5;x=y\r\nhello\r\n' + '1\r\n \r\n' + 'A ; name="q"\r\n0123456789\r\n' + '0;last=1\r\nX-Trailer: v\r\nOther: w\r\n\r\n';
const chunkedBody = 'hello 0123456789';

t.test('POST with Content-Length: handler input, exact response bytes, keep-alive', async (t) => {
  const h = await start(t, (req) => (req.url.startsWith('/created') ? { status: 201, body: '{}' } : req.url === '/missing' ? { status: 404, body: '{"Err":"no"}' } : { status: 200, body: '{"Msg":"héllo"}' }));
  const c = await h.connect();

  await c.write(post('/AuthZPlugin.AuthZReq', '{"User":"u"}'));
  const [first] = await c.read(1);
  t.equal(h.seen.length, 1);
  t.equal(h.seen[0]!.method, 'POST');
  t.equal(h.seen[0]!.url, '/AuthZPlugin.AuthZReq');
  t.equal(h.seen[0]!.body.toString(), '{"User":"u"}');
  t.equal(h.seen[0]!.tooBig, false);
  t.equal(h.seen[0]!.size, 12);
  t.equal(c.data.toString('utf8'), `HTTP/1.1 200 OK\r\nContent-Type: ${CONTENT_TYPE}\r\nContent-Length: 16\r\n\r\n{"Msg":"héllo"}`, 'exact bytes; Content-Length counts UTF-8 bytes, not characters');
  t.equal(first!.body, '{"Msg":"héllo"}');
  t.equal(first!.headers['connection'], undefined, 'no Connection: close on a kept-alive connection');

  await sleep(50);
  t.equal(c.closed, false, 'connection stays open after the response');

  await c.write(post('/missing', ''));
  await c.write(`GET /created?x=1 HTTP/1.1\r\nHost: docker\r\n\r\n`);
  const [, second, third] = await c.read(3);
  t.equal(second!.status, 404);
  t.equal(second!.reason, 'Not Found');
  t.equal(second!.body, '{"Err":"no"}');
  t.equal(third!.status, 201);
  t.equal(third!.reason, 'Status', 'a status without a known reason phrase still gets one');
  t.equal(third!.headers['content-type'], CONTENT_TYPE);
  t.equal(h.seen[2]!.method, 'GET');
  t.equal(h.seen[2]!.url, '/created?x=1', 'the request target is passed as sent, query included');
  t.equal(c.closed, false);
  t.same(h.errors, []);
});

t.test('header names are case-insensitive; identical duplicate Content-Length is accepted', async (t) => {
  const h = await start(t);
  const c = await h.connect();
  await c.write('POST /a HTTP/1.1\r\ncontent-LENGTH:3\r\nCONTENT-LENGTH:   3  \r\nX-Empty:\r\n\r\nabc');
  const [r] = await c.read(1);
  t.equal(r!.status, 200);
  t.equal(h.seen[0]!.body.toString(), 'abc');
  t.same(h.errors, []);
});

t.test('a request written byte by byte gives the same result', async (t) => {
  const h = await start(t);
  const c = await h.connect();
  const body = '{"RequestMethod":"POST","RequestUri":"/v1.41/containers/create"}';
  await c.writeSlowly(post('/AuthZPlugin.AuthZReq', body));
  const [r] = await c.read(1);
  t.equal(r!.status, 200);
  t.same(JSON.parse(r!.body), { method: 'POST', url: '/AuthZPlugin.AuthZReq', body, tooBig: false, size: body.length });
  t.equal(h.seen.length, 1);

  await c.writeSlowly(chunkedRequest, 3);
  const [, r2] = await c.read(2);
  t.equal(JSON.parse(r2!.body).body, chunkedBody, 'a chunked body written in 3-byte pieces');
  t.equal(c.closed, false);
  t.same(h.errors, []);
});

t.test('a request split in two at every possible point', async (t) => {
  const h = await start(t);
  const c = await h.connect();
  for (const [request, expected] of [
    [post('/split', 'abcdef'), 'abcdef'],
    [chunkedRequest, chunkedBody],
  ] as const) {
    for (let i = 1; i < request.length; i++) {
      const before = c.responses().length;
      await c.write(request.slice(0, i));
      await sleep(1);
      await c.write(request.slice(i));
      const got = await c.read(before + 1);
      const body = (JSON.parse(got[before]!.body) as { body: string }).body;
      if (body !== expected) t.fail(`split at ${i}: body ${JSON.stringify(body)}`);
    }
  }
  t.equal(c.responses().length, post('/split', 'abcdef').length - 1 + chunkedRequest.length - 1, 'one response per request');
  t.equal(h.seen.every((r) => !r.tooBig), true);
  t.same(h.errors, []);
});

t.test('pipelined requests in one write are answered in request order', async (t) => {
  // The first answer is the slowest: responses must still leave in order, and
  // the handler is called for the next request only once the previous one is answered.
  const delays: Record<string, number> = { '/1': 150, '/2': 20, '/3': -1 };
  const log: string[] = [];
  const h = await start(t, (req) => {
    log.push(`start ${req.url}`);
    const d = delays[req.url]!;
    if (d < 0) {
      log.push(`end ${req.url}`);
      return echo(req); // synchronous answer mixed with async ones
    }
    return sleep(d).then(() => {
      log.push(`end ${req.url}`);
      return echo(req);
    });
  });

  const c2 = await h.connect();
  await c2.write(post('/1', 'one') + post('/2', 'two'));
  const two = await c2.read(2);
  t.same(
    two.map((r) => JSON.parse(r.body).body),
    ['one', 'two'],
  );

  log.length = 0;
  const c3 = await h.connect();
  await c3.write(post('/1', 'one') + 'POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n' + 'GET /3 HTTP/1.1\r\n\r\n');
  const three = await c3.read(3);
  t.same(
    three.map((r) => JSON.parse(r.body).url),
    ['/1', '/2', '/3'],
  );
  t.same(
    three.map((r) => JSON.parse(r.body).body),
    ['one', 'two', ''],
  );
  t.same(log, ['start /1', 'end /1', 'start /2', 'end /2', 'start /3', 'end /3'], 'one handler call at a time');
  t.equal(c3.closed, false);
  t.same(h.errors, []);
});

t.test('Transfer-Encoding: chunked', async (t) => {
  const h = await start(t);
  const c = await h.connect();
  await c.write(chunkedRequest);
  const [r] = await c.read(1);
  t.equal(r!.status, 200);
  t.equal(h.seen[0]!.body.toString(), chunkedBody, 'chunks reassembled; extensions and trailers dropped');
  t.equal(h.seen[0]!.size, chunkedBody.length);

  // An empty chunked body, "Chunked" in another case, and a second request afterwards.
  await c.write('POST /empty HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n' + post('/after', 'x'));
  const [, empty, after] = await c.read(3);
  t.equal(JSON.parse(empty!.body).body, '');
  t.equal(JSON.parse(after!.body).body, 'x', 'the connection is in sync after a chunked body');

  // A single chunk: the body is that chunk.
  await c.write('POST /one HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n' + 'z'.repeat(255) + '\r\n0\r\n\r\n');
  const [, , , one] = await c.read(4);
  t.equal(JSON.parse(one!.body).body, 'z'.repeat(255));
  t.same(h.errors, []);
});

t.test('Connection: close and HTTP/1.0', async (t) => {
  const h = await start(t);

  const closeReq = await h.connect();
  await closeReq.write(post('/c', 'x', 'Connection: close\r\n'));
  const [r] = await closeReq.read(1);
  t.equal(r!.status, 200);
  t.equal(r!.headers['connection'], 'close');
  await closeReq.waitClosed();

  const tokenList = await h.connect();
  await tokenList.write('GET /t HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n');
  const [r2] = await tokenList.read(1);
  t.equal(r2!.headers['connection'], 'close', '"close" among other tokens, any case');
  await tokenList.waitClosed();

  const http10 = await h.connect();
  await http10.write('GET /old HTTP/1.0\r\n\r\n');
  const [r3] = await http10.read(1);
  t.equal(r3!.status, 200);
  t.equal(r3!.headers['connection'], 'close', 'HTTP/1.0 closes by default');
  await http10.waitClosed();

  const http10ka = await h.connect();
  await http10ka.write('POST /old HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi');
  const [r4] = await http10ka.read(1);
  t.equal(r4!.headers['connection'], undefined);
  await sleep(50);
  t.equal(http10ka.closed, false, 'HTTP/1.0 with Connection: keep-alive stays open');
  await http10ka.write('GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  const [, r5] = await http10ka.read(2);
  t.equal(JSON.parse(r5!.body).url, '/again');
  t.equal(http10ka.closed, false);

  t.equal(h.seen.length, 5);
  t.same(h.errors, []);
});

t.test('data after a Connection: close request is ignored (separate write)', async (t) => {
  const h = await start(t, (req) => sleep(100).then(() => echo(req)));
  const c = await h.connect();
  await c.write(post('/last', 'x', 'Connection: close\r\n'));
  await sleep(20); // the handler is still running
  await c.write(post('/ignored', 'y'));
  await c.waitClosed();
  t.same(
    c.responses().map((r) => JSON.parse(r.body).url),
    ['/last'],
  );
  t.same(
    h.seen.map((r) => r.url),
    ['/last'],
    'the handler is not called for what follows',
  );
  t.same(h.errors, []);
});

t.test('data after a Connection: close request is ignored (same write)', async (t) => {
  const h = await start(t);
  const c = await h.connect();
  await c.write(post('/last', 'x', 'Connection: close\r\n') + post('/ignored', 'y') + 'NOT HTTP\r\n\r\n');
  await c.waitClosed();
  t.same(
    c.responses().map((r) => r.status),
    [200],
    'one response, then close',
  );
  t.same(
    h.seen.map((r) => r.url),
    ['/last'],
    'the handler is not called for the request after Connection: close',
  );
  t.same(h.errors, [], 'nothing after Connection: close is parsed, so nothing is refused');
});

// Each case: the bytes, the expected status, and what the error message says.
const malformed: [name: string, bytes: string | Buffer, status: number, message: RegExp][] = [
  ['garbage request line', 'HELLO\r\n\r\n', 400, /bad request line "HELLO"/],
  ['lower-case method', 'get / HTTP/1.1\r\n\r\n', 400, /bad request line/],
  ['HTTP/2.0 version', 'GET / HTTP/2.0\r\n\r\n', 400, /bad request line/],
  ['missing request target', 'GET  HTTP/1.1\r\n\r\n', 400, /bad request line/],
  ['header line without colon', 'GET / HTTP/1.1\r\nHost docker\r\n\r\n', 400, /bad header line "Host docker"/],
  ['empty header name', 'GET / HTTP/1.1\r\n: x\r\n\r\n', 400, /bad header line/],
  ['space before the colon', 'POST / HTTP/1.1\r\nContent-Length : 1\r\n\r\nx', 400, /bad header line/],
  ['obsolete line folding', 'GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n', 400, /bad header line/],
  ['non-digit Content-Length', 'POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n', 400, /bad Content-Length "abc"/],
  ['negative Content-Length', 'POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 400, /bad Content-Length/],
  ['Content-Length list', 'POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx', 400, /bad Content-Length/],
  ['16-digit Content-Length', 'POST / HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\n', 400, /bad Content-Length/],
  ['conflicting Content-Length', 'POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy', 400, /conflicting Content-Length/],
  ['Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, /both Content-Length and Transfer-Encoding/],
  ['Transfer-Encoding and Content-Length', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n', 400, /both Content-Length and Transfer-Encoding/],
  ['Transfer-Encoding gzip', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n', 501, /transfer coding "gzip" not supported/],
  ['Transfer-Encoding gzip, chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 501, /not supported/],
  ['non-hex chunk size', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400, /bad chunk size "zz"/],
  ['empty chunk size', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n', 400, /bad chunk size/],
  ['9-digit chunk size', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100000000\r\n', 400, /bad chunk size/],
  ['chunk size line without end', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n' + '1'.repeat(1100), 400, /chunk size line too long/],
  ['chunk data not followed by CRLF', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n', 400, /chunk not followed by CRLF/],
  ['head over maxHeaderBytes, complete', `GET / HTTP/1.1\r\nX-Pad: ${'a'.repeat(300)}\r\n\r\n`, 431, /request head larger than 256 bytes/],
  ['head over maxHeaderBytes, no blank line yet', `GET / HTTP/1.1\r\nX-Pad: ${'a'.repeat(300)}`, 431, /request head larger than 256 bytes/],
  ['chunked trailer over maxHeaderBytes', `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'t'.repeat(300)}`, 431, /chunked trailer too large/],
];

t.test('malformed requests: refused with a status, Connection: close, and onError', async (t) => {
  const h = await start(t, echo, { maxHeaderBytes: 256 });
  for (const [name, bytes, status, message] of malformed) {
    await t.test(name, async (t) => {
      const errorsBefore = h.errors.length;
      const seenBefore = h.seen.length;
      const c = await h.connect();
      await c.write(bytes);
      await c.waitClosed();
      const got = c.responses();
      t.equal(got.length, 1, 'exactly one response');
      t.equal(got[0]?.status, status);
      t.equal(got[0]?.headers['connection'], 'close');
      t.equal(got[0]?.headers['content-type'], CONTENT_TYPE);
      t.match(JSON.parse(got[0]?.body ?? '{}'), { Err: message }, 'the body says what was wrong');
      t.equal(h.seen.length, seenBefore, 'the handler is not called');
      const errs = h.errors.slice(errorsBefore);
      t.equal(errs.length, 1, 'onError called once');
      t.type(errs[0], Error);
      t.match(errs[0]?.message, message);
    });
  }
});

t.test('a malformed request with its bytes in many writes is refused the same way', async (t) => {
  const h = await start(t, echo, { maxHeaderBytes: 256 });
  const c = await h.connect();
  // Ends where the error shows (the 2 bytes after the chunk), so no write meets a closed socket.
  await c.writeSlowly('POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r', 4);
  await c.waitClosed();
  t.same(
    c.responses().map((r) => r.status),
    [400],
  );
  t.equal(h.seen.length, 0);
  t.match(h.errors.map((e) => e.message), [/chunk not followed by CRLF/]);
});

t.test('a head of exactly maxHeaderBytes is accepted however it is split', async (t) => {
  const h = await start(t, echo, { maxHeaderBytes: 256 });
  const prefix = 'GET /limit HTTP/1.1\r\nX-Pad: ';
  const head = prefix + 'p'.repeat(256 - prefix.length);
  t.equal(head.length, 256);

  const oneWrite = await h.connect();
  await oneWrite.write(head + '\r\n\r\n');
  const [r] = await oneWrite.read(1);
  t.equal(r!.status, 200, 'in one write: accepted');

  const split = await h.connect();
  await split.write(head + '\r\n\r');
  await sleep(20);
  await split.write('\n').catch(() => undefined); // EPIPE if the server already refused the first part
  await split.read(1);
  t.same(
    split.responses().map((x) => x.status),
    [200],
    'with the last byte of the blank line arriving separately: accepted as well',
  );
  t.same(
    h.errors.map((e) => e.message),
    [],
  );
});

t.test('a malformed request pipelined after a slow valid one', async (t) => {
  const h = await start(t, (req) => sleep(req.url === '/slow' ? 150 : 10).then(() => echo(req)));

  // Same write: the valid request is answered first, then the refusal, then close.
  const c = await h.connect();
  await c.write(post('/slow', 'a') + 'BAD REQUEST\r\n\r\n');
  await c.waitClosed();
  const got = c.responses();
  t.same(
    got.map((r) => r.status),
    [200, 400],
  );
  t.equal(JSON.parse(got[0]!.body).url, '/slow');
  t.equal(got[0]!.headers['connection'], undefined);
  t.equal(got[1]!.headers['connection'], 'close');
  t.match(h.errors.map((e) => e.message), [/bad request line/]);

  // A later write, while the handler is still running.
  const later = await h.connect();
  await later.write(post('/slow', 'b'));
  await sleep(30);
  await later.write('POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n');
  await later.waitClosed();
  t.same(
    later.responses().map((r) => r.status),
    [200, 400],
  );
  t.same(
    h.seen.map((r) => r.url),
    ['/slow', '/slow'],
  );
});

t.test('a malformed request after two valid pipelined ones: both are answered before the refusal', async (t) => {
  const h = await start(t, (req) => sleep(req.url === '/slow' ? 150 : 10).then(() => echo(req)));
  const c = await h.connect();
  await c.write(post('/slow', 'a') + post('/fast', 'b') + 'BAD REQUEST\r\n\r\n');
  await c.waitClosed();
  t.same(
    c.responses().map((r) => (r.status === 200 ? JSON.parse(r.body).url : r.status)),
    ['/slow', '/fast', 400],
    'every well-formed request before the malformed one gets its answer',
  );
  t.same(
    h.seen.map((r) => r.url),
    ['/slow', '/fast'],
  );
});

t.test('bodies over maxBodyBytes: counted, dropped, and the connection stays in sync', async (t) => {
  const h = await start(t, echo, { maxBodyBytes: 100 });
  const c = await h.connect();

  await c.write(post('/big', 'b'.repeat(150)));
  await c.write(post('/exact', 'e'.repeat(100)));
  const [big, exact] = await c.read(2);
  t.same(JSON.parse(big!.body), { method: 'POST', url: '/big', body: '', tooBig: true, size: 150 });
  t.equal(h.seen[0]!.body.length, 0);
  t.same(JSON.parse(exact!.body), { method: 'POST', url: '/exact', body: 'e'.repeat(100), tooBig: false, size: 100 }, 'exactly the limit is kept');

  // Over the limit only with its second write: what was kept is dropped.
  const b = post('/split-big', 's'.repeat(101));
  await c.write(b.slice(0, b.length - 60));
  await sleep(10);
  await c.write(b.slice(b.length - 60));
  // Chunked over the limit.
  await c.write('POST /chunked-big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n' + 'c'.repeat(60) + '\r\n3c\r\n' + 'c'.repeat(60) + '\r\n0\r\n\r\n');
  // And a normal request afterwards.
  await c.write(post('/next', 'ok'));
  const [, , splitBig, chunkedBig, next] = await c.read(5);
  t.same(JSON.parse(splitBig!.body), { method: 'POST', url: '/split-big', body: '', tooBig: true, size: 101 });
  t.same(JSON.parse(chunkedBig!.body), { method: 'POST', url: '/chunked-big', body: '', tooBig: true, size: 120 });
  t.same(JSON.parse(next!.body), { method: 'POST', url: '/next', body: 'ok', tooBig: false, size: 2 });
  t.equal(c.closed, false);
  t.same(h.errors, []);
});

t.test('requests without a body', async (t) => {
  const h = await start(t);
  const c = await h.connect();
  await c.write('POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 0\r\n\r\n');
  await c.write('POST /Plugin.Activate HTTP/1.1\r\nHost: docker\r\n\r\n');
  await c.write('GET / HTTP/1.1\r\n\r\n');
  const got = await c.read(3);
  t.same(
    got.map((r) => r.status),
    [200, 200, 200],
  );
  for (const req of h.seen) {
    t.equal(req.body.length, 0);
    t.equal(req.size, 0);
    t.equal(req.tooBig, false);
  }
  t.same(
    h.seen.map((r) => r.url),
    ['/Plugin.Activate', '/Plugin.Activate', '/'],
  );
  t.same(h.errors, []);
});

t.test('handler failures: 500 with a JSON Err, onError, connection still usable', async (t) => {
  const thrown = new Error('sync bug');
  const rejected = new Error('async bug');
  const h = await start(t, (req) => {
    if (req.url === '/throw') throw thrown;
    if (req.url === '/reject') return sleep(5).then(() => Promise.reject(rejected));
    return echo(req);
  });
  const c = await h.connect();
  await c.write(post('/throw', 'x'));
  const [r1] = await c.read(1);
  t.equal(r1!.status, 500);
  t.equal(r1!.reason, 'Internal Server Error');
  t.equal(r1!.headers['content-type'], CONTENT_TYPE);
  t.same(JSON.parse(r1!.body), { Err: 'internal error in the plugin' });
  t.equal(r1!.headers['connection'], undefined);

  await c.write(post('/reject', 'y'));
  const [, r2] = await c.read(2);
  t.equal(r2!.status, 500);
  t.same(JSON.parse(r2!.body), { Err: 'internal error in the plugin' });

  // Pipelined: a failing request between two good ones.
  await c.write(post('/ok', '1') + post('/reject', '2') + post('/throw', '3') + post('/ok', '4'));
  const got = await c.read(6);
  t.same(
    got.slice(2).map((r) => r.status),
    [200, 500, 500, 200],
  );
  t.equal(JSON.parse(got[5]!.body).body, '4');
  t.equal(c.closed, false);
  t.equal(h.errors.length, 4);
  t.equal(h.errors[0], thrown, 'onError gets what the handler threw');
  t.equal(h.errors[1], rejected, 'onError gets the rejection reason');
});

t.test('a failing handler on a Connection: close request still closes', async (t) => {
  const h = await start(t, () => Promise.reject(new Error('nope')));
  const c = await h.connect();
  await c.write(post('/x', '', 'Connection: close\r\n'));
  await c.waitClosed();
  const got = c.responses();
  t.same(
    got.map((r) => [r.status, r.headers['connection']]),
    [[500, 'close']],
  );
  t.equal(h.errors.length, 1);
});

t.test('without onError, failures are still answered', async (t) => {
  const h = await start(t, () => Promise.reject(new Error('x')), { onError: undefined });
  const c = await h.connect();
  await c.write(post('/x', '') + 'BAD\r\n\r\n');
  await c.waitClosed();
  t.same(
    c.responses().map((r) => r.status),
    [500, 400],
  );
  t.same(h.errors, []);
});

t.test('an onError that throws changes nothing: failures are still answered', async (t) => {
  let calls = 0;
  const h = await start(t, () => Promise.reject(new Error('x')), {
    onError: () => {
      calls++;
      throw new Error('logger broken');
    },
  });
  const c = await h.connect();
  await c.write(post('/x', '') + 'BAD\r\n\r\n');
  await c.waitClosed();
  t.same(c.responses().map((r) => r.status), [500, 400]);
  t.equal(calls, 2, 'called for the handler failure and the malformed request');
});

t.test('idleTimeoutMs closes an idle connection; traffic keeps it open', async (t) => {
  // Generous margins: a loaded CI machine can stall a timer by a few hundred ms.
  const h = await start(t, echo, { idleTimeoutMs: 1000 });
  const idle = await h.connect();
  const opened = Date.now();
  await idle.waitClosed(10_000);
  const after = Date.now() - opened;
  t.ok(after >= 900, `closed after ${after} ms, not before the timeout`);
  t.equal(idle.data.length, 0, 'closed without a response');

  const busy = await h.connect();
  for (let i = 0; i < 6; i++) {
    await busy.write(post('/ping', String(i)));
    await busy.read(i + 1);
    await sleep(100);
  }
  t.equal(busy.closed, false, 'a request every ~100 ms keeps a 1000 ms idle timeout from firing');
  await busy.waitClosed(10_000);
  t.equal(busy.responses().length, 6);
});

t.test('closeAllConnections destroys open sockets; close() then completes', async (t) => {
  let release: () => void = () => undefined;
  const pending = new Promise<void>((resolve) => (release = resolve));
  const h = await start(t, (req) => (req.url === '/wait' ? pending.then(() => echo(req)) : echo(req)));
  const a = await h.connect();
  const b = await h.connect();
  const refused = await h.connect();
  await a.write(post('/ok', '1'));
  await a.read(1);
  await b.write(post('/wait', '2'));
  await refused.write(post('/wait', '3') + 'BAD\r\n\r\n'); // refusal held back behind the pending answer
  await sleep(20);

  const closed = new Promise<void>((resolve, reject) => h.server.close((err) => (err ? reject(err) : resolve())));
  h.server.closeAllConnections();
  await Promise.all([a.waitClosed(), b.waitClosed(), refused.waitClosed()]);
  await Promise.race([closed, sleep(WAIT_MS).then(() => Promise.reject(new Error('server.close() did not complete')))]);
  t.equal(h.server.listening, false);

  release(); // the answers now have nowhere to go: dropped without an error
  await sleep(20);
  t.equal(b.responses().length, 0);
  t.equal(refused.responses().length, 0, 'neither the answer nor the refusal is written to a destroyed socket');
  t.match(h.errors.map((e) => e.message), [/bad request line/]);
});

t.test('a client that half-closes after its request still gets the answer', async (t) => {
  const h = await start(t, (req) => sleep(50).then(() => echo(req)));
  const c = await h.connect();
  await c.write(post('/half', 'x'));
  c.socket.end(); // FIN: no more requests, but the answer is still wanted
  await c.waitClosed();
  t.same(
    c.responses().map((r) => r.status),
    [200],
  );
});

t.test('a client that disconnects while its request is answered', async (t) => {
  const h = await start(t, (req) => sleep(50).then(() => echo(req)));
  const c = await h.connect();
  await c.write(post('/gone', 'x') + post('/gone-too', 'y'));
  await sleep(10);
  c.socket.destroy();
  await sleep(150);
  t.same(h.errors, [], 'nothing to report');
  // The server is still fine for others.
  const d = await h.connect();
  await d.write(post('/next', 'z'));
  const [r] = await d.read(1);
  t.equal(r!.status, 200);
});
