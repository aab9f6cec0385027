// Owns the running agent: wires the Docker watcher, the policy in force, the
// secret scanner, the enforcer (reaction), the authorization plugin
// (prevention) and the controller link with its offline spool.
//
// Start order matters: the authorization plugin comes up first, before we
// talk to Docker at all — a dockerd configured with it refuses every request
// while the plugin is unreachable, including the watcher's own.
import { join } from 'node:path';
import type { ContainerDelta, ContainerFacts, HostFacts, HostFacts__Output, Logger, MetricsListener, ViolationReport } from '@bulkhead/shared';
import { startOptionalMetricsListener } from '@bulkhead/shared';
import { AuthzDecider } from './authz/authz-decider';
import { AuthzPlugin } from './authz/plugin-server';
import { createSignatureVerifier, type SignatureVerifier } from './signatures/verifier';
import { SignatureGate } from './signatures/signature-gate';
import { VerdictReporter } from './signatures/verdict-reporter';
import { createDockerClient, describeDockerHost, dockerSocketPathOf } from './docker/client';
import { collectHostFacts } from './docker/host-facts';
import { ContainerWatcher } from './docker/watcher';
import { FactsResolver } from './docker/facts-resolver';
import { Enforcer } from './enforce/enforcer';
import { ControllerLink, type LinkInventory } from './link/controller-link';
import { ReportSpool } from './link/report-spool';
import { PolicyHolder } from './policy/policy-holder';
import { SecretScanner } from './secrets/secret-scanner';
import { identityControllers, loadCredentials } from './state/agent-state';
import type { AgentOptions } from './agent-options';
// Manual commands and metrics.
import { CommandRunner } from './commands/command-runner';
import { QuarantineMemory } from './commands/quarantine-memory';
import { EnforcementHolds } from './enforce/holds';
import { AgentMetrics, timedDecision } from './metrics/agent-metrics';
import type { ActionTiming } from './enforce/enforcer-options';
// Live usage.
import { CgroupReader } from './cgroup/cgroup-reader';
import { UsageMonitor } from './cgroup/usage-monitor';
import { createResourceSources } from './resources/sources';
// Host audit.
import { AuditOutbox } from './link/audit-outbox';
import { HostAuditScheduler, agentHostAudit } from './cis/audit-scheduler';
import { ImageLastUsedStore, imageLastUsedPath } from './hygiene/image-last-used';
import { HeapTrimmer } from './memory/heap-trim';
import { DiskUsageHistory } from './resources/data-root-usage';
import { DataRootWatch, recordingDiskSource, withDataRootFindings } from './resources/data-root-watch';

/** A create waits at most this long for a signature verification (the plugin answers within 2 s). */
const AUTHZ_SIGNATURE_BUDGET_MAX_MS = 1700;

/** Host facts change rarely; re-read them at most this often (on reconnect). */
const HOST_FACTS_TTL_MS = 5 * 60_000;

export class Agent {
  /** Live usage: cgroup sampling, usage rules and reports; undefined with --usage-interval 0 or without cgroups. */
  usage: UsageMonitor | undefined;
  /** Image hygiene: when each image was last used, remembered across container removals and restarts. */
  imageUse: ImageLastUsedStore | undefined;
  /** Image-signature verifier (registry client + verdict cache) for `image-signature` rules. */
  signatures: SignatureVerifier | undefined;
  /** The data root's fill level as a host finding; undefined with --data-root-threshold 0. */
  dataRoot: DataRootWatch | undefined;
  /** Gives back unused V8 heap when idle; undefined with --heap-trim-interval 0. */
  heapTrim: HeapTrimmer | undefined;
  /** Reports decided signature verdicts to the controller (for its dry-run). */
  verdictReporter: VerdictReporter | undefined;

