// Owns loading the wire contract in proto/ at run time. The options below
// must match the flags in scripts/gen-proto.mjs so the generated types hold.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ProtoGrpcType as AgentLinkProto } from './generated/agent_link';
import type { ProtoGrpcType as EnrollmentProto } from './generated/enrollment';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Finds proto/ whether we run from src (tap), dist (node) or an installed tree. */
export function protoRoot(): string {
  const candidates = [
    process.env['BULKHEAD_PROTO_DIR'],
    resolve(__dirname, '../../../../proto'),
    resolve(__dirname, '../../../proto'),
    '/usr/lib/bulkhead/proto',
  ].filter((p): p is string => typeof p === 'string');
  for (const c of candidates) {
    if (existsSync(join(c, 'bulkhead/v1/agent_link.proto'))) return c;
  }
  throw new Error(`cannot find proto/ (looked in ${candidates.join(', ')}); set BULKHEAD_PROTO_DIR`);
}

export type BulkheadProto = AgentLinkProto & EnrollmentProto;

let cached: BulkheadProto | undefined;

export function loadProto(): BulkheadProto {
  if (cached) return cached;
  const root = protoRoot();
  const def = protoLoader.loadSync(['bulkhead/v1/agent_link.proto', 'bulkhead/v1/enrollment.proto'], {
    ...LOADER_OPTIONS,
    includeDirs: [root],
  });
  cached = grpc.loadPackageDefinition(def) as unknown as BulkheadProto;
  return cached;
}
