// Docker image references: "nginx", "nginx:1.25", "ghcr.io/acme/app@sha256:…",
// "localhost:5000/x:y". Normalised the way the engine resolves them, so that
// `nginx` and `docker.io/library/nginx:latest` are the same image to policy.

export interface ImageRef {
  /** The reference as given. */
  raw: string;
  /** Registry host (lower case; Docker Hub aliases folded into "docker.io"); "" for image ids. */
  registry: string;
  /** Repository path without the registry, e.g. "library/nginx". */
  repository: string;
  /** Tag as written, or undefined. */
  tag: string | undefined;
  /** "sha256:…" when the reference is pinned by digest. */
  digest: string | undefined;
  /** True when the reference is an image id (sha256:… or a bare hex id), not a name. */
  isId: boolean;
  /** registry/repository[:tag][@digest], with the implied ":latest" when there is neither tag nor digest. */
  normalized: string;
}

export const DOCKER_HUB = 'docker.io';
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com', 'hub.docker.com']);

/** Folds Docker Hub's many host names into "docker.io"; lower-cases. */
export function normalizeRegistryHost(host: string): string {
  const h = host.toLowerCase();
  return HUB_ALIASES.has(h) ? DOCKER_HUB : h;
}

const ID_RE = /^(?:sha256:)?[a-f0-9]{12,64}$/;

// Facts are re-evaluated constantly and most hosts run a handful of images,
// so parsed references are memoised (bounded, cleared wholesale when full).
const cache = new Map<string, ImageRef>();
const CACHE_MAX = 10_000;

export function parseImageRef(raw: string): ImageRef {
  let hit = cache.get(raw);
  if (hit === undefined) {
    hit = parseUncached(raw);
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(raw, hit);
  }
  return hit;
}

function parseUncached(raw: string): ImageRef {
  const ref = raw.trim();
  if (ref.startsWith('sha256:') || (ID_RE.test(ref) && !ref.includes('/'))) {
    if (ID_RE.test(ref)) {
      return { raw, registry: '', repository: '', tag: undefined, digest: ref.startsWith('sha256:') ? ref : undefined, isId: true, normalized: ref };
    }
  }
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
  }
  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      registry = normalizeRegistryHost(first);
      repository = rest.slice(slash + 1);
    }
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  let normalized = `${registry}/${repository}`;
  if (tag !== undefined) normalized += `:${tag}`;
  else if (digest === undefined) normalized += ':latest';
  if (digest !== undefined) normalized += `@${digest}`;
  return { raw, registry, repository, tag, digest, isId: false, normalized };
}