  private constructor(
    readonly watcher: ContainerWatcher,
    readonly link: ControllerLink,
    readonly policy: PolicyHolder,
    readonly enforcer: Enforcer,
    readonly authz: AuthzPlugin | undefined,
    private readonly spool: ReportSpool,
    private readonly timers: NodeJS.Timeout[],
    private readonly logger: Logger,
    /** Prometheus metrics; the listener is undefined when off or when it could not bind. */
    readonly metrics?: AgentMetrics,
    private readonly metricsListener?: MetricsListener,
    /** Host audit; undefined with --audit-interval 0. */
    readonly hostAudit?: HostAuditScheduler,
  ) {}

  static async start(opts: AgentOptions, logger: Logger): Promise<Agent> {
    const credentials = loadCredentials(opts.stateDir);
    const docker = createDockerClient(opts.dockerHost ? { dockerHost: opts.dockerHost } : {});
    logger.info(
      { agentId: credentials.identity.agentId, docker: describeDockerHost(opts.dockerHost), controllers: opts.controller ?? identityControllers(credentials.identity), authz: opts.authzSocket ?? 'off' },
      'agent starting',
    );
    const policy = PolicyHolder.open({ stateDir: opts.stateDir, logger: logger.child({ component: 'policy' }), localPolicyPath: opts.policyFile });
    const secrets = new SecretScanner({ docker, logger: logger.child({ component: 'secrets' }) });
    const spool = await ReportSpool.open({ path: join(opts.stateDir, 'spool', 'violations.jsonl'), logger: logger.child({ component: 'spool' }) });
    const auditOutbox = await AuditOutbox.open({ path: join(opts.stateDir, 'spool', 'audit.json'), logger: logger.child({ component: 'audit' }) });

    let hostNow: HostFacts__Output | undefined;
    let hostCached: { at: number; facts: HostFacts } | undefined;
    const hostFacts = async (): Promise<HostFacts> => {
      if (!hostCached || Date.now() - hostCached.at > HOST_FACTS_TTL_MS) {
        hostCached = { at: Date.now(), facts: await collectHostFacts(docker, { labels: opts.hostLabels, daemon: { dockerSocketPath: dockerSocketPathOf(opts.dockerHost) } }) };
        hostNow = hostCached.facts as HostFacts__Output;
      }
      return hostCached.facts;
    };

    // Metrics: counted as things happen, listener started once prevention is up.
    const metrics = new AgentMetrics({ agentId: credentials.identity.agentId, logger: logger.child({ component: 'metrics' }) });
    const quarantine = QuarantineMemory.open(opts.stateDir, logger.child({ component: 'commands' }));
    // What Bulkhead paused, quarantined or limited: the plugin refuses plain API calls undoing it.
    const holds = EnforcementHolds.open(opts.stateDir, logger.child({ component: 'enforce' }));
    metrics.setSources({ spool: () => ({ pending: spool.size, dropped: spool.droppedCount }), quarantined: () => quarantine.size });

    // Reports go through the link (spooled first); the link exists before anything can report.
    let link: ControllerLink | undefined;
    const report = (r: ViolationReport, timing?: ActionTiming): void => {
      metrics.report(r, timing);
      link?.report(r);
    };

    // 1. Prevention first (see the top of this file). Until the watcher runs,
    //    the decider sees an empty inventory, which only matters for update/exec/start.
    let watcher: ContainerWatcher | undefined;
    const lookup = { get: (id: string) => watcher?.get(id), inventory: () => watcher?.inventory() ?? [] };
    // What facts alone do not say (symlinks, volume options, joined namespaces), for both doors.
    const resolver = new FactsResolver({ docker, containers: lookup });
    // Image signatures: registry access + verdict cache for `image-signature` rules,
    // and the gate that hands both doors the verdicts their rules need.
    const signatures = await createSignatureVerifier(opts.signatures);
    const signatureGate = new SignatureGate({ verifier: signatures, logger: logger.child({ component: 'signatures' }) });
    let authz: AuthzPlugin | undefined;
    let decider: AuthzDecider | undefined;
    if (opts.authzSocket) {
      const d = new AuthzDecider({
        policy: () => policy.state,
        containers: lookup,
        resolver,
        docker,
        logger: logger.child({ component: 'authz' }),
        hostFacts: () => hostNow,
        secrets,
        signatures: signatureGate,
        // Inside the plugin server's 2 s decision timeout, whatever --signature-timeout says:
        // past it the plugin would refuse with a generic message instead of the rule's.
        signatureBudgetMs: Math.min(opts.signatures.timeoutMs, AUTHZ_SIGNATURE_BUDGET_MAX_MS),
        holds,
        agentId: credentials.identity.agentId,
        onDecision: (r) => r.violations.forEach((v) => report(v)),
      });
      decider = d;
      authz = await AuthzPlugin.start({
        socketPath: opts.authzSocket,
        evaluate: (req) => timedDecision(d.decide(req), req.receivedAt, metrics),
        // A request the plugin cannot decide is refused while anything is enforced.
        failClosed: () => d.enforcing(),
        // A tag moved by a request (commit, tag, build …): cached image inspects dropped before its client hears back.
        onResponse: (res) => d.responded(res),
        logger: logger.child({ component: 'authz' }),
      });
      const plugin = authz;
      metrics.setSources({ authzFailOpen: () => plugin.stats.failOpen, authzFailClosed: () => plugin.stats.failClosed });
    }
    const metricsListener = await startOptionalMetricsListener({ listen: opts.metricsListen, allowRemote: opts.metricsAllowRemote, render: () => metrics.render(), logger });

    // 2. Docker. An engine that is down at start is waited for, not fatal:
    //    systemd may start us before docker.service is ready.
    for (let attempt = 0; !watcher; attempt++) {
      try {
        const wlog = logger.child({ component: 'watcher' });
        watcher = await ContainerWatcher.start({
          docker, logger: wlog, reconcileIntervalMs: opts.reconcileIntervalMs, resolveFacts: resolver.watcherHook(wlog),
          // A tag may have moved: the plugin's cached image inspects are stale.
          onImageEvent: () => decider?.forgetImages(),
        });
      } catch (err) {
        const wait = Math.min(10_000, 500 * 2 ** attempt);
        logger.error({ err: (err as Error).message, retryInMs: wait }, 'Docker engine unreachable; retrying');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    const w = watcher;
    // Image hygiene: remember image uses dockerd forgets when a container is removed.
    const imageUse = ImageLastUsedStore.open({ path: imageLastUsedPath(opts.stateDir), logger: logger.child({ component: 'hygiene' }) });
    imageUse.attach(w);
    await hostFacts().catch((err: unknown) => logger.warn({ err }, 'host facts unavailable'));
    // Metrics.
    w.on('upsert', (_f, action, _t, changed) => metrics.inventoryChange('upsert', action, changed));
    w.on('remove', (_id, action) => metrics.inventoryChange('remove', action));
    w.on('reconcile', () => metrics.reconcileRun());
    metrics.setSources({ containers: () => w.inventory().length, eventStreamConnected: () => w.streamConnected });

    // 3. Reaction.
    const enforcer = new Enforcer({
      docker,
      policy: () => policy.state,
      containers: w,
      logger: logger.child({ component: 'enforce' }),
      onViolation: report,
      hostFacts: () => hostNow,
      secrets,
      signatures: signatureGate,
      onEvaluation: () => metrics.evaluation(),
      holds,
      quarantineMemory: quarantine,
    });
    enforcer.attach(w);
    // A removed container's holds end with it.
    w.on('remove', (id) => holds.forget(id));
    // A hold undone all the same (the plugin allowed it: monitor mode, an exemption; or dockerd did it itself) is moot.
    w.on('upsert', (f, action, timeMs) => {
      if ((action === 'unpause' || action === 'start') && f.state === 'running') holds.undone(f.id, 'pause', timeMs);
      if (action === 'connect' && f.networks.length > 0) holds.undone(f.id, 'quarantine', timeMs);
    });
    policy.on('change', (s) => {
      logger.info({ version: s.version, source: s.source }, 'policy in force changed');
      enforcer.evaluateAll();
    });
    // Exemptions expire and scans age: re-evaluate everything on the reconcile cadence.
    const sweep = setInterval(() => enforcer.evaluateAll(), opts.reconcileIntervalMs);
    sweep.unref();
    enforcer.evaluateAll();

    // 4. The controller link.
    const runner = new CommandRunner({ docker, memory: quarantine, holds, logger: logger.child({ component: 'commands' }), onResult: (action, ok) => metrics.command(action, ok) });
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
      // Manual commands.
      onCommand: (cmd) => runner.run(cmd),
      auditOutbox, // host audit
      renewal: { stateDir: opts.stateDir }, // renews the certificate over the link at half its lifetime (docs/security.md)
      ...(opts.controller ? { controller: opts.controller } : {}),
    });
    const l = link;
    l.onState((s) => {
      if (s === 'connected') metrics.linkConnected();
    });
    metrics.setSources({ linkState: () => l.state });
    // Live usage: usage rules go to the enforcer, usage deltas to the controller.
    // Disk readings the data-root watch names its containers from.
    const diskHistory = new DiskUsageHistory();
    const usage = opts.usageIntervalMs > 0 ? await startUsageMonitor(opts, { watcher: w, policy, enforcer, link: l, hostFacts: () => hostNow, logger, diskHistory }) : undefined;
    // Signature verdicts decided here, for the controller's dry-run (it cannot verify).
    const verdicts = VerdictReporter.start({
      gate: signatureGate,
      send: (r) => l.sendSignatureVerdicts(r),
      onConnected: (cb) => void l.onState((s) => s === 'connected' && cb()),
      logger: logger.child({ component: 'signatures' }),
    });
    link.start();
    // The data root (and log filesystem) filling up: a host finding sent with the audit report (resources/data-root-watch.ts).
    let auditNow: (() => void) | undefined;
    let dataRootName: Promise<string | undefined> | undefined;
    const dataRoot = (opts.dataRootThresholdPercent ?? 0) > 0
      ? new DataRootWatch({
        dataRoot: () => (dataRootName ??= docker.info().then((i: { DockerRootDir?: string }) => i.DockerRootDir || undefined, () => {
          dataRootName = undefined; // the engine was unreachable: ask again next time
          return undefined;
        })),
        hostRoot: opts.audit.hostRoot,
        history: diskHistory,
        thresholdPercent: opts.dataRootThresholdPercent!,
        names: () => new Map(w.inventory().map((f) => [f.id, f.name])),
        onNewFinding: () => auditNow?.(),
        logger: logger.child({ component: 'disk' }),
      }).start()
      : undefined;
    // Host audit: at start and every --audit-interval, in a child process; the report waits in the outbox until the controller has it.
    const hostAudit = opts.audit.intervalMs > 0
      ? new HostAuditScheduler({ ...agentHostAudit(opts.audit, opts.dockerHost, { lastUsed: imageUse }), onReport: (r) => void l.reportAudit(dataRoot ? { ...r.message, lockdownJson: withDataRootFindings(r.message.lockdownJson, dataRoot.findings) } : r.message), logger: logger.child({ component: 'audit' }) })
      : undefined;
    hostAudit?.start();
    auditNow = hostAudit ? () => void hostAudit.runNow() : undefined;
    const agent = new Agent(w, link, policy, enforcer, authz, spool, [sweep], logger, metrics, metricsListener, hostAudit);
    agent.usage = usage;
    agent.dataRoot = dataRoot;
    if (usage) metrics.setSources({ usage: () => usage.sampler.latest().values() });
    // An idle agent gives back heap V8 keeps committed (memory/heap-trim.ts; BENCHMARKS.md agent-idle).
    if ((opts.heapTrimIntervalMs ?? 0) > 0) agent.heapTrim = new HeapTrimmer({ intervalMs: opts.heapTrimIntervalMs!, logger: logger.child({ component: 'memory' }) }).start();
    agent.imageUse = imageUse;
    agent.signatures = signatures;
    agent.verdictReporter = verdicts;
    return agent;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.heapTrim?.stop();
    this.verdictReporter?.stop();
    this.dataRoot?.stop();
    await this.usage?.stop();
    await this.hostAudit?.stop(); // ends an audit in progress (its child process); the next start audits again
    this.imageUse?.close(); // what was remembered since the last write
    this.link.stop();
    await this.enforcer.stop();
    await this.watcher.stop();
    await this.authz?.stop();
    this.signatures?.close();
    await this.spool.flush();
    await this.metricsListener?.close();
    this.logger.info('agent stopped');
  }
}

