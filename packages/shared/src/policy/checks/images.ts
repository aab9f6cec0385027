// Image checks (moves 1 and 2 of the mission): where images come from, how
// they are referenced, what they carry (secrets) and what scanners found.
import { compileGlob, type Matcher } from '../glob';
import { parseImageRef, normalizeRegistryHost, type ImageRef } from '../image-ref';
import { SECRET_DETECTOR_NAMES } from '../secrets';
import type { ContainerFacts__Output as ContainerFactsLike } from '../../proto/index';
import type { CheckInput, Evidence, Rule, RuleScope, ScanSummary } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE, type TypeBuilder } from './define';

// ---------------------------------------------------------------- registry-allowlist

const RegistryAllowlistParams = lazySchema((T) => T.Object(
  {
    registries: T.Array(T.String({ minLength: 1 }), {
      minItems: 1,
      description:
        'Allowed registries. A host ("registry.example.com", "docker.io"), a host with a repository prefix ("ghcr.io/acme", "docker.io/library" = official images only) or a glob ("*.example.com"). Unqualified refs like "nginx" are Docker Hub ("docker.io/library/nginx").',
    }),
    allowImageIds: T.Optional(
      T.Boolean({ description: 'Accept containers created from a bare image id (registry unknown) when no repo digest tells where it came from. Default false.' }),
    ),
  },
  { additionalProperties: false },
));

interface RegistryEntry {
  host: Matcher;
  /** Repository path prefix, "" for the whole registry. */
  prefix: string | Matcher;
}

function compileRegistryEntry(entry: string): RegistryEntry {
  const e = entry.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
  const slash = e.indexOf('/');
  const host = normalizeRegistryHost(slash < 0 ? e : e.slice(0, slash));
  const path = slash < 0 ? '' : e.slice(slash + 1);
  return { host: compileGlob(host), prefix: /[*?]/.test(path) ? compileGlob(path) : path };
}

function registryMatches(entries: readonly RegistryEntry[], ref: ImageRef): boolean {
  for (const e of entries) {
    if (!e.host(ref.registry)) continue;
    if (e.prefix === '') return true;
    if (typeof e.prefix === 'function') {
      if (e.prefix(ref.repository)) return true;
    } else if (ref.repository === e.prefix || ref.repository.startsWith(`${e.prefix}/`)) return true;
  }
  return false;
}

/** The reference that names the image's origin: the ref, or its repo digest when run by id. */
function originRef(c: ContainerFactsLike): ImageRef {
  const ref = parseImageRef(c.imageRef);
  if (ref.isId && c.imageDigest) return parseImageRef(c.imageDigest);
  return ref;
}

export const registryAllowlist = defineCheck({
  type: 'registry-allowlist',
  group: 'images',
  summary: 'Images must come from an allowed registry (Docker Hub is "docker.io").',
  remedy: 'pull the image from an allowed registry (mirror it there) or add its registry to the rule\'s `registries`',
  params: RegistryAllowlistParams,
  defaults: { registries: [], allowImageIds: false },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const entries = params.registries.map(compileRegistryEntry);
    const list = params.registries.join(', ');
    return ({ container }) => {
      const ref = originRef(container);
      if (ref.isId) {
        if (params.allowImageIds) return NO_EVIDENCE;
        return [{ location: 'image', detail: `image "${container.imageRef}" is referenced by id; its registry is unknown (allowed: ${list})` }];
      }
      if (registryMatches(entries, ref)) return NO_EVIDENCE;
      return [{ location: 'image', detail: `image "${container.imageRef}" comes from ${ref.registry}/${ref.repository}, not from an allowed registry (${list})` }];
    };
  },
});

// ---------------------------------------------------------------- latest-tag

const LatestTagParams = lazySchema((T) => T.Object(
  {
    allowDigestPinned: T.Optional(
      T.Boolean({ description: 'A ref pinned by digest ("nginx@sha256:…", "nginx:latest@sha256:…") passes whatever its tag. Default true.' }),
    ),
    forbiddenTags: T.Optional(
      T.Array(T.String({ minLength: 1 }), { description: 'Tags treated like "latest" (globs). Default ["latest"].' }),
    ),
  },
  { additionalProperties: false },
));

