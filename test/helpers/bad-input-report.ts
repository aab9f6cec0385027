// Measurements of the bad-input tests (test/bad-input/), for RELIABILITY.md.
// When BK_BADINPUT_REPORT names a file, each hostile input appends one JSON
// line to it; scripts/bad-input-report.mjs turns the lines into the figures
// table. Without the variable nothing is written, so the tests run as usual.
import { appendFileSync } from 'node:fs';

export type BadInputCategory =
  | 'documents'
  | 'API values'
  | 'globs'
  | 'reports'
  | 'webhooks'
  | 'auth headers'
  | 'HTTP framing'
  | 'gRPC framing'
  | 'plugin socket';

export interface BadInputMeasurement {
  category: BadInputCategory;
  /** What was sent, in a few words. */
  input: string;
  /** The answer docs/limits.md documents for it, e.g. "431", "Allow:false". */
  expected: string;
  /** The answer seen, in the same words. */
  got: string;
  /** Whether the answer was the documented one. */
  refusedAsDocumented: boolean;
  /** Time from the input's last byte to its answer (ms); null when none is expected (held connections). */
  ms: number | null;
  /** The slowest canary while the input was being handled (ms); null when no canary ran. */
  canaryMs: number | null;
  /** The server stopped answering others (canary over its bound) or crashed. */
  stalled: boolean;
}

export function recordBadInput(m: BadInputMeasurement): void {
  const path = process.env['BK_BADINPUT_REPORT'];
  if (!path) return;
  appendFileSync(path, `${JSON.stringify({ ...m, ms: m.ms === null ? null : Math.round(m.ms), canaryMs: m.canaryMs === null ? null : Math.round(m.canaryMs), at: new Date().toISOString() })}\n`);
}
