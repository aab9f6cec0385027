// Owns `bulkhead tokens …`: one-time agent join tokens through the API —
// list (never a secret), create (printed once, with the CA fingerprint to
// pin), revoke. Needs an admin credential not limited to projects.
import { Option, type Command } from 'commander';
import { parseDuration } from '@bulkhead/client';
import type { ApiClient } from '../client';
import type { JoinTokenCreated as JoinTokenCreatedDto, JoinToken as JoinTokenDto, JoinTokenPage as JoinTokenPageDto } from '@bulkhead/client';
import { formatTable } from '../table';
import { ago } from '../render';
import { toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';

export const joinTokensApi = {
  list: (api: ApiClient, q: URLSearchParams) => api.getJson<JoinTokenPageDto>('/v1/join-tokens', q),
  create: (api: ApiClient, body: object) => api.requestJson<JoinTokenCreatedDto>('POST', '/v1/join-tokens', { body: JSON.stringify(body) }),
  revoke: (api: ApiClient, id: string) => api.requestJson<JoinTokenDto>('DELETE', `/v1/join-tokens/${encodeURIComponent(id)}`, {}),
};

export function registerTokenCommands(program: Command, ctx: CommandContext): void {
  const tokens = program
    .command('tokens')
    .description('one-time join tokens that enroll agents (default: list)')
    .addHelpText('after', '\nExamples:\n  bulkhead tokens create --ttl 30m --description "web-07 rebuild"\n  bulkhead tokens --status active\n  bulkhead tokens revoke 3f9c2a7b1d0e4f5a\n');

  tokens
    .command('list', { isDefault: true })
    .description('list join tokens, newest first (never their secrets)')
    .addOption(new Option('--status <status>', 'only tokens in this state').choices(['active', 'used', 'expired', 'revoked']))
    .option('--limit <n>', 'at most N tokens (default: 100)', parsePositiveInt)
    .action(async (o: { status?: string; limit?: number }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const q = new URLSearchParams({ limit: String(Math.min(o.limit ?? 100, 1000)) });
      if (o.status !== undefined) q.set('status', o.status);
      const page = await joinTokensApi.list(api, q);
      ctx.out(json ? toJson(page) : renderJoinTokenTable(page.items, ctx.now()));
    });

  tokens
    .command('create')
    .description('create a one-time join token; prints it once')
    .option('--ttl <duration>', 'how long the token stays valid (at most 30d)', '15m')
    .option('--description <text>', 'free-text note stored with the token')
    .option('--print-install', 'print the one-line install command for a new host instead of the bare token')
    .option('--controller <host:port,...>', `with --print-install: the controller's agent (gRPC) address as hosts reach it, or several replicas' comma-separated (default: the API URL's host, port ${DEFAULT_AGENT_PORT})`)
    .option('--installer <path>', 'with --print-install: where install.sh is on the new host', DEFAULT_INSTALLER)
    .addHelpText(
      'after',
      '\nThe token goes to stdout (scripts: TOKEN=$(bulkhead tokens create)); the expiry and the enroll command to stderr.\n' +
        'With --print-install, stdout is instead one line to run as root on the new host, in a built checkout\n' +
        '(npm ci && npm run build): install.sh installs the agent, enrolls it with this token and the CA\n' +
        'fingerprint, then enables and starts its unit (deploy/README.md). The line holds the secret: it works once.\n' +
        '\nExamples:\n  bulkhead tokens create --ttl 1h --description "rack 4 hosts"\n' +
        '  bulkhead tokens create --print-install --controller ctl.example.com:7443\n',
    )
    .action(async (o: { ttl: string; description?: string; printInstall?: boolean; controller?: string; installer: string }, cmd: Command) => {
      try {
        parseDuration(o.ttl, '--ttl');
      } catch (e) {
        throw ctx.usageError((e as Error).message);
      }
      if (!o.printInstall && o.controller !== undefined) throw ctx.usageError('--controller only goes with --print-install');
      if (o.controller !== undefined && !isHostPortList(o.controller)) {
        throw ctx.usageError(`--controller must be HOST:PORT, or several comma-separated without repeats (e.g. ctl.example.com:7443 or ctl-a.example.com:7443,ctl-b.example.com:7443), not "${o.controller}"`);
      }
      if (o.installer === '') throw ctx.usageError('--installer needs a path');
      const { api, json } = ctx.client(cmd);
      const t = await joinTokensApi.create(api, { ttl: o.ttl, ...(o.description !== undefined ? { description: o.description } : {}) });
      if (o.printInstall) {
        const controller = o.controller ?? defaultAgentAddress(api.baseUrl);
        const line = installCommand(o.installer, controller, t.token, t.caFingerprint);
        if (json) {
          ctx.out(toJson({ ...t, installCommand: line }));
          return;
        }
        ctx.out(line + '\n');
        ctx.err(`join token ${t.id} expires ${t.expiresAt}; run the line above as root on the new host, from a built checkout (it works once)\n`);
        return;
      }
      if (json) {
        ctx.out(toJson(t));
        return;
      }
      ctx.out(t.token + '\n');
      ctx.err(
        `join token ${t.id} expires ${t.expiresAt}; enroll with:\n` +
          `  bulkhead-agent enroll --controller HOST:PORT --token <token> --ca-fingerprint ${t.caFingerprint} --state-dir /var/lib/bulkhead-agent\n`,
      );
    });

  tokens
    .command('revoke')
    .description('revoke an unused join token')
    .argument('<id>', 'token id (the part after bkj_, before the secret)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const t = await joinTokensApi.revoke(api, id);
      ctx.out(json ? toJson(t) : `revoked join token ${t.id}\n`);
    });
}

const DEFAULT_AGENT_PORT = 7443;
const DEFAULT_INSTALLER = './deploy/install.sh';

function isHostPort(s: string): boolean {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}

/**
 * Replicas' addresses as the agent takes them (a comma-separated list). The agent checks the
 * list again at enrollment; this only keeps a typo out of the printed line.
 */
function isHostPortList(s: string): boolean {
  const items = s.split(',');
  return items.every(isHostPort) && new Set(items.map((i) => i.toLowerCase())).size === items.length;
}

/** The API URL's host with the controller's default agent port: `[::1]` stays bracketed. */
export function defaultAgentAddress(apiUrl: URL): string {
  return `${apiUrl.hostname}:${DEFAULT_AGENT_PORT}`;
}

/** POSIX shell single-quoting, only where a word needs it (tokens and fingerprints never do). */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The install line `--print-install` prints: install.sh installs, enrolls once, enables and starts the unit. */
export function installCommand(installer: string, controller: string, token: string, caFingerprint: string): string {
  return [installer, 'agent', '--controller', controller, '--token', token, '--ca-fingerprint', caFingerprint].map(shellWord).join(' ');
}

export function renderJoinTokenTable(items: JoinTokenDto[], now: Date): string {
  if (items.length === 0) return 'no join tokens\n';
  return formatTable(
    ['ID', 'STATUS', 'CREATED', 'EXPIRES', 'USED BY', 'DESCRIPTION'],
    items.map((t) => [t.id, t.status, ago(t.createdAt, now), t.status === 'active' ? ago(t.expiresAt, now) : t.expiresAt.slice(0, 16).replace('T', ' '), t.usedByAgent ?? '-', t.description || '-']),
  );
}
