// Owns what the controller keeps about tags that move: per repository and tag,
// the digests the fleet ran it as (first and last seen) and which containers on
// which hosts ran each. Pure types; the SQL is kysely-image-tag-store.ts.

/** One container seen running `repository:tag` as `digest`. */
export interface TagSighting {
  agentId: string;
  containerId: string;
  containerName: string;
  /** "registry/path", e.g. "docker.io/library/nginx". */
  repository: string;
  tag: string;
  /** The manifest digest ("sha256:…"), or the image id when the image has no repo digest. */
  digest: string;
  /** The image id (config digest); "" when unknown. */
  imageId: string;
}

/** A digest a tag was seen as for the first time. */
export interface NewTagDigest {
  repository: string;
  tag: string;
  digest: string;
  imageId: string;
  firstSeenAt: Date;
  agentId: string;
  /**
   * The tag already ran as another image: a move. Its `image_tag_moved` alert is pending
   * until clearAlertPending(). The same image under two digests (pulled on one host, loaded
   * from a tar on another: same image id) is not a move.
   */
  moved: boolean;
  /** The tag's first digest: a new pin for `image-tag-pinned`. */
  firstOfTag: boolean;
}

export interface TagContainerRecord {
  agentId: string;
  containerId: string;
  containerName: string;
  firstSeenAt: Date;
  lastSeenAt: Date;
}

export interface TagDigestRecord {
  digest: string;
  imageId: string;
  firstSeenAt: Date;
  lastSeenAt: Date;
  /** The agent that ran it first. */
  firstAgentId: string;
  /** Containers seen with it (newest first, bounded by the query's limit). */
  containers: TagContainerRecord[];
}

export interface ImageTagRecord {
  repository: string;
  tag: string;
  /** Oldest first: digests[0] is the digest the tag was first seen as (its pin). */
  digests: TagDigestRecord[];
}

export interface ImageTagQuery {
  /** Only tags seen as more than one digest. */
  movedOnly?: boolean;
  /** Substring of "repository:tag". */
  search?: string;
  limit?: number;
  offset?: number;
}

/** The first digest of a tag: what `image-tag-pinned` pins it to. */
export interface TagPinRecord {
  repository: string;
  tag: string;
  digest: string;
  firstSeenAt: Date;
}

/**
 * A digest seen running `repository:tag` on a container in the scope of a scoped
 * `image-tag-pinned` rule (tag-pins.ts says what that means). The first one per
 * (rule, scope key, tag) is the rule's pin for the tag; later ones are not stored.
 */
export interface ScopedPinRecord {
  ruleId: string;
  /** The rule's scope key (tag-pins.ts): a rule edited to another scope has other pins. */
  scopeKey: string;
  repository: string;
  tag: string;
  digest: string;
  /** The image id (config digest); "" when unknown. */
  imageId: string;
  firstSeenAt: Date;
  /** Where it was seen first. */
  agentId: string;
  containerId: string;
}

export interface ImageTagStore {
  /**
   * Records sightings: new digests are inserted (first seen now), known ones and the
   * containers get their last-seen time. Returns the digests seen for the first time, and the
   * moves this call claimed (`moved`; possibly a digest another controller on the same database
   * inserted at the same time): each move is claimed by exactly one caller.
   */
  recordSightings(rows: readonly TagSighting[], now: Date): Promise<NewTagDigest[]>;
  /** The move's alert is committed. */
  clearAlertPending(repository: string, tag: string, digest: string): Promise<void>;
  /** Moves whose alert may not have been raised (a controller stopped in between). */
  listPendingMoves(limit: number): Promise<NewTagDigest[]>;
  listTags(q: ImageTagQuery): Promise<ImageTagRecord[]>;
  getTag(repository: string, tag: string, containersPerDigest?: number): Promise<ImageTagRecord | undefined>;
  /** The first digest of every tag (earliest first-seen), newest tags first, at most `limit`. */
  listPins(limit: number): Promise<TagPinRecord[]>;
  /**
   * Stores each pin unless its (rule, scope key, repository, tag) has one already: the first
   * stored wins, across controllers on one database. In the order given. Returns the pins stored.
   */
  recordScopedPins(pins: readonly ScopedPinRecord[]): Promise<ScopedPinRecord[]>;
  /** The pins of these rules (id and scope key), newest first, at most `limit`. */
  listScopedPins(rules: ReadonlyArray<{ ruleId: string; scopeKey: string }>, limit: number): Promise<ScopedPinRecord[]>;
  /** Forgets container sightings last seen before `before` (the digests stay). Returns how many. */
  pruneSightings(before: Date): Promise<number>;
}
