// Owns the REACTION door: evaluating running containers as the watcher
// reports them (and on every sweep of the inventory) and, for findings in
// enforce mode, carrying out the rule's action — kill, stop, pause,
// quarantine, limit or alert — with every finding and action recorded
// through onViolation.
//
// Speed: an upsert is evaluated synchronously and the Docker call is issued
// in the same tick; nothing slow (secret scan, reports) sits in between.
//
// No loops:
// - work per container is serialized; events arriving meanwhile coalesce
//   into one re-evaluation of the newest facts;
// - a run already killed/stopped/paused by us is not acted on again (its
//   lingering "running" facts are recognised by StartedAt);
// - quarantine and limit act only while there is something left to change;
// - right after an action of ours, the container is re-inspected before the
//   next decision: events our own action caused carry facts from before it;
// - after `maxActions` engine actions on a container — counted by id AND by
//   name, so a supervisor re-creating it under the same name is caught too —
//   within `actionWindowMs`, it is paused once, recorded as `escalated`, and
//   left alone from then on. (dockerd itself does not restart a container
//   killed or stopped through its API, whatever its restart policy; loops
//   come from supervisors — systemd units, scripts, compose — and from
//   dockerd restarts, which start `always` containers again.)
// - findings that lead to no engine action (monitor mode, exempted, alert,
//   nothing left to do) are reported once per container, rule and policy.
//
// Sweeps skip what cannot have changed: a container whose last evaluation
// took no engine action is not judged again by a sweep while everything that
// evaluation read is the same — its facts (the watcher's object: any
// re-inspect makes a new one), the policy state (policy, scans, pins), the
// host facts, its signature verdicts, the holds, and, only if a rule read
// them, the other containers. An evaluation that read the clock (a dated
// exemption met a finding, a scan's age), that took or attempted an engine
// action (so failures are retried and escalation is counted), that saw only
// part of the secret scan, or that judged live usage or an exec is never
// "settled": the next sweep judges it again. Events, usage breaches and execs
// are always judged. (A sweep of 200 unchanged containers otherwise made
// ~4–5 MB of findings and copies every 30 s: BENCHMARKS.md, agent-idle.)
//
// Execs: a `docker exec` can run a process as root, or privileged, in a
// container that is neither — and the authorization plugin, the door meant
// to refuse it, may not have been able to read the request. For every
// exec_start the watcher reports, the container is evaluated as that exec's
// process has it (exec-facts.ts); rules the container did not already break
// are reported (source `exec`, the exec named in message and evidence) and
// acted on like any other finding, through the same caps and escalation.
// Cost, since health checks start an exec every interval: nothing when no
// policy is in force; two evaluations (no I/O) when no exec could add a
// finding to this container; one exec inspect otherwise.
import type { Finding, HostFacts__Output, Policy, UsageFacts, ViolationReport } from '@bulkhead/shared';
import { toContainerFacts, type Facts } from '../docker/container-facts';
import { carryResolution } from '../docker/facts-resolver';
import type { ExecStartEvent } from '../docker/event-stream';
import { Semaphore } from '@bulkhead/shared';
import { evaluateFacts, isBlocking, neighboursOf, toViolationReport, type EvaluationReads, type ViolationSource } from '../policy/policy-evaluation';
import type { SignatureVerdicts } from '../signatures/signature-gate';
import type { PolicyState } from '../policy/policy-holder';
import { scanFactsSecrets, withSecretsAndProject } from '../secrets/secret-scan';
import type { HoldKind } from './holds';
import { limitPlan, performAction, quarantinePlan, type ActionOutcome, type EngineAction, type LimitUpdate } from './actions';
import { resolveEnforcerOptions, type ActionTiming, type EnforcerOptions, type ResolvedEnforcerOptions } from './enforcer-options';
import { addedByExec, asExecFinding, eventCommand, execFacts, execRecordOf, WORST_EXEC, type ExecRecord } from './exec-facts';

export type { EnforcerOptions, ActionTiming } from './enforcer-options';

interface Job {
  facts: Facts;
  /** The watcher's event action, or "sweep". */
  action: string;
  eventTimeMs: number;
  /** performance.now() at receipt. */
  receivedAt: number;
  source: ViolationSource;
  /** Live usage the usage monitor saw breach a usage rule (evaluated with it). */
  usage?: UsageFacts;
  /** The exec whose process broke the rules (reports name it; source `exec`). */
  exec?: ExecRecord;
}

