// Owns tag tracking: from the container facts agents report (snapshots and
// upsert deltas), which repository:tag ran as which digest, on which host, in
// which container (containers that ran: a create never started counts for nothing).
// A tag seen as a new image after it ran as another — re-pushed
// over, or running as different images on different hosts at once — raises ONE
// `image_tag_moved` alert per new digest (the store's first-seen row decides,
// so container reports repeating it raise nothing more). New tags are told to
// the policy service, which sends their pins to agents.
// For `image-tag-pinned` rules with a scope, it also records each rule's own pins:
// the first digest of each tag seen running on a container in the rule's scope
// (tag-pins.ts), from every report and, when such a rule appears or its scope
// changes, from the containers the inventory holds as running at that moment.
//
// Never fatal for the link: a failure is logged and the next report tries again.
import { inRuleScope, tagIdentity, type ContainerFacts__Output, type HostFacts__Output, type Logger, type Policy } from '@bulkhead/shared';
import type { AlertSink } from '../alerts/alert-service';
import type { Store } from '../store/store';
import type { ImageTagStore, NewTagDigest, ScopedPinRecord, TagSighting } from './image-tag-store';
import { scopedPinRules, type PinRule } from './tag-pins';
import type { JobGate } from '../replicas/fleet-jobs';

export interface TagTrackerOptions {
  store: Store;
  logger: Logger;
  alerts?: AlertSink;
  now?: () => Date;
  /** Called (at most once per `notifyDelayMs`) after a tag was seen for the first time: a new pin. */
  onNewDigest?: () => void;
  /** How often a container still running the same image refreshes its last-seen time. Default 60 s. */
  refreshMs?: number;
  /** Container sightings last seen longer ago are forgotten (the digests stay). Default 90 days. */
  retentionMs?: number;
  /** Default 1 s. */
  notifyDelayMs?: number;
  /** The policy in force, for the pins of scoped image-tag-pinned rules; absent = none recorded. */
  policy?: () => Policy;
  /** Controller replicas: the hourly prune of old sightings runs on one replica per hour (replicas/fleet-jobs.ts); default always. */
  jobGate?: JobGate;
}

/** Containers remembered for write throttling; cleared wholesale beyond it. */
const MAX_REMEMBERED = 50_000;
const PRUNE_EVERY_MS = 60 * 60_000;
/** Scoped pins known to be stored (a pin never changes), skipped without a database round trip; cleared wholesale beyond it. */
const MAX_KNOWN_PINS = 50_000;
/** Containers read per page of the inventory when a scoped rule is seeded. */
const SEED_PAGE = 1000;

export class TagTracker {
  private readonly now: () => Date;
  private readonly refreshMs: number;
  private readonly retentionMs: number;
  private readonly notifyDelayMs: number;
  /** agent/container → the digest last written for it and when: a container seen again within refreshMs is not rewritten. */
  private readonly written = new Map<string, { digest: string; at: number }>();
  private notifyTimer: NodeJS.Timeout | undefined;
  private lastPrune = 0;
  /** "<rule id>\0<scope key>\0repository:tag" of scoped pins known to be stored. */
  private readonly knownPins = new Set<string>();
  /** The scoped rules (id and scope key) last seeded from the inventory. */
  private seeded = '';
  private seeding: Promise<void> = Promise.resolve();

  constructor(private readonly o: TagTrackerOptions) {
    this.now = o.now ?? (() => new Date());
    this.refreshMs = o.refreshMs ?? 60_000;
    this.retentionMs = o.retentionMs ?? 90 * 86_400_000;
    this.notifyDelayMs = o.notifyDelayMs ?? 1000;
  }

  private get store(): ImageTagStore | undefined {
    return this.o.store.imageTags;
  }

