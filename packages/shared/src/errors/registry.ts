// The one error registry: every error Bulkhead reports to a user has a stable
// code, an HTTP status and (for the agent link) a gRPC status. docs/errors.md
// documents each code; test/unit checks that none is missing there.

export interface ErrorSpec {
  /** HTTP status used by the REST API. */
  readonly status: number;
  /** gRPC status code name used on the agent link. */
  readonly grpc: 'INVALID_ARGUMENT' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'NOT_FOUND' | 'FAILED_PRECONDITION' | 'UNAVAILABLE' | 'INTERNAL' | 'ALREADY_EXISTS' | 'RESOURCE_EXHAUSTED';
  /** A one-line default message. */
  readonly message: string;
}

export const ERRORS = {
  BK_ERR_CONFIG_INVALID: { status: 400, grpc: 'INVALID_ARGUMENT', message: 'invalid configuration' },
  BK_ERR_BAD_REQUEST: { status: 400, grpc: 'INVALID_ARGUMENT', message: 'the request is malformed' },
  BK_ERR_UNAUTHENTICATED: { status: 401, grpc: 'UNAUTHENTICATED', message: 'missing or invalid credentials' },
  BK_ERR_FORBIDDEN: { status: 403, grpc: 'PERMISSION_DENIED', message: 'not allowed' },
  BK_ERR_CSRF: { status: 403, grpc: 'PERMISSION_DENIED', message: 'a request authenticated by the session cookie that changes something must carry the session\'s X-Bulkhead-CSRF header' },
  BK_ERR_NOT_FOUND: { status: 404, grpc: 'NOT_FOUND', message: 'not found' },
  BK_ERR_NOT_READY: { status: 503, grpc: 'UNAVAILABLE', message: 'not ready' },
  BK_ERR_INTERNAL: { status: 500, grpc: 'INTERNAL', message: 'internal error' },
  BK_ERR_STORE_FULL: { status: 507, grpc: 'UNAVAILABLE', message: 'the controller\'s store is out of disk space; nothing more is stored until space is freed' },
  BK_ERR_TOKEN_INVALID: { status: 401, grpc: 'UNAUTHENTICATED', message: 'join token is malformed or unknown' },
  BK_ERR_TOKEN_USED: { status: 401, grpc: 'UNAUTHENTICATED', message: 'join token was already used' },
  BK_ERR_TOKEN_EXPIRED: { status: 401, grpc: 'UNAUTHENTICATED', message: 'join token has expired' },
  BK_ERR_TOKEN_REVOKED: { status: 401, grpc: 'UNAUTHENTICATED', message: 'join token was revoked' },
  BK_ERR_CSR_INVALID: { status: 400, grpc: 'INVALID_ARGUMENT', message: 'certificate signing request is invalid' },
  BK_ERR_CERT_REQUIRED: { status: 401, grpc: 'UNAUTHENTICATED', message: 'a valid client certificate issued by this controller is required (missing, expired, or from another CA)' },
  BK_ERR_CERT_EXPIRED: { status: 401, grpc: 'UNAUTHENTICATED', message: 'the agent certificate has expired and can no longer be renewed; enroll the host again' },
  BK_ERR_AGENT_UNKNOWN: { status: 403, grpc: 'PERMISSION_DENIED', message: 'agent is not enrolled' },
  BK_ERR_AGENT_REVOKED: { status: 403, grpc: 'PERMISSION_DENIED', message: 'agent was revoked' },
  BK_ERR_AGENT_ID_MISMATCH: { status: 403, grpc: 'PERMISSION_DENIED', message: 'message claims an agent id other than the certificate identity' },
  BK_ERR_PROTOCOL: { status: 400, grpc: 'INVALID_ARGUMENT', message: 'agent protocol violation' },
  BK_ERR_CA_PIN_MISMATCH: { status: 400, grpc: 'UNAUTHENTICATED', message: 'the controller CA does not match the pinned fingerprint' },
  BK_ERR_NOT_ENROLLED: { status: 400, grpc: 'FAILED_PRECONDITION', message: 'this agent has no identity yet; run `bulkhead-agent enroll` first' },
  BK_ERR_ALREADY_INITIALIZED: { status: 409, grpc: 'ALREADY_EXISTS', message: 'the data directory is already initialized' },
  BK_ERR_NOT_INITIALIZED: { status: 400, grpc: 'FAILED_PRECONDITION', message: 'the data directory is not initialized; run `bulkhead-controller init` first' },
  BK_ERR_DOCKER_UNAVAILABLE: { status: 503, grpc: 'UNAVAILABLE', message: 'the Docker engine is unreachable' },
  BK_ERR_CONTROLLER_UNAVAILABLE: { status: 503, grpc: 'UNAVAILABLE', message: 'the controller is unreachable' },
  BK_ERR_STARTUP_FAILED: { status: 500, grpc: 'UNAVAILABLE', message: 'a component failed to start (e.g. its listen address is in use)' },
  BK_ERR_RATE_LIMITED: { status: 429, grpc: 'RESOURCE_EXHAUSTED', message: 'too many requests' },
  BK_ERR_TOO_LARGE: { status: 413, grpc: 'RESOURCE_EXHAUSTED', message: 'the request is larger than this endpoint accepts' },
  BK_ERR_POLICY_INVALID: { status: 400, grpc: 'INVALID_ARGUMENT', message: 'the policy document is invalid' },
  BK_ERR_BUNDLE_TOO_LARGE: { status: 413, grpc: 'RESOURCE_EXHAUSTED', message: 'the policy with the scan summaries would make a bundle larger than agents receive' },
  // alerts + webhooks
  BK_ERR_WEBHOOK_UNSAFE_TARGET: { status: 400, grpc: 'INVALID_ARGUMENT', message: 'the webhook URL points at a link-local or cloud metadata address' },
  BK_ERR_CONFLICT: { status: 409, grpc: 'FAILED_PRECONDITION', message: 'the resource is not in a state that allows this request' },
  // manual container actions
  BK_ERR_AGENT_OFFLINE: { status: 409, grpc: 'FAILED_PRECONDITION', message: 'the agent is not connected to any controller replica' },
  BK_ERR_ACTION_FAILED: { status: 502, grpc: 'INTERNAL', message: 'the agent could not carry out the action' },
  BK_ERR_ACTION_UNCONFIRMED: { status: 504, grpc: 'UNAVAILABLE', message: 'the agent did not confirm the action in time; it may or may not have been carried out' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error with a stable code. Foreign errors are wrapped with `cause`. */
export class BulkheadError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ERRORS[code].message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'BulkheadError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options?.details;
  }

  /** "BK_ERR_X: message" — the form shown to users and sent over gRPC. */
  override toString(): string {
    return `${this.code}: ${this.message}`;
  }
}

export function isBulkheadError(e: unknown): e is BulkheadError {
  return e instanceof BulkheadError;
}

/** Parses "BK_ERR_X: message" (as carried in a gRPC status details string). */
export function parseErrorString(s: string): { code: ErrorCode; message: string } | undefined {
  const m = /^(BK_ERR_[A-Z_]+): ([\s\S]*)$/.exec(s);
  if (!m || !(m[1]! in ERRORS)) return undefined;
  return { code: m[1] as ErrorCode, message: m[2]! };
}
