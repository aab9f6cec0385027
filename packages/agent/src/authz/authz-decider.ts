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
//   /networks/{id}/connect    current facts plus that network — only what it adds (network rules)
//   /volumes/create           a local-driver volume bound to a host path, by the host-path rules
//   /plugins/{name}/enable    the plugin's process as dockerd will run it (its inspect), by the host rules
//   /build                    the build's RUN containers' network mode (`networkmode` query), by host-namespaces;
//                             refused when a body plugins are not given may set it (a form past dockerd's first 4 KiB)
//   /grpc                     BuildKit's gRPC API (buildx): unreadable, refused while host-namespaces is enforced
//   /services/create, /services/{id}/update   the task container a ServiceSpec makes, as a create
//   /swarm/join               refused while a host rule is enforced (a foreign manager's tasks are never judged here)
//   /swarm/init               refused on a non-loopback listen address while a host rule is enforced (remote managers could join)
// Undoing what Bulkhead did (enforce/holds.ts), while the rule that acted is enforced:
//   /containers/{id}/unpause, /kill (a signal other than SIGKILL resumes a paused container; one a form body the
//   plugin is not given may supply counts as such, see queryAsDockerd), /stop (resumes it
//   for the stop timeout), /start, /restart of a container Bulkhead paused; /networks/{id}/connect of one it
//   quarantined; /containers/{id}/update loosening the limits a `limit` action applied (MemorySwap alone too);
//   PUT /containers/{id}/archive (docker cp INTO a container) Bulkhead paused or quarantined — the one PUT route
//   dockerd has; /containers/{id}/rename of any held one (its name must keep reaching it). A ref that may reach a
//   held container in dockerd (id, id prefix, name) is judged as it, whatever the trailing inventory says
//   (heldMatch). Looked at only while some container is held; the agent's own unpause/release drop the hold
//   before calling the engine.
// Everything else is allowed at once without touching the body.
//
// Hot path (a create with nothing to look up): the image inspect is cached
// by ref (TTL), so the decision is synchronous — no promise, no timer, no
// engine call. Only enforce-mode rules are evaluated before the answer;
// monitor-mode rules (they never refuse) and the reports come after it
// (setImmediate). A policy without enforce rules answers every request at
// once and judges it afterwards, for the report.
// Lookups only when the request uses what they resolve and the policy has a
// rule that cares (docker/facts-resolver.ts): --volumes-from, named volumes,
// bind sources (symlinks), `container:` namespaces, networks by id. They
// share one deadline (`resolutionBudgetMs` from receipt, inside the plugin's
// own decision timeout).
//
// Failure stance (docs/authz.md): an error in the decider rejects, and the
// plugin server allows and logs (fail-open) — except when a LOOKUP fails
// that an enforce rule in scope depends on: then the request is refused
// (fail-closed) with a message naming the rule and what could not be
// learned, because allowing would be exactly the bypass the lookup closes.
import type Dockerode from 'dockerode';
import { applicableRules, parseMemorySize } from '@bulkhead/shared';
import type { ContainerFacts__Output, Finding, HostFacts__Output, LimitSpec, Logger, Policy, Rule, ViolationReport } from '@bulkhead/shared';
import { limitPlan } from '../enforce/actions';
import { MANUAL_HOLD_RULE, type EnforcementHolds, type HoldKind } from '../enforce/holds';
import { toContainerFacts, type Facts } from '../docker/container-facts';
import { str } from '../docker/docker-json';
import {
  FactsResolver, findContainer, RESOLUTION_CHECKS, withTimeout,
  type ResolutionFailure, type ResolutionKind, type ResolveOptions, type ResolverDocker,
} from '../docker/facts-resolver';
import { evaluateFacts, isBlocking, neighboursOf, toViolationReport } from '../policy/policy-evaluation';
import type { PolicyState } from '../policy/policy-holder';
import { scanFactsSecrets, withSecretsAndProject, type ImageHistoryEntry, type SecretHit } from '../secrets/secret-scan';
import { apiVersionLess, queryParam, type AuthzDecision, type AuthzRequest } from './plugin-server';
import {
  applyLegacyStartHostConfig, applyNetworkConnect, emptyFacts, applyUpdateRequest, createRequestToFacts, execEscalation, execRequestToFacts, pluginToFacts, serviceSpecToCreate, volumeCreateToFacts,
  volumesFromOf, type ContainerCreateBody, type ContainerUpdateBody, type ExecCreateBody, type VolumeCreateBody,
} from './create-request';
import type { SignatureGate, SignatureVerdicts } from '../signatures/signature-gate';
import { decodeCreate, decodeExec, decodeNetworkConnect, decodeServiceSpec, decodeSwarmInit, decodeUpdate, decodeVolumeCreate, type Decoded } from './docker-types';

/** Routed paths of requests that can move an image tag (AuthzDecider.responded). */
const MOVES_TAGS = /^\/(?:commit|build|grpc|session|images)(?:\/|$)/;

export type AuthzRoute = 'create' | 'update' | 'exec' | 'exec-start' | 'start' | 'network-connect' | 'volume-create' | 'plugin-enable' | 'build' | 'service' | 'swarm' | 'unpause' | 'kill' | 'stop' | 'archive' | 'rename';

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

/** What the decider needs of dockerode (a Dockerode instance satisfies it; volume and network inspects only where used). */
export interface AuthzDocker extends ResolverDocker {
  getImage(ref: string): { inspect(): Promise<Dockerode.ImageInspectInfo> };
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
  /** For `POST /exec/{id}/start`: what dockerd stored for the exec. */
  getExec(id: string): { inspect(): Promise<Dockerode.ExecInspectInfo> };
  /** For `POST /plugins/{name}/enable`: the plugin as dockerd stored it (without it, such an enable cannot be judged). */
  getPlugin?(name: string, remote: string | undefined): { inspect(): Promise<unknown> };
  /** For `POST /services/{id}/update?rollback=previous`: the service's previous spec (without it, such a rollback cannot be judged). */
  getService?(id: string): { inspect(): Promise<unknown> };
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
  /**
   * Looks up what facts alone do not say (volumes, symlinks, joined
   * namespaces, networks by id). Default: one over `docker` and `containers`.
   */
  resolver?: FactsResolver;
  /**
   * Every lookup of one request must have answered this long after it was
   * received (ms), or the lookup counts as failed. Default 1000 ms: well
   * inside the plugin server's decision timeout (2 s), after which it would
   * allow (fail-open).
   */
  resolutionBudgetMs?: number;
  /**
   * Image signature verdicts for `image-signature` rules (cached ones keep a
   * create synchronous). Without it those rules decide only on what facts
   * say (an image with no repo digest).
   */
  signatures?: SignatureGate;
  /**
   * A signature verification must have answered this long after the
   * request was received (ms), else its rule's failClosed decides. Default
   * 1500 ms: inside the plugin server's decision timeout (2 s).
   */
  signatureBudgetMs?: number;
  /**
   * What Bulkhead paused, quarantined or limited (the enforcer and the
   * operator's commands record it): a request undoing it is refused while
   * the rule that acted is enforced. Without it, nothing is held.
   */
  holds?: EnforcementHolds;
  /** This agent's id, for the `bulkhead action <agent> <container> …` a hold's denial names. */
  agentId?: string;
}

// dockerd's routes take `{name:.*}`: a reference may hold "/" (it then names
// no container, and dockerd answers 404 itself).
const CONTAINER_ROUTE = /^\/containers\/(.+)\/(update|exec|start|restart|unpause|kill|stop|rename)$/;
/** dockerd's `PUT /containers/{name:.*}/archive`: extracts a tar into the container's filesystem (docker cp into it). */
const ARCHIVE_ROUTE = /^\/containers\/(.+)\/archive$/;
const EXEC_START_ROUTE = /^\/exec\/(.+)\/start$/;
const NETWORK_CONNECT_ROUTE = /^\/networks\/(.+)\/connect$/;
/** dockerd's `/plugins/{name:.*}/enable`: a plugin reference may hold "/" and ":". */
const PLUGIN_ENABLE_ROUTE = /^\/plugins\/(.+)\/enable$/;
/** dockerd's `/services/create` and `/services/{id}/update`. */
const SERVICE_ROUTE = /^\/services\/(?:create|(.+)\/update)$/;
/** The name a `POST /grpc` refusal is judged under: an exemption matching it (`match.names`) lets BuildKit's gRPC API through. */
export const BUILDKIT_GRPC_SUBJECT = 'buildkit-grpc';
/** The name a `POST /build` with a body plugins are not given is refused under (exemption `match.names`): its options may come from that body. */
export const BUILD_BODY_SUBJECT = 'build-body';
/** The names a `POST /swarm/join` / non-loopback `POST /swarm/init` refusal is judged under (exemption `match.names`). */
export const SWARM_JOIN_SUBJECT = 'swarm-join';
export const SWARM_INIT_SUBJECT = 'swarm-init';
/** The host rules: what a container (a plugin's process, a swarm task) can break out of its isolation with. */
const HOST_RULE_CHECKS = ['root-user', 'privileged', 'sensitive-mounts', 'docker-socket', 'capabilities', 'host-namespaces', 'devices'] as const;
/** start/restart report only refusals, so a policy that cannot refuse has nothing to judge there. */
const START_ROUTE = /^\/(?:containers\/.+\/(?:start|restart)|exec\/.+\/start)$/;
/**
 * The check types a request on each route can break when its body is
 * unreadable: an update changes limits and the restart policy; an exec asks
 * for root or privilege; a volume binds a host path; a connect adds a
 * network. (A create or a legacy start body can break anything.)
 */
