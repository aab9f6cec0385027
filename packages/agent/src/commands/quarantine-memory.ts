// Owns remembering what a manual quarantine disconnected, so `release` can
// reconnect exactly those networks — with the container's aliases and any
// static addresses — even after an agent restart. Persisted in the state
// directory as quarantine.json (0600), rewritten atomically on every change.
//
// The record is written BEFORE the networks are disconnected: a crash in
// between leaves a record of networks that may still be attached, which a
// release handles (already attached counts as reconnected); the reverse
// order could lose the list for good.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, type Logger } from '@bulkhead/shared';

export interface RememberedNetwork {
  name: string;
  networkId: string;
  /** Aliases on that network (Docker's automatic short-id alias left out). */
  aliases: string[];
  /** Static addresses (`docker run --ip`), as Docker's EndpointConfig.IPAMConfig; null when dynamic. */
  ipamConfig: { IPv4Address?: string; IPv6Address?: string; LinkLocalIPs?: string[] } | null;
}

export interface QuarantineRecord {
  containerId: string;
  containerName: string;
  networks: RememberedNetwork[];
  quarantinedAt: string;
  requestedBy: string;
}

interface FileShape {
  version: 1;
  containers: Record<string, QuarantineRecord>;
}

export const QUARANTINE_FILE = 'quarantine.json';

export class QuarantineMemory {
  private readonly records = new Map<string, QuarantineRecord>();

  private constructor(readonly path: string) {}

  /** Loads `STATE_DIR/quarantine.json`; an unreadable file is logged and treated as empty (release then says so). */
  static open(stateDir: string, logger: Logger): QuarantineMemory {
    const m = new QuarantineMemory(join(stateDir, QUARANTINE_FILE));
    if (!existsSync(m.path)) return m;
    try {
      const parsed = JSON.parse(readFileSync(m.path, 'utf8')) as Partial<FileShape>;
      for (const [id, r] of Object.entries(parsed.containers ?? {})) {
        if (r && Array.isArray(r.networks)) m.records.set(id, { ...r, containerId: id });
      }
      if (m.records.size > 0) logger.info({ containers: m.records.size, path: m.path }, 'quarantine memory loaded');
    } catch (err) {
      logger.error({ err: (err as Error).message, path: m.path }, 'quarantine memory unreadable; releases will find nothing to reconnect');
    }
    return m;
  }

  get(containerId: string): QuarantineRecord | undefined {
    return this.records.get(containerId);
  }

  get size(): number {
    return this.records.size;
  }

  /** Adds networks to the container's record (a second quarantine after a reconnect keeps the first list). */
  remember(r: QuarantineRecord): QuarantineRecord {
    const prev = this.records.get(r.containerId);
    const byName = new Map((prev?.networks ?? []).map((n) => [n.name, n]));
    for (const n of r.networks) byName.set(n.name, n);
    const merged: QuarantineRecord = { ...r, quarantinedAt: prev?.quarantinedAt ?? r.quarantinedAt, networks: [...byName.values()] };
    this.records.set(r.containerId, merged);
    this.save();
    return merged;
  }

  /** Keeps only `networks` for the container (those still to reconnect); none left drops the record. */
  retain(containerId: string, networks: RememberedNetwork[]): void {
    const r = this.records.get(containerId);
    if (!r) return;
    if (networks.length === 0) this.records.delete(containerId);
    else this.records.set(containerId, { ...r, networks });
    this.save();
  }

  forget(containerId: string): void {
    if (this.records.delete(containerId)) this.save();
  }

  private save(): void {
    const body: FileShape = { version: 1, containers: Object.fromEntries(this.records) };
    writeFileAtomic(this.path, JSON.stringify(body, null, 2) + '\n', 0o600);
  }
}
