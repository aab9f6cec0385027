// Owns the Docker authorization plugin PROTOCOL: an HTTP server on a unix
// socket (normally /run/docker/plugins/<name>.sock) that dockerd calls
// before (AuthZReq) and after (AuthZRes) every API request it serves.
// What to allow is not decided here: `evaluate` is handed a parsed request
// and returns a decision (see authz-decider.ts for the policy side).
//
// Failure stance (documented in docs/authz.md): anything going wrong INSIDE
// the plugin — a malformed request, an evaluator exception, a decision that
// takes too long — is logged and answered by `failClosed`: refused while
// the policy enforces anything, allowed otherwise. A plugin that is DOWN is
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
  /**
   * The path dockerd routes the request to (see goRequestTarget), without
   * the API version prefix and query, e.g. "/containers/create"; "" when
   * the target cannot be read (targetError says why).
   */
  path: string;
  /** The API version in the path ("1.41"), "" when none (dockerd then uses its own). */
  apiVersion: string;
  /** Why the request target could not be read the way dockerd's server reads it. */
  targetError: string | undefined;
  query: URLSearchParams;
  /** The authenticated user (TLS client cert CN), "" over the unix socket. */
  user: string;
  /** dockerd sent a request body (it does only for JSON bodies < 1 MiB with a Content-Length). */
  hasBody: boolean;
  /** A request header as dockerd passed it on (case-insensitive name). */
  header(name: string): string | undefined;
  /** The raw request body; decoded on first call (the fast path never pays for it). undefined when there is none. */
  body(): Buffer | undefined;
  /**
   * The request body parsed with JSON.parse — for tests and tools only:
   * judged bodies are decoded as dockerd decodes them (docker-types.ts).
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
  /** Give up on `evaluate` after this long (see `failClosed` for the answer then). Default 2000 ms. */
  decisionTimeoutMs?: number;
  /**
   * Whether a request the plugin cannot decide (unreadable envelope,
   * evaluator error, no decision in time) is refused rather than allowed.
   * The agent answers true while the policy has rules in enforce mode: a
   * door that cannot decide must not open. Default: never (allow and log).
   */
  failClosed?: (req: AuthzRequest | undefined) => boolean;
  /** Larger plugin requests are allowed unread (dockerd never sends them). Default 8 MiB. */
  maxRequestBytes?: number;
  /**
   * Benchmarks only (bench/authz-overhead.js): answers a request before it
   * is parsed when it returns a decision — to measure dockerd's plugin round
   * trip with nothing else. undefined: handled as usual.
   */
  preempt?: (url: string) => AuthzDecision | undefined;
  /**
   * Told of every request dockerd has served, in the response phase (AuthZRes), which dockerd
   * calls before the client gets its answer: what changes the engine's state (a tag moved by
   * a commit) is seen here in order with the API, not later with the engine's events. Never
   * vetoes; an error in it is ignored.
   */
  onResponse?: (res: AuthzResponseHead) => void;
}

/** What the response phase reads of a request: its method and routed path (undefined when not readable). */
export interface AuthzResponseHead {
  /** Upper case; "" when not readable. */
  method: string;
  /** As AuthzRequest.path (version stripped), normalized; undefined when the target could not be read. */
  path: string | undefined;
}

export interface AuthzPluginStats {
  requests: number;
  allowed: number;
  denied: number;
  /** Requests allowed because something failed (malformed, evaluator error, timeout). */
  failOpen: number;
  /** Requests refused because something failed while the policy enforces (see failClosed). */
  failClosed: number;
}

const ALLOW_BODY = '{"Allow":true}';
const ALLOW: PluginHttpResponse = { status: 200, body: ALLOW_BODY };
const ACTIVATE: PluginHttpResponse = { status: 200, body: '{"Implements":["authz"]}' };

