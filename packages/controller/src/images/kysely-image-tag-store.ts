// Owns the SQL of tag tracking (tables image_tags and image_tag_sightings,
// migration 0013_image_tags; image_tag_scope_pins, 0017_image_tag_scope_pins), portable across SQLite and PostgreSQL like
// KyselyStore: integer-ms times, ON CONFLICT for first-seen rows.
import { PostgresAdapter, sql, type Selectable } from 'kysely';
import type { Db, ImageTagSightingsTable, ImageTagsTable } from '../store/schema';
import type {
  ImageTagQuery, ImageTagRecord, ImageTagStore, NewTagDigest, ScopedPinRecord, TagContainerRecord, TagDigestRecord, TagPinRecord, TagSighting,
} from './image-tag-store';

/** Sightings per multi-row statement (8 parameters each). */
const BATCH = 200;
/**
 * A digest's last-seen time is refreshed at most this often. Every snapshot of every agent
 * running an image refreshed it, and the update holds the shared image_tags row locked until
 * the snapshot's transaction commits: a fleet reconnecting at once (a controller replica
 * failing over) stored its snapshots one after another (issue 16: 500 agents, 8 backends
 * waiting on that row's lock for 5 s). Within this period the row is only read.
 */
export const TAG_SEEN_REFRESH_MS = 60_000;
/** Containers listed per digest unless the caller asks for another bound. */
const DEFAULT_CONTAINERS_PER_DIGEST = 50;

export class KyselyImageTagStore implements ImageTagStore {
  private readonly postgres: boolean;

