// Owns one HTTP attempt: a POST with a hard deadline (connect → last byte),
// through keep-alive agents whose DNS lookup refuses unsafe addresses, never
// following redirects, reading at most 64 KiB of the answer. It reports what
// happened; deciding what that means (retry, dead-letter, disable) is the
// worker's job.
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { makeGuardedLookup, unsafeHostReason, type GuardedLookup, type LookupAllFn } from './webhook-target';

export interface SendRequest {
  url: URL;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  allowUnsafeTarget: boolean;
}

export interface SendResult {
  /** HTTP status, or null when no response arrived. */
  status: number | null;
  headers: IncomingHttpHeaders;
  latencyMs: number;
  /** Transport error (timeout, refused, TLS, unsafe target …), null when a response arrived. */
  error: string | null;
  /** The transport error was our SSRF guard, not the network. */
  unsafeTarget: boolean;
  /** The first bytes of the response body (for the delivery log). */
  bodySnippet: string;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

export interface HttpSenderOptions {
  /** DNS underneath the SSRF guard. Default dns.lookup. */
  lookup?: LookupAllFn;
}

export class HttpSender {
  // Keep-alive pools: at thousands of deliveries per second a TCP (and TLS)
  // handshake per attempt would dominate. Safe agents use the guarded lookup,
  // so every NEW connection is re-checked; an open one was checked when made.
  private readonly agents: { safe: { http: HttpAgent; https: HttpsAgent }; unsafe: { http: HttpAgent; https: HttpsAgent } };

  constructor(opts: HttpSenderOptions = {}) {
    const guard = makeGuardedLookup(opts.lookup);
    this.agents = {
      safe: { http: newHttpAgent(guard), https: newHttpsAgent(guard) },
      unsafe: { http: newHttpAgent(undefined), https: newHttpsAgent(undefined) },
    };
  }

  send(req: SendRequest): Promise<SendResult> {
    const started = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e6;
    const { url } = req;
    if (!req.allowUnsafeTarget) {
      const why = unsafeHostReason(url.hostname);
      if (why !== undefined) {
        return Promise.resolve({ status: null, headers: {}, latencyMs: 0, error: `refused: ${why}`, unsafeTarget: true, bodySnippet: '' });
      }
    }
    const pool = req.allowUnsafeTarget ? this.agents.unsafe : this.agents.safe;
    const isHttps = url.protocol === 'https:';
    const body = Buffer.from(req.body);

    return new Promise<SendResult>((resolve) => {
      let settled = false;
      const finish = (r: Omit<SendResult, 'latencyMs'>): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ ...r, latencyMs: elapsed() });
      };
      const fail = (e: NodeJS.ErrnoException): void => {
        const unsafe = e.code === 'BK_UNSAFE_TARGET' || (e.cause as NodeJS.ErrnoException | undefined)?.code === 'BK_UNSAFE_TARGET';
        finish({ status: null, headers: {}, error: describe(e), unsafeTarget: unsafe, bodySnippet: '' });
      };
      const options = {
        method: 'POST',
        agent: isHttps ? pool.https : pool.http,
        headers: { ...req.headers, 'content-length': String(body.length) },
      };
      const r = (isHttps ? httpsRequest : httpRequest)(url, options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < MAX_RESPONSE_BYTES) chunks.push(c);
          size += c.length;
          // Past the cap we stop reading: the socket is not worth keeping.
          if (size > MAX_RESPONSE_BYTES) res.destroy();
        });
        const done = (): void =>
          finish({
            status: res.statusCode ?? null,
            headers: res.headers,
            error: null,
            unsafeTarget: false,
            bodySnippet: Buffer.concat(chunks).subarray(0, 512).toString('utf8'),
          });
        res.on('end', done);
        // A response whose body broke off still has a status worth recording.
        res.on('error', done);
        res.on('close', done);
      });
      const timer = setTimeout(() => {
        const e = new Error(`timed out after ${req.timeoutMs} ms`) as NodeJS.ErrnoException;
        e.code = 'ETIMEDOUT';
        fail(e);
        r.destroy(e);
      }, req.timeoutMs);
      r.on('error', fail);
      r.end(body);
    });
  }

  close(): void {
    for (const p of [this.agents.safe, this.agents.unsafe]) {
      p.http.destroy();
      p.https.destroy();
    }
  }
}

function newHttpAgent(lookup: GuardedLookup | undefined): HttpAgent {
  return new HttpAgent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 64, timeout: 30_000, ...(lookup ? { lookup } : {}) } as ConstructorParameters<typeof HttpAgent>[0]);
}

function newHttpsAgent(lookup: GuardedLookup | undefined): HttpsAgent {
  return new HttpsAgent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 64, timeout: 30_000, minVersion: 'TLSv1.2', ...(lookup ? { lookup } : {}) } as ConstructorParameters<typeof HttpsAgent>[0]);
}

function describe(e: NodeJS.ErrnoException): string {
  const code = e.code;
  const msg = e.message || String(e);
  return code !== undefined && !msg.includes(code) ? `${code}: ${msg}` : msg;
}
