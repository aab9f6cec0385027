// Owns live usage of every running container: every N seconds (default 5)
// it reads each container's cgroup, turns counters into rates (CPU % of the
// container's quota, memory % of its limit, pids), keeps a short window per
// container, and watches the runtime rules: "CPU above N % of its quota for
// T seconds", "memory above N % of its limit", "pids above N".
//
// Events: `usage` (one per container per tick), `tick` (all of a tick's
// samples, for batching to the controller), `breach` (a rule's condition has
// held for its duration; once, until it clears), `recovered` (it cleared),
// `sampleError` (a read failed for another reason than the container going
// away).
//
// Beyond the cgroup, when given: the disk source (writable layer and log
// sizes; asked once per tick for every container, it keeps its own
// incremental state), the network source (the namespace's counters and
// sockets; per container, alongside its cgroup read) and block IO (a cgroup
// detail file, refreshed at the detail cadence). Their failures never fail a
// container's sample: the fields are null instead. Ticks never overlap: the next one is scheduled after the previous
// finished, at the next interval boundary.
import { EventEmitter } from 'node:events';
import { CgroupNotFoundError, type CgroupUsage, type ReadDetail } from './cgroup-reader';
import type { DiskUsage, NetUsage, ResourceTarget } from '../resources/types';
import type { ResourceUsageFields, UsagePoint, UsageSeries } from '@bulkhead/shared';

const FULL_DETAIL: ReadDetail = { memoryStat: true, pids: true };
const FULL_DETAIL_BLKIO: ReadDetail = { memoryStat: true, pids: true, blkio: true };
const NO_DETAIL: ReadDetail = { memoryStat: false, pids: false };
import {
  resolveUsageSamplerOptions, type ResolvedUsageSamplerOptions, type RuntimeRule, type SampledContainer, type UsageSamplerOptions,
} from './usage-sampler-options';

export type { RuntimeRule, SampledContainer, UsageSamplerOptions, CpuRule, MemoryRule, PidsRule } from './usage-sampler-options';

/** A container's reading; beyond the cgroup (ResourceUsageFields) null = not measured (source off, not measurable, failed). */
export interface UsageSample extends CgroupUsage, ResourceUsageFields {
  name: string;
  /** CPUs in use, averaged since the previous sample; null on a container's first sample. */
  cpuCores: number | null;
  /** cpuCores as a percentage of the CPU quota; null when unlimited or on the first sample. */
  cpuPercentOfQuota: number | null;
  /** null when the memory limit is unlimited. */
  memoryPercentOfLimit: number | null;
  /** null when the pids limit is unlimited. */
  pidsPercentOfLimit: number | null;
  /** Which resources have no limit at all. */
  unlimited: { cpu: boolean; memory: boolean; pids: boolean };
}

export interface Breach {
  ruleId: string;
  metric: RuntimeRule['metric'];
  containerId: string;
  name: string;
  /** The measured value: a percentage for cpu/memory (and pids with abovePercent only), else a count. */
  value: number;
  threshold: number;
  unit: 'percent-of-quota' | 'percent-of-limit' | 'count';
  /** When the condition started to hold (ms since epoch). */
  sinceMs: number;
  forSeconds: number;
  /** When the breach was declared. */
  at: number;
  sample: UsageSample;
}

export interface Recovery {
  ruleId: string;
  containerId: string;
  name: string;
  at: number;
  /** When the breach had been declared. */
  breachedAt: number;
}

export interface TickInfo {
  at: number;
  durationMs: number;
  containers: number;
  errors: number;
}

export interface UsageSamplerEvents {
  usage: [sample: UsageSample];
  tick: [samples: UsageSample[], info: TickInfo];
  breach: [breach: Breach];
  recovered: [recovery: Recovery];
  /** containerId is "" when the whole tick failed. */
  sampleError: [containerId: string, error: Error];
}

interface RuleState {
  sinceMs: number | undefined;
  breachedAt: number | undefined;
}

