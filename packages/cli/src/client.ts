// Owns talking to the controller's REST API from the ops CLI: the typed calls
// are @bulkhead/client's (shared with the web console); this file is their
// Node transport — HTTPS with an explicit CA (node:https, since Node 20's fetch
// cannot take one), the API key, and turning failures into the client's two
// kinds: the API answered (any status, read by the client into ApiError) or it
// could not be reached (ConnectionError, with a hint for TLS trouble).
import { request } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { BulkheadClient, ConnectionError, VERSION, type Transport, type TransportRequest, type TransportResponse } from '@bulkhead/client';

export { ApiError, ConnectionError } from '@bulkhead/client';
export type { ViolationQuery as ViolationListParams } from '@bulkhead/client';

export interface ApiClientOptions {
  /** e.g. https://controller.example:8443 (a path prefix is kept). HTTPS only. */
  baseUrl: string;
  /** "bk_<key id>_<secret>". */
  apiKey: string;
  /** PEM CA certificate(s) to trust instead of Node's built-in list (main.ts passes `--ca`, or the system trust store from trust.ts). */
  caPem?: string | Buffer | Array<string | Buffer>;
  /** Per request, connect to last byte. Default 15000 ms. */
  timeoutMs?: number;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** node:https with an explicit CA and `Authorization: Bearer <API key>`. */
export class HttpsTransport implements Transport {
  readonly baseUrl: URL;
  private readonly apiKey: string;
  private readonly caPem: string | Buffer | Array<string | Buffer> | undefined;
  /** Built once from caPem: the system trust store is ~300 certificates, ~60 ms to parse per connection otherwise. */
  private secureContext: SecureContext | undefined;
  private readonly timeoutMs: number;

  constructor(opts: ApiClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new TypeError(`"${opts.baseUrl}" is not a URL (expected https://HOST:PORT)`);
    }
    if (url.protocol !== 'https:') throw new TypeError(`the API is HTTPS-only; "${opts.baseUrl}" is not an https:// URL`);
    this.baseUrl = url;
    this.apiKey = opts.apiKey;
    this.caPem = opts.caPem;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
  }

  request(req: TransportRequest): Promise<TransportResponse> {
    return this.send(req, undefined);
  }

  stream(req: TransportRequest, onText: (text: string) => void): Promise<TransportResponse> {
    return this.send(req, onText);
  }

  private url(req: TransportRequest): URL {
    const url = new URL(this.baseUrl.href);
    url.pathname = url.pathname.replace(/\/+$/, '') + req.path;
    const q = new URLSearchParams(req.query).toString();
    url.search = q === '' ? '' : `?${q}`;
    return url;
  }

  /** One request; with `onText` a 200 answer is streamed to it instead of collected. */
  private send(req: TransportRequest, onText: ((text: string) => void) | undefined): Promise<TransportResponse> {
    const url = this.url(req);
    const origin = url.origin;
    const timeoutMs = req.timeoutMs ?? this.timeoutMs;
    const body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8');
    const signal = req.signal;
    return new Promise<TransportResponse>((resolve, reject) => {
      const fail = (e: unknown) => (onText && signal?.aborted ? resolve({ status: 200, headers: {}, body: '' }) : reject(connectionError(e, origin)));
      const r = request(
        url,
        {
          method: req.method,
          ...(this.caPem !== undefined ? { secureContext: (this.secureContext ??= createSecureContext({ ca: this.caPem, minVersion: 'TLSv1.2' })) } : { minVersion: 'TLSv1.2' as const }),
          agent: false,
          headers: {
            ...req.headers,
            authorization: `Bearer ${this.apiKey}`,
            'user-agent': `bulkhead-cli/${VERSION}`,
            ...(body !== undefined ? { 'content-length': String(body.length) } : {}),
          },
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
          if (onText && status === 200) {
            res.setEncoding('utf8');
            res.on('data', (text: string) => onText(text));
            res.on('end', () => resolve({ status, headers, body: '' }));
            res.on('error', fail);
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY_BYTES) r.destroy(new Error(`response from ${origin} exceeds ${MAX_BODY_BYTES} bytes`));
            else chunks.push(c);
          });
          res.on('error', fail);
          res.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks).toString('utf8') }));
        },
      );
      // For a stream: quiet streams carry a heartbeat every 15 s, so a silence this long means the connection is gone.
      r.setTimeout(timeoutMs, () => {
        const e = new Error(onText ? 'no heartbeat from the event stream' : `no answer within ${timeoutMs} ms`) as NodeJS.ErrnoException;
        e.code = 'ETIMEDOUT';
        r.destroy(e);
      });
      r.on('error', fail);
      r.end(body);
    });
  }
}

/** The typed API client (@bulkhead/client) over HttpsTransport: what every `bulkhead` command uses. */
export class ApiClient extends BulkheadClient {
  readonly baseUrl: URL;

  constructor(opts: ApiClientOptions) {
    const transport = new HttpsTransport(opts);
    super({ transport, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
    this.baseUrl = transport.baseUrl;
  }
}

/** OpenSSL verification codes (UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, …) and Node's ERR_TLS_CERT_ALTNAME_INVALID. */
const CERT_CODE = /CERT|SELF_SIGNED|LEAF_SIGNATURE|CRL|INVALID_CA|PATH_LENGTH|INVALID_PURPOSE|HOSTNAME_MISMATCH|ALTNAME/;
/** Handshake/protocol failures, e.g. ERR_SSL_WRONG_VERSION_NUMBER when the port speaks plain HTTP. */
const TLS_CODE = /^ERR_SSL_|^ERR_TLS_|^EPROTO$/;

function connectionError(e: unknown, origin: string): ConnectionError {
  if (e instanceof ConnectionError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err.code;
  if (code !== undefined && (CERT_CODE.test(code) || TLS_CODE.test(code))) {
    const hint = CERT_CODE.test(code)
      ? "; pass the CA certificate that issued the API's certificate with --ca or BULKHEAD_CA (the controller's DATA_DIR/ca.crt, or your CA when the controller serves --api-tls-cert; without --ca the system trust store is used), and use a host name the server certificate lists"
      : '; is this the controller API port, and does it speak HTTPS?';
    return new ConnectionError(`TLS handshake with ${origin} failed: ${tlsReason(err.message)} (${code})${hint}`, origin, code, true, e);
  }
  return new ConnectionError(`cannot reach ${origin}: ${code ?? err.message}${code !== undefined && err.message && !err.message.includes(code) ? ` (${err.message})` : ''}`, origin, code, false, e);
}

/** OpenSSL's "…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:file:line:" → "wrong version number". */
function tlsReason(message: string): string {
  const m = /SSL routines:[^:]*:([^:]+)/.exec(message);
  return (m ? m[1]! : message).replace(/\s+/g, ' ').trim();
}
