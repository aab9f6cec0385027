// Owns how the REST API reports errors: RFC 9457 problem details
// (application/problem+json) carrying a code from the shared registry.
// Anything that is not a BulkheadError or a fastify client error becomes a
// bare 500 BK_ERR_INTERNAL — its message stays in the log, not the response.
import { ERRORS, isBulkheadError, type ErrorCode } from '@bulkhead/shared';
import type { ProblemDto } from './dto';
import { storeFullError } from '../store/store-full';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

/** Stable per-code URI; docs/errors.md documents each code. */
export function problemType(code: ErrorCode): string {
  return `urn:bulkhead:error:${code}`;
}

export function makeProblem(code: ErrorCode, detail?: string, status?: number): ProblemDto {
  const spec = ERRORS[code];
  return { type: problemType(code), title: spec.message, status: status ?? spec.status, detail: detail ?? spec.message, code };
}

interface FastifyishError {
  statusCode?: number;
  validation?: unknown;
  validationContext?: string;
  message?: string;
}

/**
 * Maps any thrown value to a problem. `internal` is true for server-side
 * failures: the caller logs those at error level with the original error.
 */
export function toProblem(err: unknown): { problem: ProblemDto; internal: boolean } {
  // A full disk under the store: say so (and log it as an error), it is the operator's to fix.
  const full = storeFullError(err);
  if (full) return { problem: makeProblem(full.code, ERRORS.BK_ERR_STORE_FULL.message, full.status), internal: true };
  if (isBulkheadError(err)) {
    // BK_ERR_INTERNAL messages may name files or SQL; keep them in the log.
    if (err.code === 'BK_ERR_INTERNAL') return { problem: internalProblem(), internal: true };
    return { problem: makeProblem(err.code, err.message, err.status), internal: err.status >= 500 };
  }
  const fe = (typeof err === 'object' && err !== null ? err : {}) as FastifyishError;
  if (fe.validation !== undefined) {
    // fastify's own wording, e.g. "querystring/limit must be <= 1000".
    return { problem: makeProblem('BK_ERR_BAD_REQUEST', fe.message ?? 'invalid request'), internal: false };
  }
  const status = fe.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // fastify client errors (bad content type, body too large, …): their messages are safe to show.
    const code: ErrorCode = status === 404 ? 'BK_ERR_NOT_FOUND' : status === 429 ? 'BK_ERR_RATE_LIMITED' : 'BK_ERR_BAD_REQUEST';
    return { problem: makeProblem(code, fe.message ?? ERRORS[code].message, status), internal: false };
  }
  return { problem: internalProblem(), internal: true };
}

function internalProblem(): ProblemDto {
  return makeProblem('BK_ERR_INTERNAL', 'internal error; see the controller log');
}