/**
 * Live usage. Without readable cgroups (an unusual mount, an agent
 * in a container without the host's /sys/fs/cgroup) the agent runs on
 * without usage rules: logged, not fatal.
 */
async function startUsageMonitor(
  opts: AgentOptions,
  deps: { watcher: ContainerWatcher; policy: PolicyHolder; enforcer: Enforcer; link: ControllerLink; hostFacts: () => HostFacts__Output | undefined; logger: Logger; diskHistory: DiskUsageHistory },
): Promise<UsageMonitor | undefined> {
  const log = deps.logger.child({ component: 'usage' });
  try {
    const driver = deps.hostFacts()?.cgroupDriver;
    const reader = await CgroupReader.forHost({ driver: driver === 'systemd' || driver === 'cgroupfs' ? driver : 'auto' });
    if (opts.usageSources.blkio !== false && (await reader.blkioAccounting()) === 'inactive') {
      log.warn('block IO is not counted on this host: cgroup v1 and no disk has a throttle configured, so the kernel (Linux 6.10 and later) '
        + 'leaves every container\'s blkio counters at 0 and block-IO figures and rules read 0; a throttle on the disk (any container\'s '
        + '--device-read-bps, e.g. from the isolation.blkio-limits rule) turns them on (docs/audit.md, Block IO)');
    }
    // Inspect paths are host paths: an agent in a container with the host's / at --host-root reads them there.
    const sources = await createResourceSources({
      ...opts.usageSources,
      diskOptions: { hostRoot: opts.audit.hostRoot },
      netOptions: { procRoot: opts.audit.procRoot ?? join(opts.audit.hostRoot, 'proc') },
    }, log);
    // Every disk reading also goes to the history the data-root watch names containers from.
    if (sources.disk) sources.disk = recordingDiskSource(sources.disk, deps.diskHistory);
    const monitor = UsageMonitor.start({
      reader,
      containers: deps.watcher,
      policy: () => deps.policy.state,
      hostFacts: deps.hostFacts,
      onBreach: (facts, usage) => deps.enforcer.onUsage(facts, usage),
      // Best effort, not spooled: usage is perishable and the next report supersedes it.
      sendReport: (r) => deps.link.sendUsage(r),
      interval: opts.usageIntervalMs,
      reportInterval: opts.usageReportIntervalMs,
      logger: log,
      ...sources,
      blkio: opts.usageSources.blkio,
      resourceInterval: opts.usageResourceIntervalMs,
    });
    // A new stream starts with a snapshot, which clears this agent's usage at the controller.
    deps.link.onState((s) => {
      if (s === 'connected') monitor.resync();
    });
    return monitor;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'usage monitor could not start; usage rules are not evaluated');
    return undefined;
  }
}

/** The watcher's inventory as the link reports it: env values gone, secret hits in, command redacted. */
export function reportedInventory(watcher: ContainerWatcher, secrets: SecretScanner, projectLabel: () => string): LinkInventory {
  return {
    inventory: () => watcher.inventory().map((f) => secrets.enrichNow(f, projectLabel()).facts),
    count: () => watcher.size,
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
