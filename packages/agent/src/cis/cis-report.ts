// Owns running the CIS Docker Benchmark 1.6.0 report: gather everything the
// checks read ONCE (daemon config, docker info, containers, images, host
// files), run every check of sections 1–7 in docker-bench-security 1.6.0's
// order, and produce its log.json shape plus a score.
//
// Score, as docker-bench computes it: +1 for each PASS and −1 for each WARN
// of a scored (Automated/Scored) check; Manual checks, INFO and NOTE never
// change it. `checks` counts every result. `summary.percent` is Bulkhead's
// addition: passed scored checks / (passed + warned scored checks).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VERSION } from '@bulkhead/shared';
import { auditedContainerdSocket, loadDaemonConfig, DEFAULT_DOCKER_SOCKET_PATH, type DockerInfo } from '../lockdown/daemon-config';
import { readHostAccounts } from '../lockdown/groups';
import { evaluateContainers } from './audit-policy';
import { cisPolicy } from './cis-policy';
import { inspectContainers } from './container-inventory';
import type { CisCheck, CisContext, CisDocker, CisImage, CisReport, CisResult, CisSection } from './cis-types';
import { SECTION_1 } from './section-1-host';
import { SECTION_2 } from './section-2-daemon';
import { SECTION_3 } from './section-3-files';
import { SECTION_4 } from './section-4-images';
import { SECTION_5 } from './section-5-runtime';
import { SECTION_6, SECTION_7 } from './section-6-7';

export const DOCKER_BENCH_VERSION = '1.6.0';
export const CIS_BENCHMARK = 'CIS Docker Benchmark 1.6.0';

/** Every section in report order. */
export const CIS_SECTIONS: ReadonlyArray<{ id: string; desc: string; checks: readonly CisCheck[] }> = [SECTION_1, SECTION_2, SECTION_3, SECTION_4, SECTION_5, SECTION_6, SECTION_7];

/** All check ids in report order. */
export const CIS_CHECK_IDS: readonly string[] = CIS_SECTIONS.flatMap((s) => s.checks.map((c) => c.id));

export interface CisReportOptions {
  docker: CisDocker;
  /** Where the host's filesystem is visible (service files, /etc/docker, auditd rules …). Default "/". */
  hostRoot?: string | undefined;
  /** The host's /proc. Default `<hostRoot>/proc`. */
  procRoot?: string | undefined;
  /** The Docker socket the agent talks to (host path). Default /var/run/docker.sock. */
  dockerSocketPath?: string | undefined;
  /** Default /run/containerd/containerd.sock. */
  containerdSocketPath?: string | undefined;
  /** Default: dockerd's --config-file, else /etc/docker/daemon.json. */
  daemonJsonPath?: string | undefined;
  dockerdPid?: number | undefined;
  /** Trusted members of the docker group (docker-bench's -u); without it 1.1.2 is INFO. */
  trustedUsers?: readonly string[] | undefined;
  /** Environment for 4.5 (DOCKER_CONTENT_TRUST). Default process.env. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Clock. Default `() => new Date()`. */
  now?: (() => Date) | undefined;
  /** Only these checks or sections ("2", "5.4", "1.1"); default all. */
  only?: readonly string[] | undefined;
  /** Leave these checks or sections out. */
  exclude?: readonly string[] | undefined;
  /** Parallel image/container inspects. Default 8. */
  concurrency?: number | undefined;
}

function selected(id: string, only: readonly string[] | undefined, exclude: readonly string[] | undefined): boolean {
  const covers = (sel: string): boolean => id === sel || id.startsWith(`${sel}.`);
  if (exclude?.some(covers)) return false;
  return only === undefined || only.length === 0 || only.some(covers);
}

/** Runs the report. Throws BK_ERR_DOCKER_UNAVAILABLE-style errors from the Docker client when the engine does not answer. */
export async function runCisReport(o: CisReportOptions): Promise<CisReport> {
  const now = o.now ?? (() => new Date());
  const started = now();
  const ctx = await gatherContext(o, started);
  const tests: CisSection[] = [];
  for (const section of CIS_SECTIONS) {
    const results: CisResult[] = [];
    for (const check of section.checks) {
      if (!selected(check.id, o.only, o.exclude)) continue;
      // Many checks are synchronous: without this the whole report would be one
      // long turn of the event loop, and the agent's enforcement would wait for it.
      await yieldToEventLoop();
      let outcome;
      try {
        outcome = await check.run(ctx);
      } catch (e) {
        outcome = { result: 'INFO' as const, details: `Check could not run: ${(e as Error).message}` };
      }
      if (outcome === null) continue;
      const r: CisResult = { id: check.id, desc: check.desc, result: outcome.result };
      if (outcome.details !== undefined && outcome.details !== '') r.details = outcome.details;
      if (outcome.items !== undefined && outcome.items.length > 0) r.items = outcome.items;
      if (outcome.result !== 'PASS') {
        r.remediation = check.remediation;
        r['remediation-impact'] = check.impact;
      }
      r.scored = check.scored;
      results.push(r);
    }
    if (results.length > 0) tests.push({ id: section.id, desc: section.desc, results });
  }
  return assemble(tests, started, now());
}

