// Owns live usage in the running agent: samples every running container's
// cgroup (UsageSampler, fed by the watcher's inventory, so containers are
// tracked from start to stop), asks the ONE evaluator whether a usage rule of
// the policy in force holds for each container's recent window, hands
// breaches to the enforcer, and sends usage deltas to the controller.
//
// The evaluator decides, not this file: on every tick it evaluates the
// policy's usage rules (cpu-usage, memory-usage, pids-usage — a sub-policy
// cached per policy object, so a tick costs one pass over those rules per
// container) with the container's window. A container with a finding goes to
// `onBreach`; the Enforcer then evaluates the whole policy with that usage
// and carries out the rule's action with the same records, caps and
// escalation as every other finding.
//
// Beyond the cgroup (when the agent gives the sources): writable layer and
// log sizes, the network namespace's counters and sockets, and block IO go
// into the same samples, windows, rules (disk-usage, network-usage,
// connections) and reports.
//
// Memory stays bounded: the window per container is as long as the policy's
// longest `forSeconds` needs (at most 1000 points), and everything kept per
// container — window, open cgroup files, breach state, last report — is
// dropped when it stops running or is removed.
import { evaluate, isUsageRule, usageWindowMs } from '@bulkhead/shared';
import type { Policy, UsageFacts, UsagePoint } from '@bulkhead/shared';
import type { Facts } from '../docker/container-facts';
import { UsageSampler, type UsageSample, type WindowPoint } from './usage-sampler';
import type { RuntimeRule, SampledContainer } from './usage-sampler-options';
import { toUsageReportMessage, UsageReportFilter } from './usage-report';
import { resolveUsageMonitorOptions, windowPoints, type ResolvedUsageMonitorOptions, type UsageMonitorOptions } from './usage-monitor-options';

export type { UsageMonitorOptions } from './usage-monitor-options';

/** No usage rule holds (shared: judge() only reads it). */
const NO_RULES: string[] = [];

interface BreachState {
  /** Rule ids of the last hand-over, sorted and joined. */
  key: string;
  at: number;
}

/** The policy's usage rules only, or undefined when it has none (cached per policy object). */
const subPolicies = new WeakMap<Policy, Policy | null>();
export function usageSubPolicy(policy: Policy): Policy | undefined {
  let p = subPolicies.get(policy);
  if (p === undefined) {
    const rules = policy.spec.rules.filter(isUsageRule);
    p = rules.length === 0 ? null : { ...policy, spec: { ...policy.spec, rules } };
    subPolicies.set(policy, p);
  }
  return p ?? undefined;
}

/**
 * The sampler's rules, derived from the policy, only steer which optional
 * cgroup files are re-read on every tick (pids.current for pids rules,
 * memory.stat near a memory threshold); breaches are the evaluator's call.
 */
export function detailRules(policy: Policy | undefined): RuntimeRule[] {
  const out: RuntimeRule[] = [];
  for (const r of policy?.spec.rules ?? []) {
    const c = r.check as Record<string, unknown>;
    const num = (k: string): number | undefined => (typeof c[k] === 'number' ? (c[k] as number) : undefined);
    if (r.check.type === 'memory-usage') out.push({ id: r.id, metric: 'memory', abovePercent: num('abovePercent') ?? 90 });
    else if (r.check.type === 'pids-usage' && (num('above') !== undefined || num('abovePercent') !== undefined)) {
      out.push({ id: r.id, metric: 'pids', ...(num('above') !== undefined ? { above: num('above') } : {}), ...(num('abovePercent') !== undefined ? { abovePercent: num('abovePercent') } : {}) });
    }
  }
  return out;
}

/** Usage facts whose points are a plain array (a copy: what the enforcer gets with a breach). */
export interface UsageWindow extends UsageFacts {
  points: readonly UsagePoint[];
}

