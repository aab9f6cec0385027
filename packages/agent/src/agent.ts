// Owns the running agent: wires the Docker watcher, the policy in force, the
// secret scanner, the enforcer (reaction), the authorization plugin
// (prevention) and the controller link with its offline spool.
//
// Start order matters: the authorization plugin comes up first, before we
// talk to Docker at all — a dockerd configured with it refuses every request
// while the plugin is unreachable, including the watcher's own.
import { join } from 'node:path';
import type { ContainerDelta, ContainerFacts, HostFacts, HostFacts__Output, Logger, ViolationReport } from '@bulkhead/shared';
import { AuthzDecider } from './authz/authz-decider';
import { AuthzPlugin } from './authz/plugin-server';
import { createDockerClient, describeDockerHost } from './docker/client';
import { collectHostFacts } from './docker/host-facts';
import { ContainerWatcher } from './docker/watcher';
import { Enforcer } from './enforce/enforcer';
import { ControllerLink, type LinkInventory } from './link/controller-link';
import { ReportSpool } from './link/report-spool';
import { PolicyHolder } from './policy/policy-holder';
import { SecretScanner } from './secrets/secret-scanner';
import { loadCredentials } from './state/agent-state';
import type { AgentOptions } from './agent-options';

/** Host facts change rarely; re-read them at most this often (on reconnect). */
const HOST_FACTS_TTL_MS = 5 * 60_000;

export class Agent {
  private constructor(
    readonly watcher: ContainerWatcher,
    readonly link: ControllerLink,
    readonly policy: PolicyHolder,
    readonly enforcer: Enforcer,
    readonly authz: AuthzPlugin | undefined,
    private readonly spool: ReportSpool,
    private readonly timers: NodeJS.Timeout[],
    private readonly logger: Logger,
  ) {}

