// Owns the two ways a request fails, the same in Node and in a browser: the
// API answered with a problem (ApiError: status, BK_ERR_* code, title,
// detail) or it could not be reached at all (ConnectionError).
import type { components } from './generated/openapi';

/** RFC 9457 problem details plus the stable Bulkhead code (docs/errors.md). */
export type Problem = components['schemas']['Problem'];

/** One error of an invalid policy document (BK_ERR_POLICY_INVALID's `errors`). */
export interface PolicyError {
  file: string;
  line: number;
  column: number;
  path: string;
  message: string;
  [k: string]: unknown;
}

/** The API answered with an error (problem+json, or something else non-2xx). */
export class ApiError extends Error {
  readonly status: number;
  /** BK_ERR_… from the problem; HTTP_<status> when the answer was not a problem; BK_ERR_PROTOCOL for an unreadable success. */
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  readonly problem: Problem | undefined;
  /** BK_ERR_POLICY_INVALID: every error, each with file, line, column and path. */
  readonly policyErrors: PolicyError[];

  constructor(status: number, code: string, detail: string, problem?: Problem, title?: string) {
    super(`${code}: ${detail}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.title = title ?? problem?.title ?? '';
    this.detail = detail;
    this.problem = problem;
    const errors = (problem as { errors?: unknown } | undefined)?.errors;
    this.policyErrors = Array.isArray(errors) ? (errors as PolicyError[]) : [];
  }
}

/** No HTTP answer: DNS, TCP, TLS (untrusted certificate, wrong name), timeout, a browser's network error. */
export class ConnectionError extends Error {
  readonly url: string;
  /** The platform's error code when there is one, e.g. ECONNREFUSED, SELF_SIGNED_CERT_IN_CHAIN, ETIMEDOUT. */
  readonly errorCode: string | undefined;
  readonly tls: boolean;

  constructor(message: string, url: string, errorCode: string | undefined, tls: boolean, cause?: unknown) {
    super(message, cause !== undefined ? { cause } : undefined);
    this.name = 'ConnectionError';
    this.url = url;
    this.errorCode = errorCode;
    this.tls = tls;
  }
}

/** The ApiError for a non-2xx answer with body `text`. */
export function problemError(status: number, text: string): ApiError {
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  const p = body as Partial<Problem> | undefined;
  if (p && typeof p === 'object' && typeof p.code === 'string') {
    return new ApiError(status, p.code, typeof p.detail === 'string' ? p.detail : (p.title ?? ''), p as Problem);
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(status, `HTTP_${status}`, snippet === '' ? 'no error details in the response' : snippet);
}
