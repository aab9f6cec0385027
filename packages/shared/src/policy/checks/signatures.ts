// Image signatures (moves 1 and 2 of the mission: an image tampered with
// between registry and host, a tag re-pushed over a signed version).
//
// The check is pure like every other: it never talks to a registry. The agent
// verifies first (packages/agent/src/signatures/, against the registry's own
// API) and hands the verdicts in through EvaluationContext.signatures, keyed
// by signatureVerdictKey(). What is verified is the manifest digest the engine
// will run: the container's repo digest FOR THE REPOSITORY IT NAMES (facts
// `imageDigest`, from the local image store's RepoDigests). A tag alone is
// never trusted, and an image with no repo digest for that repository (built
// or loaded locally, or tagged from another repository) is unsigned.
//
// The controller's dry-run has no registry access: it hands in the verdicts
// agents reported (signaturesReported) and lists the digests none verified
// yet as undecided; without any verdicts the check finds nothing but
// "unsigned". docs/policy.md says so.
import { compileGlob } from '../glob';
import { parseImageRef } from '../image-ref';
import type { ContainerFacts__Output as ContainerFactsLike } from '../../proto/index';
import type { Evidence, Rule, SignatureRequirement, SignatureVerdict } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE } from './define';

/** At most this many keys / identities per rule (each costs a verification per signature). */
export const MAX_SIGNATURE_SIGNERS = 32;

const ImageSignatureParams = lazySchema((T) => T.Object(
  {
    keys: T.Optional(T.Array(
      T.Object(
        {
          name: T.String({ minLength: 1, maxLength: 128, description: 'Name used in denials and reports ("prod-signer").' }),
          pem: T.Optional(T.String({ minLength: 1, maxLength: 16384, description: 'The public key, SPKI PEM ("-----BEGIN PUBLIC KEY-----"): ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more).' })),
          file: T.Optional(T.String({ minLength: 1, maxLength: 4096, description: 'Absolute path ON THE AGENT HOST of a PEM public key file (read by the agent, re-read when it changes).' })),
        },
        { additionalProperties: false },
      ),
      { maxItems: MAX_SIGNATURE_SIGNERS, description: 'Trusted public keys (each with exactly one of `pem` / `file`).' },
    )),
    identities: T.Optional(T.Array(
      T.Object(
        {
          issuer: T.String({ minLength: 1, maxLength: 1024, description: 'OIDC issuer in the signing certificate, exact ("https://token.actions.githubusercontent.com").' }),
          subject: T.Optional(T.String({ minLength: 1, maxLength: 1024, description: 'Certificate subject (e-mail or URI SAN), exact.' })),
          subjectGlob: T.Optional(T.String({ minLength: 1, maxLength: 256, description: 'Certificate subject as a glob (`*` any run, `?` one character).' })),
        },
        { additionalProperties: false },
      ),
      { maxItems: MAX_SIGNATURE_SIGNERS, description: 'Trusted keyless signers (Sigstore certificates); need `trustedRootFile`.' },
    )),
    trustedRootFile: T.Optional(T.String({ minLength: 1, maxLength: 4096, description: 'Absolute path on the agent host of a Sigstore trusted root (trusted_root.json), read offline. Required with `identities`.' })),
    minSignatures: T.Optional(T.Integer({ minimum: 1, maximum: MAX_SIGNATURE_SIGNERS, description: 'Distinct trusted signers whose valid signature is required. Default 1.' })),
    annotations: T.Optional(T.Record(T.String({ minLength: 1, maxLength: 256 }), T.String({ maxLength: 1024 }), { description: 'Annotations every counted signature must carry with exactly these values (`cosign sign -a key=value`).' })),
    failClosed: T.Optional(T.Boolean({ description: 'When the registry cannot be asked (down, slow, TLS or credentials), count the image as breaking the rule. Default true.' })),
  },
  { additionalProperties: false },
));

export interface ImageSignatureParamsValue {
  keys?: { name: string; pem?: string; file?: string }[];
  identities?: { issuer: string; subject?: string; subjectGlob?: string }[];
  trustedRootFile?: string;
  minSignatures?: number;
  annotations?: Record<string, string>;
  failClosed?: boolean;
}

const PEM_RE = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\s*$/;

