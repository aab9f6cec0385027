// Owns /v1/images: the tags the fleet ran, each with the digests it ran as
// (first and last seen) and the hosts and containers per digest — the view
// behind the `image_tag_moved` alert (src/images/tag-tracker.ts).
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError, tagIdentity } from '@bulkhead/shared';
import type { Store } from '../../store/store';
import type { ImageTagRecord, ImageTagStore } from '../../images/image-tag-store';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageSchema, pageReply } from '../dto';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });

export const ImageTagSchema = Type.Object({
  /** "registry/path:tag", e.g. "docker.io/library/nginx:1.27". */
  ref: Type.String(),
  repository: Type.String(),
  tag: Type.String(),
  /** More than one image ran under this tag. */
  moved: Type.Boolean(),
  /** Oldest first: the first is the digest the tag was first seen as (what `image-tag-pinned` pins it to). */
  digests: Type.Array(Type.Object({
    /** The manifest digest, or the image id for an image without a repo digest. */
    digest: Type.String(),
    imageId: Type.Union([Type.String(), Type.Null()]),
    firstSeenAt: IsoDate,
    lastSeenAt: IsoDate,
    /** Hosts that ran it (hostname, or the agent id when unknown). */
    hosts: Type.Array(Type.Object({ agentId: Type.String(), hostname: Type.String() })),
    /** Containers that ran it, latest first (bounded: 20 per digest in lists, 50 for one tag). */
    containers: Type.Array(Type.Object({
      agentId: Type.String(),
      hostname: Type.String(),
      containerId: Type.String(),
      name: Type.String(),
      firstSeenAt: IsoDate,
      lastSeenAt: IsoDate,
    })),
  })),
});
export type ImageTagDto = Static<typeof ImageTagSchema>;

export const ImageTagPageSchema = PageSchema(ImageTagSchema);

export const ImageListQuerySchema = Type.Object(
  {
    /** Only tags that ran as more than one image. */
    moved: Type.Boolean({ default: false }),
    /** Substring of the repository or the tag. */
    search: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
  },
  { additionalProperties: false },
);
type ImageListQuery = Static<typeof ImageListQuerySchema>;

export const ImageParamsSchema = Type.Object({
  /** An image ref with a tag, URL-encoded ("/" as %2F): "nginx:1.27", "registry.example.com/shop/web:v1". */
  ref: Type.String({ minLength: 1, maxLength: 512 }),
});
type ImageParams = Static<typeof ImageParamsSchema>;

export function registerImageRoutes(app: FastifyInstance, opts: { store: Store }): void {
  const tagStore = (): ImageTagStore => {
    if (!opts.store.imageTags) throw new BulkheadError('BK_ERR_NOT_READY', 'this store does not track image tags');
    return opts.store.imageTags;
  };

  app.get<{ Querystring: ImageListQuery }>(
    '/images',
    // Tags span every project (one image runs in many): fleet-wide.
    { config: { role: 'viewer', fleetWide: true, action: 'images.read' }, preValidation: strictInput({ querystring: ImageListQuerySchema }), schema: { querystring: ImageListQuerySchema, response: { 200: ImageTagPageSchema } } },
    async (req) => {
      const q = req.query;
      const rows = await tagStore().listTags({ movedOnly: q.moved, ...(q.search !== undefined ? { search: q.search } : {}), limit: q.limit + 1, offset: q.offset });
      const page = rows.slice(0, q.limit);
      return pageReply(toImageTagDtos(page, await hostnames(opts.store)), rows.length, q);
    },
  );

  app.get<{ Params: ImageParams }>(
    '/images/:ref',
    { config: { role: 'viewer', fleetWide: true, action: 'images.read' }, schema: { params: ImageParamsSchema, response: { 200: ImageTagSchema } } },
    async (req): Promise<ImageTagDto> => {
      const id = tagIdentity({ imageRef: req.params.ref, imageDigest: '', imageId: '' });
      if (!id) throw new BulkheadError('BK_ERR_BAD_REQUEST', `"${req.params.ref}" names no tag (an image id or a ref pinned by digest never moves)`);
      const rec = await tagStore().getTag(id.repository, id.tag);
      if (!rec) throw new BulkheadError('BK_ERR_NOT_FOUND', `no container of the fleet ran ${id.key}`);
      return toImageTagDtos([rec], await hostnames(opts.store))[0]!;
    },
  );
}

async function hostnames(store: Store): Promise<Map<string, string>> {
  return new Map((await store.listAgents()).map((a) => [a.id, a.hostname]));
}

export function toImageTagDtos(rows: readonly ImageTagRecord[], hosts: ReadonlyMap<string, string>): ImageTagDto[] {
  const name = (agentId: string) => hosts.get(agentId) || agentId;
  return rows.map((r) => ({
    ref: `${r.repository}:${r.tag}`,
    repository: r.repository,
    tag: r.tag,
    moved: r.digests.length > 1 && new Set(r.digests.map((d) => d.imageId || d.digest)).size > 1,
    digests: r.digests.map((d) => ({
      digest: d.digest,
      imageId: d.imageId === '' ? null : d.imageId,
      firstSeenAt: d.firstSeenAt.toISOString(),
      lastSeenAt: d.lastSeenAt.toISOString(),
      hosts: [...new Set(d.containers.map((c) => c.agentId))].sort().map((agentId) => ({ agentId, hostname: name(agentId) })),
      containers: d.containers.map((c) => ({
        agentId: c.agentId, hostname: name(c.agentId), containerId: c.containerId, name: c.containerName,
        firstSeenAt: c.firstSeenAt.toISOString(), lastSeenAt: c.lastSeenAt.toISOString(),
      })),
    })),
  }));
}
