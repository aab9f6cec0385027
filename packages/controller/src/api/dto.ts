// Owns the REST API's wire shapes: TypeBox schemas for query strings, path
// parameters and responses (fastify validates requests with them and
// serializes responses through them, so a field not listed here can never
// leak out), plus the record → JSON mappers. camelCase; times are ISO 8601.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { AgentRecord, ContainerRecord } from '../store/store';
import type { ContainerUsageRecord } from '../store/usage-store';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** Facts are passed through as the agent reported them (see proto/bulkhead/v1/facts.proto). */
const Facts = Type.Object({}, { additionalProperties: true });

export const AgentSchema = Type.Object({
  id: Type.String(),
  hostname: Type.String(),
  status: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('revoked')]),
  agentVersion: Type.String(),
  host: Nullable(Facts),
  certSerial: Type.String(),
  certNotAfter: IsoDate,
  enrolledAt: IsoDate,
  lastSeenAt: Nullable(IsoDate),
  connectedAt: Nullable(IsoDate),
  revokedAt: Nullable(IsoDate),
  containerCount: Type.Integer(),
  /** The policy bundle the agent last reported: version, whether it applied it, and why not. */
  policy: Nullable(Type.Object({ version: Type.Integer(), applied: Type.Boolean(), error: Type.String(), updatedAt: IsoDate })),
});
export type AgentDto = Static<typeof AgentSchema>;

/** Agents, sorted by hostname then id, one page at a time (follow `nextCursor`). */
export const AgentListSchema = Type.Object({
  items: Type.Array(AgentSchema),
  /** The page size used. */
  limit: Type.Integer(),
  /** Pass as `cursor` for the next page; null when this was the last one. */
  nextCursor: Nullable(Type.String()),
});
export type AgentListDto = Static<typeof AgentListSchema>;

/** Live usage: the latest cgroup reading the agent reported for a running container. */
export const ContainerUsageSchema = Type.Object({
  /** % of one core (200 = two cores busy). */
  cpuPercent: Type.Number(),
  /** % of the CPU quota; null without one. */
  cpuPercentOfQuota: Nullable(Type.Number()),
  memoryBytes: Type.Integer(),
  /** 0 = unlimited. */
  memoryLimitBytes: Type.Integer(),
  pids: Type.Integer(),
  /** 0 = unlimited. */
  pidsLimit: Type.Integer(),
  takenAt: IsoDate,
  // Beyond the cgroup: null when the agent does not measure it.
  /** Bytes in the writable layer on the host. */
  writableBytes: Nullable(Type.Integer()),
  /** Bytes of its log files (current + rotated). */
  logBytes: Nullable(Type.Integer()),
  /** Block IO read, cumulative bytes (cgroup). */
  blkioReadBytes: Nullable(Type.Integer()),
  /** Block IO written, cumulative bytes (cgroup). */
  blkioWriteBytes: Nullable(Type.Integer()),
  /** Block IO read operations, cumulative. */
  blkioReadOps: Nullable(Type.Integer()),
  /** Block IO write operations, cumulative. */
  blkioWriteOps: Nullable(Type.Integer()),
  /** Received bytes of its network namespace (every interface, loopback included), cumulative. */
  netRxBytes: Nullable(Type.Integer()),
  /** Sent bytes, cumulative. */
  netTxBytes: Nullable(Type.Integer()),
  /** Received packets, cumulative. */
  netRxPackets: Nullable(Type.Integer()),
  /** Sent packets, cumulative. */
  netTxPackets: Nullable(Type.Integer()),
  /** Received packets dropped, cumulative. */
  netRxDropped: Nullable(Type.Integer()),
  /** Sent packets dropped, cumulative. */
  netTxDropped: Nullable(Type.Integer()),
  /** Received bytes per second since the sample before. */
  netRxBytesPerSec: Nullable(Type.Number()),
  /** Sent bytes per second since the sample before. */
  netTxBytesPerSec: Nullable(Type.Number()),
  /** Open TCP connections of its network namespace (every state but TIME_WAIT and CLOSE; listening sockets included). */
  tcpConnections: Nullable(Type.Integer()),
  /** TCP + UDP sockets of its network namespace, any state. */
  sockets: Nullable(Type.Integer()),
});
export type ContainerUsageDto = Static<typeof ContainerUsageSchema>;

