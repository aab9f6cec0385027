// The controller's HTTPS API against hostile HTTP framing and Authorization headers, over raw
// TLS sockets: slow headers from many connections (slowloris), oversized headers, bad chunked
// encoding, ambiguous lengths, pipelining, a 64 KiB Authorization header, control characters in
// a Bearer token, and 1,000 wrong API keys from one address. Node's HTTP parser refuses the
// framing (fastify answers its clientError with a small JSON body and closes); the API refuses
// the credentials (401, then 429 after the documented 30 failures a minute per address). Each
// input runs while a canary — an authenticated GET /v1/agents on a fresh TLS connection from
// ANOTHER loopback address (127.0.0.2, so the per-address limit is not shared) — goes out every
// 25 ms and must be answered within CANARY_BOUND_MS (wide: CI shares two cores).
import t, { type Test } from 'tap';
import { request } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { startApi, type RunningApi } from '../../packages/controller/test/api/fixtures/api-server';
import { API_CONNECTIONS_CHECKING_INTERVAL_MS, API_HANDSHAKE_TIMEOUT_MS, API_HEADERS_TIMEOUT_MS } from '../../packages/controller/src/api/server';
import { recordBadInput, type BadInputCategory } from '../helpers/bad-input-report';

const CANARY_BOUND_MS = 1000;
/**
 * What the tests fail on: a stall, i.e. nobody else answered for seconds. CANARY_BOUND_MS
 * above is the figure the bad-input report flags; under CI load on two shared cores (and
 * coverage) ordinary canaries took up to 2.3 s, while the freezes these inputs caused before
 * their limits existed lasted minutes. Figures belong in RELIABILITY.md, not in pass/fail.
 */
const CANARY_STALL_MS = 5000;
const ANSWER_STALL_MS = 6000;
const ANSWER_BOUND_MS = 2000;
const AGGREGATE_STALL_MS = 30_000;
/** docs/security.md: 30 failed authentications a minute per client address. */
const ADDRESS_LIMIT = 30;

interface Answer {
  status: number;
  headers: string;
  body: string;
}

interface Exchange {
  answers: Answer[];
  closed: boolean;
  timedOut: boolean;
  /** From the last byte written to the wanted answers or the close. */
  ms: number;
}

/** Reads HTTP/1.1 responses (Content-Length framed, as fastify and Node's clientError send them). */
function responses(s: TLSSocket, onAnswer: (a: Answer) => void): void {
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.toString('latin1', 0, end);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      onAnswer({ status: Number(head.split(' ')[1]), headers: head, body: buf.toString('utf8', end + 4, end + 4 + len) });
      buf = buf.subarray(end + 4 + len);
    }
  });
}

function exchange(api: RunningApi, send: (s: TLSSocket) => Promise<void> | void, opts: { want?: number; untilClose?: boolean; timeoutMs?: number } = {}): Promise<Exchange> {
  const want = opts.untilClose ? Infinity : opts.want ?? 1;
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: api.port, ca: api.ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    const answers: Answer[] = [];
    let startedAt = performance.now();
    let sentAt = 0;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean, timedOut = false): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const ms = performance.now() - (sentAt || startedAt);
      s.destroy();
      resolve({ answers, closed, timedOut, ms });
    };
    responses(s, (a) => {
      answers.push(a);
      if (answers.length >= want && sentAt > 0) finish(false);
    });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
    s.on('secureConnect', () => {
      startedAt = performance.now();
      Promise.resolve(send(s)).then(
        () => {
          sentAt = performance.now();
          if (answers.length >= want) return finish(false);
          timer = setTimeout(() => finish(false, true), opts.timeoutMs ?? 10_000);
        },
        (err: unknown) => {
          s.destroy();
          reject(err as Error);
        },
      );
    });
  });
}