const ROUTE_CHECKS: Partial<Record<AuthzRoute, readonly string[]>> = {
  update: ['resource-limits', 'cpu-usage', 'memory-usage', 'pids-usage'],
  exec: ['root-user', 'privileged'],
  'exec-start': ['root-user', 'privileged'],
  'volume-create': RESOLUTION_CHECKS.mounts,
  'network-connect': RESOLUTION_CHECKS.networks,
  build: ['host-namespaces'],
  // What a plugin's config can ask for that breaks out of a container (pluginToFacts).
  'plugin-enable': HOST_RULE_CHECKS,
  // What a task a foreign swarm manager schedules here can ask for (a ServiceSpec: root, binds, capabilities, host network).
  swarm: HOST_RULE_CHECKS,
};
/** dockerd applies a host config sent with start only below this API version (20.10 up to 24; later engines refuse old versions). */
const LEGACY_START_BELOW = '1.24';
const IMAGE_CACHE_MAX = 512;

type ImageResult = Dockerode.ImageInspectInfo | 'missing';

interface ImageEntry {
  at: number;
  p: Promise<ImageResult>;
  /** Set once `p` resolved: lets a create with a cached image be decided synchronously. */
  value?: ImageResult;
}

export class AuthzDecider {
  private readonly images = new Map<string, ImageEntry>();
  private readonly inspectTimeoutMs: number;
  private readonly imageTtlMs: number;
  private readonly budgetMs: number;
  private readonly signatureBudgetMs: number;
  private readonly now: () => number;
  private readonly resolver: FactsResolver;
  /** Requests answered before they were judged (monitor-only policy): when. */
  private readonly answeredAt = new WeakMap<AuthzRequest, number>();
  /** Per policy object: the kinds of lookup its rules need (none → never look anything up). */
  private readonly needs = new WeakMap<Policy, ReadonlySet<ResolutionKind>>();

  constructor(private readonly o: AuthzDeciderOptions) {
    this.inspectTimeoutMs = o.inspectTimeoutMs ?? 1000;
    this.imageTtlMs = o.imageCacheTtlMs ?? 30_000;
    this.budgetMs = o.resolutionBudgetMs ?? 1000;
    this.signatureBudgetMs = o.signatureBudgetMs ?? 1500;
    this.now = o.now ?? Date.now;
    this.resolver = o.resolver ?? new FactsResolver({ docker: o.docker, containers: o.containers, lookupTimeoutMs: this.inspectTimeoutMs });
  }

  /** For AuthzPlugin's `evaluate`: `evaluate: (req) => decider.decide(req)`. */
  decide(req: AuthzRequest): AuthzDecision | Promise<AuthzDecision> {
    // PUT (dockerd's one PUT route is the archive upload, docker cp INTO a container) only while something is held.
    if (req.method !== 'POST' && (req.method !== 'PUT' || !this.o.holds || this.o.holds.size === 0)) return ALLOW;
    const state = this.o.policy();
    if (!state.policy) return ALLOW;
    if (req.targetError !== undefined) {
      // Go's server would not route it, or routes it where we cannot see:
      // either way, not a request to let through unjudged.
      return this.undecidable(req, state, 'create', `its target cannot be read the way dockerd reads it (${req.targetError})`);
    }
    if (!partsOf(state.policy).enforce) {
      // Nothing can be refused (every rule monitors, as every install
      // starts): answer now, judge for the report after the answer.
      if (this.o.onDecision && !START_ROUTE.test(req.path)) {
        this.answeredAt.set(req, performance.now());
        setImmediate(() => this.judgeForReport(req, state));
      }
      return ALLOW;
    }
    return this.route(req, state);
  }

  /**
   * An image event from the engine (`tag`, `untag`, `pull`, `load`,
   * `import`, `delete`): a ref may now name another image, so every cached
   * image inspect is dropped — a tag moved onto a root image is judged as
   * that image from the next create on. (Image events are rare; the start
   * check judges what dockerd stored in any case.)
   */
  forgetImages(): void {
    this.images.clear();
  }

  /**
   * The response phase of a request dockerd served (AuthzPlugin onResponse). A request that may
   * have moved a tag — a commit, an image tag/pull/load/import/delete/prune, a build (classic,
   * BuildKit's /grpc or /session) — drops every cached image inspect before its client gets the
   * answer. Without this the drop waited for the engine's image event: a create sent right
   * after `docker commit --change 'USER root' … app:1` was judged on the old, non-root app:1
   * while dockerd ran the new one as root (1 in 10 on 20.10 in CI,
   * test/authz-differential/commit-user-race.test.ts). A path that cannot be read counts as such.
   */
  responded(res: { method: string; path: string | undefined }): void {
    if (res.method === 'GET' || res.method === 'HEAD') return;
    if (res.path === undefined || res.path === '' || MOVES_TAGS.test(res.path)) this.images.clear();
  }

  /** Whether the policy in force has rules in enforce mode (the plugin then fails closed). */
  enforcing(): boolean {
    const p = this.o.policy().policy;
    return p !== undefined && partsOf(p).enforce !== undefined;
  }

  private route(req: AuthzRequest, state: PolicyState): AuthzDecision | Promise<AuthzDecision> {
    const path = req.path;
    if (req.method === 'PUT') {
      const a = ARCHIVE_ROUTE.exec(path);
      if (!a || !this.o.holds || this.o.holds.size === 0) return ALLOW;
      return this.lookup(a[1]!, state).then((facts) => (facts && this.held(req, state, 'archive', facts)) || ALLOW);
    }
    if (path === '/containers/create') return this.create(req, state);
    if (path === '/volumes/create') return this.volumeCreate(req, state);
    if (path === '/build') return this.build(req, state);
    if (path === '/grpc') return this.buildkitGrpc(req, state);
    if (path === '/swarm/join') return this.swarmJoin(req, state);
    if (path === '/swarm/init') return this.swarmInit(req, state);
    if (path.startsWith('/services/')) {
      const sv = SERVICE_ROUTE.exec(path);
      return sv ? this.service(req, state, sv[1]) : ALLOW;
    }
    if (path.startsWith('/networks/')) {
      const n = NETWORK_CONNECT_ROUTE.exec(path);
      return n ? this.networkConnect(req, state, n[1]!) : ALLOW;
    }
    if (path.startsWith('/plugins/')) {
      const p = PLUGIN_ENABLE_ROUTE.exec(path);
      return p ? this.pluginEnable(req, state, p[1]!) : ALLOW;
    }
    if (path.startsWith('/exec/')) {
      const x = EXEC_START_ROUTE.exec(path);
      return x ? this.execStart(req, state, x[1]!) : ALLOW;
    }
    const m = CONTAINER_ROUTE.exec(path);
    if (!m) return ALLOW;
    const ref = m[1]!;
    switch (m[2]) {
      case 'update':
        return this.update(req, state, ref);
      case 'exec':
        return this.exec(req, state, ref);
      case 'unpause':
      case 'kill':
      case 'stop':
      case 'rename':
        // Not judged by any rule: only a hold can stand in their way.
        if (!this.o.holds || this.o.holds.size === 0) return ALLOW;
        return this.lookup(ref, state).then(async (facts) => (facts && (await this.held(req, state, m[2] as HoldOp, facts))) || ALLOW);
      default:
        return this.start(req, state, ref);
    }
  }

  // ---- routes --------------------------------------------------------------

  private create(req: AuthzRequest, state: PolicyState): AuthzDecision | Promise<AuthzDecision> {
    // dockerd reads it with r.Form.Get after refusing any body that is not JSON (CheckForJSON): no form values.
    const name = queryAsDockerd(req, 'name', 'form').value ?? '';
    if (!req.hasBody) {
      if (this.o.denyUnreadableCreate === false) return ALLOW;
      return this.undecidable(req, state, 'create', `${missingBodyReason(req)}; send the request with a Content-Length, as JSON, and a body under 1 MiB`);
    }
    const decoded = decodeCreate(req.body()!);
    if (!decoded.ok) return this.unreadable(req, state, 'create', decoded.error);
    const body = decoded.body.body as ContainerCreateBody;
    const imageRef = typeof body.Image === 'string' ? body.Image : '';
    const cached = this.cachedImage(imageRef);
    if (cached !== NOT_CACHED) return this.createWith(req, state, body, name, cached);
    return this.imageInspect(imageRef).then((image) => this.createWith(req, state, body, name, image));
  }

