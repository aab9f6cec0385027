// A real, PRIVATE Docker engine for tap tests.
//
//   const engine = await useEngine(t);
//   const r = await engine.docker(['run', '--rm', '--network', 'none', engine.image, 'echo', 'hi']);
//
// - When BULKHEAD_TEST_DOCKER_HOST is set (scripts/test.sh starts ONE shared engine for the
//   whole run and exports it), that engine is used and never stopped here.
// - Otherwise (e.g. `npx tap test/foo.test.ts` by hand) a private engine is started once per
//   test process with scripts/engine.sh in a fresh /tmp/bk-XXXXXX dir, and stopped in the
//   ROOT tap test's teardown (i.e. when the test file ends), so several useEngine() calls in
//   one file share it. Starting one takes ~1-2 s (needs root; installs docker.io and
//   busybox-static via apt when missing).
// - It throws rather than ever talk to the host's default engine (/var/run/docker.sock).
// - startPrivateEngine({ dockerdArgs }) always starts a dedicated engine, e.g. for
//   authorization-plugin tests that need `--authorization-plugin=NAME` or stop the engine.
// - Two engine versions: `startPrivateEngine({ version: '26.1' })` runs Debian trixie's
//   Docker 26.1 (API 1.45), unpacked into a cache dir by scripts/engine-26.sh; the default
//   and the shared engine are Debian 12's 20.10 (API 1.41). ENGINE_VERSIONS lists both;
//   availableEngineVersions() says which this machine has now. A test that needs 26.1
//   FAILS when it cannot be had (never skips): scripts/test.sh fetches it once up front and
//   exports BULKHEAD_TEST_ENGINE_26_ERROR when that failed, which startPrivateEngine throws.
//
// Containers that tests create should carry LABEL_ARGS (`--label bulkhead.test=1 --label
// bulkhead.test.file=<unique>`) and be removed with removeLabelledContainers(engine, FILE_LABEL)
// in a teardown: the shared engine outlives a test file, and other files run in parallel.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import rootTap from 'tap';

export const ENGINE_SCRIPT = resolve(__dirname, '../../scripts/engine.sh');
export const ENGINE_26_SCRIPT = resolve(__dirname, '../../scripts/engine-26.sh');
/** Engine versions the test infrastructure can start (startPrivateEngine's `version`). */
export const ENGINE_VERSIONS = ['20.10', '26.1'] as const;
export type EngineVersion = (typeof ENGINE_VERSIONS)[number];
export const TEST_IMAGE = 'bulkhead-test/busybox:1';
export const TEST_IMAGE_USER1000 = 'bulkhead-test/busybox:user1000';
export const TEST_LABEL_KEY = 'bulkhead.test';
export const TEST_LABEL = `${TEST_LABEL_KEY}=1`;
/**
 * Unique to this test process. With `jobs: 2` two test files share the engine at once, so
 * clean up with FILE_LABEL, not TEST_LABEL (that would also remove the other file's containers).
 */
export const FILE_LABEL = `${TEST_LABEL_KEY}.file=${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
/** `docker run`/`create` args that put both labels on a container. */
export const LABEL_ARGS: readonly string[] = ['--label', TEST_LABEL, '--label', FILE_LABEL];

export interface DockerResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface DockerOptions {
  /** Written to the CLI's stdin (e.g. a tar stream for `docker import -`). */
  input?: string | Buffer;
  /** Kill the CLI after this many ms (default 60 s); code is then 124. */
  timeoutMs?: number;
}

export interface Engine {
  /** `unix:///tmp/.../docker.sock`: use as DOCKER_HOST or dockerode's socketPath source. */
  dockerHost: string;
  /** Path of the unix socket (for dockerode: `new Docker({ socketPath })`). */
  socketPath: string;
  /** The busybox test image (`CMD ["sh"]`, runs as root). */
  image: string;
  /** Same image with `USER 1000`. */
  imageUser1000: string;
  /** True when this process started the engine (and will stop it). */
  private: boolean;
  /** Runs the docker CLI against this engine; never throws for a non-zero exit. */
  docker(args: string[], opts?: DockerOptions): Promise<DockerResult>;
  /** Like docker() but throws on a non-zero exit; returns trimmed stdout. */
  dockerOk(args: string[], opts?: DockerOptions): Promise<string>;
}

const FORBIDDEN_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock'];