  /** Records what `agentId` reports running; resolves once stored and the alerts of moves are raised. */
  async observe(agentId: string, containers: readonly ContainerFacts__Output[]): Promise<void> {
    const store = this.store;
    if (!store || containers.length === 0) return;
    const now = this.now();
    const t = now.getTime();
    // Before the write throttle below: a pin is decided by what runs, not by when it was last written.
    await this.recordScopedPins(store, agentId, containers, now);
    const rows: TagSighting[] = [];
    for (const c of containers) {
      if (!ran(c)) continue;
      const id = tagIdentity(c);
      if (!id || id.digest === '' || !c.id) continue;
      const key = `${agentId}/${c.id}`;
      const prev = this.written.get(key);
      if (prev && prev.digest === id.digest && t - prev.at < this.refreshMs) continue;
      rows.push({ agentId, containerId: c.id, containerName: c.name, repository: id.repository, tag: id.tag, digest: id.digest, imageId: c.imageId });
    }
    if (rows.length === 0) return;
    const fresh = await store.recordSightings(rows, now);
    if (this.written.size + rows.length > MAX_REMEMBERED) this.written.clear();
    for (const r of rows) this.written.set(`${r.agentId}/${r.containerId}`, { digest: r.digest, at: t });
    for (const d of fresh) if (d.moved) await this.raiseMove(store, d);
    if (fresh.some((d) => d.firstOfTag)) this.scheduleNotify();
    if (t - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = t;
      // Another replica may have pruned this hour; then it is not repeated here.
      const mine = this.o.jobGate ? await this.o.jobGate('image-tag-prune', PRUNE_EVERY_MS) : true;
      const n = mine ? await store.pruneSightings(new Date(t - this.retentionMs)) : 0;
      if (n > 0) this.o.logger.info({ forgotten: n }, 'old image tag sightings forgotten');
    }
  }

  /** Raises the alerts of moves stored before a stop without their alert. Returns how many. */
  async raisePending(): Promise<number> {
    const store = this.store;
    if (!store || !this.o.alerts) return 0;
    const pending = await store.listPendingMoves(1000);
    for (const d of pending) await this.raiseMove(store, d);
    return pending.length;
  }

  /**
   * The policy changed: when it has scoped image-tag-pinned rules not seeded yet (new, or their
   * scope, tags or repositories edited), their pins are seeded from the containers the inventory
   * holds as running now — a rule's pins start with what runs in its scope when it takes effect.
   * Resolves when done; never rejects (failures are logged, and reports keep recording pins).
   */
  policyChanged(): Promise<void> {
    this.seeding = this.seeding.then(() => this.seed()).catch((err: unknown) => this.o.logger.error({ err }, 'seeding scoped tag pins failed'));
    return this.seeding;
  }

  private async seed(): Promise<void> {
    const store = this.store;
    const policy = this.o.policy?.();
    if (!store || !policy) return;
    const rules = scopedPinRules(policy);
    const sig = rules.map((r) => `${r.rule.id}\u0000${r.scopeKey}`).sort().join('\n');
    if (sig === this.seeded) return;
    const agents = await this.o.store.listAgents();
    const now = this.now();
    for (const a of agents) {
      for (let offset = 0; ; offset += SEED_PAGE) {
        const page = await this.o.store.listContainers({ agentId: a.id, limit: SEED_PAGE, offset });
        await this.recordScopedPins(store, a.id, page.map((c) => c.facts), now, a.host ?? undefined);
        if (page.length < SEED_PAGE) break;
      }
    }
    this.seeded = sig;
  }

  /**
   * The pins of scoped rules these containers establish: for each container that ran, each
   * scoped rule covering its tag and matching it by scope (inRuleScope, with its host's facts)
   * → a candidate pin. Candidates go to the store in the order the containers started, so of
   * two digests first reported together the one that started first is the pin.
   */
  private async recordScopedPins(store: ImageTagStore, agentId: string, containers: readonly ContainerFacts__Output[], now: Date, hostFacts?: HostFacts__Output): Promise<void> {
    const policy = this.o.policy?.();
    if (!policy) return;
    const rules: PinRule[] = scopedPinRules(policy);
    if (rules.length === 0) return;
    let host: HostFacts__Output | undefined | null = hostFacts;
    const candidates: Array<{ pin: ScopedPinRecord; key: string; startedAt: number }> = [];
    for (const c of containers) {
      if (!ran(c)) continue;
      const id = tagIdentity(c);
      if (!id || id.digest === '' || !c.id) continue;
      for (const r of rules) {
        if (!r.covers(id.repository, id.tag)) continue;
        const key = `${r.rule.id}\u0000${r.scopeKey}\u0000${id.key}`;
        if (this.knownPins.has(key)) continue;
        // The host's labels as the controller last heard them (its hello); one read per report.
        if (host === undefined) host = (await this.o.store.getAgent(agentId))?.host ?? null;
        if (!inRuleScope(policy, r.rule, { container: c, ...(host ? { host } : {}) })) continue;
        candidates.push({
          key,
          startedAt: Number(c.startedAtMs ?? 0) || Number.MAX_SAFE_INTEGER,
          pin: {
            ruleId: r.rule.id, scopeKey: r.scopeKey, repository: id.repository, tag: id.tag, digest: id.digest, imageId: c.imageId,
            firstSeenAt: now, agentId, containerId: c.id,
          },
        });
      }
    }
    if (candidates.length === 0) return;
    candidates.sort((a, b) => a.startedAt - b.startedAt || (a.pin.digest < b.pin.digest ? -1 : a.pin.digest > b.pin.digest ? 1 : 0));
    const stored = await store.recordScopedPins(candidates.map((c) => c.pin));
    if (this.knownPins.size + candidates.length > MAX_KNOWN_PINS) this.knownPins.clear();
    // Stored now or before (by this or another controller): either way the pin exists.
    for (const c of candidates) this.knownPins.add(c.key);
    for (const p of stored) this.o.logger.info({ rule: p.ruleId, image: `${p.repository}:${p.tag}`, digest: p.digest, agentId }, 'tag pinned in rule scope');
    if (stored.length > 0) this.scheduleNotify();
  }