  private createWith(
    req: AuthzRequest, state: PolicyState, body: ContainerCreateBody, name: string, image: ImageResult | undefined,
  ): AuthzDecision | Promise<AuthzDecision> {
    if (image === 'missing') {
      // dockerd answers 404 itself and the CLI then pulls and retries the
      // create, which is judged with the image present. Denying here would
      // stop the CLI from pulling.
      return ALLOW;
    }
    const history = image ? this.o.secrets?.peekHistory(image.Id) : undefined;
    const { facts, secretHits } = createRequestToFacts(body, name, image, history);
    const kinds = this.needsOf(state.policy!);
    if (kinds.size > 0) {
      const r: ResolveOptions = { kinds, volumesFrom: volumesFromOf(body), networks: true };
      if (this.resolver.needed(facts, r)) {
        r.deadline = req.receivedAt + this.budgetMs;
        return this.resolver.resolve(facts, r).then((res) => this.judgeCreate(req, state, res.facts, secretHits, res.failures));
      }
    }
    return this.judgeCreate(req, state, facts, secretHits, NO_FAILURES);
  }

  private judgeCreate(req: AuthzRequest, state: PolicyState, facts: Facts, secretHits: SecretHit[], failures: readonly ResolutionFailure[]): AuthzDecision | Promise<AuthzDecision> {
    const enriched = withSecretsAndProject(facts, secretHits, state.projectLabel);
    return this.unresolvable(req, state, 'create', enriched, failures) ?? this.judge(req, state, 'create', enriched);
  }

  private async update(req: AuthzRequest, state: PolicyState, ref: string): Promise<AuthzDecision> {
    const current = await this.lookup(ref, state);
    if (!current) return ALLOW; // dockerd answers 404 itself
    const decoded = this.bodyOf(req, decodeUpdate);
    if (!decoded.ok) return this.heldUnreadable(req, state, 'update', current, decoded.error) ?? this.undecidable(req, state, 'update', decoded.error, current);
    const body = decoded.body as ContainerUpdateBody;
    const next = applyUpdateRequest(current, body);
    const held = this.held(req, state, 'update', current, next, updateMemorySwap(body));
    if (held) return held;
    const added = addedFindings(this.evaluate(state, current), this.evaluate(state, next));
    return this.conclude(req, state, 'update', next, added);
  }

  private exec(req: AuthzRequest, state: PolicyState, ref: string): AuthzDecision | Promise<AuthzDecision> {
    const decoded = this.bodyOf(req, decodeExec);
    if (!decoded.ok) return this.undecidableFor(req, state, 'exec', decoded.error, ref);
    // Most execs ask for no privilege: decide without a lookup.
    const body = decoded.body as ExecCreateBody;
    const e = execEscalation(body);
    if (!e.privileged && !e.root) return ALLOW;
    return this.judgeExec(req, state, 'exec', ref, body);
  }

  /**
   * `POST /exec/{id}/start`: the exec as dockerd STORED it (its inspect) —
   * dockerd's own reading of the create body, whatever spelling, encoding or
   * route reached it, and whatever the plugin could or could not read then.
   */
  private async execStart(req: AuthzRequest, state: PolicyState, id: string): Promise<AuthzDecision> {
    if (!this.routeMatters(state, 'exec-start')) return ALLOW;
    let info: Dockerode.ExecInspectInfo;
    try {
      info = await withTimeout(this.o.docker.getExec(id).inspect(), this.inspectTimeoutMs, `inspect of exec ${id}`);
    } catch (err) {
      if (statusCode(err) === 404) return ALLOW; // dockerd answers 404 itself
      throw err;
    }
    const pc = (info.ProcessConfig ?? {}) as { user?: unknown; privileged?: unknown };
    const body: ExecCreateBody = { User: typeof pc.user === 'string' ? pc.user : '', Privileged: pc.privileged === true };
    const e = execEscalation(body);
    if (!e.privileged && !e.root) return ALLOW;
    return this.judgeExec(req, state, 'exec-start', str(info.ContainerID), body);
  }

  private async judgeExec(req: AuthzRequest, state: PolicyState, route: AuthzRoute, ref: string, body: ExecCreateBody): Promise<AuthzDecision> {
    const current = await this.lookup(ref, state);
    if (!current) return ALLOW;
    const escalated = execRequestToFacts(current, body);
    if (!escalated) return ALLOW;
    const added = addedFindings(this.evaluate(state, current), this.evaluate(state, escalated));
    // At exec start only refusals are news: the exec create reported the rest.
    return this.conclude(req, state, route, escalated, added, { reportOnlyDenials: route === 'exec-start' });
  }

  private async start(req: AuthzRequest, state: PolicyState, ref: string): Promise<AuthzDecision> {
    let current = await this.lookup(ref, state);
    if (!current) return ALLOW;
    const held = this.held(req, state, req.path.endsWith('/restart') ? 'restart' : 'start', current);
    if (held) return held;
    if (req.apiVersion !== '' && apiVersionLess(req.apiVersion, LEGACY_START_BELOW) && req.path.endsWith('/start')) {
      // Old API versions still let a start body REPLACE the host config
      // (dockerd ≤ 24): judge the container as it would then be.
      const legacy = this.legacyStartBody(req);
      if (!legacy.ok) return this.undecidable(req, state, 'start', legacy.error, current);
      if (legacy.body) current = applyLegacyStartHostConfig(current, legacy.body);
    }
    // Resolved again, bind sources afresh: a symlink re-pointed since create
    // is what a start would mount; volumes and joined namespaces cannot change.
    const kinds = this.needsOf(state.policy!);
    const r: ResolveOptions = { kinds, freshPaths: true, previous: current, deadline: req.receivedAt + this.budgetMs };
    if (kinds.size > 0 && this.resolver.needed(current, r)) {
      const res = await this.resolver.resolve(current, r);
      const refused = this.unresolvable(req, state, 'start', res.facts, res.failures);
      if (refused) return refused;
      current = res.facts;
    }
    // Monitor findings at start are not reported here: the reaction path
    // reports them once per container and rule; only refusals are news.
    return this.judge(req, state, 'start', current, { reportOnlyDenials: true });
  }

  private networkConnect(req: AuthzRequest, state: PolicyState, netRef: string): AuthzDecision | Promise<AuthzDecision> {
    // Only the network rules care which networks a container is on — and a quarantine Bulkhead holds.
    const rules = this.needsOf(state.policy!).has('networks');
    const quarantined = this.o.holds?.any('quarantine') ?? false;
    if (!rules && !quarantined) return ALLOW;
    const decoded = this.bodyOf(req, decodeNetworkConnect);
    if (!decoded.ok) return this.heldUnreadable(req, state, 'network-connect', undefined, decoded.error) ?? this.undecidable(req, state, 'network-connect', decoded.error);
    const ref = str(decoded.body['Container']);
    if (ref === '') return ALLOW; // dockerd refuses it itself
    return this.networkConnectAsync(req, state, netRef, ref, rules);
  }

  private async networkConnectAsync(req: AuthzRequest, state: PolicyState, netRef: string, ref: string, rules: boolean): Promise<AuthzDecision> {
    const current = await this.lookup(ref, state);
    if (!current) return ALLOW;
    const held = this.held(req, state, 'connect', current);
    if (held) return held;
    if (!rules) return ALLOW;
    const probe: Facts = { ...current, networks: [{ name: netRef, networkId: '', ipAddress: '' }] };
    const res = await this.resolver.resolve(probe, { kinds: NETWORKS_ONLY, networks: true, deadline: req.receivedAt + this.budgetMs });
    const refused = this.unresolvable(req, state, 'network-connect', current, res.failures);
    if (refused) return refused;
    const net = res.facts.networks[0]!;
    // Not found: dockerd answers 404 itself.
    if (net.networkId === '' && !['bridge', 'host', 'none'].includes(net.name)) return ALLOW;
    const next = applyNetworkConnect(current, { name: net.name, id: net.networkId });
    const added = addedFindings(this.evaluate(state, current), this.evaluate(state, next));
    return this.conclude(req, state, 'network-connect', next, added);
  }

  private volumeCreate(req: AuthzRequest, state: PolicyState): AuthzDecision | Promise<AuthzDecision> {
    if (!this.needsOf(state.policy!).has('mounts')) return ALLOW;
    const decoded = this.bodyOf(req, decodeVolumeCreate);
    if (!decoded.ok) return this.undecidable(req, state, 'volume-create', decoded.error);
    const facts = volumeCreateToFacts(decoded.body as VolumeCreateBody);
    if (!facts) return ALLOW;
    return this.resolver.resolve(facts, { kinds: MOUNTS_ONLY, deadline: req.receivedAt + this.budgetMs }).then(({ facts: resolved }) => {
      const project = withSecretsAndProject(resolved, [], state.projectLabel);
      // Only the host-path rules judge a volume; the rest would judge an
      // empty "container" (no user, no limits) and refuse every volume.
      const types = ruleTypes(state.policy!);
      const findings = this.evaluate(state, project).filter((f) => RESOLUTION_CHECKS.mounts.includes(types.get(f.ruleId) ?? ''));
      return this.conclude(req, state, 'volume-create', project, findings);
    });
  }

