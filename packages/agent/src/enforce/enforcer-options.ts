// Options of the Enforcer (enforcer.ts), their defaults, and the one
// function that fills them in and rejects bad values at start-up.
import type Dockerode from 'dockerode';
import { BulkheadError } from '@bulkhead/shared';
import type { ContainerFacts__Output, HostFacts__Output, Logger, ViolationReport } from '@bulkhead/shared';
import type { Facts } from '../docker/container-facts';
import type { PolicyState } from '../policy/policy-holder';
import type { SecretHit } from '../secrets/secret-scan';
import type { SignatureGate } from '../signatures/signature-gate';
import type { QuarantineMemory } from '../commands/quarantine-memory';
import type { EnforcementHolds } from './holds';

/** What the enforcer needs of dockerode (a Dockerode instance satisfies it). */
export interface EnforcerDocker {
  getContainer(id: string): {
    kill(opts?: object): Promise<unknown>;
    stop(opts?: object): Promise<unknown>;
    pause(opts?: object): Promise<unknown>;
    update(opts: object): Promise<unknown>;
    inspect(): Promise<Dockerode.ContainerInspectInfo>;
  };
  getNetwork(id: string): { disconnect(opts: object): Promise<unknown> };
  /** `GET /exec/{id}/json`: who an exec runs as, and whether privileged. */
  getExec(id: string): { inspect(): Promise<Dockerode.ExecInspectInfo> };
}

/** The inventory the enforcer sweeps (ContainerWatcher satisfies it). */
export interface EnforcerContainers {
  inventory(): Facts[];
  get(id: string): Facts | undefined;
}

/** The agent's secret scanner, as the enforcer uses it (SecretScanner satisfies it). */
export interface EnforcerSecrets {
  /** Facts with hits, redacted command and project, from cache or from the facts alone; no I/O. */
  enrichNow(facts: ContainerFacts__Output, projectLabel: string): { facts: ContainerFacts__Output; complete: boolean };
  /** The full scan (one inspect + image history), cached. */
  scan(facts: ContainerFacts__Output): Promise<SecretHit[]>;
}

/** How long each part of a reaction took. */
export interface ActionTiming {
  /**
   * Violation became actionable → action completed (wall clock; the figure in
   * ActionResult.duration_ms). "Actionable" is the later of dockerd's time for
   * the event that led here and the container's StartedAt: a container is
   * often first seen through an event dockerd emits before the process
   * starts (network connect), and a violation that is only acted on after a
   * later event (update) started with that event.
   */
  sinceEventMs: number;
  /** dockerd's time of the event that led to the action → action completed. */
  sinceTriggerEventMs: number;
  /** The enforcer received the facts → action completed. */
  sinceReceiptMs: number;
  /** Received → the Docker API call was issued (the enforcer's own overhead). */
  startDelayMs: number;
}

export interface EnforcerOptions {
  docker: EnforcerDocker;
  /** The policy in force, read on every evaluation (PolicyHolder: `() => holder.state`). */
  policy: () => PolicyState;
  containers: EnforcerContainers;
  logger: Logger;
  /** Every finding with what was done (or not) about it; `timing` when an engine action ran. */
  onViolation: (report: ViolationReport, timing?: ActionTiming) => void;
  hostFacts?: () => HostFacts__Output | undefined;
  /** Without it, only label and command secrets are seen (env values need an inspect). */
  secrets?: EnforcerSecrets;
  /** Image signature verdicts for `image-signature` rules (without it they decide only on facts). */
  signatures?: SignatureGate;
  /** Engine actions per container within `actionWindowMs` before escalating to pause. Default 3. */
  maxActions?: number;
  /** Default 10 min. */
  actionWindowMs?: number;
  /** Engine actions in flight at once across all containers. Default 32. */
  actionConcurrency?: number;
  /** Wall clock (ms). Default Date.now. */
  now?: () => number;
  /** Called after every evaluation of a running container, with the number of findings (metrics). */
  onEvaluation?: (findings: number) => void;
  /** Where pauses, quarantines and limits are remembered, so the authorization plugin can refuse undoing them. */
  holds?: EnforcementHolds;
  /** What a policy quarantine disconnects, so `bulkhead action … release` can reconnect it. */
  quarantineMemory?: Pick<QuarantineMemory, 'remember'>;
}

export interface ResolvedEnforcerOptions extends Required<Omit<EnforcerOptions, 'hostFacts' | 'secrets' | 'onEvaluation' | 'signatures' | 'holds' | 'quarantineMemory'>> {
  holds: EnforcementHolds | undefined;
  quarantineMemory: Pick<QuarantineMemory, 'remember'> | undefined;
  hostFacts: (() => HostFacts__Output | undefined) | undefined;
  secrets: EnforcerSecrets | undefined;
  signatures: SignatureGate | undefined;
  onEvaluation: ((findings: number) => void) | undefined;
}

export const ENFORCER_DEFAULTS = {
  maxActions: 3,
  actionWindowMs: 10 * 60_000,
  actionConcurrency: 32,
} as const;

export function resolveEnforcerOptions(o: EnforcerOptions): ResolvedEnforcerOptions {
  const r: ResolvedEnforcerOptions = {
    docker: o.docker,
    policy: o.policy,
    containers: o.containers,
    logger: o.logger,
    onViolation: o.onViolation,
    hostFacts: o.hostFacts,
    secrets: o.secrets,
    signatures: o.signatures,
    maxActions: o.maxActions ?? ENFORCER_DEFAULTS.maxActions,
    actionWindowMs: o.actionWindowMs ?? ENFORCER_DEFAULTS.actionWindowMs,
    actionConcurrency: o.actionConcurrency ?? ENFORCER_DEFAULTS.actionConcurrency,
    now: o.now ?? Date.now,
    onEvaluation: o.onEvaluation,
    holds: o.holds,
    quarantineMemory: o.quarantineMemory,
  };
  if (!Number.isInteger(r.maxActions) || r.maxActions < 1) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `maxActions: ${r.maxActions} is not a positive integer`);
  }
  if (!(r.actionWindowMs > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `actionWindowMs: ${r.actionWindowMs} must be positive`);
  if (!Number.isInteger(r.actionConcurrency) || r.actionConcurrency < 1) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `actionConcurrency: ${r.actionConcurrency} is not a positive integer`);
  }
  return r;
}
