#!/usr/bin/env node
// `bulkhead-controller`: initialize a data directory, mint join tokens, and
// serve agents (gRPC, mutual TLS) and ops (HTTPS API).
import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { BulkheadError, VERSION, createLogger, parseDuration, writeSecretFile, cliExitCode, exitQuietlyOnEpipe } from '@bulkhead/shared';
import { generateApiKey } from '../api/api-keys';
import { Controller } from '../controller';
import { resolveControllerOptions } from '../controller-options';
import { createJoinToken } from '../enrollment/join-tokens';
import { dataDirPaths, defaultSans, initPki, loadPki } from '../pki/data-dir';
import { describeStore, openStore, storeConfigFor } from '../store/open-store';
// Identity and access + audit trail.
import { loadOrCreateSigningSecret, signingSecretPath } from '../auth/signing-secret';
import { describeVerifyResult, verifyAuditLogOffline } from '../audit/offline-verify';

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const defaultIo: CliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

function dataDirOption(): Option {
  return new Option('--data-dir <dir>', 'controller data directory (CA, keys, SQLite store)').env('BULKHEAD_DATA_DIR').makeOptionMandatory();
}

/** The store: SQLite in the data directory unless a PostgreSQL URL is given (docs/cli.md#postgresql). */
function databaseUrlOption(): Option {
  return new Option('--database-url <url>', 'keep the store in PostgreSQL instead of SQLite in the data directory: postgresql://USER@HOST[:PORT]/DATABASE (put a password in the environment variable, PGPASSWORD or ~/.pgpass, not on the command line)').env('BULKHEAD_DATABASE_URL');
}

/** A password given with --database-url on the command line is readable by every local user (/proc/PID/cmdline). */
function warnPasswordInArgv(cmd: Command, url: string | undefined, io: CliIo): void {
  if (url !== undefined && cmd.getOptionValueSource('databaseUrl') === 'cli' && /^[a-z][a-z0-9+.-]*:\/\/[^/@]*:[^/@]*@/i.test(url)) {
    io.err('warning: the password in --database-url is visible to other local users in the process list; use BULKHEAD_DATABASE_URL, PGPASSWORD or ~/.pgpass instead\n');
  }
}

