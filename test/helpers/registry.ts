// Image-signature test infrastructure: a real registry, real images, real signers and real
// verifiers, all offline and on loopback.
//
//   const reg = await startRegistry({ t });                       // docker-registry 2.8, HTTPS, test CA
//   const img = await buildOciImage(t.testdir(), { variant: 'a' }); // busybox, no daemon
//   const digest = await pushImage(reg, img, 'test/app:1');        // skopeo 1.9 push
//   const key = await generateCosignKeyPair(t.testdir());          // cosign-format key pair
//   await cosignSign(reg, key, reg.ref('test/app', digest));       // REAL cosign 2.5
//   await skopeoCopySigned(reg, img, 'test/app:2', key);           // REAL skopeo 1.18 signing copy
//   (await cosignVerify(reg, key, reg.ref('test/app', '1'))).ok    // oracle 1
//   (await skopeoVerify(reg, key, reg.ref('test/app', '1'))).ok    // oracle 2
//   await pullInto(engine.dockerHost, reg.ref('test/app', '1'))    // -> RepoDigests
//
// The tools come from scripts/sign-tools.sh (cached in /var/cache/bulkhead/sign-tools;
// scripts/test.sh fetches them once per run and exports BULKHEAD_TEST_SIGN_TOOLS_ERROR when it
// could not, which signTools() throws: a signature test FAILS without its tools, never skips):
//   cosign 2.5 (trixie), skopeo 1.18 (trixie, through trixie's loader), skopeo 1.9 (Debian 12:
//   its sigstore code is patched out, "sigstore disabled", so it only pushes and pulls),
//   docker-registry 2.8.2 (Debian 12).
//
// What works here (verified 2026-12-06 on Debian 12, offline):
// - cosign `sign --key K --tlog-upload=false` and skopeo 1.18 `copy --sign-by-sigstore-private-key`
//   (registries.d `use-sigstore-attachments: true`) both write the classic attachment: tag
//   `sha256-<hex>.sig`, one layer per signature of type application/vnd.dev.cosign.simplesigning.v1+json,
//   the payload `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},
//   "type":"cosign container image signature"},"optional":{…annotations}}`, the base64 ASN.1
//   ECDSA signature over the payload bytes in the layer annotation dev.cosignproject.cosign/signature.
//   `cosign sign -a k=v` puts annotations under `optional`; a second signature is a second layer.
// - Oracles: `cosign verify --key PUB --insecure-ignore-tlog=true` (exit 0 + JSON, or
//   "no signatures found" / "no matching signatures") and skopeo 1.18 with a `sigstoreSigned`
//   policy (a copy that fails with "no signature exists" / "signature verification failed").
//   A third, independent check: Node's crypto.verify('sha256', payload, pub, sig) on what
//   readAttachedSignatures() returns.
// - OCI 1.1 referrers (docker-registry 2.8 has no referrers API; cosign, through
//   go-containerregistry, then uses the referrers TAG SCHEMA: tag `sha256-<hex>` (no suffix)
//   holding an OCI index of the referring manifests, each with `subject` = the image):
//   * cosign 2.5 `sign` has NO --new-bundle-format flag (2.5 has it on attest, verify,
//     verify-attestation and sign-blob only).
//   * `cosign sign --registry-referrers-mode=oci-1-1` (needs COSIGN_EXPERIMENTAL=1;
//     cosignSign({ referrers: true })) works offline: the same simplesigning signature, stored
//     as a referrer instead of the .sig tag (its manifest has config mediaType
//     application/vnd.dev.cosign.artifact.sig.v1+json and no top-level artifactType; the
//     index entry carries artifactType application/vnd.dev.cosign.artifact.sig.v1+json). Only `cosign verify --experimental-oci11` finds it (plain verify: "no
//     signatures found"); skopeo does not look there.
//   * `cosign attest --new-bundle-format --key K --tlog-upload=false` (cosignAttest) works
//     offline: a referrer with artifactType application/vnd.dev.sigstore.bundle.v0.3+json, config
//     application/vnd.oci.empty.v1+json, one layer = the Sigstore bundle (a DSSE envelope of an
//     in-toto statement; annotation dev.sigstore.bundle.content=dsse-envelope). (The index entry
//     in the fallback tag says artifactType application/vnd.oci.empty.v1+json.)
//     `cosign verify-attestation --new-bundle-format --key PUB --insecure-ignore-tlog=true
//     --trusted-root EMPTY_ROOT` accepts it and rejects another key ("no matching
//     attestations"); `cosign verify --new-bundle-format` on it says "no signatures found".
//     WITHOUT --trusted-root, the --new-bundle-format verifiers fetch the Sigstore TUF root from
//     tuf-repo-cdn.sigstore.dev (a DNS query leaves the machine): the wrappers here always pass
//     an empty trusted root (TestRegistry.trustedRootFile).
// - Network: every Go tool runs with HTTP(S)_PROXY=http://127.0.0.1:9 (nothing listens there).
//   Go never proxies loopback, so the registry is reached directly, while any other request
//   (a TUF refresh, Rekor) fails at once on loopback, without even a DNS lookup.
// - dockerd 20.10 and 26.1 pull from https://127.0.0.1:PORT with our private CA and no
//   /etc/docker/certs.d (pullInto): 127.0.0.0/8 is an "insecure registry" by default, for
//   which dockerd speaks HTTPS WITHOUT verifying the certificate. The image then has real
//   RepoDigests (`127.0.0.1:PORT/repo@sha256:…`). Gotcha: when the HTTPS attempt fails (e.g.
//   401 without credentials) dockerd 20.10 retries the same port in plain HTTP and reports THAT
//   error ("connection reset by peer"); 26.1 reports "no basic auth credentials".
//
// Everything a test makes lives in its own temp dirs; the registry is stopped and its DIR
// removed in the teardown of the tap test given as `t` (default: the root test, i.e. file end).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPair as generateKeyPairCb, randomBytes, scrypt as scryptCb } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import rootTap from 'tap';
import * as tar from 'tar';
import nacl from 'tweetnacl';
import { runDocker } from './engine';

