// The authorization plugin's unix socket (packages/agent/src/authz/plugin-http.ts and
// plugin-server.ts) against hostile bytes, over raw node:net sockets. While the plugin is stuck
// dockerd on that host answers nothing, so every input here must get its documented answer
// (400 / 431 / 501 and the connection closed, or `{"Allow":false,…}` naming why for a judged
// request Bulkhead cannot read while enforce rules exist) AND a canary — a benign
// `docker create` judged through a real AuthzDecider, on its own connection, every 25 ms — must
// keep being answered within CANARY_BOUND_MS. The plugin runs in this process, so a blocked
// event loop shows up as a late canary. Bounds are wide because CI shares two cores; alone on
// an idle core the canary answers in about a millisecond.
import t, { type Test } from 'tap';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzPlugin } from '../../packages/agent/src/authz/plugin-server';
import { MAX_CHUNKS } from '../../packages/agent/src/authz/plugin-http';
import { AuthzDecider } from '../../packages/agent/src/authz/authz-decider';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { recordBadInput } from '../helpers/bad-input-report';

const CANARY_BOUND_MS = 1000;
/**
 * What the tests fail on: a stall, i.e. nobody else answered for seconds. CANARY_BOUND_MS
 * above is the figure the bad-input report flags; under CI load on two shared cores (and
 * coverage) ordinary canaries took up to 2.3 s, while the freezes these inputs caused before
 * their limits existed lasted minutes. Figures belong in RELIABILITY.md, not in pass/fail.
 */
const CANARY_STALL_MS = 5000;
const ANSWER_STALL_MS = 6000;
/** An answer to a refused input: the parser refuses on the byte that crosses a limit. */
const ANSWER_BOUND_MS = 2000;
const MAX_BODY = 8 * 1024 * 1024; // AuthzPlugin's default maxRequestBytes

const POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: bad-input }
spec:
  rules:
    - id: host.privileged
      description: no privileged containers
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
    - id: host.root-user
      description: no root
      severity: high
      mode: monitor
      action: { type: alert }
      check: { type: root-user }