/** Normalises a DOCKER_HOST-ish value and returns its socket path; throws for the default engine. */
export function checkDockerHost(host: string): { dockerHost: string; socketPath: string } {
  let h = host.trim();
  if (h.startsWith('/')) h = `unix://${h}`;
  if (!h.startsWith('unix://')) {
    throw new Error(`test engine must be a unix socket of a private engine, got ${JSON.stringify(host)}`);
  }
  const socketPath = h.slice('unix://'.length);
  if (!socketPath.startsWith('/')) throw new Error(`bad docker host ${JSON.stringify(host)}`);
  let real = resolve(socketPath);
  try {
    real = realpathSync(socketPath);
  } catch {
    // not created yet: compare the plain path
  }
  const candidates = new Set([resolve(socketPath), real]);
  for (const f of FORBIDDEN_SOCKETS) {
    if (candidates.has(f)) {
      throw new Error(`refusing to run tests against the host's default Docker engine (${host}); use scripts/engine.sh`);
    }
  }
  return { dockerHost: h, socketPath };
}

export function runDocker(dockerHost: string, args: string[], opts: DockerOptions = {}): Promise<DockerResult> {
  return new Promise((resolvePromise) => {
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: dockerHost };
    delete env['DOCKER_CONTEXT'];
    delete env['DOCKER_TLS_VERIFY'];
    const child = spawn('docker', ['-H', dockerHost, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => err.push(Buffer.from(String(e))));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? undefined);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (timedOut ? `\n[docker ${args[0]} timed out]` : ''),
        code: timedOut ? 124 : (code ?? 1),
      });
    });
  });
}

function makeEngine(dockerHost: string, socketPath: string, isPrivate: boolean): Engine {
  const docker = (args: string[], opts?: DockerOptions) => runDocker(dockerHost, args, opts);
  return {
    dockerHost,
    socketPath,
    image: TEST_IMAGE,
    imageUser1000: TEST_IMAGE_USER1000,
    private: isPrivate,
    docker,
    async dockerOk(args, opts) {
      const r = await docker(args, opts);
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout.trim();
    },
  };
}

/** Refuses an engine whose data-root is the host default (belt and braces after the socket check). */
async function assertPrivateDataRoot(engine: Engine): Promise<void> {
  const r = await engine.docker(['info', '--format', '{{.DockerRootDir}}']);
  if (r.code !== 0) throw new Error(`test engine at ${engine.dockerHost} does not answer: ${r.stderr.trim()}`);
  if (r.stdout.trim() === '/var/lib/docker') {
    throw new Error(`refusing to use ${engine.dockerHost}: its data-root is /var/lib/docker (the host's default engine)`);
  }
}

function runEngineScript(cmd: 'start' | 'stop', dir: string, env: NodeJS.ProcessEnv = {}): Promise<DockerResult> {
  return new Promise((resolvePromise) => {
    const child = spawn('bash', [ENGINE_SCRIPT, cmd, dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => err.push(Buffer.from(String(e))));
    child.on('close', (code) =>
      resolvePromise({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code: code ?? 1 }),
    );
  });
}

/** Dirs of engines this process started and has not stopped yet. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function stopAllSync(): void {
  // Last resort if a teardown never ran (uncaught error, process.exit()).
  for (const dir of liveDirs) {
    spawnSync('bash', [ENGINE_SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 60_000 });
    rmSync(dir, { recursive: true, force: true });
  }
  liveDirs.clear();
}

export interface PrivateEngine extends Engine {
  /** The engine.sh DIR (docker.sock, data/, dockerd.log, ...). */
  dir: string;
  version: EngineVersion;
  /** dockerd's pid (for /proc/<pid>/cwd, capabilities …). */
  dockerdPid: number;
  /** Stops the engine and deletes its DIR; safe to call twice. */
  stop(): Promise<void>;
}

export interface PrivateEngineOptions {
  /** Extra dockerd flags, e.g. ['--authorization-plugin=bulkhead-authz']. */
  dockerdArgs?: string[];
  /** Stop the engine in this test's teardown (default: the root tap test's, i.e. at file end). */
  t?: tap.Test;
  /** Default '20.10' (Debian 12's docker.io); '26.1' is Debian trixie's, see scripts/engine-26.sh. */
  version?: EngineVersion;
  /** Run containerd and dockerd in this existing network namespace (`ip netns add`; swarm mode). */
  netns?: string;
}

/**
 * The engine versions this machine can start right now, without a download: 20.10 when
 * dockerd 20.10 is installed, 26.1 when scripts/engine-26.sh has it in its cache.
 * (startPrivateEngine({ version: '26.1' }) fetches it when missing.)
 */
