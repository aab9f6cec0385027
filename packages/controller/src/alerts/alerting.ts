// Owns wiring alerting together for the controller: one WorkSignal shared by
// the raise path (AlertService), endpoint management (WebhookService) and
// the delivery workers (DeliveryDispatcher), over the store's AlertStore.
import { BulkheadError, type Logger } from '@bulkhead/shared';
import type { FleetEventSink } from '../events/fleet-events';
import type { AlertStore } from './alert-store';
import { AlertService } from './alert-service';
import { resolveAlertOptions, type AlertOptions, type AlertOptionsInput, type DeliveryOptions } from './alert-options';
import { DeliveryDispatcher, type DeliveryDispatcherOptions } from './delivery-worker';
import { WebhookService } from './webhook-service';
import type { Resolver } from './webhook-target';
import { WorkSignal } from './work-signal';
import { CertExpiryWatch } from './cert-expiry-watch';
import type { AgentRecord } from '../store/store';
import type { JobGate } from '../replicas/fleet-jobs';

export interface AlertingOptions {
  store: AlertStore;
  logger: Logger;
  options?: AlertOptionsInput;
  /** Start the delivery workers. Default true (false: raise and manage only, e.g. CLI tools). */
  deliver?: boolean;
  /** Enrolled agents: with it, certificates near expiry raise cert_expiring alerts. */
  agents?: { listAgents(): Promise<AgentRecord[]> };
  now?: () => Date;
  /** Metrics: every webhook delivery attempt's outcome and latency. */
  onDeliveryAttempt?: DeliveryDispatcherOptions['onAttempt'];
  /** The fleet event stream: every committed alert becomes an event (src/events). */
  events?: FleetEventSink;
  /** Controller replicas: periodic jobs (purge, certificate-expiry watch) run on one replica per period. Default: always. */
  jobGate?: JobGate;
  /** Test seams. */
  sender?: DeliveryDispatcherOptions['sender'];
  resolve?: Resolver;
  random?: () => number;
}

export class Alerting {
  private constructor(
    readonly store: AlertStore,
    readonly alerts: AlertService,
    readonly webhooks: WebhookService,
    readonly signal: WorkSignal,
    readonly options: AlertOptions & DeliveryOptions,
    readonly dispatcher: DeliveryDispatcher | undefined,
    private readonly certWatch: CertExpiryWatch | undefined,
  ) {}

  static start(opts: AlertingOptions): Alerting {
    const options = resolveAlertOptions(opts.options);
    const signal = new WorkSignal();
    const logger = opts.logger;
    const now = opts.now ?? (() => new Date());
    const alerts = new AlertService({ store: opts.store, logger, signal, groupWindowMs: options.groupWindowMs, now, ...(opts.events ? { events: opts.events } : {}) });
    const webhooks = new WebhookService({ store: opts.store, logger, signal, now, ...(opts.resolve ? { resolve: opts.resolve } : {}) });
    const dispatcher =
      opts.deliver === false
        ? undefined
        : DeliveryDispatcher.start({
            ...options,
            store: opts.store,
            logger,
            signal,
            now,
            ...(opts.sender ? { sender: opts.sender } : {}),
            ...(opts.random ? { random: opts.random } : {}),
            ...(opts.onDeliveryAttempt ? { onAttempt: opts.onDeliveryAttempt } : {}),
            ...(opts.jobGate ? { jobGate: opts.jobGate } : {}),
          });
    const certWatch = opts.agents ? new CertExpiryWatch({ agents: opts.agents, store: opts.store, alerts, logger, now, ...(opts.jobGate ? { jobGate: opts.jobGate } : {}) }) : undefined;
    certWatch?.start();
    return new Alerting(opts.store, alerts, webhooks, signal, options, dispatcher, certWatch);
  }

  /** Commits alerts still being raised, then stops the workers (in-flight attempts finish and are recorded). */
  async stop(): Promise<void> {
    await this.certWatch?.stop();
    await this.alerts.stop();
    await this.dispatcher?.stop();
  }
}

/** Alerting needs the SQL store's alert tables; a Store without them cannot alert. */
export function requireAlertStore(store: { alerts?: AlertStore }): AlertStore {
  if (!store.alerts) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'this store does not support alerts');
  return store.alerts;
}