  constructor(private readonly db: Db) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async recordSightings(rows: readonly TagSighting[], now: Date): Promise<NewTagDigest[]> {
    if (rows.length === 0) return [];
    const at = now.getTime();
    // One (repository, tag, digest) entry per distinct digest in the batch.
    const digests = new Map<string, TagSighting>();
    for (const r of rows) digests.set(`${r.repository}\u0000${r.tag}\u0000${r.digest}`, r);
    const fresh: NewTagDigest[] = [];
    await this.db.transaction().execute(async (trx) => {
      // In key order: snapshots from many agents run this at once, and rows of the shared
      // image_tags table locked in each agent's container order deadlocked on PostgreSQL
      // (bench/fleet-sim: 245 deadlocks at 100 agents). One order for every caller cannot.
      for (const key of [...digests.keys()].sort()) {
        const d = digests.get(key)!;
        const known = await trx
          .selectFrom('image_tags')
          .select(['digest', 'image_id', 'first_seen_at', 'last_seen_at'])
          .where('repository', '=', d.repository)
          .where('tag', '=', d.tag)
          .execute();
        const same = known.find((k) => k.digest === d.digest);
        if (same) {
          // Recent enough: no update, so no row lock held until commit (TAG_SEEN_REFRESH_MS). The
          // condition is checked again under the lock: of callers racing past the read, the first
          // refreshes it and the ones it held up find it fresh and change nothing.
          // On PostgreSQL a row another transaction is refreshing right now is skipped (SKIP
          // LOCKED), not waited for: it is being refreshed, and waiting held every snapshot of the
          // fleet behind that one transaction once a minute (failover-sim, 500 agents: 9 backends
          // waiting on the row at the minute mark).
          if (Number(same.last_seen_at) <= at - TAG_SEEN_REFRESH_MS) {
            let q = trx.updateTable('image_tags').set({ last_seen_at: at })
              .where('repository', '=', d.repository).where('tag', '=', d.tag).where('digest', '=', d.digest)
              .where('last_seen_at', '<=', at - TAG_SEEN_REFRESH_MS);
            if (this.postgres) {
              q = q.where(sql<boolean>`ctid = any(array(${trx.selectFrom('image_tags').select(sql`ctid`.as('ctid'))
                .where('repository', '=', d.repository).where('tag', '=', d.tag).where('digest', '=', d.digest)
                .where('last_seen_at', '<=', at - TAG_SEEN_REFRESH_MS)
                .forUpdate().skipLocked()}))`);
            }
            await q.execute();
          }
          continue;
        }
        // A move: a digest seen before this one is another image (one with the same image id is
        // the same content). "Before" is (first seen, digest) order, the same order the check
        // after the commit uses, so both always agree on which digest is the move.
        const moved = known.some((k) => isBefore(k, { digest: d.digest, first_seen_at: at }) && !sameImage(k.image_id, d.imageId));
        // alert_pending: 1 = a move whose alert is due, 0 = its alert is raised, null = no move (yet).
        const r = await trx
          .insertInto('image_tags')
          .values({
            repository: d.repository, tag: d.tag, digest: d.digest, image_id: d.imageId,
            first_seen_at: at, last_seen_at: at, first_agent_id: d.agentId, alert_pending: moved ? 1 : null,
          })
          .onConflict((oc) => oc.columns(['repository', 'tag', 'digest']).doNothing())
          .executeTakeFirst();
        if (Number(r.numInsertedOrUpdatedRows ?? 0) > 0) {
          fresh.push({ repository: d.repository, tag: d.tag, digest: d.digest, imageId: d.imageId, firstSeenAt: now, agentId: d.agentId, moved, firstOfTag: known.length === 0 });
        }
      }
      const one = new Map<string, TagSighting>();
      for (const r of rows) one.set(`${r.agentId}\u0000${r.containerId}`, r);
      const list = [...one.keys()].sort().map((k) => one.get(k)!);
      for (let i = 0; i < list.length; i += BATCH) {
        await trx
          .insertInto('image_tag_sightings')
          .values(list.slice(i, i + BATCH).map((r) => ({
            agent_id: r.agentId, container_id: r.containerId, container_name: r.containerName,
            repository: r.repository, tag: r.tag, digest: r.digest, first_seen_at: at, last_seen_at: at,
          })))
          .onConflict((oc) => oc.columns(['agent_id', 'container_id']).doUpdateSet((eb) => ({
            last_seen_at: eb.ref('excluded.last_seen_at'),
            container_name: eb.ref('excluded.container_name'),
          })))
          .execute();
      }
    });
    // Two controllers on one PostgreSQL database (or two transactions of one) that insert new
    // digests of a tag at the same time do not see each other's rows inside their transactions.
    // Once committed, the later of the two checks sees both: every digest that is a move and was
    // not claimed yet is claimed here — the conditional update lets exactly one caller claim it,
    // whichever process inserted the row.
    const tags = new Map<string, NewTagDigest>();
    for (const f of fresh) if (!f.moved) tags.set(`${f.repository}\u0000${f.tag}`, f);
    for (const f of tags.values()) {
      const all = await this.db.selectFrom('image_tags').select(['digest', 'image_id', 'first_seen_at', 'first_agent_id', 'alert_pending'])
        .where('repository', '=', f.repository).where('tag', '=', f.tag).execute();
      for (const r of all) {
        if (r.alert_pending !== null) continue;
        if (!all.some((o) => isBefore(o, r) && !sameImage(o.image_id, r.image_id))) continue;
        const u = await this.db.updateTable('image_tags').set({ alert_pending: 1 })
          .where('repository', '=', f.repository).where('tag', '=', f.tag).where('digest', '=', r.digest).where('alert_pending', 'is', null)
          .executeTakeFirst();
        if (Number(u.numUpdatedRows ?? 0) === 0) continue;
        const mine = fresh.find((x) => x.digest === r.digest && x.repository === f.repository && x.tag === f.tag);
        if (mine) {
          mine.moved = true;
          mine.firstOfTag = false;
        } else {
          fresh.push({
            repository: f.repository, tag: f.tag, digest: r.digest, imageId: r.image_id, firstSeenAt: new Date(Number(r.first_seen_at)),
            agentId: r.first_agent_id, moved: true, firstOfTag: false,
          });
        }
      }
    }
    return fresh;
  }