  close(): void {
    if (this.notifyTimer) clearTimeout(this.notifyTimer);
    this.notifyTimer = undefined;
  }

  private scheduleNotify(): void {
    if (!this.o.onNewDigest || this.notifyTimer) return;
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = undefined;
      try {
        this.o.onNewDigest?.();
      } catch (err) {
        this.o.logger.error({ err }, 'tag pin listener failed');
      }
    }, this.notifyDelayMs);
    this.notifyTimer.unref();
  }

  private async raiseMove(store: ImageTagStore, d: NewTagDigest): Promise<void> {
    const ref = `${d.repository}:${d.tag}`;
    const tag = await store.getTag(d.repository, d.tag, 10);
    const hostNames = new Map<string, string>();
    const hostname = async (agentId: string): Promise<string> => {
      let h = hostNames.get(agentId);
      if (h === undefined) {
        h = (await this.o.store.getAgent(agentId))?.hostname || agentId;
        hostNames.set(agentId, h);
      }
      return h;
    };
    // Host names need not be unique across a fleet; the agent id is.
    const host = async (agentId: string): Promise<string> => `${await hostname(agentId)} (${agentId})`;
    const mine = tag?.digests.find((x) => x.digest === d.digest);
    const first = mine?.containers.find((c) => c.agentId === d.agentId) ?? mine?.containers[0];
    const others: string[] = [];
    for (const o of tag?.digests ?? []) {
      if (o.digest === d.digest) continue;
      const hosts = [...new Set(await Promise.all(o.containers.map((c) => host(c.agentId))))];
      others.push(`${o.digest} (first seen ${o.firstSeenAt.toISOString()}${hosts.length > 0 ? ` on ${hosts.join(', ')}` : ''})`);
    }
    const where = await host(d.agentId);
    const whereName = await hostname(d.agentId);
    const message = `image tag ${ref} moved: it now runs as ${d.digest} on ${where}${first ? ` (container ${first.containerName || first.containerId})` : ''}; ` +
      `it ran as ${others.join('; ') || 'another image'} before`;
    if (!this.o.alerts) {
      await store.clearAlertPending(d.repository, d.tag, d.digest);
      return;
    }
    try {
      await this.o.alerts.raise({
        type: 'image_tag_moved', message, time: d.firstSeenAt, agentId: d.agentId, host: whereName, image: ref,
        // The new digest names the move: two moves of one tag are two alerts, a repeat of one is none.
        ruleId: d.digest,
        ...(first ? { containerId: first.containerId, containerName: first.containerName } : {}),
      });
      await store.clearAlertPending(d.repository, d.tag, d.digest);
      this.o.logger.warn({ image: ref, digest: d.digest, agentId: d.agentId }, 'image tag moved');
    } catch (err) {
      // Stays pending: raised again at the next start (raisePending).
      this.o.logger.error({ err, image: ref }, 'raising image_tag_moved failed');
    }
  }
}

/**
 * A container that runs or ran: a create that never started (or was refused at start) ran
 * nothing, so it neither moves a tag nor establishes its pin.
 */
function ran(c: ContainerFacts__Output): boolean {
  return c.state === 'running' || c.state === 'paused' || c.state === 'restarting' || Number(c.startedAtMs ?? 0) > 0;
}