export function availableEngineVersions(): EngineVersion[] {
  const out: EngineVersion[] = [];
  const path = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;
  const d = spawnSync('dockerd', ['--version'], { encoding: 'utf8', env: { ...process.env, PATH: path } });
  if (d.status === 0 && /version 20\.10\./.test(d.stdout)) out.push('20.10');
  if (spawnSync('bash', [ENGINE_26_SCRIPT, 'path'], { stdio: 'ignore' }).status === 0) out.push('26.1');
  return out;
}

/**
 * Always starts a NEW private engine (ignores BULKHEAD_TEST_DOCKER_HOST): for tests that need
 * special dockerd flags (an authorization plugin) or that stop/break the engine. ~1-2 s.
 */
export async function startPrivateEngine(opts: PrivateEngineOptions = {}): Promise<PrivateEngine> {
  const version = opts.version ?? '20.10';
  if (!(ENGINE_VERSIONS as readonly string[]).includes(version)) throw new Error(`unknown engine version ${String(version)}; known: ${ENGINE_VERSIONS.join(', ')}`);
  const fetchError = process.env['BULKHEAD_TEST_ENGINE_26_ERROR'];
  if (version === '26.1' && fetchError) {
    throw new Error(`Docker 26.1 is not available on this machine: scripts/test.sh could not fetch it (${fetchError}); run \`bash scripts/engine-26.sh fetch\` to see why`);
  }
  // Short path: unix socket paths are limited to 108 bytes.
  const dir = mkdtempSync('/tmp/bk-');
  liveDirs.add(dir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', stopAllSync);
  }
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const r = await runEngineScript('stop', dir);
      liveDirs.delete(dir);
      if (r.code !== 0) throw new Error(`scripts/engine.sh stop ${dir} failed (exit ${r.code}): ${r.stderr}`);
      rmSync(dir, { recursive: true, force: true });
    })());
  (opts.t ?? rootTap).teardown(stop);

  const env: NodeJS.ProcessEnv = { BULKHEAD_ENGINE_VERSION: version };
  if (opts.dockerdArgs?.length) env['BULKHEAD_ENGINE_DOCKERD_ARGS'] = opts.dockerdArgs.join(' ');
  if (opts.netns) env['BULKHEAD_ENGINE_NETNS'] = opts.netns;
  const r = await runEngineScript('start', dir, env);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  const m = /^export DOCKER_HOST=(\S+)$/.exec(last);
  if (r.code !== 0 || !m) {
    throw new Error(`scripts/engine.sh start ${dir} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  }
  const { dockerHost, socketPath } = checkDockerHost(m[1]!);
  const dockerdPid = Number(readFileSync(`${dir}/dockerd.pid`, 'utf8').trim());
  return { ...makeEngine(dockerHost, socketPath, true), dir, stop, version, dockerdPid };
}

let processEngine: Promise<Engine> | undefined;

/**
 * The test engine: the shared one from BULKHEAD_TEST_DOCKER_HOST, or a private one started
 * for (and stopped at the end of) this test process. `t` only receives a diagnostic comment.
 */
export async function useEngine(t?: tap.Test): Promise<Engine> {
  const shared = process.env['BULKHEAD_TEST_DOCKER_HOST'];
  let engine: Engine;
  if (shared) {
    const { dockerHost, socketPath } = checkDockerHost(shared);
    engine = makeEngine(dockerHost, socketPath, false);
  } else {
    processEngine ??= startPrivateEngine();
    try {
      engine = await processEngine;
    } catch (e) {
      processEngine = undefined;
      throw e;
    }
  }
  await assertPrivateDataRoot(engine);
  t?.comment(`docker engine: ${engine.dockerHost}${engine.private ? ' (private to this test file)' : ' (shared)'}`);
  return engine;
}

/**
 * Force-removes every container (running or not) carrying `label` (`key=value` or `key`).
 * Default: this test process's FILE_LABEL. Pass TEST_LABEL to sweep every test container
 * (only safe when no other test file is running).
 */
export async function removeLabelledContainers(engine: Pick<Engine, 'docker'>, label = FILE_LABEL): Promise<number> {
  const ls = await engine.docker(['ps', '-aq', '--filter', `label=${label}`]);
  if (ls.code !== 0) throw new Error(`docker ps failed: ${ls.stderr.trim()}`);
  const ids = ls.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
  if (ids.length === 0) return 0;
  const rm = await engine.docker(['rm', '-f', '-v', ...ids]);
  if (rm.code !== 0 && !/No such container/i.test(rm.stderr)) throw new Error(`docker rm failed: ${rm.stderr.trim()}`);
  return ids.length;
}