const write = (s: TLSSocket, data: Buffer | string): Promise<void> =>
  new Promise((resolve) => {
    if (s.write(data)) resolve();
    else s.once('drain', () => resolve());
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An authenticated GET /v1/agents from 127.0.0.2 every 25 ms, each on a new TLS connection. */
function canary(api: RunningApi): { stop(): Promise<{ worstMs: number; answered: number; failures: string[] }> } {
  let running = true;
  let worstMs = 0;
  let answered = 0;
  const failures: string[] = [];
  const once = (): Promise<number> =>
    new Promise((resolve) => {
      const req = request(
        { host: '127.0.0.1', port: api.port, path: '/v1/agents', localAddress: '127.0.0.2', servername: 'localhost', ca: api.ca.certPem, agent: false, headers: { authorization: `Bearer ${api.apiKey}` }, timeout: 5000 },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(0));
      req.end();
    });
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      await sleep(25);
      const status = await once();
      worstMs = Math.max(worstMs, performance.now() - start - 25);
      if (status === 200) answered++;
      else failures.push(status === 0 ? 'no answer' : String(status));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { worstMs, answered, failures };
    },
  };
}

async function hostile(
  t: Test,
  api: RunningApi,
  category: BadInputCategory,
  input: string,
  expected: string,
  run: () => Promise<{ ms: number | null; got: string; ok: boolean }>,
): Promise<void> {
  const c = canary(api);
  await sleep(60);
  const r = await run();
  await sleep(60);
  const { worstMs, answered, failures } = await c.stop();
  t.same(failures, [], `${input}: every canary answered 200 (${answered})`);
  t.ok(answered > 0, `${input}: the canary was answered meanwhile`);
  t.ok(worstMs < CANARY_STALL_MS, `${input}: slowest canary ${worstMs.toFixed(0)} ms (< ${CANARY_STALL_MS}; report bound ${CANARY_BOUND_MS})`);
  if (r.ms !== null) t.ok(r.ms < ANSWER_STALL_MS, `${input}: answered in ${r.ms.toFixed(0)} ms (< ${ANSWER_STALL_MS}; report bound ${ANSWER_BOUND_MS})`);
  recordBadInput({ category, input, expected, got: r.got, refusedAsDocumented: r.ok, ms: r.ms, canaryMs: worstMs, stalled: worstMs >= CANARY_BOUND_MS || failures.length > 0 || answered === 0 });
}

/** A refusal by Node's parser: this status, fastify's small JSON body, the connection closed. */
function parserRefusal(t: Test, r: Exchange, status: number, what: string): { ms: number; got: string; ok: boolean } {
  const a = r.answers[0];
  t.equal(a?.status, status, `${what}: ${status}`);
  t.ok(r.closed && !r.timedOut, `${what}: connection closed`);
  return { ms: r.ms, got: a ? `${a.status} ${a.body.slice(0, 80)}` : r.timedOut ? 'no answer' : 'closed without answer', ok: a?.status === status && r.closed };
}

/**
 * 1,000 requests are not one answer: the per-answer bound does not apply
 * (under coverage on a busy CI machine sequential ones took 4 ms each). What
 * must hold is that they do not stall the API (the canary) and finish within
 * a stall bound; the mean per request goes in the report.
 */
function aggregate(t: Test, what: string, totalMs: number, got: string, ok: boolean): { ms: null; got: string; ok: boolean } {
  t.ok(totalMs < AGGREGATE_STALL_MS, `${what}: 1,000 answers in ${totalMs.toFixed(0)} ms (< ${AGGREGATE_STALL_MS}: no stall)`);
  return { ms: null, got: `${got}; 1,000 answers in ${totalMs.toFixed(0)} ms (${(totalMs / 1000).toFixed(1)} ms each)`, ok };
}

const refusalOf = (api: RunningApi, bytes: string | Buffer) => exchange(api, (s) => write(s, bytes), { untilClose: true });