export class AuthzPlugin {
  readonly stats: AuthzPluginStats = { requests: 0, allowed: 0, denied: 0, failOpen: 0, failClosed: 0 };
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
    // AuthZRes: we never veto a response; only its request's method and target are read, and only for onResponse.
    if (url === '/AuthZPlugin.AuthZRes') {
      if (this.o.onResponse) {
        try {
          this.o.onResponse(responseHead(req.body));
        } catch (err) {
          this.o.logger.warn({ err }, 'authz response hook failed');
        }
      }
      return ALLOW;
    }
    if (url === '/Plugin.Activate') return ACTIVATE;
    if (url !== '/AuthZPlugin.AuthZReq') return { status: 404, body: JSON.stringify({ Err: `unknown plugin endpoint ${url}` }) };
    const pre = this.o.preempt?.(url);
    if (pre) return this.answer(undefined, pre);
    this.stats.requests++;
    if (req.tooBig) return this.undecided(undefined, new Error(`plugin request of ${req.size} bytes exceeds ${this.maxRequestBytes}`));
    return this.authorize(req.body);
  }

  private authorize(raw: Buffer): PluginHttpResponse | Promise<PluginHttpResponse> {
    const receivedAt = performance.now();
    let request: AuthzRequest;
    try {
      request = parseAuthzRequest(raw, receivedAt);
    } catch (err) {
      return this.undecided(undefined, err);
    }
    let result: AuthzDecision | Promise<AuthzDecision>;
    try {
      result = this.o.evaluate(request);
    } catch (err) {
      return this.undecided(request, err);
    }
    if (!isPromise(result)) return this.answer(request, result);
    return new Promise<PluginHttpResponse>((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        resolve(this.undecided(request, new Error(`no decision within ${this.decisionTimeoutMs} ms`)));
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
          resolve(this.undecided(request, err));
        },
      );
    });
  }

  private answer(req: AuthzRequest | undefined, d: AuthzDecision): PluginHttpResponse {
    if (!d || typeof d.allow !== 'boolean') return this.undecided(req, new Error('evaluator returned no decision'));
    if (d.allow) {
      if (req) this.stats.allowed++;
      return ALLOW;
    }
    this.stats.denied++;
    return { status: 200, body: JSON.stringify({ Allow: false, Msg: d.msg ?? 'denied by Bulkhead policy' }) };
  }

  private undecided(req: AuthzRequest | undefined, err: unknown): PluginHttpResponse {
    let closed = false;
    try {
      closed = this.o.failClosed?.(req) === true;
    } catch {
      closed = true;
    }
    if (closed) {
      this.stats.failClosed++;
      this.stats.denied++;
      const why = err instanceof Error ? err.message : String(err);
      this.o.logger.error({ err, method: req?.method, path: req?.path }, 'authz plugin could not decide; request REFUSED (fail-closed: the policy has rules in enforce mode)');
      return { status: 200, body: JSON.stringify({ Allow: false, Msg: `Bulkhead could not decide on this request (${oneLine(why)}) and refuses it because the policy has rules in enforce mode. Retry; if it persists, see the Bulkhead agent's log.` }) };
    }
    this.stats.failOpen++;
    this.stats.allowed++;
    this.o.logger.error({ err, method: req?.method, path: req?.path }, 'authz plugin could not decide; request ALLOWED (fail-open)');
    return ALLOW;
  }
}

/**
 * The method and routed path of the request an AuthZRes envelope is about, read from its head
 * without parsing the response body dockerd may include (up to 1 MiB, base64): dockerd's Go
 * encoder writes the struct's fields in order — User, UserAuthNMethod, RequestMethod,
 * RequestURI, then the bodies — and escapes every `"` inside a string, so the first
 * `"RequestMethod":"…"` and `"RequestURI":"…"` are those fields. Hand-written for that cost;
 * anything not found reads as unknown (the caller then assumes the worst).
 */
export function responseHead(raw: Buffer): AuthzResponseHead {
  const head = raw.toString('utf8', 0, Math.min(raw.length, 65_536));
  const method = /"RequestMethod":"((?:[^"\\]|\\.)*)"/.exec(head);
  const uri = /"RequestU[Rr][Ii]":"((?:[^"\\]|\\.)*)"/.exec(head);
  const unescape = (m: RegExpExecArray | null): string | undefined => {
    try {
      return m ? (JSON.parse(`"${m[1]}"`) as string) : undefined;
    } catch {
      return undefined; // not a JSON string: unknown, never a throw
    }
  };
  const uriText = unescape(uri);
  let path: string | undefined;
  if (uriText !== undefined) {
    const target = goRequestTarget(uriText);
    if (target.ok) path = posix.normalize(stripVersion(posix.normalize(target.path)));
  }
  return { method: (unescape(method) ?? '').toUpperCase(), path };
}