export const SIGN_TOOLS_SCRIPT = resolve(__dirname, '../../scripts/sign-tools.sh');
export const REGISTRY_SCRIPT = resolve(__dirname, '../../scripts/registry.sh');

/**
 * Given to every Go tool as HTTP(S)_PROXY: a dead loopback port. Go bypasses proxies for
 * loopback hosts, so only requests that should never happen (internet) land here and fail.
 */
export const DEAD_PROXY = 'http://127.0.0.1:9';
const NO_INTERNET_ENV: NodeJS.ProcessEnv = { HTTPS_PROXY: DEAD_PROXY, HTTP_PROXY: DEAD_PROXY, https_proxy: DEAD_PROXY, http_proxy: DEAD_PROXY, NO_PROXY: '', no_proxy: '' };

// ---------------------------------------------------------------------------------------------
// processes

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  /** Kill after this many ms (default 60 s); code is then 124. */
  timeoutMs?: number;
  cwd?: string;
}

/** Runs a program to completion; never throws for a non-zero exit. */
export function runTool(cmd: string, args: string[], opts: RunOptions = {}): Promise<ToolResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd ?? '/',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
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
        stderr: Buffer.concat(err).toString('utf8') + (timedOut ? `\n[${cmd} timed out]` : ''),
        code: timedOut ? 124 : (code ?? 1),
      });
    });
  });
}

