// Owns image hygiene (move 1 of the mission: clean up unused images): which
// images no container has used for N days, which were never used, which are
// dangling — and, optionally, a scoped prune that records what it removed.
//
// "Last used" is the newest of: now (a running container uses it), the
// created/started/finished times of every existing container made from it,
// and what the caller remembers (`lastUsed`, e.g. kept by the agent from
// container start events — dockerd forgets a container's image once the
// container is removed). An image nobody used is idle since it arrived
// (its Created or LastTagTime, whichever is newer).
import type Dockerode from 'dockerode';
import { dockerTimeToMs } from '../docker/container-facts';

/** The Docker API calls the hygiene report makes (read-only). A Dockerode instance satisfies it. */
export interface HygieneReadDocker {
  listImages(options?: Dockerode.ListImagesOptions): Promise<Dockerode.ImageInfo[]>;
  listContainers(options?: Dockerode.ContainerListOptions): Promise<Dockerode.ContainerInfo[]>;
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
  getImage(name: string): { inspect(): Promise<Dockerode.ImageInspectInfo> };
}

/** The Docker API calls hygiene makes, prune included. A Dockerode instance satisfies it. */
export interface HygieneDocker extends HygieneReadDocker {
  getImage(name: string): { inspect(): Promise<Dockerode.ImageInspectInfo>; remove(options?: {}): Promise<unknown> };
}

export type ImageStatus = 'in-use' | 'used' | 'never-used' | 'dangling';

export interface ImageHygieneEntry {
  id: string;
  /** "repo:tag" names ([] for a dangling image). */
  tags: string[];
  sizeBytes: number;
  labels: Record<string, string>;
  createdAtMs: number;
  /** When it arrived here: the newer of Created and LastTagTime (pull/tag/import). */
  arrivedAtMs: number;
  /** Last use by a container, null when no container is known to have used it. */
  lastUsedAtMs: number | null;
  /** Existing containers made from it. */
  containers: { running: number; total: number; names: string[] };
  /**
   * in-use: a running container uses it; used: only stopped containers or
   * remembered uses; never-used: no container known; dangling: untagged and
   * no container.
   */
  status: ImageStatus;
  /** Days since last use (or arrival, if never used). */
  idleDays: number;
  /** Not in use and idle for at least `unusedDays`. */
  stale: boolean;
}

export interface ImageHygieneReport {
  at: number;
  unusedDays: number;
  images: ImageHygieneEntry[];
  /** Ids of stale images that were used before. */
  unused: string[];
  /** Ids of stale images no container is known to have used. */
  neverUsed: string[];
  /** Ids of dangling images (whatever their age). */
  dangling: string[];
  /** Size of the stale images (shared layers counted once per image, as `docker images` does). */
  staleBytes: number;
}

export interface ImageHygieneOptions {
  docker: HygieneReadDocker;
  /** Idle days after which an image not in use is stale. Default 30. */
  unusedDays?: number;
  /** Remembered last use per image id (ms), e.g. from container start events; merged with what dockerd knows. */
  lastUsed?: ReadonlyMap<string, number>;
  /** Clock (ms). Default Date.now. */
  now?: () => number;
  /** Parallel inspects of stopped containers and images. Default 8. */
  concurrency?: number;
}

const DAY_MS = 86_400_000;

export async function imageHygieneReport(o: ImageHygieneOptions): Promise<ImageHygieneReport> {
  const now = (o.now ?? Date.now)();
  const unusedDays = o.unusedDays ?? 30;
  const concurrency = o.concurrency ?? 8;
  const [images, containers] = await Promise.all([o.docker.listImages(), o.docker.listContainers({ all: true })]);

  // Last use per image id from existing containers.
  const use = new Map<string, { last: number; running: number; total: number; names: string[] }>();
  const touch = (imageId: string, at: number, running: boolean, name: string): void => {
    const u = use.get(imageId) ?? { last: 0, running: 0, total: 0, names: [] };
    u.last = Math.max(u.last, at);
    u.total++;
    if (running) u.running++;
    if (name) u.names.push(name);
    use.set(imageId, u);
  };
  const stopped: Dockerode.ContainerInfo[] = [];
  for (const c of containers) {
    const name = (c.Names?.[0] ?? '').replace(/^\//, '');
    if (c.State === 'running' || c.State === 'paused' || c.State === 'restarting') touch(c.ImageID, now, true, name);
    else stopped.push(c);
  }
  for (let i = 0; i < stopped.length; i += concurrency) {
    await Promise.all(
      stopped.slice(i, i + concurrency).map(async (c) => {
        const name = (c.Names?.[0] ?? '').replace(/^\//, '');
        let at = (c.Created ?? 0) * 1000;
        try {
          const ins = await o.docker.getContainer(c.Id).inspect();
          at = Math.max(at, dockerTimeToMs(ins.Created), dockerTimeToMs(ins.State?.StartedAt), dockerTimeToMs(ins.State?.FinishedAt));
        } catch {
          // removed meanwhile: its list entry's Created still says something
        }
        touch(c.ImageID, at, false, name);
      }),
    );
  }

  // LastTagTime (pull/tag/import time) is only in the image inspect.
  const lastTag = new Map<string, number>();
  for (let i = 0; i < images.length; i += concurrency) {
    await Promise.all(
      images.slice(i, i + concurrency).map(async (img) => {
        try {
          const ins = (await o.docker.getImage(img.Id).inspect()) as Dockerode.ImageInspectInfo & { Metadata?: { LastTagTime?: string } };
          lastTag.set(img.Id, dockerTimeToMs(ins.Metadata?.LastTagTime));
        } catch {
          // removed meanwhile
        }
      }),
    );
  }

  const entries: ImageHygieneEntry[] = images.map((img) => {
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    const u = use.get(img.Id);
    const remembered = o.lastUsed?.get(img.Id);
    const lastUsedAtMs = u || remembered !== undefined ? Math.max(u?.last ?? 0, remembered ?? 0) : null;
    const createdAtMs = (img.Created ?? 0) * 1000;
    const arrivedAtMs = Math.max(createdAtMs, lastTag.get(img.Id) ?? 0);
    let status: ImageStatus;
    if (u && u.running > 0) status = 'in-use';
    else if (!u && tags.length === 0) status = 'dangling';
    else if (lastUsedAtMs === null) status = 'never-used';
    else status = 'used';
    const idleDays = status === 'in-use' ? 0 : Math.max(0, (now - (lastUsedAtMs ?? arrivedAtMs)) / DAY_MS);
    return {
      id: img.Id,
      tags,
      sizeBytes: img.Size ?? 0,
      labels: { ...(img.Labels ?? {}) },
      createdAtMs,
      arrivedAtMs,
      lastUsedAtMs,
      containers: { running: u?.running ?? 0, total: u?.total ?? 0, names: (u?.names ?? []).sort() },
      status,
      idleDays: Math.round(idleDays * 100) / 100,
      stale: status !== 'in-use' && idleDays >= unusedDays,
    };
  });
  entries.sort((a, b) => b.idleDays - a.idleDays || (a.tags[0] ?? a.id).localeCompare(b.tags[0] ?? b.id));
  const stale = entries.filter((e) => e.stale);
  return {
    at: now,
    unusedDays,
    images: entries,
    unused: stale.filter((e) => e.status === 'used').map((e) => e.id),
    neverUsed: stale.filter((e) => e.status === 'never-used').map((e) => e.id),
    dangling: entries.filter((e) => e.status === 'dangling').map((e) => e.id),
    staleBytes: stale.reduce((n, e) => n + e.sizeBytes, 0),
  };
}