/** Parses dockerd's AuthZReq envelope. Throws on anything that is not one. */
export function parseAuthzRequest(raw: Buffer | string, receivedAt = performance.now()): AuthzRequest {
  const env = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8')) as Record<string, unknown> | null;
  if (typeof env !== 'object' || env === null) throw new Error('authz request is not a JSON object');
  const method = typeof env['RequestMethod'] === 'string' ? env['RequestMethod'] : '';
  const uri = typeof env['RequestUri'] === 'string' ? env['RequestUri'] : typeof env['RequestURI'] === 'string' ? (env['RequestURI'] as string) : '';
  if (method === '' || uri === '') throw new Error('authz request lacks RequestMethod or RequestUri');
  const target = goRequestTarget(uri);
  const body = env['RequestBody'];
  const hasBody = typeof body === 'string' && body !== '';
  const rawHeaders = env['RequestHeaders'];
  let bytes: Buffer | undefined;
  let apiVersion: string | undefined;
  let parsed: { value: unknown } | undefined;
  let query: URLSearchParams | undefined;
  return {
    method: method.toUpperCase(),
    uri,
    path: target.ok ? stripVersion(target.path) : '',
    // Read only by the start route: computed on first use.
    get apiVersion(): string {
      return (apiVersion ??= target.ok ? apiVersionOf(posix.normalize(target.path)) : '');
    },
    targetError: target.ok ? undefined : target.error,
    // Decoded on first use: most requests are judged by method and path alone.
    get query(): URLSearchParams {
      return (query ??= new URLSearchParams(target.ok ? target.query : ''));
    },
    user: typeof env['User'] === 'string' ? env['User'] : '',
    hasBody,
    header(name: string): string | undefined {
      if (typeof rawHeaders !== 'object' || rawHeaders === null) return undefined;
      const want = name.toLowerCase();
      for (const [k, v] of Object.entries(rawHeaders)) if (k.toLowerCase() === want && typeof v === 'string') return v;
      return undefined;
    },
    body(): Buffer | undefined {
      if (!hasBody) return undefined;
      return (bytes ??= Buffer.from(body as string, 'base64'));
    },
    json(): unknown {
      if (!hasBody) return undefined;
      parsed ??= { value: JSON.parse(this.body()!.toString('utf8')) };
      return parsed.value;
    },
    receivedAt,
  };
}

/** A request target as Go's net/http server reads it: the path its router matches, and the raw query. */
export type RequestTarget = { ok: true; path: string; query: string } | { ok: false; error: string };