  /**
   * `POST /plugins/{name}/enable`: dockerd then runs the plugin's process
   * with what its config asks (host binds, capabilities, host namespaces,
   * devices), as root, outside any container the reaction path can see.
   * Judged on the plugin as dockerd stored it, by the host rules only (a
   * plugin has no limits, image user or labels to judge). An exemption
   * matching the plugin's name or reference (`images`) admits a vetted one.
   */
  private async pluginEnable(req: AuthzRequest, state: PolicyState, ref: string): Promise<AuthzDecision> {
    if (!this.routeMatters(state, 'plugin-enable')) return ALLOW;
    const get = this.o.docker.getPlugin;
    if (!get) throw new Error('cannot inspect plugins (no plugin client configured)');
    let info: unknown;
    try {
      // Each segment escaped: dockerd decodes the path again before routing.
      info = await withTimeout(get.call(this.o.docker, ref.split('/').map(encodeURIComponent).join('/'), undefined).inspect(), this.inspectTimeoutMs, `inspect of plugin ${ref}`);
    } catch (err) {
      if (statusCode(err) === 404) return ALLOW; // dockerd answers 404 itself
      throw err;
    }
    let facts = pluginToFacts(isRecord(info) ? info : {});
    // Bind sources with their symlinks resolved, afresh (a link can be re-pointed at any time).
    const r: ResolveOptions = { kinds: MOUNTS_ONLY, freshPaths: true, deadline: req.receivedAt + this.budgetMs };
    if (this.resolver.needed(facts, r)) {
      const res = await this.resolver.resolve(facts, r);
      const refused = this.unresolvable(req, state, 'plugin-enable', res.facts, res.failures);
      if (refused) return refused;
      facts = res.facts;
    }
    const types = ROUTE_CHECKS['plugin-enable']!;
    const rt = ruleTypes(state.policy!);
    const enforce = partsOf(state.policy!).enforce;
    if (!enforce) return ALLOW;
    const findings = this.evaluate({ ...state, policy: enforce }, facts).filter((f) => types.includes(rt.get(f.ruleId) ?? ''));
    return this.conclude(req, state, 'plugin-enable', facts, findings);
  }

  /**
   * `POST /build`: the builder runs every RUN step in a container with the
   * request's `networkmode` (classic builder and BuildKit alike; measured on
   * 20.10 and 26.1: `networkmode=host` shows the host's interfaces), made
   * inside dockerd where no create reaches the plugin. Only that is judged,
   * by host-namespaces (a `container:` mode through the container it joins).
   * The body is the build context (a tar), never passed to plugins.
   */
  private build(req: AuthzRequest, state: PolicyState): AuthzDecision | Promise<AuthzDecision> {
    if (!this.routeMatters(state, 'build')) return ALLOW;
    // dockerd reads the build's options with r.FormValue AFTER its handler has buffered the first chunk
    // (≤ 4 KiB) of the body: the rest of a form-encoded body sets them, networkmode=host included
    // (measured on 20.10 and 26.1, test/e2e/authz-bypass-formbody.test.ts). The door is given neither
    // that body nor the Content-Type dockerd reads (a tar's and a form's look alike here).
    const networkmode = queryAsDockerd(req, 'networkmode', 'form');
    if (networkmode.unseen !== undefined) {
      // An exemption of build-body accepts that risk, not a host-network build: the target is judged on.
      const d = this.undecidable(req, state, 'build',
        // ≤ ~300 characters: denialMessage cuts a finding's line at 400.
        'dockerd takes build options (networkmode) from a form-encoded body past its first 4 KiB, and plugins see neither the body nor the Content-Type dockerd reads. '
        + `Send the context without a Content-Type header or by URL (remote=), or exempt names: [${BUILD_BODY_SUBJECT}]`, { ...emptyFacts(), name: BUILD_BODY_SUBJECT });
      if (!d.allow) return d;
    }
    const mode = networkmode.value ?? '';
    if (mode === '' || mode === 'default' || mode === 'none' || mode === 'bridge') return ALLOW;
    const facts: Facts = { ...emptyFacts(), name: queryAsDockerd(req, 't', 'form').value ?? '', networkMode: mode };
    const judge = (f: Facts, failures: readonly ResolutionFailure[]): AuthzDecision => {
      const refused = this.unresolvable(req, state, 'build', f, failures);
      if (refused) return refused;
      const types = ROUTE_CHECKS.build!;
      const rt = ruleTypes(state.policy!);
      const enforce = partsOf(state.policy!).enforce;
      if (!enforce) return ALLOW;
      const findings = this.evaluate({ ...state, policy: enforce }, f).filter((x) => types.includes(rt.get(x.ruleId) ?? ''));
      return this.conclude(req, state, 'build', f, findings);
    };
    const r: ResolveOptions = { kinds: NAMESPACES_ONLY, deadline: req.receivedAt + this.budgetMs };
    if (!this.resolver.needed(facts, r)) return judge(facts, NO_FAILURES);
    return this.resolver.resolve(facts, r).then((res) => judge(res.facts, res.failures));
  }

  /**
   * `POST /grpc`: BuildKit's control API (buildx's docker driver; `docker
   * build` on CLIs where it is buildx), an h2c stream after the upgrade.
   * The Solve inside — with its RUN steps' network mode, and the
   * network.host entitlement dockerd's builder grants by default — never
   * reaches a plugin. A door that cannot decide refuses while a rule that
   * judges builds (host-namespaces) is enforced. `/session` (the client's
   * side of a classic BuildKit `POST /build?version=2`) runs nothing by
   * itself and stays allowed; that build is judged at `/build`.
   */
  private buildkitGrpc(req: AuthzRequest, state: PolicyState): AuthzDecision {
    if (!this.routeMatters(state, 'build')) return ALLOW;
    const subject: Facts = { ...emptyFacts(), name: BUILDKIT_GRPC_SUBJECT };
    return this.undecidable(req, state, 'build',
      'POST /grpc is BuildKit\'s gRPC API (buildx): the build inside it, RUN --network host included, is a stream no plugin sees. '
      + `Build with DOCKER_BUILDKIT=0 docker build (judged at POST /build; exempt names: [${BUILD_BODY_SUBJECT}] there), or exempt names: [buildkit-grpc]`, subject);
  }

  /**
   * `POST /swarm/join`: this engine becomes a node of a swarm whose managers
   * the caller names, and then runs whatever tasks they schedule on it —
   * swarm's executor creates those containers inside dockerd (no create
   * reaches the plugin), from services created through another engine's API
   * (measured on 20.10 and 26.1: a bind of the host's /, CAP_SYS_ADMIN and
   * the host network, test/authz-differential/swarm-join.test.ts). The door
   * cannot judge a control plane it does not see, so it refuses while a host
   * rule is enforced; the exemption `names: [swarm-join]` is the opt-out for
   * swarms whose every manager runs Bulkhead with this policy.
   */
  private swarmJoin(req: AuthzRequest, state: PolicyState): AuthzDecision {
    if (!this.routeMatters(state, 'swarm')) return ALLOW;
    return this.undecidable(req, state, 'swarm',
      // ≤ ~300 characters: denialMessage cuts a finding's line at 400.
      'POST /swarm/join runs the tasks a swarm\'s managers schedule: swarm creates their containers inside dockerd, unseen by this door '
      + '(only the reaction path sees them, once running). Exempt names: [swarm-join] only for a swarm whose managers all run Bulkhead', { ...emptyFacts(), name: SWARM_JOIN_SUBJECT });
  }

  /**
   * `POST /swarm/init`: a new swarm with this engine as its manager. Its
   * services are judged here (`/services/…`), but a manager listening on a
   * reachable address lets another engine join as a manager (the caller can
   * read the join tokens) and create services through ITS API, scheduled on
   * this node — the same hole as a join. Refused while a host rule is
   * enforced unless the listen address is a loopback IP (a single-node
   * swarm; dockerd listens for managers only there); opt-out: names: [swarm-init].
   */
  private swarmInit(req: AuthzRequest, state: PolicyState): AuthzDecision {
    if (!this.routeMatters(state, 'swarm')) return ALLOW;
    const d = this.bodyOf(req, decodeSwarmInit);
    if (!d.ok) return this.undecidable(req, state, 'swarm', d.error, { ...emptyFacts(), name: SWARM_INIT_SUBJECT });
    const listen = str(d.body['ListenAddr']);
    if (isLoopbackListenAddr(listen)) return ALLOW;
    return this.undecidable(req, state, 'swarm',
      `POST /swarm/init listening on ${JSON.stringify(listen.slice(0, 60))} (not loopback) lets another engine join as a manager and schedule tasks here unjudged. `
      + 'Use --listen-addr 127.0.0.1:2377 (a single-node swarm), or exempt names: [swarm-init]', { ...emptyFacts(), name: SWARM_INIT_SUBJECT });
  }

