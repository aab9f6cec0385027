// Turns any error into a gRPC status the agent can show: registry errors keep
// their code ("BK_ERR_X: message"); anything else becomes INTERNAL without
// leaking internals.
import * as grpc from '@grpc/grpc-js';
import { ERRORS, isBulkheadError } from '@bulkhead/shared';
import { storeFullError } from '../store/store-full';

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const full = storeFullError(err);
  if (full) return { code: grpc.status[ERRORS[full.code].grpc], details: `${full.code}: ${ERRORS[full.code].message}` };
  if (isBulkheadError(err)) {
    return { code: grpc.status[ERRORS[err.code].grpc], details: err.toString() };
  }
  return { code: grpc.status.INTERNAL, details: 'BK_ERR_INTERNAL: internal error' };
}