async function runToolOk(what: string, cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${cmd} ${args.join(' ')}\n${r.stderr.trim()}\n${r.stdout.trim()}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// tools

export interface SignTools {
  /** Debian trixie's cosign 2.5. */
  cosign: string;
  /** Debian trixie's skopeo 1.18 (a wrapper running it through trixie's loader): signs + verifies. */
  skopeoSigstore: string;
  /** Debian 12's skopeo 1.9: copies only (its sigstore support is patched out). */
  skopeo: string;
  /** Debian 12's docker-registry 2.8.2. */
  registry: string;
}

let toolsPromise: Promise<SignTools> | undefined;

/** The signing tools; fetched by scripts/sign-tools.sh when missing (root, ~20 s once). Throws when unavailable. */
export function signTools(): Promise<SignTools> {
  toolsPromise ??= (async () => {
    let r = await runTool('bash', [SIGN_TOOLS_SCRIPT, 'path']);
    if (r.code !== 0) {
      const fetchError = process.env['BULKHEAD_TEST_SIGN_TOOLS_ERROR'];
      if (fetchError) throw new Error(`the image-signing tools are not available: scripts/test.sh could not fetch them (${fetchError}); run \`bash scripts/sign-tools.sh fetch\` to see why`);
      r = await runTool('bash', [SIGN_TOOLS_SCRIPT, 'fetch'], { timeoutMs: 600_000 });
      if (r.code !== 0) throw new Error(`scripts/sign-tools.sh fetch failed (exit ${r.code}):\n${r.stderr}`);
    }
    const kv = new Map(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
    const get = (k: string): string => {
      const v = kv.get(k);
      if (!v || !existsSync(v)) throw new Error(`scripts/sign-tools.sh did not give a usable ${k} (${String(v)})`);
      return v;
    };
    return { cosign: get('COSIGN'), skopeoSigstore: get('SKOPEO_SIGSTORE'), skopeo: get('SKOPEO'), registry: get('REGISTRY') };
  })();
  toolsPromise.catch(() => (toolsPromise = undefined));
  return toolsPromise;
}

// ---------------------------------------------------------------------------------------------
// registry

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` (the certificate names 127.0.0.1: always address it so). */
  addr: string;
  /** The registry's state dir (scripts/registry.sh DIR). */
  dir: string;
  /** PEM of the throw-away CA that issued the registry's certificate. */
  caFile: string;
  /** A dir holding only ca.crt: skopeo's --src-cert-dir / --dest-cert-dir. */
  certDir: string;
  /** Set when started with htpasswd auth. */
  credentials?: RegistryCredentials;
  /** `addr/repo:tag` or, for a `sha256:…` second argument, `addr/repo@sha256:…`. */
  ref(repo: string, tagOrDigest: string): string;
  /** A raw request to https://addr/v2/<path> (with the credentials, if any, unless `anonymous`). Follows no redirects. */
  request(method: string, path: string, opts?: { headers?: Record<string, string>; body?: Buffer | string; anonymous?: boolean }): Promise<HttpResult>;
  /** The digest the registry serves for repo:tag (HEAD, Docker-Content-Digest); undefined on 404. */
  manifestDigest(repo: string, tagOrDigest: string): Promise<string | undefined>;
  /** The manifest (or index) bytes as stored. */
  getManifest(repo: string, tagOrDigest: string): Promise<{ digest: string; mediaType: string; body: Buffer }>;
  /** GET /v2/<repo>/tags/list (empty when the repository does not exist). */
  tags(repo: string): Promise<string[]>;
  /** DELETE a manifest by digest (deletes are enabled). */
  deleteManifest(repo: string, digest: string): Promise<void>;
  /** Files used by the tool wrappers: an accept-anything policy and a registries.d with sigstore attachments on. */
  openPolicyFile: string;
  registriesDir: string;
  /** A DOCKER_CONFIG dir with the credentials (for cosign; empty `auths` when there are none). */
  dockerConfigDir: string;
  /** A private HOME for cosign (its ~/.sigstore cache lives there). */
  homeDir: string;
  /**
   * An EMPTY Sigstore trusted root (no tlogs, CAs, CT logs, TSAs): cosign's --trusted-root for
   * --new-bundle-format verification with a key, so it never fetches the TUF root online.
   */
  trustedRootFile: string;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  /** Teardown owner (default: the root tap test, i.e. when the file ends). */
  t?: tap.Test;
  /** Basic auth (htpasswd, bcrypt) for this one user. */
  auth?: RegistryCredentials;
  /** Default 0: any free port. */
  port?: number;
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** Starts a private docker-registry 2.8 on 127.0.0.1 over HTTPS (scripts/registry.sh). ~1 s. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  await signTools();
  const dir = mkdtempSync('/tmp/bk-reg-');
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const r = await runTool('bash', [REGISTRY_SCRIPT, 'stop', dir]);
      liveRegistries.delete(dir);
      if (r.code !== 0) throw new Error(`scripts/registry.sh stop ${dir} failed (exit ${r.code}): ${r.stderr}`);
      await rm(dir, { recursive: true, force: true });
    })());
  liveRegistries.add(dir);
  installExitHook();
  (opts.t ?? rootTap).teardown(stop);

  const args = [REGISTRY_SCRIPT, 'start', dir, String(opts.port ?? 0)];
  if (opts.auth) args.push('--htpasswd', `${opts.auth.username}:${opts.auth.password}`);
  const r = await runTool('bash', args, { timeoutMs: 120_000 });
  const m = /^export REGISTRY_ADDR=(127\.0\.0\.1:\d+)$/.exec(r.stdout.trim().split('\n').pop() ?? '');
  if (r.code !== 0 || !m) throw new Error(`scripts/registry.sh start ${dir} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const addr = m[1]!;
  const caFile = join(dir, 'ca.crt');
  const ca = readFileSync(caFile);
  const credentials = opts.auth ? { ...opts.auth } : undefined;

  // Files for the tools: policy, registries.d, docker config, HOME.
  const openPolicyFile = join(dir, 'policy-open.json');
  await writeFile(openPolicyFile, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const registriesDir = join(dir, 'registries.d');
  await mkdir(registriesDir, { recursive: true });
  await writeFile(join(registriesDir, 'test-registry.yaml'), `docker:\n  ${addr}:\n    use-sigstore-attachments: true\n`);
  const dockerConfigDir = join(dir, 'docker-config');
  await mkdir(dockerConfigDir, { recursive: true });
  const auths: Record<string, { auth: string }> = {};
  if (credentials) auths[addr] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') };
  await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify({ auths }), { mode: 0o600 });
  const homeDir = join(dir, 'home');
  await mkdir(homeDir, { recursive: true });
  const trustedRootFile = join(dir, 'trusted-root-empty.json');
  await writeFile(
    trustedRootFile,
    JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] }),
  );

  const request: TestRegistry['request'] = (method, path, ropts = {}) =>
    new Promise((resolvePromise, reject) => {
      const headers: Record<string, string> = { ...ropts.headers };
      if (credentials && !ropts.anonymous) headers['authorization'] = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
      const [host, port] = addr.split(':');
      const req = httpsRequest({ host, port: Number(port), method, path: `/v2/${path}`, headers, ca, timeout: 15_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} https://${addr}/v2/${path} timed out`)));
      req.on('error', reject);
      req.end(ropts.body);
    });

  const reg: TestRegistry = {
    addr,
    dir,
    caFile,
    certDir: join(dir, 'certs'),
    ...(credentials ? { credentials } : {}),
    ref: (repo, tagOrDigest) => `${addr}/${repo}${tagOrDigest.startsWith('sha256:') ? '@' : ':'}${tagOrDigest}`,
    request,
    async manifestDigest(repo, tagOrDigest) {
      const res = await request('HEAD', `${repo}/manifests/${tagOrDigest}`, { headers: { accept: MANIFEST_ACCEPT } });
      if (res.status === 404) return undefined;
      if (res.status !== 200) throw new Error(`HEAD ${repo}/manifests/${tagOrDigest}: HTTP ${res.status}`);
      return String(res.headers['docker-content-digest']);
    },
    async getManifest(repo, tagOrDigest) {
      const res = await request('GET', `${repo}/manifests/${tagOrDigest}`, { headers: { accept: MANIFEST_ACCEPT } });
      if (res.status !== 200) throw new Error(`GET ${repo}/manifests/${tagOrDigest}: HTTP ${res.status} ${res.body.toString()}`);
      return { digest: sha256Digest(res.body), mediaType: String(res.headers['content-type']), body: res.body };
    },
    async tags(repo) {
      const res = await request('GET', `${repo}/tags/list`);
      if (res.status === 404) return [];
      if (res.status !== 200) throw new Error(`GET ${repo}/tags/list: HTTP ${res.status} ${res.body.toString()}`);
      return (JSON.parse(res.body.toString()) as { tags: string[] | null }).tags ?? [];
    },
    async deleteManifest(repo, digest) {
      const res = await request('DELETE', `${repo}/manifests/${digest}`);
      if (res.status !== 202) throw new Error(`DELETE ${repo}/manifests/${digest}: HTTP ${res.status} ${res.body.toString()}`);
    },
    openPolicyFile,
    registriesDir,
    dockerConfigDir,
    homeDir,
    trustedRootFile,
    stop,
  };
  return reg;
}