  /**
   * `POST /services/create` and `/services/{id}/update`: swarm's executor
   * creates each task's container inside dockerd, so no create reaches the
   * plugin. The ServiceSpec is turned into the create the executor would
   * make (serviceSpecToCreate) and judged like one. A field the door cannot
   * map refuses while anything is enforced. An update is judged whole (its
   * tasks are re-created from it); `?rollback=previous` applies the stored
   * previous spec, which is judged instead of the body.
   */
  private async service(req: AuthzRequest, state: PolicyState, id: string | undefined): Promise<AuthzDecision> {
    let spec: Record<string, unknown>;
    // dockerd reads `rollback` from r.URL.Query(): the target alone.
    if (id !== undefined && queryAsDockerd(req, 'rollback', 'url').value === 'previous') {
      const get = this.o.docker.getService;
      if (!get) return this.undecidable(req, state, 'service', 'a rollback applies the service\'s previous spec, and this agent cannot inspect services');
      let info: unknown;
      try {
        info = await withTimeout(get.call(this.o.docker, id).inspect(), this.inspectTimeoutMs, `inspect of service ${id}`);
      } catch (err) {
        if (statusCode(err) === 404) return ALLOW; // dockerd answers 404 itself
        throw err;
      }
      const prev = isRecord(info) ? info['PreviousSpec'] : undefined;
      if (!isRecord(prev)) return ALLOW; // dockerd refuses a rollback without a previous spec
      const d = decodeServiceSpec(new TextEncoder().encode(JSON.stringify(prev)));
      if (!d.ok) return this.undecidable(req, state, 'service', `the previous spec of service ${id} cannot be read (${d.error})`);
      spec = d.body;
    } else {
      const d = this.bodyOf(req, decodeServiceSpec);
      if (!d.ok) return this.undecidable(req, state, 'service', d.error);
      spec = d.body;
    }
    const m = serviceSpecToCreate(spec);
    const subject = createRequestToFacts(m.body, m.name).facts;
    if (m.unmappable.length > 0) {
      return this.undecidable(req, state, 'service', `the door cannot turn ${m.unmappable.join('; ')} into the facts of a container`, subject);
    }
    const hc = m.body.HostConfig as Record<string, unknown>;
    if (m.networks.length > 0) {
      // The CLI names networks by id; swarm's executor runs a task on a
      // predefined network (host, bridge) in that network mode.
      const probe: Facts = { ...emptyFacts(), networks: m.networks.map((n) => ({ name: n, networkId: '', ipAddress: '' })) };
      const res = await this.resolver.resolve(probe, { kinds: NETWORKS_ONLY, networks: true, deadline: req.receivedAt + this.budgetMs });
      if (res.failures.length > 0) {
        return this.undecidable(req, state, 'service', res.failures.map((f) => `cannot learn ${f.what}: ${f.why}`).join('; '), subject);
      }
      const names = res.facts.networks.map((n) => n.name);
      const predefined = names.find((n) => n === 'host') ?? names.find((n) => n === 'bridge');
      if (predefined) hc['NetworkMode'] = predefined;
      else m.body.NetworkingConfig = { EndpointsConfig: Object.fromEntries(names.map((n) => [n, {}])) };
    }
    const imageRef = str(m.body.Image);
    // An image not on this node (swarm pulls it where the task runs) is
    // judged on the spec alone: its USER unknown, the spec's user decides.
    const image = await this.imageInspect(imageRef);
    const known = image === 'missing' ? undefined : image;
    const history = known ? this.o.secrets?.peekHistory(known.Id) : undefined;
    const { facts, secretHits } = createRequestToFacts(m.body, m.name, known, history);
    const kinds = this.needsOf(state.policy!);
    if (kinds.size > 0) {
      const r: ResolveOptions = { kinds, volumesFrom: [], networks: false };
      if (this.resolver.needed(facts, r)) {
        r.deadline = req.receivedAt + this.budgetMs;
        const res = await this.resolver.resolve(facts, r);
        const enriched = withSecretsAndProject(res.facts, secretHits, state.projectLabel);
        return this.unresolvable(req, state, 'service', enriched, res.failures) ?? this.judge(req, state, 'service', enriched);
      }
    }
    return this.judge(req, state, 'service', withSecretsAndProject(facts, secretHits, state.projectLabel));
  }