/** A point of a container's window. */
export interface WindowPoint {
  at: number;
  cpuUsageNs: number;
  cpuCores: number | null;
  cpuPercentOfQuota: number | null;
  memoryBytes: number;
  memoryPercentOfLimit: number | null;
  pids: number;
  /** Limits in force at this point; 0 = unlimited. */
  cpuLimitCores: number;
  memoryLimitBytes: number;
  pidsLimit: number;
  writableBytes?: number | null;
  logBytes?: number | null;
  netRxBytesPerSec?: number | null;
  netTxBytesPerSec?: number | null;
  netRxPacketsPerSec?: number | null;
  netTxPacketsPerSec?: number | null;
  tcpConnections?: number | null;
  sockets?: number | null;
}

// The window is a ring of numbers per container, not an array of sample
// objects: objects kept for a minute get promoted to the old generation and
// turn every tick into major-GC work (measured: ~4 ms of GC per tick with
// 80 containers). NaN stands for null.
const F_AT = 0;
const F_CPU_NS = 1;
const F_CORES = 2;
const F_CPU_PCT = 3;
const F_MEM = 4;
const F_MEM_PCT = 5;
const F_PIDS = 6;
const F_CPU_LIM = 7;
const F_MEM_LIM = 8;
const F_PIDS_LIM = 9;
// What the usage rules judge beyond the cgroup (cumulative counters only live in `latest`).
const F_WRITABLE = 10;
const F_LOGS = 11;
const F_RX_BPS = 12;
const F_TX_BPS = 13;
const F_RX_PPS = 14;
const F_TX_PPS = 15;
const F_TCP = 16;
const F_SOCKS = 17;
const FIELDS = 18;

/** Everything kept per container between ticks. */
interface Tracked {
  ring: Float64Array;
  /** Points stored (≤ windowSize) and the next slot. */
  count: number;
  next: number;
  /** Reads so far (for the detail cadence). */
  reads: number;
  /** Ticks so far (for the disk and network cadence, resourceEveryTicks). */
  resTicks: number;
  /** The last network reading and when it was taken (rates span from it to the next one). */
  lastNet: NetUsage | null | undefined;
  netAt: number;
  /** The latest sample (a short-lived object: replaced every tick). */
  latest: UsageSample | undefined;
  /** The window as the evaluator reads it (series()), made on first use. */
  series: RingSeries | undefined;
  /** One reader per ring slot, made on first use (reset when the ring is re-allocated). */
  slots: RingPoint[];
  /** Breach state per runtime rule id (checkRules). */
  rules: Map<string, RuleState> | undefined;
  /** The container name the sample's `name` was made from, and that name (made again only when it changes). */
  nameOf: string | undefined;
  name: string;
}

/**
 * One point of a container's ring, read in place: what toUsageFacts() would
 * copy out of window(), without the copy. Made once per ring slot and kept,
 * so reading a window allocates nothing; it shows whatever the slot holds
 * NOW (the next tick overwrites the oldest slot), which is why series() views
 * are for reading during one tick only.
 */
class RingPoint implements UsagePoint {
  constructor(private readonly t: Tracked, private readonly base: number) {}
  get at(): number {
    return this.t.ring[this.base + F_AT]!;
  }
  get cpuPercent(): number | null {
    const v = this.t.ring[this.base + F_CORES]!;
    return Number.isNaN(v) ? null : v * 100;
  }
  get cpuLimitCores(): number {
    return this.t.ring[this.base + F_CPU_LIM]!;
  }
  get memoryBytes(): number {
    return this.t.ring[this.base + F_MEM]!;
  }
  get memoryLimitBytes(): number {
    return this.t.ring[this.base + F_MEM_LIM]!;
  }
  get pids(): number {
    return this.t.ring[this.base + F_PIDS]!;
  }
  get pidsLimit(): number {
    return this.t.ring[this.base + F_PIDS_LIM]!;
  }
  get writableBytes(): number | null {
    return orNull(this.t.ring[this.base + F_WRITABLE]!);
  }
  get logBytes(): number | null {
    return orNull(this.t.ring[this.base + F_LOGS]!);
  }
  get netRxBytesPerSec(): number | null {
    return orNull(this.t.ring[this.base + F_RX_BPS]!);
  }
  get netTxBytesPerSec(): number | null {
    return orNull(this.t.ring[this.base + F_TX_BPS]!);
  }
  get netRxPacketsPerSec(): number | null {
    return orNull(this.t.ring[this.base + F_RX_PPS]!);
  }
  get netTxPacketsPerSec(): number | null {
    return orNull(this.t.ring[this.base + F_TX_PPS]!);
  }
  get tcpConnections(): number | null {
    return orNull(this.t.ring[this.base + F_TCP]!);
  }
  get sockets(): number | null {
    return orNull(this.t.ring[this.base + F_SOCKS]!);
  }
}

