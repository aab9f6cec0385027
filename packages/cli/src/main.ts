#!/usr/bin/env node
// Owns the `bulkhead` ops CLI: argument parsing, configuration from flags
// and environment, output (tables or --json) and exit codes:
//   0 ok · 1 the API returned an error · 2 usage error · 3 cannot connect (network/TLS).
// Requests go through ApiClient; rendering through ./render.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { VERSION } from '@bulkhead/client';
import { ApiClient, ApiError, ConnectionError } from './client';
import { renderAgent, renderAgentTable, renderContainer, renderContainerTable, renderUsageHistory } from './render';
import type { CommandContext } from './commands/context';
import { registerPolicyCommands } from './commands/policy';
import { registerViolationCommands } from './commands/violations';
import { registerScanCommands } from './commands/scans';
import { registerImageCommands } from './commands/images';
import { registerWebhookCommands } from './commands/webhooks';
import { registerAlertCommands } from './commands/alerts';
import { registerActionCommand } from './commands/action';
// identity and access, audit trail
import { cachedToken, readTokenCache, registerLoginCommands } from './commands/login';
import { registerKeyCommands } from './commands/keys';
import { registerTokenCommands } from './commands/tokens';
import { CommandFailed, registerAuditLogCommands } from './commands/audit-log';
// host audit reports
import { registerHostAuditCommand } from './commands/host-audit';
import { registerWatchCommand } from './commands/watch';
import type { Agent as AgentDto } from '@bulkhead/client';
import { systemTrust } from './trust';

export const EXIT_OK = 0;
export const EXIT_API_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONNECTION = 3;

export interface OpsCliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Where BULKHEAD_API, BULKHEAD_CA, BULKHEAD_API_KEY (and SSL_CERT_FILE, trust.ts) are read. Default process.env. */
  env: Record<string, string | undefined>;
  now: () => Date;
}

const defaultIo: OpsCliIo = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
  now: () => new Date(),
};

