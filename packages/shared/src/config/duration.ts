// Turns human durations ("15m", "30s", "500ms", "2h", "7d") into milliseconds.
// The grammar is defined once in @bulkhead/client (the ops CLI parses durations too);
// here a bad one is a BK_ERR_CONFIG_INVALID.
import { parseDuration as parseDurationMs } from '@bulkhead/client';
import { BulkheadError } from '../errors/registry';

export function parseDuration(input: string | number, field = 'duration'): number {
  try {
    return parseDurationMs(input, field);
  } catch (e) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', (e as Error).message);
  }
}