  static async start(opts: AgentOptions, logger: Logger): Promise<Agent> {
    const credentials = loadCredentials(opts.stateDir);
    const docker = createDockerClient(opts.dockerHost ? { dockerHost: opts.dockerHost } : {});
    logger.info(
      { agentId: credentials.identity.agentId, docker: describeDockerHost(opts.dockerHost), controller: opts.controller ?? credentials.identity.controller, authz: opts.authzSocket ?? 'off' },
      'agent starting',
    );
    const policy = PolicyHolder.open({ stateDir: opts.stateDir, logger: logger.child({ component: 'policy' }), localPolicyPath: opts.policyFile });
    const secrets = new SecretScanner({ docker, logger: logger.child({ component: 'secrets' }) });
    const spool = await ReportSpool.open({ path: join(opts.stateDir, 'spool', 'violations.jsonl'), logger: logger.child({ component: 'spool' }) });

    let hostNow: HostFacts__Output | undefined;
    let hostCached: { at: number; facts: HostFacts } | undefined;
    const hostFacts = async (): Promise<HostFacts> => {
      if (!hostCached || Date.now() - hostCached.at > HOST_FACTS_TTL_MS) {
        hostCached = { at: Date.now(), facts: await collectHostFacts(docker, { labels: opts.hostLabels }) };
        hostNow = hostCached.facts as HostFacts__Output;
      }
      return hostCached.facts;
    };

    // Reports go through the link (spooled first); the link exists before anything can report.
    let link: ControllerLink | undefined;
    const report = (r: ViolationReport): void => link?.report(r);

    // 1. Prevention first (see the top of this file). Until the watcher runs,
    //    the decider sees an empty inventory, which only matters for update/exec/start.
    let watcher: ContainerWatcher | undefined;
    const lookup = { get: (id: string) => watcher?.get(id), inventory: () => watcher?.inventory() ?? [] };
    let authz: AuthzPlugin | undefined;
    if (opts.authzSocket) {
      const decider = new AuthzDecider({
        policy: () => policy.state,
        containers: lookup,
        docker,
        logger: logger.child({ component: 'authz' }),
        hostFacts: () => hostNow,
        secrets,
        onDecision: (d) => d.violations.forEach(report),
      });
      authz = await AuthzPlugin.start({ socketPath: opts.authzSocket, evaluate: (req) => decider.decide(req), logger: logger.child({ component: 'authz' }) });
    }

    // 2. Docker. An engine that is down at start is waited for, not fatal:
    //    systemd may start us before docker.service is ready.
    for (let attempt = 0; !watcher; attempt++) {
      try {
        watcher = await ContainerWatcher.start({ docker, logger: logger.child({ component: 'watcher' }), reconcileIntervalMs: opts.reconcileIntervalMs });
      } catch (err) {
        const wait = Math.min(10_000, 500 * 2 ** attempt);
        logger.error({ err: (err as Error).message, retryInMs: wait }, 'Docker engine unreachable; retrying');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    const w = watcher;
    await hostFacts().catch((err: unknown) => logger.warn({ err }, 'host facts unavailable'));

    // 3. Reaction.
    const enforcer = new Enforcer({
      docker,
      policy: () => policy.state,
      containers: w,
      logger: logger.child({ component: 'enforce' }),
      onViolation: report,
      hostFacts: () => hostNow,
      secrets,
    });
    enforcer.attach(w);
    policy.on('change', (s) => {
      logger.info({ version: s.version, source: s.source }, 'policy in force changed');
      enforcer.evaluateAll();
    });
    // Exemptions expire and scans age: re-evaluate everything on the reconcile cadence.
    const sweep = setInterval(() => enforcer.evaluateAll(), opts.reconcileIntervalMs);
    sweep.unref();
    enforcer.evaluateAll();

    // 4. The controller link.
    link = new ControllerLink({
      credentials,
      inventory: reportedInventory(w, secrets, () => policy.state.projectLabel),
      hostFacts,
      logger: logger.child({ component: 'link' }),
      spool,
      onPolicy: (bundle) => {
        const r = policy.apply(bundle);
        return { version: Number(bundle.version), applied: r.applied, error: r.error ?? '' };
      },
      ...(opts.controller ? { controller: opts.controller } : {}),
    });
    link.start();
    return new Agent(w, link, policy, enforcer, authz, spool, [sweep], logger);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.link.stop();
    await this.enforcer.stop();
    await this.watcher.stop();
    await this.authz?.stop();
    await this.spool.flush();
    this.logger.info('agent stopped');
  }
}

/** The watcher's inventory as the link reports it: env values gone, secret hits in, command redacted. */
export function reportedInventory(watcher: ContainerWatcher, secrets: SecretScanner, projectLabel: () => string): LinkInventory {
  return {
    inventory: () => watcher.inventory().map((f) => secrets.enrichNow(f, projectLabel()).facts),
    subscribe(listener: (d: ContainerDelta) => void) {
      const upsert = (facts: ContainerFacts, eventAction: string, eventTimeMs: number): void =>
        listener({ kind: 'UPSERT', containerId: facts.id ?? '', container: facts, eventAction, eventTimeMs });
      const onUpsert = (facts: ContainerFacts, eventAction: string, eventTimeMs: number, changed: boolean): void => {
        // Replayed or duplicate events that changed nothing are not worth a message.
        if (!changed) return;
        const now = secrets.enrichForReport(facts as never, projectLabel, (id) => watcher.get(id), (enriched) =>
          upsert(enriched, 'secret-scan', Date.now()),
        );
        upsert(now, eventAction, eventTimeMs);
      };
      const onRemove = (id: string, eventAction: string, eventTimeMs: number): void => {
        secrets.forget(id);
        listener({ kind: 'REMOVE', containerId: id, eventAction, eventTimeMs });
      };
      watcher.on('upsert', onUpsert);
      watcher.on('remove', onRemove);
      return () => {
        watcher.off('upsert', onUpsert);
        watcher.off('remove', onRemove);
      };
    },
  };
}
