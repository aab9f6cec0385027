// The inventory state hash (issue 16): a digest of everything a full snapshot carries, so a
// controller that holds the same hash for an agent knows its stored inventory is exact and the
// snapshot can be skipped on reconnect (docs/architecture.md#inventory-state-hash).
//
// Canonical form: the containers sorted by id, each serialised as JSON with its keys sorted
// (safe-stable-stringify, already in the tree through pino), fields that are undefined left
// out. Equal hash = equal inventory, whatever order the containers or their keys came in.
import { createHash } from 'node:crypto';
import { stringify } from 'safe-stable-stringify';
import type { ContainerFacts } from '../proto/index';

export function inventoryStateHash(containers: readonly ContainerFacts[]): string {
  const sorted = [...containers].sort((a, b) => ((a.id ?? '') < (b.id ?? '') ? -1 : (a.id ?? '') > (b.id ?? '') ? 1 : 0));
  const h = createHash('sha256');
  for (const c of sorted) {
    h.update(stringify(c) ?? '');
    h.update('\n');
  }
  return `sha256:${h.digest('hex')}`;
}