interface QueuedExec extends ExecStartEvent {
  /** performance.now() at receipt. */
  receivedAt: number;
}

interface Tracked {
  busy: boolean;
  pending: Job | undefined;
  /** Execs waiting to be judged, oldest first; never coalesced (each is its own act). */
  execs: QueuedExec[];
  /** Wall times of engine actions taken (pruned to the window). */
  actions: number[];
  escalated: boolean;
  /** The run (StartedAt) we last killed/stopped/paused, and when that completed. */
  terminal: { type: 'kill' | 'stop' | 'pause'; startedAtMs: number; doneAtMs: number } | undefined;
  /** Dedupe keys of reports that are made once. */
  reported: Set<string>;
  /** `${ruleId}|${policyKey}|${type}` of non-terminal actions that succeeded. */
  done: Set<string>;
  /** performance.now() when our last engine action on it completed. */
  lastActionDone: number | undefined;
  scanRequested: boolean;
  /** Engine actions started on it (ever): an evaluation that started one is not settled. */
  runs: number;
  /** What its last evaluation without an engine action read; a sweep skips it while all of it is unchanged. */
  settled: Settled | undefined;
}

/** The inputs of a settled evaluation (compared by identity: every source replaces, never mutates, them). */
interface Settled {
  facts: Facts;
  state: PolicyState;
  host: HostFacts__Output | undefined;
  /** undefined: the policy asked for none. */
  verdicts: SignatureVerdicts | undefined;
  holdsGeneration: number;
  /** The inventory generation when the evaluation read other containers; undefined when it did not. */
  inventoryGeneration: number | undefined;
}

/** Facts received this soon after our own action are re-read from the engine first. */
const REFRESH_AFTER_ACTION_MS = 2000;

const TERMINAL = ['kill', 'stop', 'pause'] as const;
type Terminal = (typeof TERMINAL)[number];

/** The report source of findings an exec added (ViolationSource lists the doors; this is the reaction door's). */
const EXEC_SOURCE = 'exec';

/** Wall clock with sub-millisecond resolution (event times are dockerd's, in ns). */
const wallNow = (): number => performance.timeOrigin + performance.now();

export class Enforcer {
  private readonly o: ResolvedEnforcerOptions;
  private readonly tracked = new Map<string, Tracked>();
  /** Wall times of engine actions per container NAME (survives re-creation under the same name). */
  private readonly byName = new Map<string, number[]>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly slots: Semaphore;
  private stopped = false;
  /** Bumped by every changed upsert and every removal: what neighbours a rule read may have changed. */
  private inventoryGeneration = 0;
  /** Per policy: whether an image-signature rule has a dated exemption (its verdicts needed can change with the clock). */
  private readonly datedSignatureExemptions = new WeakMap<Policy, boolean>();
  /** Sweep evaluations skipped because nothing they read had changed (tests, diagnostics). */
  skippedUnchanged = 0;

  constructor(opts: EnforcerOptions) {
    this.o = resolveEnforcerOptions(opts);
    this.slots = new Semaphore(this.o.actionConcurrency);
  }

  /**
   * Subscribes to a ContainerWatcher's `upsert`, `remove` and `exec` events.
   * Returns a function that unsubscribes.
   */
  attach(watcher: {
    on(event: 'upsert', l: (facts: Facts, action: string, timeMs: number, changed: boolean) => void): unknown;
    on(event: 'remove', l: (id: string) => void): unknown;
    on(event: 'exec', l: (exec: ExecStartEvent) => void): unknown;
    off(event: 'upsert', l: (facts: Facts, action: string, timeMs: number, changed: boolean) => void): unknown;
    off(event: 'remove', l: (id: string) => void): unknown;
    off(event: 'exec', l: (exec: ExecStartEvent) => void): unknown;
  }): () => void {
    watcher.on('upsert', this.onUpsert);
    watcher.on('remove', this.onRemove);
    watcher.on('exec', this.onExec);
    return () => {
      watcher.off('upsert', this.onUpsert);
      watcher.off('remove', this.onRemove);
      watcher.off('exec', this.onExec);
    };
  }