const liveRegistries = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a teardown never ran (uncaught error, process.exit()).
  process.once('exit', () => {
    for (const dir of liveRegistries) {
      spawnSync('bash', [REGISTRY_SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 20_000 });
      rmSync(dir, { recursive: true, force: true });
    }
    liveRegistries.clear();
  });
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// OCI image layout (no daemon)

export interface OciImage {
  /** The OCI image layout directory. */
  layoutDir: string;
  /** Its one tag (org.opencontainers.image.ref.name). */
  tag: string;
  /** Digest of the image manifest: what a registry serves and what signatures name. */
  digest: string;
  /** `oci:<layoutDir>:<tag>` for skopeo. */
  transportRef: string;
  manifest: Buffer;
  configDigest: string;
  layerDigest: string;
}

export interface BuildOciImageOptions {
  /** Default '1'. */
  tag?: string;
  /**
   * Adds /etc/bulkhead-variant holding this text: a different layer, hence a different image
   * digest, per variant. The same options always give the same digest.
   */
  variant?: string;
  /** Extra files (path inside the image -> content), e.g. { 'etc/app.conf': 'x=1\n' }. */
  files?: Record<string, string>;
  /** Image config `Labels`. */
  labels?: Record<string, string>;
}

const BUSYBOX = '/bin/busybox';
const APPLETS = ['cat', 'echo', 'ls', 'sh', 'sleep', 'true'];

/**
 * Builds a one-layer OCI image layout under `dir` (a fresh subdir per call): a static busybox
 * with sh/sleep/echo/… links, plus the options' files. Deterministic: fixed mtimes (0), owners
 * (0), modes and entry order, and gzip with mtime 0, so equal options give equal digests.
 */
export async function buildOciImage(dir: string, opts: BuildOciImageOptions = {}): Promise<OciImage> {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing (apt-get install busybox-static; scripts/test.sh does it)`);
  const tag = opts.tag ?? '1';
  await mkdir(dir, { recursive: true });
  const layoutDir = await mkdtemp(join(dir, 'oci-'));
  const stage = await mkdtemp(join(dir, 'rootfs-'));
  try {
    // Entries in a fixed order, each with an explicit mode (the umask must not leak in).
    const entries: string[] = [];
    const mkdirp = async (rel: string): Promise<void> => {
      const parts = rel.split('/');
      for (let i = 1; i <= parts.length; i++) {
        const p = parts.slice(0, i).join('/');
        if (!entries.includes(p)) {
          await mkdir(join(stage, p), { recursive: true });
          await chmod(join(stage, p), 0o755);
          entries.push(p);
        }
      }
    };
    await mkdirp('bin');
    await copyFile(BUSYBOX, join(stage, 'bin/busybox'));
    await chmod(join(stage, 'bin/busybox'), 0o755);
    entries.push('bin/busybox');
    for (const a of APPLETS) {
      await symlink('busybox', join(stage, 'bin', a));
      entries.push(`bin/${a}`);
    }
    const files: Record<string, string> = { ...opts.files };
    if (opts.variant !== undefined) files['etc/bulkhead-variant'] = `${opts.variant}\n`;
    for (const rel of Object.keys(files).sort()) {
      const clean = rel.replace(/^\/+/, '');
      if (!clean || clean.split('/').includes('..')) throw new Error(`bad file path in image: ${rel}`);
      const slash = clean.lastIndexOf('/');
      if (slash > 0) await mkdirp(clean.slice(0, slash));
      await writeFile(join(stage, clean), files[rel]!);
      await chmod(join(stage, clean), 0o644);
      entries.push(clean);
    }
    // node-tar: `portable` drops uid/gid/uname/gname/atime/ctime/dev/ino; `mtime` fixes the
    // rest; noDirRecurse + our list fixes the order (readdir order is the filesystem's).
    const chunks: Buffer[] = [];
    const stream = tar.create({ cwd: stage, portable: true, mtime: new Date(0), noDirRecurse: true, gzip: false }, entries);
    for await (const c of stream as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
    const layerTar = Buffer.concat(chunks);
    const diffId = sha256Digest(layerTar);
    // Node's gzip header has mtime 0 and a fixed OS byte: equal input, equal bytes.
    const layerGz = gzipSync(layerTar, { level: 6 });

    const blobs = join(layoutDir, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const put = async (data: Buffer): Promise<{ digest: string; size: number }> => {
      const digest = sha256Digest(data);
      await writeFile(join(blobs, digest.slice('sha256:'.length)), data);
      return { digest, size: data.length };
    };
    const layer = await put(layerGz);
    const config = await put(
      Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          created: '1970-01-01T00:00:00Z',
          config: {
            Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
            Cmd: ['sh'],
            ...(opts.labels ? { Labels: opts.labels } : {}),
          },
          rootfs: { type: 'layers', diff_ids: [diffId] },
          history: [{ created: '1970-01-01T00:00:00Z', created_by: 'bulkhead test/helpers/registry.ts buildOciImage' }],
        }),
      ),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    );
    const m = await put(manifest);
    await writeFile(
      join(layoutDir, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': tag } }],
      }),
    );
    await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    return { layoutDir, tag, digest: m.digest, transportRef: `oci:${layoutDir}:${tag}`, manifest, configDigest: config.digest, layerDigest: layer.digest };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// push

function credsArgs(reg: TestRegistry, side: 'src' | 'dest'): string[] {
  return reg.credentials ? [`--${side}-creds`, `${reg.credentials.username}:${reg.credentials.password}`] : [];
}

/**
 * Pushes `image` to `reg` as `repoTag` ('repo:tag') with Debian 12's skopeo 1.9 (no signature).
 * Returns the digest the registry serves for it (equal to image.digest: skopeo keeps the bytes).
 */
export async function pushImage(reg: TestRegistry, image: OciImage, repoTag: string): Promise<string> {
  const tools = await signTools();
  await runToolOk('skopeo 1.9 copy (push)', tools.skopeo, [
    'copy', '--quiet', '--policy', reg.openPolicyFile, '--dest-cert-dir', reg.certDir, ...credsArgs(reg, 'dest'),
    image.transportRef, `docker://${reg.addr}/${repoTag}`,
  ], { env: toolEnv(reg) });
  const [repo, tag] = splitRepoTag(repoTag);
  const digest = await reg.manifestDigest(repo, tag);
  if (!digest) throw new Error(`pushed ${repoTag} but the registry does not serve it`);
  return digest;
}