/** A container's window as the evaluator's UsageSeries, oldest first, read in place (see RingPoint). */
class RingSeries implements UsageSeries {
  constructor(private readonly t: Tracked) {}
  get length(): number {
    return this.t.count;
  }
  at(index: number): UsagePoint | undefined {
    const t = this.t;
    const i = index < 0 ? index + t.count : Math.trunc(index);
    if (!(i >= 0 && i < t.count)) return undefined;
    const size = t.ring.length / FIELDS;
    const slot = (t.next - t.count + i + size) % size;
    return (t.slots[slot] ??= new RingPoint(t, slot * FIELDS));
  }
}

/** The container's CPU limit in CPUs from its inspect fields (0 = unlimited). */
function factsCpus(c: SampledContainer): number {
  if ((c.nanoCpus ?? 0) > 0) return c.nanoCpus! / 1e9;
  if ((c.cpuQuota ?? 0) > 0) return c.cpuQuota! / ((c.cpuPeriod ?? 0) > 0 ? c.cpuPeriod! : 100_000);
  return 0;
}

const orNull = (v: number): number | null => (Number.isNaN(v) ? null : v);

export class UsageSampler extends EventEmitter<UsageSamplerEvents> {
  private o: ResolvedUsageSamplerOptions;
  private readonly tracked = new Map<string, Tracked>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<UsageSample[]> | undefined;
  private stopped = true;

  constructor(opts: UsageSamplerOptions) {
    super();
    this.o = resolveUsageSamplerOptions(opts);
  }

  /** Creates a sampler and starts ticking (first tick right away). */
  static start(opts: UsageSamplerOptions): UsageSampler {
    const s = new UsageSampler(opts);
    s.start();
    return s;
  }