  /** A request already allowed (monitor-only policy), judged for its report. Errors are logged only. */
  private judgeForReport(req: AuthzRequest, state: PolicyState): void {
    const failed = (err: unknown): void => this.o.logger.warn({ err, method: req.method, path: req.path }, 'authz: could not judge an allowed request for its report (monitor-only policy)');
    try {
      const d = this.route(req, state);
      if (d instanceof Promise) d.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  // ---- shared --------------------------------------------------------------

  /**
   * Decides on the enforce-mode rules alone; monitor-mode rules (which never
   * refuse) are evaluated after the answer, for the report. A policy in
   * monitor mode — how every install starts — thus costs a request nothing
   * before it is answered.
   */
  private judge(req: AuthzRequest, state: PolicyState, route: AuthzRoute, facts: Facts, opts: { reportOnlyDenials?: boolean } = {}): AuthzDecision | Promise<AuthzDecision> {
    const { enforce, monitor } = partsOf(state.policy!);
    const gate = this.o.signatures;
    let later: (() => Finding[] | Promise<Finding[]>) | undefined;
    if (monitor && !opts.reportOnlyDenials) {
      const sub = { ...state, policy: monitor };
      later = gate?.relevant(monitor)
        ? () => {
          // Verified after the answer (monitor rules never refuse), within the agent's usual budget.
          const v = gate.collect(monitor, facts, this.o.hostFacts?.(), new Date(this.now()));
          return v instanceof Promise ? v.then((m) => this.evaluate(sub, facts, m)) : this.evaluate(sub, facts, v);
        }
        : () => this.evaluate(sub, facts);
    }
    if (!enforce) return this.conclude(req, state, route, facts, NO_FINDINGS, { ...opts, later });
    const sub = { ...state, policy: enforce };
    if (gate?.relevant(enforce)) {
      const v = gate.collect(enforce, facts, this.o.hostFacts?.(), new Date(this.now()), req.receivedAt + this.signatureBudgetMs);
      if (v instanceof Promise) return v.then((m) => this.conclude(req, state, route, facts, this.evaluate(sub, facts, m), { ...opts, later }));
      return this.conclude(req, state, route, facts, this.evaluate(sub, facts, v), { ...opts, later });
    }
    return this.conclude(req, state, route, facts, this.evaluate(sub, facts), { ...opts, later });
  }

  /** A judged body, decoded as dockerd decodes it; an error when there is none to read or dockerd's decoder would fail. */
  private bodyOf(req: AuthzRequest, decode: (raw: Uint8Array) => Decoded<Record<string, unknown>>): Decoded<Record<string, unknown>> {
    const raw = req.body();
    if (!raw) return { ok: false, error: missingBodyReason(req) };
    const d = decode(raw);
    return d.ok ? d : { ok: false, error: `dockerd's decoder would not accept it either (${d.error})` };
  }

  /** The host config of a legacy start body; body undefined when the request carries none. */
  private legacyStartBody(req: AuthzRequest): Decoded<Record<string, unknown> | undefined> {
    const raw = req.body();
    if (!raw) {
      // dockerd reads a start body only when it is longer than 7 bytes (or chunked).
      const length = req.header('Content-Length');
      if (length !== undefined && /^\d+$/.test(length) && Number(length) <= 7) return { ok: true, body: undefined };
      return { ok: false, error: missingBodyReason(req) };
    }
    if (raw.length <= 7 && req.header('Content-Length') !== undefined) return { ok: true, body: undefined };
    const d = decodeCreate(raw);
    if (!d.ok) return { ok: false, error: `dockerd's decoder would not accept it either (${d.error})` };
    return { ok: true, body: d.body.body.HostConfig ?? undefined };
  }

  /** Whether the policy has an enforce rule a request on this route could break (so it is worth a lookup). */
  private routeMatters(state: PolicyState, route: AuthzRoute): boolean {
    const types = ROUTE_CHECKS[route];
    return types === undefined || state.policy!.spec.rules.some((r) => r.mode === 'enforce' && types.includes(r.check.type));
  }

  /** A create body dockerd's decoder rejects: dockerd refuses it too; say why when the policy enforces. */
  private unreadable(req: AuthzRequest, state: PolicyState, route: AuthzRoute, error: string): AuthzDecision {
    return this.undecidable(req, state, route, `dockerd's decoder would not accept it either (${error})`);
  }

  private undecidableFor(req: AuthzRequest, state: PolicyState, route: AuthzRoute, why: string, ref: string): Promise<AuthzDecision> {
    return this.lookup(ref, state).then((current) => (current ? this.undecidable(req, state, route, why, current) : ALLOW));
  }

  /**
   * Fail-closed on a request Bulkhead cannot read as dockerd would (no body
   * passed on, a body dockerd's decoder rejects, a target it cannot
   * classify): refused when an enforce rule that the request could break
   * applies — to `facts` when the container is known, else to any
   * container — naming the rules and the reason; recorded like any refusal.
   */
  private undecidable(req: AuthzRequest, state: PolicyState, route: AuthzRoute, why: string, facts?: Facts): AuthzDecision {
    const types = ROUTE_CHECKS[route];
    const rules = facts ? this.enforcedOn(state, facts) : state.policy!.spec.rules.filter((r) => r.mode === 'enforce');
    const findings: Finding[] = [];
    for (const r of rules) {
      if (types !== undefined && !types.includes(r.check.type)) continue;
      findings.push(failClosedFinding(r, [{ location: 'request', detail: `cannot be checked: ${why}` }], `Bulkhead cannot check this request and refuses it (fail-closed, the rule is in enforce mode): ${why}.`));
    }
    const subject = facts ?? requestSubject(req);
    this.o.logger.warn({ route, path: req.path, container: subject.name || subject.id, why, refusedBy: findings.map((f) => f.ruleId) }, findings.length > 0
      ? 'authz: request cannot be read as dockerd reads it; refused (fail-closed)'
      : 'authz: request cannot be read as dockerd reads it; no enforce rule depends on it');
    if (findings.length === 0) return ALLOW;
    return this.conclude(req, state, route, subject, findings);
  }

  /**
   * A request that would undo what Bulkhead did to this container (a pause,
   * a quarantine, limits; enforce/holds.ts): one finding per rule that made
   * the hold and still applies to the container (in scope, not exempted) —
   * refusing while it is enforced, recorded only in monitor mode. A hold
   * whose rules are gone or exempted no longer stands. undefined: no hold
   * in the way (or only monitor findings, which are reported) — judge on.
   */
  private held(req: AuthzRequest, state: PolicyState, op: HoldOp, facts: Facts, next?: Facts, memorySwap?: number): AuthzDecision | undefined {
    const holds = this.o.holds;
    if (!holds || holds.size === 0) return undefined;
    const kinds: HoldKind[] = op === 'connect' ? ['quarantine'] : op === 'update' ? ['limit']
      // A precaution: a start could put a container with no network back on the user-defined
      // network it was created on (not seen on 20.10 or 26.1: a restart left it on none).
      : op === 'start' || op === 'restart' ? (isUserDefinedNetwork(facts.networkMode) ? ['pause', 'quarantine'] : ['pause'])
        : op === 'archive' ? ['pause', 'quarantine']
          : op === 'rename' ? ['pause', 'quarantine', 'limit']
            : ['pause'];
    // SIGKILL ends it, does not resume it. dockerd reads the signal with r.Form.Get, which takes a
    // form-encoded BODY's value first — a body no plugin is given: then the signal is unknown.
    let note = HOLD_OP_NOTE[op] ?? '';
    if (op === 'kill') {
      const signal = queryAsDockerd(req, 'signal', 'form');
      if (signal.unseen === undefined && isSigkill(signal.value ?? '')) return undefined;
      if (signal.unseen !== undefined) note = ` (the signal is unknown: ${signal.unseen})`;
    }
    if (op === 'stop' && ['exited', 'dead', 'created'].includes(facts.state)) return undefined; // nothing left to resume
    const policy = state.policy!;
    let applicable: Map<string, Rule> | undefined;
    const manualMode = partsOf(policy).enforce ? 'enforce' : 'monitor';
    const who = facts.name || facts.id.slice(0, 12);
    const findings: Finding[] = [];
    for (const kind of kinds) {
      const hold = holds.get(facts.id, kind);
      if (!hold) continue;
      applicable ??= new Map(applicableRules(policy, this.hostInput(facts), new Date(this.now())).map((r) => [r.id, r]));
      for (const id of hold.rules) {
        const manual = id === MANUAL_HOLD_RULE.pause || id === MANUAL_HOLD_RULE.quarantine;
        const rule = manual ? undefined : applicable.get(id);
        if (!manual && !rule) continue; // the rule is gone, out of scope or exempted: nothing holds it any more
        let why: string;
        if (kind === 'limit') {
          if (rule!.action.type !== 'limit') continue;
          const limits = rule!.action.limits;
          if (op === 'rename') {
            why = `Bulkhead applied this rule's limits (${limitText(limits)}) to container ${who}; its name stays while they are held, so that an update naming it reaches it and no other container. `
              + 'Rename it once the rule no longer holds it (raise the rule\'s action.limits or exempt the container, bulkhead policy apply)';
          } else {
            if (!next) continue;
            // Bulkhead sets memory+swap to the memory it applies (no swap): a MemorySwap alone (-1, or past the
            // rule's memory) would let the container swap beyond it while its Memory still reads as limited.
            const swap = limits?.memory !== undefined && swapLoosens(memorySwap, parseMemorySize(limits.memory));
            if (!limitPlan(next, limits) && !swap) continue;
            why = `Bulkhead applied this rule's limits (${limitText(limits)}) to container ${who} and they stay while it is enforced; this update would loosen them`
              + `${swap ? ` (MemorySwap ${memorySwap! < 0 ? '-1, unlimited swap' : memorySwap}: Bulkhead allows no swap beyond the rule's memory)` : ''}. Raise the rule's action.limits or exempt the container (bulkhead policy apply)`;
          }
        } else {
          const by = `${manual ? `by ${hold.by}` : hold.by}, ${hold.at}${hold.escalated ? ', escalated after repeated actions' : ''}`;
          const release = `bulkhead action ${this.o.agentId ?? '<agent>'} ${who} ${kind === 'quarantine' ? 'release' : 'unpause'}`;
          why = kind === 'quarantine'
            ? `container ${who} was quarantined by Bulkhead (${by}) and stays off every network until released: ${release}${op === 'connect' ? '' : op === 'archive' || op === 'rename' ? note : ` (a ${op} could put it back on network ${facts.networkMode})`}`
            : `container ${who} was paused by Bulkhead (${by}) and stays held until released: ${release}${note}`;
        }
        findings.push({
          ruleId: id,
          severity: rule?.severity ?? 'high',
          mode: rule?.mode ?? manualMode,
          action: rule?.action ?? { type: kind === 'quarantine' ? 'quarantine' : 'pause' },
          evidence: [{ location: `hold:${kind}`, detail: `${op === 'archive' ? 'docker cp into' : `${op} of`} a container Bulkhead ${kind === 'pause' ? 'paused' : kind === 'quarantine' ? 'quarantined' : 'limited'} (${hold.by}, ${hold.at})` }],
          message: `${id}: ${why}.`,
        });
      }
    }
    if (findings.length === 0) return undefined;
    const route: AuthzRoute = op === 'connect' ? 'network-connect' : op === 'restart' ? 'start' : op;
    this.o.logger.warn({ route, container: who, rules: findings.map((f) => `${f.ruleId}:${f.mode}`) }, 'authz: a request would undo an action Bulkhead applied');
    const d = this.conclude(req, state, route, next ?? facts, findings);
    return d.allow ? undefined : d;
  }

  /**
   * A request that could undo a hold but whose body cannot be read (a
   * padded connect or update): refused while a hold of that kind is enforced
   * — on this container (update), or on any container (connect: the body
   * names it) — else undefined (the route's own fail-closed rules decide).
   */
  private heldUnreadable(req: AuthzRequest, state: PolicyState, route: 'update' | 'network-connect', facts: Facts | undefined, why: string): AuthzDecision | undefined {
    const holds = this.o.holds;
    const kind: HoldKind = route === 'update' ? 'limit' : 'quarantine';
    if (!holds || !holds.any(kind)) return undefined;
    const ids = facts ? (holds.get(facts.id, kind)?.rules ?? []) : holds.rulesOf(kind);
    const policy = state.policy!;
    const byId = new Map(policy.spec.rules.map((r) => [r.id, r]));
    const findings: Finding[] = [];
    for (const id of ids) {
      const manual = id === MANUAL_HOLD_RULE.quarantine;
      const r = byId.get(id);
      if (!manual && (r?.mode !== 'enforce')) continue;
      if (manual && !partsOf(policy).enforce) continue;
      findings.push({
        ruleId: id, severity: r?.severity ?? 'high', mode: 'enforce', action: r?.action ?? { type: 'quarantine' },
        evidence: [{ location: 'request', detail: `cannot be checked: ${why}` }],
        message: `${id}: Bulkhead cannot check this request and refuses it (fail-closed): ${why}, and it could undo ${kind === 'limit' ? 'limits' : 'a quarantine'} Bulkhead applied${facts ? ` to container ${facts.name || facts.id.slice(0, 12)}` : ''}.`,
      });
    }
    if (findings.length === 0) return undefined;
    return this.conclude(req, state, route, facts ?? requestSubject(req), findings);
  }

  private hostInput(facts: Facts): { container: Facts; host?: HostFacts__Output } {
    const host = this.o.hostFacts?.();
    return host ? { container: facts, host } : { container: facts };
  }

  /** The policy's enforce-mode rules that apply to `facts` (in scope, not exempted). */
  private enforcedOn(state: PolicyState, facts: Facts): Rule[] {
    const host = this.o.hostFacts?.();
    return applicableRules(state.policy!, host ? { container: facts, host } : { container: facts }, new Date(this.now())).filter((r) => r.mode === 'enforce');
  }

  private evaluate(state: PolicyState, facts: Facts, signatures?: SignatureVerdicts): Finding[] {
    const inv = this.o.containers;
    return evaluateFacts(state, facts, this.o.hostFacts?.(), () => neighboursOf(inv.inventory(), state.projectLabel, facts.id || undefined), new Date(this.now()), undefined, signatures);
  }

  private needsOf(policy: Policy): ReadonlySet<ResolutionKind> {
    let kinds = this.needs.get(policy);
    if (!kinds) {
      const types = new Set(policy.spec.rules.map((r) => r.check.type));
      kinds = new Set((Object.keys(RESOLUTION_CHECKS) as ResolutionKind[]).filter((k) => RESOLUTION_CHECKS[k].some((c) => types.has(c))));
      this.needs.set(policy, kinds);
    }
    return kinds;
  }

  /**
   * Fail-closed on a failed lookup: when an enforce rule that applies to
   * this container (in scope, not exempted) judges what could not be
   * learned, the request is refused, naming the rule, what is unknown and
   * why; the refusal is recorded like any other. undefined: carry on (no
   * failures, or none that an enforce rule depends on — logged only).
   */
  private unresolvable(req: AuthzRequest, state: PolicyState, route: AuthzRoute, facts: Facts, failures: readonly ResolutionFailure[]): AuthzDecision | undefined {
    if (failures.length === 0) return undefined;
    const findings: Finding[] = [];
    for (const r of this.enforcedOn(state, facts)) {
      const missing = failures.filter((f) => RESOLUTION_CHECKS[f.kind].includes(r.check.type));
      if (missing.length === 0) continue;
      const detail = missing.map((f) => `cannot learn ${f.what}: ${f.why}`).join('; ');
      findings.push(failClosedFinding(r, missing.map((f) => ({ location: `lookup:${f.kind}`, detail: `cannot learn ${f.what}: ${f.why}` })),
        `Bulkhead could not check this request and refuses it (fail-closed, the rule is in enforce mode): ${detail}. Retry; if it persists, see the agent's log.`));
    }
    this.o.logger.warn({ route, container: facts.name || facts.id, failures, refusedBy: findings.map((f) => f.ruleId) }, findings.length > 0
      ? 'authz: a lookup failed that an enforce rule depends on; request refused (fail-closed)'
      : 'authz: a lookup failed; no enforce rule depends on it, judging what is known');
    if (findings.length === 0) return undefined;
    return this.conclude(req, state, route, facts, findings);
  }

  private conclude(
    req: AuthzRequest, state: PolicyState, route: AuthzRoute, facts: Facts, findings: readonly Finding[],
    /** `later`: more (monitor) findings, computed after the answer for the report. */
    opts: { reportOnlyDenials?: boolean; later?: (() => Finding[] | Promise<Finding[]>) | undefined } = {},
  ): AuthzDecision {
    if (findings.length === 0 && !opts.later) return ALLOW;
    let blocking: Finding[] | undefined;
    for (const f of findings) if (isBlocking(f)) (blocking ??= []).push(f);
    const decisionMs = (this.answeredAt.get(req) ?? performance.now()) - req.receivedAt;
    if (blocking || !opts.reportOnlyDenials) this.report(req, state, route, facts, findings, opts.later, blocking !== undefined, decisionMs);
    if (!blocking) return ALLOW;
    this.o.logger.info({ route, container: facts.name || facts.id, image: facts.imageRef, rules: blocking.map((f) => f.ruleId), decisionMs }, 'authz: request denied by policy');
    return deny(denialMessage(state, blocking));
  }

  private report(
    req: AuthzRequest, state: PolicyState, route: AuthzRoute, facts: Facts, decided: readonly Finding[], later: (() => Finding[] | Promise<Finding[]>) | undefined,
    denied: boolean, decisionMs: number,
  ): void {
    const cb = this.o.onDecision;
    if (!cb) return;
    const atMs = this.now();
    const user = req.user;
    const deliver = (more: readonly Finding[] | undefined): void => {
      try {
        const findings = more ? inPolicyOrder(state.policy!, decided, more) : [...decided];
        if (findings.length === 0) return;
        cb({
          route,
          denied,
          container: { id: facts.id, name: facts.name, imageRef: facts.imageRef, project: facts.project },
          findings,
          violations: findings.map((f) => toViolationReport(f, facts, { source: 'authz', policyVersion: state.version, atMs, denied: isBlocking(f) })),
          policyVersion: state.version,
          decisionMs,
          user,
        });
      } catch (err) {
        this.o.logger.error({ err }, 'authz onDecision callback threw');
      }
    };
    // Built and delivered after the answer is on its way (the plugin writes
    // it in this tick), and never able to break it.
    setImmediate(() => {
      let more: Finding[] | Promise<Finding[]> | undefined;
      try {
        more = later?.();
      } catch (err) {
        this.o.logger.error({ err }, 'authz: judging monitor rules for the report failed');
        more = undefined;
      }
      if (more instanceof Promise) {
        more.then(deliver, (err: unknown) => {
          this.o.logger.error({ err }, 'authz: judging monitor rules for the report failed');
          deliver(undefined);
        });
      } else deliver(more);
    });
  }

  /**
   * A container's facts by full id, name or unique id prefix (all forms
   * dockerd accepts), from the inventory; on a miss (created a moment ago,
   * the watcher has not seen it yet) one inspect. undefined = no such container.
   */
  private async lookup(ref: string, state: PolicyState): Promise<Facts | undefined> {
    const heldId = this.heldMatch(ref);
    if (heldId !== undefined) ref = heldId;
    let facts = findContainer(this.o.containers, ref);
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

  /**
   * The id of a held container that `ref` may name when dockerd runs the request, whatever the
   * inventory says: its id, a prefix of it, or its name (as held, or as the inventory has it now).
   * The inventory trails the engine: after `docker rename C away`, a ref that was C's name — and is
   * a prefix of a held container's id — reaches the HELD one in dockerd (full id, then name, then
   * prefix) while the inventory still maps it to C (measured: an unpause through it got past the
   * door 4 times in 15 on 20.10 and 26.1). Held containers win, conservatively; a held container's
   * own name cannot change under it (its rename is refused while held). Few holds: a short loop.
   */
  private heldMatch(ref: string): string | undefined {
    const holds = this.o.holds;
    if (!holds || holds.size === 0) return undefined;
    const name = ref.replace(/^\//, '');
    const hex = /^[0-9a-f]+$/.test(ref);
    for (const h of holds.containers()) {
      if (h.id === ref || (hex && h.id.startsWith(ref)) || h.name === name || this.o.containers.get(h.id)?.name === name) return h.id;
    }
    return undefined;
  }

  /** The cached inspect of `ref` if it is known and fresh; NOT_CACHED otherwise (also while one is in flight). */
  private cachedImage(ref: string): ImageResult | undefined | typeof NOT_CACHED {
    if (ref === '') return undefined;
    const e = this.images.get(ref);
    if (!e || e.value === undefined || this.now() - e.at > this.imageTtlMs) return NOT_CACHED;
    return e.value;
  }

  /** Image inspect by ref or id, cached; 'missing' when the engine has no such image. */
  private async imageInspect(ref: string): Promise<ImageResult | undefined> {
    if (ref === '') return undefined;
    const now = this.now();
    let e = this.images.get(ref);
    if (!e || now - e.at > this.imageTtlMs) {
      const entry: ImageEntry = {
        at: now,
        p: withTimeout(this.o.docker.getImage(ref).inspect(), this.inspectTimeoutMs, `inspect of image ${ref}`).then(
          (img): ImageResult => {
            entry.value = img;
            return img;
          },
          (err: unknown): ImageResult => {
            if (this.images.get(ref) === entry) this.images.delete(ref);
            if (statusCode(err) === 404) return 'missing';
            throw err;
          },
        ),
      };
      e = entry;
      this.images.set(ref, e);
      while (this.images.size > IMAGE_CACHE_MAX) this.images.delete(this.images.keys().next().value as string);
    }
    return e.p;
  }
}

const NOT_CACHED = Symbol('not cached');
const NO_FINDINGS: readonly Finding[] = [];

interface PolicyParts {
  /** The policy's enforce-mode rules as a policy of their own (compiled once, like any policy object); undefined when none. */
  enforce: Policy | undefined;
  monitor: Policy | undefined;
  /** Rule id → position, to report findings in policy order. */
  order: Map<string, number>;
}

const partsCache = new WeakMap<Policy, PolicyParts>();

function partsOf(policy: Policy): PolicyParts {
  let p = partsCache.get(policy);
  if (!p) {
    const sub = (mode: 'enforce' | 'monitor'): Policy | undefined => {
      const rules = policy.spec.rules.filter((r) => r.mode === mode);
      if (rules.length === 0) return undefined;
      return rules.length === policy.spec.rules.length ? policy : { ...policy, spec: { ...policy.spec, rules } };
    };
    p = { enforce: sub('enforce'), monitor: sub('monitor'), order: new Map(policy.spec.rules.map((r, i) => [r.id, i])) };
    partsCache.set(policy, p);
  }
  return p;
}

function inPolicyOrder(policy: Policy, a: readonly Finding[], b: readonly Finding[]): Finding[] {
  if (b.length === 0) return [...a];
  const order = partsOf(policy).order;
  return [...a, ...b].sort((x, y) => (order.get(x.ruleId) ?? 0) - (order.get(y.ruleId) ?? 0));
}
const NO_FAILURES: readonly ResolutionFailure[] = [];
const NETWORKS_ONLY: ReadonlySet<ResolutionKind> = new Set(['networks']);
const MOUNTS_ONLY: ReadonlySet<ResolutionKind> = new Set(['mounts']);
const NAMESPACES_ONLY: ReadonlySet<ResolutionKind> = new Set(['namespaces']);

const ruleTypesCache = new WeakMap<Policy, Map<string, string>>();

/** Rule id → check type, per policy object. */
function ruleTypes(policy: Policy): Map<string, string> {
  let m = ruleTypesCache.get(policy);
  if (!m) {
    m = new Map(policy.spec.rules.map((r) => [r.id, r.check.type]));
    ruleTypesCache.set(policy, m);
  }
  return m;
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

/** A finding of an enforce rule refusing what Bulkhead could not check (`reason` follows "<rule id>: "). */
function failClosedFinding(r: Rule, evidence: Finding['evidence'], reason: string): Finding {
  return { ruleId: r.id, severity: r.severity, mode: r.mode, action: r.action, evidence, message: `${r.id}: ${reason}` };
}

/** Why a judged request reached the plugin without a body. */
function missingBodyReason(req: AuthzRequest): string {
  if (/\/auth(?:$|[?#])/.test(req.uri)) return 'dockerd passes no body to plugins for a request target ending in "/auth"';
  const length = req.header('Content-Length');
  if (length !== undefined && /^\d+$/.test(length) && Number(length) >= 1024 * 1024) return `dockerd passes no body of ${length} bytes (1 MiB or more) to plugins`;
  return 'dockerd passed no body to the plugin (over 1 MiB, not sent as application/json, or ending in "/auth")';
}

/**
 * Whether dockerd's swarm listener for `ListenAddr` (swarm.InitRequest) is
 * reachable only from this host's network namespace: an IPv4 loopback
 * (127/8) or [::1] literal, with an optional port and the `tcp://` prefix
 * dockerd's opts.ParseTCPAddr accepts. An empty host (":2377", dockerd's
 * default 0.0.0.0), an interface name (dockerd resolves it, `lo` included)
 * or anything else is not loopback here: conservative, the opt-out is an
 * exemption or a literal 127.0.0.1.
 */
export function isLoopbackListenAddr(addr: string): boolean {
  const m = /^(?:tcp:\/\/)?(?:(127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3})|\[::1\]|::1)(?::\d{1,5})?$/.exec(addr);
  return m !== null;
}

/** The facts a refusal without a readable container is reported under: the requested name, nothing else. */
function requestSubject(req: AuthzRequest): Facts {
  return { ...emptyFacts(), name: queryAsDockerd(req, 'name', 'form').value ?? '' };
}

/** Requests that can undo a hold (HoldKind by op: connect → quarantine, update → limit, the rest → pause). */
type HoldOp = 'unpause' | 'kill' | 'stop' | 'start' | 'restart' | 'update' | 'connect' | 'archive' | 'rename';

/** Why the request itself undoes a pause (appended to the hold's denial). */
const HOLD_OP_NOTE: Partial<Record<HoldOp, string>> = {
  kill: ' (a signal other than SIGKILL resumes a paused container: dockerd unpauses it after signalling; docker kill without -s, or docker rm -f, ends it)',
  stop: ' (docker stop resumes a paused container for its stop timeout; docker kill or docker rm -f ends it)',
  rename: ' (its name stays while it is held, so that a request naming it reaches it and no other container; rename it after the release)',
  archive: ' (docker cp INTO a held container changes the files Bulkhead holds for investigation, as root whatever the exec rules allow; docker cp out of it is allowed)',
};

/**
 * The memory+swap an update asks for (dockerd's MemorySwap: 0 keeps the current one, -1 is unlimited
 * swap, else memory plus swap in bytes); undefined when it keeps the current one.
 */
export function updateMemorySwap(body: ContainerUpdateBody): number | undefined {
  const v = body.MemorySwap;
  return typeof v === 'number' && Number.isFinite(v) && v !== 0 ? Math.trunc(v) : undefined;
}

/** Whether a memory+swap (updateMemorySwap) lets a container past `limitBytes` of memory: unlimited (-1) or more. */
export function swapLoosens(memorySwap: number | undefined, limitBytes: number | undefined): boolean {
  if (memorySwap === undefined || limitBytes === undefined || !(limitBytes > 0)) return false;
  return memorySwap < 0 || memorySwap > limitBytes;
}

/**
 * Whether a `kill` query's signal is SIGKILL as dockerd parses it
 * (moby's signal.ParseSignal: Go's strconv.Atoi, else the name upper-cased
 * without "SIG"); an empty one is dockerd's default, SIGKILL.
 */
export function isSigkill(raw: string): boolean {
  if (raw === '') return true;
  if (/^[+-]?\d+$/.test(raw)) return Number(raw) === 9;
  return raw.toUpperCase().replace(/^SIG/, '') === 'KILL';
}

/** A network mode naming a user-defined network (not none, host, bridge, default or container:…). */
function isUserDefinedNetwork(mode: string): boolean {
  return mode !== '' && !['none', 'host', 'bridge', 'default'].includes(mode) && !mode.startsWith('container:');
}

/**
 * How dockerd's handler reads a query value a decision depends on:
 * - `form`: r.Form / r.FormValue after Go's Request.ParseForm, which — for a POST, PUT or PATCH whose
 *   (first) Content-Type is application/x-www-form-urlencoded — reads the BODY and puts its values
 *   before the query's (measured: `kill?signal=KILL` with the body `signal=WINCH` sends SIGWINCH on
 *   20.10 and 26.1);
 * - `url`: r.URL.Query(), the request target alone.
 * Every query value the decider judges is read through here, naming how dockerd reads it.
 */
export type DockerdQueryReader = 'form' | 'url';

export interface DockerdQueryValue {
  /** The value in the request target (Go's url.ParseQuery reading, first value wins). */
  value: string | undefined;
  /** Set when dockerd may take another value from a body this plugin was not given: why. */
  unseen?: string;
}

export function queryAsDockerd(req: AuthzRequest, key: string, via: DockerdQueryReader): DockerdQueryValue {
  const value = queryParam(req.uri, key);
  const unseen = via === 'form' ? unseenFormBody(req) : undefined;
  return unseen === undefined ? { value } : { value, unseen };
}

/**
 * Why the request may carry a form-encoded body that dockerd reads and this plugin was not given;
 * undefined when it cannot. The Content-Type the plugin sees does not tell: dockerd passes plugins the
 * LAST value of each header (pkg/authorization flattens http.Header) while Go's ParseForm reads the
 * FIRST (`Content-Type: application/x-www-form-urlencoded` then `Content-Type: application/json`
 * looks like JSON here), and Go lower-cases the media type with Unicode simple folding
 * (`applİcation/…`, U+0130, is the form type to Go, not to JavaScript). What does tell:
 * - a body was passed on: dockerd passes one only when its first Content-Type is JSON — no form;
 * - no Content-Type at all: Go reads the body as application/octet-stream — no form;
 * - `Content-Length: 0`: an empty body (Go's server drops the Content-Length of a chunked body, so a
 *   chunked one never shows 0 here). The docker CLI and SDKs send bodiless POSTs this way.
 */
export function unseenFormBody(req: AuthzRequest): string | undefined {
  if (req.hasBody) return undefined;
  if (req.header('Content-Type') === undefined) return undefined;
  const length = req.header('Content-Length')?.trim();
  if (length !== undefined && /^\d+$/.test(length) && Number(length) === 0) return undefined;
  return 'dockerd reads it from a form-encoded body first, which plugins are not given; send it with no body (Content-Length: 0), as docker does';
}

function limitText(l: LimitSpec | undefined): string {
  if (!l) return 'none';
  return [l.memory !== undefined ? `memory ${l.memory}` : '', l.cpus !== undefined ? `cpus ${l.cpus}` : '', l.pids !== undefined ? `pids ${l.pids}` : ''].filter(Boolean).join(', ');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function statusCode(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

