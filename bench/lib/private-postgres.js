// Owns a private, throw-away PostgreSQL cluster for benchmarks: Debian's
// server binaries (/usr/lib/postgresql/<v>/bin), a unix socket in a 0700 temp
// dir and no TCP listener at all, SCRAM passwords, one database owned by a
// non-superuser role (what docs/cli.md#postgresql asks of an operator).
// As root the server runs as `postgres` (setpriv, with a parent-death signal so
// it cannot outlive the benchmark). Unlike the tests' cluster
// (test/helpers/postgres.ts), durability settings stay at PostgreSQL's
// defaults (fsync, synchronous_commit on): the figures are those of a real
// deployment's commit path. `settings` adds `-c name=value` pairs.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { Client } = require('pg');

function pgBin() {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const bin = join(base, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)');
}

async function startPrivatePostgres({ settings = {}, cpus } = {}) {
  const bin = pgBin();
  const isRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'bk-bench-pg-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const adminPassword = randomBytes(18).toString('base64url');
  if (isRoot) spawnSync('chown', ['postgres:postgres', dir]);
  const asServerUser = (args) => (isRoot
    ? spawnSync('runuser', ['-u', 'postgres', '--', ...args], { encoding: 'utf8', timeout: 120_000 })
    : spawnSync(args[0], args.slice(1), { encoding: 'utf8', timeout: 120_000 }));
  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, adminPassword + '\n', { mode: 0o600 });
  if (isRoot) spawnSync('chown', ['postgres:postgres', pwFile]);
  const init = asServerUser([join(bin, 'initdb'), '-D', dataDir, '-U', 'bk_admin', `--pwfile=${pwFile}`, '--auth-local=scram-sha-256', '--auth-host=reject', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
  rmSync(pwFile, { force: true });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr}${init.stdout}`);
  }
  const args = [join(bin, 'postgres'), '-D', dataDir, '-c', 'listen_addresses=', '-c', `unix_socket_directories=${dir}`, '-c', 'unix_socket_permissions=0700', '-c', 'logging_collector=off'];
  for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
  const fd = openSync(logFile, 'a', 0o600);
  const argv = isRoot ? ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups', '--pdeathsig=QUIT', '--', ...args] : args;
  // `cpus` sets the server's CPU affinity (taskset execs, so the pid stays the server's).
  if (cpus !== undefined) argv.unshift('taskset', '-c', String(cpus));
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = false;
  const exit = new Promise((res) => child.on('exit', () => ((exited = true), res())));
  const url = (user, password, database) => `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@/${encodeURIComponent(database)}?host=${encodeURIComponent(dir)}`;
  const query = async (text, database = 'postgres') => {
    const c = new Client({ connectionString: url('bk_admin', adminPassword, database) });
    await c.connect();
    try {
      return (await c.query(text)).rows;
    } finally {
      await c.end();
    }
  };
  const stop = async () => {
    if (!exited) child.kill('SIGQUIT');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exit;
    clearTimeout(t);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`postgres exited during start-up:\n${readFileSync(logFile, 'utf8')}`);
    try {
      await query('select 1');
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`postgres did not accept connections within 60 s: ${e.message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const owner = 'bk_bench';
  const password = randomBytes(18).toString('base64url');
  await query(`CREATE ROLE ${owner} LOGIN PASSWORD '${password}'`);
  await query(`CREATE DATABASE bulkhead OWNER ${owner}`);
  /** The postmaster's pid: its backends are its children (for CPU accounting). */
  const postmasterPid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return { dir, url: url(owner, password, 'bulkhead'), postmasterPid, stop, version: bin.split('/').at(-2) };
}

/** The pids of a process and all its descendants (from /proc). */
function processTree(rootPid) {
  const children = new Map();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(e));
    } catch { /* gone */ }
  }
  const out = [];
  const stack = [rootPid];
  while (stack.length) {
    const p = stack.pop();
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

module.exports = { startPrivatePostgres, processTree };