/** The target of a plain request, the common case: an absolute path with nothing to decode. */
const PLAIN_TARGET = /^\/[A-Za-z0-9_.\/-]*(?:\?[^#]*)?$/;

/**
 * The path dockerd routes a request target to, read the way Go's
 * url.ParseRequestURI reads it (the server's parser), not the way WHATWG
 * URL does: a scheme of letters, digits, "+", "-", "." before the first ":"
 * is dropped ("foo:/v1.41/containers/create" and "http:/v1.41/…" route to
 * /v1.41/…), "//authority" follows only a scheme, the path is
 * percent-decoded (a bad escape is an error: Go answers 400 itself). A
 * target with a scheme but no absolute path is opaque and routes nowhere;
 * it is reported as an error so that judged methods refuse it.
 */
export function goRequestTarget(uri: string): RequestTarget {
  if (PLAIN_TARGET.test(uri)) {
    const q = uri.indexOf('?');
    return q === -1 ? { ok: true, path: uri, query: '' } : { ok: true, path: uri.slice(0, q), query: uri.slice(q + 1) };
  }
  // Go refuses ASCII control characters anywhere in a URL.
  if (/[\x00-\x1f\x7f]/.test(uri)) return { ok: false, error: 'control character in request target' };
  if (uri === '*') return { ok: true, path: '*', query: '' };
  let rest = uri;
  let scheme = '';
  for (let i = 0; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
    if (letter) continue;
    if ((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e) {
      if (i === 0) break;
      continue;
    }
    if (c === 0x3a) {
      if (i === 0) return { ok: false, error: 'missing protocol scheme in request target' };
      scheme = uri.slice(0, i);
      rest = uri.slice(i + 1);
    }
    break;
  }
  let query = '';
  if (rest.endsWith('?') && rest.indexOf('?') === rest.length - 1) {
    rest = rest.slice(0, -1);
  } else {
    const q = rest.indexOf('?');
    if (q !== -1) {
      query = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
  }
  if (!rest.startsWith('/')) {
    return { ok: false, error: scheme !== '' ? `opaque request target "${uri.slice(0, 60)}"` : `invalid request target "${uri.slice(0, 60)}"` };
  }
  if (scheme !== '' && rest.startsWith('//') && !rest.startsWith('///')) {
    const slash = rest.indexOf('/', 2);
    rest = slash === -1 ? '' : rest.slice(slash);
  }
  // Go's unescape(…, encodePath): %XX only, "+" stays, a bad escape fails.
  if (/%(?![0-9A-Fa-f]{2})/.test(rest)) return { ok: false, error: 'bad percent-escape in request target' };
  let path = rest;
  if (rest.includes('%')) {
    try {
      path = decodeURIComponentBytes(rest);
    } catch {
      return { ok: false, error: 'bad percent-escape in request target' };
    }
  }
  return { ok: true, path, query };
}

/** Percent-decoding to bytes, then UTF-8 as Go keeps it (invalid bytes are not an error in a Go string). */
function decodeURIComponentBytes(s: string): string {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x80) {
      out.push(c);
    } else {
      for (const b of Buffer.from(s[i]!, 'utf8')) out.push(b);
    }
  }
  return Buffer.from(out).toString('utf8');
}

/** "/v1.23/containers/x/start" → "1.23"; "" without a version prefix. */
export function apiVersionOf(path: string): string {
  const m = /^\/+v([0-9.]+)(?:\/|$)/.exec(path);
  return m ? m[1]! : '';
}

/** Go's versions.LessThan: dot-separated numbers compared one by one. */
export function apiVersionLess(v: string, other: string): boolean {
  const a = v.split('.');
  const b = other.split('.');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = Number.parseInt(a[i] ?? '0', 10) || 0;
    const y = Number.parseInt(b[i] ?? '0', 10) || 0;
    if (x !== y) return x < y;
  }
  return false;
}

/**
 * One query parameter of a request URI, read as dockerd reads it
 * (`r.FormValue(key)` over Go's url.ParseQuery): pairs split on "&", the KEY
 * is unescaped too (`n%61me=x` is `name`), "+" is a space, the first
 * value wins; a pair holding ";" or a bad %-escape is skipped (Go then
 * also reports an error, and dockerd refuses the request with 400).
 * Hand-written because URLSearchParams keeps bad escapes and splits on
 * nothing but "&" in another way; this is the hot path of every create.
 */
export function queryParam(uri: string, key: string): string | undefined {
  const q = uri.indexOf('?');
  if (q === -1) return undefined;
  for (const part of uri.slice(q + 1).split('&')) {
    if (part === '' || part.includes(';')) continue;
    const eq = part.indexOf('=');
    const k = goQueryUnescape(eq === -1 ? part : part.slice(0, eq));
    if (k !== key) continue;
    const v = goQueryUnescape(eq === -1 ? '' : part.slice(eq + 1));
    if (v === undefined) continue;
    return v;
  }
  return undefined;
}

/** Go's url.QueryUnescape: "+" → " ", %XX → byte (UTF-8 kept as Go keeps it); undefined on a bad escape. */
function goQueryUnescape(s: string): string | undefined {
  const plus = s.replace(/\+/g, ' ');
  if (!plus.includes('%')) return plus;
  if (/%(?![0-9A-Fa-f]{2})/.test(plus)) return undefined;
  return decodeURIComponentBytes(plus);
}

/** A versioned path with nothing to clean: "/v1.41/containers/abc/start". */
const PLAIN_PATH = /^\/v[0-9.]+(?:\/[A-Za-z0-9_-]+)+$/;

/**
 * "/v1.41/containers/x/start" → "/containers/x/start", for a path already
 * percent-decoded (goRequestTarget). It is cleaned first ("//", ".", "..",
 * a trailing "/"): dockerd's router redirects such paths instead of
 * serving them, so judging the clean form is at worst too strict.
 */
export function stripVersion(path: string): string {
  if (PLAIN_PATH.test(path)) return path.slice(path.indexOf('/', 1));
  let p = posix.normalize(path.startsWith('/') ? path : `/${path}`);
  const m = /^\/v[0-9.]+(\/.*)?$/.exec(p);
  if (m) p = m[1] ?? '/';
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 300 ? `${t.slice(0, 297)}...` : t;
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