  /** The watcher's `upsert` listener (bound). */
  readonly onUpsert = (facts: Facts, action: string, eventTimeMs: number, changed?: boolean): void => {
    if (changed !== false) this.inventoryGeneration++;
    this.enqueue({ facts, action, eventTimeMs, receivedAt: performance.now(), source: action === 'reconcile' ? 'reconcile' : 'reaction' });
  };

  /**
   * The watcher's `exec` listener (bound): judges the exec after whatever is
   * under way for its container, on the facts the inventory holds then.
   */
  readonly onExec = (exec: ExecStartEvent): void => {
    if (this.stopped || exec.containerId === '') return;
    const t = this.track(exec.containerId);
    t.execs.push({ ...exec, receivedAt: performance.now() });
    if (!t.busy) this.start(t, undefined);
  };

  /** The watcher's `remove` listener (bound): forgets the container's history. */
  readonly onRemove = (id: string): void => {
    this.inventoryGeneration++;
    this.tracked.delete(id);
    const now = this.o.now();
    for (const [name, times] of this.byName) {
      if (times.every((at) => now - at >= this.o.actionWindowMs)) this.byName.delete(name);
    }
  };

  /**
   * A usage rule holds for a running container (the usage monitor): the
   * whole policy is evaluated with this usage, and the findings are acted on
   * and recorded like any other (source `usage`).
   */
  onUsage(facts: Facts, usage: UsageFacts): void {
    this.enqueue({ facts, action: 'usage', eventTimeMs: this.o.now(), receivedAt: performance.now(), source: 'usage', usage });
  }

  /**
   * Evaluates the whole inventory: call after every policy change and on
   * every reconcile (exemptions expire, rules switch to enforce).
   */
  evaluateAll(): void {
    const now = this.o.now();
    const st = this.o.policy();
    const host = this.o.hostFacts?.();
    for (const facts of this.o.containers.inventory()) {
      // Unchanged since an evaluation that settled (see the header): not even queued.
      const t = this.tracked.get(facts.id);
      if (t !== undefined && !t.busy && t.settled !== undefined && this.sameInputs(t.settled, facts, st, host) && this.verdictsStable(t.settled, st)) {
        this.skippedUnchanged++;
        continue;
      }
      this.enqueue({ facts, action: 'sweep', eventTimeMs: now, receivedAt: performance.now(), source: 'reconcile' });
    }
  }

  /** Resolves when no evaluation or action is in flight (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Stops taking new work and waits (at most `waitMs`) for actions in flight. */
  async stop(waitMs = 2000): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /** What the enforcer remembers of a container (tests, diagnostics). */
  history(id: string): { actions: number; escalated: boolean } | undefined {
    const t = this.tracked.get(id);
    return t ? { actions: t.actions.length, escalated: t.escalated } : undefined;
  }

  // ---- per-container serialization ------------------------------------------

  private track(id: string): Tracked {
    let t = this.tracked.get(id);
    if (!t) {
      t = {
        busy: false, pending: undefined, execs: [], actions: [], escalated: false, terminal: undefined, reported: new Set(), done: new Set(),
        lastActionDone: undefined, scanRequested: false, runs: 0, settled: undefined,
      };
      this.tracked.set(id, t);
    }
    return t;
  }

  private enqueue(job: Job): void {
    if (this.stopped || job.facts.id === '') return;
    const t = this.track(job.facts.id);
    if (t.busy) {
      // Newest facts win; a sweep never hides an event's action and timing.
      const p = t.pending;
      const next = p && job.action === 'sweep' && p.action !== 'sweep' ? { ...p, facts: job.facts } : job;
      // Nor does a later event hide a usage breach waiting to be judged.
      t.pending = next.usage === undefined && p?.usage !== undefined ? { ...next, usage: p.usage } : next;
      return;
    }
    this.start(t, job);
  }

  private start(t: Tracked, first: Job | undefined): void {
    t.busy = true;
    const run = this.drain(t, first);
    this.inflight.add(run);
    void run.finally(() => this.inflight.delete(run));
  }

  private async drain(t: Tracked, first: Job | undefined): Promise<void> {
    let job = first;
    try {
      while (!this.stopped) {
        if (job) {
          const j = job;
          job = undefined;
          await this.guarded(j.facts.id, () => this.process(t, j));
          continue;
        }
        // Execs before newer facts: each exec is judged once, and on the
        // facts the inventory holds when its turn comes.
        const x = t.execs.shift();
        if (x) {
          await this.guarded(x.containerId, () => this.processExec(t, x));
          continue;
        }
        job = t.pending;
        t.pending = undefined;
        if (!job) break;
      }
    } finally {
      t.busy = false;
    }
  }

