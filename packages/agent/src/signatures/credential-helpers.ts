// Owns Docker credential helpers for the agent's registry access: a config.json whose
// `credHelpers` (per registry) or `credsStore` (every other registry) names a helper has the
// agent run `docker-credential-<name> get` with the registry's server address on stdin and
// read {"ServerURL","Username","Secret"} from stdout — Docker's own protocol
// (github.com/docker/docker-credential-helpers), with Docker's precedence: credHelpers for the
// host, else credsStore, else `auths`. "credentials not found in native keychain" means
// anonymous, as it does for Docker.
//
// Run at verification time, not at start (helpers such as ECR's hand out short-lived tokens):
// one run per registry at a time (callers share it), the answer cached for `cacheTtlMs`, a
// failure for `failureTtlMs` (no process storm while a helper is broken). A run has its own
// time limit; a verification waits for it only until its own deadline, and a run still going
// then may answer the next verification. Output is capped; the secret is never logged, never
// in an error message (a helper's own error output is not repeated either: it is the
// helper's to print, and could hold anything), never sent anywhere but the registry.
//
// Hand-written: there is no maintained npm client of the helper protocol, and the protocol is
// one process run with JSON on stdout.
import { spawn } from 'node:child_process';

/** What a helper gave (same shape as a config.json credential). Never logged. */
export interface HelperCredential {
  username?: string;
  password?: string;
  identityToken?: string;
}

export class CredentialHelperError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CredentialHelperError';
  }
}

export interface CredentialHelpersOptions {
  /** Registry host (as the agent keys it: "127.0.0.1:5000", "docker.io") → helper name. */
  credHelpers: ReadonlyMap<string, string>;
  /** The helper for every registry not in credHelpers. */
  credsStore?: string | undefined;
  /** One run's limit. Default 10 s. */
  runTimeoutMs?: number;
  /** How long an answer is reused. Default 5 min. */
  cacheTtlMs?: number;
  /** How long a failure is reused. Default 10 s. */
  failureTtlMs?: number;
  /** Cap on the helper's stdout. Default 64 KiB. */
  maxOutputBytes?: number;
  /** Environment of the helper (default: the agent's; PATH finds the helper). */
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

/** Docker's "not found" answer (credentials.errCredentialsNotFoundMessage). */
const NOT_FOUND = 'credentials not found in native keychain';
/** A helper name is a suffix of an executable name: no path, no option. */
export const HELPER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

interface Entry { result: Promise<HelperCredential | undefined>; settled: boolean; failed: boolean; at: number }

export class CredentialHelpers {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly o: CredentialHelpersOptions) {
    this.now = o.now ?? Date.now;
    for (const name of [...o.credHelpers.values(), ...(o.credsStore ? [o.credsStore] : [])]) {
      if (!HELPER_NAME_RE.test(name)) throw new CredentialHelperError(`credential helper name "${name.slice(0, 100)}" is not a plain name (docker-credential-<name> is run from PATH)`);
    }
  }

  /** The helper that answers for `registry`, if any (Docker's precedence: credHelpers, then credsStore). */
  helperFor(registry: string): string | undefined {
    return this.o.credHelpers.get(registry) ?? this.o.credsStore;
  }

  /**
   * The helper's credential for `registry` (undefined: the helper has none, anonymous), waiting
   * at most until `deadline` (ms since epoch). Throws CredentialHelperError with a message fit
   * for a verdict (no secret) when the helper is missing, fails, is too slow or answers nonsense.
   */
  async get(registry: string, deadline: number): Promise<HelperCredential | undefined> {
    const helper = this.helperFor(registry);
    if (!helper) return undefined;
    let e = this.entries.get(registry);
    const age = e ? this.now() - e.at : 0;
    if (!e || (e.settled && age >= (e.failed ? (this.o.failureTtlMs ?? 10_000) : (this.o.cacheTtlMs ?? 300_000)))) {
      const entry: Entry = { result: runHelper(helper, serverAddress(registry), this.o), settled: false, failed: false, at: this.now() };
      entry.result.then(
        () => { entry.settled = true; entry.at = this.now(); },
        () => { entry.settled = true; entry.failed = true; entry.at = this.now(); },
      );
      this.entries.set(registry, entry);
      if (this.entries.size > 256) this.entries.delete(this.entries.keys().next().value!);
      e = entry;
    }
    const left = deadline - this.now();
    if (e.settled) return e.result;
    if (left <= 0) throw new CredentialHelperError(`credential helper docker-credential-${helper} had no time left before the verification deadline`);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        e.result,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new CredentialHelperError(
            `credential helper docker-credential-${helper} had not answered at the verification deadline (${left} ms); its answer is kept for the next check`,
          )), left);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** What Docker hands the helper: Docker Hub's index address, else the host[:port]. */
function serverAddress(registry: string): string {
  return registry === 'docker.io' ? 'https://index.docker.io/v1/' : registry;
}

function runHelper(helper: string, server: string, o: CredentialHelpersOptions): Promise<HelperCredential | undefined> {
  const exe = `docker-credential-${helper}`;
  const limit = o.runTimeoutMs ?? 10_000;
  const cap = o.maxOutputBytes ?? 64 * 1024;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: Error | undefined, value?: HelperCredential): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (err) reject(err);
      else resolve(value);
    };
    const child = spawn(exe, ['get'], { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'ignore'], cwd: '/' });
    const timer = setTimeout(() => finish(new CredentialHelperError(`credential helper ${exe} did not answer within ${limit} ms (killed)`)), limit);
    const out: Buffer[] = [];
    let n = 0;
    child.stdout.on('data', (c: Buffer) => {
      n += c.length;
      if (n > cap) return finish(new CredentialHelperError(`credential helper ${exe} wrote more than ${cap} bytes (killed)`));
      out.push(c);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      finish(new CredentialHelperError(e.code === 'ENOENT'
        ? `credential helper ${exe} not found on the agent's PATH (the registry auth file names it in credHelpers or credsStore); install it or put the credentials in the file's auths`
        : `credential helper ${exe} could not be run: ${e.code ?? e.message}`));
    });
    child.stdin.on('error', () => undefined); // a helper that exits without reading stdin
    child.stdin.end(`${server}\n`);
    child.on('close', (code, signal) => {
      if (done) return;
      const text = Buffer.concat(out).toString('utf8');
      if (code !== 0) {
        if (text.trim() === NOT_FOUND) return finish(undefined, undefined);
        return finish(new CredentialHelperError(
          `credential helper ${exe} failed (${signal ? `signal ${signal}` : `exit ${String(code)}`}); its output is not repeated here — run \`echo ${server} | ${exe} get\` as the agent's user to see it`,
        ));
      }
      let j: unknown;
      try {
        j = JSON.parse(text);
      } catch {
        return finish(new CredentialHelperError(`credential helper ${exe} answered something that is not JSON`));
      }
      const r = (j ?? {}) as { Username?: unknown; Secret?: unknown };
      if (typeof r.Secret !== 'string' || r.Secret === '') return finish(new CredentialHelperError(`credential helper ${exe} answered without a Secret`));
      const user = typeof r.Username === 'string' ? r.Username : '';
      // Docker: the user "<token>" means the secret is an identity (refresh) token.
      finish(undefined, user === '<token>' ? { identityToken: r.Secret } : { username: user, password: r.Secret });
    });
  });
}
