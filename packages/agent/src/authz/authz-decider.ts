// Owns the POLICY side of the authorization plugin: which Docker API
// requests are judged, what facts they are judged on, and the answer
// (allow, or deny with a message naming the rules and how to get an
// exemption). plugin-server.ts speaks the protocol and calls decide().
//
// Judged (POST only):
//   /containers/create        the facts the request would create
//   /containers/{id}/update   current facts with the update applied — only what the update makes worse
//   /containers/{id}/exec     privileged / root execs, as a privileged / root container — only what they add
//   /containers/{id}/start    the stored facts (catches containers created before the policy); also /restart
// Everything else is allowed at once without touching the body.
//
// Hot path: one image inspect per create, cached by image ref (TTL) and
// bounded by a short timeout; everything else is in memory. Errors allow
// (fail-open, see docs/authz.md) and are logged.
import type Dockerode from 'dockerode';
import type { ContainerFacts__Output, Finding, HostFacts__Output, Logger, ViolationReport } from '@bulkhead/shared';
import { toContainerFacts, type Facts } from '../docker/container-facts';
import { evaluateFacts, isBlocking, neighboursOf, toViolationReport } from '../policy/policy-evaluation';
import type { PolicyState } from '../policy/policy-holder';
import { scanFactsSecrets, withSecretsAndProject, type ImageHistoryEntry, type SecretHit } from '../secrets/secret-scan';
import type { AuthzDecision, AuthzRequest } from './plugin-server';
import {
  applyUpdateRequest, createRequestToFacts, execEscalation, execRequestToFacts,
  type ContainerCreateBody, type ContainerUpdateBody, type ExecCreateBody,
} from './create-request';

export type AuthzRoute = 'create' | 'update' | 'exec' | 'start';

/** Every decision that involved findings (the agent forwards `violations` to the controller). */
export interface AuthzDecisionReport {
  route: AuthzRoute;
  denied: boolean;
  /** The container (for create: id "" and the requested name). */
  container: Pick<ContainerFacts__Output, 'id' | 'name' | 'imageRef' | 'project'>;
  /** Findings that decided (for update/exec: only those the request adds). */
  findings: Finding[];
  /** One per finding, source "authz"; `denied` is true on the findings that refused the request. */
  violations: ViolationReport[];
  policyVersion: number;
  /** Request received → decision made. */
  decisionMs: number;
  /** The API user dockerd authenticated ("" on the unix socket). */
  user: string;
}

/** The part of the container inventory the decider reads (ContainerWatcher satisfies it). */
export interface ContainerLookup {
  get(id: string): Facts | undefined;
  inventory(): Facts[];
}

/** What the decider needs of dockerode (a Dockerode instance satisfies it). */
export interface AuthzDocker {
  getImage(ref: string): { inspect(): Promise<Dockerode.ImageInspectInfo> };
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
}

/** Cached knowledge the agent's secret scanner holds (SecretScanner satisfies it). */
export interface SecretCache {
  peek(containerId: string): SecretHit[] | undefined;
  peekHistory(imageId: string): ImageHistoryEntry[] | undefined;
}

export interface AuthzDeciderOptions {
  /** The policy in force, read on every request (PolicyHolder: `() => holder.state`). */
  policy: () => PolicyState;
  containers: ContainerLookup;
  docker: AuthzDocker;
  logger: Logger;
  /** Host facts for host-label scopes; undefined = unknown. */
  hostFacts?: () => HostFacts__Output | undefined;
  secrets?: SecretCache;
  /** Called (asynchronously, after the answer) for every decision with findings. */
  onDecision?: (report: AuthzDecisionReport) => void;
  /** Per image/container inspect on the hot path. Default 1000 ms. */
  inspectTimeoutMs?: number;
  /** How long an image inspect is reused for the same ref (tags can move). Default 30 s. */
  imageCacheTtlMs?: number;
  /**
   * A create whose body dockerd did not pass on (chunked, or ≥ 1 MiB) cannot
   * be judged. Deny it while any enforce rule is in force (default true):
   * otherwise padding a request would be a way around the policy.
   */
  denyUnreadableCreate?: boolean;
  /** Wall clock (ms) for reports and exemption expiry. Default Date.now. */
  now?: () => number;
}

const CONTAINER_ROUTE = /^\/containers\/([^/]+)\/(update|exec|start|restart)$/;
const IMAGE_CACHE_MAX = 512;

interface ImageEntry {
  at: number;
  p: Promise<Dockerode.ImageInspectInfo | undefined>;
}

export class AuthzDecider {
  private readonly images = new Map<string, ImageEntry>();
  private readonly inspectTimeoutMs: number;
  private readonly imageTtlMs: number;
  private readonly now: () => number;

  constructor(private readonly o: AuthzDeciderOptions) {
    this.inspectTimeoutMs = o.inspectTimeoutMs ?? 1000;
    this.imageTtlMs = o.imageCacheTtlMs ?? 30_000;
    this.now = o.now ?? Date.now;
  }