/** A sampler window as the evaluator's usage facts. */
export function toUsageFacts(window: readonly WindowPoint[]): UsageWindow {
  const points: UsagePoint[] = window.map((w) => ({
    at: w.at,
    cpuPercent: w.cpuCores === null ? null : w.cpuCores * 100,
    cpuLimitCores: w.cpuLimitCores,
    memoryBytes: w.memoryBytes,
    memoryLimitBytes: w.memoryLimitBytes,
    pids: w.pids,
    pidsLimit: w.pidsLimit,
    writableBytes: w.writableBytes,
    logBytes: w.logBytes,
    netRxBytesPerSec: w.netRxBytesPerSec,
    netTxBytesPerSec: w.netTxBytesPerSec,
    netRxPacketsPerSec: w.netRxPacketsPerSec,
    netTxPacketsPerSec: w.netTxPacketsPerSec,
    tcpConnections: w.tcpConnections,
    sockets: w.sockets,
  }));
  return { points };
}

export class UsageMonitor {
  private readonly o: ResolvedUsageMonitorOptions;
  readonly sampler: UsageSampler;
  private readonly filter: UsageReportFilter;
  private readonly breached = new Map<string, BreachState>();
  /** The sampler's view of a facts object (facts are replaced, never mutated, on every change). */
  private readonly sampled = new WeakMap<Facts, SampledContainer>();
  private configuredFor: Policy | undefined | null = null;
  private reportTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly onUpsert = (facts: Facts, action: string): void => {
    // Limits are cached for 30 s; a `docker update` (ours or anyone's) takes effect on the next read.
    if (action === 'update') this.o.reader.invalidateLimits?.(facts.id);
    if (facts.state !== 'running') this.breached.delete(facts.id);
  };
  private readonly onRemove = (id: string): void => {
    this.breached.delete(id);
  };

  private constructor(opts: UsageMonitorOptions) {
    this.o = resolveUsageMonitorOptions(opts);
    this.filter = new UsageReportFilter(this.o.report);
    this.sampler = new UsageSampler({
      reader: this.o.reader,
      // Running containers only (the sampler skips the rest); a container starts being
      // sampled on the first tick after its start event and is forgotten after it stops.
      containers: () => this.o.containers.inventory().map((f) => this.sampledOf(f)),
      interval: this.o.intervalMs,
      now: this.o.now,
      disk: this.o.disk,
      net: this.o.net,
      blkio: this.o.blkio,
      resourceEveryTicks: this.o.resourceEveryTicks,
    });
    this.sampler.on('tick', (samples) => this.onTick(samples));
    this.sampler.on('sampleError', (containerId, err) => this.o.logger.warn({ containerId, err: err.message }, 'usage: reading a cgroup failed'));
  }

  /** Creates the monitor and starts sampling (first tick right away) and reporting. */
  static start(opts: UsageMonitorOptions): UsageMonitor {
    const m = new UsageMonitor(opts);
    m.configure();
    m.o.containers.on('upsert', m.onUpsert);
    m.o.containers.on('remove', m.onRemove);
    m.sampler.start();
    if (m.o.sendReport) {
      m.reportTimer = setInterval(() => m.report(), m.o.reportIntervalMs);
      m.reportTimer.unref();
    }
    m.o.logger.info({ intervalMs: m.o.intervalMs, reportIntervalMs: m.o.reportIntervalMs, windowPoints: m.sampler.windowSize }, 'usage monitor started');
    return m;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.o.containers.off('upsert', this.onUpsert);
    this.o.containers.off('remove', this.onRemove);
    await this.sampler.stop();
    this.o.reader.close?.();
    this.o.disk?.close?.();
    this.breached.clear();
  }

  /** Containers currently in breach of a usage rule (tests, diagnostics). */
  breaches(): Map<string, string[]> {
    return new Map([...this.breached].map(([id, s]) => [id, s.key.split('\n')]));
  }