/**
 * The key every verdict for (these params, this repo digest) is stored
 * under. The params part is their canonical JSON: two rules asking the same
 * thing share verdicts, a changed key or threshold never reuses an old one.
 */
export function signatureVerdictKey(params: ImageSignatureParamsValue, repoDigest: string): string {
  return `${signatureParamsKey(params)}\n${repoDigest}`;
}

const paramsKeys = new WeakMap<object, string>();
/** Canonical JSON of what the verification depends on (not failClosed: that only decides what `unreachable` means). */
export function signatureParamsKey(params: ImageSignatureParamsValue): string {
  let k = paramsKeys.get(params);
  if (k === undefined) {
    k = JSON.stringify({
      keys: (params.keys ?? []).map((x) => [x.name, x.pem ?? null, x.file ?? null]),
      identities: (params.identities ?? []).map((x) => [x.issuer, x.subject ?? null, x.subjectGlob ?? null]),
      trustedRootFile: params.trustedRootFile ?? null,
      minSignatures: params.minSignatures ?? 1,
      annotations: Object.entries(params.annotations ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    });
    paramsKeys.set(params, k);
  }
  return k;
}

/**
 * The repo digest a signature must name for this container: the image's repo
 * digest for the repository the container's ref names ("" when the image has
 * none for it). A ref by image id has no repository of its own: the repo
 * digest the agent recorded stands for it.
 */
export function signedRepoDigest(c: Pick<ContainerFactsLike, 'imageRef' | 'imageDigest' | 'repoDigests'>): string {
  const ref = parseImageRef(c.imageRef);
  const listed = c.repoDigests?.values;
  const candidates = listed && listed.length > 0 ? listed : c.imageDigest ? [c.imageDigest] : [];
  for (const d of candidates) {
    if (!DIGEST_RE.test(d)) continue;
    if (ref.isId) return d; // the first: an id names no repository of its own
    const dr = parseImageRef(d);
    if (dr.registry !== ref.registry || dr.repository !== ref.repository) continue;
    // A ref pinned by digest must be that digest (dockerd runs exactly it).
    if (ref.digest !== undefined && ref.digest !== dr.digest) continue;
    return d;
  }
  return '';
}

const DIGEST_RE = /@sha256:[0-9a-f]{64}$/;

/** The requirement the agent's verifier is asked to meet, once key files and the trusted root are read. */
export function signatureRequirement(
  params: ImageSignatureParamsValue,
  read: { keyFiles: ReadonlyMap<string, string>; trustedRoot?: string },
): SignatureRequirement {
  return {
    keys: (params.keys ?? []).map((k) => ({ name: k.name, pem: k.pem ?? read.keyFiles.get(k.file ?? '') ?? '' })),
    identities: (params.identities ?? []).map((i) => ({ issuer: i.issuer, ...(i.subject !== undefined ? { subject: i.subject } : {}), ...(i.subjectGlob !== undefined ? { subjectGlob: i.subjectGlob } : {}) })),
    ...(read.trustedRoot !== undefined ? { trustedRoot: read.trustedRoot } : {}),
    minSignatures: params.minSignatures ?? 1,
    annotations: { ...(params.annotations ?? {}) },
  };
}

function evidenceOf(v: SignatureVerdict, failClosed: boolean): Evidence[] {
  switch (v.status) {
    case 'verified':
      return NO_EVIDENCE;
    case 'unreachable':
      if (v.defer === true) return NO_EVIDENCE;
      return failClosed ? [{ location: 'image.signature', detail: `could not verify ${v.repoDigest}: ${v.message} (the rule fails closed)` }] : NO_EVIDENCE;
    default:
      return [{ location: 'image.signature', detail: v.message }];
  }
}

export const imageSignature = defineCheck({
  type: 'image-signature',
  group: 'images',
  summary: 'Images must carry valid signatures (cosign / Sigstore) by trusted keys or identities for the exact digest the engine runs.',
  remedy: 'run an image pulled from its registry and signed there by a trusted key (`cosign sign --key …` on the digest), or add the signer\'s key to the rule',
  params: ImageSignatureParams,
  defaults: { failClosed: true, minSignatures: 1 },
  validate(p) {
    const errors: { path: string; message: string }[] = [];
    const keys = p.keys ?? [];
    const ids = p.identities ?? [];
    if (keys.length + ids.length === 0) errors.push({ path: '', message: 'image-signature needs at least one of `keys` / `identities`' });
    const names = new Set<string>();
    keys.forEach((k, i) => {
      if ((k.pem === undefined) === (k.file === undefined)) errors.push({ path: `keys[${i}]`, message: 'give exactly one of `pem` (the key itself) or `file` (a path on the agent host)' });
      if (k.pem !== undefined && !PEM_RE.test(k.pem.trim() + '\n')) errors.push({ path: `keys[${i}].pem`, message: 'not a PEM public key ("-----BEGIN PUBLIC KEY-----" … "-----END PUBLIC KEY-----")' });
      if (k.file !== undefined && !k.file.startsWith('/')) errors.push({ path: `keys[${i}].file`, message: 'must be an absolute path on the agent host' });
      if (names.has(k.name)) errors.push({ path: `keys[${i}].name`, message: `key name "${k.name}" is used twice` });
      names.add(k.name);
    });
    ids.forEach((x, i) => {
      if ((x.subject === undefined) === (x.subjectGlob === undefined)) errors.push({ path: `identities[${i}]`, message: 'give exactly one of `subject` or `subjectGlob`' });
    });
    if (ids.length > 0 && p.trustedRootFile === undefined) errors.push({ path: 'trustedRootFile', message: 'keyless `identities` need a Sigstore trusted root file (trustedRootFile)' });
    if (p.trustedRootFile !== undefined && !p.trustedRootFile.startsWith('/')) errors.push({ path: 'trustedRootFile', message: 'must be an absolute path on the agent host' });
    const min = p.minSignatures ?? 1;
    if (min > keys.length + ids.length && keys.length + ids.length > 0) {
      errors.push({ path: 'minSignatures', message: `asks for ${min} distinct signers but the rule trusts only ${keys.length + ids.length}` });
    }
    return errors;
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const failClosed = params.failClosed !== false;
    // validated at load; compiled here so a bad glob in a hand-built policy fails at compile, not per container
    for (const i of params.identities ?? []) if (i.subjectGlob !== undefined) compileGlob(i.subjectGlob);
    return ({ container, ctx }) => {
      const digest = signedRepoDigest(container);
      if (digest === '') {
        const all = container.repoDigests?.values ?? (container.imageDigest ? [container.imageDigest] : []);
        const other = all.length > 0 ? ` (its repo digests: ${all.slice(0, 3).join(', ')}${all.length > 3 ? ', …' : ''})` : '';
        return [{
          location: 'image.signature',
          detail: `image "${container.imageRef}" has no repo digest for its repository${other}: built or loaded locally, or tagged from elsewhere, it cannot carry a registry signature — unsigned`,
        }];
      }
      const verdicts = ctx.signatures;
      if (verdicts === undefined) return NO_EVIDENCE; // no verifier here (controller dry-run)
      const v = verdicts.get(signatureVerdictKey(params, digest));
      if (v === undefined) {
        // Reported verdicts (dry-run): nobody verified this one yet; the dry-run lists it as undecided.
        if (ctx.signaturesReported === true) return NO_EVIDENCE;
        // The caller verifies every in-scope rule before evaluating; a missing
        // verdict means it could not (deadline): undecided, like unreachable.
        return failClosed ? [{ location: 'image.signature', detail: `the signature of ${digest} was not verified in time (the rule fails closed)` }] : NO_EVIDENCE;
      }
      return evidenceOf(v, failClosed);
    };
  },
});

export const SIGNATURE_CHECKS = [imageSignature] as const;

const paramsOfRule = new WeakMap<Rule, ImageSignatureParamsValue>();
/**
 * An image-signature rule's parameters over the check's defaults, the same object per rule
 * object: what the agent's signature gate verifies with and the controller's dry-run looks
 * verdicts up by (signatureVerdictKey), so both compute the same keys.
 */
export function signatureParamsOfRule(rule: Rule): ImageSignatureParamsValue {
  let p = paramsOfRule.get(rule);
  if (p === undefined) {
    const { type: _t, ...given } = rule.check;
    p = { ...(imageSignature.defaults as object), ...given } as ImageSignatureParamsValue;
    paramsOfRule.set(rule, p);
  }
  return p;
}
