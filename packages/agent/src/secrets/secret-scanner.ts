// Owns the I/O side of the secret scan: the one extra inspect per container
// that reads env VALUES (the watcher's facts keep names only) and the image
// history per image id, both cached, so every container is scanned once in
// its life. A container's env, labels and command cannot change after
// create (`docker update` touches resources only), so per-id caching is exact.
import type Dockerode from 'dockerode';
import { Semaphore, type ContainerFacts__Output, type Logger } from '@bulkhead/shared';
import {
  mergeHits, scanContainerSecrets, scanFactsSecrets, scanHistory, withSecretsAndProject,
  type ImageHistoryEntry, type SecretHit,
} from './secret-scan';

/** What the scanner needs of dockerode (a Dockerode instance satisfies it). */
export interface SecretScannerDocker {
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
  getImage(id: string): { history(): Promise<unknown> };
}

export interface SecretScannerOptions {
  docker: SecretScannerDocker;
  logger: Logger;
  /** Image histories kept (least recently used dropped first). Default 512. */
  maxImages?: number;
  /**
   * Scans that ask the engine at once (default 8, as the watcher's inspects); the others
   * wait their turn. Without a bound, the first policy with 200 containers sent 200
   * inspects at once: 200 sockets, and 200 HTTP parsers that Node keeps for reuse for
   * good (~10 KB of native memory each) plus the malloc peak they left resident.
   */
  concurrency?: number;
}

export class SecretScanner {
  private readonly containers = new Map<string, SecretHit[]>();
  private readonly inflight = new Map<string, Promise<SecretHit[]>>();
  private readonly histories = new Map<string, Promise<ImageHistoryEntry[] | undefined>>();
  private readonly historyDone = new Map<string, ImageHistoryEntry[] | undefined>();
  private readonly maxImages: number;
  private readonly slots: Semaphore;

  constructor(private readonly o: SecretScannerOptions) {
    this.maxImages = o.maxImages ?? 512;
    const c = o.concurrency ?? 8;
    if (!Number.isInteger(c) || c < 1) throw new Error(`SecretScanner: concurrency must be an integer of at least 1, got ${c}`);
    this.slots = new Semaphore(c);
  }

  /** The full hits of a container if it was scanned already; never does I/O. */
  peek(containerId: string): SecretHit[] | undefined {
    return this.containers.get(containerId);
  }

  /** A cached image history (undefined when not fetched yet); never does I/O. */
  peekHistory(imageId: string): ImageHistoryEntry[] | undefined {
    return this.historyDone.get(imageId);
  }

  /**
   * Every hit of a container: env, labels, command (from one inspect) and
   * image history. Cached per container id; concurrent callers share one
   * scan. When the engine cannot be asked, the hits found in the facts
   * alone are returned (and nothing is cached, so the next call retries).
   */
  scan(facts: Pick<ContainerFacts__Output, 'id' | 'imageId' | 'labels' | 'command'>): Promise<SecretHit[]> {
    const done = this.containers.get(facts.id);
    if (done) return Promise.resolve(done);
    let p = this.inflight.get(facts.id);
    if (!p) {
      p = this.slots.run(() => this.doScan(facts)).finally(() => this.inflight.delete(facts.id));
      this.inflight.set(facts.id, p);
    }
    return p;
  }

  /** Facts with secret hits, redacted command and project: what may leave the host. */
  async enrich(facts: ContainerFacts__Output, projectLabel: string): Promise<ContainerFacts__Output> {
    return withSecretsAndProject(facts, await this.scan(facts), projectLabel);
  }

  /**
   * Synchronous best effort: full hits when cached, else what the facts
   * alone show (labels, command). Never does I/O.
   */
  enrichNow(facts: ContainerFacts__Output, projectLabel: string): { facts: ContainerFacts__Output; complete: boolean } {
    const cached = this.containers.get(facts.id);
    const hits = cached ?? mergeHits(scanFactsSecrets(facts), scanHistory(this.historyDone.get(facts.imageId)));
    return { facts: withSecretsAndProject(facts, hits, projectLabel), complete: cached !== undefined };
  }

  /**
   * For facts about to leave the host (the controller link): returns them
   * enriched NOW — command and label secrets are always found and redacted,
   * as they are in the facts — so nothing waits and per-container order is
   * kept. When env/history hits are not known yet, scans, and once they are
   * calls `onComplete` with the container's LATEST facts (from `latest`),
   * enriched; not called when the container is gone or the scan failed.
   */
  enrichForReport(
    facts: ContainerFacts__Output,
    projectLabel: () => string,
    latest: (id: string) => ContainerFacts__Output | undefined,
    onComplete: (enriched: ContainerFacts__Output) => void,
  ): ContainerFacts__Output {
    const now = this.enrichNow(facts, projectLabel());
    if (!now.complete) {
      this.scan(facts).then(
        () => {
          const f = latest(facts.id);
          if (!f || !this.containers.has(f.id)) return;
          try {
            onComplete(withSecretsAndProject(f, this.containers.get(f.id)!, projectLabel()));
          } catch (err) {
            this.o.logger.error({ err }, 'secret scan: onComplete threw');
          }
        },
        (err: unknown) => this.o.logger.warn({ err, containerId: facts.id }, 'secret scan failed'),
      );
    }
    return now.facts;
  }

  /** Drops a removed container's hits. */
  forget(containerId: string): void {
    this.containers.delete(containerId);
  }

  /** Image history, once per image id (an id is a content hash: its history never changes). */
  imageHistory(imageId: string): Promise<ImageHistoryEntry[] | undefined> {
    if (imageId === '') return Promise.resolve(undefined);
    let p = this.histories.get(imageId);
    if (p) {
      // Refresh LRU position.
      this.histories.delete(imageId);
      this.histories.set(imageId, p);
      return p;
    }
    p = this.o.docker.getImage(imageId).history().then(
      (h) => {
        const list = Array.isArray(h) ? (h as ImageHistoryEntry[]).map((e) => ({ CreatedBy: typeof e?.CreatedBy === 'string' ? e.CreatedBy : '' })) : [];
        this.historyDone.set(imageId, list);
        return list;
      },
      (err: unknown) => {
        // A removed image (404) has no history to scan; anything else is retried next time.
        this.histories.delete(imageId);
        if (statusCode(err) !== 404) throw err;
        return undefined;
      },
    );
    this.histories.set(imageId, p);
    while (this.histories.size > this.maxImages) {
      const oldest = this.histories.keys().next().value as string;
      this.histories.delete(oldest);
      this.historyDone.delete(oldest);
    }
    return p;
  }

  private async doScan(facts: Pick<ContainerFacts__Output, 'id' | 'imageId' | 'labels' | 'command'>): Promise<SecretHit[]> {
    let inspect: Dockerode.ContainerInspectInfo;
    try {
      inspect = await this.o.docker.getContainer(facts.id).inspect();
    } catch (err) {
      if (statusCode(err) !== 404) this.o.logger.warn({ err, containerId: facts.id }, 'secret scan: inspect failed; using labels and command only');
      return scanFactsSecrets(facts);
    }
    let history: ImageHistoryEntry[] | undefined;
    let historyOk = true;
    try {
      history = await this.imageHistory(inspect.Image || facts.imageId);
    } catch (err) {
      historyOk = false;
      this.o.logger.warn({ err, containerId: facts.id, imageId: facts.imageId }, 'secret scan: image history failed; scanned without it');
    }
    const hits = scanContainerSecrets(inspect, history);
    if (historyOk) this.containers.set(facts.id, hits);
    return hits;
  }
}

function statusCode(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}
