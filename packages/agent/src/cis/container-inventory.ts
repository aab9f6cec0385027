// Owns the one-shot container inventory the audits need: list, inspect each
// container (and its image once), and turn the inspect into facts with the
// agent's own `toContainerFacts`, so the audit evaluates exactly what the
// watcher would report. Raw inspect output is kept beside the facts for CIS
// checks about fields the facts do not carry (ports, health, ulimits …).
import type Dockerode from 'dockerode';
import { toContainerFacts, type Facts } from '../docker/container-facts';

export interface InventoryDocker {
  listContainers(options?: Dockerode.ContainerListOptions): Promise<Dockerode.ContainerInfo[]>;
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
  getImage(id: string): { inspect(): Promise<Dockerode.ImageInspectInfo> };
}

export interface AuditedContainer {
  inspect: Dockerode.ContainerInspectInfo;
  facts: Facts;
}

export interface InventoryOptions {
  /** Include stopped containers. Default false (running and paused only, like `docker ps`). */
  all?: boolean;
  /** Parallel inspects. Default 8. */
  concurrency?: number;
}

/** Lists and inspects containers; a container removed meanwhile is simply left out. Sorted by name. */
export async function inspectContainers(docker: InventoryDocker, opts: InventoryOptions = {}): Promise<AuditedContainer[]> {
  const list = await docker.listContainers({ all: opts.all === true });
  const images = new Map<string, Promise<Dockerode.ImageInspectInfo | undefined>>();
  const image = (id: string): Promise<Dockerode.ImageInspectInfo | undefined> => {
    let p = images.get(id);
    if (!p) {
      p = docker.getImage(id).inspect().catch(() => undefined);
      images.set(id, p);
    }
    return p;
  };
  const out: AuditedContainer[] = [];
  const limit = Math.max(1, opts.concurrency ?? 8);
  for (let i = 0; i < list.length; i += limit) {
    const batch = await Promise.all(
      list.slice(i, i + limit).map(async (c) => {
        try {
          const inspect = await docker.getContainer(c.Id).inspect();
          return { inspect, facts: toContainerFacts(inspect, await image(inspect.Image)) };
        } catch (e) {
          if ((e as { statusCode?: number }).statusCode === 404) return undefined;
          throw e;
        }
      }),
    );
    for (const b of batch) if (b) out.push(b);
  }
  return out.sort((a, b) => (a.facts.name < b.facts.name ? -1 : a.facts.name > b.facts.name ? 1 : 0));
}

export type { Facts };
