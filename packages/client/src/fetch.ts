// Owns the browser's transport for @bulkhead/client: fetch against the
// console's own origin, the session cookie sent by the browser (HttpOnly: this
// code never sees it), and the session's CSRF token — kept in memory only,
// never in localStorage/sessionStorage — as X-Bulkhead-CSRF on every POST,
// PUT, PATCH and DELETE (docs/api.md "Browser sessions").
import { ConnectionError } from './errors';
import type { Transport, TransportRequest, TransportResponse } from './transport';

export interface FetchTransportOptions {
  /** Where the API is: default "" (the page's own origin, as the console is served by the controller). */
  baseUrl?: string;
  /** Default globalThis.fetch. */
  fetch?: typeof fetch;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export class FetchTransport implements Transport {
  private readonly baseUrl: string;
  private readonly fetchFn: typeof fetch;
  private csrf: { header: string; token: string } | null = null;

  constructor(o: FetchTransportOptions = {}) {
    this.baseUrl = (o.baseUrl ?? '').replace(/\/+$/, '');
    this.fetchFn = o.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Called by BulkheadClient after login/GET /v1/session (and with null after logout). */
  setSession(session: { csrfToken: string; csrfHeader: string } | null): void {
    this.csrf = session === null ? null : { header: session.csrfHeader, token: session.csrfToken };
  }

  /** True while a CSRF token is held (a session was seen). */
  get hasSession(): boolean {
    return this.csrf !== null;
  }

  async request(req: TransportRequest): Promise<TransportResponse> {
    const { res, done } = await this.send(req);
    try {
      return { status: res.status, headers: headersOf(res.headers), body: await res.text() };
    } catch (e) {
      throw this.connectionError(e, req);
    } finally {
      done();
    }
  }

  async stream(req: TransportRequest, onText: (text: string) => void): Promise<TransportResponse> {
    const { res, done, touch } = await this.send(req);
    try {
      const headers = headersOf(res.headers);
      if (res.status !== 200 || res.body === null) return { status: res.status, headers, body: await res.text() };
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (req.signal?.aborted) return { status: 200, headers, body: '' };
          throw e;
        }
        if (chunk.done) break;
        touch();
        const text = decoder.decode(chunk.value, { stream: true });
        if (text !== '') onText(text);
      }
      return { status: 200, headers, body: '' };
    } catch (e) {
      if (req.signal?.aborted) return { status: 200, headers: {}, body: '' };
      throw this.connectionError(e, req);
    } finally {
      done();
    }
  }

  private url(req: TransportRequest): string {
    const q = new URLSearchParams(req.query).toString();
    return `${this.baseUrl}${req.path}${q === '' ? '' : `?${q}`}`;
  }

  /**
   * Starts the request with a timer that aborts it after `timeoutMs` without progress
   * (`touch` restarts it: a stream's idle timeout); `done` clears the timer.
   */
  private async send(req: TransportRequest): Promise<{ res: Response; done: () => void; touch: () => void }> {
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(req.signal?.reason);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    if (req.signal?.aborted) ctl.abort(req.signal.reason);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const touch = () => {
      if (timer !== undefined) clearTimeout(timer);
      if (req.timeoutMs !== undefined) timer = setTimeout(() => ctl.abort(new TimeoutError(req.timeoutMs!)), req.timeoutMs);
    };
    const done = () => {
      if (timer !== undefined) clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
    };
    touch();
    const headers: Record<string, string> = { ...req.headers };
    if (MUTATING.has(req.method) && this.csrf !== null) headers[this.csrf.header] = this.csrf.token;
    try {
      const res = await this.fetchFn(this.url(req), {
        method: req.method,
        headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        // The session cookie, and only to the console's own origin.
        credentials: 'same-origin',
        redirect: 'error',
        signal: ctl.signal,
      });
      return { res, done, touch };
    } catch (e) {
      done();
      throw this.connectionError(e, req, ctl.signal.reason);
    }
  }

  private connectionError(e: unknown, req: TransportRequest, reason?: unknown): ConnectionError {
    if (e instanceof ConnectionError) return e;
    const url = this.baseUrl || ((globalThis as { location?: { origin?: string } }).location?.origin ?? '');
    if (reason instanceof TimeoutError) return new ConnectionError(`no answer from ${url || 'the API'} within ${reason.ms} ms (${req.method} ${req.path})`, url, 'ETIMEDOUT', false, e);
    return new ConnectionError(`cannot reach ${url || 'the API'}: ${(e as Error)?.message ?? String(e)}`, url, (e as { name?: string })?.name, false, e);
  }
}

class TimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`timed out after ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

function headersOf(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((v, k) => (out[k.toLowerCase()] = v));
  return out;
}