  async clearAlertPending(repository: string, tag: string, digest: string): Promise<void> {
    await this.db.updateTable('image_tags').set({ alert_pending: 0 })
      .where('repository', '=', repository).where('tag', '=', tag).where('digest', '=', digest)
      .execute();
  }

  async listPendingMoves(limit: number): Promise<NewTagDigest[]> {
    const rows = await this.db.selectFrom('image_tags').selectAll().where('alert_pending', '=', 1).orderBy('first_seen_at').limit(limit).execute();
    return rows.map((r) => ({
      repository: r.repository, tag: r.tag, digest: r.digest, imageId: r.image_id,
      firstSeenAt: new Date(Number(r.first_seen_at)), agentId: r.first_agent_id, moved: true, firstOfTag: false,
    }));
  }

  async listTags(q: ImageTagQuery): Promise<ImageTagRecord[]> {
    let qb = this.db
      .selectFrom('image_tags')
      .select(['repository', 'tag'])
      .select((eb) => [eb.fn.count<number>('digest').as('n'), eb.fn.max('last_seen_at').as('last')])
      .groupBy(['repository', 'tag']);
    // Moved: more than one image — digests of the same image id (pulled here, loaded from a tar there) are one.
    if (q.movedOnly) qb = qb.having(sql`count(distinct case when image_id <> '' then image_id else digest end)`, '>', 1);
    if (q.search !== undefined && q.search !== '') {
      const like = `%${q.search.replace(/[\\%_]/g, (c) => '\\' + c)}%`;
      qb = qb.where((eb) => eb.or([eb('repository', 'like', like), eb('tag', 'like', like)]));
    }
    const tags = await qb.orderBy('last', 'desc').orderBy('repository').orderBy('tag').limit(q.limit ?? 100).offset(q.offset ?? 0).execute();
    const out: ImageTagRecord[] = [];
    for (const t of tags) {
      const rec = await this.getTag(t.repository, t.tag, 20);
      if (rec) out.push(rec);
    }
    return out;
  }

  async getTag(repository: string, tag: string, containersPerDigest = DEFAULT_CONTAINERS_PER_DIGEST): Promise<ImageTagRecord | undefined> {
    const rows = await this.db.selectFrom('image_tags').selectAll()
      .where('repository', '=', repository).where('tag', '=', tag)
      .orderBy('first_seen_at').orderBy('digest')
      .execute();
    if (rows.length === 0) return undefined;
    const digests: TagDigestRecord[] = [];
    for (const r of rows) {
      const seen = await this.db.selectFrom('image_tag_sightings').selectAll()
        .where('repository', '=', repository).where('tag', '=', tag).where('digest', '=', r.digest)
        .orderBy('last_seen_at', 'desc').orderBy('agent_id').orderBy('container_id')
        .limit(containersPerDigest)
        .execute();
      digests.push(toDigest(r, seen.map(toContainer)));
    }
    return { repository, tag, digests };
  }

  async listPins(limit: number): Promise<TagPinRecord[]> {
    // The earliest digest of each tag: its first_seen_at equals the tag's minimum.
    const rows = await this.db
      .selectFrom('image_tags as t')
      .innerJoin(
        (eb) => eb.selectFrom('image_tags').select(['repository', 'tag']).select((e) => e.fn.min('first_seen_at').as('first')).groupBy(['repository', 'tag']).as('m'),
        (join) => join.onRef('m.repository', '=', 't.repository').onRef('m.tag', '=', 't.tag').onRef('m.first', '=', 't.first_seen_at'),
      )
      .select(['t.repository', 't.tag', 't.digest', 't.first_seen_at'])
      .orderBy('t.first_seen_at', 'desc').orderBy('t.repository').orderBy('t.tag').orderBy('t.digest')
      .execute();
    // Two digests first seen in the same millisecond: the lower digest wins, on every controller alike.
    const byTag = new Map<string, TagPinRecord>();
    for (const r of rows) {
      const key = `${r.repository}:${r.tag}`;
      const prev = byTag.get(key);
      if (prev && prev.digest <= r.digest) continue;
      byTag.set(key, { repository: r.repository, tag: r.tag, digest: r.digest, firstSeenAt: new Date(Number(r.first_seen_at)) });
    }
    return [...byTag.values()].slice(0, limit);
  }