t.test('the API against hostile framing and credentials', async (t) => {
  // admin: the framing tests post to routes that read the body (a viewer is refused 403 before it).
  const api = await startApi({ role: 'admin' });
  t.teardown(() => api.close());
  const srv = api.app.server;
  t.comment(`server: requestTimeout ${srv.requestTimeout} ms, headersTimeout ${srv.headersTimeout} ms, socket timeout ${srv.timeout} ms, keepAliveTimeout ${srv.keepAliveTimeout} ms, maxHeaderSize 16 KiB (Node default)`);
  t.equal(srv.headersTimeout, API_HEADERS_TIMEOUT_MS, 'headersTimeout is the documented 10 s');
  t.equal(srv.requestTimeout, 30_000, 'requestTimeout 30 s');

  t.test('slowloris: 100 connections, each sending a header byte every second', async (t) => {
    const N = 100;
    const sockets: TLSSocket[] = [];
    const closedAt: number[] = [];
    const statuses: number[] = [];
    const started = performance.now();
    let trickling = true;
    await hostile(t, api, 'HTTP framing', `slowloris: ${N} connections, 1 header byte/s`, `dropped (408) within headersTimeout ${API_HEADERS_TIMEOUT_MS / 1000} s + ${API_CONNECTIONS_CHECKING_INTERVAL_MS / 1000} s`, async () => {
      await Promise.all(Array.from({ length: N }, () => new Promise<void>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: api.port, ca: api.ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
          s.write('GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nX-Slow: ');
          resolve();
        });
        s.on('error', () => undefined);
        responses(s, (a) => statuses.push(a.status));
        s.on('close', () => closedAt.push(performance.now() - started));
        sockets.push(s);
      })));
      void (async () => {
        while (trickling) {
          await sleep(1000);
          for (const s of sockets) if (!s.destroyed) s.write('a');
        }
      })();
      await sleep(3000); // the canary runs while all of them trickle
      return { ms: null, got: 'held while trickling', ok: true };
    });
    // Each is dropped once its headers have taken headersTimeout, checked every interval.
    const bound = API_HEADERS_TIMEOUT_MS + API_CONNECTIONS_CHECKING_INTERVAL_MS + 3000;
    while (closedAt.length < N && performance.now() - started < bound + 5000) await sleep(250);
    trickling = false;
    const worst = Math.max(...closedAt);
    t.equal(closedAt.length, N, `all ${N} slow connections were dropped by the server`);
    t.ok(worst < bound, `the last was dropped ${(worst / 1000).toFixed(1)} s after it connected (< ${bound / 1000} s)`);
    t.ok(statuses.length > 0 && statuses.every((s) => s === 408), `dropped with 408 Request Timeout (${statuses.length} answers: ${[...new Set(statuses)].join(',')})`);
    recordBadInput({ category: 'HTTP framing', input: `slowloris: time until the server drops all ${N}`, expected: `< ${bound / 1000} s, 408`, got: `${closedAt.length} dropped, last after ${(worst / 1000).toFixed(1)} s, ${[...new Set(statuses)].join(',')}`, refusedAsDocumented: closedAt.length === N && worst < bound, ms: worst, canaryMs: null, stalled: false });
    for (const s of sockets) s.destroy();
  });

  t.test('connections that never finish the TLS handshake', async (t) => {
    // Before the handshake Node's HTTP timeouts do not apply; handshakeTimeout does (default 120 s).
    const N = 50;
    const started = performance.now();
    const closedAt: number[] = [];
    const sockets = Array.from({ length: N }, () => {
      const s = netConnect(api.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('close', () => closedAt.push(performance.now() - started));
      s.on('connect', () => s.write(Buffer.from([0x16, 0x03, 0x01]))); // the first bytes of a ClientHello, then nothing
      s.resume();
      return s;
    });
    await hostile(t, api, 'HTTP framing', `${N} connections stuck in the TLS handshake`, `dropped within handshakeTimeout ${API_HANDSHAKE_TIMEOUT_MS / 1000} s`, async () => {
      await sleep(2000);
      return { ms: null, got: 'held', ok: true };
    });
    const bound = API_HANDSHAKE_TIMEOUT_MS + 3000;
    while (closedAt.length < N && performance.now() - started < bound + 5000) await sleep(250);
    const worst = Math.max(...closedAt);
    t.equal(closedAt.length, N, `all ${N} were dropped by the server`);
    t.ok(worst < bound, `the last after ${(worst / 1000).toFixed(1)} s (< ${bound / 1000} s)`);
    recordBadInput({ category: 'HTTP framing', input: `TLS handshake never finished: time until the server drops all ${N}`, expected: `< ${bound / 1000} s`, got: `${closedAt.length} dropped, last after ${(worst / 1000).toFixed(1)} s`, refusedAsDocumented: closedAt.length === N && worst < bound, ms: worst, canaryMs: null, stalled: false });
    for (const s of sockets) s.destroy();
  });

  t.test('oversized headers', async (t) => {
    await hostile(t, api, 'HTTP framing', 'header block of 64 KiB', '431', async () =>
      parserRefusal(t, await refusalOf(api, `GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'a'.repeat(64 * 1024)}\r\n\r\n`), 431, 'huge header'));
    await hostile(t, api, 'HTTP framing', '2,000 small header lines (~20 KiB)', '431', async () =>
      parserRefusal(t, await refusalOf(api, `GET /v1/agents HTTP/1.1\r\nHost: localhost\r\n${'X-A: bbbbbbbb\r\n'.repeat(2000)}\r\n`), 431, 'many headers'));
    await hostile(t, api, 'auth headers', 'Authorization: Bearer <64 KiB>', '431', async () =>
      parserRefusal(t, await refusalOf(api, `GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${'A'.repeat(64 * 1024)}\r\n\r\n`), 431, '64 KiB Authorization'));
  });

  t.test('bad chunked encoding and ambiguous lengths', async (t) => {
    const post = (headers: string, body: string) => `POST /v1/policies:dry-run HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${api.apiKey}\r\nContent-Type: application/yaml\r\n${headers}\r\n${body}`;
    for (const [what, bytes] of [
      ['chunk size not hex', post('Transfer-Encoding: chunked\r\n', 'zz\r\nab\r\n0\r\n\r\n')],
      ['chunk data not followed by CRLF', post('Transfer-Encoding: chunked\r\n', '2\r\nabXY0\r\n\r\n')],
      ['chunk size overflow (2^64)', post('Transfer-Encoding: chunked\r\n', '10000000000000000\r\nab\r\n0\r\n\r\n')],
      ['Content-Length + Transfer-Encoding', post('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n')],
      ['conflicting Content-Lengths', post('Content-Length: 2\r\nContent-Length: 20\r\n', '{}')],
      ['Transfer-Encoding: gzip', post('Transfer-Encoding: gzip\r\n', 'abc')],
    ] as const) {
      await hostile(t, api, 'HTTP framing', what, '400', async () => parserRefusal(t, await refusalOf(api, bytes), 400, what));
    }
  });

  t.test('100 pipelined requests in one write are answered in order', async (t) => {
    const paths = Array.from({ length: 100 }, (_, i) => (i % 3 === 0 ? '/v1/no-such-route' : '/healthz'));
    await hostile(t, api, 'HTTP framing', '100 pipelined requests in one write', '100 answers in order', async () => {
      const r = await exchange(api, (s) => write(s, paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${api.apiKey}\r\n\r\n`).join('')), { want: 100 });
      const got = r.answers.map((a) => a.status);
      const want = paths.map((p) => (p === '/healthz' ? 200 : 404));
      t.same(got, want, 'pipelining: 100 answers, in request order');
      const ok = JSON.stringify(got) === JSON.stringify(want);
      return { ms: r.ms, got: `${got.length} answers${ok ? ', in order' : ', WRONG'}`, ok };
    });
  });

  t.test('control characters in a Bearer token', async (t) => {
    // Node's parser refuses control characters (other than tab) in a header value.
    for (const [what, value] of [['\\x01', '\x01'], ['\\x00', '\x00'], ['\\x1b', '\x1b'], ['DEL', '\x7f'], ['bare CR', '\r']] as const) {
      await hostile(t, api, 'auth headers', `Bearer with ${what}`, '400', async () =>
        parserRefusal(t, await refusalOf(api, `GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer bk_ak_${value}x\r\n\r\n`), 400, `Bearer with ${what}`));
    }
    // What the parser lets through reaches the API, which refuses it as a credential.
    for (const [what, value] of [['tab', 'bk_ak_\tx'], ['Latin-1 bytes', 'bk_ak_\xff\xfe'], ['8 KiB token', 'A'.repeat(8192)]] as const) {
      await hostile(t, api, 'auth headers', `Bearer with ${what}`, '401 BK_ERR_UNAUTHENTICATED', async () => {
        const r = await exchange(api, (s) => write(s, Buffer.from(`GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${value}\r\n\r\n`, 'latin1')));
        const a = r.answers[0];
        t.equal(a?.status, 401, `Bearer with ${what}: 401`);
        t.match(a?.body, /BK_ERR_UNAUTHENTICATED/, `Bearer with ${what}: BK_ERR_UNAUTHENTICATED`);
        t.notMatch(a?.body ?? '', value.slice(0, 16), `Bearer with ${what}: the value is not echoed`);
        return { ms: r.ms, got: `${a?.status} ${/"code":"(\w+)"/.exec(a?.body ?? '')?.[1] ?? ''}`, ok: a?.status === 401 };
      });
    }
  });

  const wrongKey = () => `GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer bk_ak_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('hex')}\r\n\r\n`;

  /** Sends `n` requests one after the other on one kept-alive connection; resolves with the answers. */
  const oneByOne = (target: RunningApi, n: number, make: () => string): Promise<Answer[]> =>
    new Promise((resolve, reject) => {
      const answers: Answer[] = [];
      const s = tlsConnect({ host: '127.0.0.1', port: target.port, ca: target.ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => s.write(make()));
      responses(s, (a) => {
        answers.push(a);
        if (answers.length === n) {
          s.destroy();
          resolve(answers);
        } else s.write(make());
      });
      s.on('error', reject);
      s.on('close', () => resolve(answers));
    });

  const tally = (t: Test, answers: Answer[], what: string) => {
    const n401 = answers.filter((a) => a.status === 401).length;
    const limited = answers.filter((a) => a.status === 429);
    const retryAfter = limited.length > 0 ? /\r\nretry-after: *(\d+)/i.exec(limited[0]!.headers)?.[1] ?? '' : '';
    const detail = limited.length > 0 ? /"detail":"([^"]*)"/.exec(limited[0]!.body)?.[1] ?? '' : '';
    t.equal(answers.length, 1000, `${what}: every attempt answered`);
    t.equal(n401 + limited.length, 1000, `${what}: each refused 401 or 429`);
    t.match(retryAfter, /^\d+$/, `${what}: 429 carries Retry-After (${retryAfter} s)`);
    t.match(detail, /from this address|address/i, `${what}: the 429 says which limit (${detail})`);
    return { n401, n429: limited.length, retryAfter };
  };

  t.test('1,000 wrong API keys from one address, one after the other', async (t) => {
    // A fresh controller: the failures above already count against 127.0.0.1.
    const fresh = await startApi();
    t.teardown(() => fresh.close());
    await hostile(t, fresh, 'auth headers', '1,000 wrong API keys from one address, sequential', `401 x ${ADDRESS_LIMIT}, then 429 with Retry-After`, async () => {
      const started = performance.now();
      const { n401, n429, retryAfter } = tally(t, await oneByOne(fresh, 1000, wrongKey), 'sequential');
      t.equal(n401, ADDRESS_LIMIT, `sequential: the first ${ADDRESS_LIMIT} are refused 401, the rest 429`);
      return aggregate(t, 'sequential', performance.now() - started, `${n401} x 401, ${n429} x 429, Retry-After ${retryAfter} s`, n401 === ADDRESS_LIMIT);
    });
  });

  t.test('1,000 wrong API keys from one address, 100 at a time', async (t) => {
    // Attempts in flight together all pass the first limit check before any of them fails;
    // the authenticator checks again when each fails, so the burst still gets 30 401s at most.
    const fresh = await startApi();
    t.teardown(() => fresh.close());
    await hostile(t, fresh, 'auth headers', '1,000 wrong API keys from one address, 10 connections x 100 pipelined', `401 x ${ADDRESS_LIMIT}, then 429 with Retry-After`, async () => {
      const started = performance.now();
      const answers: Answer[] = [];
      await Promise.all(Array.from({ length: 10 }, async () => {
        const r = await exchange(fresh, (s) => write(s, Array.from({ length: 100 }, wrongKey).join('')), { want: 100, timeoutMs: 20_000 });
        answers.push(...r.answers);
      }));
      const { n401, n429, retryAfter } = tally(t, answers, 'concurrent');
      t.ok(n401 <= ADDRESS_LIMIT, `concurrent: at most ${ADDRESS_LIMIT} refused 401 before 429 (${n401})`);
      return aggregate(t, 'concurrent', performance.now() - started, `${n401} x 401, ${n429} x 429, Retry-After ${retryAfter} s`, n401 <= ADDRESS_LIMIT);
    });
  });
});