/** A mistake in how the CLI was invoked or configured (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

interface GlobalOpts {
  api?: string;
  ca?: string;
  apiKey?: string;
  json?: boolean;
}

const GLOBAL_HELP = `
Connection settings (flag, or environment variable):
  --api URL        BULKHEAD_API      controller API, e.g. https://controller.example:8443
  --ca FILE        BULKHEAD_CA       CA certificate of the API: the controller's ca.crt (in its data directory),
                                     or the CA of a certificate given to \`serve --api-tls-cert\`;
                                     without it, the system trust store (SSL_CERT_FILE, /etc/ssl/certs/…)
  --api-key KEY    BULKHEAD_API_KEY  API key "bk_…"; prefer the variable (argv is visible in ps)
Without an API key, the token cached by \`bulkhead login\` is used (and its API URL and CA, unless given).

Exit codes: 0 ok, 1 the API returned an error, 2 usage error, 3 cannot connect (network or TLS),
4 a bulkhead audit --fail-on level was reached.

Examples:
  export BULKHEAD_API=https://controller.example:8443 BULKHEAD_CA=/etc/bulkhead/ca.crt
  export BULKHEAD_API_KEY=$(cat /var/lib/bulkhead-controller/admin.apikey)
  bulkhead agents
  bulkhead agents get agt_3f9c2a7b1d0e4f5a6b7c
  bulkhead containers --state running --label com.example.team=payments
  bulkhead containers get agt_3f9c2a7b1d0e4f5a6b7c web
  bulkhead containers usage agt_3f9c2a7b1d0e4f5a6b7c web
  bulkhead --json containers --image nginx
  bulkhead policy dry-run policy.yaml && bulkhead policy apply policy.yaml
  bulkhead violations --since 1h
  bulkhead webhooks add --url https://siem.example/hooks/bulkhead --min-severity high
  bulkhead alerts --since 1h
  bulkhead watch --type alert.violation
  bulkhead action agt_3f9c2a7b1d0e4f5a6b7c web pause
  bulkhead login --ttl 1h && bulkhead keys create ci --role operator --project payments --expires 90d
  bulkhead audit-log verify
  bulkhead audit web-01 --fail-on-finding high
`;

/** Runs the CLI; resolves to the process exit code. Never calls process.exit. */
export async function main(argv: string[], ioIn: Partial<OpsCliIo> = {}): Promise<number> {
  const io: OpsCliIo = { ...defaultIo, ...ioIn };
  let code = EXIT_OK;

  const program = new Command('bulkhead')
    .description('Query a Bulkhead controller: enrolled agents, the containers they report, the fleet policy and its violations.')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(add --help for usage)')
    .version(VERSION, '-V, --version')
    .addOption(new Option('--api <url>', 'controller API base URL [env: BULKHEAD_API]'))
    .addOption(new Option('--ca <file>', "PEM CA certificate to trust (default: the system trust store) [env: BULKHEAD_CA]"))
    .addOption(new Option('--api-key <key>', 'API key bk_… [env: BULKHEAD_API_KEY]'))
    .option('--json', 'print the API response as JSON instead of a table')
    .addHelpText('after', GLOBAL_HELP);

  const client = (cmd: Command): { api: ApiClient; json: boolean } => {
    const g = cmd.optsWithGlobals<GlobalOpts>();
    return { api: makeClient(g, io), json: g.json === true };
  };

  // ---- agents ---------------------------------------------------------------
  const agents = program
    .command('agents')
    .description('enrolled agents (default: list)')
    .addHelpText('after', '\nExamples:\n  bulkhead agents\n  bulkhead agents get agt_3f9c2a7b1d0e4f5a6b7c\n  bulkhead --json agents\n');

  agents
    .command('list', { isDefault: true })
    .description('list enrolled agents with status and container count')
    .addHelpText('after', '\nExamples:\n  bulkhead agents list\n  bulkhead --json agents list | jq -r \'.items[] | select(.status=="offline") | .id\'\n')
    .action(async (_opts: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const body = await api.listAllAgents(); // every page
      io.out(json ? toJson(body) : renderAgentTable(body.items, io.now()));
    });

  agents
    .command('revoke')
    .description('revoke an agent: its stream is closed at once and its certificate refused from then on (admin)')
    .argument('<id>', 'agent id (agt_…)')
    .addHelpText('after', '\nThe host must enroll again with a new join token to reconnect.\n\nExample:\n  bulkhead agents revoke agt_3f9c2a7b1d0e4f5a6b7c\n')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const body = await api.requestJson<AgentDto>('POST', `/v1/agents/${encodeURIComponent(id)}/revoke`, {});
      io.out(json ? toJson(body) : `revoked ${body.id} (${body.hostname}) at ${body.revokedAt ?? '?'}; it must enroll again with a new join token\n`);
    });

  agents
    .command('get')
    .description('show one agent: host facts, connection and certificate')
    .argument('<id>', 'agent id (agt_…)')
    .addHelpText('after', '\nExample:\n  bulkhead agents get agt_3f9c2a7b1d0e4f5a6b7c\n')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const body = await api.getAgent(id);
      io.out(json ? toJson(body) : renderAgent(body, io.now()));
    });

  // ---- containers -----------------------------------------------------------
  const containers = program
    .command('containers')
    .description('containers reported by the agents (default: list)')
    .addHelpText(
      'after',
      '\nFilters (--agent, --state, --image, --label, --all, --limit): bulkhead containers list --help\n' +
        '\nExamples:\n  bulkhead containers --agent agt_3f9c2a7b1d0e4f5a6b7c\n  bulkhead containers get agt_3f9c2a7b1d0e4f5a6b7c 3f2a9c1b7d4e\n',
    );

  containers
    .command('list', { isDefault: true })
    .description('list containers, optionally filtered (all filters must match)')
    .option('--agent <id>', 'only this agent')
    .option('--state <state>', 'only this state (running, exited, paused, created, …)')
    .option('--image <text>', 'image reference contains TEXT (case-insensitive)')
    .option('--label <label>', 'label KEY present, or KEY=VALUE; repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--all', 'include containers that were removed recently')
    .option('--limit <n>', 'show at most N containers (default: all)', parsePositiveInt)
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead containers --state running\n  bulkhead containers --image nginx --label env=prod --label team\n  bulkhead containers --agent agt_3f9c2a7b1d0e4f5a6b7c --all\n',
    )
    .action(async (o: { agent?: string; state?: string; image?: string; label: string[]; all?: boolean; limit?: number }, cmd: Command) => {
      const { api, json } = client(cmd);
      for (const l of o.label) if (l === '' || l.startsWith('=')) throw new UsageError(`--label "${l}": expected KEY or KEY=VALUE`);
      const items = await api.listAllContainers(
        { agent: o.agent, state: o.state, image: o.image, label: o.label, include_removed: o.all === true ? true : undefined },
        o.limit ?? Infinity,
      );
      io.out(json ? toJson({ items }) : renderContainerTable(items, io.now()));
    });

  containers
    .command('get')
    .description('show one container and its security-relevant facts')
    .argument('<agent>', 'agent id (agt_…)')
    .argument('<container>', 'container id, unique id prefix (12+ hex digits) or name')
    .addHelpText('after', '\nExamples:\n  bulkhead containers get agt_3f9c2a7b1d0e4f5a6b7c web\n  bulkhead containers get agt_3f9c2a7b1d0e4f5a6b7c 3f2a9c1b7d4e\n')
    .action(async (agent: string, ref: string, _opts: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const body = await api.getContainer(agent, ref);
      io.out(json ? toJson(body) : renderContainer(body, io.now()));
    });

  containers
    .command('usage')
    .description("show a container's recent usage history as the controller keeps it (one point per interval, default a minute, up to 60)")
    .argument('<agent>', 'agent id (agt_…)')
    .argument('<container>', 'container id, unique id prefix (12+ hex digits) or name')
    .addHelpText(
      'after',
      '\nA sparkline per figure (CPU, memory, disk, network, block IO), then one row per point, oldest first.\n' +
        'Block IO is shown as a rate between consecutive points; --json prints the points as the API returns them\n' +
        '(GET /v1/containers/{agent}/{id}/usage, cumulative block IO counters).\n' +
        '\nExamples:\n  bulkhead containers usage agt_3f9c2a7b1d0e4f5a6b7c web\n  bulkhead --json containers usage agt_3f9c2a7b1d0e4f5a6b7c 3f2a9c1b7d4e\n',
    )
    .action(async (agent: string, ref: string, _opts: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const body = await api.getContainerUsage(agent, ref);
      io.out(json ? toJson(body) : renderUsageHistory(body));
    });

  // ---- policy, violations, scans -------------------------------------
  const commandContext: CommandContext = {
    out: io.out,
    err: io.err,
    now: io.now,
    client,
    usageError: (message) => new UsageError(message),
  };
  registerPolicyCommands(program, commandContext);
  registerViolationCommands(program, commandContext);
  registerScanCommands(program, commandContext);
  registerImageCommands(program, commandContext);
  // alerts and webhooks
  registerWebhookCommands(program, commandContext);
  registerAlertCommands(program, commandContext);
  // manual actions
  registerActionCommand(program, commandContext);
  // identity and access, audit trail
  registerLoginCommands(program, commandContext, {
    env: io.env,
    connectWithKey: (cmd) => {
      const g = cmd.optsWithGlobals<GlobalOpts>();
      return { api: makeClient(g, io, { requireApiKey: true }), json: g.json === true, caFile: nonEmpty(g.ca) ?? nonEmpty(io.env['BULKHEAD_CA']) };
    },
  });
  registerKeyCommands(program, commandContext);
  registerTokenCommands(program, commandContext);
  registerAuditLogCommands(program, commandContext);
  registerHostAuditCommand(program, commandContext);
  registerWatchCommand(program, commandContext);

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    code = report(e, io);
  }
  return code;
}