  /**
   * Sends the usage that changed since the last report (nothing when nothing
   * did). Returns whether anything was sent.
   */
  report(): boolean {
    if (this.stopped || !this.o.sendReport) return false;
    const delta = this.filter.next([...this.sampler.latest().values()]);
    if (delta.updates.length === 0 && delta.removed.length === 0) return false;
    const sent = this.o.sendReport(toUsageReportMessage(delta, this.o.now()));
    // Not sent (link down): the controller lacks these, so the next report carries everything.
    if (!sent) this.filter.reset();
    return sent;
  }

  /**
   * After a (re)connection the controller holds no usage for this agent (a
   * snapshot clears it): send every container at once.
   */
  resync(): void {
    this.filter.reset();
    this.report();
  }

  /** Facts plus where the container's disk lives (from the watcher's inspect), built once per facts object. */
  private sampledOf(f: Facts): SampledContainer {
    let c = this.sampled.get(f);
    if (!c) {
      const t = this.o.containers.resourceTarget?.(f.id);
      c = { ...f, pid: f.pid, logDriver: t?.logDriver ?? f.logConfig?.type ?? '' };
      if (t?.graphDriver) c.graphDriver = t.graphDriver;
      if (t?.upperDir) c.upperDir = t.upperDir;
      if (t?.logPath) c.logPath = t.logPath;
      this.sampled.set(f, c);
    }
    return c;
  }

  /** Window length and sampler rules for the policy in force (re-done when the policy object changes). */
  private configure(): Policy | undefined {
    const policy = this.o.policy().policy;
    if (policy === this.configuredFor) return policy;
    this.configuredFor = policy;
    const windowMs = policy ? usageWindowMs(policy) : 0;
    this.sampler.resize(windowPoints(windowMs, this.o.intervalMs));
    this.sampler.setRules(detailRules(policy));
    return policy;
  }

  private onTick(samples: readonly UsageSample[]): void {
    if (this.stopped) return;
    const policy = this.configure();
    const sub = policy ? usageSubPolicy(policy) : undefined;
    const seen = new Set<string>();
    if (sub) {
      const host = this.o.hostFacts?.();
      const now = new Date(this.o.now());
      for (const s of samples) {
        const facts = this.o.containers.get(s.containerId);
        if (!facts || facts.state !== 'running') continue;
        seen.add(s.containerId);
        // The window read in place (no copy: this runs for every container on every
        // tick); judge() copies it only when it hands a breach over.
        const series = this.sampler.series(s.containerId);
        if (!series) continue;
        const usage: UsageFacts = { points: series };
        let ruleIds: string[];
        try {
          const findings = evaluate(sub, host ? { container: facts, host, usage } : { container: facts, usage }, { now });
          ruleIds = findings.length === 0 ? NO_RULES : findings.map((f) => f.ruleId);
        } catch (err) {
          this.o.logger.error({ err, containerId: s.containerId }, 'usage: evaluation failed');
          continue;
        }
        this.judge(facts, ruleIds);
      }
    }
    // Forget breach states of containers no longer sampled (stopped, paused, removed) — and all of them without usage rules.
    for (const id of this.breached.keys()) if (!seen.has(id)) this.breached.delete(id);
  }

  private judge(facts: Facts, ruleIds: string[]): void {
    const id = facts.id;
    if (ruleIds.length === 0) {
      this.breached.delete(id);
      return;
    }
    const key = [...ruleIds].sort().join('\n');
    const now = this.o.now();
    const prev = this.breached.get(id);
    const fresh = !prev || ruleIds.some((r) => !prev.key.split('\n').includes(r));
    if (!fresh && now - prev.at < this.o.rebreachMs) return;
    this.breached.set(id, { key, at: now });
    this.o.logger.info({ containerId: id, name: facts.name, rules: ruleIds }, 'usage rule breached');
    try {
      // A copy: the enforcer evaluates with it later, and the sampler's ring moves on.
      this.o.onBreach(facts, toUsageFacts(this.sampler.window(id)), ruleIds);
    } catch (err) {
      this.o.logger.error({ err, containerId: id }, 'usage: onBreach callback threw');
    }
  }
}
