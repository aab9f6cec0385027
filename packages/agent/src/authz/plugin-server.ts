// Owns the Docker authorization plugin PROTOCOL: an HTTP server on a unix
// socket (normally /run/docker/plugins/<name>.sock) that dockerd calls
// before (AuthZReq) and after (AuthZRes) every API request it serves.
// What to allow is not decided here: `evaluate` is handed a parsed request
// and returns a decision (see authz-decider.ts for the policy side).
//
// Failure stance (documented in docs/authz.md): anything going wrong INSIDE
// the plugin — a malformed request, an evaluator exception, a decision that
// takes too long — answers Allow and logs an error. A plugin that is DOWN is
// different: dockerd then refuses every API request (after retrying ~30 s),
// which is dockerd's behaviour, not ours.
import { connect, type Server } from 'node:net';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname, posix } from 'node:path';
import { BulkheadError, type Logger } from '@bulkhead/shared';
import { createPluginHttpServer, type PluginHttpRequest, type PluginHttpResponse } from './plugin-http';

/** The directory dockerd looks in for `--authorization-plugin=NAME` (NAME.sock). */
export const DOCKER_PLUGIN_DIR = '/run/docker/plugins';

/** One API request dockerd asks about. */
export interface AuthzRequest {
  /** "POST", "GET", … */
  method: string;
  /** As dockerd sent it, e.g. "/v1.41/containers/create?name=web". */
  uri: string;
  /** Without the API version prefix and query, e.g. "/containers/create". */
  path: string;
  query: URLSearchParams;
  /** The authenticated user (TLS client cert CN), "" over the unix socket. */
  user: string;
  /** dockerd sent a request body (it does only for JSON bodies < 1 MiB with a Content-Length). */
  hasBody: boolean;
  /**
   * The request body parsed as JSON; decoded on first call (the fast path
   * never pays for it). undefined when there is none; throws when it is not JSON.
   */
  json(): unknown;
  /** performance.now() when the plugin received it. */
  receivedAt: number;
}

export interface AuthzDecision {
  allow: boolean;
  /** Shown to the Docker user on denial ("authorization denied by plugin NAME: <msg>"). */
  msg?: string;
}

export type AuthzEvaluate = (req: AuthzRequest) => AuthzDecision | Promise<AuthzDecision>;

export interface AuthzPluginOptions {
  /** e.g. /run/docker/plugins/bulkhead.sock. The parent dir is created; the socket is mode 0600. */
  socketPath: string;
  evaluate: AuthzEvaluate;
  logger: Logger;
  /** Answer Allow (and log an error) when `evaluate` has not decided by then. Default 2000 ms. */
  decisionTimeoutMs?: number;
  /** Larger plugin requests are allowed unread (dockerd never sends them). Default 8 MiB. */
  maxRequestBytes?: number;
  /**
   * Benchmarks only (bench/authz-overhead.js): answers a request before it
   * is parsed when it returns a decision — to measure dockerd's plugin round
   * trip with nothing else. undefined: handled as usual.
   */
  preempt?: (url: string) => AuthzDecision | undefined;
}

export interface AuthzPluginStats {
  requests: number;
  allowed: number;
  denied: number;
  /** Requests allowed because something failed (malformed, evaluator error, timeout). */
  failOpen: number;
}

const ALLOW_BODY = '{"Allow":true}';
const ALLOW: PluginHttpResponse = { status: 200, body: ALLOW_BODY };
const ACTIVATE: PluginHttpResponse = { status: 200, body: '{"Implements":["authz"]}' };

export class AuthzPlugin {
  readonly stats: AuthzPluginStats = { requests: 0, allowed: 0, denied: 0, failOpen: 0 };
  private readonly decisionTimeoutMs: number;
  private readonly maxRequestBytes: number;
  private stopped: Promise<void> | undefined;

  private constructor(private readonly o: AuthzPluginOptions, private readonly server: Server & { closeAllConnections(): void }) {
    this.decisionTimeoutMs = o.decisionTimeoutMs ?? 2000;
    this.maxRequestBytes = o.maxRequestBytes ?? 8 * 1024 * 1024;
  }

  get socketPath(): string {
    return this.o.socketPath;
  }

