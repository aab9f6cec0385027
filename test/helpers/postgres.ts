// A real, PRIVATE, throw-away PostgreSQL cluster for tap tests (Debian's `postgresql`
// package; scripts/test.sh installs it).
//
//   const pg = await usePostgres(t);            // first thing in a test; undefined only when skipped (see below)
//   if (!pg) return;
//   const db = await pg.createDatabase();       // a fresh database owned by a NON-superuser role
//   await openStore({ kind: 'postgres', connectionString: db.url });
//
// - The cluster listens ONLY on a unix socket in its own 0700 temp dir (listen_addresses='',
//   so no TCP port at all); password (SCRAM) authentication even on the socket, so connection
//   strings carry a password as they would in production.
// - As root it runs as the `postgres` user (PostgreSQL refuses to run as root): initdb via
//   runuser; the server via setpriv, which execs it as a direct child of this process with a
//   parent-death signal, so a test process that is killed (tap timeout, SIGKILL) takes its
//   cluster with it instead of leaving a postmaster behind. Not root: it runs as the current user.
// - usePostgres(t) starts ONE cluster per test process (several calls share it) and stops it
//   in the ROOT tap test's teardown; startPrivatePostgres() gives a dedicated one (stop() it).
// - Missing server binaries FAIL the test when running as root (CI and the dev machines run as
//   root and scripts/test.sh installs the package: a silent skip there would hide the whole
//   PostgreSQL path). Only a non-root run without the binaries skips, with a loud warning.
// - fsync is off: durability is not what these tests are about, speed is.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import rootTap from 'tap';

/** The newest installed server: /usr/lib/postgresql/<version>/bin with initdb and postgres. */
export const PG_BIN: string | undefined = findPgBin();

function findPgBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(base).filter((v) => /^\d+$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(base, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  return undefined;
}

const IS_ROOT = process.getuid?.() === 0;

/** Why no cluster can be started here, or undefined when one can. */
export function postgresUnavailableReason(): string | undefined {
  if (PG_BIN === undefined) return 'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql; scripts/test.sh does it)';
  if (IS_ROOT && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'running as root but there is no `postgres` user to run the server as (apt-get install postgresql creates it)';
  return undefined;
}

export interface PrivatePostgres {
  /** The 0700 directory holding the socket (`.s.PGSQL.5432`), the data directory and the server log. */
  readonly dir: string;
  /** Server major version, e.g. "15". */
  readonly version: string;
  /** The superuser's password (SCRAM on the socket). */
  readonly adminPassword: string;
  /** postgresql:// URL of the superuser `bk_admin` for `database` (default "postgres"). */
  adminUrl(database?: string): string;
  /** postgresql:// URL for any role/password/database of this cluster. */
  url(user: string, password: string, database: string): string;
  /** Runs SQL as the superuser (in `database`, default "postgres"); returns the rows. */
  query<R = Record<string, unknown>>(text: string, params?: unknown[], database?: string): Promise<R[]>;
  /**
   * A new empty database owned by a new LOGIN role that is NOT a superuser and has no
   * CREATEDB/CREATEROLE: exactly the privileges docs/cli.md#postgresql asks of an
   * operator. Returns the owner's URL.
   */
  createDatabase(opts?: { name?: string; owner?: string }): Promise<{ name: string; owner: string; password: string; url: string }>;
  /** The server log so far (for failure messages). */
  log(): string;
  /** Stops the server (immediate shutdown) and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

let seq = 0;

/** A dedicated cluster; the caller stops it. Throws with the server log when it cannot start. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const reason = postgresUnavailableReason();
  if (reason !== undefined) throw new Error(reason);
  const bin = PG_BIN!;
  const version = bin.split('/').at(-2)!;
  const dir = mkdtempSync(join(tmpdir(), 'bk-pg-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const adminPassword = randomBytes(18).toString('base64url');
  if (IS_ROOT) spawnSync('chown', ['postgres:postgres', dir]); // stays 0700: only postgres (and root) reach the socket
  const asServerUser = (args: string[]) =>
    IS_ROOT ? spawnSync('runuser', ['-u', 'postgres', '--', ...args], { encoding: 'utf8', timeout: 120_000 }) : spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 120_000 });

  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, adminPassword + '\n', { mode: 0o600 });
  if (IS_ROOT) spawnSync('chown', ['postgres:postgres', pwFile]);
  const init = asServerUser([
    join(bin, 'initdb'), '-D', dataDir, '-U', 'bk_admin', `--pwfile=${pwFile}`, '--auth-local=scram-sha-256', '--auth-host=reject',
    '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync',
  ]);
  rmSync(pwFile, { force: true });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr}${init.stdout}`);
  }

  const serverArgs = [
    join(bin, 'postgres'), '-D', dataDir,
    '-c', 'listen_addresses=', // empty: no TCP at all (no shell here, so no quotes)
    '-c', `unix_socket_directories=${dir}`,
    '-c', 'unix_socket_permissions=0700',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'shared_buffers=32MB', '-c', 'max_connections=60',
    '-c', 'logging_collector=off',
  ];
  const logFd = openSync(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = IS_ROOT
      ? spawn('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--pdeathsig=QUIT', '--', ...serverArgs], { stdio: ['ignore', logFd, logFd] })
      : spawn(serverArgs[0]!, serverArgs.slice(1), { stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => ((exited = true), resolve())));
  child.on('error', () => undefined); // reported through `exited` below

  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const url = (user: string, password: string, database: string) =>
    `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@/${encodeURIComponent(database)}?host=${encodeURIComponent(dir)}`;
  const adminUrl = (database = 'postgres') => url('bk_admin', adminPassword, database);

  let stopped = false;
  const killNow = () => {
    if (!exited) child.kill('SIGQUIT'); // immediate shutdown: the postmaster takes its backends down
  };
  const onExit = () => {
    killNow();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    killNow();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exit;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  };

  const query = async <R>(text: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> => {
    const c = new Client({ connectionString: adminUrl(database) });
    await c.connect();
    try {
      return (await c.query(text, params)).rows as R[];
    } finally {
      await c.end();
    }
  };

  // Ready when the superuser can log in (bounded; the server log explains a failure).
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      const l = log();
      rmSync(dir, { recursive: true, force: true });
      process.removeListener('exit', onExit);
      throw new Error(`postgres exited during start-up:\n${l}`);
    }
    try {
      await query('select 1');
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        const l = log();
        await stop();
        throw new Error(`postgres did not accept connections within 60 s (${(e as Error).message}):\n${l}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  return {
    dir,
    version,
    adminPassword,
    adminUrl,
    url,
    query,
    async createDatabase(opts = {}) {
      const n = ++seq;
      const name = opts.name ?? `bk_test_${n}`;
      const owner = opts.owner ?? `bk_owner_${n}`;
      const password = randomBytes(12).toString('base64url');
      // Identifiers are ours (no quoting games needed); the password goes in as a literal.
      await query(`create role "${owner}" login password '${password}' nosuperuser nocreatedb nocreaterole`);
      await query(`create database "${name}" owner "${owner}"`);
      return { name, owner, password, url: url(owner, password, name) };
    },
    log,
    stop,
  };
}

let shared: Promise<PrivatePostgres> | undefined;
let warned = false;

/**
 * The process's shared cluster, started on first use and stopped when the root tap test ends.
 * Returns undefined (the test marked skipped, with a loud warning) only when not running as root
 * and PostgreSQL is not installed; as root that is a test failure (thrown).
 */
export async function usePostgres(t: tap.Test): Promise<PrivatePostgres | undefined> {
  const reason = postgresUnavailableReason();
  if (reason !== undefined) {
    if (IS_ROOT) throw new Error(`PostgreSQL tests cannot run: ${reason}. Refusing to skip them as root.`);
    warnSkip(reason);
    t.plan(0, `PostgreSQL unavailable (not root): ${reason}`); // marks the calling test skipped; call this first
    return undefined;
  }
  return sharedPostgres();
}

/** The process's shared cluster (see usePostgres), for fixtures that have no test to skip: throws when unavailable. */
export function sharedPostgres(): Promise<PrivatePostgres> {
  if (shared === undefined) {
    shared = startPrivatePostgres();
    const started = shared;
    rootTap.teardown(async () => {
      await (await started.catch(() => undefined))?.stop();
    });
  }
  return shared;
}

/** Prints the skip reason once per process, where a human reading the run will see it. */
export function warnSkip(reason: string): void {
  if (warned) return;
  warned = true;
  process.stderr.write(`\n!!!!! SKIPPING PostgreSQL tests (not running as root): ${reason}\n!!!!! Install it (apt-get install postgresql) or run as root to test the PostgreSQL store.\n\n`);
}