  get intervalMs(): number {
    return this.o.intervalMs;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops ticking and waits for a tick in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  get windowSize(): number {
    return this.o.windowSize;
  }

  /** The points kept for a container, oldest first (at most windowSize). */
  window(containerId: string): WindowPoint[] {
    const t = this.tracked.get(containerId);
    if (!t) return [];
    const out: WindowPoint[] = [];
    const size = t.ring.length / FIELDS;
    for (let i = 0; i < t.count; i++) {
      const base = ((t.next - t.count + i + size) % size) * FIELDS;
      const r = t.ring;
      out.push({
        at: r[base + F_AT]!, cpuUsageNs: r[base + F_CPU_NS]!, cpuCores: orNull(r[base + F_CORES]!), cpuPercentOfQuota: orNull(r[base + F_CPU_PCT]!),
        memoryBytes: r[base + F_MEM]!, memoryPercentOfLimit: orNull(r[base + F_MEM_PCT]!), pids: r[base + F_PIDS]!,
        cpuLimitCores: r[base + F_CPU_LIM]!, memoryLimitBytes: r[base + F_MEM_LIM]!, pidsLimit: r[base + F_PIDS_LIM]!,
        writableBytes: orNull(r[base + F_WRITABLE]!), logBytes: orNull(r[base + F_LOGS]!),
        netRxBytesPerSec: orNull(r[base + F_RX_BPS]!), netTxBytesPerSec: orNull(r[base + F_TX_BPS]!),
        netRxPacketsPerSec: orNull(r[base + F_RX_PPS]!), netTxPacketsPerSec: orNull(r[base + F_TX_PPS]!),
        tcpConnections: orNull(r[base + F_TCP]!), sockets: orNull(r[base + F_SOCKS]!),
      });
    }
    return out;
  }

  /**
   * The same points as window(), as a view over the ring that copies nothing:
   * what the usage monitor evaluates the usage rules with on every tick.
   * Valid until the next tick (it reads the ring as it is when read); copy
   * with window() to keep. Undefined for a container not tracked.
   */
  series(containerId: string): UsageSeries | undefined {
    const t = this.tracked.get(containerId);
    if (!t) return undefined;
    return (t.series ??= new RingSeries(t));
  }

  /**
   * Changes how many points are kept per container (e.g. when the policy's
   * longest usage rule changes). Existing windows keep their newest points;
   * each is re-allocated on its container's next sample.
   */
  resize(windowSize: number): void {
    if (windowSize === this.o.windowSize) return;
    this.o = resolveUsageSamplerOptions({ ...this.o, interval: this.o.intervalMs, windowSize });
  }

  /**
   * Replaces the runtime rules (validated as at start). Breach states of
   * rules that are gone or changed are dropped; the rules also decide which
   * detail files are refreshed on every tick (see detailEveryTicks).
   */
  setRules(rules: readonly RuntimeRule[]): void {
    this.o = resolveUsageSamplerOptions({ ...this.o, interval: this.o.intervalMs, rules });
    for (const t of this.tracked.values()) t.rules = undefined;
  }

  /** The latest sample of every container seen in the last tick. */
  latest(): Map<string, UsageSample> {
    const out = new Map<string, UsageSample>();
    for (const [id, t] of this.tracked) if (t.latest) out.set(id, t.latest);
    return out;
  }

  /** One sampling pass over every container (also what the timer runs). Concurrent calls share one pass. */
  tick(): Promise<UsageSample[]> {
    this.running ??= this.sampleAll().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const started = this.o.now();
      this.tick()
        // A failing tick (e.g. the inventory callback threw) must not stop sampling.
        .catch((e: Error) => void this.emit('sampleError', '', e))
        .then(() => {
          const elapsed = this.o.now() - started;
          this.schedule(Math.max(0, this.o.intervalMs - elapsed));
        });
    }, delayMs);
    // The sampler must never keep a process alive on its own.
    this.timer.unref();
  }

  private async sampleAll(): Promise<UsageSample[]> {
    const started = this.o.now();
    const list: SampledContainer[] = [];
    for (const c of this.o.containers()) if (c.state === undefined || c.state === 'running') list.push(c);
    let errors = 0;
    // Disk and network every resourceEveryTicks ticks per container (their last values in
    // between); the disk source once for all containers due, while the cgroups are read.
    const { disk, net, reader } = this.o;
    const due = new Set<string>();
    if (disk || net) for (const c of list) if (this.track(c.id).resTicks++ % this.o.resourceEveryTicks === 0) due.add(c.id);
    const diskTargets = disk ? list.filter((c) => due.has(c.id)).map(resourceTarget) : [];
    const diskRead: Promise<Map<string, DiskUsage> | undefined> | undefined = disk && diskTargets.length > 0
      ? disk.read(diskTargets, started).catch((e: Error) => {
        errors++;
        this.emit('sampleError', '', e);
        return undefined;
      })
      : undefined;
    // Every container's reading by its place in `list`. A reader with readSync answers
    // from its open files at once (no promise per container: this runs for every
    // container every few seconds, and allocation is what keeps an idle agent's heap
    // from shrinking, BENCHMARKS.md agent-idle); the rest go the async way, batched.
    const reads: Array<CgroupUsage | undefined> = new Array<CgroupUsage | undefined>(list.length);
    const nets: Array<NetUsage | null | undefined> | undefined = net ? new Array<NetUsage | null | undefined>(list.length) : undefined;
    for (let i = 0; i < list.length; i += this.o.concurrency) {
      const end = Math.min(list.length, i + this.o.concurrency);
      let waits: Array<Promise<void>> | undefined;
      for (let k = i; k < end; k++) {
        const c = list[k]!;
        const detail = this.detailFor(c);
        const now = reader.readSync?.(c.id, c.pid, detail);
        if (now !== undefined) {
          reads[k] = now;
        } else {
          (waits ??= []).push(reader.read(c.id, c.pid, detail).then(
            (u) => void (reads[k] = u),
            (e: Error) => {
              if (!(e instanceof CgroupNotFoundError)) {
                errors++;
                this.emit('sampleError', c.id, e);
              }
            },
          ));
        }
        if (net && due.has(c.id) && (c.pid ?? 0) > 0) {
          (waits ??= []).push(net.read(resourceTarget(c)).then(
            (n) => void (nets![k] = n),
            (e: Error) => {
              errors++;
              this.emit('sampleError', c.id, e);
            },
          ));
        }
      }
      if (waits) await Promise.all(waits);
    }
    const diskUsage = diskRead ? await diskRead : undefined;
    const samples: UsageSample[] = [];
    const sampled: SampledContainer[] = [];
    for (let k = 0; k < list.length; k++) {
      const u = reads[k];
      if (!u) continue;
      const c = list[k]!;
      const isDue = due.has(c.id);
      samples.push(this.record(c, u, disk && isDue ? diskUsage?.get(c.id) ?? null : undefined, net && isDue ? nets![k] ?? null : undefined));
      sampled.push(c);
    }
    // Forget containers that are gone.
    if (this.tracked.size > list.length || samples.length < list.length) {
      const live = new Set(list.map((c) => c.id));
      for (const id of this.tracked.keys()) {
        if (!live.has(id)) {
          this.tracked.delete(id);
          this.o.reader.forget(id);
          this.o.disk?.forget(id);
          this.o.net?.forget?.(id);
        }
      }
    }
    for (const s of samples) this.emit('usage', s);
    if (this.o.rules.length > 0) for (let j = 0; j < samples.length; j++) this.checkRules(sampled[j]!, samples[j]!);
    this.emit('tick', samples, { at: started, durationMs: this.o.now() - started, containers: list.length, errors });
    return samples;
  }

  private track(id: string): Tracked {
    let t = this.tracked.get(id);
    if (!t) {
      t = {
        ring: new Float64Array(this.o.windowSize * FIELDS), count: 0, next: 0, reads: 0, resTicks: 0, lastNet: undefined, netAt: 0, latest: undefined,
        series: undefined, slots: [], rules: undefined, nameOf: undefined, name: '',
      };
      this.tracked.set(id, t);
    } else if (t.ring.length !== this.o.windowSize * FIELDS) {
      // resize(): copy the newest points, oldest first, into a ring of the new size.
      const size = t.ring.length / FIELDS;
      const keep = Math.min(t.count, this.o.windowSize);
      const ring = new Float64Array(this.o.windowSize * FIELDS);
      for (let i = 0; i < keep; i++) {
        const from = ((t.next - keep + i + size) % size) * FIELDS;
        ring.set(t.ring.subarray(from, from + FIELDS), i * FIELDS);
      }
      t.ring = ring;
      // Slot readers read `ring` through t: those of slots that still exist stay valid.
      if (t.slots.length > this.o.windowSize) t.slots.length = this.o.windowSize;
      t.count = keep;
      t.next = keep % this.o.windowSize;
    }
    return t;
  }

  /** Which optional cgroup files this read refreshes (see detailEveryTicks). */
  private detailFor(c: SampledContainer): ReadDetail {
    const t = this.track(c.id);
    const n = t.reads++;
    if (n % this.o.detailEveryTicks === 0) return this.o.blkio ? FULL_DETAIL_BLKIO : FULL_DETAIL;
    let pids = false;
    let memoryStat = false;
    const last = t.latest;
    for (const r of this.o.rules) {
      if (r.appliesTo && !r.appliesTo(c)) continue;
      if (r.metric === 'pids') pids = true;
      // The working set never exceeds raw usage: while raw usage is clearly
      // below the threshold, a stale page-cache figure cannot hide a breach.
      else if (r.metric === 'memory' && last && last.memoryLimitBytes > 0 && (last.memoryUsageBytes / last.memoryLimitBytes) * 100 >= r.abovePercent * 0.9) memoryStat = true;
    }
    return pids || memoryStat ? { pids, memoryStat } : NO_DETAIL;
  }

  /**
   * `d`, `n`: this tick's disk and network readings — null when read and not
   * measurable (or failed), undefined when not read this tick (the previous
   * sample's values are kept).
   */
  private record(c: SampledContainer, u: CgroupUsage, d: DiskUsage | null | undefined, n: NetUsage | null | undefined): UsageSample {
    // One object per container and tick, built field by field: no spread copies or
    // intermediate objects (this runs for every container every few seconds).
    const t = this.track(c.id);
    const prev = t.latest;
    const blkio = u.blkio;
    let netRxBytes: number | null;
    let netTxBytes: number | null;
    let netRxPackets: number | null;
    let netTxPackets: number | null;
    let netRxDropped: number | null;
    let netTxDropped: number | null;
    let netRxBytesPerSec: number | null;
    let netTxBytesPerSec: number | null;
    let netRxPacketsPerSec: number | null;
    let netTxPacketsPerSec: number | null;
    let tcpConnections: number | null;
    let sockets: number | null;
    if (n === undefined) {
      // Not read this tick: the previous sample's values.
      netRxBytes = prev?.netRxBytes ?? null;
      netTxBytes = prev?.netTxBytes ?? null;
      netRxPackets = prev?.netRxPackets ?? null;
      netTxPackets = prev?.netTxPackets ?? null;
      netRxDropped = prev?.netRxDropped ?? null;
      netTxDropped = prev?.netTxDropped ?? null;
      netRxBytesPerSec = prev?.netRxBytesPerSec ?? null;
      netTxBytesPerSec = prev?.netTxBytesPerSec ?? null;
      netRxPacketsPerSec = prev?.netRxPacketsPerSec ?? null;
      netTxPacketsPerSec = prev?.netTxPacketsPerSec ?? null;
      tcpConnections = prev?.tcpConnections ?? null;
      sockets = prev?.sockets ?? null;
    } else {
      // Rates span from the previous network reading (not the previous sample: readings may skip ticks).
      const before = t.lastNet;
      const dtSec = before && u.at > t.netAt ? (u.at - t.netAt) / 1000 : 0;
      netRxBytes = n?.rxBytes ?? null;
      netTxBytes = n?.txBytes ?? null;
      netRxPackets = n?.rxPackets ?? null;
      netTxPackets = n?.txPackets ?? null;
      netRxDropped = n?.rxDropped ?? null;
      netTxDropped = n?.txDropped ?? null;
      netRxBytesPerSec = perSec(n?.rxBytes, before?.rxBytes, dtSec);
      netTxBytesPerSec = perSec(n?.txBytes, before?.txBytes, dtSec);
      netRxPacketsPerSec = perSec(n?.rxPackets, before?.rxPackets, dtSec);
      netTxPacketsPerSec = perSec(n?.txPackets, before?.txPackets, dtSec);
      tcpConnections = n?.tcpConnections ?? null;
      sockets = n?.sockets ?? null;
      t.lastNet = n;
      t.netAt = u.at;
    }
    const cpuLimit = u.cpuLimitCores > 0 ? u.cpuLimitCores : factsCpus(c);
    const memLimit = u.memoryLimitBytes > 0 ? u.memoryLimitBytes : c.memoryLimitBytes ?? 0;
    const pidsLimit = u.pidsLimit > 0 ? u.pidsLimit : (c.pidsLimit ?? 0) > 0 ? c.pidsLimit! : 0;
    let cpuCores: number | null = null;
    if (prev && u.at > prev.at && u.cpuUsageNs >= prev.cpuUsageNs) cpuCores = (u.cpuUsageNs - prev.cpuUsageNs) / ((u.at - prev.at) * 1e6);
    if (t.nameOf !== c.name || t.name === '') {
      t.nameOf = c.name;
      t.name = (c.name ?? '').replace(/^\//, '') || c.id.slice(0, 12);
    }
    const sample: UsageSample = {
      containerId: u.containerId,
      at: u.at,
      cpuUsageNs: u.cpuUsageNs,
      memoryBytes: u.memoryBytes,
      memoryUsageBytes: u.memoryUsageBytes,
      memoryLimitBytes: memLimit,
      pids: u.pids,
      pidsLimit,
      cpuLimitCores: cpuLimit,
      name: t.name,
      cpuCores,
      cpuPercentOfQuota: cpuCores !== null && cpuLimit > 0 ? round((cpuCores / cpuLimit) * 100) : null,
      memoryPercentOfLimit: memLimit > 0 ? round((u.memoryBytes / memLimit) * 100) : null,
      pidsPercentOfLimit: pidsLimit > 0 ? round((u.pids / pidsLimit) * 100) : null,
      unlimited: { cpu: cpuLimit <= 0, memory: memLimit <= 0, pids: pidsLimit <= 0 },
      // Disk: not read this tick (undefined) keeps the previous sample's values.
      writableBytes: d === undefined ? prev?.writableBytes ?? null : d?.writableBytes ?? null,
      logBytes: d === undefined ? prev?.logBytes ?? null : d?.logBytes ?? null,
      // Block IO is read at the detail cadence: the last values in between.
      blkioReadBytes: blkio ? blkio.readBytes : prev?.blkioReadBytes ?? null,
      blkioWriteBytes: blkio ? blkio.writeBytes : prev?.blkioWriteBytes ?? null,
      blkioReadOps: blkio ? blkio.readOps : prev?.blkioReadOps ?? null,
      blkioWriteOps: blkio ? blkio.writeOps : prev?.blkioWriteOps ?? null,
      netRxBytes,
      netTxBytes,
      netRxPackets,
      netTxPackets,
      netRxDropped,
      netTxDropped,
      netRxBytesPerSec,
      netTxBytesPerSec,
      netRxPacketsPerSec,
      netTxPacketsPerSec,
      tcpConnections,
      sockets,
    };
    const base = t.next * FIELDS;
    const r = t.ring;
    r[base + F_AT] = sample.at;
    r[base + F_CPU_NS] = sample.cpuUsageNs;
    r[base + F_CORES] = sample.cpuCores ?? NaN;
    r[base + F_CPU_PCT] = sample.cpuPercentOfQuota ?? NaN;
    r[base + F_MEM] = sample.memoryBytes;
    r[base + F_MEM_PCT] = sample.memoryPercentOfLimit ?? NaN;
    r[base + F_PIDS] = sample.pids;
    r[base + F_CPU_LIM] = sample.cpuLimitCores;
    r[base + F_MEM_LIM] = sample.memoryLimitBytes;
    r[base + F_PIDS_LIM] = sample.pidsLimit;
    r[base + F_WRITABLE] = sample.writableBytes ?? NaN;
    r[base + F_LOGS] = sample.logBytes ?? NaN;
    r[base + F_RX_BPS] = sample.netRxBytesPerSec ?? NaN;
    r[base + F_TX_BPS] = sample.netTxBytesPerSec ?? NaN;
    r[base + F_RX_PPS] = sample.netRxPacketsPerSec ?? NaN;
    r[base + F_TX_PPS] = sample.netTxPacketsPerSec ?? NaN;
    r[base + F_TCP] = sample.tcpConnections ?? NaN;
    r[base + F_SOCKS] = sample.sockets ?? NaN;
    t.next = (t.next + 1) % this.o.windowSize;
    if (t.count < this.o.windowSize) t.count++;
    t.latest = sample;
    return sample;
  }

  private checkRules(c: SampledContainer, s: UsageSample): void {
    const t = this.tracked.get(c.id)!;
    // The point before this one (the ring's second newest), for the CPU interval start.
    const size = this.o.windowSize;
    const prevAt = t.count >= 2 ? t.ring[((t.next - 2 + size) % size) * FIELDS + F_AT]! : undefined;
    for (const rule of this.o.rules) {
      if (rule.appliesTo && !rule.appliesTo(c)) continue;
      const known = t.rules?.get(rule.id);
      if (!isAbove(rule, s)) {
        if (known?.breachedAt !== undefined) this.emit('recovered', { ruleId: rule.id, containerId: c.id, name: s.name, at: s.at, breachedAt: known.breachedAt });
        if (known) t.rules!.delete(rule.id);
        continue;
      }
      const st = known ?? { sinceMs: undefined, breachedAt: undefined };
      const m = measure(rule, s);
      // A CPU rate covers the interval since the previous sample, so the
      // condition has held since then.
      st.sinceMs ??= rule.metric === 'cpu' && prevAt !== undefined ? prevAt : s.at;
      const forMs = (rule.forSeconds ?? 0) * 1000;
      const slack = Math.min(250, this.o.intervalMs / 10);
      if (st.breachedAt === undefined && s.at - st.sinceMs + slack >= forMs) {
        st.breachedAt = s.at;
        this.emit('breach', {
          ruleId: rule.id, metric: rule.metric, containerId: c.id, name: s.name, value: m.value, threshold: m.threshold, unit: m.unit,
          sinceMs: st.sinceMs, forSeconds: rule.forSeconds ?? 0, at: s.at, sample: s,
        });
      }
      (t.rules ??= new Map()).set(rule.id, st);
    }
  }
}