  /**
   * Listens on the socket. A stale socket file (nobody answering) is
   * replaced; a live one means another plugin instance serves this name,
   * and start-up fails with BK_ERR_STARTUP_FAILED rather than steal it.
   */
  static async start(o: AuthzPluginOptions): Promise<AuthzPlugin> {
    if (!o.socketPath.startsWith('/')) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `authz socket path must be absolute: ${o.socketPath}`);
    if (Buffer.byteLength(o.socketPath) > 107) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `authz socket path is too long for a unix socket: ${o.socketPath}`);
    if (o.decisionTimeoutMs !== undefined && !(o.decisionTimeoutMs > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'decisionTimeoutMs must be positive');
    mkdirSync(dirname(o.socketPath), { recursive: true, mode: 0o755 });
    if (existsSync(o.socketPath)) {
      if (await answers(o.socketPath)) {
        throw new BulkheadError('BK_ERR_STARTUP_FAILED', `another process already serves the authorization plugin socket ${o.socketPath}`);
      }
      unlinkSync(o.socketPath);
    }
    let plugin: AuthzPlugin | undefined;
    const server = createPluginHttpServer((req) => plugin!.handle(req), {
      maxBodyBytes: o.maxRequestBytes ?? 8 * 1024 * 1024,
      onError: (err) => o.logger.warn({ err }, 'authz plugin: bad request from the engine'),
    });
    plugin = new AuthzPlugin(o, server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new BulkheadError('BK_ERR_STARTUP_FAILED', `cannot listen on ${o.socketPath}: ${err.message}`, { cause: err })));
      // Created 0600 (umask) rather than chmod'ed after: no window in which
      // another local user could connect and ask to be authorized.
      const old = process.umask(0o177);
      try {
        server.listen(o.socketPath, () => resolve());
      } finally {
        process.umask(old);
      }
    });
    chmodSync(o.socketPath, 0o600);
    o.logger.info({ socket: o.socketPath }, 'docker authorization plugin listening');
    return plugin;
  }

  /** Stops listening and removes the socket file. Safe to call twice. */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    }).then(() => {
      try {
        unlinkSync(this.o.socketPath);
      } catch {
        // already gone
      }
      this.o.logger.info({ socket: this.o.socketPath }, 'docker authorization plugin stopped');
    });
    return this.stopped;
  }

  private handle(req: PluginHttpRequest): PluginHttpResponse | Promise<PluginHttpResponse> {
    const url = req.url;
    // AuthZRes: we never veto a response; answer without reading it.
    if (url === '/AuthZPlugin.AuthZRes') return ALLOW;
    if (url === '/Plugin.Activate') return ACTIVATE;
    if (url !== '/AuthZPlugin.AuthZReq') return { status: 404, body: JSON.stringify({ Err: `unknown plugin endpoint ${url}` }) };
    const pre = this.o.preempt?.(url);
    if (pre) return this.answer(undefined, pre);
    this.stats.requests++;
    if (req.tooBig) return this.failOpen(undefined, new Error(`plugin request of ${req.size} bytes exceeds ${this.maxRequestBytes}`));
    return this.authorize(req.body);
  }

  private authorize(raw: Buffer): PluginHttpResponse | Promise<PluginHttpResponse> {
    const receivedAt = performance.now();
    let request: AuthzRequest;
    try {
      request = parseAuthzRequest(raw, receivedAt);
    } catch (err) {
      return this.failOpen(undefined, err);
    }
    let result: AuthzDecision | Promise<AuthzDecision>;
    try {
      result = this.o.evaluate(request);
    } catch (err) {
      return this.failOpen(request, err);
    }
    if (!isPromise(result)) return this.answer(request, result);
    return new Promise<PluginHttpResponse>((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        resolve(this.failOpen(request, new Error(`no decision within ${this.decisionTimeoutMs} ms`)));
      }, this.decisionTimeoutMs);
      result.then(
        (d) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(this.answer(request, d));
        },
        (err: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(this.failOpen(request, err));
        },
      );
    });
  }

  private answer(req: AuthzRequest | undefined, d: AuthzDecision): PluginHttpResponse {
    if (!d || typeof d.allow !== 'boolean') return this.failOpen(req, new Error('evaluator returned no decision'));
    if (d.allow) {
      if (req) this.stats.allowed++;
      return ALLOW;
    }
    this.stats.denied++;
    return { status: 200, body: JSON.stringify({ Allow: false, Msg: d.msg ?? 'denied by Bulkhead policy' }) };
  }

  private failOpen(req: AuthzRequest | undefined, err: unknown): PluginHttpResponse {
    this.stats.failOpen++;
    this.stats.allowed++;
    this.o.logger.error({ err, method: req?.method, path: req?.path }, 'authz plugin could not decide; request ALLOWED (fail-open)');
    return ALLOW;
  }
}

