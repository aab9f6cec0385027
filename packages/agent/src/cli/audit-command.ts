// `bulkhead-agent audit`: the CIS Docker Benchmark 1.6.0 report, one-shot,
// without a controller. Text by default, docker-bench-security's log.json
// shape with --json. Exit codes: 0 — report written (whatever it found);
// 4 — --fail-on was given and a result at or above that level was found
// (WARN > INFO > NOTE; PASS never fails); 1 — the engine could not be audited
// (e.g. not reachable); 2 — bad arguments.
import { Command, Option } from 'commander';
import { BulkheadError } from '@bulkhead/shared';
import { createDockerClient, parseDockerHost, resolveDockerHost } from '../docker/client';
import type * as CisFormatModule from '../cis/cis-format';
import type * as CisReportModule from '../cis/cis-report';
import type { CisReportOptions } from '../cis/cis-report';
import type { CisReport, CisResultKind } from '../cis/cis-types';

/** The exit code when --fail-on is met. */
export const AUDIT_FAIL_EXIT_CODE = 4;

export type FailOn = 'warn' | 'info' | 'note';

const LEVEL: Record<CisResultKind, number> = { PASS: 0, NOTE: 1, INFO: 2, WARN: 3 };
const FAIL_LEVEL: Record<FailOn, number> = { note: 1, info: 2, warn: 3 };

export interface AuditCliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/**
 * Thrown (after the report is written) when --fail-on is met. `main` should
 * return `exitCode` for it without printing anything more: the command
 * already wrote the report and a one-line reason to stderr.
 */
export class AuditFailOnError extends Error {
  readonly exitCode = AUDIT_FAIL_EXIT_CODE;
  constructor(
    readonly failOn: FailOn,
    readonly failing: ReadonlyArray<{ id: string; result: CisResultKind }>,
  ) {
    super(`audit: ${failing.length} result(s) at or above ${failOn.toUpperCase()} (${failing.slice(0, 10).map((f) => `${f.id} ${f.result}`).join(', ')}${failing.length > 10 ? ', …' : ''})`);
    this.name = 'AuditFailOnError';
  }
}

/** Results at or above the --fail-on level. */
export function failingResults(report: CisReport, failOn: FailOn): Array<{ id: string; result: CisResultKind }> {
  const min = FAIL_LEVEL[failOn];
  return report.tests.flatMap((s) => s.results.filter((r) => LEVEL[r.result] >= min).map((r) => ({ id: r.id, result: r.result })));
}

interface AuditCommandOptions {
  json?: boolean;
  failOn?: FailOn;
  dockerHost?: string;
  hostRoot: string;
  procRoot?: string;
  containerdSocket?: string;
  daemonJson?: string;
  only?: string[];
  exclude?: string[];
  trustedUsers?: string[];
  remediation?: boolean;
  color?: boolean;
}

/** Injection point for tests: how the report is produced (default: the real engine). */
export type AuditRunner = (opts: CisReportOptions) => Promise<CisReport>;

// The CIS checks (~130 KB of source) load only when `audit` runs, not in the
// agent daemon that shares this CLI (its periodic audit runs in a child process).
const runCisReport: AuditRunner = (opts) => (require('../cis/cis-report') as typeof CisReportModule).runCisReport(opts);

const list = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

/** Adds `audit` to the agent CLI. */
export function registerAuditCommand(program: Command, io: AuditCliIo, run: AuditRunner = runCisReport): Command {
  return program
    .command('audit')
    .description('run the CIS Docker Benchmark 1.6.0 checks (those docker-bench-security 1.6.0 automates) against the local engine and host, once; no controller needed')
    .option('--json', "print docker-bench-security's log.json shape (plus benchmark, generator and summary)")
    .addOption(new Option('--fail-on <level>', 'exit 4 when any result is at or above this level (WARN > INFO > NOTE)').choices(['warn', 'info', 'note']))
    .addOption(new Option('--docker-host <url>', 'Docker engine to audit (unix:///path or tcp://…); default DOCKER_HOST or /var/run/docker.sock').env('BULKHEAD_DOCKER_HOST'))
    .addOption(new Option('--host-root <dir>', "where the host's filesystem is visible (an agent in a container: /host)").default('/'))
    .option('--proc-root <dir>', "the host's /proc (default <host-root>/proc)")
    .option('--containerd-socket <path>', 'containerd socket (host path; default: dockerd\'s --containerd, else /run/containerd/containerd.sock)')
    .option('--daemon-json <path>', "daemon.json (host path; default dockerd's --config-file, else /etc/docker/daemon.json)")
    .option('--only <ids>', 'only these checks or sections, comma-separated (e.g. 2,5.4)', list)
    .option('--exclude <ids>', 'leave out these checks or sections, comma-separated', list)
    .option('--trusted-users <users>', 'trusted members of the docker group, comma-separated (check 1.1.2)', list)
    .option('--remediation', 'print the remediation under every non-PASS result (text output)')
    .option('--color', 'colour the text output')
    .addHelpText('after', '\nExit status: 0 report written; 4 --fail-on level reached; 1 the engine could not be audited; 2 bad arguments.\n\nExamples:\n  bulkhead-agent audit\n  bulkhead-agent audit --json --fail-on warn > cis.json\n  bulkhead-agent audit --only 5 --docker-host unix:///run/docker.sock')
    .action(async (o: AuditCommandOptions) => {
      const hostUrl = resolveDockerHost(o.dockerHost);
      const endpoint = parseDockerHost(hostUrl);
      const docker = createDockerClient({ dockerHost: hostUrl, timeoutMs: 60_000 });
      let report: CisReport;
      try {
        report = await run({
          docker,
          hostRoot: o.hostRoot,
          procRoot: o.procRoot,
          // File checks (3.15/3.16) look at the socket we audit through; over TCP, the default path.
          dockerSocketPath: endpoint.kind === 'unix' ? endpoint.socketPath : undefined,
          containerdSocketPath: o.containerdSocket,
          daemonJsonPath: o.daemonJson,
          only: o.only,
          exclude: o.exclude,
          trustedUsers: o.trustedUsers,
        });
      } catch (cause) {
        throw new BulkheadError('BK_ERR_DOCKER_UNAVAILABLE', `cannot audit the engine at ${hostUrl}: ${(cause as Error).message}`, { cause });
      }
      io.out(o.json ? `${JSON.stringify(report, null, 2)}\n` : (require('../cis/cis-format') as typeof CisFormatModule).formatCisText(report, { color: o.color === true, remediation: o.remediation === true }));
      if (o.failOn) {
        const failing = failingResults(report, o.failOn);
        if (failing.length > 0) {
          const e = new AuditFailOnError(o.failOn, failing);
          io.err(`${e.message}\n`);
          throw e;
        }
      }
    });
}
