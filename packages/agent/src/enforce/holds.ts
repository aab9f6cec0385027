// Owns remembering what Bulkhead did to a container that a plain Docker API
// call could undo — a pause, a quarantine (networks disconnected), limits
// applied — and which rules (or which operator command) did it. The
// authorization plugin reads it to refuse the undo (`unpause`, a `kill` with
// a signal that resumes a paused container, `stop`/`restart`/`start` of a
// held one, `network connect` of a quarantined one, an `update` loosening
// applied limits, a `docker cp` INTO a paused or quarantined one, a rename
// of any held one) while the
// rule that acted is still enforced; releasing
// goes through Bulkhead (`bulkhead action … unpause|release`, which drops
// the hold before its own engine call, or a policy change).
//
// Persisted as STATE_DIR/holds.json (0600), rewritten atomically on every
// change, so an agent restart does not turn a paused container into one any
// API user may unpause. A hold ends with its container (the watcher's
// `remove`) or its release; container ids are never reused.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, type Logger } from '@bulkhead/shared';

export type HoldKind = 'pause' | 'quarantine' | 'limit';

/** Rule ids of holds an operator made through the controller (no policy rule behind them). */
export const MANUAL_HOLD_RULE: Record<'pause' | 'quarantine', string> = { pause: 'manual.pause', quarantine: 'manual.quarantine' };

export interface Hold {
  kind: HoldKind;
  /** The policy rules whose action made it, or `manual.pause` / `manual.quarantine`. */
  rules: string[];
  /** A pause the enforcer escalated to after its action cap (the container is left alone from then on). */
  escalated?: boolean;
  /** When (ISO) and by whom: `policy vN` or the operator's `requestedBy`. */
  at: string;
  by: string;
}

interface FileShape {
  version: 1;
  containers: Record<string, { name: string; holds: Partial<Record<HoldKind, Hold>> }>;
}

export const HOLDS_FILE = 'holds.json';

export class EnforcementHolds {
  private readonly byId = new Map<string, { name: string; holds: Partial<Record<HoldKind, Hold>> }>();

  private gen = 0;

  private constructor(readonly path: string | undefined, private readonly logger: Logger | undefined) {}

  /** Changes whenever any hold is added, widened or ended (the enforcer re-judges containers after one). */
  get generation(): number {
    return this.gen;
  }

  /** Loads `STATE_DIR/holds.json`; an unreadable file is logged and treated as empty. */
  static open(stateDir: string, logger: Logger): EnforcementHolds {
    const h = new EnforcementHolds(join(stateDir, HOLDS_FILE), logger);
    if (!existsSync(h.path!)) return h;
    try {
      const parsed = JSON.parse(readFileSync(h.path!, 'utf8')) as Partial<FileShape>;
      for (const [id, c] of Object.entries(parsed.containers ?? {})) {
        if (c && typeof c === 'object' && c.holds && typeof c.holds === 'object') h.byId.set(id, { name: String(c.name ?? ''), holds: c.holds });
      }
      if (h.byId.size > 0) logger.info({ containers: h.byId.size, path: h.path }, 'enforcement holds loaded');
    } catch (err) {
      logger.error({ err: (err as Error).message, path: h.path }, 'enforcement holds unreadable; undoing earlier actions is not refused until Bulkhead acts again');
    }
    return h;
  }

  /** Not persisted (unit tests, embedding). */
  static inMemory(): EnforcementHolds {
    return new EnforcementHolds(undefined, undefined);
  }

  /** Containers with any hold. */
  get size(): number {
    return this.byId.size;
  }

  /** Whether any container has a hold of this kind. */
  any(kind: HoldKind): boolean {
    for (const c of this.byId.values()) if (c.holds[kind]) return true;
    return false;
  }

  /** The rule ids behind every hold of this kind. */
  rulesOf(kind: HoldKind): string[] {
    const out = new Set<string>();
    for (const c of this.byId.values()) for (const r of c.holds[kind]?.rules ?? []) out.add(r);
    return [...out];
  }

  /** Every held container: its id and the name it had when last held. */
  *containers(): IterableIterator<{ id: string; name: string }> {
    for (const [id, c] of this.byId) yield { id, name: c.name };
  }

  get(containerId: string, kind: HoldKind): Hold | undefined {
    return this.byId.get(containerId)?.holds[kind];
  }

  /** Records (or widens: rules are merged, escalated stays set) a hold. */
  add(containerId: string, name: string, kind: HoldKind, hold: Omit<Hold, 'kind'>): void {
    const c = this.byId.get(containerId) ?? { name, holds: {} };
    const prev = c.holds[kind];
    const rules = [...new Set([...(prev?.rules ?? []), ...hold.rules])];
    const escalated = (prev?.escalated ?? false) || (hold.escalated ?? false);
    if (prev && rules.length === prev.rules.length && escalated === (prev.escalated ?? false)) return;
    c.name = name || c.name;
    c.holds[kind] = { kind, rules, ...(escalated ? { escalated } : {}), at: prev?.at ?? hold.at, by: prev?.by ?? hold.by };
    this.byId.set(containerId, c);
    this.save();
  }

  /** Ends a hold (a release through Bulkhead). Returns whether there was one. */
  release(containerId: string, kind: HoldKind): boolean {
    const c = this.byId.get(containerId);
    if (!c?.holds[kind]) return false;
    delete c.holds[kind];
    if (Object.keys(c.holds).length === 0) this.byId.delete(containerId);
    this.save();
    return true;
  }

  /**
   * The engine reports the hold undone (an `unpause`/`start`, a network `connect`) at `eventTimeMs`
   * — by a request the plugin allowed (monitor mode, an exemption, a release) or one it never saw:
   * the hold is moot. An event from before the hold (facts read before our own action) ends nothing.
   */
  undone(containerId: string, kind: HoldKind, eventTimeMs: number): boolean {
    const h = this.get(containerId, kind);
    if (!h || !(Date.parse(h.at) < eventTimeMs)) return false;
    return this.release(containerId, kind);
  }

  /** The container is gone: its holds end with it. */
  forget(containerId: string): void {
    if (this.byId.delete(containerId)) this.save();
  }

  private save(): void {
    this.gen++;
    if (!this.path) return;
    const body: FileShape = { version: 1, containers: Object.fromEntries(this.byId) };
    try {
      writeFileAtomic(this.path, JSON.stringify(body, null, 2) + '\n', 0o600);
    } catch (err) {
      // Kept in memory; only an agent restart before the next write would lose it.
      this.logger?.error({ err: (err as Error).message, path: this.path }, 'enforcement holds could not be saved');
    }
  }
}