  private async guarded(containerId: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.o.logger.error({ err, containerId }, 'enforcer: evaluation failed');
    }
  }

  // ---- evaluation --------------------------------------------------------------

  private async process(t: Tracked, job: Job): Promise<void> {
    const st = this.o.policy();
    if (!st.policy) return;
    if (job.facts.state !== 'running') return;
    let facts = job.facts;
    if (t.lastActionDone !== undefined && job.receivedAt < t.lastActionDone + REFRESH_AFTER_ACTION_MS) {
      const fresh = await this.refresh(facts);
      if (!fresh) return;
      facts = fresh;
    }
    // Paused, exited, restarting… containers are not acted on; a restart is a new `start`.
    if (facts.state !== 'running') return;
    if (t.terminal && facts.startedAtMs === t.terminal.startedAtMs) {
      // The run we already killed/stopped (dockerd may report it running a
      // moment longer), or paused — unless it was unpaused since.
      if (t.terminal.type !== 'pause') return;
      if (job.action !== 'unpause' && job.eventTimeMs <= t.terminal.doneAtMs) return;
    }
    const host = this.o.hostFacts?.();
    // A sweep (no usage, no exec) of a container whose last evaluation settled on the same inputs: nothing to do.
    const sweep = job.action === 'sweep' && job.usage === undefined && job.exec === undefined;
    const prev = t.settled;
    const same = sweep && prev !== undefined && this.sameInputs(prev, facts, st, host);
    if (same && this.verdictsStable(prev!, st)) {
      this.skippedUnchanged++;
      return;
    }
    t.settled = undefined;
    const { facts: enriched, complete } = this.enrich(t, facts, st);
    // Signature verdicts: cached after the create was judged; verified here for containers created before the rule.
    const gate = this.o.signatures;
    const signatures = gate?.relevant(st.policy) ? await gate.resolve(st.policy, enriched, host, new Date(this.o.now()), undefined, 'reaction') : undefined;
    if (same && complete && sameVerdicts(prev!.verdicts, signatures)) {
      t.settled = prev;
      this.skippedUnchanged++;
      return;
    }
    const reads: EvaluationReads = { now: false, neighbours: false };
    const runs = t.runs;
    const holdsGeneration = this.o.holds?.generation ?? 0;
    const inventoryGeneration = this.inventoryGeneration;
    // Neighbours only when a rule reads them: built eagerly, a sweep of N containers made N² of them.
    const findings = evaluateFacts(st, enriched, host, () => neighboursOf(this.o.containers.inventory(), st.projectLabel, facts.id), new Date(this.o.now()), job.usage, signatures, reads);
    this.o.onEvaluation?.(findings.length);
    if (findings.length > 0) await this.act(t, job, enriched, findings, st);
    // Settled: nothing done or attempted, nothing read that changes by itself (see the header).
    if (job.usage === undefined && job.exec === undefined && complete && !reads.now && t.runs === runs && this.tracked.get(facts.id) === t) {
      t.settled = { facts, state: st, host, verdicts: signatures, holdsGeneration, inventoryGeneration: reads.neighbours ? inventoryGeneration : undefined };
    }
  }

  /** Whether a settled evaluation read the same facts, policy state, host facts, holds and (if it read them) neighbours. */
  private sameInputs(s: Settled, facts: Facts, st: PolicyState, host: HostFacts__Output | undefined): boolean {
    return s.facts === facts && s.state === st && s.host === host && s.holdsGeneration === (this.o.holds?.generation ?? 0)
      && (s.inventoryGeneration === undefined || s.inventoryGeneration === this.inventoryGeneration);
  }

  /**
   * Whether the settled evaluation's signature verdicts are known to be
   * current without asking the gate: none were asked for, or none were
   * needed and no dated exemption can make one needed. Verdicts themselves
   * expire (the verifier's cache): those go through the gate again.
   */
  private verdictsStable(s: Settled, st: PolicyState): boolean {
    if (s.verdicts === undefined) return !(st.policy !== undefined && this.o.signatures?.relevant(st.policy));
    if (s.verdicts.size > 0 || st.policy === undefined) return false;
    let dated = this.datedSignatureExemptions.get(st.policy);
    if (dated === undefined) {
      dated = st.policy.spec.rules.some((r) => r.check.type === 'image-signature' && (r.exemptions ?? []).some((e) => e.until !== undefined));
      this.datedSignatureExemptions.set(st.policy, dated);
    }
    return !dated;
  }

  /** Reports what no engine action follows, and carries out the rest. */
  private async act(t: Tracked, job: Job, facts: Facts, findings: readonly Finding[], st: PolicyState): Promise<void> {
    const policyKey = `${st.version}:${st.sha256}`;
    for (const f of findings) {
      if (isBlocking(f)) continue;
      this.reportOnce(t, `${f.ruleId}|${policyKey}|info`, job, facts, st, f, {
        type: 'none', result: 'skipped', detail: f.exemptedBy ? `exempted by ${f.exemptedBy.who}` : `monitor mode (in enforce mode: ${f.action.type})`,
      });
    }
    const blocking = findings.filter(isBlocking);
    if (blocking.length > 0) await this.enforce(t, job, facts, blocking, st, policyKey);
  }

  /**
   * One exec: the container evaluated as the exec's process has it; rules
   * it breaks that the container does not are reported and acted on. The
   * exec is inspected only when some exec could add a finding here (the
   * worst one, privileged and root, is evaluated first: no I/O).
   */
  private async processExec(t: Tracked, x: QueuedExec): Promise<void> {
    const st = this.o.policy();
    if (!st.policy) return;
    let facts = this.o.containers.get(x.containerId);
    if (!facts) {
      this.o.logger.warn({ containerId: x.containerId, execId: x.execId, command: eventCommand(x) }, 'enforcer: exec in a container not in the inventory; it could not be judged');
      return;
    }
    // The run we already killed or stopped: an exec racing our action changes nothing.
    if (t.terminal && t.terminal.type !== 'pause' && facts.startedAtMs === t.terminal.startedAtMs) return;
    if (t.lastActionDone !== undefined && x.receivedAt < t.lastActionDone + REFRESH_AFTER_ACTION_MS) {
      facts = await this.refresh(facts);
      if (!facts) return;
    }
    const enriched = this.enrich(t, facts, st).facts;
    const host = this.o.hostFacts?.();
    const now = new Date(this.o.now());
    const id = facts.id;
    const neighbours = (): ReturnType<typeof neighboursOf> => neighboursOf(this.o.containers.inventory(), st.projectLabel, id);
    const own = evaluateFacts(st, enriched, host, neighbours, now);
    if (addedByExec(own, evaluateFacts(st, execFacts(enriched, WORST_EXEC), host, neighbours, now)).length === 0) return;

    const exec = await this.inspectExec(x, facts);
    if (!exec) return;
    const seen = execFacts(enriched, exec);
    const added = addedByExec(own, evaluateFacts(st, seen, host, neighbours, now));
    if (added.length === 0) return;
    this.o.logger.warn(
      { containerId: id, name: facts.name, execId: exec.id, user: exec.user, privileged: exec.privileged, command: exec.command.join(' '), rules: added.map((f) => f.ruleId) },
      'enforcer: a docker exec breaks rules its container does not',
    );
    const job: Job = { facts: seen, action: 'exec_start', eventTimeMs: x.timeMs, receivedAt: x.receivedAt, source: 'reaction', exec };
    await this.act(t, job, seen, added, st);
  }

  /** The exec as dockerd recorded it; undefined (logged) when it cannot be read. */
  private async inspectExec(x: QueuedExec, facts: Facts): Promise<ExecRecord | undefined> {
    try {
      const rec = execRecordOf(await this.o.docker.getExec(x.execId).inspect());
      return rec.id === '' ? { ...rec, id: x.execId } : rec;
    } catch (err) {
      // A short-lived exec may be gone already; the event names no user, so
      // whether it ran as root or privileged cannot be told.
      const gone = (err as { statusCode?: number } | null)?.statusCode === 404;
      const what = { containerId: x.containerId, name: facts.name, execId: x.execId, command: eventCommand(x) };
      this.o.logger.warn({ ...what, ...(gone ? {} : { err }) }, gone
        ? 'enforcer: exec gone before it could be inspected; its user and privilege are unknown, so it could not be judged'
        : 'enforcer: exec inspect failed; the exec could not be judged');
      return undefined;
    }
  }

  /**
   * The container as the engine sees it now (after our own action, the
   * events it caused were inspected before or during it). The image's user
   * and digest cannot change under a container, so they are kept.
   */
  private async refresh(facts: Facts): Promise<Facts | undefined> {
    try {
      const info = await this.o.docker.getContainer(facts.id).inspect();
      // Resolved host paths and joined namespaces cannot change either (facts-resolver.ts).
      return { ...carryResolution(toContainerFacts(info), facts), imageUser: facts.imageUser, imageDigest: facts.imageDigest };
    } catch (err) {
      if ((err as { statusCode?: number } | null)?.statusCode !== 404) this.o.logger.warn({ err, containerId: facts.id }, 'enforcer: re-inspect failed; skipping this evaluation');
      return undefined;
    }
  }

  /** Facts with secret hits and project; kicks off the full secret scan once when only a partial view is cached. */
  private enrich(t: Tracked, facts: Facts, st: PolicyState): { facts: Facts; complete: boolean } {
    const s = this.o.secrets;
    if (!s) return { facts: withSecretsAndProject(facts, scanFactsSecrets(facts), st.projectLabel), complete: true };
    const { facts: enriched, complete } = s.enrichNow(facts, st.projectLabel);
    if (!complete && !t.scanRequested) {
      t.scanRequested = true;
      s.scan(facts).then(
        () => {
          t.scanRequested = false;
          // Re-evaluate with env and history hits, if the scan produced a full result.
          const latest = this.o.containers.get(facts.id);
          if (latest && this.tracked.get(facts.id) === t && s.enrichNow(latest, st.projectLabel).complete) {
            this.enqueue({ facts: latest, action: 'secret-scan', eventTimeMs: this.o.now(), receivedAt: performance.now(), source: 'reaction' });
          }
        },
        (err: unknown) => {
          t.scanRequested = false;
          this.o.logger.warn({ err, containerId: facts.id }, 'enforcer: secret scan failed');
        },
      );
    }
    return { facts: enriched, complete };
  }

  // ---- enforcement -------------------------------------------------------------

  private async enforce(t: Tracked, job: Job, facts: Facts, blocking: Finding[], st: PolicyState, policyKey: string): Promise<void> {
    if (t.escalated) {
      for (const f of blocking) {
        this.reportOnce(t, `${f.ruleId}|${policyKey}|escalated`, job, facts, st, f, {
          type: 'none', result: 'skipped', detail: 'actions on this container were capped and escalated to pause earlier; Bulkhead no longer acts on it',
        });
      }
      return;
    }
    const now = this.o.now();
    t.actions = t.actions.filter((at) => now - at < this.o.actionWindowMs);
    const byName = facts.name ? (this.byName.get(facts.name) ?? []).filter((at) => now - at < this.o.actionWindowMs) : [];
    if (facts.name) this.byName.set(facts.name, byName);
    const taken = Math.max(t.actions.length, byName.length);
    const capped = `${taken} actions within ${Math.round(this.o.actionWindowMs / 1000)}s${byName.length > t.actions.length ? ` on containers named ${facts.name}` : ''}`;

    const terminal = strongestTerminal(blocking);
    if (terminal) {
      if (taken >= this.o.maxActions) return this.escalate(t, job, facts, blocking, st, capped);
      const rule = blocking.find((f) => f.action.type === terminal)!;
      const action: EngineAction = terminal === 'stop' ? { type: 'stop', timeoutSeconds: rule.action.stopTimeoutSeconds ?? 10 } : { type: terminal };
      const outcome = await this.run(t, job, facts, action);
      if (outcome.result === 'ok') {
        t.terminal = { type: terminal, startedAtMs: facts.startedAtMs, doneAtMs: this.o.now() };
        // A pause any API user could undo with `docker unpause`: the door refuses that while the rule is enforced.
        if (terminal === 'pause') this.hold(facts, 'pause', blocking.filter((f) => f.action.type === 'pause'), st);
      }
      this.reportAll(job, facts, st, blocking, terminal, outcome);
      return;
    }

    // Non-terminal actions: quarantine, limit (merged to the tightest), alert — together.
    const byType = (type: string): Finding[] => blocking.filter((f) => f.action.type === type);
    const work: Array<Promise<void>> = [];
    const engine: Array<{ findings: Finding[]; action: EngineAction }> = [];

    const quarantine = byType('quarantine');
    if (quarantine.length > 0) {
      const plan = quarantinePlan(facts);
      if (plan.kind === 'disconnect') {
        // Remembered before disconnecting (as a manual quarantine is), so `bulkhead action … release` can reconnect them.
        this.o.quarantineMemory?.remember({
          containerId: facts.id, containerName: facts.name, quarantinedAt: new Date(this.o.now()).toISOString(), requestedBy: `policy v${st.version} (${quarantine.map((f) => f.ruleId).join(', ')})`,
          networks: plan.networks.map((n) => ({ name: n.name, networkId: n.networkId, aliases: [], ipamConfig: null })),
        });
        engine.push({ findings: quarantine, action: { type: 'quarantine', networks: plan.networks } });
      } else if (plan.kind === 'nothing') {
        // Nothing to disconnect (already off every network): still held, so a `network connect` cannot undo it.
        this.hold(facts, 'quarantine', quarantine, st);
        for (const f of quarantine) {
          if (t.done.has(`${f.ruleId}|${policyKey}|quarantine`)) continue; // our own quarantine, already reported
          this.reportOnce(t, `${f.ruleId}|${policyKey}|quarantined`, job, facts, st, f, { type: 'quarantine', result: 'skipped', detail: 'no networks left to disconnect (already quarantined or network mode none)' });
        }
      } else {
        // Cannot be isolated: pause it instead, so it cannot talk either.
        return this.escalate(t, job, facts, blocking, st, `quarantine impossible: ${plan.why}`);
      }
    }
    const limit = byType('limit');
    if (limit.length > 0) {
      const update = mergeLimitUpdates(limit.map((f) => limitPlan(facts, f.action.limits)));
      if (update) engine.push({ findings: limit, action: { type: 'limit', update } });
      else {
        for (const f of limit) {
          if (t.done.has(`${f.ruleId}|${policyKey}|limit`)) continue;
          this.reportOnce(t, `${f.ruleId}|${policyKey}|limited`, job, facts, st, f, { type: 'limit', result: 'skipped', detail: 'limits already within the rule\'s action' });
        }
      }
    }
    for (const f of byType('alert')) {
      this.reportOnce(t, `${f.ruleId}|${policyKey}|alert`, job, facts, st, f, { type: 'alert', result: 'ok', detail: 'alert only: no engine action' });
    }
    if (engine.length === 0) return;
    if (taken >= this.o.maxActions) return this.escalate(t, job, facts, blocking, st, capped);
    for (const e of engine) {
      work.push(this.run(t, job, facts, e.action).then((outcome) => {
        if (outcome.result === 'ok') {
          for (const f of e.findings) t.done.add(`${f.ruleId}|${policyKey}|${e.action.type}`);
          if (e.action.type === 'quarantine' || e.action.type === 'limit') this.hold(facts, e.action.type, e.findings, st);
        }
        this.reportAll(job, facts, st, e.findings, e.action.type, outcome);
      }));
    }
    await Promise.all(work);
  }

  private async escalate(t: Tracked, job: Job, facts: Facts, blocking: Finding[], st: PolicyState, why: string): Promise<void> {
    const outcome = await this.run(t, job, facts, { type: 'pause' });
    const ok = outcome.result === 'ok';
    if (ok) {
      t.escalated = true;
      t.terminal = { type: 'pause', startedAtMs: facts.startedAtMs, doneAtMs: this.o.now() };
      this.hold(facts, 'pause', blocking, st, true);
    }
    this.o.logger.warn({ containerId: facts.id, name: facts.name, why, result: outcome.result, error: outcome.error }, 'enforcer: escalated to pause');
    this.reportAll(job, facts, st, blocking, 'pause', {
      result: ok ? 'escalated' as const : outcome.result,
      ...(outcome.error ? { error: outcome.error } : {}),
      detail: `${why}: escalated to pause${ok ? '; no further actions on this container' : ''}`,
    });
  }

  /** Remembers an action a plain API call could undo, for the authorization plugin to refuse that (enforce/holds.ts). */
  private hold(facts: Facts, kind: HoldKind, findings: readonly Finding[], st: PolicyState, escalated = false): void {
    if (!this.o.holds || findings.length === 0) return;
    this.o.holds.add(facts.id, facts.name, kind, {
      rules: findings.map((f) => f.ruleId), ...(escalated ? { escalated } : {}), at: new Date(this.o.now()).toISOString(), by: `policy v${st.version}`,
    });
  }

  /** One engine action, timed; counted towards the container's cap. */
  private async run(t: Tracked, job: Job, facts: Facts, action: EngineAction): Promise<ActionOutcome & { timing: ActionTiming }> {
    const at = this.o.now();
    t.runs++;
    t.settled = undefined;
    t.actions.push(at);
    if (facts.name) this.byName.set(facts.name, [...(this.byName.get(facts.name) ?? []), at]);
    const startedAt = performance.now();
    const outcome = await this.slots.run(() => performAction(this.o.docker, facts.id, action));
    const done = performance.now();
    t.lastActionDone = done;
    const wall = wallNow();
    const timing: ActionTiming = {
      sinceEventMs: Math.max(0, wall - Math.max(job.eventTimeMs, facts.startedAtMs)),
      sinceTriggerEventMs: Math.max(0, wall - job.eventTimeMs),
      sinceReceiptMs: done - job.receivedAt,
      startDelayMs: startedAt - job.receivedAt,
    };
    const log = outcome.result === 'failed' ? this.o.logger.error.bind(this.o.logger) : this.o.logger.info.bind(this.o.logger);
    log({ containerId: facts.id, name: facts.name, action: action.type, result: outcome.result, error: outcome.error, ...timing }, 'enforcer: action taken');
    return { ...outcome, timing };
  }

  private reportAll(
    job: Job, facts: Facts, st: PolicyState, findings: Finding[], type: string,
    outcome: { result: string; error?: string; detail?: string; timing?: ActionTiming },
  ): void {
    for (const f of findings) {
      const detail = [outcome.detail, f.action.type !== type ? `rule action ${f.action.type} superseded by ${type}` : undefined, timingText(outcome.timing)].filter(Boolean).join('; ');
      this.emit(job, facts, st, f, { type, result: outcome.result, error: outcome.error ?? '', durationMs: outcome.timing?.sinceEventMs ?? 0, detail }, outcome.timing);
    }
  }

  private reportOnce(t: Tracked, key: string, job: Job, facts: Facts, st: PolicyState, f: Finding, action: { type: string; result: string; detail: string }): void {
    // Each exec is an act of its own: reported once per exec, not per container.
    const k = job.exec ? `exec:${job.exec.id}|${key}` : key;
    if (t.reported.has(k)) return;
    t.reported.add(k);
    this.emit(job, facts, st, f, { ...action, error: '', durationMs: 0 });
  }

  private emit(job: Job, facts: Facts, st: PolicyState, f: Finding, action: NonNullable<ViolationReport['action']>, timing?: ActionTiming): void {
    const ctx = { source: job.source, policyVersion: st.version, atMs: this.o.now(), action };
    const report = job.exec
      ? { ...toViolationReport(asExecFinding(f, job.exec, facts), facts, ctx), source: EXEC_SOURCE }
      : toViolationReport(f, facts, ctx);
    try {
      this.o.onViolation(report, timing);
    } catch (err) {
      this.o.logger.error({ err }, 'enforcer onViolation callback threw');
    }
  }
}

/** The same verdicts (by identity: the gate hands out its cached verdict objects; a deferred or re-verified one is new). */
function sameVerdicts(a: SignatureVerdicts | undefined, b: SignatureVerdicts | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function strongestTerminal(findings: readonly Finding[]): Terminal | undefined {
  for (const type of TERMINAL) if (findings.some((f) => f.action.type === type)) return type;
  return undefined;
}

/** The tightest of several limit updates (each field's minimum). */
export function mergeLimitUpdates(updates: ReadonlyArray<LimitUpdate | undefined>): LimitUpdate | undefined {
  const out: LimitUpdate = {};
  for (const u of updates) {
    if (!u) continue;
    for (const k of Object.keys(u) as Array<keyof LimitUpdate>) {
      const v = u[k]!;
      out[k] = out[k] === undefined ? v : Math.min(out[k]!, v);
    }
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

function timingText(t: ActionTiming | undefined): string | undefined {
  if (!t) return undefined;
  return `event→done ${t.sinceEventMs.toFixed(1)} ms, receipt→done ${t.sinceReceiptMs.toFixed(1)} ms, receipt→call ${t.startDelayMs.toFixed(2)} ms`;
}