/** Monolithic blob upload through the registry API; returns the blob's digest. */
export async function pushBlob(reg: TestRegistry, repo: string, body: Buffer): Promise<string> {
  const digest = sha256Digest(body);
  const start = await reg.request('POST', `${repo}/blobs/uploads/`);
  if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status}`);
  const loc = new URL(String(start.headers['location']), `https://${reg.addr}`);
  loc.searchParams.set('digest', digest);
  const put = await reg.request('PUT', `${loc.pathname.replace(/^\/v2\//, '')}${loc.search}`, { body, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`blob upload: HTTP ${put.status} ${put.body.toString()}`);
  return digest;
}

function splitRepoTag(repoTag: string): [string, string] {
  const i = repoTag.lastIndexOf(':');
  if (i <= 0 || repoTag.slice(i).includes('/')) throw new Error(`want repo:tag, got ${repoTag}`);
  return [repoTag.slice(0, i), repoTag.slice(i + 1)];
}

// ---------------------------------------------------------------------------------------------
// keys

export interface CosignKeyPair {
  /** PEM "ENCRYPTED COSIGN PRIVATE KEY" (or SIGSTORE, see options), mode 0600. */
  privateKeyFile: string;
  /** PEM "PUBLIC KEY" (SubjectPublicKeyInfo, ECDSA P-256). */
  publicKeyFile: string;
  publicKeyPem: string;
  passphrase: string;
  /** The passphrase on the file's first line (what skopeo's --sign-passphrase-file reads). */
  passphraseFile: string;
}

