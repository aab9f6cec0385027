// Types for bench/lib/fleet-sim.js, for test/integration/fleet-sim.test.ts.
import type { ControllerLink, AgentCredentials } from '@bulkhead/agent';
import type { ContainerDelta, ContainerFacts } from '@bulkhead/shared';

export interface RunningController {
  pid: number | undefined;
  grpcAddress: string;
  apiPort: number;
  ca: Buffer;
  caFingerprint: string;
  adminApiKey: string;
  lines: string[];
  stop(): Promise<void>;
}

export function startController(opts: {
  dir: string;
  databaseUrl?: string;
  cpus?: string;
  heartbeatInterval?: string;
  /** `--offline-after`, e.g. "3s". */
  offlineAfter?: string;
  /** More `serve` arguments, e.g. ['--database-pool-size', '2']. */
  extraArgs?: string[];
  logLevel?: string;
  onLine?: (line: Record<string, unknown>) => void;
}): Promise<RunningController>;

export interface ApiResponse {
  status: number;
  body: string;
  json: any;
}

export interface ApiClient {
  get(path: string): Promise<ApiResponse>;
  post(path: string, body: unknown): Promise<ApiResponse>;
  all(path: string): Promise<any[]>;
  close(): void;
}

export function apiClient(opts: { port: number; ca: Buffer; apiKey: string; maxSockets?: number }): ApiClient;

export class SimInventory {
  readonly items: Map<string, ContainerFacts>;
  inventory(): ContainerFacts[];
  subscribe(l: (d: ContainerDelta) => void): () => void;
  start(): ContainerFacts;
  stop(): ContainerFacts | undefined;
  random(): ContainerFacts | undefined;
}

export interface SimHost {
  idx: number;
  hostname: string;
  agentId: string;
  credentials: AgentCredentials;
  inventory: SimInventory;
  link: ControllerLink;
  snapshotAt: number | undefined;
}

export class Fleet {
  constructor(opts: { controller: RunningController; api: ApiClient; agents: number; containers: number; stateDir: string; seed?: number; enrollConcurrency?: number; linkOptions?: Partial<ConstructorParameters<typeof ControllerLink>[0]> });
  readonly hosts: SimHost[];
  readonly counts: { starts: number; stops: number; violations: number; violationsSkipped: number; reconnects: number; linkDowns: number };
  readonly linkErrors: Record<string, number>;
  readonly violationIds: { id: string; agentId: string }[];
  readonly started: string[];
  readonly stopped: string[];
  enrollAll(): Promise<void>;
  connectAll(opts?: { timeoutMs?: number; rampPerS?: number }): Promise<{ allMs?: number; firstMs?: number; p50Ms?: number; p99Ms?: number; stored: number; pending: number; pendingLinks: Record<string, number> }>;
  connected(): number;
  startChurn(rates: { startsPerS?: number; stopsPerS?: number; violationsPerS?: number }): () => void;
  reportViolation(h: SimHost): string | undefined;
  drained(timeoutMs?: number): Promise<boolean>;
  stop(): void;
}

export function summary(xs: number[]): { n: number; p50: number; p90: number; p99: number; max: number };
export function cpuSeconds(pid: number): number;
export function rssBytes(pid: number): number;
export function loadAverage(): number[];