  /** For AuthzPlugin's `evaluate`: `evaluate: (req) => decider.decide(req)`. */
  decide(req: AuthzRequest): AuthzDecision | Promise<AuthzDecision> {
    if (req.method !== 'POST') return ALLOW;
    const state = this.o.policy();
    if (!state.policy) return ALLOW;
    if (req.path === '/containers/create') return this.create(req, state);
    const m = CONTAINER_ROUTE.exec(req.path);
    if (!m) return ALLOW;
    const ref = m[1]!;
    switch (m[2]) {
      case 'update':
        return this.update(req, state, ref);
      case 'exec':
        return this.exec(req, state, ref);
      default:
        return this.start(req, state, ref);
    }
  }

  // ---- routes --------------------------------------------------------------

  private async create(req: AuthzRequest, state: PolicyState): Promise<AuthzDecision> {
    const name = req.query.get('name') ?? '';
    if (!req.hasBody) {
      const enforcing = state.policy!.spec.rules.some((r) => r.mode === 'enforce');
      if (enforcing && this.o.denyUnreadableCreate !== false) {
        this.o.logger.warn({ name }, 'authz: container create without a readable body denied');
        return deny(`Bulkhead cannot inspect this container create request (dockerd passes on only JSON bodies under 1 MiB sent with a Content-Length), and policy "${policyName(state)}" has rules in enforce mode. Send the request with a Content-Length and a smaller body.`);
      }
      return ALLOW;
    }
    const body = req.json() as ContainerCreateBody;
    if (typeof body !== 'object' || body === null) throw new Error('create body is not a JSON object');
    const imageRef = typeof body.Image === 'string' ? body.Image : '';
    const image = await this.imageInspect(imageRef);
    if (image === 'missing') {
      // dockerd answers 404 itself and the CLI then pulls and retries the
      // create, which is judged with the image present. Denying here would
      // stop the CLI from pulling.
      return ALLOW;
    }
    const history = image ? this.o.secrets?.peekHistory(image.Id) : undefined;
    const { facts, secretHits } = createRequestToFacts(body, name, image, history);
    const enriched = withSecretsAndProject(facts, secretHits, state.projectLabel);
    const findings = this.evaluate(state, enriched);
    return this.conclude(req, state, 'create', enriched, findings);
  }

  private async update(req: AuthzRequest, state: PolicyState, ref: string): Promise<AuthzDecision> {
    const current = await this.lookup(ref, state);
    if (!current) return ALLOW; // dockerd answers 404 itself
    const body = req.json() as ContainerUpdateBody;
    if (typeof body !== 'object' || body === null) throw new Error('update body is not a JSON object');
    const next = applyUpdateRequest(current, body);
    const added = addedFindings(this.evaluate(state, current), this.evaluate(state, next));
    return this.conclude(req, state, 'update', next, added);
  }

  private async exec(req: AuthzRequest, state: PolicyState, ref: string): Promise<AuthzDecision> {
    // Most execs (health checks!) ask for no privilege: decide without a lookup.
    const body = req.json() as ExecCreateBody;
    if (typeof body !== 'object' || body === null) throw new Error('exec body is not a JSON object');
    const e = execEscalation(body);
    if (!e.privileged && !e.root) return ALLOW;
    const current = await this.lookup(ref, state);
    if (!current) return ALLOW;
    const escalated = execRequestToFacts(current, body);
    if (!escalated) return ALLOW;
    const added = addedFindings(this.evaluate(state, current), this.evaluate(state, escalated));
    return this.conclude(req, state, 'exec', escalated, added);
  }

  private async start(req: AuthzRequest, state: PolicyState, ref: string): Promise<AuthzDecision> {
    const current = await this.lookup(ref, state);
    if (!current) return ALLOW;
    const findings = this.evaluate(state, current);
    // Monitor findings at start are not reported here: the reaction path
    // reports them once per container and rule; only refusals are news.
    return this.conclude(req, state, 'start', current, findings, { reportOnlyDenials: true });
  }

  // ---- shared --------------------------------------------------------------

  private evaluate(state: PolicyState, facts: Facts): Finding[] {
    return evaluateFacts(state, facts, this.o.hostFacts?.(), neighboursOf(this.o.containers.inventory(), state.projectLabel, facts.id || undefined), new Date(this.now()));
  }

  private conclude(
    req: AuthzRequest, state: PolicyState, route: AuthzRoute, facts: Facts, findings: Finding[],
    opts: { reportOnlyDenials?: boolean } = {},
  ): AuthzDecision {
    const blocking = findings.filter(isBlocking);
    const denied = blocking.length > 0;
    const decisionMs = performance.now() - req.receivedAt;
    if (findings.length > 0 && (denied || !opts.reportOnlyDenials)) this.report(req, state, route, facts, findings, denied, decisionMs);
    if (!denied) return ALLOW;
    this.o.logger.info({ route, container: facts.name || facts.id, image: facts.imageRef, rules: blocking.map((f) => f.ruleId), decisionMs }, 'authz: request denied by policy');
    return deny(denialMessage(state, blocking));
  }