export const latestTag = defineCheck({
  type: 'latest-tag',
  group: 'images',
  summary: 'Images must be referenced by an explicit tag other than `latest` (or by digest).',
  remedy: 'reference the image by a version tag (e.g. nginx:1.27.3) or by digest (image@sha256:…)',
  params: LatestTagParams,
  defaults: { allowDigestPinned: true, forbiddenTags: ['latest'] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const forbidden = (params.forbiddenTags ?? ['latest']).map(compileGlob);
    const allowDigest = params.allowDigestPinned !== false;
    return ({ container }) => {
      const ref = parseImageRef(container.imageRef);
      if (ref.isId) return NO_EVIDENCE; // an image id is immutable: nothing floats
      if (ref.digest !== undefined && allowDigest) return NO_EVIDENCE;
      if (ref.tag === undefined) {
        if (ref.digest !== undefined) return NO_EVIDENCE;
        return [{ location: 'image', detail: `image "${container.imageRef}" has no tag, so it resolves to the moving "latest"` }];
      }
      for (const f of forbidden) {
        if (f(ref.tag)) return [{ location: 'image', detail: `image "${container.imageRef}" uses the moving tag "${ref.tag}"` }];
      }
      return NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- digest-pinned

const DigestPinnedParams = lazySchema((T) => T.Object(
  {
    acceptImageId: T.Optional(
      T.Boolean({ description: 'Accept containers created from an image id (sha256:…) — immutable but not traceable to a registry. Default false.' }),
    ),
  },
  { additionalProperties: false },
));

export const digestPinned = defineCheck({
  type: 'digest-pinned',
  group: 'images',
  summary: 'Image references must be pinned by digest (`image@sha256:…`), so what runs is exactly what was scanned.',
  remedy: 'reference the image as name@sha256:<digest> (see `docker buildx imagetools inspect` or your registry)',
  params: DigestPinnedParams,
  defaults: { acceptImageId: false },
  check({ container }, params) {
    const ref = parseImageRef(container.imageRef);
    if (ref.isId) {
      return params.acceptImageId ? NO_EVIDENCE : [{ location: 'image', detail: `image "${container.imageRef}" is referenced by image id, not by repository digest` }];
    }
    if (ref.digest !== undefined && ref.digest.startsWith('sha256:')) return NO_EVIDENCE;
    return [{ location: 'image', detail: `image "${container.imageRef}" is not pinned by digest (@sha256:…)` }];
  },
});

// ---------------------------------------------------------------- secrets

export const SECRET_LOCATIONS = ['env', 'label', 'command', 'history'] as const;
export type SecretLocation = (typeof SECRET_LOCATIONS)[number];

const DetectorName = (T: TypeBuilder) => T.Union(SECRET_DETECTOR_NAMES.map((n) => T.Literal(n)), { description: 'A secret detector name.' });

const SecretsParams = lazySchema((T) => T.Object(
  {
    locations: T.Optional(
      T.Array(T.Union(SECRET_LOCATIONS.map((l) => T.Literal(l))), {
        description: 'Where to look: env values, labels, command/entrypoint, image history. Default all four.',
        uniqueItems: true,
      }),
    ),
    detectors: T.Optional(T.Array(DetectorName(T), { description: 'Only these detectors count. Default: all.', uniqueItems: true })),
    ignoreDetectors: T.Optional(T.Array(DetectorName(T), { description: 'Detectors that never count. Default none.', uniqueItems: true })),
  },
  { additionalProperties: false },
));

/** "env:DB_URL" → env, "label:x" → label, "command[2]"/"entrypoint[0]" → command, "history[3]" → history. */
export function secretLocationKind(location: string): SecretLocation | undefined {
  if (location.startsWith('env:') || location.startsWith('env[')) return 'env';
  if (location.startsWith('label:') || location.startsWith('label[')) return 'label';
  if (location.startsWith('command') || location.startsWith('entrypoint') || location.startsWith('cmd')) return 'command';
  if (location.startsWith('history')) return 'history';
  return undefined;
}

export const secrets = defineCheck({
  type: 'secrets',
  group: 'images',
  summary: 'No secrets (database URLs with passwords, cloud keys, private keys, tokens, password assignments) in env values, labels, command or image history.',
  remedy:
    'move the secret out of the image/command/env into a Docker secret or a mounted file (e.g. PASSWORD_FILE=/run/secrets/db), rotate the exposed credential, and rebuild without it',
  params: SecretsParams,
  defaults: { locations: [...SECRET_LOCATIONS], ignoreDetectors: [] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const locations = new Set<string>(params.locations ?? SECRET_LOCATIONS);
    const only = params.detectors && params.detectors.length > 0 ? new Set<string>(params.detectors) : undefined;
    const ignore = new Set<string>(params.ignoreDetectors ?? []);
    return ({ container }) => {
      const hits = container.secretHits;
      if (!hits || hits.length === 0) return NO_EVIDENCE;
      const out: Evidence[] = [];
      for (const h of hits) {
        if (only && !only.has(h.detector)) continue;
        if (ignore.has(h.detector)) continue;
        const kind = secretLocationKind(h.location);
        // Unknown location kinds are kept: failing open on a secret is the worse mistake.
        if (kind !== undefined && !locations.has(kind)) continue;
        out.push({ location: h.location, detail: `${h.detector} matched in ${h.location}`, detector: h.detector });
      }
      return out;
    };
  },
});

// ---------------------------------------------------------------- scans

/** The scan of a container's image: by repo digest, by the ref's digest, then by image id. */
export function scanFor(container: ContainerFactsLike, scans: ReadonlyMap<string, ScanSummary> | undefined): ScanSummary | undefined {
  if (!scans || scans.size === 0) return undefined;
  const d = container.imageDigest;
  if (d) {
    const at = d.lastIndexOf('@');
    const s = scans.get(at >= 0 ? d.slice(at + 1) : d);
    if (s) return s;
  }
  const refDigest = parseImageRef(container.imageRef).digest;
  if (refDigest) {
    const s = scans.get(refDigest);
    if (s) return s;
  }
  return container.imageId ? scans.get(container.imageId) : undefined;
}

function imageLabel(c: ContainerFactsLike): string {
  return c.imageDigest || c.imageId || c.imageRef;
}

const Count = (T: TypeBuilder, what: string) =>
  T.Optional(T.Integer({ minimum: 0, description: `Most ${what} vulnerabilities allowed (0 = none). Absent = no limit.` }));

const VulnerabilitiesParams = lazySchema((T) => T.Object(
  {
    maxCritical: Count(T, 'critical'),
    maxHigh: Count(T, 'high'),
    maxMedium: Count(T, 'medium'),
    maxLow: Count(T, 'low'),
    maxUnknown: Count(T, 'unknown-severity'),
    maxCvss: T.Optional(T.Number({ minimum: 0, maximum: 10, description: 'Highest CVSS v3 score allowed for any single vulnerability.' })),
    onlyFixable: T.Optional(T.Boolean({ description: 'Count only vulnerabilities with a fixed version available. Default false.' })),
    ignore: T.Optional(T.Array(T.String({ minLength: 1 }), { description: 'Vulnerability ids accepted (risk-accepted), e.g. "CVE-2023-1234".' })),
  },
  { additionalProperties: false },
));

const SEVERITY_PARAMS = [
  ['critical', 'maxCritical'],
  ['high', 'maxHigh'],
  ['medium', 'maxMedium'],
  ['low', 'maxLow'],
  ['unknown', 'maxUnknown'],
] as const;

export const vulnerabilities = defineCheck({
  type: 'vulnerabilities',
  group: 'images',
  summary: "The image's latest scan must stay within vulnerability thresholds (counts per severity and/or highest CVSS).",
  remedy: 'rebuild the image on a patched base / upgrade the listed packages and upload a fresh scan, or add accepted ids to `ignore`',
  params: VulnerabilitiesParams,
  defaults: { onlyFixable: false, ignore: [] },
  validate(p) {
    const any = SEVERITY_PARAMS.some(([, k]) => p[k] !== undefined) || p.maxCvss !== undefined;
    return any ? [] : [{ path: '', message: 'set at least one threshold (maxCritical, maxHigh, maxMedium, maxLow, maxUnknown or maxCvss)' }];
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const ignore = new Set(params.ignore ?? []);
    const onlyFixable = params.onlyFixable === true;
    const limits = SEVERITY_PARAMS.filter(([, k]) => params[k] !== undefined).map(([sev, k]) => [sev, params[k]!] as const);
    const maxCvss = params.maxCvss;
    // A scan is shared by every container of its image: judge it once per scan
    // object (scans are immutable once in a context) and reuse the evidence.
    const judged = new WeakMap<ScanSummary, Evidence[]>();
    return ({ container, ctx }: CheckInput) => {
      const scan = scanFor(container, ctx.scans);
      if (!scan) return NO_EVIDENCE; // `not-scanned` reports missing scans
      let ev = judged.get(scan);
      if (ev === undefined) {
        ev = judge(scan);
        judged.set(scan, ev);
      }
      return ev.length === 0 ? NO_EVIDENCE : ev.map((e) => ({ ...e }));
    };
    function judge(scan: ScanSummary): Evidence[] {
      const bySev: Record<string, string[]> = { critical: [], high: [], medium: [], low: [], unknown: [] };
      const overCvss: string[] = [];
      for (const v of scan.vulnerabilities) {
        if (onlyFixable && !v.fixable) continue;
        if (ignore.has(v.id)) continue;
        (bySev[v.severity] ?? bySev.unknown!).push(v.id);
        if (maxCvss !== undefined && v.cvss !== undefined && v.cvss > maxCvss) overCvss.push(`${v.id} (${v.cvss})`);
      }
      const out: Evidence[] = [];
      const where = `scan:${scan.digest}`;
      const fix = onlyFixable ? 'fixable ' : '';
      for (const [sev, max] of limits) {
        const ids = unique(bySev[sev]!);
        if (ids.length > max) out.push({ location: where, detail: `${ids.length} ${fix}${sev} vulnerabilities (max ${max}): ${listSome(ids)}` });
      }
      if (overCvss.length > 0) {
        const ids = unique(overCvss);
        out.push({ location: where, detail: `${ids.length} ${fix}vulnerabilities above CVSS ${maxCvss}: ${listSome(ids)}` });
      }
      return out;
    }
  },
});

function unique(a: string[]): string[] {
  return a.length < 2 ? a : [...new Set(a)];
}

function listSome(ids: readonly string[], n = 5): string {
  return ids.length <= n ? ids.join(', ') : `${ids.slice(0, n).join(', ')} and ${ids.length - n} more`;
}

const NotScannedParams = lazySchema((T) => T.Object(
  {
    maxAgeDays: T.Optional(T.Number({ exclusiveMinimum: 0, description: 'A scan older than this many days counts as missing. Absent = any age.' })),
  },
  { additionalProperties: false },
));

export const notScanned = defineCheck({
  type: 'not-scanned',
  group: 'images',
  summary: 'The image must have a vulnerability scan on record (optionally no older than maxAgeDays).',
  remedy: 'scan the image (`trivy image --format json <ref>`) and upload the report to the controller',
  params: NotScannedParams,
  defaults: {},
  check({ container, ctx }, params) {
    const scan = scanFor(container, ctx.scans);
    if (!scan) return [{ location: 'image', detail: `image ${imageLabel(container)} ("${container.imageRef}") has no vulnerability scan on record` }];
    if (params.maxAgeDays !== undefined) {
      const at = Date.parse(scan.scannedAt);
      const ageDays = (ctx.now.getTime() - at) / 86_400_000;
      if (!Number.isFinite(at)) return [{ location: `scan:${scan.digest}`, detail: `scan of ${imageLabel(container)} has no valid date ("${scan.scannedAt}")` }];
      if (ageDays > params.maxAgeDays) {
        return [{ location: `scan:${scan.digest}`, detail: `latest scan of ${imageLabel(container)} is ${Math.floor(ageDays)} days old (max ${params.maxAgeDays})` }];
      }
    }
    return NO_EVIDENCE;
  },
});

// ---------------------------------------------------------------- image-tag-pinned

/** What a container runs, named the way tag tracking and tag pins name it. */
export interface TagIdentity {
  /** "registry/path", e.g. "docker.io/library/nginx". */
  repository: string;
  /** The tag; "latest" for a ref without one. */
  tag: string;
  /** "repository:tag": the key of EvaluationContext.tagPins. */
  key: string;
  /** The manifest digest ("sha256:…") from the repo digest, else the image id; "" when neither is known. */
  digest: string;
}

/**
 * The tag a container runs and the digest it runs it as. undefined for refs that
 * name no tag that could move: an image id, or a ref pinned by digest (dockerd runs
 * the digest and ignores the tag).
 */
export function tagIdentity(c: Pick<ContainerFactsLike, 'imageRef' | 'imageDigest' | 'imageId'>): TagIdentity | undefined {
  const ref = parseImageRef(c.imageRef);
  if (ref.isId || ref.digest !== undefined || ref.repository === '') return undefined;
  const repository = `${ref.registry}/${ref.repository}`;
  const tag = ref.tag ?? 'latest';
  const at = c.imageDigest ? c.imageDigest.lastIndexOf('@') : -1;
  const digest = at >= 0 ? c.imageDigest.slice(at + 1) : c.imageId || '';
  return { repository, tag, key: `${repository}:${tag}`, digest };
}

/** A scope that narrows: at least one field with something in it (an empty scope matches every container). */
export function hasRuleScope(scope: RuleScope | undefined): boolean {
  if (!scope) return false;
  return (scope.hostLabels !== undefined && Object.keys(scope.hostLabels).length > 0) ||
    (scope.containerLabels !== undefined && Object.keys(scope.containerLabels).length > 0) ||
    scope.images !== undefined || scope.projects !== undefined;
}

/**
 * The EvaluationContext.tagPins key of a tag for an `image-tag-pinned` rule: the tag's
 * "repository:tag" for a rule without a scope (fleet-wide pins, shared by such rules), and
 * "<rule id> repository:tag" for a rule with one (rule ids and refs hold no space).
 */
export function tagPinKey(identityKey: string, rule?: Pick<Rule, 'id' | 'scope'>): string {
  return rule !== undefined && hasRuleScope(rule.scope) ? `${rule.id} ${identityKey}` : identityKey;
}

const TagPinnedParams = lazySchema((T) => T.Object(
  {
    tags: T.Optional(
      T.Array(T.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Tags that must never change digest once seen (globs). Default ["v*"] (release tags like v1.4.2).',
      }),
    ),
    repositories: T.Optional(
      T.Array(T.String({ minLength: 1 }), {
        description: 'Only these repositories ("registry/path" globs, e.g. "registry.example.com/shop/*"; Docker Hub is "docker.io/library/nginx"). Default: every repository.',
      }),
    ),
  },
  { additionalProperties: false },
));

export const imageTagPinned = defineCheck({
  type: 'image-tag-pinned',
  group: 'images',
  summary: 'A matching tag must run as the digest first seen running in the rule\'s scope (the whole fleet for a rule without one): a tag re-pushed over a release is refused (pins come from the controller).',
  remedy: 'publish the change under a new tag; if the re-push was intended, run the new digest by digest (image@sha256:…) or add an exemption for it',
  params: TagPinnedParams,
  defaults: { tags: ['v*'] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params, rule) {
    const tags = (params.tags ?? ['v*']).map(compileGlob);
    // A rule with a scope has pins of its own: what ran in its scope, not anywhere in the fleet.
    const scoped = rule !== undefined && hasRuleScope(rule.scope);
    const ruleId = rule?.id ?? '';
    const repos = params.repositories && params.repositories.length > 0 ? params.repositories.map(compileGlob) : undefined;
    return ({ container, ctx }) => {
      // No pins (dry-run at the controller, an agent without any) or no pin for this tag:
      // first seen, nothing to compare with — never a denial.
      const pins = ctx.tagPins;
      if (!pins || pins.size === 0) return NO_EVIDENCE;
      const id = tagIdentity(container);
      if (!id) return NO_EVIDENCE;
      if (!tags.some((m) => m(id.tag))) return NO_EVIDENCE;
      if (repos && !repos.some((m) => m(id.repository))) return NO_EVIDENCE;
      const pinned = pins.get(scoped ? `${ruleId} ${id.key}` : id.key);
      if (pinned === undefined) return NO_EVIDENCE;
      // The pin is a manifest digest, or an image id for an image that had no repo digest.
      if (pinned === id.digest || (container.imageId !== '' && pinned === container.imageId)) return NO_EVIDENCE;
      const now = id.digest === '' ? 'an image whose digest is unknown' : id.digest;
      const seen = scoped ? `the digest first seen in the scope of rule ${ruleId}` : 'the digest first seen';
      return [{ location: 'image', detail: `tag ${id.key} is pinned to ${pinned} (${seen}), but this image is ${now}: the tag was re-pushed` }];
    };
  },
});

export const IMAGE_CHECKS = [registryAllowlist, latestTag, digestPinned, imageTagPinned, secrets, vulnerabilities, notScanned] as const;
