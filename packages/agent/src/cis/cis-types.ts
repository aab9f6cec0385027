// The CIS Docker Benchmark 1.6.0 report's contract: result kinds, the shape
// of docker-bench-security's log.json (kept field for field so existing
// tooling reads ours), and the check definition every section file uses.
import type Dockerode from 'dockerode';
import type { ContainerFacts__Output } from '@bulkhead/shared';
import type { DaemonConfig, DockerInfo } from '../lockdown/daemon-config';
import type { HostAccounts } from '../lockdown/groups';
import type { AuditedContainer } from './container-inventory';
import type { RuleHit } from './audit-policy';

/**
 * As in docker-bench-security: PASS — the recommendation is met; WARN — it is
 * not (for a scored check this costs a point); INFO — facts to review, or the
 * check does not apply (file not found, no containers); NOTE — a manual
 * check that cannot be automated, always reported for a human to do.
 */
export type CisResultKind = 'PASS' | 'WARN' | 'INFO' | 'NOTE';

/** One entry of log.json's `tests[].results[]`. */
export interface CisResult {
  id: string;
  desc: string;
  result: CisResultKind;
  /** Free text; for a list, "<what>: <item> <item> …" as docker-bench writes it. */
  details?: string;
  /** What the result is about: container names, image tags, file paths. */
  items?: string[];
  /** How to fix (on every non-PASS result; docker-bench prints it only with -p). */
  remediation?: string;
  'remediation-impact'?: string;
  /** Bulkhead addition: whether this check counts in `score` (docker-bench's "Scored"/"Automated"). */
  scored?: boolean;
}

/** One section of log.json's `tests[]`. */
export interface CisSection {
  id: string;
  desc: string;
  results: CisResult[];
}

/** docker-bench-security's log.json, plus Bulkhead's additions (benchmark, generator, summary). */
export interface CisReport {
  /** The docker-bench-security version whose checks and ids this report reproduces. */
  dockerbenchsecurity: string;
  /** Unix seconds. */
  start: number;
  tests: CisSection[];
  /** Number of results. */
  checks: number;
  /** +1 per PASS and −1 per WARN of a scored check, as docker-bench computes it. */
  score: number;
  /** Unix seconds. */
  end: number;
  benchmark: string;
  generator: string;
  summary: CisSummary;
}

export interface CisSummary {
  pass: number;
  warn: number;
  info: number;
  note: number;
  /** Scored checks that passed / scored checks that passed or warned, in percent (0–100, one decimal); 100 when none. */
  percent: number;
}

/** What a check returns; null leaves it out of the report (e.g. --checks excluded it). */
export interface CisOutcome {
  result: CisResultKind;
  details?: string | undefined;
  items?: string[] | undefined;
}

/** The Docker API calls the CIS report makes. A Dockerode instance satisfies it. */
export interface CisDocker {
  info(): Promise<unknown>;
  version(): Promise<unknown>;
  listContainers(options?: Dockerode.ContainerListOptions): Promise<Dockerode.ContainerInfo[]>;
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo>; top?(options?: {}): Promise<unknown> };
  listImages(options?: Dockerode.ListImagesOptions): Promise<Dockerode.ImageInfo[]>;
  getImage(id: string): { inspect(): Promise<Dockerode.ImageInspectInfo>; history?(): Promise<unknown> };
  listNetworks?(options?: {}): Promise<Dockerode.NetworkInspectInfo[]>;
}

/** An image with what section 4 reads about it. */
export interface CisImage {
  id: string;
  /** "repo:tag" names, or the short id for an untagged image. */
  name: string;
  inspect: Dockerode.ImageInspectInfo | undefined;
  /** `CreatedBy` of each history layer, newest first. */
  history: string[];
}

/** Everything the checks read, gathered once per run. */
export interface CisContext {
  now: Date;
  hostRoot: string;
  procRoot: string;
  dockerSocketPath: string;
  containerdSocketPath: string;
  daemon: DaemonConfig;
  info: DockerInfo;
  serverVersion: string;
  running: AuditedContainer[];
  /** Running and stopped. */
  containerCount: number;
  images: CisImage[];
  /** Image ids some container (running or not) was created from. */
  imagesInUse: Set<string>;
  accounts: HostAccounts;
  /** Non-comment lines of /etc/audit/audit.rules and /etc/audit/rules.d/*.rules. */
  auditRules: string[];
  /** Evaluator findings per audit rule id (see cis-policy.ts). */
  policy: Map<string, RuleHit[]>;
  trustedUsers: readonly string[] | undefined;
  env: NodeJS.ProcessEnv;
  docker: CisDocker;
}

export interface CisCheck {
  id: string;
  /** As docker-bench-security 1.6.0 prints it, "(Automated)/(Manual)/(Scored)" suffix included. */
  desc: string;
  /** Counts in the score (Automated/Scored checks); Manual checks never change it. */
  scored: boolean;
  remediation: string;
  impact: string;
  run(ctx: CisContext): CisOutcome | null | Promise<CisOutcome | null>;
}

export type { ContainerFacts__Output };