function report(e: unknown, io: OpsCliIo): number {
  if (e instanceof CommanderError) {
    // Commander already printed help or the parse error.
    return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  }
  if (e instanceof CommandFailed) return e.exitCode; // already reported (audit-log verify)
  if (e instanceof UsageError) {
    io.err(`bulkhead: ${e.message}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof ApiError) {
    io.err(`bulkhead: ${e.code}: ${e.detail} (HTTP ${e.status})\n`);
    return EXIT_API_ERROR;
  }
  if (e instanceof ConnectionError) {
    io.err(`bulkhead: ${e.message}\n`);
    return EXIT_CONNECTION;
  }
  io.err(`bulkhead: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return EXIT_API_ERROR;
}

function makeClient(g: GlobalOpts, io: OpsCliIo, o: { requireApiKey?: boolean } = {}): ApiClient {
  // `bulkhead login`: without an API key, the cached token (and its API URL and CA) stand in.
  const cached = o.requireApiKey ? undefined : readTokenCache(io.env);
  const api = nonEmpty(g.api) ?? nonEmpty(io.env['BULKHEAD_API']) ?? cached?.api;
  if (api === undefined) throw new UsageError('no controller API URL: pass --api https://HOST:PORT or set BULKHEAD_API');
  const explicitKey = (nonEmpty(g.apiKey) ?? nonEmpty(io.env['BULKHEAD_API_KEY']))?.trim();
  let sameApi: URL | undefined;
  try {
    const u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(api) ? api : `https://${api}`);
    sameApi = cached !== undefined && u.href === cached.api ? u : undefined;
  } catch {
    sameApi = undefined;
  }
  const token = explicitKey === undefined && sameApi ? cachedToken(cached, sameApi, io.now(), (m) => new UsageError(m)) : undefined;
  const apiKey = explicitKey ?? token;
  if (apiKey === undefined || apiKey === '') {
    throw new UsageError(`no API key: set BULKHEAD_API_KEY (or pass --api-key)${o.requireApiKey ? '' : ', or run `bulkhead login`'}`);
  }
  const caFile = nonEmpty(g.ca) ?? nonEmpty(io.env['BULKHEAD_CA']) ?? (sameApi ? (cached?.ca ?? undefined) : undefined);
  let caPem: Buffer | string[] | undefined;
  if (caFile === undefined) {
    // No CA given: the system trust store (trust.ts), e.g. for an operator certificate from a company CA.
    try {
      caPem = systemTrust(io.env).ca;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  } else {
    let pem: Buffer;
    try {
      pem = readFileSync(caFile);
    } catch (e) {
      throw new UsageError(`cannot read CA file ${caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (!pem.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`CA file ${caFile} contains no PEM certificate`);
    caPem = pem;
  }
  // A bare HOST:PORT means https — the API speaks nothing else.
  const baseUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(api) ? api : `https://${api}`;
  try {
    return new ApiClient({ baseUrl, apiKey, caPem });
  } catch (e) {
    throw new UsageError(`--api: ${(e as Error).message}`);
  }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
}

function toJson(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

if (require.main === module) {
  // `… | head` closes stdout early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`bulkhead: ${String(e)}\n`);
      process.exitCode = EXIT_API_ERROR;
    },
  );
}
