// Owns manual container actions on the controller side: an operator's
// pause / unpause / kill / stop / quarantine / release becomes a Command on
// the agent's live stream; the agent's CommandResult comes back as the API
// answer, or as a problem whose code says what went wrong (agent offline,
// action failed, no answer in time). Every action is logged, counted and
// raised as an `action` / `action_failed` alert, so it reaches the same
// webhooks as the actions policy takes. (Who called the API is recorded by
// the audit log; this module records what happened to the container.)
import { randomBytes } from 'node:crypto';
import {
  BulkheadError, isBulkheadError, parseErrorString, type Command, type CommandResult__Output, type ErrorCode, type Logger,
} from '@bulkhead/shared';
import type { AlertSink } from '../alerts/alert-service';
import type { ManualActionMetrics } from '../metrics/controller-metrics';
import type { ContainerRecord } from '../store/store';

// The vocabulary and the stop-timeout bound are defined once in @bulkhead/client (the CLI and the console offer them).
export { MANUAL_ACTIONS, MAX_STOP_TIMEOUT_SECONDS, type ManualAction } from '@bulkhead/client';
import type { ManualAction } from '@bulkhead/client';

/** docker stop's own default. */
export const DEFAULT_STOP_TIMEOUT_SECONDS = 10;
/** How long the controller waits for an agent's answer to anything but a stop. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 15_000;
/** A stop waits its timeout plus this for the engine, the agent and the wire. */
const STOP_MARGIN_MS = 5_000;

/** What this module needs of the agent link (AgentLinkService satisfies it). */
export interface CommandSender {
  sendCommand(agentId: string, cmd: Command): Promise<CommandResult__Output>;
}

export interface ManualActionsOptions {
  link: CommandSender;
  logger: Logger;
  alerts?: AlertSink | undefined;
  metrics?: ManualActionMetrics | undefined;
  /** Hostname of an agent, for alerts. */
  hostname?: (agentId: string) => Promise<string | undefined>;
  /** Default DEFAULT_COMMAND_TIMEOUT_MS. */
  commandTimeoutMs?: number;
  now?: () => Date;
}

export interface ManualActionRequest {
  container: ContainerRecord;
  action: ManualAction;
  /** Only for stop. Default DEFAULT_STOP_TIMEOUT_SECONDS. */
  stopTimeoutSeconds?: number | undefined;
  /** Who asked, for the agent's log and the alert (e.g. "ops-ci (ak_…)"). */
  requestedBy: string;
}

/** A carried-out action, as the API returns it. */
export interface ManualActionOutcome {
  id: string;
  agentId: string;
  containerId: string;
  containerName: string;
  action: ManualAction;
  ok: true;
  detail: string;
  durationMs: number;
  /** The container's state on the engine afterwards (running, paused, exited, …). */
  state: string;
  requestedBy: string;
  at: string;
}

/** Codes an agent may put in CommandResult.error, mapped to what the API answers. */
const AGENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['BK_ERR_NOT_FOUND', 'BK_ERR_CONFLICT', 'BK_ERR_BAD_REQUEST', 'BK_ERR_DOCKER_UNAVAILABLE']);

export class ManualActions {
  private readonly now: () => Date;
  private readonly timeoutMs: number;