/** One point of a container's recent usage history: the first reading of its interval, as the agent reported it. */
export const UsagePointSchema = Type.Object({
  /** When the agent read it (to the second). */
  at: IsoDate,
  /** % of one core (200 = two cores busy). */
  cpuPercent: Nullable(Type.Number()),
  /** Memory working set, bytes. */
  memoryBytes: Nullable(Type.Number()),
  pids: Nullable(Type.Number()),
  // Beyond the cgroup: null when the agent did not measure it.
  /** Bytes in the writable layer. */
  writableBytes: Nullable(Type.Number()),
  /** Bytes of its log files. */
  logBytes: Nullable(Type.Number()),
  /** Block IO read, cumulative bytes (the rate is the difference between two points over their time apart). */
  blkioReadBytes: Nullable(Type.Number()),
  /** Block IO written, cumulative bytes. */
  blkioWriteBytes: Nullable(Type.Number()),
  netRxBytesPerSec: Nullable(Type.Number()),
  netTxBytesPerSec: Nullable(Type.Number()),
  tcpConnections: Nullable(Type.Number()),
});
export type UsagePointDto = Static<typeof UsagePointSchema>;

/**
 * A container's recent usage, kept by the controller (every replica sees the same): at most one
 * point per interval, oldest first, covering at most `windowSeconds`. Figures are stored as
 * 32-bit floats (about 7 significant digits); `usage` on the container is the exact latest reading.
 */
export const ContainerUsageHistorySchema = Type.Object({
  agentId: Type.String(),
  containerId: Type.String(),
  /** Spacing of the points (serve --usage-history-interval). */
  intervalSeconds: Type.Integer(),
  /** How far back points are kept: 60 × intervalSeconds. */
  windowSeconds: Type.Integer(),
  points: Type.Array(UsagePointSchema),
});
export type ContainerUsageHistoryDto = Static<typeof ContainerUsageHistorySchema>;

export const ContainerSchema = Type.Object({
  agentId: Type.String(),
  id: Type.String(),
  name: Type.String(),
  imageRef: Type.String(),
  state: Type.String(),
  removed: Type.Boolean(),
  updatedAt: IsoDate,
  facts: Facts,
  /** Live usage; null when none is known (not running, just started, usage sampling off). */
  usage: Nullable(ContainerUsageSchema),
});
export type ContainerDto = Static<typeof ContainerSchema>;

/**
 * A page of a list endpoint: the items, the `limit` and `offset` asked for,
 * and `nextOffset` — where the next page starts, or null when this was the last.
 */
export const PageSchema = <T extends TSchema>(item: T) =>
  Type.Object({ items: Type.Array(item), limit: Type.Integer(), offset: Type.Integer(), nextOffset: Nullable(Type.Integer()) });

/**
 * The answer of a list endpoint whose store query asked for `limit + 1` rows:
 * `fetched` is how many came back (the extra row only says that more follow),
 * `items` the DTOs of the first `limit`.
 */
export function pageReply<D>(items: D[], fetched: number, q: { limit: number; offset: number }): { items: D[]; limit: number; offset: number; nextOffset: number | null } {
  return { items, limit: q.limit, offset: q.offset, nextOffset: fetched > q.limit ? q.offset + q.limit : null };
}

/**
 * A page of a list that also pages by cursor (keyset paging): PageSchema plus `nextCursor`,
 * which names where this page ended, or null when it was the last. `nextOffset` is null
 * when the request paged by cursor.
 */
export const CursorPageSchema = <T extends TSchema>(item: T) =>
  Type.Object({
    items: Type.Array(item),
    limit: Type.Integer(),
    offset: Type.Integer(),
    nextOffset: Nullable(Type.Integer()),
    nextCursor: Nullable(Type.String()),
  });

/** pageReply plus `nextCursor` (from the last item, when more follow) for a CursorPageSchema list. */
export function cursorPageReply<D>(
  items: D[], fetched: number, q: { limit: number; offset: number; cursor?: string }, cursorOf: (last: D) => string,
): { items: D[]; limit: number; offset: number; nextOffset: number | null; nextCursor: string | null } {
  const more = fetched > q.limit && items.length > 0;
  return {
    items, limit: q.limit, offset: q.offset,
    nextOffset: more && q.cursor === undefined ? q.offset + q.limit : null,
    nextCursor: more ? cursorOf(items[items.length - 1]!) : null,
  };
}

/** `cursor`: where the page starts (a `nextCursor` this list returned). */
export const CursorParam = Type.Optional(
  Type.String({ minLength: 1, maxLength: 2048, description: "The previous page's nextCursor, unchanged: the page starts right after it. Not with offset." }),
);

export const ContainerPageSchema = CursorPageSchema(ContainerSchema);
export type ContainerPageDto = Static<typeof ContainerPageSchema>;

export const MAX_PAGE_SIZE = 1000;
export const DEFAULT_PAGE_SIZE = 100;