/** Lets pending I/O (engine events, the controller link) run before the next step of an audit. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Builds the log.json document from results (exported for tests and for re-scoring stored results). */
export function assemble(tests: CisSection[], start: Date, end: Date): CisReport {
  let score = 0;
  let checks = 0;
  const summary = { pass: 0, warn: 0, info: 0, note: 0, percent: 100 };
  let scoredPass = 0;
  let scoredWarn = 0;
  for (const s of tests) {
    for (const r of s.results) {
      checks++;
      if (r.result === 'PASS') summary.pass++;
      else if (r.result === 'WARN') summary.warn++;
      else if (r.result === 'INFO') summary.info++;
      else summary.note++;
      if (r.scored) {
        if (r.result === 'PASS') {
          score++;
          scoredPass++;
        } else if (r.result === 'WARN') {
          score--;
          scoredWarn++;
        }
      }
    }
  }
  summary.percent = scoredPass + scoredWarn === 0 ? 100 : Math.round((scoredPass / (scoredPass + scoredWarn)) * 1000) / 10;
  return {
    dockerbenchsecurity: DOCKER_BENCH_VERSION,
    start: Math.floor(start.getTime() / 1000),
    tests,
    checks,
    score,
    end: Math.floor(end.getTime() / 1000),
    benchmark: CIS_BENCHMARK,
    generator: `bulkhead-agent ${VERSION}`,
    summary,
  };
}

async function gatherContext(o: CisReportOptions, now: Date): Promise<CisContext> {
  const hostRoot = o.hostRoot ?? '/';
  const dockerSocketPath = o.dockerSocketPath ?? DEFAULT_DOCKER_SOCKET_PATH;
  const concurrency = o.concurrency ?? 8;
  const [daemon, version, running, all, imageList, accounts, auditRules] = await Promise.all([
    loadDaemonConfig({ docker: o.docker, hostRoot, procRoot: o.procRoot, dockerSocketPath, daemonJsonPath: o.daemonJsonPath, dockerdPid: o.dockerdPid }),
    o.docker.version() as Promise<{ Version?: string }>,
    inspectContainers(o.docker, { concurrency }),
    o.docker.listContainers({ all: true }),
    o.docker.listImages(),
    readHostAccounts(hostRoot),
    readAuditRules(hostRoot),
  ]);
  if (daemon.info === undefined) throw new Error(`docker info failed: ${daemon.infoError ?? 'no answer'}`);
  const images = await describeImages(o.docker, imageList, concurrency);
  // As the lockdown audit: the socket dockerd was started with, else the default.
  const containerdSocketPath = auditedContainerdSocket(daemon, o.containerdSocketPath);
  const policy = cisPolicy([dockerSocketPath, containerdSocketPath]);
  return {
    now,
    hostRoot,
    procRoot: daemon.procRoot,
    dockerSocketPath,
    containerdSocketPath,
    daemon,
    info: daemon.info as DockerInfo,
    serverVersion: version?.Version ?? daemon.info.ServerVersion ?? '',
    running,
    containerCount: all.length,
    images,
    imagesInUse: new Set(all.map((c) => c.ImageID)),
    accounts,
    auditRules,
    policy: evaluateContainers(policy, running.map((r) => r.facts), now),
    trustedUsers: o.trustedUsers,
    env: o.env ?? process.env,
    docker: o.docker,
  };
}

async function describeImages(docker: CisDocker, list: Awaited<ReturnType<CisDocker['listImages']>>, concurrency: number): Promise<CisImage[]> {
  const out: CisImage[] = [];
  for (let i = 0; i < list.length; i += concurrency) {
    out.push(
      ...(await Promise.all(
        list.slice(i, i + concurrency).map(async (img): Promise<CisImage> => {
          const h = docker.getImage(img.Id);
          const [inspect, history] = await Promise.all([
            h.inspect().catch(() => undefined),
            h.history ? h.history().catch(() => []) : Promise.resolve([]),
          ]);
          const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
          return {
            id: img.Id,
            name: tags.length > 0 ? tags.join(',') : img.Id.replace(/^sha256:/, '').slice(0, 12),
            inspect,
            history: (Array.isArray(history) ? history : []).map((l: { CreatedBy?: unknown }) => (typeof l?.CreatedBy === 'string' ? l.CreatedBy : '')),
          };
        }),
      )),
    );
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Non-comment lines of the host's persistent auditd rules. */
export async function readAuditRules(hostRoot: string): Promise<string[]> {
  const files = [join(hostRoot, 'etc/audit/audit.rules')];
  try {
    const dir = join(hostRoot, 'etc/audit/rules.d');
    for (const f of (await readdir(dir)).sort()) if (f.endsWith('.rules')) files.push(join(dir, f));
  } catch {
    // no rules.d
  }
  const texts = await Promise.all(files.map((f) => readFile(f, 'utf8').catch(() => '')));
  return texts.flatMap((t) => t.split('\n')).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith(';'));
}
