#!/usr/bin/env node
// `bulkhead-agent`: enroll this host with a controller, then run the daemon.
import { Command, Option } from 'commander';
import { BulkheadError, VERSION, createLogger, cliExitCode, exitQuietlyOnEpipe } from '@bulkhead/shared';
import { isEnrolled } from '../state/agent-state';
import { AuditFailOnError, registerAuditCommand } from './audit-command';
import { PruneFailedError, registerPruneImagesCommand } from './prune-images-command';
import { enroll } from '../enroll/enroll';
import { parseControllerList } from '../link/controller-address';
import { Agent } from '../agent';
import { resolveAgentOptions } from '../agent-options';
import { addHostAuditRunOptions, type HostAuditScheduleInput } from '../cis/host-audit-options';

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const defaultIo: CliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** `--controller`: repeatable, each value one address or a comma-separated list (checked by parseControllerList). */
function controllerOption(description: string, env: string): Option {
  return new Option('--controller <host:port,...>', description)
    .env(env)
    .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
}

function stateDirOption(): Option {
  return new Option('--state-dir <dir>', "agent state directory (its key, certificate and the controller's CA)")
    .env('BULKHEAD_STATE_DIR')
    .default('/var/lib/bulkhead-agent');
}

export function buildProgram(io: CliIo = defaultIo): Command {
  const program = new Command('bulkhead-agent')
    .description('Bulkhead agent: watches the local Docker engine and reports to the controller over mutual-TLS gRPC.')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  program
    .command('enroll')
    .description('trade a one-time join token for this agent\'s certificate (the private key is generated here and never leaves the host)')
    .addOption(controllerOption("the controller's agent gRPC address; several replicas of one controller comma-separated or with the flag repeated (tried in order, all saved for `run`)", 'BULKHEAD_CONTROLLER').makeOptionMandatory())
    .addOption(new Option('--token <token>', 'one-time join token from `bulkhead-controller token create`').env('BULKHEAD_JOIN_TOKEN').makeOptionMandatory())
    .addOption(new Option('--ca-fingerprint <sha256:hex>', 'fingerprint of the controller CA, from `bulkhead-controller ca-fingerprint`').env('BULKHEAD_CA_FINGERPRINT').makeOptionMandatory())
    .addOption(stateDirOption())
    .option('--force', 'replace an existing identity in the state directory')
    .addHelpText('after', '\nExample:\n  bulkhead-agent enroll --controller ctl.example.com:7443 --token bkj_… --ca-fingerprint sha256:… --state-dir /var/lib/bulkhead-agent\n  bulkhead-agent enroll --controller ctl-a.example.com:7443,ctl-b.example.com:7443 --token bkj_… --ca-fingerprint sha256:…')
    .action(async (o: { controller: string[]; token: string; caFingerprint: string; stateDir: string; force?: boolean }) => {
      const controllers = parseControllerList(o.controller);
      if (isEnrolled(o.stateDir) && !o.force) {
        throw new BulkheadError('BK_ERR_ALREADY_INITIALIZED', `${o.stateDir} already holds an agent identity; pass --force to enroll again`);
      }
      const logger = createLogger({ name: 'bulkhead-agent', level: 'warn' });
      const creds = await enroll({ controller: controllers, token: o.token, caFingerprint: o.caFingerprint, stateDir: o.stateDir, logger });
      io.out(`enrolled as ${creds.identity.agentId}; certificate valid until ${creds.identity.certNotAfter}\nstart the agent with: bulkhead-agent run --state-dir ${o.stateDir}\n`);
    });

  const runCommand = program
    .command('run')
    .description('run the agent daemon in the foreground (systemd runs it this way)')
    .addOption(stateDirOption())
    .addOption(new Option('--docker-host <url>', 'Docker engine to watch (unix:///path or tcp://…); default DOCKER_HOST or /var/run/docker.sock').env('BULKHEAD_DOCKER_HOST'))
    .addOption(controllerOption('override the controller addresses saved at enrollment; several comma-separated or with the flag repeated (the agent moves to the next when a connection fails or its stream drops)', 'BULKHEAD_CONTROLLER_OVERRIDE'))
    .addOption(new Option('--host-label <key=value...>', 'label this host (repeatable); policies can scope rules by host labels'))
    .addOption(new Option('--reconcile-interval <duration>', 'how often the full container list is re-read to catch missed events').env('BULKHEAD_RECONCILE_INTERVAL').default('30s'))
    .addOption(new Option('--authz-socket <path>', 'serve the Docker authorization plugin on this socket (dockerd: "authorization-plugins": ["bulkhead"])').env('BULKHEAD_AUTHZ_SOCKET').default('/run/docker/plugins/bulkhead.sock'))
    .option('--no-authz', 'do not serve the Docker authorization plugin (no prevention; reaction only)')
    .addOption(new Option('--policy-file <file>', 'a local policy (YAML/JSON) enforced until the controller sends one').env('BULKHEAD_POLICY_FILE'))
    .addOption(new Option('--metrics-listen <addr>', 'Prometheus metrics listen address (plain HTTP, GET /metrics; loopback unless --metrics-allow-remote)').env('BULKHEAD_METRICS_LISTEN').default('127.0.0.1:9465'))
    .option('--no-metrics', 'do not serve Prometheus metrics')
    .option('--metrics-allow-remote', 'allow a non-loopback --metrics-listen address (metrics have no authentication)')
    // Live usage: reach resolveAgentOptions as o.usageInterval / o.usageReportInterval through `...o`.
    .addOption(new Option('--usage-interval <duration>', 'how often every running container\'s CPU, memory and pids are read from its cgroup (usage rules, usage reports); 0 = off').env('BULKHEAD_USAGE_INTERVAL').default('5s'))
    .addOption(new Option('--usage-report-interval <duration>', 'how often usage that changed is sent to the controller').env('BULKHEAD_USAGE_REPORT_INTERVAL').default('30s'))
    .addOption(new Option('--usage-resource-interval <duration>', 'how often each container\'s writable layer, logs and network counters are read (a whole number of --usage-interval ticks)').env('BULKHEAD_USAGE_RESOURCE_INTERVAL').default('60s'))
    .option('--no-disk-usage', 'do not measure containers\' writable layers and log files on the host (disk-usage rules then find nothing)')
    .option('--no-net-usage', 'do not read containers\' network namespace counters and sockets (network-usage and connections rules then find nothing)')
    .option('--no-blkio-usage', 'do not read containers\' block IO from their cgroups')
    .addOption(new Option('--data-root-threshold <percent>', 'a host finding (sent with the audit report, naming the containers that grew it most) when the engine\'s data root or the containers\' log filesystem is this full, in bytes or inodes; checked every minute; 0 = off').env('BULKHEAD_DATA_ROOT_THRESHOLD').default('85'))
    .addOption(new Option('--heap-trim-interval <duration>', 'how often an idle agent gives back V8 heap it no longer uses (a full collection when the heap has ≥ 4 MiB slack and the event loop was idle); auto = 30s, or off when node runs with --optimize-for-size (V8 then does it incrementally); 0 = off').env('BULKHEAD_HEAP_TRIM_INTERVAL').default('auto'))
    // Image signatures (rules of type image-signature): registry access and the verdict cache.
    .addOption(new Option('--registry-certs-dir <dir>', 'per-registry CA certificates for image-signature checks, in Docker\'s layout DIR/HOST:PORT/ca.crt (plus the system trust store)').env('BULKHEAD_REGISTRY_CERTS_DIR').default('/etc/docker/certs.d'))
    .addOption(new Option('--registry-auth-file <file>', 'registry credentials for image-signature checks, in Docker\'s config.json format (auths, credHelpers, credsStore); must not be readable by other users').env('BULKHEAD_REGISTRY_AUTH_FILE'))
    .addOption(new Option('--signature-timeout <duration>', 'how long one image-signature verification may take, every registry request included; past it the verdict is "unreachable"').env('BULKHEAD_SIGNATURE_TIMEOUT').default('1500ms'))
    .addOption(new Option('--signature-cache-ttl <duration>', 'how long a verified image-signature verdict is reused without asking the registry (unsigned/rejected: at most 60s, unreachable: 10s); 0 = no cache').env('BULKHEAD_SIGNATURE_CACHE_TTL').default('10m'))
    .addOption(new Option('--log-level <level>', 'log level').env('BULKHEAD_LOG_LEVEL').default('info').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addHelpText('after', '\nExample:\n  bulkhead-agent run --state-dir /var/lib/bulkhead-agent --docker-host unix:///var/run/docker.sock\n  bulkhead-agent run --audit-interval 30m --lockdown-fix docker-socket-mode,docker-socket-ownership\n  bulkhead-agent run --image-prune --image-prune-older-than 14 --image-prune-include \'registry.example.com/ci/*\'');
  addHostAuditRunOptions(runCommand) // host audit
    .action(async (o: { stateDir: string; dockerHost?: string; controller?: string[]; hostLabel?: string[]; reconcileInterval: string; logLevel: string; authzSocket: string; authz: boolean; policyFile?: string; metricsListen: string; metrics: boolean; metricsAllowRemote?: boolean; diskUsage: boolean; netUsage: boolean; blkioUsage: boolean; heapTrimInterval?: string; dataRootThreshold?: string; registryCertsDir?: string; registryAuthFile?: string; signatureTimeout?: string; signatureCacheTtl?: string } & HostAuditScheduleInput) => {
      const opts = resolveAgentOptions({ ...o, authzSocket: o.authz === false ? false : o.authzSocket, metricsListen: o.metrics === false ? false : o.metricsListen, audit: o });
      const logger = createLogger({ name: 'bulkhead-agent', level: o.logLevel });
      const agent = await Agent.start(opts, logger);
      await new Promise<void>((resolve) => {
        const stop = (sig: string): void => {
          logger.info({ signal: sig }, 'shutting down');
          agent.stop().then(resolve, (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  registerAuditCommand(program, io);
  registerPruneImagesCommand(program, io); // image hygiene

  return program;
}

export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    // The audit already wrote its report and the reason; only the exit code is left.
    if (err instanceof AuditFailOnError) return err.exitCode;
    if (err instanceof PruneFailedError) return err.exitCode; // the records and the reason are already written
    return cliExitCode(err, io.err);
  }
}

if (require.main === module) {
  exitQuietlyOnEpipe();
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // A run that failed after some of its parts started (the plugin socket, the Docker
    // watcher) must not linger half-started with those still holding the process open.
    if (code !== 0) process.exit(code);
  });
}