/** Parses dockerd's AuthZReq envelope. Throws on anything that is not one. */
export function parseAuthzRequest(raw: Buffer | string, receivedAt = performance.now()): AuthzRequest {
  const env = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8')) as Record<string, unknown> | null;
  if (typeof env !== 'object' || env === null) throw new Error('authz request is not a JSON object');
  const method = typeof env['RequestMethod'] === 'string' ? env['RequestMethod'] : '';
  const uri = typeof env['RequestUri'] === 'string' ? env['RequestUri'] : typeof env['RequestURI'] === 'string' ? (env['RequestURI'] as string) : '';
  if (method === '' || uri === '') throw new Error('authz request lacks RequestMethod or RequestUri');
  const q = uri.indexOf('?');
  // An absolute-form target ("http://x/v1.41/containers/create") is routed
  // by its path, so it is judged by its path.
  const rawPath = (q === -1 ? uri : uri.slice(0, q)).replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
  const body = env['RequestBody'];
  const hasBody = typeof body === 'string' && body !== '';
  let parsed: { value: unknown } | undefined;
  let query: URLSearchParams | undefined;
  return {
    method: method.toUpperCase(),
    uri,
    path: stripVersion(rawPath),
    // Decoded on first use: most requests are judged by method and path alone.
    get query(): URLSearchParams {
      return (query ??= new URLSearchParams(q === -1 ? '' : uri.slice(q + 1)));
    },
    user: typeof env['User'] === 'string' ? env['User'] : '',
    hasBody,
    json(): unknown {
      if (!hasBody) return undefined;
      parsed ??= { value: JSON.parse(Buffer.from(body as string, 'base64').toString('utf8')) };
      return parsed.value;
    },
    receivedAt,
  };
}

/**
 * One query parameter of a request URI ("+" and %-escapes decoded, like
 * URLSearchParams; a malformed escape is kept as sent). For the hot path:
 * cheaper than building a URLSearchParams for one value.
 */
export function queryParam(uri: string, key: string): string | undefined {
  const q = uri.indexOf('?');
  if (q === -1) return undefined;
  for (const part of uri.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    if ((eq === -1 ? part : part.slice(0, eq)) !== key) continue;
    const raw = eq === -1 ? '' : part.slice(eq + 1).replace(/\+/g, ' ');
    try {
      return decodeURIComponent(raw);
    } catch {
      return raw;
    }
  }
  return undefined;
}

/** A versioned path with nothing to decode or clean: "/v1.41/containers/abc/start". */
const PLAIN_PATH = /^\/v[0-9.]+(?:\/[A-Za-z0-9_-]+)+$/;

/**
 * "/v1.41/containers/x/start" → "/containers/x/start". The path is
 * percent-decoded and cleaned first, the way dockerd's router sees it: a
 * request for "/containers/cr%65ate" IS a create, and must be judged as one.
 */
export function stripVersion(path: string): string {
  // The common case without decoding and normalizing: a versioned path whose
  // segments hold nothing to decode ("%") or clean ("." "..", "//", a trailing "/").
  if (PLAIN_PATH.test(path)) return path.slice(path.indexOf('/', 1));
  let p = path;
  try {
    p = decodeURIComponent(p);
  } catch {
    // dockerd rejects malformed escapes itself; judge the raw text
  }
  p = posix.normalize(p.startsWith('/') ? p : `/${p}`);
  const m = /^\/v[0-9.]+(\/.*)?$/.exec(p);
  if (m) p = m[1] ?? '/';
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

/** Whether something accepts connections on a unix socket (within 500 ms). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (v: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 500);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
