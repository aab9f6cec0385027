// Owns the `cert_expiring` alert: a periodic look at every enrolled agent's
// client certificate; one within the warning window (default 14 days), or
// already expired, raises an alert — at most once a day per certificate, so
// the reminder repeats without flooding.
import type { Logger } from '@bulkhead/shared';
import type { AgentRecord } from '../store/store';
import type { AlertStore } from './alert-store';
import type { AlertSink } from './alert-service';
import { gatedTick, type JobGate } from '../replicas/fleet-jobs';

export interface CertExpiryWatchOptions {
  agents: { listAgents(): Promise<AgentRecord[]> };
  store: Pick<AlertStore, 'listAlerts'>;
  alerts: AlertSink;
  logger: Logger;
  /** Warn this long before expiry. Default 14 days. */
  warnBeforeMs?: number;
  /** How often to look. Default 6 h (and once at start). */
  everyMs?: number;
  now?: () => Date;
  /** Controller replicas: whether this replica runs the check now (replicas/fleet-jobs.ts); default always. */
  jobGate?: JobGate;
}

const DAY = 86_400_000;

export class CertExpiryWatch {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly o: CertExpiryWatchOptions) {}

  start(): void {
    const every = this.o.everyMs ?? 6 * 3_600_000;
    this.running = this.checkOncePerFleet(every);
    // Gated (several replicas): the timer fires a few times per period and the gate lets one replica run per period.
    this.timer = setInterval(() => {
      this.running = this.checkOncePerFleet(every);
    }, this.o.jobGate ? gatedTick(every) : every);
    this.timer.unref();
  }

  /** One pass if this replica's turn (always without a gate); undefined when another replica ran it this period. */
  async checkOncePerFleet(everyMs: number): Promise<string[] | undefined> {
    try {
      if (this.o.jobGate && !(await this.o.jobGate('cert-expiry-watch', everyMs))) return undefined;
    } catch (err) {
      this.o.logger.error({ err }, 'claiming the certificate expiry check failed; it is tried again at the next tick');
      return undefined;
    }
    const raised = await this.check();
    this.o.logger.debug({ raised: raised.length }, 'certificate expiry check ran');
    return raised;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One pass; returns the agents alerted about. */
  async check(): Promise<string[]> {
    const now = (this.o.now ?? (() => new Date()))();
    const warn = this.o.warnBeforeMs ?? 14 * DAY;
    const raised: string[] = [];
    try {
      for (const a of await this.o.agents.listAgents()) {
        if (a.status === 'revoked') continue;
        const left = a.certNotAfter.getTime() - now.getTime();
        if (left > warn) continue;
        const ruleId = `cert:${a.certSerial}`;
        const recent = await this.o.store.listAlerts({ types: ['cert_expiring'], agentId: a.id, since: new Date(now.getTime() - DAY) });
        if (recent.some((r) => r.ruleId === ruleId)) continue;
        const days = Math.floor(left / DAY);
        const message =
          left <= 0
            ? `the client certificate of agent ${a.hostname} (${a.id}) expired at ${a.certNotAfter.toISOString()}; re-enroll it`
            : `the client certificate of agent ${a.hostname} (${a.id}) expires ${days < 1 ? 'within a day' : `in ${days} days`} (${a.certNotAfter.toISOString()})`;
        await this.o.alerts.raise({ type: 'cert_expiring', severity: left <= 3 * DAY ? 'high' : 'medium', agentId: a.id, host: a.hostname, ruleId, message, time: now });
        raised.push(a.id);
      }
    } catch (err) {
      this.o.logger.error({ err }, 'certificate expiry check failed');
    }
    return raised;
  }
}