const scrypt = promisify(scryptCb) as (password: Buffer, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;
const generateKeyPair = promisify(generateKeyPairCb);

/**
 * Writes a cosign-format encrypted ECDSA P-256 key pair (what `cosign generate-key-pair`
 * writes) into a fresh subdir of `dir`. The PEM body is the JSON of go-securesystemslib's
 * `encrypted` package: {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":b64},
 * "cipher":{"name":"nacl/secretbox","nonce":b64},"ciphertext":b64}, where ciphertext =
 * secretbox(PKCS#8 DER, nonce, scrypt(passphrase, salt)). N=32768/r=8/p=1 are the only
 * parameters older decoders accept. Node has scrypt but no XSalsa20-Poly1305, hence tweetnacl.
 */
export async function generateCosignKeyPair(
  dir: string,
  opts: { passphrase?: string; pemType?: 'ENCRYPTED COSIGN PRIVATE KEY' | 'ENCRYPTED SIGSTORE PRIVATE KEY' } = {},
): Promise<CosignKeyPair> {
  const passphrase = opts.passphrase ?? randomBytes(12).toString('base64url');
  if (passphrase.includes('\n')) throw new Error('the passphrase must be one line (skopeo reads the first line of its file)');
  await mkdir(dir, { recursive: true });
  const out = await mkdtemp(join(dir, 'key-'));
  const { publicKey, privateKey } = await generateKeyPair('ec', { namedCurve: 'prime256v1' });
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const salt = randomBytes(32);
  const nonce = randomBytes(24);
  const boxKey = await scrypt(Buffer.from(passphrase, 'utf8'), salt, 32, { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  const sealed = nacl.secretbox(new Uint8Array(pkcs8), new Uint8Array(nonce), new Uint8Array(boxKey)); // tag || ciphertext
  const body = JSON.stringify({
    kdf: { name: 'scrypt', params: { N: 32768, r: 8, p: 1 }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(sealed).toString('base64'),
  });
  const type = opts.pemType ?? 'ENCRYPTED COSIGN PRIVATE KEY';
  const b64 = Buffer.from(body).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  const privateKeyFile = join(out, 'cosign.key');
  const publicKeyFile = join(out, 'cosign.pub');
  const passphraseFile = join(out, 'passphrase');
  const publicKeyPem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
  await writeFile(privateKeyFile, `-----BEGIN ${type}-----\n${b64}\n-----END ${type}-----\n`, { mode: 0o600 });
  await writeFile(publicKeyFile, publicKeyPem);
  await writeFile(passphraseFile, `${passphrase}\n`, { mode: 0o600 });
  return { privateKeyFile, publicKeyFile, publicKeyPem, passphrase, passphraseFile };
}

// ---------------------------------------------------------------------------------------------
// signing

function toolEnv(reg: TestRegistry): NodeJS.ProcessEnv {
  return { HOME: reg.homeDir, ...NO_INTERNET_ENV };
}

export function cosignEnv(reg: TestRegistry, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...NO_INTERNET_ENV,
    HOME: reg.homeDir,
    DOCKER_CONFIG: reg.dockerConfigDir,
    // Go reads extra roots only through these; our CA alone is enough (nothing else is reached).
    SSL_CERT_FILE: reg.caFile,
    TUF_ROOT: join(reg.homeDir, '.sigstore', 'root'),
    ...extra,
  };
}

export interface CosignSignOptions {
  /** `-a key=value` annotations (land in the payload's `optional`). */
  annotations?: Record<string, string>;
  /**
   * `--registry-referrers-mode=oci-1-1` (with COSIGN_EXPERIMENTAL=1): store the signature as an
   * OCI 1.1 referrer (tag-schema fallback on registry 2.8) instead of the `.sig` tag.
   */
  referrers?: boolean;
  /** Extra cosign args. */
  args?: string[];
}

/**
 * REAL `cosign sign --key … --tlog-upload=false -y REF` (no Rekor, no Fulcio: offline).
 * Sign by digest (`reg.ref(repo, digest)`): cosign warns about tags. Throws on failure.
 */
export async function cosignSign(reg: TestRegistry, key: CosignKeyPair, ref: string, opts: CosignSignOptions = {}): Promise<ToolResult> {
  const r = await cosignSignResult(reg, key, ref, opts);
  if (r.code !== 0) throw new Error(`cosign sign ${ref} failed (exit ${r.code}):\n${r.stderr.trim()}`);
  return r;
}

/** cosignSign without the throw (for probing what works). */
export async function cosignSignResult(reg: TestRegistry, key: CosignKeyPair, ref: string, opts: CosignSignOptions = {}): Promise<ToolResult> {
  const tools = await signTools();
  const args = ['sign', '--key', key.privateKeyFile, '--tlog-upload=false', '-y'];
  for (const [k, v] of Object.entries(opts.annotations ?? {})) args.push('-a', `${k}=${v}`);
  if (opts.referrers) args.push('--registry-referrers-mode=oci-1-1');
  args.push(...(opts.args ?? []), ref);
  return runTool(tools.cosign, args, {
    env: cosignEnv(reg, { COSIGN_PASSWORD: key.passphrase, ...(opts.referrers ? { COSIGN_EXPERIMENTAL: '1' } : {}) }),
    timeoutMs: 60_000,
  });
}

/**
 * REAL trixie skopeo 1.18: copies `source` (an OciImage, or `addr/repo:tag|@digest` already in
 * `reg`) to `repoTag` in `reg` and signs it on the way (--sign-by-sigstore-private-key,
 * cosign-style attachment). Returns the pushed digest (skopeo keeps the manifest bytes).
 */
export async function skopeoCopySigned(reg: TestRegistry, source: OciImage | string, repoTag: string, key: CosignKeyPair): Promise<string> {
  const tools = await signTools();
  const src = typeof source === 'string' ? ['--src-cert-dir', reg.certDir, ...credsArgs(reg, 'src'), `docker://${source}`] : [source.transportRef];
  await runToolOk('skopeo 1.18 signing copy', tools.skopeoSigstore, [
    'copy', '--quiet', '--policy', reg.openPolicyFile, '--registries.d', reg.registriesDir,
    '--dest-cert-dir', reg.certDir, ...credsArgs(reg, 'dest'),
    '--sign-by-sigstore-private-key', key.privateKeyFile, '--sign-passphrase-file', key.passphraseFile,
    ...src, `docker://${reg.addr}/${repoTag}`,
  ], { env: toolEnv(reg) });
  const [repo, tag] = splitRepoTag(repoTag);
  const digest = await reg.manifestDigest(repo, tag);
  if (!digest) throw new Error(`signed-copied ${repoTag} but the registry does not serve it`);
  return digest;
}

export interface PushSignedOptions {
  /** 'cosign' (default: push with skopeo 1.9, then cosign sign by digest) or 'skopeo' (signing copy). */
  signer?: 'cosign' | 'skopeo';
  /** Image variant (see buildOciImage): another variant, another digest. */
  variant?: string;
  /** cosign only: `-a key=value` annotations. */
  annotations?: Record<string, string>;
}

export interface SignedImage {
  image: OciImage;
  digest: string;
  /** `addr/repo:tag`. */
  ref: string;
  /** `addr/repo@sha256:…`. */
  digestRef: string;
}

/** Builds an image under `dir`, pushes it to `repoTag` and signs it with `key`: the one-call path. */
export async function pushSignedImage(reg: TestRegistry, dir: string, repoTag: string, key: CosignKeyPair, opts: PushSignedOptions = {}): Promise<SignedImage> {
  const image = await buildOciImage(dir, opts.variant === undefined ? {} : { variant: opts.variant });
  const [repo, tag] = splitRepoTag(repoTag);
  let digest: string;
  if ((opts.signer ?? 'cosign') === 'skopeo') {
    if (opts.annotations) throw new Error('pushSignedImage: annotations need the cosign signer');
    digest = await skopeoCopySigned(reg, image, repoTag, key);
  } else {
    digest = await pushImage(reg, image, repoTag);
    await cosignSign(reg, key, reg.ref(repo, digest), opts.annotations ? { annotations: opts.annotations } : {});
  }
  return { image, digest, ref: reg.ref(repo, tag), digestRef: reg.ref(repo, digest) };
}

// ---------------------------------------------------------------------------------------------
// oracles

export interface VerifyResult extends ToolResult {
  ok: boolean;
}

export interface CosignVerifyOptions {
  /** `-a key=value`: the signature must carry these annotations. */
  annotations?: Record<string, string>;
  /** `--experimental-oci11`: look for referrers (signatures made with `referrers: true`). */
  experimentalOci11?: boolean;
  /** `--new-bundle-format --trusted-root <empty root>` (never the online TUF root). */
  newBundleFormat?: boolean;
  args?: string[];
}

/**
 * Oracle 1: REAL `cosign verify --key PUB --insecure-ignore-tlog=true REF`. ok = exit 0; on
 * success stdout is a JSON array of the verified payloads. Failures seen: "no signatures
 * found", "no matching signatures".
 */
export async function cosignVerify(reg: TestRegistry, key: Pick<CosignKeyPair, 'publicKeyFile'>, ref: string, opts: CosignVerifyOptions = {}): Promise<VerifyResult> {
  const tools = await signTools();
  const args = ['verify', '--key', key.publicKeyFile, '--insecure-ignore-tlog=true'];
  for (const [k, v] of Object.entries(opts.annotations ?? {})) args.push('-a', `${k}=${v}`);
  if (opts.experimentalOci11) args.push('--experimental-oci11');
  if (opts.newBundleFormat) args.push('--new-bundle-format', '--trusted-root', reg.trustedRootFile);
  args.push(...(opts.args ?? []), ref);
  const r = await runTool(tools.cosign, args, {
    env: cosignEnv(reg, opts.experimentalOci11 ? { COSIGN_EXPERIMENTAL: '1' } : {}),
    timeoutMs: 60_000,
  });
  return { ...r, ok: r.code === 0 };
}

export interface CosignAttestOptions {
  /** The predicate (JSON-serialised into a file). Default {"test":"bulkhead"}. */
  predicate?: unknown;
  /** --type (default 'custom'). */
  type?: string;
  /** `--new-bundle-format`: a Sigstore bundle as an OCI 1.1 referrer (default true). */
  newBundleFormat?: boolean;
}

/**
 * REAL `cosign attest --key … --tlog-upload=false -y [--new-bundle-format] --predicate P --type T REF`.
 * With the new bundle format (default) this is how cosign 2.5 attaches a Sigstore bundle
 * through OCI referrers (the tag-schema fallback on registry 2.8). Throws on failure.
 */
export async function cosignAttest(reg: TestRegistry, key: CosignKeyPair, ref: string, opts: CosignAttestOptions = {}): Promise<ToolResult> {
  const tools = await signTools();
  const work = await mkdtemp(join(reg.dir, 'attest-'));
  try {
    const predicate = join(work, 'predicate.json');
    await writeFile(predicate, JSON.stringify(opts.predicate ?? { test: 'bulkhead' }));
    const args = ['attest', '--key', key.privateKeyFile, '--tlog-upload=false', '-y', '--predicate', predicate, '--type', opts.type ?? 'custom'];
    if (opts.newBundleFormat ?? true) args.push('--new-bundle-format');
    args.push(ref);
    const r = await runTool(tools.cosign, args, { env: cosignEnv(reg, { COSIGN_PASSWORD: key.passphrase }), timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`cosign attest ${ref} failed (exit ${r.code}):\n${r.stderr.trim()}`);
    return r;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Oracle for attestations: REAL `cosign verify-attestation --key PUB --insecure-ignore-tlog=true
 * --type T [--new-bundle-format --trusted-root <empty root>] REF`. ok = exit 0.
 */
export async function cosignVerifyAttestation(
  reg: TestRegistry,
  key: Pick<CosignKeyPair, 'publicKeyFile'>,
  ref: string,
  opts: { type?: string; newBundleFormat?: boolean } = {},
): Promise<VerifyResult> {
  const tools = await signTools();
  const args = ['verify-attestation', '--key', key.publicKeyFile, '--insecure-ignore-tlog=true', '--type', opts.type ?? 'custom'];
  if (opts.newBundleFormat ?? true) args.push('--new-bundle-format', '--trusted-root', reg.trustedRootFile);
  args.push(ref);
  const r = await runTool(tools.cosign, args, { env: cosignEnv(reg), timeoutMs: 60_000 });
  return { ...r, ok: r.code === 0 };
}

export interface CosignVerifyKeylessOptions {
  /**
   * A Sigstore trusted_root.json: `--new-bundle-format --trusted-root FILE` (bundles). Without
   * it, cosign reads the classic `.sig` attachment and takes its trust from `env` alone.
   */
  trustedRootFile?: string;
  /** --certificate-identity (exact) or, when `identityRegexp`, --certificate-identity-regexp. */
  identity: string;
  identityRegexp?: boolean;
  /** --certificate-oidc-issuer. */
  issuer: string;
  /** `verify-attestation --type T` instead of `verify`. */
  attestationType?: string;
  /** Extra environment (KeylessAuthority.writeCosignTrustEnv: keeps cosign off the online TUF root). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Keyless oracle: REAL `cosign verify --new-bundle-format --trusted-root ROOT
 * --certificate-identity[-regexp] ID --certificate-oidc-issuer ISS REF` (cosign 2.5, offline:
 * the Fulcio chain, SCT, Rekor SET/inclusion proof and the identity are all checked against
 * the given root). ok = exit 0.
 */
export async function cosignVerifyKeyless(reg: TestRegistry, ref: string, opts: CosignVerifyKeylessOptions): Promise<VerifyResult> {
  const tools = await signTools();
  const args = [
    ...(opts.attestationType ? ['verify-attestation', '--type', opts.attestationType] : ['verify']),
    ...(opts.trustedRootFile ? ['--new-bundle-format', '--trusted-root', opts.trustedRootFile] : []),
    opts.identityRegexp ? '--certificate-identity-regexp' : '--certificate-identity', opts.identity,
    '--certificate-oidc-issuer', opts.issuer, ref,
  ];
  const r = await runTool(tools.cosign, args, { env: cosignEnv(reg, opts.env), timeoutMs: 60_000 });
  return { ...r, ok: r.code === 0 };
}

/** The referrers tag-schema fallback tag of a digest: `sha256-<hex>` (an OCI index of referrers). */
export function referrersTag(digest: string): string {
  return digest.replace(':', '-');
}

export interface Referrer {
  digest: string;
  /** artifactType of the referring manifest itself (the index entry's may differ: see the file head). */
  artifactType: string | undefined;
  manifest: { config: { mediaType: string }; layers: { mediaType: string; digest: string; annotations?: Record<string, string> }[]; subject?: { digest: string }; annotations?: Record<string, string> };
}

/** The referrers of `digest` in `repo` through the tag-schema fallback (empty when none). */
export async function readReferrers(reg: TestRegistry, repo: string, digest: string): Promise<Referrer[]> {
  const tag = referrersTag(digest);
  if (!(await reg.tags(repo)).includes(tag)) return [];
  const index = JSON.parse((await reg.getManifest(repo, tag)).body.toString()) as { manifests: { digest: string }[] };
  const out: Referrer[] = [];
  for (const m of index.manifests) {
    const body = JSON.parse((await reg.getManifest(repo, m.digest)).body.toString()) as Referrer['manifest'] & { artifactType?: string };
    out.push({ digest: m.digest, artifactType: body.artifactType, manifest: body });
  }
  return out;
}

/**
 * Oracle 2: REAL trixie skopeo 1.18 pulling REF under a `sigstoreSigned` policy for `reg`
 * (keyPath = the public key, signedIdentity matchRepository; everything else rejected).
 * ok = the copy succeeded. Failures seen: "no signature exists", "signature verification failed".
 */
export async function skopeoVerify(
  reg: TestRegistry,
  key: Pick<CosignKeyPair, 'publicKeyFile'>,
  ref: string,
  opts: { signedIdentity?: Record<string, unknown> } = {},
): Promise<VerifyResult> {
  const tools = await signTools();
  const work = await mkdtemp(join(reg.dir, 'verify-'));
  try {
    const policy = join(work, 'policy.json');
    await writeFile(
      policy,
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: {
          docker: { [reg.addr]: [{ type: 'sigstoreSigned', keyPath: key.publicKeyFile, signedIdentity: opts.signedIdentity ?? { type: 'matchRepository' } }] },
        },
      }),
    );
    const r = await runTool(tools.skopeoSigstore, [
      'copy', '--quiet', '--remove-signatures', '--policy', policy, '--registries.d', reg.registriesDir,
      '--src-cert-dir', reg.certDir, ...credsArgs(reg, 'src'),
      `docker://${ref}`, `oci:${join(work, 'pulled')}:x`,
    ], { env: toolEnv(reg), timeoutMs: 60_000 });
    return { ...r, ok: r.code === 0 };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The classic cosign attachment tag of a digest: `sha256-<hex>.sig`. */
export function signatureTag(digest: string): string {
  return `${digest.replace(':', '-')}.sig`;
}

export interface AttachedSignature {
  /** The simplesigning payload as stored (the signed bytes). */
  payload: Buffer;
  /** Parsed payload. */
  payloadJson: { critical: { identity: { 'docker-reference': string }; image: { 'docker-manifest-digest': string }; type: string }; optional?: Record<string, unknown> | null };
  /** base64 ASN.1 ECDSA signature (annotation dev.cosignproject.cosign/signature). */
  signature: string;
  annotations: Record<string, string>;
}

/** Reads the classic `sha256-<hex>.sig` attachment of `digest` in `repo` (empty when none). */
export async function readAttachedSignatures(reg: TestRegistry, repo: string, digest: string): Promise<AttachedSignature[]> {
  const tag = signatureTag(digest);
  if (!(await reg.tags(repo)).includes(tag)) return [];
  const m = JSON.parse((await reg.getManifest(repo, tag)).body.toString()) as { layers: { mediaType: string; digest: string; annotations?: Record<string, string> }[] };
  const out: AttachedSignature[] = [];
  for (const l of m.layers) {
    if (l.mediaType !== 'application/vnd.dev.cosign.simplesigning.v1+json') continue;
    const res = await reg.request('GET', `${repo}/blobs/${l.digest}`);
    if (res.status !== 200) throw new Error(`GET blob ${l.digest}: HTTP ${res.status}`);
    if (sha256Digest(res.body) !== l.digest) throw new Error(`blob ${l.digest} does not match its digest`);
    out.push({
      payload: res.body,
      payloadJson: JSON.parse(res.body.toString()) as AttachedSignature['payloadJson'],
      signature: l.annotations?.['dev.cosignproject.cosign/signature'] ?? '',
      annotations: l.annotations ?? {},
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// pulling into a private engine

/**
 * `docker pull REF` into the engine at `dockerHost` (a PRIVATE engine: see test/helpers/engine.ts),
 * then returns the image's RepoDigests (`addr/repo@sha256:…`). Works for https://127.0.0.1:PORT
 * with our test CA because dockerd treats 127.0.0.0/8 as an insecure registry (HTTPS without
 * certificate verification); no /etc/docker/certs.d is written. `reg` supplies credentials
 * (a throw-away --config dir for the CLI) when the registry has auth.
 */
export async function pullInto(dockerHost: string, ref: string, reg?: Pick<TestRegistry, 'dockerConfigDir'>): Promise<string[]> {
  const config = reg ? ['--config', reg.dockerConfigDir] : [];
  const pull = await runDocker(dockerHost, [...config, 'pull', '--quiet', ref], { timeoutMs: 120_000 });
  if (pull.code !== 0) throw new Error(`docker pull ${ref} into ${dockerHost} failed (exit ${pull.code}): ${pull.stderr.trim()}`);
  const inspect = await runDocker(dockerHost, ['image', 'inspect', '--format', '{{json .RepoDigests}}', ref]);
  if (inspect.code !== 0) throw new Error(`docker image inspect ${ref} failed: ${inspect.stderr.trim()}`);
  return JSON.parse(inspect.stdout.trim()) as string[];
}