export const ContainerListQuerySchema = Type.Object(
  {
    agent: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    state: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    /** Case-insensitive substring of the image reference. */
    image: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    /** Repeatable: "key" (present) or "key=value"; all must match. */
    label: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024, pattern: '^[^=]' }), { maxItems: 32 })),
    /** Only this project's containers (within the caller's scope). */
    project: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: "Only this project's containers (within the credential's project scope)." })),
    /** "Breaks rule X": an open (unacknowledged, not exempted) violation of this rule id. */
    rule: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Only containers with an open violation of this rule id: reported and neither acknowledged nor exempted.' })),
    /** Free text: name or image substring, or id prefix; case-insensitive. */
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Free text: a case-insensitive substring of the name or image reference, or a prefix of the id.' })),
    sort: Type.Optional(
      Type.String({
        pattern: '^-?(agent|name|state|image|cpu|memory)$',
        description: 'Sort key; a leading "-" sorts descending. agent (the default: agent id, name, id), name, state, image, cpu or memory (the latest usage; containers without usage count as -1). Ties are broken by agent id, name and id.',
      }),
    ),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
    cursor: CursorParam,
    include_removed: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);
export type ContainerListQuery = Static<typeof ContainerListQuerySchema>;

export const AgentListQuerySchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    cursor: CursorParam,
  },
  { additionalProperties: false },
);
export type AgentListQuery = Static<typeof AgentListQuerySchema>;

export const AgentParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) });
export type AgentParams = Static<typeof AgentParamsSchema>;

export const ContainerParamsSchema = Type.Object({
  agent: Type.String({ minLength: 1, maxLength: 256 }),
  /** Full id, a unique id prefix of ≥ 12 hex digits, or the container name. */
  id: Type.String({ minLength: 1, maxLength: 256 }),
});
export type ContainerParams = Static<typeof ContainerParamsSchema>;

/** RFC 9457 problem details, plus Bulkhead's stable error code. */
export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String(),
  instance: Type.Optional(Type.String()),
  requestId: Type.Optional(Type.String()),
});
export type ProblemDto = Static<typeof ProblemSchema>;

function iso(d: Date | null): string | null {
  return d === null ? null : d.toISOString();
}

export function toAgentDto(a: AgentRecord): AgentDto {
  return {
    id: a.id,
    hostname: a.hostname,
    status: a.status,
    agentVersion: a.agentVersion,
    host: a.host as unknown as AgentDto['host'],
    certSerial: a.certSerial,
    certNotAfter: a.certNotAfter.toISOString(),
    enrolledAt: a.enrolledAt.toISOString(),
    lastSeenAt: iso(a.lastSeenAt),
    connectedAt: iso(a.connectedAt),
    revokedAt: iso(a.revokedAt),
    containerCount: a.containerCount,
    policy: a.policyStatus
      ? { version: a.policyStatus.version, applied: a.policyStatus.applied, error: a.policyStatus.error, updatedAt: a.policyStatus.updatedAt.toISOString() }
      : null,
  };
}

function intOrNull(n: number | null | undefined): number | null {
  return n === null || n === undefined ? null : Math.round(n);
}

export function toUsageDto(u: ContainerUsageRecord): ContainerUsageDto {
  return {
    cpuPercent: u.cpuPercent,
    cpuPercentOfQuota: u.cpuPercentOfQuota,
    memoryBytes: Math.round(u.memoryBytes),
    memoryLimitBytes: Math.round(u.memoryLimitBytes),
    pids: Math.round(u.pids),
    pidsLimit: Math.round(u.pidsLimit),
    takenAt: u.takenAt.toISOString(),
    writableBytes: intOrNull(u.writableBytes),
    logBytes: intOrNull(u.logBytes),
    blkioReadBytes: intOrNull(u.blkioReadBytes),
    blkioWriteBytes: intOrNull(u.blkioWriteBytes),
    blkioReadOps: intOrNull(u.blkioReadOps),
    blkioWriteOps: intOrNull(u.blkioWriteOps),
    netRxBytes: intOrNull(u.netRxBytes),
    netTxBytes: intOrNull(u.netTxBytes),
    netRxPackets: intOrNull(u.netRxPackets),
    netTxPackets: intOrNull(u.netTxPackets),
    netRxDropped: intOrNull(u.netRxDropped),
    netTxDropped: intOrNull(u.netTxDropped),
    netRxBytesPerSec: u.netRxBytesPerSec ?? null,
    netTxBytesPerSec: u.netTxBytesPerSec ?? null,
    tcpConnections: intOrNull(u.tcpConnections),
    sockets: intOrNull(u.sockets),
  };
}

/** `usage`: the container's latest usage, shown only while it is not removed. */
export function toContainerDto(c: ContainerRecord, usage?: ContainerUsageRecord): ContainerDto {
  return {
    agentId: c.agentId,
    id: c.id,
    name: c.name,
    imageRef: c.imageRef,
    state: c.state,
    removed: c.removed,
    updatedAt: c.updatedAt.toISOString(),
    facts: c.facts as unknown as ContainerDto['facts'],
    usage: usage && !c.removed ? toUsageDto(usage) : null,
  };
}
