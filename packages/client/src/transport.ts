// Owns the seam between the typed client and the platform's HTTP: the client
// builds requests and reads answers; a Transport carries them. The CLI's is
// node:https with an explicit CA and the API key (packages/cli); the
// console's is fetch with the session cookie and the CSRF header (./fetch).

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface TransportRequest {
  method: HttpMethod;
  /** Absolute API path ("/v1/containers"), already percent-encoded; the transport prefixes its base URL. */
  path: string;
  /** Query parameters in order (repeated names allowed). */
  query: Array<[string, string]>;
  /** Request body as text; undefined for none. */
  body: string | undefined;
  /** Lower-case names: accept, content-type; the transport adds its own credentials. */
  headers: Record<string, string>;
  /** Connect to last byte; the transport's default when undefined. */
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
}

export interface TransportResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
}

export interface Transport {
  /** Sends one request; resolves with any HTTP answer (also 4xx/5xx), rejects with ConnectionError when there is none. */
  request(req: TransportRequest): Promise<TransportResponse>;
  /**
   * Opens a streaming GET (text/event-stream). On 200 calls `onText` with each decoded chunk and
   * resolves when the stream ends or `req.signal` aborts (body ""); on another status resolves with
   * that answer unread by `onText`. Rejects with ConnectionError when the connection fails.
   */
  stream(req: TransportRequest, onText: (text: string) => void): Promise<TransportResponse>;
  /** Told the session after login and GET /v1/session (null after logout): the fetch transport keeps its CSRF token. */
  setSession?(session: { csrfToken: string; csrfHeader: string } | null): void;
}