/** measure(rule, s).above, without building the result (the common case: not above). */
function isAbove(rule: RuntimeRule, s: UsageSample): boolean {
  if (rule.metric === 'cpu') return s.cpuPercentOfQuota !== null && s.cpuPercentOfQuota > rule.abovePercent;
  if (rule.metric === 'memory') return s.memoryPercentOfLimit !== null && s.memoryPercentOfLimit > rule.abovePercent;
  if (rule.above !== undefined && s.pids > rule.above) return true;
  return rule.abovePercent !== undefined && s.pidsPercentOfLimit !== null && s.pidsPercentOfLimit > rule.abovePercent;
}

function measure(rule: RuntimeRule, s: UsageSample): { above: boolean; value: number; threshold: number; unit: Breach['unit'] } {
  if (rule.metric === 'cpu') {
    const v = s.cpuPercentOfQuota;
    return { above: v !== null && v > rule.abovePercent, value: v ?? 0, threshold: rule.abovePercent, unit: 'percent-of-quota' };
  }
  if (rule.metric === 'memory') {
    const v = s.memoryPercentOfLimit;
    return { above: v !== null && v > rule.abovePercent, value: v ?? 0, threshold: rule.abovePercent, unit: 'percent-of-limit' };
  }
  if (rule.above !== undefined && s.pids > rule.above) return { above: true, value: s.pids, threshold: rule.above, unit: 'count' };
  const pct = s.pidsPercentOfLimit;
  if (rule.abovePercent !== undefined && pct !== null && pct > rule.abovePercent) return { above: true, value: pct, threshold: rule.abovePercent, unit: 'percent-of-limit' };
  return rule.above !== undefined
    ? { above: false, value: s.pids, threshold: rule.above, unit: 'count' }
    : { above: false, value: pct ?? 0, threshold: rule.abovePercent ?? 0, unit: 'percent-of-limit' };
}

/** What the disk and network sources need to know about a container. */
function resourceTarget(c: SampledContainer): ResourceTarget {
  const t: ResourceTarget = { id: c.id, pid: c.pid ?? 0 };
  if (c.graphDriver) t.graphDriver = c.graphDriver;
  if (c.upperDir) t.upperDir = c.upperDir;
  if (c.logPath) t.logPath = c.logPath;
  if (c.logDriver) t.logDriver = c.logDriver;
  return t;
}

/** A rate per second between two counter readings dtSec apart; null when unknown or the counter went back (reset). */
function perSec(now: number | undefined, was: number | undefined, dtSec: number): number | null {
  return now === undefined || was === undefined || dtSec <= 0 || now < was ? null : round((now - was) / dtSec);
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