`, 'bad-input.yaml');

const IMAGE = { Id: 'sha256:app', RepoDigests: [], Config: { User: '1000', Env: ['PATH=/bin'], Labels: {} } } as unknown as Dockerode.ImageInspectInfo;

const notFound = (what: string) => Object.assign(new Error(`No such ${what}`), { statusCode: 404 });

async function startPlugin(t: Test): Promise<{ plugin: AuthzPlugin; socketPath: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'bk-plugin-bad-'));
  const socketPath = join(dir, 'bk.sock');
  const logger = createLogger({ name: 'plugin-bad-input', level: 'silent' });
  const state: PolicyState = { policy: POLICY, scans: new Map(), version: 1, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' };
  const decider = new AuthzDecider({
    policy: () => state,
    containers: { get: () => undefined, inventory: () => [] },
    docker: {
      getImage: () => ({ inspect: async () => IMAGE }),
      getContainer: () => ({ inspect: async (): Promise<Dockerode.ContainerInspectInfo> => { throw notFound('container'); } }),
      getExec: () => ({ inspect: async (): Promise<Dockerode.ExecInspectInfo> => { throw notFound('exec'); } }),
    },
    logger,
  });
  // As agent.ts wires it: a request the plugin cannot decide is refused while anything is enforced.
  const plugin = await AuthzPlugin.start({ socketPath, evaluate: (req) => decider.decide(req), failClosed: () => decider.enforcing(), logger });
  t.teardown(async () => {
    await plugin.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { plugin, socketPath };
}

// ---- raw HTTP/1.1 -------------------------------------------------------------------------------

const envelope = (body: string | Buffer | undefined, uri = '/v1.41/containers/create?name=web'): string =>
  JSON.stringify({
    User: '',
    RequestMethod: 'POST',
    RequestUri: uri,
    RequestHeaders: { 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { RequestBody: Buffer.from(body).toString('base64') }),
  });

const req = (body: string | Buffer, extra = ''): Buffer => {
  const b = Buffer.from(body);
  return Buffer.concat([Buffer.from(`POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n${extra}Content-Length: ${b.length}\r\n\r\n`), b]);
};

const BENIGN = envelope(JSON.stringify({ Image: 'app:1', HostConfig: {} }));
const PRIVILEGED = envelope(JSON.stringify({ Image: 'app:1', HostConfig: { Privileged: true } }));

interface Answer {
  status: number;
  body: string;
  json: { Allow?: boolean; Msg?: string; Err?: string };
}

interface Exchange {
  answers: Answer[];
  /** The server closed (or reset) the connection. */
  closed: boolean;
  timedOut: boolean;
  /** From the last byte written to the wanted answers (or the close). */
  ms: number;
}

/** Reads HTTP/1.1 responses (Content-Length framed, as the plugin sends them) off a socket. */
function responses(s: Socket, onAnswer: (a: Answer) => void): void {
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.toString('latin1', 0, end);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      const body = buf.toString('utf8', end + 4, end + 4 + len);
      buf = buf.subarray(end + 4 + len);
      let json: Answer['json'] = {};
      try {
        json = JSON.parse(body);
      } catch {
        /* not JSON */
      }
      onAnswer({ status: Number(head.split(' ')[1]), body, json });
    }
  });
}

/**
 * Connects, lets `send` write (it may take its time), and waits for `want` answers or the
 * server closing the connection, at most `timeoutMs` after the last write.
 */

function exchange(socketPath: string, send: (s: Socket) => Promise<void> | void, opts: { want?: number; timeoutMs?: number; untilClose?: boolean } = {}): Promise<Exchange> {
  // untilClose: wait for the server to close the connection, whatever it answered.
  const want = opts.untilClose ? Infinity : opts.want ?? 1;
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    const answers: Answer[] = [];
    let startedAt = performance.now();
    let sentAt = 0;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean, timedOut = false): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // A refusal may come (and the connection close) before the whole input was written.
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
    s.on('connect', () => {
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

/** Writes and waits until the kernel took it (so a large write is timed from its last byte). */
const write = (s: Socket, data: Buffer | string): Promise<void> =>
  new Promise((resolve) => {
    if (s.write(data)) resolve();
    else s.once('drain', () => resolve());
  });

/** Sends a request the parser refuses, and waits for the server to close the connection. */
const refusalOf = (socketPath: string, bytes: Buffer | string): Promise<Exchange> => exchange(socketPath, (s) => write(s, bytes), { untilClose: true });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the canary ----------------------------------------------------------------------------------

interface Canary {
  /** Stops it and returns the slowest answer (timer lateness included) and how many were answered. */
  stop(): Promise<{ worstMs: number; answered: number; failures: string[] }>;
}

/** A benign create judged every 25 ms, each on a fresh connection. */
function canary(socketPath: string): Canary {
  let running = true;
  let worstMs = 0;
  let answered = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      await sleep(25);
      const r = await exchange(socketPath, (s) => write(s, req(BENIGN)), { timeoutMs: 5000 });
      const ms = performance.now() - start - 25;
      worstMs = Math.max(worstMs, ms);
      if (r.answers[0]?.json.Allow === true) answered++;
      else failures.push(r.timedOut ? 'no answer in 5 s' : r.closed ? 'connection closed' : r.answers[0]?.body ?? '?');
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

const fdCount = (): number => readdirSync('/proc/self/fd').length;

/**
 * Runs one hostile input with the canary going, checks the canary and records the figures.
 * `check` asserts the documented answer and returns it in a few words.
 */
async function hostile(
  t: Test,
  socketPath: string,
  input: string,
  expected: string,
  run: () => Promise<{ ms: number | null; got: string; ok: boolean }>,
  /** A known stall: its bound assertions are tap todos (the suite stays green; the figures are recorded). */
  todo?: string,
): Promise<void> {
  const extra = todo === undefined ? {} : { todo };
  const c = canary(socketPath);
  await sleep(60); // the canary is going before the input starts
  const r = await run();
  await sleep(60);
  const { worstMs, answered, failures } = await c.stop();
  t.same(failures, [], `${input}: every canary allowed (${answered} answered)`);
  t.ok(answered > 0, `${input}: the canary was answered meanwhile`);
  t.ok(worstMs < CANARY_STALL_MS, `${input}: slowest canary ${worstMs.toFixed(0)} ms (< ${CANARY_STALL_MS}; report bound ${CANARY_BOUND_MS})`, extra);
  if (r.ms !== null) t.ok(r.ms < ANSWER_STALL_MS, `${input}: answered in ${r.ms.toFixed(0)} ms (< ${ANSWER_STALL_MS}; report bound ${ANSWER_BOUND_MS})`, extra);
  recordBadInput({
    category: 'plugin socket', input, expected, got: r.got, refusedAsDocumented: r.ok, ms: r.ms, canaryMs: worstMs,
    stalled: worstMs >= CANARY_BOUND_MS || failures.length > 0 || answered === 0,
  });
}

/** Asserts a protocol refusal: this status, an Err naming the reason, and the connection closed. */
function protocolRefusal(t: Test, r: Exchange, status: number, err: RegExp, what: string): { ms: number; got: string; ok: boolean } {
  const a = r.answers[0];
  t.equal(a?.status, status, `${what}: ${status}`);
  t.match(a?.json.Err, err, `${what}: Err names the reason (${a?.json.Err})`);
  t.ok(r.closed, `${what}: connection closed after the refusal`);
  t.notOk(r.timedOut, `${what}: not left hanging`);
  return { ms: r.ms, got: a ? `${a.status} ${a.json.Err ?? a.body}` : r.timedOut ? 'no answer' : 'closed without answer', ok: a?.status === status && err.test(a?.json.Err ?? '') && r.closed };
}

/** Asserts a judged refusal: 200 `{"Allow":false}` whose Msg matches. */
function judgedRefusal(t: Test, r: Exchange, msg: RegExp, what: string): { ms: number; got: string; ok: boolean } {
  const a = r.answers[0];
  t.equal(a?.status, 200, `${what}: 200`);
  t.equal(a?.json.Allow, false, `${what}: Allow false`);
  t.match(a?.json.Msg, msg, `${what}: Msg names why (${(a?.json.Msg ?? '').slice(0, 200)})`);
  return { ms: r.ms, got: a ? `${a.status} Allow:${String(a.json.Allow)} ${(a.json.Msg ?? a.json.Err ?? '').slice(0, 120)}` : 'no answer', ok: a?.json.Allow === false && msg.test(a.json.Msg ?? '') };
}

function allowed(t: Test, r: Exchange, what: string): { ms: number; got: string; ok: boolean } {
  const a = r.answers[0];
  t.equal(a?.status, 200, `${what}: 200`);
  t.equal(a?.json.Allow, true, `${what}: Allow true (${a?.body.slice(0, 200)})`);
  return { ms: r.ms, got: a ? `${a.status} Allow:${String(a.json.Allow)}` : 'no answer', ok: a?.json.Allow === true };
}

// ---- the inputs ---------------------------------------------------------------------------------

t.test('the plugin socket against hostile framing and bodies', async (t) => {
  const { socketPath } = await startPlugin(t);
  // Warm up: the first create inspects the image; from then on the canary is served from the cache.
  const warm = await exchange(socketPath, (s) => write(s, req(BENIGN)));
  t.equal(warm.answers[0]?.json.Allow, true, 'a benign create is allowed');
  const deny = await exchange(socketPath, (s) => write(s, req(PRIVILEGED)));
  t.equal(deny.answers[0]?.json.Allow, false, 'a privileged create is refused');

  t.test('slow headers: one byte per 100 ms', async (t) => {
    // No header timeout: the plugin only drops a connection idle for 120 s, and each byte resets
    // that. A trickling sender holds one socket and at most 16 KiB; it does not hold up others.
    const head = req(BENIGN);
    await hostile(t, socketPath, 'slow headers (1 byte / 100 ms, 3 s)', 'answered when complete; others unaffected', async () => {
      const r = await exchange(socketPath, async (s) => {
        for (let i = 0; i < 30; i++) {
          await write(s, head.subarray(i, i + 1));
          await sleep(100);
        }
        await write(s, head.subarray(30));
      });
      return allowed(t, r, 'slow headers');
    });
  });

  t.test('huge headers (> 16 KiB)', async (t) => {
    await hostile(t, socketPath, 'header block of 64 KiB', '431', async () => {
      const r = await refusalOf(socketPath, `POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nX-Pad: ${'a'.repeat(64 * 1024)}\r\nContent-Length: 2\r\n\r\n{}`);
      return protocolRefusal(t, r, 431, /request head larger than 16384 bytes/, 'huge headers');
    });
    await hostile(t, socketPath, 'header block without end, 1 MiB', '431', async () => {
      const r = await refusalOf(socketPath, `POST /AuthZPlugin.AuthZReq HTTP/1.1\r\n${'X-A: b\r\n'.repeat(131_072)}`);
      return protocolRefusal(t, r, 431, /request head larger than 16384 bytes/, 'endless headers');
    });
  });

  t.test('a body over the limit', async (t) => {
    const big = Buffer.alloc(MAX_BODY + 1024 * 1024, 0x20);
    const bigReq = req(big);
    await hostile(t, socketPath, `body of ${big.length} bytes, Content-Length`, 'Allow:false (too large)', async () => {
      const r = await exchange(socketPath, (s) => write(s, bigReq));
      return judgedRefusal(t, r, /could not decide.*plugin request of 9437184 bytes exceeds 8388608/, 'huge body (Content-Length)');
    });
    await hostile(t, socketPath, `body of ${big.length} bytes, chunked (1 MiB chunks)`, 'Allow:false (too large)', async () => {
      const r = await exchange(socketPath, async (s) => {
        await write(s, 'POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n');
        for (let i = 0; i < big.length; i += 1024 * 1024) await write(s, Buffer.concat([Buffer.from('100000\r\n'), big.subarray(i, i + 1024 * 1024), Buffer.from('\r\n')]));
        await write(s, '0\r\n\r\n');
      });
      return judgedRefusal(t, r, /could not decide.*plugin request of 9437184 bytes exceeds 8388608/, 'huge body (chunked)');
    });
  });

  t.test('bad chunking', async (t) => {
    const chunked = (chunks: string) => `POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`;
    const cases: [string, string, RegExp][] = [
      ['chunk size not hex', chunked('zz\r\nab\r\n0\r\n\r\n'), /bad chunk size "zz"/],
      ['chunk size negative', chunked('-1\r\nab\r\n0\r\n\r\n'), /bad chunk size/],
      ['chunk data not followed by CRLF', chunked('2\r\nabXY0\r\n\r\n'), /chunk not followed by CRLF/],
      ['chunk size overflow (2^64)', chunked('10000000000000000\r\nab\r\n0\r\n\r\n'), /bad chunk size/],
      ['chunk size over 8 hex digits', chunked('100000000\r\nab\r\n0\r\n\r\n'), /bad chunk size/],
      ['chunk size line without end (2 KiB)', chunked('1'.repeat(2048)), /chunk size line too long/],
      ['transfer coding gzip', 'POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', /transfer coding "gzip, chunked" not supported/],
    ];
    for (const [what, bytes, err] of cases) {
      const status = /gzip/.test(what) ? 501 : 400;
      await hostile(t, socketPath, what, String(status), async () => protocolRefusal(t, await refusalOf(socketPath, bytes), status, err, what));
    }
    // A valid body in 1-byte chunks: 6 bytes of framing per body byte.
    const body = Buffer.from(PRIVILEGED);
    const tiny = Buffer.concat([...body].map((b) => Buffer.from([0x31, 0x0d, 0x0a, b, 0x0d, 0x0a])));
    await hostile(t, socketPath, `valid envelope in ${body.length} one-byte chunks`, 'Allow:false (judged)', async () => {
      const r = await exchange(socketPath, (s) => write(s, Buffer.concat([Buffer.from('POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'), tiny, Buffer.from('0\r\n\r\n')])));
      return judgedRefusal(t, r, /host\.privileged/, 'one-byte chunks');
    });
  });

  // Each chunk costs a size-line parse and a Buffer view: at most MAX_CHUNKS (1,024) per request
  // (dockerd never sends chunked plugin requests), so one-byte chunks cannot cost per byte.
  t.test('1,000,000 one-byte chunks (a 1 MB body, 6 MB on the wire)', async (t) => {
    // Kept at 1M so the test does not starve the suites sharing the CI cores; the cost is linear.
    const N = 1_000_000;
    const wire = Buffer.concat([
      Buffer.from('POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'),
      Buffer.alloc(N * 6).fill(Buffer.from('1\r\n \r\n')), // a body of N spaces: not JSON, refused once read
      Buffer.from('0\r\n\r\n'),
    ]);
    let peak = 0;
    const base = process.memoryUsage();
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers - base.heapUsed - base.arrayBuffers);
    }, 20);
    await hostile(t, socketPath, `${N.toLocaleString('en')} one-byte chunks (6 MB on the wire)`, `400 after ${MAX_CHUNKS} chunks, quickly, bounded memory`, async () => {
      const started = performance.now();
      const r = await exchange(socketPath, (s) => write(s, wire), { timeoutMs: 60_000 });
      const total = performance.now() - started;
      const res = protocolRefusal(t, r, 400, /more than 1024 chunks in one request/, 'one-byte chunks');
      t.ok(peak < 32e6, `one-byte chunks: memory grew by ${(peak / 1e6).toFixed(0)} MB (< 32 MB for a 1 MB body)`);
      return { ...res, ok: res.ok && peak < 32e6, got: `${res.got.slice(0, 40)}… after ${(total / 1000).toFixed(1)} s from connect; heap +${(peak / 1e6).toFixed(0)} MB` };
    });
    clearInterval(sampler);
  });

  t.test('100 pipelined requests in one write are answered in order', async (t) => {
    const reqs = Buffer.concat(Array.from({ length: 100 }, (_, i) => req(i % 3 === 0 ? PRIVILEGED : BENIGN)));
    await hostile(t, socketPath, '100 pipelined requests in one write', '100 answers in order', async () => {
      const r = await exchange(socketPath, (s) => write(s, reqs), { want: 100 });
      const got = r.answers.map((a) => a.json.Allow);
      const want = Array.from({ length: 100 }, (_, i) => i % 3 !== 0);
      t.equal(r.answers.length, 100, 'pipelining: 100 answers');
      t.same(got, want, 'pipelining: in request order');
      return { ms: r.ms, got: `${r.answers.length} answers${JSON.stringify(got) === JSON.stringify(want) ? ', in order' : ', OUT OF ORDER'}`, ok: JSON.stringify(got) === JSON.stringify(want) };
    });
  });

  t.test('ambiguous framing', async (t) => {
    await hostile(t, socketPath, 'Content-Length + Transfer-Encoding', '400', async () => {
      const r = await refusalOf(socketPath, `POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
      return protocolRefusal(t, r, 400, /both Content-Length and Transfer-Encoding/, 'CL + TE');
    });
    await hostile(t, socketPath, 'conflicting Content-Lengths', '400', async () => {
      const r = await refusalOf(socketPath, `POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n{}`);
      return protocolRefusal(t, r, 400, /conflicting Content-Length headers/, 'conflicting CL');
    });
    await hostile(t, socketPath, 'Content-Length "2, 20"', '400', async () => {
      const r = await refusalOf(socketPath, `POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nContent-Length: 2, 20\r\n\r\n{}`);
      return protocolRefusal(t, r, 400, /bad Content-Length/, 'CL list');
    });
  });

  t.test('connections that never send, and 200 idle connections', async (t) => {
    const before = fdCount();
    const held: Socket[] = [];
    await hostile(t, socketPath, '50 half-open connections (connected, never send)', 'held until idle (120 s); others unaffected', async () => {
      for (let i = 0; i < 50; i++) {
        const s = connect(socketPath);
        s.on('error', () => undefined);
        held.push(s);
      }
      await sleep(500);
      return { ms: null, got: 'held; canary answered', ok: true };
    });
    await hostile(t, socketPath, '200 idle connections', 'held until idle (120 s); others unaffected', async () => {
      for (let i = 0; i < 200; i++) {
        const s = connect(socketPath);
        s.on('error', () => undefined);
        held.push(s);
      }
      await sleep(500);
      return { ms: null, got: 'held; canary answered', ok: true };
    });
    // A client that half-closes mid-request gets the connection closed; one that half-closes after
    // a whole request gets its answer first.
    await hostile(t, socketPath, 'half-close after half a request head', 'closed without answer', async () => {
      const r = await exchange(socketPath, (s) => {
        s.end('POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nContent-Le');
      });
      t.ok(r.closed && r.answers.length === 0 && !r.timedOut, 'half-close mid-head: closed without an answer');
      return { ms: r.ms, got: r.closed ? `closed, ${r.answers.length} answers` : 'left open', ok: r.closed && r.answers.length === 0 };
    });
    await hostile(t, socketPath, 'half-close after a whole request', 'answered, then closed', async () => {
      const r = await exchange(socketPath, (s) => {
        s.end(req(BENIGN));
      });
      t.equal(r.answers[0]?.json.Allow, true, 'half-close after a request: answered');
      return { ms: r.ms, got: `${r.answers.length} answer(s)`, ok: r.answers[0]?.json.Allow === true };
    });
    const during = fdCount();
    for (const s of held) s.destroy();
    await sleep(200);
    t.ok(during - before >= 250 * 2 * 0.9, `both ends of ~250 held connections were open (${during - before} descriptors)`);
    t.ok(fdCount() - before < 20, `descriptors came back after the clients closed (${fdCount() - before} above the start)`);
  });

  t.test('envelopes the plugin cannot read are refused, naming why', async (t) => {
    await hostile(t, socketPath, 'non-JSON envelope', 'Allow:false (cannot decide)', async () =>
      judgedRefusal(t, await exchange(socketPath, (s) => write(s, req('this is not { json'))), /could not decide on this request \(.*JSON.*\).*enforce mode/, 'non-JSON envelope'));
    await hostile(t, socketPath, 'JSON envelope that is an array', 'Allow:false (cannot decide)', async () =>
      judgedRefusal(t, await exchange(socketPath, (s) => write(s, req('[1,2]'))), /could not decide on this request \(authz request lacks RequestMethod or RequestUri\)/, 'array envelope'));
    await hostile(t, socketPath, 'create without a body', 'Allow:false (cannot check)', async () =>
      judgedRefusal(t, await exchange(socketPath, (s) => write(s, req(envelope(undefined)))), /\[host\.privileged\] \(critical\) Bulkhead cannot check this request[\s\S]*dockerd passed no body/, 'create without body'));
  });

  t.test('deeply nested bodies (Go decodes at most 10,000 levels)', async (t) => {
    const TARGET_B64 = 900 * 1024;
    const raw = TARGET_B64 * 3 / 4;
    const nested = (d: number) => '['.repeat(d) + ']'.repeat(d);
    /** {"Image":…, "Nest": [[[…]]], "Pad": "aaa…"} to ~900 KiB of base64. */
    const inKey = (d: number) => {
      const head = `{"Image":"app:1","HostConfig":{},"Nest":${nested(d)},"Pad":"`;
      return `${head}${'a'.repeat(raw - head.length - 2)}"}`;
    };
    /** The whole body nested, after leading whitespace to ~900 KiB of base64. */
    const whole = (d: number) => ' '.repeat(raw - 2 * d) + nested(d);
    for (const [what, body, expect] of [
      ['10,001-deep array in an ignored field, 900 KiB base64', inKey(10_001), /\[host\.privileged\] \(critical\) Bulkhead cannot check this request[\s\S]*exceeded max depth 10000/],
      ['9,000-deep array in an ignored field, 900 KiB base64', inKey(9_000), true],
      ['body [[[…]]] 10,001 deep, 900 KiB base64', whole(10_001), /\[host\.privileged\] \(critical\) Bulkhead cannot check this request[\s\S]*exceeded max depth 10000/],
      ['body [[[…]]] 9,000 deep, 900 KiB base64', whole(9_000), /\[host\.privileged\] \(critical\) Bulkhead cannot check this request[\s\S]*dockerd's decoder would not accept it either/],
      ['body {"a":{"a":…}} 10,001 deep', `${'{"a":'.repeat(10_001)}1${'}'.repeat(10_001)}`, /\[host\.privileged\] \(critical\) Bulkhead cannot check this request[\s\S]*exceeded max depth 10000/],
    ] as const) {
      const bytes = req(envelope(body));
      await hostile(t, socketPath, what, expect === true ? 'Allow:true (Go accepts it)' : 'Allow:false (cannot check)', async () => {
        const r = await exchange(socketPath, (s) => write(s, bytes));
        return expect === true ? allowed(t, r, what) : judgedRefusal(t, r, expect, what);
      });
    }
  });

  const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  // One block of 62 keys repeated: builds megabytes without leaving a million strings for the
  // garbage collector to find while the plugin is being timed (this process is the plugin's).
  const BLOCK = Array.from(ALNUM, (c) => `"${c}":0`).join(',');
  const keys = (n: number) => `${`${BLOCK},`.repeat(Math.floor(n / ALNUM.length))}${Array.from(ALNUM.slice(0, n % ALNUM.length), (c) => `"${c}":0`).join(',')}`.replace(/,$/, '');

  // dockerd forwards a body only when it is under 1 MiB, but the plugin reads envelopes up to
  // 8 MiB and decodes what RequestBody holds: a 6 MB body must still not hold the event loop.
  t.test('a body of 1,000,000 tiny keys', async (t) => {
    // Unknown keys are ignored by Go's decoder (and by the plugin's): a decidable, benign create
    // that dockerd itself would never forward (it is over 1 MiB).
    const million = `{"Image":"app:1",${keys(1_000_000)}}`;
    // Built before the canary starts, so only the plugin is timed (building it here costs the
    // test process up to a second of string work and garbage collection).
    const millionReq = req(envelope(million));
    await hostile(t, socketPath, `1,000,000 one-letter keys (${(million.length / 1e6).toFixed(1)} MB body)`, 'Allow:true (judged)', async () => {
      const r = await exchange(socketPath, (s) => write(s, millionReq));
      return allowed(t, r, '1M keys');
    });
  });

  t.test('bodies with very many keys', async (t) => {
    // The largest body dockerd forwards is under 1 MiB: as many tiny keys as fit.
    const n = Math.floor((1024 * 1024 - 32) / 6);
    const mib = `{"Image":"app:1",${keys(n)}}`;
    const mibReq = req(envelope(mib));
    await hostile(t, socketPath, `${n.toLocaleString('en')} one-letter keys (a 1 MiB body, dockerd's largest)`, 'Allow:true (judged)', async () => {
      const r = await exchange(socketPath, (s) => write(s, mibReq));
      return allowed(t, r, '1 MiB of keys');
    });
    // Go merges repeated struct objects: one Privileged:true among 100k HostConfig keys still counts.
    const repeated = `{"Image":"app:1",${Array.from({ length: 100_000 }, (_, i) => (i === 50_000 ? '"HostConfig":{"Privileged":true}' : '"HostConfig":{"Memory":0}')).join(',')}}`;
    const repeatedReq = req(envelope(repeated));
    await hostile(t, socketPath, '100,000 repeated "HostConfig" keys (one privileged)', 'Allow:false (host.privileged)', async () => {
      const r = await exchange(socketPath, (s) => write(s, repeatedReq));
      return judgedRefusal(t, r, /\[host\.privileged\] \(critical\)/, '100k HostConfig');
    });
  });

  t.test('NUL and invalid UTF-8 in keys', async (t) => {
    // Go matches field names exactly, then case-folded: "Privileged\u0000" and "Privileged\uFFFD"
    // name no field, so dockerd ignores them, and the plugin allows what dockerd will create.
    const cases: [string, Buffer, RegExp | true][] = [
      ['escaped \\u0000 in a key', Buffer.from('{"Image":"app:1","HostConfig":{"Privileged\\u0000":true}}'), true],
      ['invalid UTF-8 (0xff) in a key', Buffer.concat([Buffer.from('{"Image":"app:1","HostConfig":{"Privileged'), Buffer.from([0xff]), Buffer.from('":true}}')]), true],
      ['overlong UTF-8 (0xc0 0x80) in a key', Buffer.concat([Buffer.from('{"Image":"app:1","HostConfig":{"Priv'), Buffer.from([0xc0, 0x80]), Buffer.from('ileged":true}}')]), true],
      // A raw control character is a syntax error in Go: dockerd refuses the create itself.
      ['raw NUL byte in a key', Buffer.from('{"Image":"app:1","HostConfig":{"Privileged\u0000":true}}'), /\[host\.privileged\] \(critical\) Bulkhead cannot check this request[\s\S]*control character 0x00 in string literal/],
      // A key that folds to the field name is the field: still refused.
      ['key "PRIVILEGED" (case-folded match)', Buffer.from('{"Image":"app:1","HostConfig":{"PRIVILEGED":true}}'), /\[host\.privileged\] \(critical\)/],
    ];
    for (const [what, body, expect] of cases) {
      const bytes = req(envelope(body));
      await hostile(t, socketPath, what, expect === true ? 'Allow:true (Go ignores the key)' : 'Allow:false', async () => {
        const r = await exchange(socketPath, (s) => write(s, bytes));
        return expect === true ? allowed(t, r, what) : judgedRefusal(t, r, expect, what);
      });
    }
    // Invalid UTF-8 in the envelope itself (outside the base64 body).
    await hostile(t, socketPath, 'invalid UTF-8 in an envelope key', 'Allow:true (judged as usual)', async () => {
      const env = Buffer.from(BENIGN.replace('"User"', '"Us\u00ffer"'), 'latin1');
      const r = await exchange(socketPath, (s) => write(s, req(env)));
      return allowed(t, r, 'invalid UTF-8 in envelope');
    });
  });
});