  async recordScopedPins(pins: readonly ScopedPinRecord[]): Promise<ScopedPinRecord[]> {
    const stored: ScopedPinRecord[] = [];
    // One statement per pin, no transaction: each insert is atomic, and the primary key lets
    // exactly one writer (of any controller) establish a pin.
    for (const p of pins) {
      const r = await this.db.insertInto('image_tag_scope_pins')
        .values({
          rule_id: p.ruleId, scope_key: p.scopeKey, repository: p.repository, tag: p.tag, digest: p.digest, image_id: p.imageId,
          first_seen_at: p.firstSeenAt.getTime(), agent_id: p.agentId, container_id: p.containerId,
        })
        .onConflict((oc) => oc.columns(['rule_id', 'scope_key', 'repository', 'tag']).doNothing())
        .executeTakeFirst();
      if (Number(r.numInsertedOrUpdatedRows ?? 0) > 0) stored.push(p);
    }
    return stored;
  }

  async listScopedPins(rules: ReadonlyArray<{ ruleId: string; scopeKey: string }>, limit: number): Promise<ScopedPinRecord[]> {
    if (rules.length === 0 || limit <= 0) return [];
    const rows = await this.db.selectFrom('image_tag_scope_pins').selectAll()
      .where((eb) => eb.or(rules.map((r) => eb.and([eb('rule_id', '=', r.ruleId), eb('scope_key', '=', r.scopeKey)]))))
      .orderBy('first_seen_at', 'desc').orderBy('rule_id').orderBy('repository').orderBy('tag')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      ruleId: r.rule_id, scopeKey: r.scope_key, repository: r.repository, tag: r.tag, digest: r.digest, imageId: r.image_id,
      firstSeenAt: new Date(Number(r.first_seen_at)), agentId: r.agent_id, containerId: r.container_id,
    }));
  }

  async pruneSightings(before: Date): Promise<number> {
    const r = await this.db.deleteFrom('image_tag_sightings').where('last_seen_at', '<', before.getTime()).executeTakeFirst();
    return Number(r.numDeletedRows ?? 0);
  }
}

function toDigest(r: Selectable<ImageTagsTable>, containers: TagContainerRecord[]): TagDigestRecord {
  return {
    digest: r.digest,
    imageId: r.image_id,
    firstSeenAt: new Date(Number(r.first_seen_at)),
    lastSeenAt: new Date(Number(r.last_seen_at)),
    firstAgentId: r.first_agent_id,
    containers,
  };
}

function toContainer(r: Selectable<ImageTagSightingsTable>): TagContainerRecord {
  return {
    agentId: r.agent_id,
    containerId: r.container_id,
    containerName: r.container_name,
    firstSeenAt: new Date(Number(r.first_seen_at)),
    lastSeenAt: new Date(Number(r.last_seen_at)),
  };
}

/** (first seen, digest) order: the same on every controller. */
function isBefore(a: { digest: string; first_seen_at: unknown }, b: { digest: string; first_seen_at: unknown }): boolean {
  const ta = Number(a.first_seen_at);
  const tb = Number(b.first_seen_at);
  return ta < tb || (ta === tb && a.digest < b.digest);
}

/** Two digests of one image (the same image id): pulled on one host, loaded from a tar on another. */
function sameImage(a: string, b: string): boolean {
  return a !== '' && a === b;
}