export function buildProgram(io: CliIo = defaultIo): Command {
  const program = new Command('bulkhead-controller')
    .description('Bulkhead controller: enrolls agents, receives their reports over mutual-TLS gRPC, serves the ops HTTPS API.')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  program
    .command('init')
    .description('create the CA, the server certificate, the SQLite store and the first admin API key in a new data directory')
    .addOption(dataDirOption())
    .option('--san <names>', 'extra DNS names / IPs for the server certificate, comma-separated (localhost, 127.0.0.1, ::1 and the hostname are always included)', '')
    .option('--json', 'print the result as JSON')
    .addOption(databaseUrlOption())
    .addHelpText('after', '\nExample:\n  bulkhead-controller init --data-dir /var/lib/bulkhead-controller --san controller.example.com,10.0.0.5\n\nThe admin API key is printed once and also written 0600 to DATA_DIR/admin.apikey.')
    .action(async (o: { dataDir: string; san: string; json?: boolean; databaseUrl?: string }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      const storeConfig = storeConfigFor(o.dataDir, o.databaseUrl); // a bad URL fails before anything is created
      const sans = defaultSans(o.san.split(','));
      // PostgreSQL is reached (and migrated) before the CA is written: an unreachable
      // database must not leave a half-initialized data directory that init then refuses.
      const early = storeConfig.kind === 'postgres' ? await openStore(storeConfig) : undefined;
      let pki: Awaited<ReturnType<typeof initPki>>;
      try {
        pki = await initPki(o.dataDir, sans);
      } catch (err) {
        await early?.close();
        throw err;
      }
      const paths = dataDirPaths(o.dataDir);
      const store = early ?? (await openStore(storeConfig));
      try {
        await store.migrate();
        const { record, plaintext } = generateApiKey('admin', 'admin');
        await store.insertApiKey(record);
        writeSecretFile(paths.adminKey, plaintext + '\n');
        loadOrCreateSigningSecret(o.dataDir); // bearer-token signing key, 0600
        if (o.json) {
          io.out(JSON.stringify({ dataDir: o.dataDir, caFingerprint: pki.caFingerprint, caCert: paths.caCert, sans, adminApiKey: plaintext, adminApiKeyFile: paths.adminKey, tokenSigningKeyFile: signingSecretPath(o.dataDir), store: describeStore(storeConfig) }, null, 2) + '\n');
        } else {
          io.out(
            `Initialized ${o.dataDir}\n` +
              `  CA certificate:   ${paths.caCert}\n` +
              `  CA fingerprint:   ${pki.caFingerprint}\n` +
              `  server names:     ${sans.join(', ')}\n` +
              `  store:            ${storeConfig.kind === 'sqlite' ? 'SQLite ' : 'PostgreSQL '}${describeStore(storeConfig).location}\n` +
              `  admin API key:    ${plaintext}\n` +
              `                    (shown once; also saved 0600 in ${paths.adminKey})\n` +
              `  token signing key: ${signingSecretPath(o.dataDir)} (0600; replacing it logs every token out)\n`,
          );
        }
      } finally {
        await store.close();
      }
    });

  const token = program.command('token').description('manage one-time agent join tokens');
  token
    .command('create')
    .description('print a new one-time join token for `bulkhead-agent enroll`')
    .addOption(dataDirOption())
    .option('--ttl <duration>', 'how long the token stays valid (e.g. 15m, 1h)', '15m')
    .option('--description <text>', 'free-text note stored with the token', '')
    .option('--json', 'print token, expiry and CA fingerprint as JSON')
    .addOption(databaseUrlOption())
    .addHelpText('after', '\nExample:\n  bulkhead-controller token create --data-dir /var/lib/bulkhead-controller --ttl 15m')
    .action(async (o: { dataDir: string; ttl: string; description: string; json?: boolean; databaseUrl?: string }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      const ttlMs = parseDuration(o.ttl, 'ttl');
      const pki = loadPki(o.dataDir);
      const store = await openStore(storeConfigFor(o.dataDir, o.databaseUrl), { existing: true });
      try {
        await store.migrate();
        const { token: t, record } = await createJoinToken(store, ttlMs, new Date(), o.description);
        if (o.json) io.out(JSON.stringify({ token: t, expiresAt: record.expiresAt.toISOString(), caFingerprint: pki.caFingerprint }) + '\n');
        else {
          io.out(t + '\n');
          io.err(`expires ${record.expiresAt.toISOString()}; enroll with:\n  bulkhead-agent enroll --controller HOST:PORT --token <token> --ca-fingerprint ${pki.caFingerprint} --state-dir /var/lib/bulkhead-agent\n`);
        }
      } finally {
        await store.close();
      }
    });

  program
    .command('ca-fingerprint')
    .description('print the CA fingerprint agents pin when they enroll')
    .addOption(dataDirOption())
    .action((o: { dataDir: string }) => {
      io.out(loadPki(o.dataDir).caFingerprint + '\n');
    });

  program
    .command('serve')
    .description('run the controller: gRPC for agents (mutual TLS) and the HTTPS API for ops')
    .addOption(dataDirOption())
    .addOption(new Option('--grpc-listen <addr>', 'agent gRPC listen address').env('BULKHEAD_GRPC_LISTEN').default('0.0.0.0:7443'))
    .addOption(new Option('--api-listen <addr>', 'HTTPS API listen address').env('BULKHEAD_API_LISTEN').default('0.0.0.0:8443'))
    .addOption(new Option('--heartbeat-interval <duration>', 'how often agents must heartbeat').env('BULKHEAD_HEARTBEAT_INTERVAL').default('5s'))
    .addOption(new Option('--offline-after <duration>', 'silence after which an agent is marked offline (default 3 × heartbeat)').env('BULKHEAD_OFFLINE_AFTER'))
    .addOption(new Option('--metrics-listen <addr>', 'Prometheus metrics listen address (plain HTTP, GET /metrics; loopback unless --metrics-allow-remote)').env('BULKHEAD_METRICS_LISTEN').default('127.0.0.1:9464'))
    .option('--no-metrics', 'do not serve Prometheus metrics')
    .option('--metrics-allow-remote', 'allow a non-loopback --metrics-listen address (metrics have no authentication)')
    .addOption(new Option('--token-max-ttl <duration>', 'longest lifetime of a bearer token from POST /v1/auth/token (1m–24h)').env('BULKHEAD_TOKEN_MAX_TTL').default('1h'))
    .addOption(new Option('--api-tls-cert <file>', 'PEM certificate (leaf, then intermediates) for the HTTPS API instead of the controller CA\'s; needs --api-tls-key; reloaded on SIGHUP').env('BULKHEAD_API_TLS_CERT'))
    .addOption(new Option('--api-tls-key <file>', 'PEM private key of --api-tls-cert (unencrypted; 0600, or 0640 with a dedicated group)').env('BULKHEAD_API_TLS_KEY'))
    .addOption(new Option('--log-level <level>', 'log level').env('BULKHEAD_LOG_LEVEL').default('info').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(databaseUrlOption())
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead-controller serve --data-dir /var/lib/bulkhead-controller --grpc-listen 0.0.0.0:7443 --api-listen 0.0.0.0:8443\n' +
        '  bulkhead-controller serve --data-dir /var/lib/bulkhead-controller --api-tls-cert /etc/bulkhead/api.crt --api-tls-key /etc/bulkhead/api.key\n' +
        '\nSIGHUP re-reads the API certificate and key (a bad pair is logged and the old one kept).',
    )
    .action(async (o: { dataDir: string; grpcListen: string; apiListen: string; heartbeatInterval: string; offlineAfter?: string; logLevel: string; metricsListen: string; metrics: boolean; metricsAllowRemote?: boolean; tokenMaxTtl: string; apiTlsCert?: string; apiTlsKey?: string; databaseUrl?: string }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      if (!existsSync(o.dataDir)) throw new BulkheadError('BK_ERR_NOT_INITIALIZED', `${o.dataDir} does not exist; run \`bulkhead-controller init --data-dir ${o.dataDir}\``);
      const opts = resolveControllerOptions({ ...o, metricsListen: o.metrics === false ? false : o.metricsListen, metricsAllowRemote: o.metricsAllowRemote === true });
      const logger = createLogger({ name: 'bulkhead-controller', level: o.logLevel });
      const controller = await Controller.start(opts, logger);
      await new Promise<void>((resolve) => {
        const stop = (sig: string): void => {
          logger.info({ signal: sig }, 'shutting down');
          controller.stop().then(resolve, (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        // Certificate rotation without a restart; reloadApiTls logs the outcome, and a failure keeps serving.
        process.on('SIGHUP', () => {
          try {
            controller.reloadApiTls();
          } catch {
            /* logged by reloadApiTls */
          }
        });
      });
    });

  // Audit trail: checked straight from the database, no controller needed.
  const audit = program.command('audit-log').description('the hash-chained audit trail');
  audit
    .command('verify')
    .description('check the audit chain in the data directory offline; exit 1 when it is broken')
    .addOption(dataDirOption())
    .option('--json', 'print the result as JSON')
    .addOption(databaseUrlOption())
    .addHelpText('after', '\nExample:\n  bulkhead-controller audit-log verify --data-dir /var/lib/bulkhead-controller')
    .action(async (o: { dataDir: string; json?: boolean; databaseUrl?: string }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      const r = await verifyAuditLogOffline(o.dataDir, o.databaseUrl);
      io.out(o.json ? JSON.stringify(r) + '\n' : describeVerifyResult(r));
      if (!r.ok) throw new AuditBroken();
    });

  return program;
}

/** The chain did not verify: already reported; exit 1. */
class AuditBroken extends Error {}

export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof AuditBroken) return 1;
    return cliExitCode(err, io.err);
  }
}

if (require.main === module) {
  exitQuietlyOnEpipe();
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
