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
// Server certificate replacement and CA rotation (docs/pki.md).
import { installServerCert, parseSans, reissueServerCert, type ServerCertResult } from '../pki/server-cert';
import { caStatus, rotateActivate, rotateFinish, rotateStart, type CaStatus } from '../pki/ca-rotation';
import type { Store } from '../store/store';
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
    .addOption(new Option('--session-idle-timeout <duration>', 'a browser session (POST /v1/session) unused this long ends (10s–24h)').env('BULKHEAD_SESSION_IDLE_TIMEOUT').default('15m'))
    .addOption(new Option('--session-max-lifetime <duration>', 'a browser session ends this long after login, used or not (1m–30d)').env('BULKHEAD_SESSION_MAX_LIFETIME').default('8h'))
    .addOption(new Option('--api-tls-cert <file>', 'PEM certificate (leaf, then intermediates) for the HTTPS API instead of the controller CA\'s; needs --api-tls-key; reloaded on SIGHUP').env('BULKHEAD_API_TLS_CERT'))
    .addOption(new Option('--api-tls-key <file>', 'PEM private key of --api-tls-cert (unencrypted; 0600, or 0640 with a dedicated group)').env('BULKHEAD_API_TLS_KEY'))
    .addOption(new Option('--log-level <level>', 'log level').env('BULKHEAD_LOG_LEVEL').default('info').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(databaseUrlOption())
    .addOption(new Option('--database-pool-size <n>', 'PostgreSQL: connections this controller keeps open at most (default 20)').env('BULKHEAD_DATABASE_POOL_SIZE'))
    .addOption(new Option('--database-pool-wait <duration>', 'PostgreSQL: how long a query may wait for a pooled connection (or for opening one) before it is retried (default 30s)').env('BULKHEAD_DATABASE_POOL_WAIT'))
    .addOption(new Option('--usage-history-interval <duration>', "spacing of each container's recent-usage history points; 60 are kept (default 60s: the last hour; whole seconds, 1s-1h)").env('BULKHEAD_USAGE_HISTORY_INTERVAL'))
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead-controller serve --data-dir /var/lib/bulkhead-controller --grpc-listen 0.0.0.0:7443 --api-listen 0.0.0.0:8443\n' +
        '  bulkhead-controller serve --data-dir /var/lib/bulkhead-controller --api-tls-cert /etc/bulkhead/api.crt --api-tls-key /etc/bulkhead/api.key\n' +
        '\nSIGHUP re-reads the CA(s) and server certificate in the data directory (after `cert reissue`, `cert install`\n' +
        'or `ca rotate …`) and the API certificate and key; what fails the checks is logged and the old one kept.',
    )
    .action(async (o: { dataDir: string; grpcListen: string; apiListen: string; heartbeatInterval: string; offlineAfter?: string; logLevel: string; metricsListen: string; metrics: boolean; metricsAllowRemote?: boolean; tokenMaxTtl: string; sessionIdleTimeout: string; sessionMaxLifetime: string; apiTlsCert?: string; apiTlsKey?: string; databaseUrl?: string; databasePoolSize?: string; databasePoolWait?: string; usageHistoryInterval?: string }, cmd: Command) => {
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
        // Certificate rotation without a restart: the gRPC certificates and trusted CAs
        // (cert reissue, ca rotate …), then the API certificate. Each logs its outcome; a
        // failure keeps serving what was in force.
        process.on('SIGHUP', () => {
          try {
            controller.reloadPki();
          } catch {
            /* logged by reloadPki */
          }
          try {
            controller.reloadApiTls();
          } catch {
            /* logged by reloadApiTls */
          }
        });
      });
    });

  // The gRPC server certificate: re-issued by the CA or supplied by the operator; SIGHUP makes the controller serve it.
  const RELOAD_HINT = 'then make the running controller load it: systemctl reload bulkhead-controller (or kill -HUP <pid>); agents keep running';
  const printServerCert = (r: ServerCertResult, json: boolean | undefined, what: string): void => {
    if (json) io.out(JSON.stringify({ ...r, notAfter: r.notAfter.toISOString() }) + '\n');
    else io.out(`${what} ${r.certFile}\n  fingerprint: ${r.fingerprint}\n  names:       ${r.sans.join(', ')}\n  expires:     ${r.notAfter.toISOString()}\n  issuer:      ${r.issuer}\n${RELOAD_HINT}\n`);
  };
  const cert = program.command('cert').description('replace the controller\'s gRPC/API server certificate without restarting agents');
  cert
    .command('reissue')
    .description('issue a new server certificate (new key) from the controller CA, keeping its names; the running controller serves it after SIGHUP')
    .addOption(dataDirOption())
    .option('--san <names>', 'extra DNS names / IPs to add, comma-separated', '')
    .option('--replace-sans <names>', 'use exactly these names (plus localhost, 127.0.0.1, ::1 and the hostname) instead of the current ones')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExample:\n  bulkhead-controller cert reissue --data-dir /var/lib/bulkhead-controller --san controller2.example.com\n  systemctl reload bulkhead-controller')
    .action(async (o: { dataDir: string; san: string; replaceSans?: string; json?: boolean }) => {
      const r = await reissueServerCert(o.dataDir, { extraSans: parseSans(o.san), ...(o.replaceSans !== undefined ? { sans: parseSans(o.replaceSans) } : {}) });
      printServerCert(r, o.json, 'Re-issued');
    });
  cert
    .command('install')
    .description('install an operator-supplied server certificate and key; it must be issued by a CA the controller trusts (agents check it against those CAs)')
    .addOption(dataDirOption())
    .requiredOption('--cert <file>', 'PEM certificate (serverAuth, valid now, issued by the controller CA)')
    .requiredOption('--key <file>', 'its unencrypted PEM private key')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExample:\n  bulkhead-controller cert install --data-dir /var/lib/bulkhead-controller --cert server.crt --key server.key\n  systemctl reload bulkhead-controller')
    .action((o: { dataDir: string; cert: string; key: string; json?: boolean }) => {
      printServerCert(installServerCert(o.dataDir, { certFile: o.cert, keyFile: o.key }), o.json, 'Installed');
    });

  // CA rotation: start → activate → finish, each followed by SIGHUP (docs/pki.md#ca-rotation).
  const withStore = async <T>(o: { dataDir: string; databaseUrl?: string }, fn: (store: Store) => Promise<T>): Promise<T> => {
    const store = await openStore(storeConfigFor(o.dataDir, o.databaseUrl));
    try {
      await store.migrate();
      return await fn(store);
    } finally {
      await store.close();
    }
  };
  const ca = program.command('ca').description('the controller CA: status and rotation to a new CA without re-enrolling agents');
  ca
    .command('status')
    .description('show the CAs in use, where a rotation stands, and which CA each agent\'s certificate is from and which CAs it trusts')
    .addOption(dataDirOption())
    .addOption(databaseUrlOption())
    .option('--json', 'print the status as JSON')
    .addHelpText('after', '\nExample:\n  bulkhead-controller ca status --data-dir /var/lib/bulkhead-controller')
    .action(async (o: { dataDir: string; databaseUrl?: string; json?: boolean }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      const st = await withStore(o, (store) => caStatus(o.dataDir, store));
      io.out(o.json ? JSON.stringify(st, null, 2) + '\n' : describeCaStatus(st));
    });
  const rotate = ca.command('rotate').description('rotate to a new CA: start, activate, finish — each followed by SIGHUP to every controller');
  rotate
    .command('start')
    .description('create a new CA beside the current one; after SIGHUP the controller trusts both and sends both to every agent')
    .addOption(dataDirOption())
    .option('--json', 'print the new CA as JSON')
    .addHelpText('after', '\nNext: systemctl reload bulkhead-controller, then wait until `ca status` shows every agent trusting the new CA, then `ca rotate activate`.')
    .action(async (o: { dataDir: string; json?: boolean }) => {
      const r = await rotateStart(o.dataDir);
      io.out(o.json ? JSON.stringify(r) + '\n' : `New CA created (not issuing yet): ${r.next.subject}\n  fingerprint: ${r.next.fingerprint}\n  expires:     ${r.next.notAfter}\nNext: reload the controller (systemctl reload bulkhead-controller); agents receive the new CA over their stream.\n      \`bulkhead-controller ca status\` shows which agents trust it; then \`bulkhead-controller ca rotate activate\`.\n`);
    });
  rotate
    .command('activate')
    .description('make the new CA the issuing one: re-issue the server certificate under it; after SIGHUP agents renew their certificates under it')
    .addOption(dataDirOption())
    .addOption(databaseUrlOption())
    .option('--san <names>', 'extra DNS names / IPs for the re-issued server certificate, comma-separated', '')
    .option('--force', 'activate although some agents have not said they trust the new CA (they cannot connect until enrolled again)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nRefused while an agent that is not revoked has not said it trusts the new CA, unless --force.\nNext: systemctl reload bulkhead-controller; then `ca rotate finish` once `ca status` shows no agent on the old CA.')
    .action(async (o: { dataDir: string; databaseUrl?: string; san: string; force?: boolean; json?: boolean }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      const r = await withStore(o, (store) => rotateActivate(o.dataDir, store, { force: o.force === true, extraSans: parseSans(o.san) }));
      io.out(o.json ? JSON.stringify(r) + '\n' : `New CA is issuing: ${r.issuing.subject} (${r.issuing.fingerprint})\nOld CA still trusted: ${r.previous.subject} (${r.previous.fingerprint})\nServer certificate re-issued: ${r.serverCertificate.fingerprint}\n${r.notTrusting.length > 0 ? `Left behind (--force): ${r.notTrusting.map((a) => a.id).join(', ')}\n` : ''}Next: reload the controller; agents renew under the new CA. Then \`bulkhead-controller ca rotate finish\`.\nNew agents enroll with --ca-fingerprint ${r.issuing.fingerprint}.\n`);
    });
  rotate
    .command('finish')
    .description('retire the old CA: after SIGHUP certificates from it are refused and agents drop it from their trust')
    .addOption(dataDirOption())
    .addOption(databaseUrlOption())
    .option('--force', 'retire the old CA although some agents still hold a certificate from it (they are refused until enrolled again)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nRefused while an agent that is not revoked still holds a certificate from the old CA, unless --force.\nNext: systemctl reload bulkhead-controller.')
    .action(async (o: { dataDir: string; databaseUrl?: string; force?: boolean; json?: boolean }, cmd: Command) => {
      warnPasswordInArgv(cmd, o.databaseUrl, io);
      const r = await withStore(o, (store) => rotateFinish(o.dataDir, store, { force: o.force === true }));
      io.out(o.json ? JSON.stringify(r) + '\n' : `Old CA retired: ${r.retired.subject} (${r.retired.fingerprint})\n${r.cutOff.length > 0 ? `Cut off (--force): ${r.cutOff.map((a) => a.id).join(', ')}\n` : ''}Next: reload the controller; certificates from the old CA are refused from then on.\n`);
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

function describeCaStatus(st: CaStatus): string {
  const lines = [`rotation: ${st.rotation}`];
  for (const c of st.cas) lines.push(`  ${c.role.padEnd(8)} ${c.fingerprint}  ${c.subject}  (expires ${c.notAfter})`);
  const name = (fp: string): string => st.cas.find((c) => c.fingerprint === fp)?.role ?? (fp === 'unknown' ? 'issued before CA tracking' : 'retired CA');
  lines.push(`agents (${st.agents.length}, revoked ones left out):`);
  for (const a of st.agents) {
    const trusts = st.cas.filter((c) => a.trusts[c.fingerprint]).map((c) => c.role);
    lines.push(`  ${a.id}  ${a.hostname}  ${a.status}  certificate from: ${name(a.certCa)}  trusts: ${trusts.length > 0 ? trusts.join('+') : 'not reported'}`);
  }
  lines.push(`next: ${st.next}`);
  return lines.join('\n') + '\n';
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
    // A run that failed (the error is already printed) exits now: nothing it may have started
    // (a store pool, a listener, the logger's async writer) keeps it lingering. Seen once in
    // CI: `serve` with a mismatched --api-tls-key printed its error and was still running
    // 30 s later at load 12. stderr is synchronous for files and pipes on Linux.
    if (code !== 0) process.exit(code);
  });
}