  constructor(private readonly o: ManualActionsOptions) {
    this.now = o.now ?? (() => new Date());
    this.timeoutMs = o.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  /** Resolves with the agent's successful result; throws a BulkheadError otherwise. */
  async run(req: ManualActionRequest): Promise<ManualActionOutcome> {
    const c = req.container;
    if (c.removed) throw new BulkheadError('BK_ERR_CONFLICT', `container ${c.name || c.id} was removed from agent ${c.agentId}`);
    if (req.stopTimeoutSeconds !== undefined && req.action !== 'stop') {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', 'stopTimeoutSeconds applies only to the stop action');
    }
    const stopTimeout = req.stopTimeoutSeconds ?? DEFAULT_STOP_TIMEOUT_SECONDS;
    const waitMs = req.action === 'stop' ? Math.max(this.timeoutMs, stopTimeout * 1000 + STOP_MARGIN_MS) : this.timeoutMs;
    const started = this.now();
    const id = 'cmd_' + randomBytes(12).toString('hex');
    const cmd: Command = {
      id,
      containerId: c.id,
      action: req.action,
      stopTimeoutSeconds: req.action === 'stop' ? stopTimeout : 0,
      requestedBy: req.requestedBy,
      deadlineMs: started.getTime() + waitMs,
    };
    const log = this.o.logger.child({ commandId: id, agentId: c.agentId, containerId: c.id, action: req.action, requestedBy: req.requestedBy });
    log.info({ containerName: c.name }, 'manual action requested');

    let result: CommandResult__Output;
    try {
      result = await this.o.link.sendCommand(c.agentId, cmd);
    } catch (err) {
      const e = isBulkheadError(err) ? err : new BulkheadError('BK_ERR_INTERNAL', undefined, { cause: err });
      const outcome = e.code === 'BK_ERR_AGENT_OFFLINE' ? 'offline' : e.code === 'BK_ERR_ACTION_UNCONFIRMED' ? 'unconfirmed' : 'error';
      this.o.metrics?.manualAction(req.action, outcome, this.now().getTime() - started.getTime());
      log.warn({ code: e.code, reason: e.message }, 'manual action not confirmed');
      // Unconfirmed may still have happened on the host: worth an alert; offline certainly did not.
      if (outcome === 'unconfirmed') this.raise(req, false, `manual ${req.action} of ${label(c)} by ${req.requestedBy} was not confirmed: ${e.message}`);
      throw e;
    }

    const durationMs = Number(result.durationMs) || this.now().getTime() - started.getTime();
    if (!result.ok) {
      const parsed = parseErrorString(result.error);
      const code: ErrorCode = parsed && AGENT_CODES.has(parsed.code) ? parsed.code : 'BK_ERR_ACTION_FAILED';
      const why = parsed?.message ?? (result.error || 'the agent gave no reason');
      const refused = code !== 'BK_ERR_ACTION_FAILED';
      this.o.metrics?.manualAction(req.action, refused ? 'refused' : 'failed', durationMs);
      log.warn({ error: result.error, detail: result.detail, state: result.state, durationMs }, 'manual action failed');
      if (!refused) this.raise(req, false, `manual ${req.action} of ${label(c)} by ${req.requestedBy} failed: ${why}`);
      const state = result.state ? ` (container state: ${result.state})` : '';
      throw new BulkheadError(code, `${req.action} on agent ${c.agentId}: ${why}${state}`);
    }

    this.o.metrics?.manualAction(req.action, 'ok', durationMs);
    log.info({ detail: result.detail, state: result.state, durationMs }, 'manual action carried out');
    this.raise(req, true, `manual ${req.action} of ${label(c)} by ${req.requestedBy}${result.detail ? `: ${result.detail}` : ''}`);
    return {
      id,
      agentId: c.agentId,
      containerId: c.id,
      containerName: c.name,
      action: req.action,
      ok: true,
      detail: result.detail,
      durationMs,
      state: result.state,
      requestedBy: req.requestedBy,
      at: started.toISOString(),
    };
  }

  /** Never fails the request: a failed raise is logged. */
  private raise(req: ManualActionRequest, ok: boolean, message: string): void {
    const alerts = this.o.alerts;
    if (!alerts) return;
    const c = req.container;
    void (async () => {
      const host = await this.o.hostname?.(c.agentId).catch(() => undefined);
      await alerts.raise({
        type: ok ? 'action' : 'action_failed',
        // An operator's own action is routine; one that failed leaves the container as it was.
        severity: ok ? 'info' : 'high',
        message,
        agentId: c.agentId,
        host,
        containerId: c.id,
        containerName: c.name,
        image: c.imageRef,
        project: c.facts.project || undefined,
        // Alerts group by (type, rule, agent, container): without a rule of
        // its own, a pause and the kill after it would fold into one alert.
        ruleId: `manual.${req.action}`,
        action: req.action,
        result: ok ? 'ok' : 'failed',
      });
    })().catch((err: unknown) => this.o.logger.error({ err }, 'raising the manual action alert failed'));
  }
}

function label(c: ContainerRecord): string {
  const name = c.name.replace(/^\//, '');
  return name ? `${name} (${c.id.slice(0, 12)})` : c.id.slice(0, 12);
}