  private report(req: AuthzRequest, state: PolicyState, route: AuthzRoute, facts: Facts, findings: Finding[], denied: boolean, decisionMs: number): void {
    const cb = this.o.onDecision;
    if (!cb) return;
    const atMs = this.now();
    const report: AuthzDecisionReport = {
      route,
      denied,
      container: { id: facts.id, name: facts.name, imageRef: facts.imageRef, project: facts.project },
      findings,
      violations: findings.map((f) => toViolationReport(f, facts, { source: 'authz', policyVersion: state.version, atMs, denied: isBlocking(f) })),
      policyVersion: state.version,
      decisionMs,
      user: req.user,
    };
    // After the answer is on its way, and never able to break it.
    setImmediate(() => {
      try {
        cb(report);
      } catch (err) {
        this.o.logger.error({ err }, 'authz onDecision callback threw');
      }
    });
  }

  /**
   * A container's facts by full id, name or unique id prefix (all forms
   * dockerd accepts), from the inventory; on a miss (created a moment ago,
   * the watcher has not seen it yet) one inspect. undefined = no such container.
   */
  private async lookup(ref: string, state: PolicyState): Promise<Facts | undefined> {
    let facts = this.findInInventory(ref);
    if (!facts) {
      let info: Dockerode.ContainerInspectInfo;
      try {
        info = await withTimeout(this.o.docker.getContainer(ref).inspect(), this.inspectTimeoutMs, `inspect of container ${ref}`);
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
      const image = await this.imageInspect(info.Image);
      facts = toContainerFacts(info, image === 'missing' ? undefined : image);
    }
    const hits = this.o.secrets?.peek(facts.id) ?? scanFactsSecrets(facts);
    return withSecretsAndProject(facts, hits, state.projectLabel);
  }

  private findInInventory(ref: string): Facts | undefined {
    const byId = this.o.containers.get(ref);
    if (byId) return byId;
    const name = ref.replace(/^\//, '');
    let prefixMatch: Facts | undefined;
    let prefixCount = 0;
    for (const f of this.o.containers.inventory()) {
      if (f.name === name) return f;
      if (/^[0-9a-f]+$/.test(ref) && f.id.startsWith(ref)) {
        prefixMatch = f;
        prefixCount++;
      }
    }
    return prefixCount === 1 ? prefixMatch : undefined;
  }

  /** Image inspect by ref or id, cached; 'missing' when the engine has no such image. */
  private async imageInspect(ref: string): Promise<Dockerode.ImageInspectInfo | undefined | 'missing'> {
    if (ref === '') return undefined;
    const now = this.now();
    let e = this.images.get(ref);
    if (!e || now - e.at > this.imageTtlMs) {
      const p = withTimeout(this.o.docker.getImage(ref).inspect(), this.inspectTimeoutMs, `inspect of image ${ref}`).then(
        (img) => img,
        (err: unknown) => {
          this.images.delete(ref);
          if (statusCode(err) === 404) return undefined;
          throw err;
        },
      );
      e = { at: now, p };
      this.images.set(ref, e);
      while (this.images.size > IMAGE_CACHE_MAX) this.images.delete(this.images.keys().next().value as string);
    }
    const img = await e.p;
    return img === undefined ? 'missing' : img;
  }
}

const ALLOW: AuthzDecision = Object.freeze({ allow: true });

function deny(msg: string): AuthzDecision {
  return { allow: false, msg };
}

function policyName(state: PolicyState): string {
  return state.policy?.metadata?.name ?? 'policy';
}

/**
 * What the user sees after "authorization denied by plugin NAME: ". One
 * line per rule (id, severity, the evaluator's one-line reason), then how
 * to get an exemption.
 */
export function denialMessage(state: PolicyState, blocking: readonly Finding[]): string {
  const version = state.source === 'bundle' ? ` v${state.version}` : state.source === 'local' ? ' (local file)' : '';
  const ids = [...new Set(blocking.map((f) => f.ruleId))];
  // The evaluator's messages start with "<rule id>: "; the id is already in the brackets.
  const lines = blocking.map((f) => `- [${f.ruleId}] (${f.severity}) ${oneLine(f.message.startsWith(`${f.ruleId}: `) ? f.message.slice(f.ruleId.length + 2) : f.message)}`);
  const how = state.source === 'local'
    ? `add an exemption to rule ${ids.join(', ')} in the local policy file`
    : `add an exemption to rule ${ids.join(', ')} in the policy (bulkhead policy apply)`;
  return `Bulkhead policy "${policyName(state)}"${version} denies this request:\n${lines.join('\n')}\nFix the container configuration, or ${how}.`;
}

function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 400 ? `${t.slice(0, 397)}...` : t;
}

/**
 * Findings of `after` that `before` does not have (same rule and same
 * evidence): what an update or exec ADDS. A container already breaking a
 * rule stays judged by the reaction path, and the enforcer's own `docker
 * update` (limit action) is never refused for an unrelated violation.
 */
export function addedFindings(before: readonly Finding[], after: readonly Finding[]): Finding[] {
  const seen = new Set(before.map(findingKey));
  return after.filter((f) => !seen.has(findingKey(f)));
}

function findingKey(f: Finding): string {
  return `${f.ruleId}\u0000${JSON.stringify(f.evidence.map((e) => [e.location, e.detail]))}`;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function statusCode(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

