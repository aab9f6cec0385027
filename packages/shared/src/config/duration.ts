// Turns human durations ("15m", "30s", "500ms", "2h", "7d") into milliseconds.
// Hand-written because it is eight lines and every option parser needs it.
import { BulkheadError } from '../errors/registry';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(input: string | number, field = 'duration'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${field}: ${input} is not a non-negative number of milliseconds`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(input);
  if (!m) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${field}: "${input}" is not a duration like 500ms, 30s, 15m, 2h or 7d`);
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}
